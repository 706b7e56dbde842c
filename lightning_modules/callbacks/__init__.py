"""Lightning callbacks of a ``ptx`` run: its record on disk, W&B media, and safety guards."""

from lightning_modules.callbacks.finite_loss import FiniteLossGuard, NonFiniteLossError
from lightning_modules.callbacks.last_checkpoint import LastCheckpoint
from lightning_modules.callbacks.rng_state import RngState
from lightning_modules.callbacks.run_record import RunRecord
from lightning_modules.callbacks.test_predictions import TestPredictions
from lightning_modules.callbacks.wandb_media import WandbOverlays

__all__ = [
    "FiniteLossGuard",
    "LastCheckpoint",
    "NonFiniteLossError",
    "RngState",
    "RunRecord",
    "TestPredictions",
    "WandbOverlays",
]
