#!/usr/bin/env python
"""Why does a model learn less inside a MOKD pair than alone? Per-term losses and gradients, pair vs DINO.

Trains, from a workflow config built exactly as the workflow builds it (benchmarks/workflow_config.py),
the MOKD pair of two roles and each role's DINO baseline, with the same seed and data order. Every
`--every` steps, on the batch about to be trained, it measures for each model and each of its active
loss terms (L_sm, L_st, L_cm, L_ct; the cross terms weighted by the model's lambda as in the total):
the term's value, the norm of its gradient into the model's student backbone, into the MLP-Head and
into the T-Head, and the cosine between its backbone gradient and L_sm's. The measurement does not
change the run: gradients are taken with `torch.autograd.grad` (nothing is accumulated) and the
buffers it touches (students' and teachers' BatchNorm statistics, loss centres) are restored before the real step.

    .venv/bin/python benchmarks/pair_diagnosis.py --pair r50 vit_s --every 10 --out diag.json
    .venv/bin/python benchmarks/pair_diagnosis.py --pair r50 vit_s --set pretrain.epochs=12 \
        --set families.cnn.mlp_head.batch_norm=true
    .venv/bin/python benchmarks/pair_diagnosis.py --config config/cpu_study.yaml --steps 8 --every 1 --no-baselines

It prints, per run and model, each term's mean over the first and the second half of the diagnosed
steps, and each term's backbone gradient as a multiple of L_sm's (mean, and the range over the steps).
`--steps N` stops every run after N steps (the first steps of the real schedule, not a shorter
run). One seed per call (`--seed`): repeat with other seeds before drawing a conclusion.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.workflow_config import WORKFLOW_SCHEMA, load_workflow_config, pretrain_config  # noqa: E402
from mokd.config import apply_overrides, load_yaml, validate  # noqa: E402
from mokd.engine import Trainer, build_trainer  # noqa: E402


def _norm(grads: tuple[torch.Tensor | None, ...]) -> float:
    sq = sum(float(g.float().pow(2).sum()) for g in grads if g is not None)
    return math.sqrt(sq)


def _flat(grads: tuple[torch.Tensor | None, ...], params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).float().flatten() for g, p in zip(grads, params)])


def term_gradients(trainer: Trainer, crops: list[torch.Tensor]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model and term: value, gradient norms into backbone / MLP-Head / T-Head, cosine with L_sm's."""
    saved = [
        (copy.deepcopy(dict(m.slot.named_buffers())), copy.deepcopy(m.objective.state_dict())) for m in trainer.models
    ]
    teachers = trainer.teacher_outputs(crops)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, model in enumerate(trainer.models):
        student = model.slot.student
        parts = {
            "backbone": [p for p in student.backbone.parameters() if p.requires_grad],
            "mlp_head": [p for p in student.mlp_head.parameters() if p.requires_grad],
            "t_head": [p for p in student.t_head.parameters() if p.requires_grad] if student.t_head is not None else [],
        }
        terms, _ = trainer.student_terms(i, crops, teachers)
        names = list(terms)
        per_term: dict[str, dict[str, float]] = {}
        sm_flat = None
        for n, name in enumerate(names):
            weight = model.objective.lam if name in ("cm", "ct") else 1.0
            row = {"value": float(terms[name].detach()), "weight": weight}
            every = [p for ps in parts.values() for p in ps]
            grads = torch.autograd.grad(weight * terms[name], every, retain_graph=n < len(names) - 1, allow_unused=True)
            start = 0
            for part, params in parts.items():
                g = grads[start : start + len(params)]
                start += len(params)
                row[f"grad_{part}"] = _norm(g)
                if part == "backbone":
                    flat = _flat(g, params)
                    if name == "sm":
                        sm_flat = flat
                    if sm_flat is not None and name != "sm":
                        denom = float(flat.norm() * sm_flat.norm())
                        row["cos_with_sm"] = float(flat @ sm_flat) / denom if denom > 0 else float("nan")
            per_term[name] = row
        out[model.name] = per_term
    for model, (buffers, objective_state) in zip(trainer.models, saved):
        live = dict(model.slot.named_buffers())
        with torch.no_grad():
            for key, value in buffers.items():
                live[key].copy_(value)
        model.objective.load_state_dict(objective_state)
    return out


def diagnose_run(cfg: dict[str, Any], every: int, out_dir: Path, steps: int | None = None) -> dict[str, Any]:
    """Train one run to its end (or for its first `steps` steps), measuring `term_gradients` every `every`
    steps; also the logged entropy."""
    trainer = build_trainer({**cfg, "device": "cpu"}, out_dir)
    points: list[dict[str, Any]] = []
    inner = trainer.train_step
    records: list[dict[str, Any]] = []

    def step(crops: list[torch.Tensor], epoch: int) -> dict[str, Any]:
        if trainer.step % every == 0:
            points.append({"step": trainer.step, "models": term_gradients(trainer, crops)})
        record = inner(crops, epoch)
        records.append(record)
        return record

    trainer.train_step = step  # type: ignore[method-assign]
    trainer.train(stop_after=steps)
    ln_k = math.log(cfg["out_dim"])
    final = {m.name: records[-1][m.name]["teacher_entropy"] for m in trainer.models}
    return {"points": points, "final_entropy": final, "ln_k": ln_k, "steps": trainer.step}


