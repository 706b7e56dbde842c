"""``predictions.npz`` of a run: a fixed set of test images with ground truth and prediction.

The set depends on the test data only (drawn with a fixed seed, images with pneumothorax
first), never on the run's training seed, so every run of a sweep on the same data saves the
same images: the sweep report's overlay grid (Fig. 5 of both papers) puts them side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl

from lightning_modules import records
from lightning_modules.callbacks.wandb_media import chosen_items, gather_items, overlay_indices

SELECTION_SEED = 0  # the same images in every run on the same test set


class TestPredictions(pl.Callback):
    """Save ``n_images`` test images, their masks and the predicted masks after the test.

    ``predictions.npz`` holds ``ids`` (str, N), ``image`` (uint8, N x H x W, first channel
    scaled to 0..255), ``true`` and ``pred`` (uint8 {0, 1}, N x H x W), ordered by dataset
    index.

    Args:
        run_dir: the run directory.
        n_images: how many test images to keep (positives first).
    """

    __test__ = False  # a Lightning callback, not a pytest class

    def __init__(self, run_dir: str | Path, n_images: int = 8) -> None:
        self.run_dir = Path(run_dir)
        self.n_images = n_images
        self.chosen: set[int] = set()
        self.items: list = []

    def on_test_start(self, trainer, pl_module) -> None:
        positive = pl_module.evaluation_index["test"].positive
        self.chosen = set(overlay_indices(positive, self.n_images, SELECTION_SEED))
        self.items = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.items.extend(chosen_items(batch, outputs, self.chosen))

    def on_test_end(self, trainer, pl_module) -> None:
        items = sorted({i[0]: i for i in gather_items(self.items, trainer)}.values())
        self.items = []
        if not trainer.is_global_zero or not items:
            return
        arrays = {
            "ids": np.array([i[1] for i in items]),
            "image": np.stack([i[2] for i in items]),
            "true": np.stack([i[3] for i in items]),
            "pred": np.stack([i[4] for i in items]),
        }
        records.write_predictions(self.run_dir, arrays)
