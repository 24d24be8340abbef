"""Every LaTeX table the workflow generates compiles with pdflatex.

Each `table` job of a dry run of the test scale is run as the workflow would run it (its own
`python -m mokd table` arguments: spec, reported CSV, output files), on small metrics files in the
evaluation commands' format instead of a training run. Every `.tex` file a job writes is `\\input`
into a standalone document that loads only the packages the file's header says it needs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mokd.cli import main
from tests.workflow.smk import REPO, snakemake, write_config

TABLES = ["t1", "t2", "t3", "t4", "t5", "t6", "s1", "s2", "s3"]
# T1 again: wrapped in \resizebox, and with a low-confidence (flagged) reported value.
VARIANTS = ["t1_resized", "t1_flagged"]
PDFLATEX = shutil.which("pdflatex")
pytestmark = pytest.mark.skipif(
    PDFLATEX is None, reason="pdflatex not found: install texlive-latex-base (as root on Debian: bash scripts/setup.sh)")


def metrics_of(i: int) -> dict:
    """A metrics file with every value a table spec reads (top-1, COCO AP, the S3 cost texts)."""
    ap = {f"{k}_{t}": 30.0 + i for k in ("AP", "AP50", "AP75") for t in ("bbox", "segm")}
    cost = {"train_time_h_text": f"0.0{i % 10}+0.01", "peak_memory_gb_text": "0.25"}
    return {"metrics": {"top1": 40.0 + i * 0.37, "top5": 80.0, **ap, "rows": {"DINO": cost, "MOKD": cost}}}


def teacher_of(metrics: str) -> list[str]:
    """The teacher an evaluation's metrics file records (`checkpoints`), by the workflow's layout."""
    m = re.search(r"^(.*)/eval/([^/]+)/seed(\d+)/([^/]+)/[^/]+\.json$", metrics)
    return [f"{m[1]}/pretrain/{m[2]}/seed{m[3]}/export/teacher_{m[4]}.pt"] if m else []


def write_logs(args: list[str], collapsed: str) -> None:
    """A log.jsonl for every run a table job reads: experiment `collapsed` ends uniform (its cells are
    marked ‡), the others at half of ln K."""
    for run in json.loads(args[args.index("--spec") + 1])["runs"]:
        ln_k = math.log(run["out_dim"])
        end = {r: (0.999 if run["name"] == collapsed else 0.5) * ln_k for r in run["models"]}
        Path(run["log"]).parent.mkdir(parents=True, exist_ok=True)
        Path(run["log"]).write_text(json.dumps({"step": 1, "epoch": 0, **{r: {"teacher_entropy": e} for r, e in end.items()}}))


def table_jobs(out: str) -> dict[str, list[str]]:
    """{table id: the arguments after `python -m mokd table`} of a dry run's `table` jobs."""
    jobs = {}
    for line in out.splitlines():
        if "python -m mokd table " in line:
            args = shlex.split(line.split("python -m mokd table", 1)[1])
            args = args[: args.index(">")] if ">" in args else args
            jobs[json.loads(args[args.index("--spec") + 1])["id"]] = args
    return jobs


def variant(args: list[str], kind: str, **changes: object) -> list[str]:
    """A job's arguments with spec changes and every output file renamed after `kind`."""
    args = list(args)
    i = args.index("--spec") + 1
    spec = json.loads(args[i])
    args[i] = json.dumps({**spec, **changes})
    stem = f"table_{spec['id']}"
    return [a.replace(stem, f"table_{kind}") if a.startswith("/") else a for a in args]


def metrics_files(args: list[str]) -> set[str]:
    """Every metrics file a table job reads: its cells' and their random-initialisation references'."""
    spec = json.loads(args[args.index("--spec") + 1])
    cells = [c for row in spec["rows"] for c in row["cells"].values()]
    cells += [c["reference"] for c in cells if c.get("reference")]
    return {m for c in cells for m in ([c["metrics"]] if isinstance(c.get("metrics"), str) else c.get("metrics") or [])}


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """{kind: the .tex files its job wrote}: the nine workflow tables and the T1 variants."""
    tmp = tmp_path_factory.mktemp("latex")
    cfg = write_config(tmp / "c.yaml", "config/test.yaml", tmp / "results")
    out = snakemake(*(f"table_{t}" for t in TABLES), "-n", "-p", "--configfile", str(cfg), timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    jobs = table_jobs(out.stdout + out.stderr)
    assert sorted(jobs) == sorted(TABLES), sorted(jobs)
    flagged = tmp / "flagged.csv"
    flagged.write_text("table,row,column,value,source,confidence\n"
                       "T1,R50@R50-ViT-S,knn_dino,50.0,a blog post & a talk (50 %),low\n")
    jobs["t1_resized"] = variant(jobs["t1"], "t1_resized", latex_resize=True)
    jobs["t1_flagged"] = variant(jobs["t1"], "t1_flagged")
    jobs["t1_flagged"][jobs["t1_flagged"].index("--reported") + 1] = str(flagged)
    for i, path in enumerate(sorted(set().union(*map(metrics_files, jobs.values())))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({**metrics_of(i), "checkpoints": teacher_of(path)}))
    for args in jobs.values():
        write_logs(args, collapsed="dino_r50")
    texs = {}
    cwd = Path.cwd()
    os.chdir(REPO)  # the jobs' relative paths (config/reported.csv) are the workflow's
    try:
        for kind, args in jobs.items():
            assert main(["table", *args]) == 0, kind
            texs[kind] = [Path(a) for a in args if a.endswith(".tex")]
    finally:
        os.chdir(cwd)
    return texs


def test_tables_cover_every_markup(tables: dict[str, list[Path]]) -> None:
    """The compiled set holds multi-column groups, Δ, notes in small print, a resize box, the ‡ of a cell
    from a collapsed teacher and, in the paper's view where the job writes one, the † of a low-confidence
    reported value."""
    text = "\n".join(p.read_text() for files in tables.values() for p in files)
    for token in ("\\multicolumn", "\\cmidrule", "$\\Delta$", "\\footnotesize", "\\resizebox", "$^\\ddagger$"):
        assert token in text, token
    paper_views = [p for p in tables["t1_flagged"] if p.stem.endswith("_vs_paper")]
    if paper_views:  # the view with the paper's values flags the low-confidence one
        assert "$^\\dagger$" in paper_views[0].read_text()


@pytest.mark.parametrize("kind", [*TABLES, *VARIANTS])
def test_table_compiles(tables: dict[str, list[Path]], kind: str) -> None:
    assert tables[kind], f"table {kind}: the job writes no .tex file"
    for tex in tables[kind]:
        header = tex.read_text().splitlines()[0]
        packages = re.findall(r"\\usepackage\{([^}]+)\}", header)
        assert "booktabs" in packages, header
        doc = tex.with_name(f"doc_{tex.stem}.tex")
        doc.write_text("\\documentclass{article}\n" + "".join(f"\\usepackage{{{p}}}\n" for p in packages)
                       + f"\\begin{{document}}\n\\input{{{tex.name}}}\n\\end{{document}}\n")
        proc = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tex.parent,
                              capture_output=True, text=True, timeout=300)
        log = doc.with_suffix(".log")
        assert proc.returncode == 0, f"{tex}:\n" + (log.read_text(errors="replace") if log.exists() else proc.stdout)[-4000:]
        assert doc.with_suffix(".pdf").stat().st_size > 0, tex
