"""Pneumothorax size from a predicted CT mask: volume in mL (total and per side), the slices
involved, and an estimate of the lung compression ratio.

The EFA-Net paper names "the automatic calculation of a patient's lung compression ratio" as
the goal segmentation serves. Here the ratio of a hemithorax is pneumothorax volume over
pneumothorax + aerated lung volume of the same side. The aerated lung is an **estimate**:
voxels below ``LUNG_AIR_HU`` inside the body (per axial slice, the filled region above
``BODY_HU``), outside the pneumothorax mask; airways and bowel gas inside the body count as
lung, dense consolidation does not. The sides split at the body's centre along the
left-right axis. Arrays are canonical LPS (``datamodules.readers.nifti``): voxel axis 0 runs
to the patient's left, axis 2 to superior.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BODY_HU = -500.0  # soft tissue and bone are above; air and aerated lung below
LUNG_AIR_HU = -400.0  # aerated lung (about -900 to -500 HU) and free air are below


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL from a 4 x 4 affine in mm."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]))) / 1000.0


def fill_holes(foreground: np.ndarray) -> np.ndarray:
    """2-D hole filling: ``foreground`` (bool H x W) plus every background region that does not
    touch the image border (4-connected), as ``scipy.ndimage.binary_fill_holes`` gives it, from
    one labelling of the background instead of a flood by repeated dilation (2-3x faster on a
    512 x 512 slice)."""
    labels, count = ndimage.label(~foreground)
    outside = np.zeros(count + 1, dtype=bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the foreground itself
    return ~outside[labels]


def body_slice(hu: np.ndarray) -> np.ndarray:
    """bool, same shape as the axial slice ``hu``: inside the body, the region above
    ``BODY_HU`` with its holes (the lungs, the pneumothorax) filled."""
    return fill_holes(hu > BODY_HU)


def pneumothorax_size(mask: np.ndarray, hu: np.ndarray, affine: np.ndarray) -> dict:
    """Size figures of a canonical (LPS) ``mask`` (0/1) on the grid of ``hu`` (HU, float).

    Returns volume_ml, volume_right_ml, volume_left_ml, slices (axial slices with any
    pneumothorax), lung_air_right_ml, lung_air_left_ml and compression_right,
    compression_left (ptx / (ptx + lung air), 0 where a side has neither). One axial slice at
    a time: per left-right column, the body's extent and the counts of pneumothorax and lung
    air voxels, then the sides are split at the body's centre; no volume-sized temporary.
    """
    if mask.shape != hu.shape:
        raise ValueError(f"mask {mask.shape} and CT {hu.shape} must share one grid")
    ptx = np.asarray(mask, dtype=bool)
    width = hu.shape[0]
    in_body = np.zeros(width, dtype=bool)
    counts = {"ptx": np.zeros(width, dtype=np.int64), "lung": np.zeros(width, dtype=np.int64)}
    for k in range(hu.shape[2]):
        body = body_slice(hu[:, :, k])
        in_body |= body.any(axis=1)
        counts["ptx"] += np.count_nonzero(ptx[:, :, k], axis=1)
        lung = body & (hu[:, :, k] < LUNG_AIR_HU) & ~ptx[:, :, k]
        counts["lung"] += np.count_nonzero(lung, axis=1)
    columns = np.nonzero(in_body)[0]
    middle = (columns[0] + columns[-1] + 1) / 2 if len(columns) else width / 2
    split = int(np.ceil(middle))  # axis 0 runs to the patient's left: [split:] is the left
    ml = voxel_volume_ml(affine)
    out = {
        "volume_ml": float(counts["ptx"].sum()) * ml,
        "slices": int(ptx.any(axis=(0, 1)).sum()),
    }
    for side, rows in (("right", slice(0, split)), ("left", slice(split, None))):
        v_ptx = float(counts["ptx"][rows].sum()) * ml
        v_lung = float(counts["lung"][rows].sum()) * ml
        out[f"volume_{side}_ml"] = v_ptx
        out[f"lung_air_{side}_ml"] = v_lung
        out[f"compression_{side}"] = v_ptx / (v_ptx + v_lung) if v_ptx + v_lung > 0 else 0.0
    return out
