#!/usr/bin/env python
"""Benchmark of the MOKD training step against the two DINO steps of the same models, and of the data.

One process, one run (see benchmarks/README.md):

  (a) one MOKD pair step (both models, every active loss term, both optimizers and EMA updates);
  (b) the two DINO steps of the same two models, one after the other: each a single-model Trainer with
      L_sm only, the workflow's DINO baseline (losses self_thead / cross_* false);
  (c) the data pipeline alone: decoding + multi-crop augmentation, images/s of one worker.

(a) and (b) are Trainer.train_step on a fixed synthetic batch of crops of the config's sizes, so the
data pipeline is not in their time. Their repetitions are interleaved (a, b1, b2, then b2, b1, a, ...)
so that a noisy machine slows them alike; times are medians after warm-up. Peak memory of a part is the
memory it would need alone: its persistent state (parameters, gradients, buffers, optimizer state,
loss centres, the crops) plus the peak of what one step allocates on top of it, measured on CUDA with
torch.cuda.max_memory_allocated (reset before the step) and on CPU from the allocation events of
torch.profiler (profile_memory=True). (b)'s memory is the sum of the two DINO peaks.

  python benchmarks/bench_step.py --config config/default.yaml --pair r50 vit_s --out bench.json
  python benchmarks/bench_step.py --config config/paper.yaml --pair r50 vit_s --batch 64 --device cuda
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.variants import VARIANTS, Variant, get_variant, set_fused_attention  # noqa: E402
from benchmarks.workflow_config import load_workflow_config, pretrain_config  # noqa: E402
from mokd.engine import Trainer  # noqa: E402

MB = 2**20


# ------------------------------------------------------------------------------------------ set-up
class _Length(torch.utils.data.Dataset):
    """Stands in for the dataset where only its length matters (the schedules' iterations per epoch)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        raise IndexError("the step benchmark feeds synthetic crops; it never reads the dataset")


@dataclass
class Part:
    """One thing timed: the pair's step, or one DINO model's step, under one variant."""

    key: str  # "pair", "dino:<role>"
    label: str
    variant: Variant
    trainer: Trainer
    batch: int
    times: list[float] = field(default_factory=list)
    first_step_s: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)
    flops: float | None = None


def build_part(cfg: dict[str, Any], key: str, label: str, variant: Variant, out_dir: Path, cpu_autocast: bool = False) -> Part:
    cfg = dict(cfg, compile=bool(cfg.get("compile")) or variant.compile)
    trainer = Trainer(cfg, out_dir / f"{variant.name}_{key.replace(':', '_')}", _Length(cfg["batch_size"] * 1000))
    if cpu_autocast and trainer.device.type == "cpu":
        trainer.precision = cfg["precision"]  # the Trainer runs fp32 on CPU; an estimate of the GPU's mixed precision
    variant.apply(trainer)
    trainer.step = trainer.iters_per_epoch  # epoch 1: past the last-layer freeze, as most of a run is
    return Part(key, label, variant, trainer, cfg["batch_size"])


