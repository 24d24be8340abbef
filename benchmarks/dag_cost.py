"""Where a finished Snakemake run's wall and CPU time went: start-up, compute, scheduling gaps.

    .venv/bin/python benchmarks/dag_cost.py [RUN_DIR] [--snakemake-log FILE] [--out cost.json]

RUN_DIR is the run's working directory (default: here); the Snakemake log is the newest
`RUN_DIR/.snakemake/log/*.snakemake.log` unless given. From it come each job's rule, its log file
and its start and end (Snakemake writes whole seconds), the cores and the run's elapsed time. Each
job's own log adds, per `python -m mokd` process, the line of `mokd/process_timing.py`:
process start (from /proc), entry into `mokd/__main__.py`, the wall and CPU time of every import,
exit, the process's CPU and that of its waited-for children (a submitit task prints its own line).

Per job:
- start-up = interpreter start (process start to `__main__`) + imports, of each process of the job;
- compute  = the rest of the processes' lifetime;
- gap      = the job's Snakemake duration minus its process's lifetime (shell, bookkeeping; +-1 s);
- CPU      = the process's and its children's; start-up CPU likewise, compute CPU the rest.
The run: cores x elapsed time is the core time on offer; what no job held is idle (DAG shape and
the scheduler). A job log without a timing line (a run made before the line existed, or a killed
process) is split with the work time the job reports itself (an evaluation's "in X s", a
pre-training's `train_time_s`): its start-up then includes its gap, and it has no CPU figure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mokd.process_timing import PREFIX  # noqa: E402

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\S+):$")
FINISHED = re.compile(r"^Finished (?:jobid: (\d+)|job (\d+)\.)")
ERROR = re.compile(r"^Error in rule (\S+):$")
FIELD = re.compile(r"^ {4}(\w+): (.*)$")
EVAL_DONE = re.compile(r"^[\w-]+: top-1 .* in ([\d.]+) s -> ")
ELAPSED = re.compile(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)")


@dataclass
class Job:
    jobid: int
    rule: str
    start: float
    end: float | None = None
    failed: bool = False
    threads: int = 1
    log: str | None = None
    output: str | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)
    source: str = "none"  # "timing" (process lines), "reported" (the job's own work time) or "none"
    wall: float = 0.0
    startup_wall: float = 0.0
    compute_wall: float = 0.0
    gap_wall: float = 0.0
    unsplit_wall: float = 0.0  # a job with neither a timing line nor a reported work time
    cpu: float | None = None
    startup_cpu: float | None = None
    compute_cpu: float | None = None


def _stamp(text: str) -> float:
    return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))


def parse_snakemake_log(path: Path) -> tuple[dict[str, Any], list[Job]]:
    """The run's cores, first and last timestamps, elapsed time, and its jobs in start order."""
    meta: dict[str, Any] = {"snakemake_log": str(path), "cores": None, "elapsed_s": None}
    jobs: dict[int, Job] = {}
    pending: Job | None = None  # a rule block whose jobid has not been read yet
    failed_rule: str | None = None
    now: float | None = None
    first = last = None
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.rstrip()
        if m := STAMP.match(line):
            now = _stamp(m.group(1))
            first = now if first is None else first
            last = now
            pending = failed_rule = None
        elif m := RULE.match(line):
            pending, failed_rule = Job(jobid=-1, rule=m.group(1), start=now if now is not None else 0.0), None
        elif m := ERROR.match(line):
            failed_rule, pending = m.group(1), None
        elif (m := FIELD.match(line)) and (pending is not None or failed_rule is not None):
            key, value = m.groups()
            if failed_rule is not None:
                if key == "jobid" and int(value) in jobs:
                    jobs[int(value)].failed, jobs[int(value)].end = True, now
                continue
            if key == "jobid":
                pending.jobid = int(value)
                jobs[pending.jobid] = pending
            elif key in ("log", "output"):
                setattr(pending, key, value.split(", ")[0].split(" (")[0])
            elif key == "threads":
                pending.threads = int(value)
            elif key == "resources" and (t := re.search(r"\bthreads=(\d+)", value)):
                pending.threads = int(t.group(1))
        elif m := FINISHED.match(line):
            jid = int(m.group(1) or m.group(2))
            if jid in jobs:
                jobs[jid].end = now
            pending = failed_rule = None
        elif line.startswith("Provided cores: "):
            meta["cores"] = int(line.split(": ")[1])
        elif m := ELAPSED.match(line):
            d, h, mi, s = m.groups()
            meta["elapsed_s"] = int(d or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s)
        elif not line.startswith(" "):  # a rule's or an error's block ends
            pending = failed_rule = None
    meta["first_stamp"], meta["last_stamp"] = first, last
    if meta["elapsed_s"] is None and first is not None:
        meta["elapsed_s"] = last - first
    return meta, sorted(jobs.values(), key=lambda j: (j.start, j.jobid))


