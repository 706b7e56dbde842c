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


@pytest.fixture(scope="session")
def ct_run(tmp_path_factory):
    """What ``make train EXP=ct/unet`` writes (quick profile), trained for two steps on a small
    phantom: a real run folder (checkpoint, config, record) for the predict/export/test CLIs."""
    from experiments.train import fit_cli

    runs = tmp_path_factory.mktemp("runs")
    args = ["--exp", "ct/unet", "--profile", "quick", "--runs-dir", str(runs)]
    args += ["--data.phantom", "{patients: 8, size: 96, slices: 12}"]
    args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    assert fit_cli(args) == 0
    return runs / "ct" / "unet-resnet34-ce-s0"
