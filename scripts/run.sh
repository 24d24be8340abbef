#!/usr/bin/env bash
# Set up (idempotent) and run the whole pipeline on the embedded default scale (Fashion-MNIST, CPU):
# every table and figure of the paper under results/default/. Extra arguments go to Snakemake
# (e.g. `bash scripts/run.sh table_s2`, or `--configfile config/test.yaml`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
# Snakemake's own error for a malformed --configfile names neither the file nor the line: check first.
.venv/bin/python -m mokd check-config --snakemake-args "$@"
start=$(date +%s)
.venv/bin/snakemake --cores all "$@"
echo "[run] done in $(( $(date +%s) - start )) s (how to read the tables and figures: results/README.md)"
# A few lines on what the run shows: collapsed teachers, the DINO baselines' gain over random initialisation,
# where the tables are. It names missing results instead of failing; a failure of its own never fails the run.
.venv/bin/python -m mokd summary --snakemake-args "$@" || echo "[run] no summary (see the error above)"