def timing_lines(text: str) -> list[dict[str, Any]]:
    """The `mokd/process_timing.py` records in a job log (progress bars' carriage returns allowed)."""
    out = []
    for line in re.split(r"[\r\n]", text):
        at = line.find(PREFIX)
        if at >= 0:
            try:
                out.append(json.loads(line[at + len(PREFIX):]))
            except json.JSONDecodeError:
                continue
    return out


def reported_work(job: Job, text: str, run_dir: Path) -> float | None:
    """The work time a job reports itself: an evaluation's "in X s", a pre-training's train_time_s."""
    for line in re.split(r"[\r\n]", text):
        if m := EVAL_DONE.match(line):
            return float(m.group(1))
    if job.rule == "pretrain" and job.output:
        summary = run_dir / job.output / "summary.json"
        try:
            return float(json.loads(summary.read_text())["train_time_s"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def split_job(job: Job, run_dir: Path) -> None:
    """Fill the job's wall and CPU split from its log."""
    job.wall = max(0.0, (job.end if job.end is not None else job.start) - job.start)
    text = ""
    if job.log:
        try:
            text = (run_dir / job.log).read_text(errors="replace")
        except OSError:
            text = ""
    procs = timing_lines(text)
    main = [p for p in procs if p.get("role") == "main"]
    if main:
        m = main[-1]  # a job retried in the same log: its last attempt
        job.processes = procs
        job.source = "timing"

        def startup(p: dict[str, Any]) -> tuple[float, float]:
            start = p["start"] if p.get("start") is not None else p["entry"]
            return max(0.0, p["entry"] - start) + p["import_wall"], p["entry_cpu"] + p["import_cpu"]

        walls = [startup(p) for p in [m] + [p for p in procs if p.get("role") != "main"]]
        proc_wall = m["end"] - (m["start"] if m.get("start") is not None else m["entry"])
        job.startup_wall = sum(w for w, _ in walls)
        job.compute_wall = max(0.0, proc_wall - job.startup_wall)
        job.gap_wall = job.wall - proc_wall
        job.cpu = m["cpu"] + m["children_cpu"]
        job.startup_cpu = sum(c for _, c in walls)
        job.compute_cpu = job.cpu - job.startup_cpu
        return
    work = reported_work(job, text, run_dir)
    if work is not None:
        job.source = "reported"
        job.compute_wall = min(work, job.wall)
        job.startup_wall = job.wall - job.compute_wall  # start-up and gap together
    else:
        job.unsplit_wall = job.wall


def rule_family(rule: str) -> str:
    """The row a rule is counted in: the pairs' evaluation-group rules `evaluate_<group>__<pair>` (one per
    pair, workflow/rules/evaluate.smk) share the row `evaluate_<group>__pairs`."""
    return rule.split("__")[0] + "__pairs" if "__" in rule else rule


SUMMED = ("wall", "startup_wall", "compute_wall", "gap_wall", "unsplit_wall", "cpu", "startup_cpu", "compute_cpu")


def summarise(jobs: list[Job]) -> dict[str, Any]:
    row: dict[str, Any] = {"jobs": len(jobs), "timed": sum(j.source == "timing" for j in jobs),
                           "reported": sum(j.source == "reported" for j in jobs)}
    for key in SUMMED:
        values = [getattr(j, key) for j in jobs if getattr(j, key) is not None]
        row[key] = sum(values) if values else None
    row["core_wall"] = sum(j.wall * j.threads for j in jobs)
    return row


def analyse(run_dir: Path, log: Path) -> dict[str, Any]:
    meta, jobs = parse_snakemake_log(log)
    meta["jobs_without_log"] = sorted({j.rule for j in jobs if not j.log})  # target rules such as `all`
    jobs = [j for j in jobs if j.log]
    for job in jobs:
        split_job(job, run_dir)
    rules: dict[str, list[Job]] = {}
    for job in jobs:
        rules.setdefault(rule_family(job.rule), []).append(job)
    total = summarise(jobs)
    cores = meta["cores"] or 1
    elapsed = meta["elapsed_s"] or 0.0
    run = {
        "cores": cores, "elapsed_s": elapsed, "core_s": cores * elapsed,
        "idle_core_s": max(0.0, cores * elapsed - total["core_wall"]),
        "failed_jobs": sum(j.failed for j in jobs), "unfinished_jobs": sum(j.end is None for j in jobs),
    }
    if total["cpu"] is not None and total["timed"]:
        timed = [j for j in jobs if j.source == "timing"]
        cpu = sum(j.cpu for j in timed)
        run["startup_cpu_share"] = sum(j.startup_cpu for j in timed) / cpu if cpu else None
    run["startup_and_gaps_core_share"] = (
        (total["startup_wall"] + total["gap_wall"] + run["idle_core_s"]) / run["core_s"] if run["core_s"] else None
    )
    return {
        "meta": meta, "run": run, "total": total,
        "rules": {name: summarise(js) for name, js in sorted(rules.items())},
        "jobs": [asdict(j) for j in jobs],
    }


def _f(value: float | None, width: int = 8) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.1f}"


def render(result: dict[str, Any]) -> str:
    head = (f"{'rule':<30}{'jobs':>5}{'timed':>6} | {'wall s':>8}{'start-up':>9}{'compute':>9}{'gap':>8}"
            f"{'unsplit':>8} |"
            f" {'CPU s':>8}{'start-up':>9}{'compute':>9}")
    lines = [head, "-" * len(head)]

    def row(name: str, r: dict[str, Any]) -> str:
        return (f"{name:<30}{r['jobs']:>5}{r['timed']:>6} | {_f(r['wall'])}{_f(r['startup_wall'], 9)}"
                f"{_f(r['compute_wall'], 9)}{_f(r['gap_wall'])}{_f(r['unsplit_wall'])} | {_f(r['cpu'])}{_f(r['startup_cpu'], 9)}"
                f"{_f(r['compute_cpu'], 9)}")

    for name, r in result["rules"].items():
        lines.append(row(name, r))
    lines += ["-" * len(head), row("total", result["total"])]
    run, total = result["run"], result["total"]
    lines.append("")
    lines.append(f"run: {run['elapsed_s']:.1f} s elapsed x {run['cores']} cores = {run['core_s']:.1f} core-s; "
                 f"jobs held {total['core_wall']:.1f}, idle {run['idle_core_s']:.1f} core-s"
                 + (f"; {run['failed_jobs']} failed" if run["failed_jobs"] else "")
                 + (f"; {run['unfinished_jobs']} unfinished" if run["unfinished_jobs"] else ""))
    if run["core_s"]:
        parts = [total["startup_wall"], total["compute_wall"], total["gap_wall"], total["unsplit_wall"],
                 run["idle_core_s"]]
        lines.append("core time: " + ", ".join(
            f"{label} {100 * v / run['core_s']:.1f} %" for label, v in
            zip(("start-up", "compute", "gaps", "unsplit", "idle"), parts)))
    if run.get("startup_cpu_share") is not None:
        lines.append(f"CPU of timed jobs: start-up {100 * run['startup_cpu_share']:.1f} %")
    untimed = total["jobs"] - total["timed"]
    if untimed:
        lines.append(f"{untimed} job(s) without a timing line: {total['reported']} split by their reported work "
                     "time (start-up then includes the gap, no CPU figure), the rest unsplit")
    return "\n".join(lines)


def newest_log(run_dir: Path) -> Path:
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise FileNotFoundError(f"no Snakemake log under {run_dir / '.snakemake' / 'log'}")
    return logs[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=".", help="the run's working directory (default: .)")
    parser.add_argument("--snakemake-log", default=None, help="default: the newest under RUN_DIR/.snakemake/log")
    parser.add_argument("--out", default=None, help="also write everything (per job too) as JSON here")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        log = Path(args.snakemake_log) if args.snakemake_log else newest_log(run_dir)
        result = analyse(run_dir, log)
    except (FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{log}")
    print(render(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
