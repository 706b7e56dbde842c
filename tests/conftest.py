"""Test-wide settings: no network, no W&B uploads, a private cache, a small thread pool."""

from __future__ import annotations

import os

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep phantoms and preprocessed arrays of the test session out of the user's cache."""
    os.environ["PTX_CACHE_DIR"] = str(tmp_path_factory.mktemp("ptx-cache"))
    yield
