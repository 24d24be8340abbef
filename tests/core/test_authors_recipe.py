"""The authors' pre-training recipe (docs/METHOD_NOTES.md §5, the recipe table), each difference that
config/paper.yaml closes checked against an independent hand computation of the authors' arithmetic.

Schedule arithmetic is in tests/core/test_schedules.py; the per-term temperatures reaching the loss
terms in tests/core/test_optimisations.py (test_model_terms_equal_the_per_pair_formula).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from torch import nn

from mokd.config import load_yaml
from mokd.distributed import DistInfo
from mokd.engine import build_model_state, convert_sync_batchnorm, use_sync_batchnorm
from mokd.models.backbone import Backbone, BackboneSpec
from mokd.models.heads import THead, WeightNormLinear
from mokd.models.network import ModelSlot
from mokd.models.pos_embed import interpolate_grid
from tests.core.helpers import first_batch, make_trainer
from tests.core.tiny import CNN_A, VIT_A, model, tiny_config

PAPER_T_HEAD_GROUP = {"lr": 3.0e-4, "min_lr": 1.0e-5, "warmup_epochs": 10, "weight_decay": 0.04,
                      "weight_decay_end": 0.4, "decay_norms_and_biases": True}


def paper_like_pair() -> list[dict[str, Any]]:
    """The tiny CNN–ViT pair with config/paper.yaml's optimizers, T-Head group and temperatures."""
    cnn, vit = model("cnn", CNN_A), model("vit", VIT_A, vit=True, lam=0.1)
    cnn["optimizer"] = {"name": "sgd", "lr": 0.1, "min_lr": 0.0048, "warmup_epochs": 10, "weight_decay": 1e-4, "momentum": 0.9}
    cnn["t_head_group"] = dict(PAPER_T_HEAD_GROUP)
    cnn["teacher_temp"] = {"start": 0.04, "end": 0.07, "warmup_epochs": 50}
    cnn["cross_teacher_temp"] = {"start": 0.04, "end": 0.07, "warmup_epochs": 30}
    vit["optimizer"] = {"name": "adamw", "lr": 3e-4, "min_lr": 1e-5, "warmup_epochs": 10, "weight_decay": 0.04, "weight_decay_end": 0.4}
    vit["teacher_temp"] = {"start": 0.04, "end": 0.07, "warmup_epochs": 30}
    return [cnn, vit]


# ------------------------------------------------------------------- 1. the CNN's T-Head parameter group
def by_hand_lr(base: float, final: float, warmup: int, total: int, step: int) -> float:
    """DINO's cosine_scheduler at one step (warm-up linspace with its endpoint, cosine step i / R)."""
    if step < warmup:
        return base * step / (warmup - 1)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_cnn_t_head_is_a_third_group_of_its_sgd(fashion_root: Path, tmp_path: Path) -> None:
    """Authors: the CNN's SGD (momentum 0.9) holds three groups — decayed, not decayed (1-d and biases),
    and every T-Head tensor on the ViT's lr and weight-decay schedules, decayed whole; the ViT's T-Head
    is in the ViT's own two AdamW groups."""
    trainer = make_trainer(tiny_config(paper_like_pair(), fashion_root, epochs=100), tmp_path)
    cnn, vit = trainer.models
    ipe, total = trainer.iters_per_epoch, trainer.total_iters
    assert len(cnn.optimizers) == 1 and isinstance(cnn.optimizers[0].optimizer, torch.optim.SGD)
    groups = cnn.optimizers[0].optimizer.param_groups
    named = dict(cnn.slot.student.named_parameters())
    ids = [{id(p) for p in g["params"]} for g in groups]
    by_name = {n: [i for i, g in enumerate(ids) if id(p) in g] for n, p in named.items() if p.requires_grad}
    for name, where in by_name.items():
        expected = 2 if name.startswith("t_head.") else (1 if named[name].ndim <= 1 or name.endswith(".bias") else 0)
        assert where == [expected], name
    t_head_names = [n for n in by_name if n.startswith("t_head.")]
    assert any(n.endswith(".bias") for n in t_head_names) and "t_head.pos_embed" in t_head_names
    assert "t_head.last_layer.gain" in t_head_names  # trainable (item 2), and decayed with the rest
    assert all(g["momentum"] == 0.9 for g in groups)

    batch = 8
    for step in (5, 25, total - 1):
        cnn.optimizers[0].apply(step)
        cnn_lr = by_hand_lr(0.1 * batch / 256, 0.0048, 10 * ipe, total, step)
        t_lr = by_hand_lr(3e-4 * batch / 256, 1e-5, 10 * ipe, total, step)
        t_wd = 0.4 + 0.5 * (0.04 - 0.4) * (1 + math.cos(math.pi * step / total))
        assert groups[0]["lr"] == pytest.approx(cnn_lr) and groups[0]["weight_decay"] == pytest.approx(1e-4)
        assert groups[1]["lr"] == pytest.approx(cnn_lr) and groups[1]["weight_decay"] == 0.0
        assert groups[2]["lr"] == pytest.approx(t_lr) and groups[2]["weight_decay"] == pytest.approx(t_wd)

    record = trainer.step_record(25, 12, [({}, {}, 0.0), ({}, {}, 0.0)])
    assert record["cnn"]["t_head_lr"] == pytest.approx(by_hand_lr(3e-4 * batch / 256, 1e-5, 10 * ipe, total, 25))
    assert record["cnn"]["t_head_wd"] == pytest.approx(0.4 + 0.5 * (0.04 - 0.4) * (1 + math.cos(math.pi * 25 / total)))
    assert "t_head_lr" not in record["vit"]  # the ViT's T-Head follows the ViT's own schedules (logged as lr, wd)

    vit_groups = vit.optimizers[0].optimizer.param_groups
    assert len(vit.optimizers) == 1 and isinstance(vit.optimizers[0].optimizer, torch.optim.AdamW) and len(vit_groups) == 2
    vit_named = dict(vit.slot.student.named_parameters())
    assert any(p is vit_named["t_head.pos_embed"] for p in vit_groups[0]["params"])
    assert any(p is vit_named["t_head.norm.weight"] for p in vit_groups[1]["params"])


