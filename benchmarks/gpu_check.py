"""The Python side of benchmarks/gpu_check.sh: device check, synthetic ImageFolder, the kill-and-resume
pre-training check, and the summary (MFU against the card's dense bf16 peak, data against the step).

    python benchmarks/gpu_check.py env OUT [--cpu-smoke]
    python benchmarks/gpu_check.py pretrain-check OUT [--cpu-smoke] [--deadline-s S]
    python benchmarks/gpu_check.py summary OUT

Each subcommand writes its JSON under OUT; `summary` reads whatever the stages left there (a stage that
failed or timed out is reported as such, from OUT/stages.tsv) and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Dense (no sparsity) bf16 tensor-core peaks, TFLOPS, from the vendors' datasheets; V100 has no bf16:
# its fp16 tensor peak. The first pattern matching torch.cuda.get_device_name() decides.
PEAK_BF16_TFLOPS: list[tuple[str, float, str]] = [
    (r"\bH200\b", 989.0, "H200 (SXM), dense bf16"),
    (r"\bH100\b.*\bPCIe\b", 756.0, "H100 PCIe, dense bf16"),
    (r"\bH100\b", 989.0, "H100 SXM, dense bf16"),
    (r"\bA100\b", 312.0, "A100, dense bf16"),
    (r"\bL40S\b", 362.0, "L40S, dense bf16"),
    (r"\bA10\b", 125.0, "A10, dense bf16"),
    (r"\bL4\b", 121.0, "L4, dense bf16"),
    (r"\bV100\b", 125.0, "V100, dense fp16 (no bf16 on Volta)"),
]

# The pre-training check: pair, sizes, steps.
PAIR = ("r50", "vit_s")
GPU_SIZES = {"config": "config/paper.yaml", "images": 256, "image_size": (320, 256), "classes": 4, "batch": 32,
             "workers": 8, "stop_after": 4}
SMOKE_SIZES = {"config": "config/test.yaml", "images": 48, "image_size": (64, 48), "classes": 3, "batch": 8,
               "workers": 0, "stop_after": 3}


def peak_for(name: str) -> tuple[float | None, str]:
    """(TFLOPS, what it is) of a device name; (None, why) when the card is not in the table."""
    for pattern, tflops, what in PEAK_BF16_TFLOPS:
        if re.search(pattern, name):
            return tflops, what
    return None, f"unknown card {name!r}: no peak assumed, MFU not computed (add it to PEAK_BF16_TFLOPS)"


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- env
def cmd_env(out: Path, smoke: bool) -> int:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cpu_count": os.cpu_count(),
                            "cpu_smoke": smoke, "cuda_available": torch.cuda.is_available()}
    if smoke:
        info.update(device="cpu", device_name="cpu")
    elif torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        props = torch.cuda.get_device_properties(0)
        info.update(device="cuda", device_name=name, device_count=torch.cuda.device_count(),
                    memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                    bf16_supported=torch.cuda.is_bf16_supported())
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    else:
        print("gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False): nothing measured "
              "(--cpu-smoke runs every stage on the CPU at tiny sizes)", file=sys.stderr)
        return 3
    peak, what = peak_for(info["device_name"]) if info["device"] == "cuda" else (None, "CPU smoke run: no peak, no MFU")
    info.update(peak_tflops=peak, peak_assumed=what)
    write_json(out / "env.json", info)
    print(f"device: {info['device_name']}" + (f" ({info['memory_gb']:.0f} GiB, sm {info['capability']}, "
          f"{info['device_count']} visible)" if info["device"] == "cuda" else "") + f"; torch {info['torch']}, "
          f"CUDA {info['cuda_build']}; {info['cpu_count']} CPU cores; peak: {what}"
          + (f" = {peak:.0f} TFLOPS" if peak else ""))
    return 0


# ------------------------------------------------------------------------------- synthetic images
def write_imagefolder(root: Path, n_images: int, size: tuple[int, int], n_classes: int, seed: int = 0) -> Path:
    """`root/train/class_k/img_i.JPEG`: n_images random-noise JPEGs (smooth blobs, so crops differ)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(n_images):
        folder = root / "train" / f"class_{i % n_classes}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        noise = rng.integers(-20, 21, size=(h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        img.save(folder / f"img_{i:05d}.JPEG", quality=90)
    return root


# ----------------------------------------------------------------------------- pre-training check
def pretrain_config(sizes: dict[str, Any], data_root: Path, smoke: bool) -> dict[str, Any]:
    """The workflow's pair config at the scale of `sizes["config"]`, on the synthetic ImageFolder."""
    from benchmarks.workflow_config import load_workflow_config, pretrain_config as build

    wf = load_workflow_config(REPO / sizes["config"])
    overrides: dict[str, Any] = {
        "data": {"name": "imagefolder", "root": str(data_root)},
        "device": "cpu" if smoke else "cuda",
        "epochs": 1,
        "batch_size": sizes["batch"],
        "num_workers": sizes["workers"],
        "checkpoint_every_iters": 2,
        "log_every_iters": 1,
    }
    if not smoke:
        overrides["precision"] = "bf16"
    cfg = build(wf, list(PAIR), overrides=overrides)
    cfg["data"] = {"name": "imagefolder", "root": str(data_root)}  # not the scale's dataset keys
    return cfg


