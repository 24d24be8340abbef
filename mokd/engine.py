"""The training loop: a MOKD pair of any kind, or one model (the DINO baseline), with the same code.

Per step, each teacher sees the 2 global crops once; its tokens of global crop 1 are reused by the
search. Each student sees every crop once per resolution. The four loss terms of model m are

    L_m = L_sm + L_st + lambda_m * (L_cm + L_ct)

(docs/METHOD_NOTES.md §4); a term switched off in `losses` is left out, and a single model has no cross
terms. Teacher outputs and query tokens are detached, so no gradient crosses between the models. Each
model has its own optimizer(s), loss scaler, clipping and EMA update. Because model m's loss needs no
other student, the students run one after the other, each forward followed by its own backward: a pair
step holds one student's activations at a time.
"""

from __future__ import annotations

import json
import math
import random
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

from mokd.checkpoint import CheckpointError, atomic_save, export_teacher, load_file
from mokd.config import ConfigError, config_hash, diff_keys
from mokd.distributed import DistInfo
from mokd.losses import DINOLoss, entropy, search_loss_from_log_probs, student_log_probs
from mokd.models.network import ModelSlot, ViewOutputs
from mokd.optim import ScheduledOptimizer, scheduled_optimizer
from mokd.provenance import code_version, now
from mokd.data.training_crops import TrainingCrops
from mokd.sampling import seed_everything
from mokd.schedules import cosine_schedule, duration_iters, teacher_temperature

# Keys that change how a run is operated, not what it computes: allowed to differ on resume.
OPERATIONAL_KEYS = ("num_workers", "log_every_iters", "checkpoint_every_iters", "device", "compile")
TERMS = ("sm", "st", "cm", "ct")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class ActiveTerms:
    """Which loss terms are on, given the config and whether this is a pair."""

    sm: bool
    st: bool
    cm: bool
    ct: bool
    search: bool

    @classmethod
    def from_config(cls, losses: dict[str, Any], n_models: int) -> "ActiveTerms":
        pair = n_models == 2
        return cls(
            sm=losses["self_mlp"],
            st=losses["self_thead"],
            cm=pair and losses["cross_mlp"],
            ct=pair and losses["cross_thead"],
            search=pair and losses["cross_thead"] and losses["search"],
        )

    @property
    def t_head(self) -> bool:
        return self.st or self.ct

    def names(self) -> list[str]:
        return [t for t in TERMS if getattr(self, t)]