def test_t_head_group_can_follow_dinos_decay_rule(fashion_root: Path, tmp_path: Path) -> None:
    models = paper_like_pair()
    models[0]["t_head_group"]["decay_norms_and_biases"] = False
    trainer = make_trainer(tiny_config(models, fashion_root, epochs=4), tmp_path)
    opt = trainer.models[0].optimizers[0]
    assert len(opt.optimizer.param_groups) == 4
    opt.apply(3)
    t_decay, t_none = opt.optimizer.param_groups[2:]
    assert t_none["weight_decay"] == 0.0 and t_decay["weight_decay"] > 0 and t_none["lr"] == t_decay["lr"]
    assert all(p.ndim <= 1 for p in t_none["params"]) and all(p.ndim > 1 for p in t_decay["params"])


# --------------------------------------------------------------------- 2. the T-Heads' trainable gain
def test_weight_norm_gain_gradient_by_hand() -> None:
    """y = g * (v / |v|) x: dL/dg_k = sum over the batch of dL/dy_k * (v_k . x) / |v_k|."""
    torch.manual_seed(0)
    layer = WeightNormLinear(3, 4, fix_gain=False).double()
    with torch.no_grad():
        layer.gain.copy_(torch.tensor([[1.0], [0.5], [2.0], [1.5]], dtype=torch.float64))
    x, upstream = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    (layer(x) * upstream).sum().backward()
    v = layer.direction.detach()
    by_hand = ((x @ (v / v.norm(dim=1, keepdim=True)).T) * upstream).sum(dim=0)
    torch.testing.assert_close(layer.gain.grad.squeeze(1), by_hand)


def test_t_head_gain_trains_while_the_cnn_mlp_gain_stays_fixed(fashion_root: Path, tmp_path: Path) -> None:
    """Authors: `norm_last_layer` applies to the MLP-Heads only; both T-Heads' gains start at 1 and train."""
    trainer = make_trainer(tiny_config(paper_like_pair(), fashion_root, epochs=2), tmp_path)
    for m in trainer.models:
        m.freeze_iters = 0
    gains = {m.name: m.slot.student.t_head.last_layer.gain for m in trainer.models}
    assert all(g.requires_grad and torch.equal(g, torch.ones_like(g)) for g in gains.values())
    cnn_mlp_gain = trainer.models[0].slot.student.mlp_head.last_layer.gain
    assert not cnn_mlp_gain.requires_grad
    trainer.train_step(first_batch(trainer), 0)
    trainer.train_step(first_batch(trainer), 0)
    assert all(not torch.equal(g, torch.ones_like(g)) for g in gains.values())
    assert torch.equal(cnn_mlp_gain, torch.ones_like(cnn_mlp_gain))


