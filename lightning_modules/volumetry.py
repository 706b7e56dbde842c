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


def body_mask(hu: np.ndarray) -> np.ndarray:
    """bool, same shape: inside the body, each axial slice's region above ``BODY_HU`` with
    its holes (the lungs, the pneumothorax) filled."""
    body = np.zeros(hu.shape, dtype=bool)
    for k in range(hu.shape[2]):
        body[:, :, k] = ndimage.binary_fill_holes(hu[:, :, k] > BODY_HU)
    return body


def pneumothorax_size(mask: np.ndarray, hu: np.ndarray, affine: np.ndarray) -> dict:
    """Size figures of a canonical (LPS) ``mask`` (0/1) on the grid of ``hu`` (HU, float).

    Returns volume_ml, volume_right_ml, volume_left_ml, slices (axial slices with any
    pneumothorax), lung_air_right_ml, lung_air_left_ml and compression_right,
    compression_left (ptx / (ptx + lung air), 0 where a side has neither).
    """
    if mask.shape != hu.shape:
        raise ValueError(f"mask {mask.shape} and CT {hu.shape} must share one grid")
    ptx = np.asarray(mask, dtype=bool)
    body = body_mask(hu)
    columns = np.nonzero(body.any(axis=(1, 2)))[0]
    middle = (columns[0] + columns[-1] + 1) / 2 if len(columns) else hu.shape[0] / 2
    split = int(np.ceil(middle))  # axis 0 runs to the patient's left: [split:] is the left
    ml = voxel_volume_ml(affine)
    out = {
        "volume_ml": float(np.count_nonzero(ptx)) * ml,
        "slices": int(ptx.any(axis=(0, 1)).sum()),
    }
    for side, rows in (("right", slice(0, split)), ("left", slice(split, None))):
        lung = body[rows] & (hu[rows] < LUNG_AIR_HU) & ~ptx[rows]  # views: no volume copies
        v_ptx = float(np.count_nonzero(ptx[rows])) * ml
        v_lung = float(np.count_nonzero(lung)) * ml
        out[f"volume_{side}_ml"] = v_ptx
        out[f"lung_air_{side}_ml"] = v_lung
        out[f"compression_{side}"] = v_ptx / (v_ptx + v_lung) if v_ptx + v_lung > 0 else 0.0
    return out