@dataclass
class ModelState:
    """A slot with its optimizers, scaler, loss centres and schedules."""

    slot: ModelSlot
    student: nn.Module  # the slot's student, DDP-wrapped when distributed
    optimizers: list[ScheduledOptimizer]
    scaler: torch.amp.GradScaler
    losses: nn.ModuleDict
    momentum: np.ndarray
    teacher_temp: np.ndarray
    lam: float
    clip_grad: float
    freeze_iters: int
    last_layer_params: list[nn.Parameter] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("config key 'device': cuda requested but no GPU is visible")
        return torch.device("cuda")
    return torch.device("cpu")


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
        self.total_iters = self.iters_per_epoch * cfg["epochs"]
        self.models = [self._build_model(m) for m in cfg["models"]]
        self.step = 0
        self.elapsed_s = 0.0
        self.images_seen = 0
        self.config_hash = config_hash(self._hashed_config(cfg))

    # ----------------------------------------------------------------------------------------- set-up
    def _build_model(self, mcfg: dict[str, Any]) -> ModelState:
        cfg = self.cfg
        slot = ModelSlot(mcfg["name"], mcfg, cfg, with_t_head=self.terms.t_head).to(self.device)
        if self.device.type == "cuda" and cfg["channels_last"] and slot.student.backbone.kind == "cnn":
            slot.to(memory_format=torch.channels_last)
        student: nn.Module = slot.student
        if self.dist.world_size > 1:
            student = DistributedDataParallel(
                student, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None
            )
        if cfg["compile"]:
            student = torch.compile(student)
        named = list(slot.student.named_parameters())
        t_head_cfg = mcfg["t_head_optimizer"]
        main = [(n, p) for n, p in named if t_head_cfg is None or not n.startswith("t_head.")]
        opts = [scheduled_optimizer(main, mcfg["optimizer"], cfg["batch_size"], cfg["epochs"], self.iters_per_epoch)]
        if t_head_cfg is not None and slot.student.t_head is not None:
            t_params = [(n, p) for n, p in named if n.startswith("t_head.")]
            opts.append(scheduled_optimizer(t_params, t_head_cfg, cfg["batch_size"], cfg["epochs"], self.iters_per_epoch))
        lcfg = cfg["losses"]
        losses = nn.ModuleDict(
            {t: DINOLoss(cfg["out_dim"], lcfg["student_temp"], lcfg["center_momentum"]) for t in ("sm", "st", "cm")}
        ).to(self.device)
        tt = mcfg["teacher_temp"]
        mt = mcfg["momentum_teacher"]
        return ModelState(
            slot=slot,
            student=student,
            optimizers=opts,
            scaler=torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16"),
            losses=losses,
            momentum=cosine_schedule(mt["start"], mt["end"], cfg["epochs"], self.iters_per_epoch),
            teacher_temp=teacher_temperature(tt["start"], tt["end"], tt, cfg["epochs"], self.iters_per_epoch),
            lam=mcfg["lambda"],
            clip_grad=mcfg["clip_grad"],
            freeze_iters=duration_iters(mcfg, "freeze_last_layer", self.iters_per_epoch, self.total_iters, whole_epochs=True),
            last_layer_params=[p for m in slot.student.last_layers() for p in m.parameters() if p.requires_grad],
        )

    @staticmethod
    def _hashed_config(cfg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in cfg.items() if k not in OPERATIONAL_KEYS}

    # ------------------------------------------------------------------------------------ the step
    def _autocast(self) -> Any:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def teacher_outputs(self, crops: list[torch.Tensor]) -> list[ViewOutputs]:
        """Every teacher on the 2 global crops, once per step (no gradients)."""
        with self._autocast(), torch.no_grad():
            return [m.slot.teacher(crops[:2]) for m in self.models]

    def model_losses(
        self, i: int, crops: list[torch.Tensor], teachers: list[ViewOutputs], epoch: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Student i's forward pass and its loss terms, from its own and the other model's teacher outputs.

        Model i's terms depend on no other student: the other model enters only through its teacher's
        (detached) outputs and tokens. So each model's forward and backward can run on its own.
        """
        n_views = len(crops)
        batch = crops[0].shape[0]
        model = self.models[i]
        temp = float(model.teacher_temp[self.step])
        with self._autocast():
            s = model.student(crops, with_query=self.terms.search)
            t = teachers[i]
            student_temp = self.cfg["losses"]["student_temp"]
            # Each head's student log-probabilities once, shared by its terms (L_sm and L_cm; L_st and L_ct).
            mlp_lp = student_log_probs(s.mlp, student_temp) if self.terms.sm or self.terms.cm else None
            thead_lp = student_log_probs(s.thead, student_temp) if self.terms.st or self.terms.ct else None  # type: ignore[arg-type]
            terms: dict[str, torch.Tensor] = {}
            if self.terms.sm:
                terms["sm"] = model.losses["sm"].from_log_probs(mlp_lp, t.mlp, temp, n_views)
            if self.terms.st:
                terms["st"] = model.losses["st"].from_log_probs(thead_lp, t.thead, temp, n_views)
            if self.terms.cm:
                terms["cm"] = model.losses["cm"].from_log_probs(mlp_lp, teachers[1 - i].mlp, temp, n_views)
            if self.terms.ct:
                searched = self._searched_targets(i, s, teachers[1 - i], n_views, batch)
                terms["ct"] = search_loss_from_log_probs(searched, thead_lp[2 * batch :], temp)  # type: ignore[index]
            stats = self.monitor_stats(model, t, temp)
        return terms, stats

    @staticmethod
    @torch.no_grad()
    def monitor_stats(model: ModelState, teacher: ViewOutputs, temp: float) -> dict[str, float]:
        """What the log follows to spot a collapse: the MLP-Head teacher's entropy and its centre's norm."""
        probs = model.losses["sm"].teacher_probs(teacher.mlp.float(), temp)
        return {
            "teacher_entropy": float(entropy(probs)),
            "center_norm": float(model.losses["sm"].center.norm()),
            "teacher_temp": temp,
        }

    def compute_losses(self, crops: list[torch.Tensor], epoch: int) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, float]]]:
        """Forward every network and return, per model, its loss terms and monitoring values."""
        teachers = self.teacher_outputs(crops)
        results = [self.model_losses(i, crops, teachers, epoch) for i in range(len(self.models))]
        return [r[0] for r in results], [r[1] for r in results]

    def total_loss(self, model: ModelState, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """L = L_sm + L_st + lambda * (L_cm + L_ct), over the terms that are on."""
        own = sum(terms[t] for t in ("sm", "st") if t in terms)
        cross = sum(terms[t] for t in ("cm", "ct") if t in terms)
        return own + model.lam * cross  # type: ignore[return-value]

    def _searched_targets(self, i: int, student: ViewOutputs, other_teacher: ViewOutputs, n_views: int, batch: int) -> torch.Tensor:
        """ŝ: the other teacher's T-Head on its global-1 tokens, searched with this student's local queries."""
        n_local = n_views - 2
        with torch.no_grad():
            if not self.terms.search:
                return other_teacher.thead[:batch].repeat(n_local, 1)
            tokens, grid = other_teacher.first_tokens  # type: ignore[misc]
            queries = student.query[2 * batch :].detach()  # type: ignore[index]
            head = self.models[1 - i].slot.teacher.t_head
            return head.forward_projected(tokens.repeat(n_local, 1, 1), grid, queries)  # type: ignore[union-attr]

    def train_step(self, crops: list[torch.Tensor], epoch: int) -> dict[str, Any]:
        """One optimisation step of every model; returns the logged values.

        The teachers run first; then each model in turn runs its student forward and backward, so that
        only one student's activations are alive at a time (peak memory: the larger model's step, not
        the sum of both). The optimizer steps and EMA updates come after every backward, so model 2's
        search still uses model 1's teacher as it was at the start of the step.
        """
        step = self.step
        for model in self.models:
            for opt in model.optimizers:
                opt.apply(step)
                opt.optimizer.zero_grad(set_to_none=True)
        teachers = self.teacher_outputs(crops)
        terms_all, stats_all, totals = [], [], []
        for i, model in enumerate(self.models):
            terms, stats = self.model_losses(i, crops, teachers, epoch)
            total = self.total_loss(model, terms)
            self._check_finite([terms], [model])
            model.scaler.scale(total).backward()  # type: ignore[union-attr]
            terms_all.append({k: v.detach() for k, v in terms.items()})
            stats_all.append(stats)
            totals.append(total.detach())
            del terms, total
        del teachers
        self.apply_updates(epoch, step)
        self.step += 1
        return self.step_record(step, epoch, terms_all, stats_all, totals)

    def apply_updates(self, epoch: int, step: int) -> None:
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

    def step_record(
        self,
        step: int,
        epoch: int,
        terms_all: list[dict[str, torch.Tensor]],
        stats_all: list[dict[str, float]],
        totals: list[torch.Tensor],
    ) -> dict[str, Any]:
        """The logged values of one step: per model its loss, terms, schedules and monitoring values."""
        record: dict[str, Any] = {"step": step, "epoch": epoch}
        for model, terms, stats, total in zip(self.models, terms_all, stats_all, totals):
            record[model.slot.name] = {
                "loss": float(total.detach()),
                **{f"L_{t}": float(v.detach()) for t, v in terms.items()},
                "lr": float(model.optimizers[0].lr[step]),
                "wd": float(model.optimizers[0].weight_decay[step]),
                "momentum": float(model.momentum[step]),
                **stats,
            }
        return record

    def _check_finite(self, terms_all: list[dict[str, torch.Tensor]], models: list[ModelState]) -> None:
        values = torch.stack([v.detach().float() for terms in terms_all for v in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        for model, terms in zip(models, terms_all):
            for name, value in terms.items():
                if not math.isfinite(float(value.detach())):
                    raise NonFiniteLossError(
                        f"model {model.slot.name!r}: loss term L_{name} is {float(value.detach())} at step {self.step}; "
                        f"stopped without saving, the last good checkpoint is {self.checkpoint_path}"
                    )

    # --------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "images_seen": self.images_seen,
            "config": self._hashed_config(self.cfg),
            "config_hash": self.config_hash,
            "models": [
                {
                    "name": m.slot.name,
                    "slot": m.slot.state_dict(),
                    "optimizers": [o.optimizer.state_dict() for o in m.optimizers],
                    "scaler": m.scaler.state_dict(),
                    "losses": m.losses.state_dict(),
                }
                for m in self.models
            ],
            "rng": {
                "torch": torch.random.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            atomic_save(self.state_dict(), self.checkpoint_path)

    def maybe_resume(self) -> bool:
        """Load checkpoint.pt from the output folder if there is one.

        A checkpoint of another config is refused (naming the keys that differ), or with
        `restart_on_config_change` set aside as checkpoint.<old hash>.pt so that nothing is lost.
        """
        if not self.checkpoint_path.exists():
            return False
        state = load_file(self.checkpoint_path)
        if state.get("config_hash") != self.config_hash:
            keys = diff_keys(state.get("config", {}), self._hashed_config(self.cfg))
            if self.restart_on_config_change:
                kept = self.checkpoint_path.with_name(f"checkpoint.{state.get('config_hash')}.pt")
                self.checkpoint_path.replace(kept)
                print(f"[mokd] config changed ({', '.join(keys)}): starting over; old checkpoint kept as {kept}", file=sys.stderr)
                return False
            raise CheckpointError(
                f"{self.checkpoint_path} was written with another config (keys that differ: {', '.join(keys) or '?'}); "
                "use another --out folder, or delete the checkpoint to start over"
            )
        for model, saved in zip(self.models, state["models"]):
            model.slot.load_state_dict(saved["slot"])
            for opt, opt_state in zip(model.optimizers, saved["optimizers"]):
                opt.optimizer.load_state_dict(opt_state)
            model.scaler.load_state_dict(saved["scaler"])
            model.losses.load_state_dict(saved["losses"])
        self.step = state["step"]
        self.elapsed_s = state["elapsed_s"]
        self.images_seen = state["images_seen"]
        rng = state["rng"]
        torch.random.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        return True

    # ------------------------------------------------------------------------------------ the loop
    def train(self, stop_after: int | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Run (or resume) to the end, export the teachers and return the run summary.

        `stop_after` ends the run after that many global steps without a final checkpoint, the way a
        killed job would (used by the resume tests). `should_stop` is asked between steps (the point at
        which periodic checkpoints are saved); when it says yes, the run saves a checkpoint and returns
        {"stopped_at": step, "checkpointed": True} (a preempted SLURM job, see mokd/launch.py).
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.maybe_resume()
        log = open(self.out_dir / "log.jsonl", "a") if self.dist.is_main else None
        if self.dist.is_main:
            print(
                f"[mokd] {'resuming at step ' + str(self.step) if resumed else 'starting'}: "
                f"{[m.slot.name for m in self.models]}, terms {self.terms.names()}, {self.total_iters} steps, "
                f"device {self.device}, precision {self.precision}, out {self.out_dir}",
                file=sys.stderr,
            )
        progress = _progress(self.total_iters, self.step, enabled=self.dist.is_main)
        try:
            while self.step < self.total_iters:
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
                    progress.set_postfix({m.slot.name: f"{record[m.slot.name]['loss']:.3f}" for m in self.models})
                    end_of_epoch = self.step % self.iters_per_epoch == 0
                    if log and (self.step % self.cfg["log_every_iters"] == 0 or end_of_epoch or self.step == 1):
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    if epoch >= 1 and not warned:
                        warned = self._warn_collapse(record)
                    if stop_after is not None and self.step >= stop_after:
                        return {"stopped_at": self.step}
                    if self.step % self.cfg["checkpoint_every_iters"] == 0 or end_of_epoch:
                        self.save_checkpoint()
                    if should_stop is not None and self.step < self.total_iters and should_stop():
                        self.save_checkpoint()
                        return {"stopped_at": self.step, "checkpointed": True}
        finally:
            progress.close()
            if log:
                log.close()
        return self.finish()

    def _warn_collapse(self, record: dict[str, Any]) -> bool:
        limit = self.cfg["collapse_warning"] * math.log(self.cfg["out_dim"])
        warned = False
        for model in self.models:
            ent = record[model.slot.name]["teacher_entropy"]
            if ent > limit:
                warnings.warn(
                    f"model {model.slot.name!r}: teacher entropy {ent:.3f} is near ln K = {math.log(self.cfg['out_dim']):.3f} "
                    f"at step {self.step}: the teacher may be collapsing to a uniform output",
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
            "models": [m.slot.name for m in self.models],
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
            self.export_dir.mkdir(parents=True, exist_ok=True)
            for model in self.models:
                teacher = model.slot.teacher
                t_cfg = None
                if teacher.t_head is not None:
                    tc = self.cfg["t_head"]
                    t_cfg = {
                        "dim": tc["dim"], "out_dim": self.cfg["out_dim"], "depth": tc["depth"],
                        "num_heads": tc["num_heads"], "mlp_ratio": tc["mlp_ratio"],
                        "base_grid": teacher.t_head.base_grid,
                        "norm_last_layer": model.slot.cfg["mlp_head"]["norm_last_layer"],
                    }
                export_teacher(
                    self.export_dir / f"teacher_{model.slot.name}.pt",
                    model.slot.name,
                    teacher.backbone,
                    teacher.t_head,
                    t_cfg,
                    {"config_hash": self.config_hash, "code_version": code_version(), "steps": self.step},
                )
            tmp = self.export_dir / "summary.json.tmp"
            tmp.write_text(json.dumps(summary, indent=2))
            tmp.replace(self.export_dir / "summary.json")
        return summary


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