# --------------------------------------------------------------- 3. positional-embedding interpolation
def cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights (torch's A = -0.75) of the 4 neighbours at offsets -1, 0, 1, 2."""
    def w(d: float) -> float:
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0
    return [w(1 + t), w(t), w(1 - t), w(2 - t)]


def bicubic_1d(values: np.ndarray, out_size: int, inverse_scale: float) -> np.ndarray:
    """Resample axis 0: output j reads source (j + 0.5) * inverse_scale - 0.5, borders replicated."""
    n = values.shape[0]
    out = []
    for j in range(out_size):
        src = (j + 0.5) * inverse_scale - 0.5
        x0 = math.floor(src)
        ws = cubic_weights(src - x0)
        out.append(sum(w * values[min(max(x0 - 1 + k, 0), n - 1)] for k, w in enumerate(ws)))
    return np.stack(out)


def by_hand(pos: np.ndarray, old: int, new: int, inverse_scale: float) -> np.ndarray:
    grid = pos.reshape(old, old, -1)
    rows = bicubic_1d(grid, new, inverse_scale)
    cols = bicubic_1d(rows.transpose(1, 0, 2), new, inverse_scale).transpose(1, 0, 2)
    return cols.reshape(new * new, -1)


def test_dino_interpolation_by_hand_on_a_tiny_grid() -> None:
    """4 x 4 -> 2 x 2: DINO's scale factor (2 + 0.1) / 4 maps output j to (j + 0.5) * 4 / 2.1 - 0.5;
    a resize maps it to (j + 0.5) * 2 - 0.5. Both against a hand-written bicubic."""
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(16, 3))
    t = torch.from_numpy(pos)[None]
    dino = interpolate_grid(t, (4, 4), (2, 2), "dino")[0].numpy()
    resize = interpolate_grid(t, (4, 4), (2, 2), "resize")[0].numpy()
    np.testing.assert_allclose(dino, by_hand(pos, 4, 2, 4 / 2.1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(resize, by_hand(pos, 4, 2, 2.0), rtol=1e-10, atol=1e-12)
    assert np.abs(dino - resize).max() > 0.05
    assert interpolate_grid(t, (4, 4), (4, 4), "dino") is t  # the global grid: untouched


def test_t_head_positions_follow_the_setting() -> None:
    torch.manual_seed(0)
    heads = {m: THead(8, 6, 10, depth=1, num_heads=2, base_grid=4, pos_embed_interpolation=m) for m in ("dino", "resize")}
    heads["resize"].load_state_dict(heads["dino"].state_dict())
    pos = heads["dino"].pos_embed.detach().double()[0].numpy()
    got = heads["dino"].pos_embed_for((2, 2)).detach().double()[0].numpy()
    np.testing.assert_allclose(got, by_hand(pos, 4, 2, 4 / 2.1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(heads["dino"].pos_embed_for((2, 2)), heads["resize"].pos_embed_for((2, 2)))


def vit_backbone(method: str) -> Backbone:
    torch.manual_seed(0)
    return Backbone(BackboneSpec(VIT_A["arch"], VIT_A["timm_kwargs"], pos_embed_interpolation=method))


def test_vit_local_crop_positions_by_dino_arithmetic() -> None:
    """A 16 px local crop of a ViT with a 4 x 4 grid at 32 px: [CLS] position as it is, patch positions
    4 x 4 -> 2 x 2 by DINO's arithmetic; `resize` is timm's own resampling, and the global crop is the
    same for both."""
    dino, resize = vit_backbone("dino"), vit_backbone("resize")
    resize.load_state_dict(dino.state_dict())
    net = dino.net
    x = torch.randn(2, 3, 16, 16)
    patches = net.patch_embed(x)
    got = net._pos_embed(patches)
    pos = net.pos_embed.detach().double()[0].numpy()
    patch_pos = torch.from_numpy(by_hand(pos[1:], 4, 2, 4 / 2.1)).float()
    want = torch.cat([net.cls_token.expand(2, -1, -1), patches.reshape(2, 4, -1)], 1) + torch.cat(
        [net.pos_embed[:, :1], patch_pos[None]], 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    reference = timm.create_model(VIT_A["arch"], pretrained=False, num_classes=0, dynamic_img_size=True, **VIT_A["timm_kwargs"])
    reference.load_state_dict(resize.net.state_dict())
    torch.testing.assert_close(resize.net.forward_features(x), reference.forward_features(x))
    assert not torch.allclose(dino.net.forward_features(x), resize.net.forward_features(x))
    full = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(dino.net.forward_features(full), resize.net.forward_features(full))


# ------------------------------------------------------------------ 5. teacher temperature per term
def test_each_terms_temperature_at_epoch_40(fashion_root: Path, tmp_path: Path) -> None:
    """Authors: a CNN's own terms warm up over 50 epochs (0.04 + 0.03 * 40 / 49 at epoch 40), its cross
    terms and every ViT term over 30 (0.07 from epoch 29 on), one value per epoch."""
    trainer = make_trainer(tiny_config(paper_like_pair(), fashion_root, epochs=100), tmp_path)
    step = 40 * trainer.iters_per_epoch + 1
    cnn, vit = trainer.models
    assert cnn.teacher_temp[step] == pytest.approx(0.04 + 0.03 * 40 / 49)
    assert cnn.cross_teacher_temp[step] == pytest.approx(0.07)
    assert vit.teacher_temp[step] == pytest.approx(0.07) and vit.cross_teacher_temp[step] == pytest.approx(0.07)
    at_20 = 20 * trainer.iters_per_epoch
    assert cnn.cross_teacher_temp[at_20] == pytest.approx(0.04 + 0.03 * 20 / 29) == vit.teacher_temp[at_20]

    seen: dict[str, tuple[float, float]] = {}
    for m in trainer.models:
        forward = m.objective.forward

        def capture(*args: Any, _name: str = m.name, _forward: Any = forward) -> dict[str, torch.Tensor]:
            seen[_name] = (args[4], args[5])
            return _forward(*args)

        m.objective.forward = capture  # type: ignore[method-assign]
    trainer.step = step
    trainer.compute_losses(first_batch(trainer))
    assert seen["cnn"] == pytest.approx((0.04 + 0.03 * 40 / 49, 0.07)) and seen["vit"] == pytest.approx((0.07, 0.07))


# ----------------------------------------------------------------------------------- 6. SyncBatchNorm
def test_sync_batchnorm_converts_both_cnn_networks_only_on_several_gpu_processes(fashion_root: Path) -> None:
    cfg = tiny_config(paper_like_pair(), fashion_root, epochs=2)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert cfg["sync_batchnorm"] is True  # the paper's default
    assert not use_sync_batchnorm(cfg, cpu, DistInfo(0, 2))  # torch's SyncBatchNorm runs on GPUs only
    assert not use_sync_batchnorm(cfg, gpu, DistInfo(0, 1))  # one process: the same statistics as BatchNorm
    assert use_sync_batchnorm(cfg, gpu, DistInfo(0, 8))
    assert not use_sync_batchnorm({**cfg, "sync_batchnorm": False}, gpu, DistInfo(0, 8))

    slot = ModelSlot("cnn", cfg["models"][0], cfg, with_t_head=True)
    before = {k: v.clone() for k, v in slot.state_dict().items()}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in slot.student.modules())
    assert n_bn > 0 and convert_sync_batchnorm(slot) == 2 * n_bn
    for net in (slot.student, slot.teacher):
        assert sum(isinstance(m, nn.SyncBatchNorm) for m in net.modules()) == n_bn
        assert not any(type(m) is nn.BatchNorm2d for m in net.modules())
    after = slot.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    vit = ModelSlot("vit", cfg["models"][1], cfg, with_t_head=True)
    assert convert_sync_batchnorm(vit) == 0


def test_a_cpu_run_keeps_plain_batchnorm(fashion_root: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_config(paper_like_pair(), fashion_root, epochs=2), tmp_path)
    nets = [net for m in trainer.models for net in (m.slot.student, m.slot.teacher)]
    assert not any(isinstance(m, nn.SyncBatchNorm) for net in nets for m in net.modules())


# ----------------------------------------------------------------------------- precision: fp16 as theirs
def test_fp16_gives_each_model_its_own_grad_scaler(fashion_root: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_config(paper_like_pair(), fashion_root, epochs=2), tmp_path)
    states = [build_model_state(m, trainer.cfg, trainer.terms, torch.device("cpu"), DistInfo(), trainer.iters_per_epoch, "fp16")
              for m in trainer.cfg["models"]]
    assert all(s.scaler.is_enabled() for s in states) and states[0].scaler is not states[1].scaler
    assert not trainer.models[0].scaler.is_enabled()  # a CPU run is fp32


# ------------------------------------------------------------------------------- config/paper.yaml
def test_paper_config_runs_the_authors_recipe() -> None:
    """What config/paper.yaml states for each item, as the authors' main_mokd.py with the README's flags."""
    cfg = load_yaml("config/paper.yaml")
    cnn, vit, pre = cfg["families"]["cnn"], cfg["families"]["vit"], cfg["pretrain"]
    assert "t_head_optimizer" not in cnn
    assert cnn["optimizer"]["name"] == "sgd" and cnn["optimizer"]["momentum"] == 0.9
    assert cnn["t_head_group"] == PAPER_T_HEAD_GROUP
    assert {k: vit["optimizer"][k] for k in ("lr", "min_lr", "warmup_epochs", "weight_decay", "weight_decay_end")} == {
        k: PAPER_T_HEAD_GROUP[k] for k in ("lr", "min_lr", "warmup_epochs", "weight_decay", "weight_decay_end")}
    assert cnn["teacher_temp"]["warmup_epochs"] == 50 and cnn["cross_teacher_temp"]["warmup_epochs"] == 30
    assert vit["teacher_temp"]["warmup_epochs"] == 30 and "cross_teacher_temp" not in vit
    assert pre["t_head"]["norm_last_layer"] is False and pre["t_head"]["pos_embed_interpolation"] == "dino"
    assert pre["sync_batchnorm"] is True and pre["precision"] == "fp16"
    assert cnn["clip_grad"] == vit["clip_grad"] == 3.0


# ------------------------------------------------------------------ max_steps: a rehearsal's run length
def test_max_steps_runs_the_first_steps_of_the_whole_schedule(fashion_root: Path, tmp_path: Path) -> None:
    """`max_steps` stops a run (and exports it) after its first steps, on the schedules of the whole run;
    those steps equal the first steps of the uninterrupted run; the last one is logged."""
    import json

    models = paper_like_pair()
    short = make_trainer(tiny_config(models, fashion_root, epochs=4, max_steps=3), tmp_path / "short")
    whole = make_trainer(tiny_config(models, fashion_root, epochs=4), tmp_path / "whole")
    assert (short.total_iters, short.run_iters) == (whole.total_iters, 3) and whole.run_iters == whole.total_iters > 3
    assert all((a.optimizers[0].lr == b.optimizers[0].lr).all() for a, b in zip(short.models, whole.models))
    summary = short.train()
    assert summary["steps"] == 3 and (tmp_path / "short" / "teacher_cnn.pt").is_file()
    whole.train(stop_after=3)
    for a, b in zip(short.models, whole.models):
        for (name, pa), pb in zip(a.slot.state_dict().items(), b.slot.state_dict().values()):
            assert torch.equal(pa, pb), name
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "short" / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 2  # the record of the third step (steps are logged 0-based)


def test_pretrain_dry_run_checks_and_says_what_would_run(fashion_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m mokd pretrain --dry-run`: the config, the launch options and the data are checked, what would
    run (and be submitted) is said, nothing is trained or written (docs/CLUSTER.md's command runs this way)."""
    import yaml

    from mokd.cli import main

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "fashion_mnist", "root": str(fashion_root)},
                                   "models": [{"name": "r50", "backbone": {"arch": "resnet50"}}], "max_steps": 2}))
    out = tmp_path / "runs" / "x"
    args = ["pretrain", "--config", str(cfg), "--out", str(out), "--launcher", "slurm", "--gpus-per-node", "8",
            "--cpus-per-task", "10", "--mem-gb", "480", "--partition", "gpu", "--dry-run"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "would train r50 (resnet50): 100 epochs of batch 256, stopping after 2 steps, terms ['sm', 'st']" in said
    assert "as a SLURM job: 1 node(s) x 8 task(s), 8 GPU(s) and 10 CPU(s) per task, memory 480.0 GB" in said
    assert "partition gpu" in said and not out.exists()
    assert main([*args[:-1], "epochz=3", "--dry-run"]) == 2  # a wrong key: the config error, before anything
    assert "epochz" in capsys.readouterr().err
