"""``SegmentationMetrics``: the metrics of both papers as one torchmetrics ``Metric``.

``update`` stores per-image confusion counts (and HD/HD95) next to each item's dataset
index in "cat" states, so they gather correctly across processes; every number is derived
at ``compute`` from de-duplicated per-image values, never from per-batch averages. The
formulas and empty-mask conventions live in ``metric_functions`` and docs/design.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lightning_modules import metric_functions as mf
from lightning_modules.diagnosis import PAPER_MIN_AREA, scaled_min_area

_COUNTS = ("tp", "fp", "fn", "tn")


def _area(masks: torch.Tensor) -> torch.Tensor:
    """Pixels per image of ``B x H x W`` bool masks, int64 ``B``."""
    # int32 accumulation is about twice as fast as bool's default int64 on CPU; a 2-D image
    # stays far below 2**31 pixels
    return masks.flatten(1).sum(1, dtype=torch.int32).long()


def _rows(columns: dict[str, list]) -> list[dict]:
    """Column lists of equal length -> one dict per row."""
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class SegmentationMetrics(Metric):
    """Per-image PTX metrics of a dataset, reduced to set level at epoch end.

    Args:
        ids, patients: the dataset's item ids and patient keys, indexed by ``index``.
        min_area, reference_size: the area rule used when ``update`` gets no diagnosis
            calls (``diagnosis.diagnose``): a prediction is PTX when its area exceeds
            ``min_area`` pixels on the evaluated grid (``reference_size`` None, the paper's
            rule) or at ``reference_size``, scaled to the evaluated grid.
        hausdorff: compute HD/HD95 (CPU work per image whose two masks are both non-empty;
            switch off for cheap validation). Off, the ``hd`` keys are absent from results.
        kwargs: passed to ``torchmetrics.Metric`` (``sync_on_compute``, ...).

    In multi-process runs ``compute``, ``per_image`` and ``per_patient`` are collective:
    call them on every rank.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        ids: Sequence[str],
        patients: Sequence[str],
        min_area: float = PAPER_MIN_AREA,
        reference_size: int | Sequence[int] | None = None,
        hausdorff: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(ids) != len(patients):
            raise ValueError(
                f"SegmentationMetrics got {len(ids)} ids but {len(patients)} patients; pass "
                "the dataset's `ids` and `patients` (one entry per item each)"
            )
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0 pixels, got {min_area}")
        self.ids, self.patients = list(ids), list(patients)
        self.min_area, self.reference_size = min_area, reference_size
        self.hausdorff = hausdorff
        names = ("index", *_COUNTS, "pred_ptx") + (mf.HAUSDORFF_KEYS if hausdorff else ())
        for name in names:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        index: torch.Tensor,
        pred_ptx: torch.Tensor | None = None,
    ) -> None:
        """Add a batch.

        Args:
            pred, target: ``B x H x W`` binary masks (bool or integer {0, 1}), any device.
            index: int64 ``B``, the items' positions in the dataset (``batch["index"]``).
            pred_ptx: bool ``B``, the image-level calls of a diagnosis rule
                (``DiagnosisRule.calls``); default: the area rule of this metric on ``pred``.
        """
        if pred.ndim != 3 or pred.shape != target.shape:
            raise ValueError(
                f"SegmentationMetrics.update expects pred and target of shape B x H x W, got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}; take argmax over the class "
                "dimension of the logits first"
            )
        index = torch.as_tensor(index, dtype=torch.int64, device=pred.device).reshape(-1)
        if index.numel() != pred.shape[0]:
            raise ValueError(f"index has {index.numel()} entries for a batch of {pred.shape[0]}")
        p, t = pred.bool(), target.bool()
        tp, pred_area, true_area = (_area(m) for m in (p & t, p, t))
        fp, fn = pred_area - tp, true_area - tp
        tn = p[0].numel() - tp - fp - fn
        for name, value in zip(("index", *_COUNTS), (index, tp, fp, fn, tn), strict=True):
            getattr(self, name).append(value)
        if pred_ptx is None:  # diagnose()'s rule on the areas just counted
            threshold = scaled_min_area(self.min_area, p.shape[-2:], self.reference_size)
            pred_ptx = pred_area > threshold
        # uint8 since not every collective backend gathers bool tensors
        self.pred_ptx.append(torch.as_tensor(pred_ptx, device=p.device).reshape(-1).to(torch.uint8))
        if self.hausdorff:
            hd, hd95 = self._hausdorff(p, t, both=(pred_area > 0) & (true_area > 0))
            self.hd.append(hd)
            self.hd95.append(hd95)

    @staticmethod
    def _hausdorff(p: torch.Tensor, t: torch.Tensor, both: torch.Tensor) -> tuple:
        # Only images where both masks are non-empty cross to the CPU; the rest stay NaN.
        hd = torch.full((p.shape[0],), float("nan"), dtype=torch.float32, device=p.device)
        hd95 = hd.clone()
        rows = both.nonzero().flatten()
        if rows.numel():
            pairs = zip(p[rows].cpu().numpy(), t[rows].cpu().numpy(), strict=True)
            values = torch.tensor([mf.hausdorff(a, b) for a, b in pairs], dtype=torch.float32)
            hd[rows], hd95[rows] = values[:, 0].to(p.device), values[:, 1].to(p.device)
        return hd, hd95

    def _table(self) -> dict[str, np.ndarray]:
        """Per-image arrays of the (synced) states, one row per distinct index, by index."""
        if isinstance(self.index, list) and not self.index:  # never updated
            raise RuntimeError("SegmentationMetrics has no images: call update() first")
        index = dim_zero_cat(self.index).cpu().numpy()
        index, keep = np.unique(index, return_index=True)
        self._check_repeats(len(keep), len(dim_zero_cat(self.index)))
        bad = index[(index < 0) | (index >= len(self.ids))]
        if bad.size:
            raise IndexError(
                f"dataset index {int(bad[0])} outside the {len(self.ids)} items "
                "SegmentationMetrics was built with; build it from the dataset being evaluated"
            )
        names = ("tp", "fp", "fn", "tn", "pred_ptx")
        names += mf.HAUSDORFF_KEYS if self.hausdorff else ()
        table = {n: dim_zero_cat(getattr(self, n)).cpu().numpy()[keep] for n in names}
        table["index"] = index
        table["patient"] = np.asarray([self.patients[i] for i in index.tolist()], dtype=object)
        return table

    @staticmethod
    def _check_repeats(n_distinct: int, n_seen: int) -> None:
        # DistributedSampler repeats at most world_size - 1 items to even out the ranks;
        # more repeats mean the states hold an earlier epoch too (reset() was not called).
        dist = torch.distributed
        ws = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if n_seen - n_distinct > ws - 1:
            warnings.warn(
                f"SegmentationMetrics saw {n_seen} items but only {n_distinct} distinct "
                f"dataset indices (padding explains at most {ws - 1}); call reset() after each "
                "epoch. The first result of each item is used.",
                stacklevel=3,
            )

    def _values(self, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = mf.image_metrics(*(table[n] for n in _COUNTS))
        if self.hausdorff:
            values.update({k: table[k].astype(np.float64) for k in mf.HAUSDORFF_KEYS})
        return values

    def compute(self) -> dict[str, float]:
        """Set-level metrics (keys in docs/design.md), as Python numbers; NaN if undefined."""
        table = self._table()
        tp, fp, fn = table["tp"], table["fp"], table["fn"]
        out = mf.set_metrics(
            self._values(table), tp, fp, fn, table["patient"], table["pred_ptx"].astype(bool)
        )
        if self.hausdorff:
            pred_empty, true_empty = (tp + fp) == 0, (tp + fn) == 0
            out["hd_n"] = int((~pred_empty & ~true_empty).sum())
            out["hd_skipped_pred_empty"] = int((pred_empty & ~true_empty).sum())
            out["hd_skipped_true_empty"] = int((~pred_empty & true_empty).sum())
            out["hd_skipped_both_empty"] = int((pred_empty & true_empty).sum())
        return out

    def _synced_table(self) -> dict[str, np.ndarray]:
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        ):
            return self._table()

    def per_image(self) -> list[dict]:
        """One row per distinct image, by dataset index: the ``per_image.csv`` table.

        Columns: ``id``, ``patient``, the per-image keys (``hd``/``hd95`` when computed),
        ``pred_area``, ``true_area`` (pixels), ``pred_ptx`` (area rule), ``true_ptx``, and
        the counts ``tp``, ``fp``, ``fn``, ``tn``.
        """
        table = self._synced_table()
        values = self._values(table)
        tp, fp, fn = table["tp"], table["fp"], table["fn"]
        columns = {
            "id": [self.ids[i] for i in table["index"].tolist()],
            "patient": table["patient"].tolist(),
            **{k: v.tolist() for k, v in values.items()},
            "pred_area": (tp + fp).tolist(),
            "true_area": (tp + fn).tolist(),
            "pred_ptx": table["pred_ptx"].astype(bool).tolist(),
            "true_ptx": ((tp + fn) > 0).tolist(),
            **{n: table[n].tolist() for n in _COUNTS},
        }
        return _rows(columns)

    def per_patient(self) -> list[dict]:
        """One row per patient: 3-D (per-volume) Dice and IoU from the summed counts.

        Columns: ``patient``, ``n_images``, ``dice``, ``iou``, ``pred_area``, ``true_area``
        (pixels, voxels for CT). ``dice_volume`` of ``compute`` is the mean of ``dice`` over
        the patients with ``true_area`` > 0.
        """
        table = self._synced_table()
        names, dice, iou, n, pred_area, true_area = mf.group_dice(
            table["patient"], table["tp"], table["fp"], table["fn"]
        )
        columns = {
            "patient": names.tolist(),
            "n_images": n.tolist(),
            "dice": dice.tolist(),
            "iou": iou.tolist(),
            "pred_area": pred_area.tolist(),
            "true_area": true_area.tolist(),
        }
        return _rows(columns)