def summarise(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Each model's terms: means over the first and the second half of the diagnosed steps."""
    pts = run["points"]
    half = max(1, len(pts) // 2)
    rows = []
    for model in pts[0]["models"]:
        for term in pts[0]["models"][model]:
            for label, chunk in (("first half", pts[:half]), ("second half", pts[half:] or pts[-1:])):
                vals = [p["models"][model][term] for p in chunk]
                row = {"model": model, "term": term, "part": label}
                for key in ("value", "grad_backbone", "grad_mlp_head", "grad_t_head", "cos_with_sm"):
                    xs = [v[key] for v in vals if key in v and not math.isnan(v[key])]
                    row[key] = statistics.fmean(xs) if xs else None
                rows.append(row)
    return rows


def backbone_ratios(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Each model's terms: backbone gradient norm / L_sm's at the same step, mean and range over the steps."""
    pts = run["points"]
    rows = []
    for model in pts[0]["models"]:
        for term in pts[0]["models"][model]:
            if term == "sm" or "sm" not in pts[0]["models"][model]:
                continue
            ratios = [p["models"][model][term]["grad_backbone"] / p["models"][model]["sm"]["grad_backbone"]
                      for p in pts if p["models"][model]["sm"]["grad_backbone"] > 0]
            if ratios:
                rows.append({"model": model, "term": term, "mean": statistics.fmean(ratios),
                             "min": min(ratios), "max": max(ratios), "n": len(ratios)})
    return rows


def print_summary(label: str, run: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    ent = ", ".join(f"{m} {e:.2f}" for m, e in run["final_entropy"].items())
    print(f"\n{label}: {run['steps']} steps; final MLP-Head teacher entropy {ent} (ln K {run['ln_k']:.2f})")
    print(f"  {'model':<8} {'term':<5} {'part':<12} {'value':>7} {'|g| backbone':>12} {'|g| MLP-Head':>12} {'|g| T-Head':>10} {'cos(g, g_sm)':>12}")
    fmt = lambda v, w, p: f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
    for r in rows:
        print(f"  {r['model']:<8} {r['term']:<5} {r['part']:<12} {fmt(r['value'], 7, 3)} {fmt(r['grad_backbone'], 12, 4)} "
              f"{fmt(r['grad_mlp_head'], 12, 4)} {fmt(r['grad_t_head'], 10, 4)} {fmt(r['cos_with_sm'], 12, 3)}")
    for r in backbone_ratios(run):
        print(f"  {r['model']:<8} |g backbone| of L_{r['term']} / L_sm's: mean {r['mean']:.2f}x, "
              f"per step {r['min']:.2f}-{r['max']:.2f}x over {r['n']} steps")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/default.yaml", help="workflow config (scale)")
    ap.add_argument("--pair", nargs=2, default=["r50", "vit_s"], metavar=("MODEL1", "MODEL2"), help="the pair's roles")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override of the workflow config (repeatable)")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: the config's pretrain.seed)")
    ap.add_argument("--every", type=int, default=10, help="diagnose every this many steps")
    ap.add_argument("--steps", type=int, default=None, help="stop each run after this many steps (default: its end)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--no-baselines", action="store_true", help="only the pair")
    ap.add_argument("--out", default=None, help="JSON file for every measurement")
    ap.add_argument("--dry-run", action="store_true", help="check the config and the overrides, say what would run")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = validate(apply_overrides(load_workflow_config(args.config), args.set), load_yaml(WORKFLOW_SCHEMA))
    if args.seed is not None:
        config["pretrain"]["seed"] = args.seed
    runs = {f"MOKD {args.pair[0]}-{args.pair[1]}": pretrain_config(config, list(args.pair))}
    if not args.no_baselines:
        runs.update({f"DINO {role}": pretrain_config(config, [role]) for role in args.pair})
    result: dict[str, Any] = {"config": args.config, "pair": args.pair, "overrides": args.set, "seed": config["pretrain"].get("seed", 0), "runs": {}}
    if args.dry_run:
        print(f"would diagnose {', '.join(runs)} (seed {result['seed']}), every {args.every} steps"
              f"{f' for {args.steps} steps' if args.steps else ''}; overrides {args.set}")
        return result
    with tempfile.TemporaryDirectory() as tmp:
        for n, (label, cfg) in enumerate(runs.items()):
            run = diagnose_run(cfg, args.every, Path(tmp) / f"run{n}", args.steps)
            rows = summarise(run)
            print_summary(label, run, rows)
            result["runs"][label] = {**run, "summary": rows, "backbone_ratios": backbone_ratios(run)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
