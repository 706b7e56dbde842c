"""NIfTI volumes and pneumothorax labels, brought to one canonical orientation and checked
to lie on the same voxel grid in physical space.

The canonical orientation is LPS for the voxel axes ``(i, j, k)``: i runs to the patient's
left, j to posterior, k to superior. :func:`axial_slices` then gives ``slices x rows x
columns`` as a radiologist views an axial CT: anterior at the top, the patient's right on
the image's left, slices from inferior to superior. Image and label may each be stored in
any orientation (RAS, LPS, flipped or permuted axes); the same physical grid reorients to the
same canonical array, so masks stay aligned with images.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from datamodules.io.atomic import write_bytes_atomic
from datamodules.io.errors import DataError

CANONICAL = ("L", "P", "S")
GRID_TOL = 0.1  # a label may be off its image's grid by this fraction of the smallest voxel
_READ_ERRORS = (ImageFileError, OSError, EOFError, ValueError, zlib.error)


def _load(path: Path) -> nib.spatialimages.SpatialImage:
    try:
        return nib.load(path)
    except FileNotFoundError as err:
        raise DataError("NIfTI file does not exist", path=path) from err
    except _READ_ERRORS as err:
        raise DataError(
            f"not a readable NIfTI file ({type(err).__name__}: {err}); re-save it as .nii.gz",
            path=path,
        ) from err


def _as_3d(data: np.ndarray, path: Path) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:  # (x, y, z, 1) as some converters write
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(
            f"expected a 3-D volume, found shape {data.shape}; save one volume per file",
            path=path,
        )
    return data


def read_nifti_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Image voxels (float32, scl_slope/scl_inter applied: HU for CT) and the RAS+ affine."""
    path = Path(path)
    image = _load(path)
    try:
        data = image.get_fdata(dtype=np.float32)
    except _READ_ERRORS as err:
        raise DataError(
            f"NIfTI voxel data cannot be read ({type(err).__name__}: {err}): the file is "
            "truncated or corrupt; re-save it",
            path=path,
        ) from err
    return _as_3d(data, path), np.asarray(image.affine, dtype=float)


def read_nifti_label(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Label mask (uint8 {0, 1}: any non-zero value is pneumothorax) and the RAS+ affine."""
    path = Path(path)
    label = _load(path)
    try:
        proxy = label.dataobj
        scaled = getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0
        # unscaled integers stay small in memory; a scaled label is read as float
        raw = np.asarray(proxy) if scaled else np.asarray(proxy.get_unscaled())
    except _READ_ERRORS as err:
        raise DataError(
            f"NIfTI label data cannot be read ({type(err).__name__}: {err}): the file is "
            "truncated or corrupt; re-save it",
            path=path,
        ) from err
    if raw.dtype.kind == "f":
        raw = np.nan_to_num(raw)
    return _as_3d(raw != 0, path).astype(np.uint8), np.asarray(label.affine, dtype=float)


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute voxel axes to LPS; returns the reoriented array and its affine."""
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(CANONICAL))
    return apply_orientation(data, transform), affine @ inv_ornt_aff(transform, data.shape)


def check_same_grid(
    image_shape: tuple[int, ...],
    image_affine: np.ndarray,
    label_shape: tuple[int, ...],
    label_affine: np.ndarray,
    *,
    patient: str,
    path: str | Path,
) -> None:
    """Refuse a label (already canonical) that does not lie on its canonical image's grid."""
    spacing = np.linalg.norm(image_affine[:3, :3], axis=0)
    if tuple(label_shape) == tuple(image_shape):
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in image_shape])).reshape(3, -1)
        corners = np.vstack([corners, np.ones(corners.shape[1])])
        offset = np.abs((image_affine - label_affine) @ corners)[:3].max()
        if offset <= GRID_TOL * spacing.min():
            return
        problem = f"its grid is {offset:.2f} mm away from the image's"
    else:
        problem = f"its grid {tuple(label_shape)} differs from the image's {tuple(image_shape)}"
    raise DataError(
        f"the label is not on the image grid: {problem} (image voxels "
        f"{' x '.join(f'{s:.2f}' for s in spacing)} mm); draw or save the label on this very "
        "image (ITK-SNAP: load this image, then save the segmentation), or resample it onto "
        "the image grid with nearest-neighbour interpolation",
        path=path,
        patient=patient,
    )


def aligned_label(
    path: str | Path, image_shape: tuple[int, ...], image_affine: np.ndarray, *, patient: str
) -> np.ndarray:
    """Read a label, reorient it to LPS and check it lies on the canonical image grid.

    Returns the uint8 {0, 1} mask with ``image_shape`` (voxel order i, j, k).
    """
    mask, affine = to_canonical(*read_nifti_label(path))
    check_same_grid(image_shape, image_affine, mask.shape, affine, patient=patient, path=path)
    return mask


def axial_slices(volume: np.ndarray) -> np.ndarray:
    """Canonical (i, j, k) volume -> slices x rows x columns (k, j, i), contiguous."""
    return np.ascontiguousarray(volume.transpose(2, 1, 0))


def from_canonical(data: np.ndarray, source_affine: np.ndarray) -> np.ndarray:
    """Undo :func:`to_canonical`: a canonical (LPS) array back to the voxel order of the
    volume whose affine is ``source_affine``, so it can be saved with that very affine."""
    transform = ornt_transform(axcodes2ornt(CANONICAL), io_orientation(source_affine))
    return apply_orientation(data, transform)


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Save ``data`` (uint8 label or float32 map, in the voxel order of ``affine``) as NIfTI
    with that affine, atomically; the grid is the source's, so any viewer overlays it."""
    image = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))
    image.set_qform(image.affine, code=1)  # scanner coordinates, as a reader expects
    image.set_sform(image.affine, code=1)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    return write_bytes_atomic(path, _nifti_bytes(image, suffix))


def _nifti_bytes(image: nib.Nifti1Image, suffix: str) -> bytes:
    raw = io.BytesIO()
    image.to_stream(raw)  # nibabel writes the single-file .nii layout to a stream
    data = raw.getvalue()
    # level 1: a label map compresses almost as well, ~10x faster than gzip's default 9
    return gzip.compress(data, compresslevel=1, mtime=0) if suffix == ".nii.gz" else data
