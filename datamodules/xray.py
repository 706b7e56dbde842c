"""Chest X-ray DataModule: SIIM-ACR (DICOM or PNG + RLE CSV) and PNG image/mask folders.

Defaults follow the MS_scSE_FC-DenseNet paper: 3 input channels, random horizontal flips on
training images, a 64/16/20 split stratified by pneumothorax label, grouped by patient.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from datamodules.base import SegmentationDataModule
from datamodules.cache import CaseArrays
from datamodules.io.errors import DataError
from datamodules.layouts import Case
from datamodules.layouts.xray import (
    Radiograph,
    discover_radiographs,
    find_layout,
    radiograph_case,
    with_scheme,
)
from datamodules.readers.radiograph import (
    DEFAULT_PERCENTILES,
    INTENSITY_RULES,
    READER_VERSION,
    is_dicom,
    read_mask_png,
    read_radiograph,
)
from datamodules.readers.rle import SCHEMES, decode_instances
from datamodules.splits import Split, stratified_split

log = logging.getLogger("ptx.data")

# The default phantom: SIIM layout, small enough for the quick profile (image_size 64-128).
PHANTOM_DEFAULTS = {"patients": 40, "size": 256, "layout": "siim"}


class XRayDataModule(SegmentationDataModule):
    """Frontal chest radiographs with pneumothorax masks (see ``docs/data.md``).

    Besides the common keywords (:class:`SegmentationDataModule`, passed on as ``**kwargs``):

    Args:
        in_channels, hflip: as there, with the paper's defaults (3 channels, flips on).
        rle_csv: the RLE CSV to read, relative to ``data_dir`` (default: ``train-rle.csv``,
            else ``stage_2_train.csv``).
        rle_scheme: ``"auto"`` (detect relative SIIM vs standard Kaggle RLE per file),
            ``"relative"`` or ``"standard"``.
        intensity: how an image without a VOI LUT / window is mapped to [0, 1]:
            ``"percentiles"`` (its own robust range, default) or ``"bit_depth"``.
        percentiles: the low and high percentiles of that robust range (0.5, 99.5).
    """

    modality = "xray"
    native_size = 1024  # SIIM grid: the diagnosis area threshold (50 px) refers to it
    default_fractions = (64, 16, 20)

    def __init__(
        self,
        data_dir: str | None = None,
        *,
        in_channels: int = 3,
        hflip: bool = True,
        rle_csv: str | None = None,
        rle_scheme: str = "auto",
        intensity: str = "percentiles",
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        **kwargs,
    ) -> None:
        super().__init__(data_dir, in_channels=in_channels, hflip=hflip, **kwargs)
        if rle_scheme not in ("auto", *SCHEMES):
            raise ValueError(f"rle_scheme must be 'auto', 'relative' or 'standard': {rle_scheme}")
        # Defaults go into the dict so they name the phantom folder: new defaults, new folder.
        self.phantom = {**PHANTOM_DEFAULTS, **self.phantom}
        if self.phantom["layout"] not in ("siim", "png"):
            raise ValueError(f"phantom layout must be 'siim' or 'png': {self.phantom['layout']}")
        if intensity not in INTENSITY_RULES:
            raise ValueError(f"intensity must be one of {INTENSITY_RULES}: {intensity!r}")
        low, high = (float(p) for p in percentiles)
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must be 0 <= low < high <= 100: {percentiles}")
        self.rle_csv = rle_csv
        self.rle_scheme = rle_scheme
        self.intensity = intensity
        self.percentiles = (low, high)
        self.skipped_ids: dict[str, list[str]] = {}  # by reason, from the last discovery

    def preprocessing_settings(self) -> dict:
        return {
            **super().preprocessing_settings(),
            "reader": READER_VERSION,
            "ids": "image_key",  # stored ids are keys (entries that held file stems: rebuilt)
            "intensity": self.intensity,
            "percentiles": list(self.percentiles),
        }

    def generate_phantom(self, out: Path) -> None:
        from datamodules.phantom.xray import generate_xray_phantom

        generate_xray_phantom(out, **{"seed": self.seed, **self.phantom})

    def discover_entries(self, root: Path) -> tuple[list[Case], list[DataError]]:
        layout = find_layout(root, self.rle_csv)
        entries, skipped = discover_radiographs(layout)
        self._report_skipped(skipped)
        if not entries:
            raise DataError(
                f"no radiograph with a mask found ({layout.kind} layout, images in "
                f"{layout.images.name}/; skipped: {self.report['images_skipped']}); "
                "check the folder and that ids match the mask names or CSV rows",
                path=root,
            )
        cases, errors = [], []
        for entry in entries:
            try:
                cases.append(radiograph_case(entry))
            except DataError as err:
                errors.append(err)
        _check_keys(cases)
        if layout.csv is not None and cases:
            cases, scheme = with_scheme(cases, layout.csv, self.rle_scheme)
            if scheme != "relative":
                log.info("%s holds standard (absolute, 1-indexed) RLE", layout.csv.name)
        self.report["images_read"] = len(cases)
        log.info(
            "xray %s layout: %d images of %d patients",
            layout.kind,
            len(cases),
            len({c.patient for c in cases}),
        )
        return cases, errors

    def _report_skipped(self, skipped: dict[str, list[str]]) -> None:
        """Counts in the report and the log; the ids themselves (file stems, which may
        identify) only in memory, for ``ptx check-data`` to name."""
        self.skipped_ids = skipped
        self.report["images_skipped"] = {reason: len(ids) for reason, ids in skipped.items()}
        for reason, ids in skipped.items():
            if ids:
                log.warning("skipped %d images (%s); ptx check-data names them", len(ids), reason)

    def load_case(self, case: Radiograph) -> CaseArrays:
        image = read_radiograph(case.files[0], self.intensity, self.percentiles)
        if case.mask_file is not None:
            mask = read_mask_png(case.mask_file)
            if mask.shape != image.shape:
                raise DataError(
                    f"mask is {mask.shape[0]} x {mask.shape[1]} but its image "
                    f"{case.files[0].name} is {image.shape[0]} x {image.shape[1]}; "
                    "export the mask on the image's grid",
                    path=case.mask_file,
                )
        else:
            mask = decode_instances(case.rows, *image.shape, case.scheme, case.csv)
        source = "png" if case.mask_file is not None else f"{case.scheme} RLE"
        info = {"layout": f"{'dicom' if is_dicom(case.files[0]) else 'png'} + {source}"}
        info["shape"] = image.shape
        return CaseArrays(images=image[None], masks=mask[None], ids=[case.key], info=info)

    def split_cases(self, cases: Sequence[Case]) -> Split:
        return stratified_split(self.patient_labels(cases), self.split_fractions, seed=self.seed)


def _check_keys(cases: Sequence[Radiograph]) -> None:
    """Two ids whose keys coincide (12 hex digits: about one data set of a million images in
    500) would merge in every record: DataError naming the second file."""
    seen: dict[str, str] = {}
    for case in cases:
        if seen.setdefault(case.key, case.image_id) != case.image_id:
            raise DataError(
                f"images {seen[case.key]!r} and {case.image_id!r} have the same key {case.key}; "
                "rename one of the two files",
                path=case.files[0],
            )
