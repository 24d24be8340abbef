#!/usr/bin/env bash
# Set-up, idempotent and quick when nothing changed: the .venv/ with the pinned packages
# (requirements.txt), the mokd package itself (editable), the offline Fashion-MNIST files and, as root
# on Debian, pdflatex for the LaTeX tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# A .venv whose creation was interrupted (Ctrl-C while `python -m venv` installs pip) has no working
# pip, and pip could not install into it: build it again.
if [ -e .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "[setup] .venv is incomplete (an interrupted set-up?): building it again"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.mokd-installed
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch's CUDA build and its libraries make the .venv about 6 GB: say so before pip fills the disk.
  need_kb=$((6500 * 1024))
  free_kb=$(df -Pk .venv | awk 'NR == 2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt "$need_kb" ] && [ ! -f "$stamp" ]; then
    echo "[setup] error: $(pwd)/.venv needs about 6.5 GB free on its file system; $((free_kb / 1024)) MB are" >&2
    echo "[setup]        free there (df -h $(pwd)). Free some space and run scripts/setup.sh again." >&2
    exit 1
  fi
  echo "[setup] installing requirements.txt into .venv (first time: about 2 minutes)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

# The embedded default dataset: Debian's Fashion-MNIST package (MIT licence). Elsewhere torchvision
# downloads it on first use.
fm=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$fm" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] installing Debian package dataset-fashion-mnist"
  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
    || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
    || echo "[setup] warning: could not install dataset-fashion-mnist; torchvision will try to download Fashion-MNIST"
fi

# pdflatex and the LaTeX packages the generated tables use (booktabs from texlive-latex-recommended;
# graphicx and inputenc are in texlive-latex-base), so the tests compile every .tex table.
if ! { command -v pdflatex >/dev/null 2>&1 && kpsewhich booktabs.sty >/dev/null 2>&1; } \
  && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] installing Debian packages texlive-latex-base texlive-latex-recommended (first time: 1-2 minutes)"
  tex=(texlive-latex-base texlive-latex-recommended)
  (apt-get install -y -qq --no-install-recommends "${tex[@]}" >/dev/null 2>&1 \
    || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "${tex[@]}" >/dev/null 2>&1)) \
    || echo "[setup] warning: could not install texlive; the LaTeX compile tests will be skipped"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, timm, snakemake; print(f"torch {torch.__version__}, timm {timm.__version__}, snakemake {snakemake.__version__}")')"
