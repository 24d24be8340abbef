"""Shared test set-up: offline hub, deterministic threads, the prepared Fashion-MNIST."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST prepared once per session from the Debian package files (or MOKD_DATA if set)."""
    from mokd.data import prepare_fashion_mnist

    root = Path(os.environ.get("MOKD_TEST_DATA", tmp_path_factory.mktemp("data")))
    prepare_fashion_mnist(root)
    return root