def run_pretrain(config: Path, out: Path, extra: list[str], deadline: float, log: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "mokd", "pretrain", "--config", str(config), "--out", str(out), *extra]
    t0 = time.time()
    left = deadline - t0
    if left < 5:
        return {"cmd": cmd, "rc": None, "status": "skipped: no time left", "wall_s": 0.0}
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=left).returncode
            status = "ok" if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            rc, status = None, f"timed out after {left:.0f} s"
    return {"cmd": cmd, "rc": rc, "status": status, "wall_s": time.time() - t0}


def tensors(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every tensor of a nested checkpoint structure, by path."""
    import torch

    found: dict[str, Any] = {}
    if isinstance(obj, torch.Tensor):
        found[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found.update(tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found.update(tensors(v, f"{prefix}.{i}" if prefix else str(i)))
    return found


def compare_checkpoints(a: Path, b: Path, rtol: float = 2.0**-7) -> dict[str, Any]:
    """Models' state (students, teachers, heads, optimizers, scalers, loss centres) of two checkpoint.pt:
    bitwise, else the largest difference relative to each tensor's largest magnitude."""
    import torch

    sa, sb = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
    ta, tb = tensors(sa["models"]), tensors(sb["models"])
    result: dict[str, Any] = {"step": [sa["step"], sb["step"]], "tensors": len(ta)}
    if set(ta) != set(tb):
        return {**result, "bitwise": False, "same_keys": False, "within_tolerance": False,
                "missing": sorted(set(ta) ^ set(tb))[:10]}
    unequal = [k for k in ta if ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k])]
    worst, worst_key = 0.0, None
    for k in unequal:
        x, y = ta[k], tb[k]
        if x.shape != y.shape or not x.is_floating_point():
            worst, worst_key = float("inf"), k
            break
        scale = float(x.double().abs().max()) or 1.0
        rel = float((x.double() - y.double()).abs().max()) / scale
        if rel > worst:
            worst, worst_key = rel, k
    return {**result, "same_keys": True, "bitwise": not unequal and sa["step"] == sb["step"],
            "unequal_tensors": len(unequal), "max_rel_diff": worst, "max_rel_diff_tensor": worst_key,
            "rtol": rtol, "within_tolerance": sa["step"] == sb["step"] and worst <= rtol}


def cmd_pretrain_check(out: Path, smoke: bool, deadline_s: float) -> int:
    """An uninterrupted run (A) against one stopped after k steps and resumed (B); a second uninterrupted
    run (C) when A and B differ, to tell the device's run-to-run noise from a resume error."""
    deadline = time.time() + deadline_s
    sizes = SMOKE_SIZES if smoke else GPU_SIZES
    work = out / "pretrain_check"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.time()
    data = write_imagefolder(work / "data", sizes["images"], sizes["image_size"], sizes["classes"])
    cfg = pretrain_config(sizes, data, smoke)
    config = work / "pretrain.json"  # JSON is YAML
    config.write_text(json.dumps(cfg, indent=1))
    steps = sizes["images"] // sizes["batch"]
    log = work / "runs.log"
    report: dict[str, Any] = {
        "config": str(config), "pair": list(PAIR), "scale": sizes["config"], "device": cfg["device"],
        "precision": cfg["precision"] if not smoke else "fp32 (CPU)", "images": sizes["images"],
        "image_size": list(sizes["image_size"]), "batch": sizes["batch"], "steps": steps,
        "stop_after": sizes["stop_after"], "crops": cfg["crops"], "num_workers": cfg["num_workers"],
        "data_written_s": time.time() - t0, "runs": {}, "log": str(log),
    }
    report["runs"]["A_uninterrupted"] = run_pretrain(config, work / "A", [], deadline, log)
    report["runs"]["B_stopped"] = run_pretrain(config, work / "B", ["--stop-after", str(sizes["stop_after"])], deadline, log)
    report["runs"]["B_resumed"] = run_pretrain(config, work / "B", [], deadline, log)
    summary_a = read_json(work / "A" / "summary.json") or {}
    report["train_time_s"] = summary_a.get("train_time_s")
    report["images_per_s"] = summary_a.get("images_per_s")
    report["peak_memory_mb"] = summary_a.get("peak_memory_mb")
    ok_runs = all(r["rc"] == 0 for r in report["runs"].values())
    if ok_runs and (work / "A" / "checkpoint.pt").is_file() and (work / "B" / "checkpoint.pt").is_file():
        cmp_ab = compare_checkpoints(work / "A" / "checkpoint.pt", work / "B" / "checkpoint.pt")
        report["resume_vs_uninterrupted"] = cmp_ab
        if not cmp_ab["bitwise"]:
            report["runs"]["C_uninterrupted_again"] = run_pretrain(config, work / "C", [], deadline, log)
            if report["runs"]["C_uninterrupted_again"]["rc"] == 0:
                report["control_two_uninterrupted"] = compare_checkpoints(work / "A" / "checkpoint.pt",
                                                                          work / "C" / "checkpoint.pt")
        report["verdict"] = resume_verdict(report)
    else:
        report["verdict"] = "FAILED: " + "; ".join(f"{k} {r['status']}" for k, r in report["runs"].items())
    write_json(out / "pretrain_check.json", report)
    print(f"pretrain check: {report['verdict']}")
    for name in ("A", "B", "C"):  # the checkpoints are large at paper scale; the JSON keeps the result
        for f in (work / name).glob("checkpoint*.pt") if (work / name).is_dir() else []:
            f.unlink()
    return 0 if report["verdict"].startswith("PASS") else 1


