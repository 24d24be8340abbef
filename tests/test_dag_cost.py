"""benchmarks/dag_cost.py on a small synthetic run folder: Snakemake's log and the jobs' own logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.dag_cost import analyse, main, rule_family, timing_lines
from mokd.process_timing import PREFIX

SNAKEMAKE_LOG = """\
Assuming unrestricted shared filesystem usage.
Provided cores: 2
Rules claiming more threads will be scaled down.
Job stats:
job         count
--------  -------
pretrain        1
evaluate        2
table           1
all             1
total           5

Select jobs to execute...
Execute 2 jobs...
[Tue Dec  1 10:00:00 2026]
localrule pretrain:
    input: data/x
    output: results/s/pretrain/p/export
    log: results/s/logs/pretrain/p.log
    jobid: 1
    reason: Missing output files: results/s/pretrain/p/export
    wildcards: exp=p
    threads: 2
    resources: tmpdir=/tmp, runtime=60
[Tue Dec  1 10:00:10 2026]
Finished jobid: 1 (Rule: pretrain)
1 of 5 steps (20%) done
Select jobs to execute...
Execute 2 jobs...
[Tue Dec  1 10:00:10 2026]
rule evaluate:
    input: results/s/pretrain/p/export
    output: results/s/eval/p/r/knn.json
    log: results/s/logs/eval/p/r/knn.log
    jobid: 2
    resources: tmpdir=/tmp, threads=1, runtime=10
[Tue Dec  1 10:00:11 2026]
localrule evaluate:
    output: results/s/eval/p/r/linear.json
    log: results/s/logs/eval/p/r/linear.log
    jobid: 3
[Tue Dec  1 10:00:14 2026]
Finished jobid: 2 (Rule: evaluate)
2 of 5 steps (40%) done
[Tue Dec  1 10:00:16 2026]
Finished jobid: 3 (Rule: evaluate)
3 of 5 steps (60%) done
[Tue Dec  1 10:00:16 2026]
localrule table:
    output: results/s/tables/t.md
    log: results/s/logs/tables/t.log
    jobid: 4
[Tue Dec  1 10:00:18 2026]
Error in rule table:
    message: None
    jobid: 4
    output: results/s/tables/t.md
    log: results/s/logs/tables/t.log (check log file(s) for error details)
[Tue Dec  1 10:00:18 2026]
localrule all:
    input: results/s/tables/t.md
    jobid: 0