def make_crops(cfg: dict[str, Any], device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    c, b = cfg["crops"], cfg["batch_size"]
    sizes = [c["global_size"]] * 2 + [c["local_size"]] * c["n_local"]
    return [torch.randn(b, 3, s, s, generator=gen).to(device) for s in sizes]


def epoch_of(part: Part) -> int:
    return min(part.trainer.step // part.trainer.iters_per_epoch, part.trainer.cfg["epochs"] - 1)


def run_step(part: Part, crops: list[torch.Tensor]) -> float:
    device = part.trainer.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with part.variant.active():
        part.trainer.train_step(crops, epoch_of(part))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ memory
def state_bytes(trainer: Trainer, crops: list[torch.Tensor]) -> int:
    """Bytes of the tensors a part keeps between steps: parameters, gradients, buffers, optimizer state, crops."""
    storages: dict[tuple[str, int], int] = {}

    def add(t: Any) -> None:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            st = t.untyped_storage()
            storages[(str(t.device), st.data_ptr())] = st.nbytes()

    for model in trainer.models:
        for p in model.slot.parameters():
            add(p)
            add(p.grad)
        for b in model.slot.buffers():
            add(b)
        for b in model.losses.buffers():
            add(b)
        for sched in model.optimizers:
            for state in sched.optimizer.state.values():
                for v in state.values():
                    add(v)
    for c in crops:
        add(c)
    return sum(storages.values())


_CPU_DEVICE_TYPES = {"DeviceType.CPU", "DeviceType.MKLDNN", "DeviceType.IDEEP"}


def step_transient_bytes(part: Part, crops: list[torch.Tensor]) -> int:
    """Peak of the bytes one step allocates on top of what was live when it began."""
    device = part.trainer.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run_step(part, crops)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with part.variant.active():
            part.trainer.train_step(crops, epoch_of(part))
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if str(e.device_type()) in _CPU_DEVICE_TYPES:
            live += e.nbytes()
            peak = max(peak, live)
    return peak


def measure_memory(part: Part, crops: list[torch.Tensor]) -> dict[str, float]:
    persistent = state_bytes(part.trainer, crops)
    transient = step_transient_bytes(part, crops)
    return {"persistent_mb": persistent / MB, "step_mb": transient / MB, "peak_mb": (persistent + transient) / MB}


# ------------------------------------------------------------------------------------------- FLOPs
def count_flops(part: Part, crops: list[torch.Tensor]) -> float:
    """FLOPs of one step (matmuls, convolutions, attention) by torch.utils.flop_counter.

    The attention runs on its explicit path while counting: the counter has no formula for CPU's fused
    attention kernel, which would otherwise be left out. Elementwise work is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    set_fused_attention(part.trainer, False)
    counter = FlopCounterMode(display=False)
    try:
        with counter, part.variant.active():
            part.trainer.train_step(crops, epoch_of(part))
    finally:
        if part.variant.switches.get("attention") not in ("math", "thead_math"):
            set_fused_attention(part.trainer, True)
    return float(counter.get_total_flops())


# -------------------------------------------------------------------------------------------- data
class SyntheticJPEGs(torch.utils.data.Dataset):
    """In-memory JPEGs of ImageNet's typical size (smooth random images), decoded per item like ImageFolder."""

    def __init__(self, n: int, size: tuple[int, int] = (500, 375), seed: int = 0, quality: int = 90) -> None:
        from PIL import Image

        rng = np.random.default_rng(seed)
        self.blobs = []
        for _ in range(n):
            small = rng.integers(0, 256, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize(size, Image.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
            self.blobs.append(buf.getvalue())

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        img = Image.open(io.BytesIO(self.blobs[index]))
        return img.convert("RGB"), 0


def pipeline_dataset(cfg: dict[str, Any], n_images: int) -> tuple[torch.utils.data.Dataset, str]:
    from mokd.data import build_dataset

    spec = dict(cfg["data"])
    root = spec.get("root")
    if root is not None and not Path(root).is_absolute() and not Path(root).exists() and (REPO / root).exists():
        spec["root"] = str(REPO / root)
    try:
        dataset = build_dataset(spec, "train")
        return dataset, f"{spec['name']} at {spec.get('root')} ({len(dataset)} images)"  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return SyntheticJPEGs(n_images), f"synthetic 500x375 JPEGs decoded in memory (config data unavailable: {first[:120]})"


def bench_data(
    cfg: dict[str, Any], n_images: int, loader_workers: int, loader_batches: int, device: torch.device
) -> dict[str, Any]:
    """Both multi-crop pipelines on the same images, interleaved batch by batch.

    pil: per image, what a loader worker does (decode, seed, augment with torchvision's PIL
    transforms); batched: decode each image to uint8 (a worker's part), then augment the whole batch
    at once on the training device (the training process's part). Optionally a DataLoader with workers
    running the config's pipeline.
    """
    from mokd.data.training_crops import DecodedImages, TrainingCrops, batch_seed
    from mokd.sampling import SeededViews

    from mokd.data import MultiCropTransform
    from mokd.data.batched_multicrop import BatchedMultiCrop

    dataset, source = pipeline_dataset(cfg, n_images)
    batch = min(cfg["batch_size"], len(dataset))  # type: ignore[arg-type]
    n_batches = max(1, min(n_images, len(dataset)) // batch)  # type: ignore[arg-type]
    pil = SeededViews(dataset, MultiCropTransform.from_config(cfg["crops"]), cfg["seed"])
    decoded = DecodedImages(dataset)
    batched = BatchedMultiCrop.from_config(cfg["crops"])

    def run_pil(keys: list[tuple[int, int]]) -> float:
        t0 = time.perf_counter()
        for key in keys:
            pil[key]
        return time.perf_counter() - t0

    def run_batched(keys: list[tuple[int, int]], it: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        images = [decoded[key][0] for key in keys]
        t1 = time.perf_counter()
        images_dev = [img.to(device) for img in images]
        draws = batched.draws(torch.Generator().manual_seed(batch_seed(cfg["seed"], 0, it)), len(keys))
        crops = batched(images_dev, draws)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        del crops
        return t1 - t0, time.perf_counter() - t1

    batches = [[(i, 0) for i in range(k * batch, (k + 1) * batch)] for k in range(n_batches)]
    run_pil(batches[0][:3])  # warm-up (first-call costs of PIL, torchvision and torch)
    run_batched(batches[0], 0)
    pil_s = decode_s = augment_s = 0.0
    for k, keys in enumerate(batches):  # interleaved, so that a noisy machine slows both alike
        pil_s += run_pil(keys)
        d, a = run_batched(keys, k)
        decode_s, augment_s = decode_s + d, augment_s + a
    n = n_batches * batch
    out: dict[str, Any] = {
        "source": source,
        "images": n,
        "batch": batch,
        "crops_per_image": batched.n_crops,
        "augment_device": str(device),
        "pil": {"ms_per_image": 1e3 * pil_s / n, "images_per_s_per_worker": n / pil_s, "ms_per_batch": 1e3 * pil_s / n_batches},
        "batched": {
            "decode_ms_per_image": 1e3 * decode_s / n,
            "augment_ms_per_batch": 1e3 * augment_s / n_batches,
            "images_per_s": n / (decode_s + augment_s),
            "augment_images_per_s": n / augment_s,
        },
        "speedup_batched_vs_pil": pil_s / (decode_s + augment_s),
    }
    if loader_workers > 0 and len(dataset) >= cfg["batch_size"]:  # type: ignore[arg-type]
        crops = TrainingCrops(dataset, cfg["crops"], cfg["seed"], cfg["batch_size"], loader_workers, device)
        t0 = time.perf_counter()
        it = iter(crops.epoch(0))
        next(it)
        first = time.perf_counter() - t0
        timed = min(loader_batches, crops.iters_per_epoch - 1)
        t1 = time.perf_counter()
        for _ in range(timed):
            next(it)
        steady = time.perf_counter() - t1
        del it
        out["loader"] = {
            "pipeline": crops.pipeline,
            "workers": loader_workers,
            "first_batch_s": first,
            "batches": timed,
            "images_per_s": timed * cfg["batch_size"] / steady if timed else None,
        }
    return out


# ------------------------------------------------------------------------------------------ report
def summarise(parts: list[Part], variant: Variant, pair_roles: list[str]) -> dict[str, Any]:
    mine = {p.key: p for p in parts if p.variant.name == variant.name}
    pair, dinos = mine["pair"], [mine[f"dino:{r}"] for r in pair_roles]
    med = {k: statistics.median(p.times) for k, p in mine.items()}
    per_rep = [pa / sum(ds) for pa, *ds in zip(pair.times, *[d.times for d in dinos])]
    rows = {}
    for k, p in mine.items():
        rows[k] = {
            "label": p.label,
            "ms_per_step": 1e3 * med[k],
            "ms_per_step_all": [1e3 * t for t in p.times],
            "images_per_s": p.batch / med[k],
            "first_step_s": p.first_step_s,
            **({"memory": p.memory} if p.memory else {}),
            **({"gflop_per_step": p.flops / 1e9} if p.flops is not None else {}),
        }
    dino_ms = sum(1e3 * med[d.key] for d in dinos)
    result: dict[str, Any] = {
        "variant": variant.name,
        "description": variant.description,
        "switches": variant.switches,
        "parts": rows,
        "dino_sum": {"ms_per_step": dino_ms, "images_per_s": pair.batch / (dino_ms / 1e3)},
        "ratio_time": 1e3 * med["pair"] / dino_ms,
        "ratio_time_per_rep_median": statistics.median(per_rep) if per_rep else None,
    }
    if pair.memory and all(d.memory for d in dinos):
        dino_mb = sum(d.memory["peak_mb"] for d in dinos)
        result["dino_sum"]["peak_mb"] = dino_mb
        result["ratio_memory"] = pair.memory["peak_mb"] / dino_mb
    if pair.flops is not None and all(d.flops for d in dinos):
        result["ratio_flops"] = pair.flops / sum(d.flops for d in dinos)  # type: ignore[misc]
    if pair.first_step_s and len(pair.times):
        result["compile_or_first_step_overhead_s"] = pair.first_step_s - statistics.median(pair.times)
    return result


def end_to_end(result: dict[str, Any], data: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Step time with the config's data pipeline and num_workers (an estimate from (a), (b) and (c)).

    pil: the loader's workers decode and augment (no workers: in the training process, serial with
    the step; W workers: in parallel, so a step takes the longer of the two). batched: the workers (or
    the training process) decode, and the training process augments the batch before its step. The
    pair reads each batch once for both models; two DINO runs read it once each.
    """
    workers, batch = cfg["num_workers"], cfg["batch_size"]
    pipeline = cfg["crops"]["pipeline"]
    if pipeline == "pil":
        parallel_ms = 1e3 * batch / data["pil"]["images_per_s_per_worker"] / max(workers, 1)
        serial_ms = 0.0
    else:
        parallel_ms = data["batched"]["decode_ms_per_image"] * batch / max(workers, 1)
        serial_ms = data["batched"]["augment_ms_per_batch"] * batch / data["batch"]

    def total(step_ms: float) -> float:
        return (step_ms + serial_ms + parallel_ms) if workers == 0 else max(step_ms + serial_ms, parallel_ms)

    pair_ms = result["parts"]["pair"]["ms_per_step"]
    dino_ms = [row["ms_per_step"] for key, row in result["parts"].items() if key.startswith("dino:")]
    first_dino = dino_ms[0]
    return {
        "pipeline": pipeline,
        "num_workers": workers,
        "model": "step + data, serial" if workers == 0 else "max(step + augmentation, decoding / workers)",
        "pair_ms": total(pair_ms),
        "dino_ms": sum(total(d) for d in dino_ms),
        "ratio_time": total(pair_ms) / sum(total(d) for d in dino_ms),
        # the share of a DINO step's wall time (first model of the pair) spent preparing its crops
        "data_share_of_dino_step": 1 - first_dino / total(first_dino),
    }


def print_table(header: str, results: list[dict[str, Any]], data: dict[str, Any] | None, targets: dict[str, float]) -> None:
    print(header)
    line = f"{'variant':<15} {'part':<22} {'ms/step':>9} {'img/s':>8} {'peak MB':>9} {'(state':>8} {'+ step)':>8} {'GFLOP':>8}"
    print(line)
    print("-" * len(line))
    for r in results:
        for k, row in r["parts"].items():
            mem = row.get("memory", {})
            print(
                f"{r['variant']:<15} {row['label']:<22} {row['ms_per_step']:>9.1f} {row['images_per_s']:>8.1f} "
                f"{mem.get('peak_mb', float('nan')):>9.1f} {mem.get('persistent_mb', float('nan')):>8.1f} "
                f"{mem.get('step_mb', float('nan')):>8.1f} {row.get('gflop_per_step', float('nan')):>8.2f}"
            )
        ds = r["dino_sum"]
        print(f"{r['variant']:<15} {'(b) DINO sum':<22} {ds['ms_per_step']:>9.1f} {ds['images_per_s']:>8.1f} {ds.get('peak_mb', float('nan')):>9.1f}")
        t_ok = "met" if r["ratio_time"] <= targets["time"] else "NOT met"
        msg = f"{r['variant']:<15} ratio (a)/(b): time {r['ratio_time']:.3f} (per-rep median {r['ratio_time_per_rep_median']:.3f}; target <= {targets['time']}: {t_ok})"
        if "ratio_memory" in r:
            m_ok = "met" if r["ratio_memory"] <= targets["memory"] else "NOT met"
            msg += f", memory {r['ratio_memory']:.3f} (target <= {targets['memory']}: {m_ok})"
        if "ratio_flops" in r:
            msg += f", FLOPs {r['ratio_flops']:.3f}"
        print(msg)
        if "compile_or_first_step_overhead_s" in r and r["switches"].get("compile"):
            print(f"{r['variant']:<15} compile time (first pair step minus median step): {r['compile_or_first_step_overhead_s']:.1f} s")
        print()
    if len(results) > 1:
        base = results[0]
        print(f"pair step time relative to variant {base['variant']!r} (ratio of medians; median of per-repetition ratios): " + ", ".join(
            f"{r['variant']} {r['pair_vs_first_variant']:.3f}; {r['pair_vs_first_variant_per_rep_median']:.3f}" for r in results[1:]
        ))
        print()
    if data:
        pil, bat = data["pil"], data["batched"]
        print(
            f"(c) data, {data['images']} images in batches of {data['batch']}, {data['crops_per_image']} crops each ({data['source']}):\n"
            f"    pil:     {pil['ms_per_batch']:.1f} ms per batch ({pil['ms_per_image']:.2f} ms per image; {pil['images_per_s_per_worker']:.1f} images/s per worker)\n"
            f"    batched: {bat['augment_ms_per_batch']:.1f} ms per batch to augment on {data['augment_device']} + "
            f"{bat['decode_ms_per_image']:.3f} ms per image to decode ({bat['images_per_s']:.1f} images/s); "
            f"{data['speedup_batched_vs_pil']:.2f}x the PIL pipeline"
        )
        for r in results:
            e2e = r["end_to_end"]
            print(f"    {r['variant']}: with the config's pipeline ({e2e['pipeline']}, num_workers {e2e['num_workers']}: "
                  f"{e2e['model']}) pair {e2e['pair_ms']:.1f} ms/step, two DINO runs {e2e['dino_ms']:.1f} ms/step, "
                  f"ratio {e2e['ratio_time']:.3f}; data {100 * e2e['data_share_of_dino_step']:.0f} % of a DINO "
                  f"{r['parts'][next(k for k in r['parts'] if k.startswith('dino:'))]['label'].split()[-1]} step")
        if "loader" in data:
            ld = data["loader"]
            print(f"    DataLoader ({ld['pipeline']}), {ld['workers']} workers: first batch after {ld['first_batch_s']:.2f} s, then "
                  f"{ld['images_per_s'] or float('nan'):.1f} images/s over {ld['batches']} batches")


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/default.yaml", help="workflow config (its models, families, pretrain)")
    ap.add_argument("--pair", nargs=2, default=["r50", "vit_s"], metavar=("MODEL1", "MODEL2"), help="model roles of the pair")
    ap.add_argument("--batch", type=int, default=None, help="batch size per step (default: the config's pretrain batch_size)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if visible, else cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None, help="default: the config's (CPU always runs fp32)")
    ap.add_argument("--cpu-autocast", action="store_true",
                    help="on CPU, run the config's precision under CPU autocast anyway (the Trainer runs fp32 on CPU): "
                         "for estimating GPU memory at paper shapes, not for timing")
    ap.add_argument("--steps", type=int, default=10, help="timed steps of each part (interleaved)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps of each part first")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default on CPU: the config's resources.pretrain.threads, as the workflow runs "
                         "pre-training, at most the number of cores)")
    ap.add_argument("--variants", default="current",
                    help=f"comma-separated implementation variants, each timed as (a) and (b), interleaved; known: {','.join(VARIANTS)}")
    ap.add_argument("--compile", action="store_true", help="compile: true in the pretrain config of every variant")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--flops", action="store_true", help="also count the FLOPs of one step of each part")
    ap.add_argument("--no-timing", action="store_true", help="skip the timed steps (e.g. only --flops at paper shapes on a CPU)")
    ap.add_argument("--data-images", type=int, default=200, help="images for (c); 0 skips (c)")
    ap.add_argument("--pipeline", choices=["pil", "batched"], default=None,
                    help="multi-crop pipeline of the end-to-end estimate and the DataLoader (default: the config's crops.pipeline)")
    ap.add_argument("--loader-workers", type=int, default=0, help="also time a DataLoader with this many workers (0: no)")
    ap.add_argument("--loader-batches", type=int, default=10, help="batches timed after the loader's first")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic crops")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="check the config and the options, say what would be measured")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config_path = Path(args.config)
    if not config_path.exists() and (REPO / config_path).exists():
        config_path = REPO / config_path
    wf = load_workflow_config(config_path)
    if args.dry_run:  # no device needed: the configs are built and validated for the device asked for
        pretrain_config(wf, list(args.pair), overrides={k: v for k, v in (("batch_size", args.batch),
                        ("precision", args.precision)) if v})
        variants = [get_variant(v.strip()).name for v in args.variants.split(",") if v.strip()]
        print(f"would measure the {'-'.join(args.pair)} pair step against its DINO steps on {args.device or 'auto'} "
              f"(variants {variants}, batch {args.batch or 'the config'})")
        return {"dry_run": True}
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = args.threads
    if threads is None and device.type == "cpu":
        threads = int(wf.get("resources", {}).get("pretrain", {}).get("threads", torch.get_num_threads()) or 1)
        threads = min(threads, os.cpu_count() or threads)
    if threads:
        torch.set_num_threads(threads)
    overrides: dict[str, Any] = {"device": device.type}
    if args.batch:
        overrides["batch_size"] = args.batch
    if args.precision:
        overrides["precision"] = args.precision
    if args.compile:
        overrides["compile"] = True
    if args.pipeline:
        overrides["crops"] = {"pipeline": args.pipeline}
    roles = list(args.pair)
    pair_cfg = pretrain_config(wf, roles, overrides=overrides)
    dino_cfgs = {r: pretrain_config(wf, [r], overrides=overrides) for r in roles}
    variants = [get_variant(v.strip()) for v in args.variants.split(",") if v.strip()]
    crops = make_crops(pair_cfg, device, args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="bench_step_"))
    parts: list[Part] = []
    for variant in variants:
        parts.append(build_part(pair_cfg, "pair", f"(a) MOKD {'+'.join(roles)}", variant, tmp, args.cpu_autocast))
        for i, r in enumerate(roles):
            parts.append(build_part(dino_cfgs[r], f"dino:{r}", f"(b{i + 1}) DINO {r}", variant, tmp, args.cpu_autocast))
    precision = parts[0].trainer.precision
    header = (
        f"MOKD step benchmark: {args.config}, pair {' + '.join(roles)}, batch {pair_cfg['batch_size']}, "
        f"crops 2x{pair_cfg['crops']['global_size']} + {pair_cfg['crops']['n_local']}x{pair_cfg['crops']['local_size']} px, "
        f"K={pair_cfg['out_dim']}, T-Head D={pair_cfg['t_head']['dim']} depth {pair_cfg['t_head']['depth']}; "
        f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
        f"{torch.get_num_threads()} thread(s), precision {precision}, "
        f"{args.steps} interleaved steps after {args.warmup} warm-up"
    )
    print(header, file=sys.stderr, flush=True)

    # Warm-up (the first step of a compiled part is its compilation).
    for part in parts:
        for w in range(max(args.warmup, 1)):
            dt = run_step(part, crops)
            if w == 0:
                part.first_step_s = dt
        print(f"[bench] warmed up {part.variant.name} {part.label}: first step {part.first_step_s:.2f} s", file=sys.stderr, flush=True)

    if not args.no_timing:
        for rep in range(args.steps):
            order = parts if rep % 2 == 0 else parts[::-1]
            for part in order:
                part.times.append(run_step(part, crops))
    else:
        for part in parts:
            part.times.append(part.first_step_s)

    if not args.no_memory:
        for part in parts:
            part.memory = measure_memory(part, crops)
    if args.flops:
        for part in parts:
            part.flops = count_flops(part, crops)

    data = None
    if args.data_images > 0:
        data = bench_data(pair_cfg, args.data_images, args.loader_workers, args.loader_batches, device)

    targets = {"time": 1.15, "memory": 1.10}
    if args.no_timing:
        header += "; NO TIMING: the times are each part's first step (warm-up), not a measurement"
    results = [summarise(parts, v, roles) for v in variants]
    if data:
        for r in results:
            r["end_to_end"] = end_to_end(r, data, pair_cfg)
    first_pair = next(p for p in parts if p.key == "pair")
    for r, v in zip(results, variants):
        pair = next(p for p in parts if p.key == "pair" and p.variant.name == v.name)
        r["pair_vs_first_variant"] = statistics.median(pair.times) / statistics.median(first_pair.times)
        r["pair_vs_first_variant_per_rep_median"] = statistics.median(a / b for a, b in zip(pair.times, first_pair.times))
    print_table(header, results, data, targets)
    report = {
        "header": header,
        "args": vars(args),
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "precision": precision,
            "memory_method": (
                "torch.cuda.max_memory_allocated during one step (reset before it) above what was allocated when it began, plus the part's own state"
                if device.type == "cuda"
                else "torch.profiler allocation events (profile_memory=True): peak bytes allocated during one step above what was live when it began, plus the part's own state"
            ),
        },
        "pair_config": pair_cfg,
        "targets": targets,
        "results": results,
        "data_pipeline": data,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        print(f"[bench] wrote {args.out}", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    del parts
    gc.collect()
    return report


if __name__ == "__main__":
    main()
