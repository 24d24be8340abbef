"""Weighted k-NN: votes computed by hand, chunking, k clipping, and the command end to end."""

from __future__ import annotations

import re

import json
import math
from pathlib import Path

import pytest
import torch

from mokd.checkpoint import export_teacher
from mokd.cli import main
from mokd.eval.knn import knn_evaluate, knn_votes, summarise
from mokd.models.backbone import build_backbone

TINY_CNN = {"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}}
TINY_VIT = {
    "arch": "vit_tiny_patch16_224",
    "timm_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3},
}
T = 0.07


def export_tiny(path: Path, cfg: dict = TINY_CNN) -> Path:
    torch.manual_seed(0)
    export_teacher(path, path.stem, build_backbone(cfg), None, {"test": True})
    return path


def angle(theta: float, scale: float = 1.0) -> list[float]:
    return [scale * math.cos(theta), scale * math.sin(theta)]


# Bank on the unit circle (some scaled, to check the L2 normalisation); the query looks along +x.
BANK = torch.tensor([angle(0.1), angle(0.2, 3.0), angle(-0.2, 0.5), angle(math.pi / 2), angle(math.pi, 2.0)])
BANK_LABELS = torch.tensor([0, 1, 1, 2, 2])
QUERY = torch.tensor([[5.0, 0.0]])


def test_votes_by_hand() -> None:
    normed = torch.nn.functional.normalize(BANK, dim=1)
    votes = knn_votes(normed, BANK_LABELS, torch.tensor([[1.0, 0.0]]), [1, 3, 4], T, num_classes=3)
    # neighbours in order: 0.1 rad (class 0), then +-0.2 rad (class 1), then pi/2 (class 2, cos = 0)
    w0, w1 = math.exp(math.cos(0.1) / T), math.exp(math.cos(0.2) / T)
    expected = {
        1: [w0, 0.0, 0.0],
        3: [w0, 2 * w1, 0.0],
        4: [w0, 2 * w1, math.exp(0.0 / T)],
    }
    for k, want in expected.items():
        torch.testing.assert_close(votes[k], torch.tensor([want]), rtol=1e-4, atol=1e-4)


def test_prediction_flips_with_k() -> None:
    # 1-NN says class 0; at k = 3 two class-1 neighbours outvote it (2 exp(cos .2 / T) > exp(cos .1 / T))
    res = knn_evaluate(BANK, BANK_LABELS, QUERY, torch.tensor([1]), ks=[1, 3], temperature=T)
    assert res[1]["top1"] == 0.0 and res[3]["top1"] == 100.0
    assert res[1]["top5"] == 100.0  # fewer than 5 classes: top-5 holds every class
    metrics = summarise(res)
    assert metrics["best_k"] == 3 and metrics["top1"] == 100.0
    assert set(metrics["per_k"]) == {"1", "3"}


def test_chunked_equals_unchunked() -> None:
    g = torch.Generator().manual_seed(0)
    bank, bank_y = torch.randn(60, 8, generator=g), torch.randint(0, 6, (60,), generator=g)
    query, query_y = torch.randn(37, 8, generator=g), torch.randint(0, 6, (37,), generator=g)
    ks = [1, 5, 20]
    whole = knn_evaluate(bank, bank_y, query, query_y, ks, T, chunk_size=1000)
    for chunk in (1, 5, 36):
        assert knn_evaluate(bank, bank_y, query, query_y, ks, T, chunk_size=chunk) == whole
    # by hand for one k: predicted class of each query = argmax of summed exp(sim / T) of its top-5
    b = torch.nn.functional.normalize(bank, dim=1)
    q = torch.nn.functional.normalize(query, dim=1)
    correct = 0
    for i in range(37):
        sims = [(float(q[i] @ b[j]), int(bank_y[j])) for j in range(60)]
        scores = [0.0] * 6
        for s, y in sorted(sims, reverse=True)[:5]:
            scores[y] += math.exp(s / T)
        correct += int(max(range(6), key=lambda c: scores[c]) == int(query_y[i]))
    assert whole[5]["top1"] == pytest.approx(100.0 * correct / 37)


def test_k_larger_than_bank_is_clipped() -> None:
    res = knn_evaluate(BANK, BANK_LABELS, QUERY, torch.tensor([1]), ks=[5, 200], temperature=T)
    assert res[200]["k_used"] == 5
    assert res[200]["top1"] == res[5]["top1"] and res[200]["top5"] == res[5]["top5"]
    assert summarise(res)["best_k"] == 5  # ties go to the smaller k


def settings(fashion_root: Path, **extra: object) -> str:
    data_train = {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 4}
    data_val = {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 2}
    return json.dumps({"data_train": data_train, "data_val": data_val, "image_size": 32, "num_workers": 0,
                       "batch_size": 16, "ks": [1, 5, 100], "scale": "test", **extra})


def test_command_end_to_end(tmp_path: Path, fashion_root: Path) -> None:
    ckpt = export_tiny(tmp_path / "teacher_r.pt")
    out = tmp_path / "metrics" / "knn.json"
    assert main(["knn", "--checkpoint", str(ckpt), "--settings", settings(fashion_root), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    m = record["metrics"]
    assert record["protocol"] == "knn"
    assert set(m["per_k"]) == {"1", "5", "100"} and m["per_k"]["100"]["k_used"] == 40
    assert 0.0 <= m["top1"] <= m["top5"] <= 100.0 and m["best_k"] in (1, 5, 100)
    assert m["top1"] == max(v["top1"] for v in m["per_k"].values())
    prov = record["provenance"]
    assert len(prov["checkpoint_sha256"]) == 1 and prov["scale"] == "test" and "fashion_mnist" in prov["dataset"]
    assert len(list((out.parent / "features").glob("*.pt"))) == 2  # train and val features cached


def test_wrong_architecture_is_a_clear_error(tmp_path: Path, fashion_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = export_tiny(tmp_path / "teacher_v.pt", TINY_VIT)
    args = ["knn", "--checkpoint", str(ckpt), "--settings", settings(fashion_root, expected_backbone=TINY_CNN),
            "--out", str(tmp_path / "knn.json")]
    assert main(args) == 4  # a checkpoint error (mokd/cli.py's exit codes)
    assert re.search(r"teacher_v\.pt.*expected", capsys.readouterr().err)
    assert not (tmp_path / "knn.json").exists()


def test_a_one_class_dataset_is_warned_about(tmp_path: Path, fashion_root: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """k-NN on one class is 100 % whatever the features: the log says the number measures nothing."""
    ckpt = export_tiny(tmp_path / "teacher_r.pt")
    (tmp_path / "one.txt").write_text("Bag\n")
    one_class = {"name": "fashion_mnist", "root": str(fashion_root), "max_per_class": 4,
                 "class_list": str(tmp_path / "one.txt")}
    out = tmp_path / "knn.json"
    args = ["knn", "--checkpoint", str(ckpt), "--out", str(out),
            "--settings", settings(fashion_root, data_train=one_class, data_val=one_class)]
    assert main(args) == 0
    assert json.loads(out.read_text())["metrics"]["top1"] == 100.0
    err = capsys.readouterr().err
    assert re.search(r"warning: the train split of fashion_mnist:\S+ .* has 1 class", err), err
    assert re.search(r"warning: the val split of .* has 1 class", err), err
    assert main(["knn", "--checkpoint", str(ckpt), "--settings", settings(fashion_root), "--out", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err  # ten classes: nothing to say