[Tue Dec  1 10:00:18 2026]
Finished jobid: 0 (Rule: all)
Elapsed time: 0:00:20.000000
"""


def timing(role: str, start: float, entry: float, imp: float, end: float, cpu: float, children: float,
           entry_cpu: float, import_cpu: float) -> str:
    record = {"role": role, "pid": 1, "argv": ["x"], "start": start, "entry": entry, "entry_cpu": entry_cpu,
              "import_wall": imp, "import_cpu": import_cpu, "end": end, "cpu": cpu, "children_cpu": children}
    return PREFIX + json.dumps(record)


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "2026-12-01T100000.000000.snakemake.log").write_text(SNAKEMAKE_LOG)
    logs = tmp_path / "results" / "s" / "logs"
    (logs / "pretrain").mkdir(parents=True)
    (logs / "eval" / "p" / "r").mkdir(parents=True)
    (logs / "tables").mkdir(parents=True)
    # pre-training: the launcher process (main) and its submitit task, with a progress bar's \r
    (logs / "pretrain" / "p.log").write_text(
        "[mokd] local submitit job 1 submitted\n"
        + timing("task", 1000.0, 1000.5, 2.0, 1007.0, 6.0, 0.5, 0.4, 1.6) + "\n"
        + "pretrain: 100%|####| 2/2\r"
        + timing("main", 999.0, 999.1, 1.0, 1008.0, 1.5, 7.0, 0.1, 0.9) + "\n"
    )
    # k-NN: one process
    (logs / "eval" / "p" / "r" / "knn.log").write_text(
        "knn: top-1 50.00 % in 0.4 s -> results/s/eval/p/r/knn.json\n"
        + timing("main", 50.0, 50.25, 2.25, 53.0, 2.5, 0.0, 0.2, 1.8) + "\n"
    )
    # linear probe: a log from before the timing line existed -> split by its reported work time
    (logs / "eval" / "p" / "r" / "linear.log").write_text("linear: top-1 12.50 % in 1.5 s -> x.json\n")
    # table: failed, nothing to split by
    (logs / "tables" / "t.log").write_text("Traceback ...\n")
    return tmp_path


def test_split_per_job_rule_and_run(run_dir: Path) -> None:
    result = analyse(run_dir, run_dir / ".snakemake" / "log" / "2026-12-01T100000.000000.snakemake.log")
    jobs = {j["jobid"]: j for j in result["jobs"]}
    assert set(jobs) == {1, 2, 3, 4}  # `all` has no log: a target, not work
    assert result["meta"]["jobs_without_log"] == ["all"]

    p = jobs[1]
    assert (p["rule"], p["threads"], p["source"], p["wall"]) == ("pretrain", 2, "timing", 10.0)
    # start-up: main (0.1 interpreter + 1.0 imports) + task (0.5 + 2.0); lifetime 9.0; gap 10 - 9
    assert p["startup_wall"] == pytest.approx(3.6)
    assert p["compute_wall"] == pytest.approx(9.0 - 3.6)
    assert p["gap_wall"] == pytest.approx(1.0)
    assert p["cpu"] == pytest.approx(1.5 + 7.0)  # the task is a child of the main process
    assert p["startup_cpu"] == pytest.approx(0.1 + 0.9 + 0.4 + 1.6)
    assert p["compute_cpu"] == pytest.approx(8.5 - 3.0)

    k = jobs[2]
    assert (k["source"], k["wall"], k["threads"]) == ("timing", 4.0, 1)
    assert k["startup_wall"] == pytest.approx(0.25 + 2.25)
    assert k["compute_wall"] == pytest.approx(0.5)
    assert k["gap_wall"] == pytest.approx(1.0)
    assert (k["startup_cpu"], k["compute_cpu"]) == (pytest.approx(2.0), pytest.approx(0.5))

    lin = jobs[3]
    assert (lin["source"], lin["wall"], lin["compute_wall"], lin["startup_wall"]) == ("reported", 5.0, 1.5, 3.5)
    assert lin["cpu"] is None

    t = jobs[4]
    assert (t["failed"], t["source"], t["wall"], t["unsplit_wall"]) == (True, "none", 2.0, 2.0)

    ev = result["rules"]["evaluate"]
    assert (ev["jobs"], ev["timed"], ev["reported"]) == (2, 1, 1)
    assert ev["wall"] == pytest.approx(9.0)
    assert ev["startup_wall"] == pytest.approx(2.5 + 3.5)
    assert ev["cpu"] == pytest.approx(2.5)  # only the timed job has a CPU figure

    run = result["run"]
    assert (run["cores"], run["elapsed_s"], run["failed_jobs"]) == (2, 20.0, 1)
    # core time held: pretrain 10 s x 2 threads + 4 + 5 + 2
    assert result["total"]["core_wall"] == pytest.approx(31.0)
    assert run["idle_core_s"] == pytest.approx(40.0 - 31.0)
    assert run["startup_cpu_share"] == pytest.approx((3.0 + 2.0) / (8.5 + 2.5))


def test_command_prints_table_and_writes_json(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_dir / "cost.json"
    assert main([str(run_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line for line in text.splitlines() if line[:1].isalpha()}
    assert {"evaluate", "pretrain", "table", "total"} <= set(rows)
    assert rows["pretrain"].split()[1:3] == ["1", "1"]  # jobs, timed
    assert "1 failed" in text and "2 job(s) without a timing line" in text
    assert json.loads(out.read_text())["rules"]["pretrain"]["startup_wall"] == pytest.approx(3.6)


def test_missing_log_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no Snakemake log under")


def test_timing_lines_skip_garbage() -> None:
    text = f"x {PREFIX}{{not json\r{PREFIX}{json.dumps({'role': 'main'})}\nother\n"
    assert timing_lines(text) == [{"role": "main"}]


def test_the_pairs_group_rules_share_one_row() -> None:
    """One rule per pair (evaluate_<group>__<pair>) would make the table as long as the pair list."""
    assert {rule_family(r) for r in ("evaluate_features__mokd_r50_vit_s", "evaluate_features__mokd_r50_r18")} == {
        "evaluate_features__pairs"}
    assert [rule_family(r) for r in ("evaluate_features", "evaluate", "pretrain")] == ["evaluate_features", "evaluate",
                                                                                        "pretrain"]
