"""W&B media of a run: ground truth vs prediction overlays, and the per-image test table.

The overlay images are a fixed set per stage, the same ids every epoch so their evolution
can be followed: drawn by seed from the dataset, images with pneumothorax first. Nothing is
logged unless the trainer's logger is a ``WandbLogger``.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from lightning_modules.evaluation import EvaluationResult

CLASS_LABELS = {0: "background", 1: "pneumothorax"}


def overlay_indices(positive: np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` dataset indices: positives (shuffled by ``seed``) first, then negatives."""
    rng = np.random.default_rng(seed)
    positive = np.asarray(positive, dtype=bool)
    order = [rng.permutation(np.flatnonzero(positive)), rng.permutation(np.flatnonzero(~positive))]
    return np.concatenate(order)[:n].astype(int).tolist()


def chosen_items(batch: dict, outputs: dict, chosen: set[int]) -> list[tuple]:
    """``(index, id, image, true, pred)`` of the batch's images whose dataset index is in
    ``chosen``: image the first channel as uint8 0..255, masks uint8 {0, 1}, all ``H x W``
    numpy arrays on the CPU."""
    items = []
    for row, item in enumerate(torch.as_tensor(batch["index"]).tolist()):
        if item in chosen:
            image = batch["image"][row, 0].float().clamp(0, 1).mul(255).byte().cpu().numpy()
            true = batch["mask"][row].byte().cpu().numpy()
            pred = outputs["pred"][row].byte().cpu().numpy()
            items.append((item, batch["id"][row], image, true, pred))
    return items


def gather_items(items: list, trainer: pl.Trainer) -> list:
    """Every rank's items on every rank (each rank saw only its shard of the dataset)."""
    if trainer.world_size <= 1 or not torch.distributed.is_initialized():
        return items
    gathered: list = [None] * trainer.world_size
    torch.distributed.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


class WandbOverlays(pl.Callback):
    """Log ``<stage>/overlays`` (W&B images with masks) at validation and test, and
    ``test/per_image`` (a W&B table of the test's per-image rows, handed over by the module
    through ``on_evaluation_result``) after the test.

    Args:
        n_images: overlays per stage.
        seed: draws the fixed overlay set.
    """

    def __init__(self, n_images: int = 8, seed: int = 0) -> None:
        self.n_images = n_images
        self.seed = seed
        self.chosen: dict[str, set[int]] = {}
        self.items: dict[str, list] = {}
        self.results: dict[str, EvaluationResult] = {}  # on_evaluation_result

    @staticmethod
    def _active(trainer: pl.Trainer) -> bool:
        return isinstance(trainer.logger, WandbLogger)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self._active(trainer):
            return
        for name, index in getattr(pl_module, "evaluation_index", {}).items():
            if name not in self.chosen:
                self.chosen[name] = set(overlay_indices(index.positive, self.n_images, self.seed))

    def _collect(self, stage: str, trainer, outputs, batch) -> None:
        if not self._active(trainer) or trainer.sanity_checking or stage not in self.chosen:
            return
        self.items.setdefault(stage, []).extend(chosen_items(batch, outputs, self.chosen[stage]))

    def _log_overlays(self, stage: str, trainer) -> None:
        if not self._active(trainer) or trainer.sanity_checking:
            return
        items = sorted({i[0]: i for i in gather_items(self.items.pop(stage, []), trainer)}.values())
        if not trainer.is_global_zero or not items:
            return
        masks = [
            {
                "ground_truth": {"mask_data": true, "class_labels": CLASS_LABELS},
                "prediction": {"mask_data": pred, "class_labels": CLASS_LABELS},
            }
            for _, _, _, true, pred in items
        ]
        trainer.logger.log_image(
            key=f"{stage}/overlays",
            images=[image for _, _, image, _, _ in items],
            step=trainer.global_step,
            caption=[image_id for _, image_id, _, _, _ in items],
            masks=masks,
        )

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:  # a new pass: drop anything left from an interrupted one
            self.items.pop("val", None)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect("val", trainer, outputs, batch)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._log_overlays("val", trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect("test", trainer, outputs, batch)

    def on_evaluation_result(self, trainer, pl_module, result: EvaluationResult) -> None:
        if result.stage == "test":
            self.results["test"] = result

    def on_test_end(self, trainer, pl_module) -> None:
        self._log_overlays("test", trainer)
        result = self.results.pop("test", None)
        rows = result.per_image if result is not None and self._active(trainer) else None
        if trainer.is_global_zero and rows:
            columns = list(rows[0])
            data = [[row[c] for c in columns] for row in rows]
            trainer.logger.log_table(
                key="test/per_image", columns=columns, data=data, step=trainer.global_step
            )
