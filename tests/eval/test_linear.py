"""Linear probe: the training loop separates separable data, resumes exactly, and the command runs."""

from __future__ import annotations

import re

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from mokd.checkpoint import export_teacher
from mokd.cli import main
from mokd.config import ConfigError
from mokd.eval.classifier import SGDConfig, evaluate, linear_head, lr_schedule, scaled_lr, train_classifier
from mokd.eval.linear import DEFAULTS, base_lr_for, ckpt_path_for, linear_probe, reported
from mokd.models.backbone import build_backbone

TINY_CNN = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}}
TINY_VIT = {
    "arch": "vit_tiny_patch16_224",
    "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3},
}


def export_tiny(path: Path, cfg: dict = TINY_CNN) -> Path:
    torch.manual_seed(0)
    export_teacher(path, path.stem, build_backbone(cfg), None, {"test": True})
    return path


def separable(n_per_class: int, seed: int) -> TensorDataset:
    """4 classes, each a tight cluster around its own axis in 16-D: linearly separable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(n_per_class)
    centres = 3.0 * torch.eye(16)[:4]
    return TensorDataset(centres[labels] + 0.3 * torch.randn(len(labels), 16, generator=g), labels)


def test_head_init_and_lr_rules() -> None:
    torch.manual_seed(0)
    head = linear_head(512, 100)
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert head.weight.mean().abs().item() < 1e-3 and torch.all(head.bias == 0)
    assert scaled_lr(0.08, 2048) == pytest.approx(0.64)
    assert base_lr_for({"cnn": 0.08, "vit": 0.008}, "vit") == 0.008 and base_lr_for(0.1, "cnn") == 0.1
    with pytest.raises(ConfigError, match="'lr'.*vit"):
        base_lr_for({"cnn": 0.08}, "vit")
    assert DEFAULTS["batch_size"] == 2048 and DEFAULTS["epochs"] == 100 and DEFAULTS["warmup_epochs"] == 0


def test_effective_lr_is_the_authors() -> None:
    """Their README: eval_linear.py --lr 0.01 (ResNet) / 0.001 (ViT) per 256 images at 8 x 256 = 2048,
    which is the supplementary's 0.08 / 0.008 (the rates at batch 2048), not 8 times them."""
    for kind, effective in (("cnn", 0.08), ("vit", 0.008)):
        assert scaled_lr(base_lr_for(DEFAULTS["lr"], kind), DEFAULTS["batch_size"]) == pytest.approx(effective)
    from mokd.config import load_yaml

    for name in ("linear", "linear_100"):
        s = load_yaml("config/paper.yaml")["protocols"][name]["settings"]
        assert {k: s[k] for k in ("warmup_epochs", "schedule_unit", "train_interpolation", "val_every", "report")} == {
            "warmup_epochs": 0, "schedule_unit": "epoch", "train_interpolation": "bilinear", "val_every": 5, "report": "best"}
        assert scaled_lr(s["lr"]["cnn"], s["batch_size"]) == pytest.approx(0.08)
        assert scaled_lr(s["lr"]["vit"], s["batch_size"]) == pytest.approx(0.008)


def test_per_epoch_cosine_equals_torchs_cosine_annealing() -> None:
    """The authors step CosineAnnealingLR(epochs, eta_min=0) once per epoch, with no warm-up."""
    cfg = SGDConfig(epochs=7, batch_size=8, lr=0.5, schedule_unit="epoch")
    got = lr_schedule(cfg, iters_per_epoch=3)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5, momentum=0.9)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 7, eta_min=0)
    want = []
    for _ in range(7):
        want += [opt.param_groups[0]["lr"]] * 3
        opt.step()
        annealing.step()
    assert got == pytest.approx(want)
    per_iteration = lr_schedule(SGDConfig(epochs=7, batch_size=8, lr=0.5), iters_per_epoch=3)
    assert per_iteration[1] < per_iteration[0] and got[1] == got[0]


def test_bilinear_training_crops() -> None:
    from torchvision.transforms import InterpolationMode

    from mokd.data.transforms import train_classification_transform

    crop = train_classification_transform(32, interpolation="bilinear").transforms[1]
    assert crop.interpolation == InterpolationMode.BILINEAR
    assert train_classification_transform(32).transforms[1].interpolation == InterpolationMode.BICUBIC


def test_best_and_last_evaluations_are_both_recorded() -> None:
    """Evaluated after epochs 1, 6, 11 and the last (the authors' `epoch % 5 == 0 or last`, from 0);
    `best` reports the best of them, `last` the last; both are kept."""
    torch.manual_seed(0)
    head = linear_head(16, 4)
    scores = iter([40.0, 90.0, 70.0, 80.0])
    run = train_classifier(head, separable(10, 0), SGDConfig(epochs=12, batch_size=8, lr=0.1),
                           evaluator=lambda: {"top1": next(scores), "top5": 100.0}, evaluate_every=5)
    assert run.epochs_done == 12 and [e["epoch"] for e in run.evaluations] == [1, 6, 11, 12]
    best = reported(run.evaluations, "best")
    assert (best["top1"], best["top1_best"], best["best_epoch"], best["top1_last"]) == (90.0, 90.0, 6, 80.0)
    assert reported(run.evaluations, "last")["top1"] == 80.0
    with pytest.raises(ConfigError, match="'report'"):
        reported(run.evaluations, "mean")


def test_separable_features_reach_full_accuracy() -> None:
    torch.manual_seed(0)
    head = linear_head(16, 4)
    train, test = separable(50, seed=0), separable(25, seed=1)
    assert evaluate(head, test)["top1"] < 50.0
    done = train_classifier(head, train, SGDConfig(epochs=15, batch_size=32, lr=0.5, warmup_epochs=2))
    assert done.epochs_done == 15
    assert evaluate(head, test) == {"top1": 100.0, "top5": 100.0}


