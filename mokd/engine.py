"""The training loop: a MOKD pair of any kind, or one model (the DINO baseline), with the same code.

A step: every teacher sees the 2 global crops once (its tokens of global crop 1 are reused by the
search); then each model in turn runs its student on every crop (one backbone pass per resolution),
its loss terms (mokd/objective.py) and its own backward — model m's loss needs no other student, so
one student's activations are alive at a time; then every model clips, steps its optimizer(s) and
updates its teacher (EMA). Each model has its own optimizer(s), loss scaler, clipping and schedules.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mokd.atomic import write_text
from mokd.checkpoint import (
    export_teacher, resume_state, restore_training_state, save_checkpoint, training_state, trim_log,
)
from mokd.config import ConfigError, config_hash
from mokd.data.training_crops import TrainingCrops
from mokd.distributed import DistInfo, resolve_device
from mokd.models.network import ModelSlot, ViewOutputs
from mokd.objective import ActiveTerms, ModelObjective
from mokd.optim import ScheduledOptimizer, scheduled_optimizer
from mokd.provenance import code_version, now
from mokd.sampling import seed_everything
from mokd.schedules import cosine_schedule, duration_iters, teacher_temperature

# Keys that change how a run is operated, not what it computes: allowed to differ on resume.
OPERATIONAL_KEYS = ("num_workers", "log_every_iters", "checkpoint_every_iters", "device", "compile")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class ModelState:
    """A slot (student and teacher) with its optimizers, scaler, objective and schedules."""

    slot: ModelSlot
    student: nn.Module  # the slot's student, DDP-wrapped and/or compiled when asked
    optimizers: list[ScheduledOptimizer]
    scaler: torch.amp.GradScaler
    objective: ModelObjective
    momentum: np.ndarray  # per iteration: EMA momentum of the teacher
    teacher_temp: np.ndarray  # per iteration: the model's own terms (L_sm, L_st)
    cross_teacher_temp: np.ndarray  # per iteration: its cross terms (L_cm, L_ct)
    clip_grad: float
    freeze_iters: int  # the prototype layers get no update before this iteration
    last_layer_params: list[nn.Parameter] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.slot.name


def clip_gradients(params: list[nn.Parameter], clip: float) -> None:
    """DINO's clipping: each parameter tensor's gradient norm is capped at `clip` on its own.

    The same arithmetic as a loop over the tensors, in a few foreach calls instead of three small
    operations per tensor.
    """
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch.stack(torch._foreach_norm(grads, 2))
    coefs = torch.clamp(clip / (norms + 1e-6), max=1.0)
    torch._foreach_mul_(grads, list(coefs.unbind()))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def use_sync_batchnorm(cfg: dict[str, Any], device: torch.device, dist: DistInfo) -> bool:
    """SyncBatchNorm where the authors use it: several CUDA processes (torch's runs on GPUs only); a CPU
    or single-process run keeps plain BatchNorm, which computes the same statistics there."""
    return bool(cfg["sync_batchnorm"]) and dist.world_size > 1 and device.type == "cuda"


def convert_sync_batchnorm(slot: ModelSlot) -> int:
    """Convert every BatchNorm of the slot's student and teacher to SyncBatchNorm (same parameters and
    statistics, batch statistics all-reduced across processes); returns how many were converted."""
    count = 0
    for name in ("student", "teacher"):
        net = getattr(slot, name)
        count += sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
        setattr(slot, name, nn.SyncBatchNorm.convert_sync_batchnorm(net))
    return count


def build_model_state(
    mcfg: dict[str, Any], cfg: dict[str, Any], terms: ActiveTerms, device: torch.device, dist: DistInfo,
    iters_per_epoch: int, precision: str,
) -> ModelState:
    """One model of a run: networks, its optimizer (the T-Head may be a group with its own schedules),
    objective, schedules."""
    epochs, total = cfg["epochs"], cfg["epochs"] * iters_per_epoch
    slot = ModelSlot(mcfg["name"], mcfg, cfg, with_t_head=terms.t_head).to(device)
    if use_sync_batchnorm(cfg, device, dist):
        convert_sync_batchnorm(slot)
    if device.type == "cuda" and cfg["channels_last"] and slot.student.backbone.kind == "cnn":
        slot.to(memory_format=torch.channels_last)
    student: nn.Module = slot.student
    if dist.world_size > 1:
        student = DistributedDataParallel(student, device_ids=[dist.local_rank] if device.type == "cuda" else None)
    if cfg["compile"]:
        student = torch.compile(student)
    t_head_group = mcfg["t_head_group"] if slot.student.t_head is not None else None
    optimizer = scheduled_optimizer(
        list(slot.student.named_parameters()), mcfg["optimizer"], cfg["batch_size"], epochs, iters_per_epoch, t_head_group
    )
    lcfg, mt = cfg["losses"], mcfg["momentum_teacher"]
    tt = mcfg["teacher_temp"]
    ct = mcfg["cross_teacher_temp"] or tt
    return ModelState(
        slot=slot,
        student=student,
        optimizers=[optimizer],
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        objective=ModelObjective(terms, cfg["out_dim"], lcfg["student_temp"], lcfg["center_momentum"], mcfg["lambda"]).to(device),
        momentum=cosine_schedule(mt["start"], mt["end"], epochs, iters_per_epoch),
        teacher_temp=teacher_temperature(tt["start"], tt["end"], tt, epochs, iters_per_epoch),
        cross_teacher_temp=teacher_temperature(ct["start"], ct["end"], ct, epochs, iters_per_epoch),
        clip_grad=mcfg["clip_grad"],
        freeze_iters=duration_iters(mcfg, "freeze_last_layer", iters_per_epoch, total, whole_epochs=True),
        last_layer_params=[p for m in slot.student.last_layers() for p in m.parameters() if p.requires_grad],
    )


class Trainer:
    """Builds models, data and optimizers from a validated pretrain config and runs the loop."""

    def __init__(
        self,
        cfg: dict[str, Any],
        out_dir: str | Path,
        dataset: torch.utils.data.Dataset,
        dist_info: DistInfo | None = None,
        export_dir: str | Path | None = None,
        restart_on_config_change: bool = False,
    ) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.export_dir = Path(export_dir) if export_dir is not None else self.out_dir
        self.restart_on_config_change = restart_on_config_change
        self.dist = dist_info or DistInfo()
        self.device = resolve_device(cfg["device"])
        self.precision = cfg["precision"] if self.device.type == "cuda" else "fp32"
        self.terms = ActiveTerms.from_config(cfg["losses"], len(cfg["models"]))
        if self.terms.ct and cfg["crops"]["n_local"] < 1:
            raise ConfigError("config key 'crops.n_local': the cross T-Head term (losses.cross_thead) needs local crops")
        seed_everything(cfg["seed"])
        self.data = TrainingCrops(
            dataset, cfg["crops"], cfg["seed"], cfg["batch_size"], cfg["num_workers"], self.device,
            self.dist.rank, self.dist.world_size,
        )
        self.iters_per_epoch = self.data.iters_per_epoch
        self.total_iters = self.iters_per_epoch * cfg["epochs"]  # the length every schedule is made for
        # where this run stops: the whole schedule, or its first `max_steps` steps (a rehearsal)
        self.run_iters = min(self.total_iters, cfg["max_steps"] or self.total_iters)
        self.models = [
            build_model_state(m, cfg, self.terms, self.device, self.dist, self.iters_per_epoch, self.precision)
            for m in cfg["models"]
        ]
        self.step = 0
        self.elapsed_s = 0.0
        self.images_seen = 0
        self.hashed_config = {k: v for k, v in cfg.items() if k not in OPERATIONAL_KEYS}
        self.config_hash = config_hash(self.hashed_config)

    # ------------------------------------------------------------------------------------ the step
    def _autocast(self) -> Any:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def teacher_outputs(self, crops: list[torch.Tensor]) -> list[ViewOutputs]:
        """Every teacher on the 2 global crops, once per step (no gradients)."""
        with self._autocast(), torch.no_grad():
            return [m.slot.teacher(crops[:2]) for m in self.models]

    def student_terms(self, i: int, crops: list[torch.Tensor], teachers: list[ViewOutputs]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Student i on every crop, and its loss terms against its own and the other model's teacher."""
        model = self.models[i]
        other = self.models[1 - i] if len(self.models) == 2 else None
        temp, cross_temp = float(model.teacher_temp[self.step]), float(model.cross_teacher_temp[self.step])
        with self._autocast():
            student = model.student(crops, with_query=self.terms.search)
            terms = model.objective(
                student, teachers[i], teachers[1 - i] if other else None, other.slot.teacher.t_head if other else None,
                temp, cross_temp,
            )
        stats = model.objective.monitor(teachers[i], temp)
        if other is not None:
            stats["cross_teacher_temp"] = cross_temp
        return terms, stats

    def compute_losses(self, crops: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Every model's loss terms for one batch, without a step (for inspection and tests)."""
        teachers = self.teacher_outputs(crops)
        return [self.student_terms(i, crops, teachers)[0] for i in range(len(self.models))]

    def train_step(self, crops: list[torch.Tensor], epoch: int) -> dict[str, Any]:
        """One optimisation step of every model (see the module docstring); returns the logged values."""
        step = self.step
        for model in self.models:
            for opt in model.optimizers:
                opt.apply(step)
                opt.optimizer.zero_grad(set_to_none=True)
        teachers = self.teacher_outputs(crops)
        logged = []
        for i, model in enumerate(self.models):
            terms, stats = self.student_terms(i, crops, teachers)
            total = model.objective.total(terms)
            self.check_finite(model, terms)
            model.scaler.scale(total).backward()  # type: ignore[union-attr]
            logged.append(({k: float(v.detach()) for k, v in terms.items()}, stats, float(total.detach())))
            del terms, total
        del teachers
        self.apply_updates(step)
        self.step += 1
        return self.step_record(step, epoch, logged)

    def apply_updates(self, step: int) -> None:
        """After every backward: per model, unscale, clip, drop frozen last-layer gradients, step, EMA."""
        for model in self.models:
            params = [p for p in model.slot.student.parameters() if p.requires_grad]
            for opt in model.optimizers:
                model.scaler.unscale_(opt.optimizer)
            if model.clip_grad:
                clip_gradients(params, model.clip_grad)
            if step < model.freeze_iters:
                for p in model.last_layer_params:
                    p.grad = None
            for opt in model.optimizers:
                model.scaler.step(opt.optimizer)
            model.scaler.update()
            model.slot.update_teacher(float(model.momentum[step]))

    def step_record(self, step: int, epoch: int, logged: list[tuple[dict[str, float], dict[str, float], float]]) -> dict[str, Any]:
        """The logged values of one step: per model its loss, terms, schedules and monitoring values."""
        record: dict[str, Any] = {"step": step, "epoch": epoch}
        for model, (terms, stats, total) in zip(self.models, logged):
            record[model.name] = {
                "loss": total,
                **{f"L_{t}": v for t, v in terms.items()},
                "lr": float(model.optimizers[0].lr[step]),
                "wd": float(model.optimizers[0].weight_decay[step]),
                "momentum": float(model.momentum[step]),
                **stats,
            }
            t_head = model.optimizers[0].group_schedule("t_head")
            if t_head is not None:  # a T-Head group on schedules of its own (t_head_group)
                record[model.name]["t_head_lr"] = float(t_head.lr[step])
                record[model.name]["t_head_wd"] = 0.0 if t_head.weight_decay is None else float(t_head.weight_decay[step])
        return record

    def check_finite(self, model: ModelState, terms: dict[str, torch.Tensor]) -> None:
        """Stop on a NaN or infinite term, naming it (the last periodic checkpoint stays as it was)."""
        values = torch.stack([v.detach().float() for v in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        name, value = next((n, float(v.detach())) for n, v in terms.items() if not math.isfinite(float(v.detach())))
        raise NonFiniteLossError(
            f"model {model.name!r}: loss term L_{name} is {value} at step {self.step}; "
            f"stopped without saving, the last good checkpoint is {self.checkpoint_path}"
        )

    # ------------------------------------------------------------------------------------ the loop
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            save_checkpoint(training_state(self), self.checkpoint_path)

    def train(self, stop_after: int | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Run (or resume from checkpoint.pt) to the end, export the teachers and return the run summary.

        `stop_after` ends the run after that many global steps without a final checkpoint, the way a
        killed job would (used by the resume tests). `should_stop` is asked between steps (the point at
        which periodic checkpoints are saved); when it says yes, the run saves a checkpoint and returns
        {"stopped_at": step, "checkpointed": True} (a preempted SLURM job, see mokd/launch.py).
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = resume_state(self.out_dir, self.config_hash, self.hashed_config, self.restart_on_config_change)
        if state is not None:
            restore_training_state(self, state)
        if self.dist.is_main:
            trim_log(self.out_dir / "log.jsonl", self.step)
        log = open(self.out_dir / "log.jsonl", "a") if self.dist.is_main else None
        if self.dist.is_main:
            print(
                f"[mokd] {'resuming at step ' + str(self.step) if state else 'starting'}: "
                f"{[m.name for m in self.models]}, terms {self.terms.names()}, {self.run_iters} steps"
                f"{f' of a {self.total_iters}-step schedule' if self.run_iters < self.total_iters else ''}, "
                f"device {self.device}, precision {self.precision}, out {self.out_dir}",
                file=sys.stderr,
            )
        progress = _progress(self.run_iters, self.step, enabled=self.dist.is_main)
        try:
            while self.step < self.run_iters:
                epoch, start_iter = divmod(self.step, self.iters_per_epoch)
                warned = False
                t_last = time.perf_counter()
                for crops in self.data.epoch(epoch, start_iter):
                    record = self.train_step(crops, epoch)
                    t_now = time.perf_counter()
                    self.elapsed_s += t_now - t_last  # data loading included
                    t_last = t_now
                    self.images_seen += self.cfg["batch_size"]
                    progress.update(1)
                    progress.set_postfix({m.name: f"{record[m.name]['loss']:.3f}" for m in self.models})
                    end_of_epoch = self.step % self.iters_per_epoch == 0
                    last = self.step == self.run_iters
                    if log and (self.step % self.cfg["log_every_iters"] == 0 or end_of_epoch or self.step == 1 or last):
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    if epoch >= 1 and not warned:
                        warned = self._warn_collapse(record)
                    if stop_after is not None and self.step >= stop_after:
                        return {"stopped_at": self.step}
                    if self.step % self.cfg["checkpoint_every_iters"] == 0 or end_of_epoch:
                        self.save_checkpoint()
                    if last:
                        break
                    if should_stop is not None and self.step < self.run_iters and should_stop():
                        self.save_checkpoint()
                        return {"stopped_at": self.step, "checkpointed": True}
        finally:
            progress.close()
            if log:
                log.close()
        return self.finish()

    def _warn_collapse(self, record: dict[str, Any]) -> bool:
        ln_k = math.log(self.cfg["out_dim"])
        warned = False
        for model in self.models:
            ent = record[model.name]["teacher_entropy"]
            if ent > self.cfg["collapse_warning"] * ln_k:
                warnings.warn(
                    f"model {model.name!r}: teacher entropy {ent:.3f} is near ln K = {ln_k:.3f} at step {self.step}: "
                    "the teacher may be collapsing to a uniform output",
                    RuntimeWarning,
                    stacklevel=2,
                )
                warned = True
        return warned

    def finish(self) -> dict[str, Any]:
        """Export every teacher and write the run summary (time, throughput, peak memory)."""
        summary = {
            "config_hash": self.config_hash,
            "code_version": code_version(),
            "finished": now(),
            "steps": self.step,
            "epochs": self.cfg["epochs"],
            "models": [m.name for m in self.models],
            "terms": self.terms.names(),
            "train_time_s": self.elapsed_s,
            "images_per_s": self.images_seen / self.elapsed_s if self.elapsed_s else None,
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "world_size": self.dist.world_size,
            "peak_memory_mb": peak_memory_mb(self.device),
            "peak_memory_kind": "max_memory_allocated per GPU" if self.device.type == "cuda" else "peak RSS of the process",
        }
        if self.dist.is_main:
            provenance = {"config_hash": self.config_hash, "code_version": code_version(), "steps": self.step}
            for model in self.models:
                teacher = model.slot.teacher
                export_teacher(self.export_dir / f"teacher_{model.name}.pt", model.name, teacher.backbone, teacher.t_head, provenance)
            write_text(self.export_dir / "summary.json", json.dumps(summary, indent=2))
        return summary


def build_trainer(
    cfg: dict[str, Any], out: str | Path, export_dir: str | Path | None = None, restart_on_config_change: bool = False
) -> Trainer:
    """The trainer of a validated pretrain config, with its dataset, in this process's distributed context."""
    from mokd.data import build_dataset
    from mokd.distributed import init_distributed

    dist_info = init_distributed(resolve_device(cfg["device"]))
    return Trainer(cfg, out, build_dataset(cfg["data"], "train"), dist_info, export_dir, restart_on_config_change)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        desc="pretrain",
        unit="step",
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
    )
