"""The DataModule contract shared by CT and X-ray: the Lightning plumbing both run through.

files -> ``layouts`` (find the cases) -> modality reader (``load_case``) -> resize ->
preprocessing cache (``cache.PreprocessingCache.cached_cases``) -> split -> SliceDataset ->
DataLoader. A modality subclass only says how to find its cases, how to decode one case, how
to split patients and how to make its phantom; this class holds the arguments, set-up, the
split choice, the DataLoaders, the evaluation index handed to the module and the data report.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules import splits
from datamodules.cache import CaseArrays, PreprocessingCache, default_cache_dir
from datamodules.dataset import CachedCase, EvaluationIndex, SliceDataset
from datamodules.io.errors import DataError
from datamodules.layouts import Case
from datamodules.layouts.privacy import id_fingerprint
from datamodules.phantom import check_version, ensure_phantom, phantom_version, warn_if_older
from datamodules.splits import SUBSETS, Split, check_split, load_split, save_split
from datamodules.transforms import resize_images, resize_masks

log = logging.getLogger("ptx.data")
# the subsets each Lightning stage reads (fit also tests after training: all three)
STAGE_SUBSETS = {"fit": SUBSETS, "validate": ("val",), "test": ("test",), "predict": ()}


class SegmentationDataModule(pl.LightningDataModule):
    """Common contract of :class:`CTDataModule` and :class:`XRayDataModule`.

    Args:
        data_dir: folder of the data set; None generates (once) and uses the phantom.
        image_size: side of the square network input in pixels; None keeps the native grid.
        batch_size, num_workers: DataLoader settings.
        cache_dir: preprocessing cache and phantom folder (default ``$PTX_CACHE_DIR``).
        seed: seed of the split and of the phantom.
        in_channels: grey is replicated to this many channels (X-ray paper: 3).
        split_file: JSON split to use instead of drawing one (see ``datamodules.splits``).
        split_fractions: train/val/test proportions when drawing a split.
        folds: number of folds of a patient k-fold stratified by pneumothorax
            (``splits.kfold_split``): fold ``fold`` is the test set, the other patients are
            split train/val as ``split_fractions``' first two. None: no k-fold.
        fold: the fold tested, 0 to ``folds - 1``; needs ``folds``.
        hflip: random horizontal flips on training items.
        train_negative_fraction: share of training slices without pneumothorax kept.
        phantom: keyword arguments for the phantom generator when ``data_dir`` is None;
            ``version`` (what ``ptx fit`` records) must be the version this ptx draws.
    """

    modality: str = ""
    native_size: int | None = None  # source grid side the diagnosis area threshold refers to
    default_fractions: tuple[float, float, float] = (1, 1, 1)

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int | None = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        cache_dir: str | None = None,
        seed: int = 0,
        in_channels: int = 1,
        split_file: str | None = None,
        split_fractions: Sequence[float] | None = None,
        hflip: bool = False,
        train_negative_fraction: float = 1.0,
        phantom: dict | None = None,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        super().__init__()
        splits.check_fold_args(folds, fold)
        self.data_dir = Path(data_dir) if data_dir else None
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.seed = seed
        self.in_channels = in_channels
        self.split_file = split_file
        self.split_fractions = tuple(split_fractions or self.default_fractions)
        self.hflip = hflip
        self.train_negative_fraction = train_negative_fraction
        self.phantom = check_version(phantom or {}, self.modality)
        self.folds, self.fold = folds, fold
        self.split: Split | None = None
        self.report: dict = {}
        self.train_dataset = self.val_dataset = self.test_dataset = None

    # ---- what a modality provides ----------------------------------------------------
    @abstractmethod
    def discover_entries(self, root: Path) -> tuple[list[Case], list[DataError]]:
        """Every case under ``root``, and a DataError for each one that cannot be a case
        (e.g. a patient folder without label); errors that concern the whole data set
        (no layout recognised, a malformed CSV) are raised."""

    @abstractmethod
    def load_case(self, case: Case) -> CaseArrays:
        """Decode one case at its native grid: images in [0, 1], masks in {0, 1}."""

    @abstractmethod
    def split_cases(self, cases: Sequence[Case]) -> Split:
        """Draw the patient-level split (seeded by ``self.seed``)."""

    @abstractmethod
    def generate_phantom(self, out: Path) -> None:
        """Write this modality's phantom data set into ``out``."""

    patient_labels = staticmethod(splits.patient_labels)  # the strata of a split

    def draw_split(self, cases: Sequence[Case]) -> Split:
        """The split file's split, else fold ``fold`` of ``folds``, else :meth:`split_cases`."""
        if self.split_file:
            return load_split(self.split_file)
        if self.folds is None:
            return self.split_cases(cases)
        train, val = self.split_fractions[:2]
        val_fraction, labels = val / (train + val or 1), self.patient_labels(cases)
        return splits.kfold_split(labels, self.folds, self.fold, val_fraction, seed=self.seed)

    def preprocessing_settings(self) -> dict:
        """Everything that changes the cached arrays (subclasses add their own); the id
        fingerprint because cached ids carry patient keys."""
        return {"image_size": self.image_size, "id_fingerprint": id_fingerprint()}

    def discover_cases(self, root: Path) -> list[Case]:
        """Every case under ``root``; the first problem (or finding none) raises DataError.
        ``ptx check-data`` reports them all instead (``datamodules.layouts.check``)."""
        cases, errors = self.discover_entries(root)
        if errors:
            more = f" ({len(errors) - 1} more problems: ptx check-data lists them)"
            raise errors[0] if len(errors) == 1 else DataError(f"{errors[0]}{more}")
        if not cases:
            raise DataError(f"no {self.modality} cases found", path=root)
        return cases

    # ---- shared pipeline -------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        """The folder read: ``data_dir``, or the phantom folder when none is given."""
        if self.data_dir is not None:
            return self.data_dir
        tag = "-".join(f"{k}{v}" for k, v in sorted(self.phantom.items()))
        version = f"v{phantom_version(self.modality)}"
        name = f"{self.modality}-{version}-seed{self.seed}" + (f"-{tag}" if tag else "")
        return self.cache_dir / "phantom" / name

    def _ensure_data(self) -> Path:
        """The folder read, checked; the phantom is generated into it first when needed."""
        root = self.data_root
        if self.data_dir is None:
            return ensure_phantom(root, self.modality, self.generate_phantom)
        if not root.is_dir():
            raise DataError("data folder does not exist; pass an existing data_dir", path=root)
        warn_if_older(root, self.modality)
        return root

    def _decode(self, case: Case) -> CaseArrays:
        """A case decoded and resized to ``image_size``: what the cache stores."""
        arrays = self.load_case(case)
        return CaseArrays(
            images=resize_images(arrays.images, self.image_size),
            masks=resize_masks(arrays.masks, self.image_size),
            ids=arrays.ids,
        )

    def _cached_cases(self, cases: Sequence[Case]) -> list[CachedCase]:
        """Each case's cache entry, built where missing, stale, torn or corrupt."""
        settings = self.preprocessing_settings()
        cache = PreprocessingCache.under(self.cache_dir, self.modality, settings)
        cached, decoded = cache.cached_cases(cases, self._decode)
        self.report["cases_decoded"] = decoded
        self.report["cases_from_cache"] = len(cases) - decoded
        return cached

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node before each stage: decode everything
        # once, here; after the first setup() the cache is known to be complete.
        if self.train_dataset is None:
            self._cached_cases(self.discover_cases(self._ensure_data()))

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self._build_datasets()
        self._check_subsets(STAGE_SUBSETS.get(stage or "", SUBSETS))
        self._hand_over()

    def _check_subsets(self, needed: Sequence[str]) -> None:
        """Raise DataError if a subset the stage reads is empty (a test of every case,
        ``split_fractions [0, 0, 1]``, needs only the test subset)."""
        for subset in needed:
            if not len(getattr(self, f"{subset}_dataset")):
                raise DataError(
                    f"the {subset} split is empty ({self.report['cases']} cases in all): "
                    "give more data or other split fractions",
                    path=self.data_root,
                )

    def evaluation_index(self) -> dict[str, EvaluationIndex]:
        """``{"val": ..., "test": ...}``: the images each evaluation stage scores (a stage
        whose subset is empty is left out)."""
        datasets = {"val": self.val_dataset, "test": self.test_dataset}
        return {stage: ds.evaluation_index() for stage, ds in datasets.items() if len(ds)}

    def _hand_over(self) -> None:
        """Give the trainer's LightningModule what its metrics need (the evaluation index
        and ``native_size``), if it takes it (``set_evaluation_data``): this runs before the
        module's own ``setup``, on every process."""
        trainer = getattr(self, "trainer", None)
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        if hasattr(module, "set_evaluation_data"):
            module.set_evaluation_data(self.evaluation_index(), self.native_size)

    def _build_datasets(self) -> None:
        cases = self.discover_cases(self._ensure_data())
        cached = self._cached_cases(cases)
        # labels not known before decoding (mask PNGs) come from the cache's index
        cases = [
            c if c.label is not None else replace(c, label=int(any(cc.positive)))
            for c, cc in zip(cases, cached, strict=True)
        ]
        self.split = self.draw_split(cases)
        check_split(self.split)
        by_subset = {s: [c for c in cached if c.patient in set(self.split[s])] for s in SUBSETS}
        self.report["cases"] = len(cases)
        keep = self._train_keep(by_subset["train"])
        self.train_dataset = SliceDataset(by_subset["train"], self.in_channels, self.hflip, keep)
        self.val_dataset = SliceDataset(by_subset["val"], self.in_channels)
        self.test_dataset = SliceDataset(by_subset["test"], self.in_channels)
        self._log_report(cases)

    def _train_keep(self, cases: Sequence[CachedCase]) -> np.ndarray | None:
        if self.train_negative_fraction >= 1.0 or not cases:
            return None
        positive = np.concatenate([np.asarray(c.positive, dtype=bool) for c in cases])
        rng = np.random.default_rng(self.seed)
        keep = positive | (rng.random(len(positive)) < self.train_negative_fraction)
        return np.flatnonzero(keep)

    def _log_report(self, cases: Sequence[Case]) -> None:
        for name in SUBSETS:
            ds = getattr(self, f"{name}_dataset")
            self.report[name] = {
                "patients": len(self.split[name]),
                "images": len(ds),
                "positive": int(ds.positive.sum()),
            }
        log.info(
            "%s data: %d cases read (%d decoded, %d from cache); %s",
            self.modality,
            len(cases),
            self.report["cases_decoded"],
            self.report["cases_from_cache"],
            "; ".join(
                f"{s}: {r['patients']} patients, {r['images']} images "
                f"({r['positive']} with pneumothorax)"
                for s, r in ((s, self.report[s]) for s in SUBSETS)
            ),
        )

    def save_split(self, path: str | Path) -> Path:
        """Write the split used (patient keys per subset) next to a run, for reuse, with the
        modality, seed and k-fold settings (``folds``, ``fold``: null without k-fold)."""
        if self.split is None:
            raise RuntimeError("call setup() before save_split()")
        folds = {"folds": self.folds, "fold": self.fold if self.folds else None}
        return save_split(self.split, path, modality=self.modality, seed=self.seed, **folds)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)
