"""Pneumothorax volume, sides and compression ratio of a hand-made CT (canonical LPS)."""

import numpy as np
import pytest
from scipy import ndimage

from lightning_modules.volumetry import body_slice, fill_holes, pneumothorax_size, voxel_volume_ml


def chest(shape=(40, 30, 6)):
    """Air outside, a soft-tissue body (0 HU) columns 4-35, rows 3-26, with two lungs
    (-800 HU): patient right (low i) columns 8-17, left columns 22-31, rows 8-21."""
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[4:36, 3:27, :] = 0.0
    hu[8:18, 8:22, :] = -800.0  # right lung: 10 x 14 voxels per slice
    hu[22:32, 8:22, :] = -800.0  # left lung
    return hu


def test_voxel_volume_is_the_affines_determinant_in_ml():
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    assert voxel_volume_ml(affine) == pytest.approx(0.8 * 0.8 * 2.5 / 1000)
    flipped = np.diag([-0.8, -0.8, 2.5, 1.0])  # orientation does not change a volume
    assert voxel_volume_ml(flipped) == pytest.approx(voxel_volume_ml(affine))


def test_body_fills_the_lungs_but_not_the_outside_air():
    hu = chest()
    body = np.stack([body_slice(hu[:, :, k]) for k in range(hu.shape[2])], axis=2)
    assert body[10, 10, 0] and body[25, 15, 3]  # inside the lungs
    assert not body[1, 1, 0] and not body[38, 28, 5]  # outside
    assert body.sum() == 32 * 24 * 6


def test_hole_filling_is_scipys_on_random_slices():
    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.6, 0.7):  # many holes, some touching edges or diagonally
        foreground = rng.random((37, 29)) < density
        expected = ndimage.binary_fill_holes(foreground)
        assert np.array_equal(fill_holes(foreground), expected)
        if density >= 0.6:  # the case has holes to fill, so equality is not trivial
            assert expected.sum() > foreground.sum()
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6], ring[2:5, 2:5] = True, False  # a closed ring: its 3 x 3 hole is filled
    assert fill_holes(ring).sum() == 25 and not fill_holes(ring)[0].any()


def test_left_pneumothorax_volume_side_slices_and_compression():
    hu = chest()
    mask = np.zeros(hu.shape, dtype=np.uint8)
    # a left apical pneumothorax: air where the left lung was, 4 x 14 voxels on slices 3-5
    mask[28:32, 8:22, 3:6] = 1
    hu[28:32, 8:22, 3:6] = -1000.0
    affine = np.diag([2.0, 1.0, 3.0, 1.0])  # 6 mm^3 = 0.006 mL per voxel
    size = pneumothorax_size(mask, hu, affine)
    ptx_voxels = 4 * 14 * 3
    assert size["volume_ml"] == pytest.approx(ptx_voxels * 0.006)
    assert size["volume_left_ml"] == pytest.approx(ptx_voxels * 0.006)
    assert size["volume_right_ml"] == 0 and size["compression_right"] == 0
    assert size["slices"] == 3
    left_lung = 10 * 14 * 6 - ptx_voxels
    assert size["lung_air_left_ml"] == pytest.approx(left_lung * 0.006)
    assert size["lung_air_right_ml"] == pytest.approx(10 * 14 * 6 * 0.006)
    assert size["compression_left"] == pytest.approx(ptx_voxels / (ptx_voxels + left_lung))


def test_mask_off_the_ct_grid_is_refused():
    with pytest.raises(ValueError, match="one grid"):
        pneumothorax_size(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), np.eye(4))