def resume_verdict(report: dict[str, Any]) -> str:
    ab = report["resume_vs_uninterrupted"]
    if ab["bitwise"]:
        return f"PASS: resumed run bitwise equal to the uninterrupted one ({ab['tensors']} tensors, step {ab['step'][0]})"
    if not ab["same_keys"] or ab["step"][0] != ab["step"][1]:
        return f"FAIL: the checkpoints differ in structure or step ({ab['step']})"
    control = report.get("control_two_uninterrupted")
    noise = f"; two uninterrupted runs differ by {control['max_rel_diff']:.2e}" if control else ""
    if control and control["bitwise"]:
        return (f"FAIL: two uninterrupted runs are bitwise equal but the resumed one differs "
                f"(max rel diff {ab['max_rel_diff']:.2e} in {ab['max_rel_diff_tensor']})")
    if ab["within_tolerance"]:
        return (f"PASS (within bf16 tolerance, not bitwise): max rel diff {ab['max_rel_diff']:.2e} <= {ab['rtol']:.2e} "
                f"in {ab['max_rel_diff_tensor']}{noise}")
    return f"FAIL: max rel diff {ab['max_rel_diff']:.2e} in {ab['max_rel_diff_tensor']} > {ab['rtol']:.2e}{noise}"


# ------------------------------------------------------------------------------------------ summary
def stage_table(out: Path) -> list[dict[str, str]]:
    rows = []
    path = out / "stages.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, status, wall = (line.split("\t") + ["", ""])[:3]
            rows.append({"stage": name, "status": status, "wall_s": wall})
    return rows


def step_lines(step: dict[str, Any], peak: float | None, label: str) -> tuple[list[str], dict[str, Any]]:
    lines, figures = [], {}
    for r in step.get("results", []):
        for key, row in r["parts"].items():
            tflops = row["gflop_per_step"] / row["ms_per_step"] if "gflop_per_step" in row else None
            mfu = tflops / peak if (tflops is not None and peak) else None
            mem = row.get("memory", {}).get("peak_mb")
            figures[f"{r['variant']}/{key}"] = {"ms_per_step": row["ms_per_step"], "images_per_s": row["images_per_s"],
                                                "tflops": tflops, "mfu": mfu, "peak_mb": mem}
            lines.append(f"  {label} {r['variant']:<8} {row['label']:<22} {row['ms_per_step']:8.1f} ms/step "
                         f"{row['images_per_s']:8.1f} img/s"
                         + (f"  {tflops:7.1f} TFLOPS" if tflops is not None else "")
                         + (f"  MFU {100 * mfu:5.1f} %" if mfu is not None else "")
                         + (f"  peak {mem / 1024:6.2f} GB" if mem else ""))
        extra = f"  {label} {r['variant']:<8} pair / two DINO steps: time {r['ratio_time']:.3f}"
        if "ratio_memory" in r:
            extra += f", memory {r['ratio_memory']:.3f}"
        if "ratio_flops" in r:
            extra += f", FLOPs {r['ratio_flops']:.3f}"
        if r.get("switches", {}).get("compile") and "compile_or_first_step_overhead_s" in r:
            extra += f"; compile time {r['compile_or_first_step_overhead_s']:.1f} s"
        if r.get("pair_vs_first_variant") is not None and r["variant"] != step["results"][0]["variant"]:
            extra += f"; pair step {r['pair_vs_first_variant']:.3f}x {step['results'][0]['variant']}"
        lines.append(extra)
    return lines, figures


