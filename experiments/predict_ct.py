"""``ptx predict`` for CT: find the volumes, segment each, write its mask on the input grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.io.errors import DataError
from datamodules.layouts.ct import NIFTI_SUFFIXES
from datamodules.layouts.privacy import anonymous_key
from datamodules.readers.dicom_enhanced import frame_headers, is_multiframe
from datamodules.readers.dicom_series import (
    read_series_headers,
    series_files,
    series_geometry,
    series_volume,
)
from datamodules.readers.nifti import (
    axial_slices,
    from_canonical,
    read_nifti_volume,
    to_canonical,
    write_nifti,
)
from datamodules.transforms import lung_window
from lightning_modules.volumetry import pneumothorax_size


@dataclass(frozen=True)
class Volume:
    """One CT volume to segment: a NIfTI file or the files of one DICOM series."""

    name: str  # keyed, non-identifying (file names, tables, logs)
    files: tuple[Path, ...]
    layout: str  # "nifti" or "dicom"

    @staticmethod
    def summary(row: dict) -> str:
        return (
            f"{row['volume_ml']:.1f} mL pneumothorax (right {row['volume_right_ml']:.1f}, "
            f"left {row['volume_left_ml']:.1f}) on {row['slices']} slices"
        )


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.endswith(NIFTI_SUFFIXES)


def _is_label(path: Path) -> bool:
    """A label of the CT layout (``label.nii.gz``): skipped, so a labelled folder predicts."""
    return path.name in tuple(f"label{s}" for s in NIFTI_SUFFIXES)


def find_volumes(root: Path) -> list[Volume]:
    """A NIfTI or enhanced DICOM file; a folder of NIfTI files; a DICOM series folder; or a
    folder of series folders (the non-NIfTI files of each folder are one series). Sorted by
    path; the CT layout's ``label.nii.gz`` files are not inputs."""
    if not root.exists():
        raise DataError("input not found", path=root)
    if root.is_file():  # a NIfTI volume or one enhanced (multi-frame) DICOM
        return [_volume(root, root.parent, (root,), "nifti" if _is_nifti(root) else "dicom")]
    volumes = [
        _volume(p, root, (p,), "nifti")
        for p in sorted(root.rglob("*"))
        if _is_nifti(p) and not _is_label(p)
    ]
    folders = sorted({p.parent for p in series_files(root) if not _is_nifti(p)})
    for folder in folders:
        files = tuple(p for p in series_files(folder) if p.parent == folder and not _is_nifti(p))
        if files:
            volumes.append(_volume(folder, root, files, "dicom"))
    return volumes


def _volume(path: Path, root: Path, files: tuple[Path, ...], layout: str) -> Volume:
    relative = str(path.relative_to(root)) if path != root else path.name
    return Volume(anonymous_key(relative, prefix="c"), files, layout)


def predict_volume(predictor, volume: Volume, out: Path, args) -> dict:
    """Segment one volume; write ``<name>_ptx.nii.gz`` (and probabilities); return its row."""
    headers = None
    if volume.layout == "nifti":
        source, affine = read_nifti_volume(volume.files[0])
    else:  # the headers once, for the volume and for the DICOM SEG
        headers = read_series_headers(volume.files)
        source, affine = series_volume(headers, volume.files)
    hu, canonical_affine = to_canonical(source, affine)
    data = predictor.data_settings
    # the run's window; a config without one gets lung_window's defaults (the paper's)
    window = {k: data[f"window_{k}"] for k in ("width", "level") if f"window_{k}" in data}
    slices = lung_window(axial_slices(hu), **window)
    prediction = predictor.probabilities(slices, batch_size=args.batch_size)
    calls = predictor.calls(prediction.grid)
    masks = predictor.masks(prediction.native, calls)
    mask = np.ascontiguousarray(masks.transpose(2, 1, 0))  # slices -> canonical (i, j, k)
    source_mask = from_canonical(mask, affine)  # the input's own voxel order
    write_nifti(out / f"{volume.name}_ptx.nii.gz", source_mask, affine)
    if args.save_probabilities:
        native = np.ascontiguousarray(prediction.native.transpose(2, 1, 0), dtype=np.float32)
        path = out / f"{volume.name}_probabilities.nii.gz"
        write_nifti(path, from_canonical(native, affine), affine)
    seg = _write_seg(out / f"{volume.name}_ptx.dcm", volume, headers, source_mask, predictor)
    size = pneumothorax_size(mask, hu, canonical_affine)
    return {
        "case": volume.name,
        "layout": volume.layout,
        "ptx": bool(size["volume_ml"] > 0),
        **size,
        "slices_total": int(mask.shape[2]),
        "top_probability": float(prediction.native.max()) if prediction.native.size else 0.0,
        "mask": f"{volume.name}_ptx.nii.gz",
        "dicom_seg": seg,
    }


def _write_seg(path: Path, volume: Volume, headers, source_mask: np.ndarray, predictor):
    """A DICOM SEG beside the NIfTI when the input is DICOM (its file name, else None):
    referencing a classic series slice by slice (one slice included) or an enhanced file frame
    by frame. ``headers``: the datasets as read; ``source_mask`` is in the volume's voxel order
    (column, row, slice sorted along the normal)."""
    if headers is None:
        return None  # NIfTI: no DICOM to reference
    from datamodules.writers.dicom_seg import write_dicom_seg
    from lightning_modules.bundle import project_version

    if is_multiframe(headers[0]):  # one enhanced file: frames in the file's own order
        sources = headers
        order = series_geometry(*frame_headers(headers[0], volume.files[0])).order
        position = order  # slice k of the volume is frame order[k] of the file
    else:  # classic slices, given to the SEG in the volume's slice order
        order = series_geometry(headers, volume.files).order
        sources = [headers[i] for i in order]
        position = range(len(order))
    frames = np.empty((len(order), *source_mask.shape[1::-1]), dtype=np.uint8)
    for k, at in enumerate(position):
        frames[at] = source_mask[:, :, k].T
    net = predictor.hparams.get("net", "ptx-seg")
    write_dicom_seg(path, sources, frames, str(net), project_version())
    return path.name
