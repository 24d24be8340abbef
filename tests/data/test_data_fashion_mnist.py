"""Fashion-MNIST preparation from the Debian package files and loading through build_dataset."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import mokd.data.fashion_mnist as fm
from mokd.data import build_dataset, check_dataset, eval_transform, prepare_fashion_mnist

DEBIAN = fm.DEBIAN_SOURCE_DIR
needs_debian = pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs `apt-get install -y dataset-fashion-mnist`",
)


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (DEBIAN / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs `apt-get install -y dataset-fashion-mnist`")
    root = tmp_path_factory.mktemp("fmnist")
    prepare_fashion_mnist(root)
    return root


@needs_debian
def test_prepare_gunzips_into_torchvision_layout(fmnist_root: Path) -> None:
    raw = fmnist_root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(fm.RAW_FILES)
    with gzip.open(DEBIAN / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == f.read()
    # no temp leftovers beside raw/
    assert [p.name for p in (fmnist_root / "FashionMNIST").iterdir()] == ["raw"]


@needs_debian
def test_prepare_is_idempotent(fmnist_root: Path) -> None:
    raw = fmnist_root / "FashionMNIST" / "raw"
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    assert prepare_fashion_mnist(fmnist_root) == raw
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


@needs_debian
@pytest.mark.parametrize(("split", "n"), [("train", 60000), ("val", 10000)])
def test_build_dataset_gives_rgb_images_and_labels(fmnist_root: Path, split: str, n: int) -> None:
    ds = build_dataset({"name": "fashion_mnist", "root": str(fmnist_root)}, split)
    assert len(ds) == n
    img, label = ds[0]
    assert img.mode == "RGB" and img.size == (28, 28)
    arr = np.asarray(img)
    assert np.array_equal(arr[..., 0], arr[..., 2])  # grey replicated in 3 channels
    assert isinstance(label, int) and 0 <= label <= 9
    assert set(ds.targets) == set(range(10))
    x, _ = build_dataset({"name": "fashion_mnist", "root": fmnist_root}, split, transform=eval_transform(28))[
        1
    ]
    assert tuple(x.shape) == (3, 28, 28)


@needs_debian
def test_max_per_class_and_class_list(fmnist_root: Path, tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("Sneaker\nTrouser\n")
    cfg = {
        "name": "fashion_mnist",
        "root": fmnist_root,
        "max_per_class": 3,
        "class_list": tmp_path / "classes.txt",
    }
    ds = build_dataset(cfg, "val")
    assert ds.classes == ["Sneaker", "Trouser"]
    assert sorted(ds.targets) == [0, 0, 0, 1, 1, 1]
    full = build_dataset({"name": "fashion_mnist", "root": fmnist_root}, "val")
    for i, src in enumerate(ds.source_indices):
        assert full.classes[full.targets[src]] == ds.classes[ds[i][1]]


@needs_debian
def test_interrupted_preparation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_copy = fm._copy_maybe_gzipped

    def flaky_copy(src: Path, dst: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_copy(src, dst)

    monkeypatch.setattr(fm, "_copy_maybe_gzipped", flaky_copy)
    with pytest.raises(KeyboardInterrupt):
        prepare_fashion_mnist(tmp_path)
    assert list((tmp_path / "FashionMNIST").iterdir()) == []


def test_missing_sources_name_path_and_apt_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(tmp: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(fm, "_download_with_torchvision", no_network)
    src = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        prepare_fashion_mnist(tmp_path / "data", source_dir=src)
    msg = str(err.value)
    assert str(src / "train-images-idx3-ubyte.gz") in msg
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert not (tmp_path / "data" / "FashionMNIST" / "raw").exists()


def test_check_dataset_without_any_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mokd.data.datasets.DEBIAN_SOURCE_DIR", tmp_path / "no-debian")
    with pytest.raises(FileNotFoundError) as err:
        check_dataset({"name": "fashion_mnist", "root": tmp_path}, "train")
    assert str(tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte") in str(err.value)
    assert "apt-get install -y dataset-fashion-mnist" in str(err.value)
