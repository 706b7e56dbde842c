"""Chest CT pneumothorax data (EFA-Net paper): one sample per axial slice.

Where the volumes are found (patient folders or a manifest CSV) is ``layouts.ct``; this
module decodes a case (NIfTI or DICOM -> canonical orientation -> lung window) and splits
the patients. See ``docs/data.md`` ("CT").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.base import SegmentationDataModule
from datamodules.cache import CaseArrays
from datamodules.io.errors import DataError
from datamodules.layouts import Case
from datamodules.layouts.ct import discover_ct
from datamodules.readers.dicom_series import read_dicom_series
from datamodules.readers.nifti import aligned_label, axial_slices, read_nifti_volume, to_canonical
from datamodules.splits import Split, split_patients
from datamodules.transforms import lung_window

log = logging.getLogger("ptx.data.ct")

READER_VERSION = 2  # bump when reading changes the cached arrays (orientation, HU, labels)


class CTDataModule(SegmentationDataModule):
    """Chest CT volumes -> lung-windowed axial slices in [0, 1] with pneumothorax masks.

    Args:
        window_width, window_level: the display window in HU mapped to [0, 1] (paper: lung
            window 1500 / -600); part of the preprocessing settings, so changing it rebuilds
            the cache.
        manifest: CSV ``patient,image,label`` to read instead of the folder layout (relative
            to ``data_dir`` if given, else its folder becomes ``data_dir``);
            ``<data_dir>/manifest.csv`` is used when present.
        **kwargs: the common keywords of :class:`SegmentationDataModule` (``data_dir``,
            ``image_size``, ``batch_size``, ``seed``, ``split_file``, ``folds``, ``phantom``, ...).

    Every axial slice is one sample with id ``<patient key>-z<slice index>`` (slices counted
    from inferior); patients are split 50/4/6 (the paper) unless ``split_fractions``,
    ``folds`` or ``split_file`` say otherwise. Without ``data_dir`` a moderate phantom is
    generated (``DEFAULT_PHANTOM``, overridden key by key by ``phantom``).
    """

    modality = "ct"
    native_size = 512
    default_fractions = (50, 4, 6)
    DEFAULT_PHANTOM = {"patients": 14, "size": 160, "slices": 40}

    def __init__(
        self,
        data_dir: str | None = None,
        *,
        window_width: float = 1500.0,
        window_level: float = -600.0,
        manifest: str | None = None,
        **kwargs,
    ) -> None:
        if manifest is not None and data_dir is None:  # the manifest alone names the data
            manifest = str(Path(manifest).resolve())
            data_dir = str(Path(manifest).parent)
        super().__init__(data_dir, **kwargs)
        if window_width <= 0:
            raise ValueError(f"window_width must be positive HU, got {window_width}")
        self.window_width = float(window_width)
        self.window_level = float(window_level)
        self.manifest = manifest
        self.phantom = {**self.DEFAULT_PHANTOM, **self.phantom}

    def preprocessing_settings(self) -> dict:
        return {
            **super().preprocessing_settings(),
            "window_width": self.window_width,
            "window_level": self.window_level,
            "ct_reader": READER_VERSION,
        }

    # ---- discovery ----------------------------------------------------------------------
    def discover_entries(self, root: Path) -> tuple[list[Case], list[DataError]]:
        return discover_ct(root, self.manifest)

    # ---- decoding -----------------------------------------------------------------------
    def load_case(self, case: Case) -> CaseArrays:
        label_path, image_files = case.files[0], case.files[1:]
        if case.meta["format"] == "nifti":
            hu, affine = read_nifti_volume(image_files[0])
            layout = "nifti"
        else:
            hu, affine = read_dicom_series(image_files)
            layout = "enhanced dicom" if len(image_files) == 1 else "dicom series"
        hu, affine = to_canonical(hu, affine)
        info = {
            "layout": layout,
            "shape": hu.shape,  # canonical (left, posterior, superior) voxel axes
            "spacing": tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)),
        }
        mask = aligned_label(label_path, hu.shape, affine, patient=case.patient)
        slices = axial_slices(hu)  # float32, ours: windowed in place (volumes are large)
        images = lung_window(slices, self.window_width, self.window_level, out=slices)
        masks = axial_slices(mask)
        ids = [f"{case.patient}-z{k:04d}" for k in range(len(images))]
        log.debug(
            "patient %s: %d slices (%d with pneumothorax) from %s",
            case.patient,
            len(ids),
            int(masks.any(axis=(1, 2)).sum()),
            case.meta["format"],
        )
        return CaseArrays(images=images, masks=masks, ids=ids, info=info)

    def split_cases(self, cases: Sequence[Case]) -> Split:
        return split_patients([c.patient for c in cases], self.split_fractions, seed=self.seed)

    def generate_phantom(self, out: Path) -> None:
        from datamodules.phantom.ct import generate_ct_phantom

        generate_ct_phantom(out, **{"seed": self.seed, **self.phantom})
