"""Chest X-ray DataModule: SIIM-ACR (DICOM or PNG + RLE CSV) and PNG image/mask folders.

Defaults follow the MS_scSE_FC-DenseNet paper: 3 input channels, random horizontal flips on
training images, a 64/16/20 split stratified by pneumothorax label, grouped by patient.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from datamodules.base import Case, SegmentationDataModule
from datamodules.cache import CaseArrays
from datamodules.errors import DataError
from datamodules.privacy import anonymous_key
from datamodules.readers.dicom import read_dicom
from datamodules.readers.radiograph import (
    DEFAULT_PERCENTILES,
    INTENSITY_RULES,
    READER_VERSION,
    image_shape,
    is_dicom,
    read_mask_png,
    read_radiograph,
)
from datamodules.readers.rle import (
    SCHEMES,
    RleRow,
    check_rows,
    decode_instances,
    detect_scheme,
)
from datamodules.readers.siim import RadiographEntry, discover_radiographs, find_layout
from datamodules.splits import Split, stratified_split

log = logging.getLogger("ptx.data")

# The default phantom: SIIM layout, small enough for the quick profile (image_size 64-128).
PHANTOM_DEFAULTS = {"patients": 40, "size": 256, "layout": "siim"}


@dataclass(frozen=True)
class Radiograph(Case):
    """One radiograph. ``rows`` (with their CSV line numbers) and ``csv`` serve decoding and
    error messages; the cache key sees only ``files`` and ``meta`` (the RLE strings)."""

    image_id: str = ""
    shape: tuple[int, int] = (0, 0)
    mask_file: Path | None = None
    rows: tuple[RleRow, ...] = ()
    csv: Path | None = None
    scheme: str = "relative"


class XRayDataModule(SegmentationDataModule):
    """Frontal chest radiographs with pneumothorax masks (see ``docs/data.md``).

    Besides the common keywords (:class:`SegmentationDataModule`):

    Args:
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
        image_size: int | None = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        cache_dir: str | None = None,
        seed: int = 0,
        in_channels: int = 3,
        split_file: str | None = None,
        split_fractions: Sequence[float] | None = None,
        hflip: bool = True,
        train_negative_fraction: float = 1.0,
        phantom: dict | None = None,
        folds: int | None = None,
        fold: int = 0,
        rle_csv: str | None = None,
        rle_scheme: str = "auto",
        intensity: str = "percentiles",
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            cache_dir=cache_dir,
            seed=seed,
            in_channels=in_channels,
            split_file=split_file,
            split_fractions=split_fractions,
            hflip=hflip,
            train_negative_fraction=train_negative_fraction,
            phantom=phantom,
            folds=folds,
            fold=fold,
        )
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

    def preprocessing_settings(self) -> dict:
        return {
            **super().preprocessing_settings(),
            "reader": READER_VERSION,
            "intensity": self.intensity,
            "percentiles": list(self.percentiles),
        }

    def generate_phantom(self, out: Path) -> None:
        from datamodules.phantom_xray import generate_xray_phantom

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
                cases.append(self._case(entry))
            except DataError as err:
                errors.append(err)
        if layout.csv is not None and cases:
            cases = self._with_scheme(cases, layout.csv)
        self.report["images_read"] = len(cases)
        log.info(
            "xray %s layout: %d images of %d patients",
            layout.kind,
            len(cases),
            len({c.patient for c in cases}),
        )
        return cases, errors

    def _case(self, entry: RadiographEntry) -> Radiograph:
        """Patient key, grid and (for RLE rows) label of one image, from its header alone;
        a mask PNG is decoded once, into the cache, which then gives the label."""
        patient_id = ""
        if is_dicom(entry.image):
            header = read_dicom(entry.image, header_only=True)
            patient_id = str(header.get("PatientID", "") or "").strip()
            shape = (int(header.get("Rows", 0)), int(header.get("Columns", 0)))
        else:
            shape = image_shape(entry.image)
        # grouped by patient when the DICOM says who it is; else each image stands alone
        patient = anonymous_key(patient_id or f"image:{entry.image_id}")
        if entry.mask is not None:
            label, files, meta = None, (entry.image, entry.mask), {}
        else:
            label = int(any(r.encoded != "-1" for r in entry.rows))
            files, meta = (entry.image,), {"rle": [r.encoded for r in entry.rows]}
        return Radiograph(
            patient=patient,
            files=files,
            meta=meta,
            label=label,
            image_id=entry.image_id,
            shape=shape,
            mask_file=entry.mask,
            rows=entry.rows,
        )

    def _with_scheme(self, cases: list[Radiograph], csv: Path) -> list[Radiograph]:
        """Decide relative vs standard RLE for the whole CSV and record it in each case."""
        sized = [(row, c.shape[0] * c.shape[1]) for c in cases for row in c.rows]
        if self.rle_scheme == "auto":
            scheme = detect_scheme(sized, csv)
        else:
            scheme = self.rle_scheme
            check_rows(sized, scheme, csv)
        if scheme != "relative":
            log.info("%s holds standard (absolute, 1-indexed) RLE", csv.name)
        return [
            replace(c, meta={**c.meta, "scheme": scheme}, csv=csv, scheme=scheme) for c in cases
        ]

    def _report_skipped(self, skipped: dict[str, list[str]]) -> None:
        self.report["images_skipped"] = {reason: len(ids) for reason, ids in skipped.items()}
        for reason, ids in skipped.items():
            if ids:
                log.warning("skipped %d ids (%s), e.g. %s", len(ids), reason, ", ".join(ids[:3]))

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
        return CaseArrays(images=image[None], masks=mask[None], ids=[case.image_id], info=info)

    def split_cases(self, cases: Sequence[Case]) -> Split:
        return stratified_split(self.patient_labels(cases), self.split_fractions, seed=self.seed)