def data_lines(data: dict[str, Any] | None, need: float | None, label: str) -> tuple[list[str], dict[str, Any]]:
    if not data:
        return [f"  {label}: no result"], {}
    pil, bat = data["pil"], data["batched"]
    figures: dict[str, Any] = {"pil_per_worker": pil["images_per_s_per_worker"], "batched": bat["images_per_s"],
                               "batched_augment_only": bat["augment_images_per_s"]}
    lines = [f"  {label}: {data['crops_per_image']} crops per image, {data['images']} {data['source']} images; "
             f"pil {pil['images_per_s_per_worker']:.1f} img/s per worker; batched (augment on {data['augment_device']}) "
             f"{bat['augment_images_per_s']:.0f} img/s + decode {bat['decode_ms_per_image']:.2f} ms/image"]
    ld = data.get("loader")
    if ld and ld.get("images_per_s"):
        figures["loader"] = {"pipeline": ld["pipeline"], "workers": ld["workers"], "images_per_s": ld["images_per_s"]}
        verdict = ""
        if need:
            ratio = ld["images_per_s"] / need
            verdict = f" = {ratio:.2f}x the pair step's need ({need:.0f} img/s): " + (
                "keeps up" if ratio >= 1 else f"DATA-BOUND (about {ld['workers'] / ratio:.0f} workers needed)")
            figures["loader"]["ratio_to_step_need"] = ratio
        lines.append(f"  {label}: DataLoader, {ld['pipeline']}, {ld['workers']} workers: {ld['images_per_s']:.0f} img/s"
                     f" (first batch {ld['first_batch_s']:.1f} s){verdict}")
    return lines, figures


def cmd_summary(out: Path) -> int:
    env = read_json(out / "env.json") or {}
    peak = env.get("peak_tflops")
    lines = ["", "=" * 100, "GPU check summary" + (" (CPU SMOKE RUN: tiny sizes, the figures mean nothing)"
                                                   if env.get("cpu_smoke") else ""), "=" * 100]
    summary: dict[str, Any] = {"env": env, "stages": stage_table(out)}
    lines.append(f"device: {env.get('device_name', '?')}; peak assumed: {env.get('peak_assumed', '?')}"
                 + (f" = {peak:.0f} TFLOPS" if peak else ""))
    lines.append("stages: " + ", ".join(f"{r['stage']} {r['status']} ({r['wall_s']} s)" for r in summary["stages"]))
    need = None
    for name, label in (("step.json", "step"), ("step_compile.json", "compile")):
        step = read_json(out / name)
        if step is None:
            lines.append(f"  {label}: no result")
            continue
        if label == "step":
            lines.append(f"  {step['header']}")
        got, figures = step_lines(step, peak, label)
        lines += got
        summary[label] = figures
        if label == "step":
            pair = figures.get("current/pair")
            need = pair["images_per_s"] if pair else None
    lines.append("  MFU: FLOPs of torch.utils.flop_counter (matmuls, convolutions, attention; not elementwise work) "
                 "per step / step time / peak")
    for name, label in (("data_pil.json", "data pil"), ("data_batched.json", "data batched")):
        bench = read_json(out / name)
        got, figures = data_lines(bench.get("data_pipeline") if bench else None, need, label)
        lines += got
        summary[label.replace(" ", "_")] = figures
    pre = read_json(out / "pretrain_check.json")
    if pre:
        lines.append(f"  pretrain: {pre['scale']} pair {'+'.join(pre['pair'])}, {pre['device']} {pre['precision']}, "
                     f"{pre['images']} synthetic {pre['image_size'][0]}x{pre['image_size'][1]} JPEGs, batch {pre['batch']}, "
                     f"{pre['steps']} steps, stopped after {pre['stop_after']} and resumed")
        if pre.get("images_per_s"):
            lines.append(f"  pretrain: uninterrupted run {pre['train_time_s']:.1f} s of training, "
                         f"{pre['images_per_s']:.1f} img/s, peak {pre['peak_memory_mb'] / 1024:.2f} GB")
        lines.append(f"  pretrain: {pre['verdict']}")
        summary["pretrain"] = {k: pre.get(k) for k in ("verdict", "images_per_s", "train_time_s", "peak_memory_mb",
                                                        "resume_vs_uninterrupted", "control_two_uninterrupted")}
    else:
        lines.append("  pretrain: no result")
    text = "\n".join(lines)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    write_json(out / "summary.json", summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["env", "pretrain-check", "summary"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--deadline-s", type=float, default=300.0, help="pretrain-check: time for all its runs")
    args = ap.parse_args(argv)
    if args.command == "env":
        return cmd_env(args.out, args.cpu_smoke)
    if args.command == "pretrain-check":
        return cmd_pretrain_check(args.out, args.cpu_smoke, args.deadline_s)
    return cmd_summary(args.out)


if __name__ == "__main__":
    sys.exit(main())