def test_loop_resume_matches_uninterrupted(tmp_path: Path) -> None:
    cfg = SGDConfig(epochs=3, batch_size=16, lr=0.3, warmup_epochs=1, seed=3)

    def fresh() -> torch.nn.Linear:
        torch.manual_seed(0)
        return linear_head(16, 4)

    whole = fresh()
    test = separable(5, 1)
    scores = lambda head: (lambda: evaluate(head, test))  # noqa: E731
    full = train_classifier(whole, separable(20, 0), cfg, evaluator=scores(whole), evaluate_every=1)
    part = fresh()
    ckpt = tmp_path / "run.ckpt"
    stopped = train_classifier(part, separable(20, 0), cfg, ckpt_path=ckpt, stop_after_epoch=1, evaluator=scores(part),
                               evaluate_every=1)
    assert stopped.epochs_done == 1
    resumed = fresh()  # a new process: only the checkpoint carries the state
    again = train_classifier(resumed, separable(20, 0), cfg, ckpt_path=ckpt, evaluator=scores(resumed), evaluate_every=1)
    assert again.epochs_done == 3 and again.evaluations == full.evaluations  # the evaluations before the stop kept
    assert torch.equal(resumed.weight, whole.weight) and torch.equal(resumed.bias, whole.bias)
    # a checkpoint of other settings is not resumed
    other = fresh()
    train_classifier(other, separable(20, 0), SGDConfig(epochs=3, batch_size=16, lr=0.1), ckpt_path=ckpt)
    assert not torch.equal(other.weight, whole.weight)


def probe_settings(fashion_root: Path, **extra: object) -> dict:
    data_train = {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 4}
    data_val = {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 2}
    return {**DEFAULTS, "data_train": data_train, "data_val": data_val, "image_size": 32, "num_workers": 0,
            "batch_size": 16, "epochs": 2, "warmup_epochs": 1, "lr": 0.5, "eval_batch_size": 32, "scale": "test",
            **extra}


def test_probe_resume_with_augmentation_matches_uninterrupted(tmp_path: Path, fashion_root: Path) -> None:
    ckpt = export_tiny(tmp_path / "teacher.pt")
    s = probe_settings(fashion_root, feature_cache=str(tmp_path / "cache"))
    whole = linear_probe(ckpt, s, tmp_path / "a.json")
    assert linear_probe(ckpt, s, tmp_path / "b.json", stop_after_epoch=1)["epochs"] == 1
    resumed = linear_probe(ckpt, s, tmp_path / "b.json")
    assert resumed["epochs"] == 2 and resumed["top1"] == whole["top1"]
    a = torch.load(ckpt_path_for(tmp_path / "a.json"), weights_only=False)["state"]
    b = torch.load(ckpt_path_for(tmp_path / "b.json"), weights_only=False)["state"]
    assert a.keys() == {"weight", "bias"}  # only the head is saved, not the frozen backbone
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vit_probe_uses_last_cls_tokens(tmp_path: Path, fashion_root: Path) -> None:
    ckpt = export_tiny(tmp_path / "teacher_v.pt", TINY_VIT)
    m = linear_probe(ckpt, probe_settings(fashion_root, precompute_features=True, lr={"cnn": 9.0, "vit": 0.4}),
                     tmp_path / "v.json")
    assert m["feature_dim"] == 2 * 48 and m["last4cls"] == 1  # both blocks of a 2-block ViT
    assert m["base_lr"] == 0.4 and m["lr"] == pytest.approx(0.4 * 16 / 256)


def test_command_end_to_end(tmp_path: Path, fashion_root: Path) -> None:
    ckpt = export_tiny(tmp_path / "teacher_r.pt")
    out = tmp_path / "linear.json"
    s = probe_settings(fashion_root, precompute_features=True)
    s.pop("feature_cache")
    assert main(["linear", "--checkpoint", str(ckpt), "--settings", json.dumps(s), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    m = record["metrics"]
    assert record["protocol"] == "linear" and m["epochs"] == 2
    assert 0.0 <= m["top1"] <= m["top5"] <= 100.0
    assert record["provenance"]["checkpoint_sha256"] and record["provenance"]["settings"]["precompute_features"]
    assert ckpt_path_for(out).is_file() and (tmp_path / "features").is_dir()


def test_vit_checkpoint_with_cnn_expectation_fails(tmp_path: Path, fashion_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = export_tiny(tmp_path / "teacher_v.pt", TINY_VIT)
    s = probe_settings(fashion_root, expected_backbone=TINY_CNN)
    assert main(["linear", "--checkpoint", str(ckpt), "--settings", json.dumps(s), "--out", str(tmp_path / "x.json")]) == 4  # checkpoint error
    assert re.search(r"teacher_v\.pt.*vit_tiny.*resnet18", capsys.readouterr().err)


def test_a_bad_setting_is_named_before_anything_runs(tmp_path: Path, fashion_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Settings are checked against mokd/schemas/linear.yaml: `epochs: -1` names its setting (it used to fail
    deep in the data loader as "Number of samples, -1, must be non-negative"), a misspelled key the closest one."""
    ckpt = export_tiny(tmp_path / "teacher.pt")
    for bad, message in (({"epochs": -1}, "setting 'epochs' must be >= 1, got -1"),
                         ({"epoch": 3}, "setting 'epoch': unknown key(s) ['epoch'] (did you mean 'epochs'?)")):
        s = {k: v for k, v in probe_settings(fashion_root).items() if k != "feature_cache"}
        s.update(bad)
        out = tmp_path / "x.json"
        assert main(["linear", "--checkpoint", str(ckpt), "--settings", json.dumps(s), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err and not out.exists()
