"""Losses: the SW-CEL weight map against hand-drawn maps, special cases, values, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from lightning_modules.losses import create_loss, list_losses, swce_weight_map

# A 6 x 7 image, pneumothorax (1) touching the left border.
MASK = """
0000000
1110000
1111000
1110000
0000000
0000000
"""
# Hand-drawn boundary contour B of the PTX class. T: PTX not on the contour, E: on it,
# '.': background (which has no boundary term: the paper draws the target's contour only).
# Width 0: the edge pixels only (a background pixel among the 8 neighbours; the image border
# is no neighbour).
BOUNDARY_WIDTH_0 = """
.......
EEE....
TTEE...
EEE....
.......
.......
"""
# Width 1: the edge dilated by one 3x3 step, kept inside the pneumothorax: all of this one.
BOUNDARY_WIDTH_1 = """
.......
EEE....
EEEE...
EEE....
.......
.......
"""


def grid(drawing: str) -> list[str]:
    return drawing.split()


def mask_tensor(drawing: str = MASK) -> torch.Tensor:
    return torch.tensor([[int(ch) for ch in row] for row in grid(drawing)])[None]


def hand_weights(drawing: str, boundary: bool = True) -> torch.Tensor:
    """w = |N|/|T_c| on T_c + |N|/|B| on the PTX contour B, counted from the drawing."""
    cells = "".join(grid(drawing))
    n, t1 = len(cells), sum(ch in "TE" for ch in cells)
    t0, b1 = n - t1, cells.count("E")
    value = {"T": n / t1, "E": n / t1 + (n / b1 if boundary else 0), ".": n / t0}
    return torch.tensor([[value[ch] for ch in row] for row in grid(drawing)])[None]


def test_hand_drawing_counts():
    # the drawings themselves: 42 pixels, 10 PTX, contours of 8 (width 0) and 10 (width 1)
    cells0, cells1 = "".join(grid(BOUNDARY_WIDTH_0)), "".join(grid(BOUNDARY_WIDTH_1))
    assert (len(cells0), cells0.count("E") + cells0.count("T")) == (42, 10)
    assert (cells0.count("E"), cells1.count("E")) == (8, 10)
    assert mask_tensor().sum() == 10


@pytest.mark.parametrize("width, drawing", [(0, BOUNDARY_WIDTH_0), (1, BOUNDARY_WIDTH_1)])
def test_swce_weight_map_equals_hand_computed_map(width, drawing):
    weights = swce_weight_map(mask_tensor(), boundary_width=width)
    torch.testing.assert_close(weights, hand_weights(drawing).float())


def test_weight_map_values_at_width_0():
    weights = swce_weight_map(mask_tensor(), boundary_width=0)
    assert weights[0, 2, 0].item() == pytest.approx(42 / 10)  # interior PTX: class term only
    assert weights[0, 1, 0].item() == pytest.approx(42 / 10 + 42 / 8)  # PTX edge
    assert weights[0, 0, 0].item() == pytest.approx(42 / 32)  # background by the contour
    assert weights[0, 5, 6].item() == pytest.approx(42 / 32)  # far background


def test_weight_map_without_boundary_term_is_class_frequency():
    weights = swce_weight_map(mask_tensor(), boundary_weighting=False)
    torch.testing.assert_close(weights, hand_weights(BOUNDARY_WIDTH_0, boundary=False).float())
    ones = swce_weight_map(mask_tensor(), class_weighting=False, boundary_weighting=False)
    torch.testing.assert_close(ones, torch.ones(1, 6, 7))


def test_weight_power_tempers_both_ratios():
    # width 0: interior PTX (42/10)**p, edge (42/10)**p + (42/8)**p, background (42/32)**p
    weights = swce_weight_map(mask_tensor(), boundary_width=0, weight_power=0.5)
    assert weights[0, 2, 0].item() == pytest.approx((42 / 10) ** 0.5)
    assert weights[0, 1, 0].item() == pytest.approx((42 / 10) ** 0.5 + (42 / 8) ** 0.5)
    assert weights[0, 5, 6].item() == pytest.approx((42 / 32) ** 0.5)
    flat = swce_weight_map(mask_tensor(), weight_power=0.0)  # every present term weighs 1
    assert flat[0, 1, 0].item() == 2.0 and flat[0, 5, 6].item() == 1.0
    logits, target = torch.randn(2, 2, 6, 7), torch.cat([mask_tensor(), mask_tensor()])
    for name in ("ce", "wce", "swce"):  # one profile setting for the whole loss ablation
        create_loss(name, weight_power=0.5)(logits, target)
    assert create_loss("ce", weight_power=0.5)(logits, target) == create_loss("ce")(logits, target)
    with pytest.raises(ValueError, match="weight_power must be in"):
        create_loss("swce", weight_power=1.5)


def test_weight_map_is_computed_per_image():
    empty = torch.zeros(1, 6, 7, dtype=torch.int64)
    weights = swce_weight_map(torch.cat([mask_tensor(), empty]))
    torch.testing.assert_close(weights[0], hand_weights(BOUNDARY_WIDTH_1)[0].float())
    torch.testing.assert_close(weights[1], torch.ones(6, 7))  # |N|/|T_0| = 1, no boundary


def test_uniform_prediction_gives_class_and_boundary_count_times_log2():
    # CE is ln 2 everywhere and mean(w) = #classes present + #PTX contours present
    logits = torch.zeros(2, 2, 6, 7)
    target = torch.cat([mask_tensor(), torch.zeros(1, 6, 7, dtype=torch.int64)])
    ln2 = math.log(2)
    assert create_loss("swce")(logits, target).item() == pytest.approx((3 + 1) / 2 * ln2)
    assert create_loss("wce")(logits, target).item() == pytest.approx((2 + 1) / 2 * ln2)
    assert create_loss("ce")(logits, target).item() == pytest.approx(ln2)


def test_wce_and_ce_are_special_cases_of_swce():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 6, 7)
    target = torch.cat([mask_tensor(), mask_tensor().flip(-1), torch.zeros(1, 6, 7).long()])
    wce = create_loss("wce")(logits, target)
    no_boundary = create_loss("swce", boundary_weighting=False)(logits, target)
    plain = create_loss("swce", class_weighting=False, boundary_weighting=False)(logits, target)
    torch.testing.assert_close(wce, no_boundary)
    torch.testing.assert_close(plain, F.cross_entropy(logits, target))
    # W-CEL / |N| is the sum over classes of the mean CE within each class
    ce = F.cross_entropy(logits, target, reduction="none")
    per_image = [sum(ce[i][target[i] == c].mean() for c in target[i].unique()) for i in range(3)]
    torch.testing.assert_close(wce, torch.stack(per_image).mean())


def test_normalisation_keeps_the_loss_scale_across_image_sizes():
    torch.manual_seed(0)
    logits, target = torch.randn(1, 2, 6, 7), mask_tensor()
    big_logits = logits.repeat_interleave(4, -1).repeat_interleave(4, -2)
    big_target = target.repeat_interleave(4, -1).repeat_interleave(4, -2)
    wce = create_loss("wce")
    torch.testing.assert_close(wce(logits, target), wce(big_logits, big_target))


@pytest.mark.parametrize("name", ["swce", "wce", "ce", "dice", "ce+dice"])
@pytest.mark.parametrize("fill", [0, 1])
def test_single_class_image_gives_finite_loss(name, fill):
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), fill, dtype=torch.int64)
    loss = create_loss(name)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    if name in {"swce", "wce"}:  # one class, no boundary: every weight is 1, so CEL
        torch.testing.assert_close(loss, F.cross_entropy(logits, target))


def test_swce_gradient_is_the_weight_map_times_the_ce_gradient():
    logits = torch.zeros(1, 2, 6, 7, requires_grad=True)
    target = mask_tensor()
    create_loss("swce", boundary_width=0)(logits, target).backward()
    # d CE / d logit_1 at p = 0.5 is 0.5 - [t = 1]; the loss divides by |N| = 42
    expected = hand_weights(BOUNDARY_WIDTH_0)[0].float() * (0.5 - target[0].float()) / 42
    torch.testing.assert_close(logits.grad[0, 1], expected)
    torch.testing.assert_close(logits.grad[0, 0], -expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["swce", "wce", "ce", "dice", "ce+dice"])
def test_loss_keeps_dtype_and_device(name, dtype):
    logits = torch.randn(2, 2, 6, 7, dtype=dtype)
    loss = create_loss(name)(logits, torch.cat([mask_tensor(), mask_tensor()]))
    assert loss.dtype == dtype and loss.device == logits.device and loss.ndim == 0


def test_weight_map_stays_on_the_targets_device():
    target = mask_tensor().to("meta")
    weights = swce_weight_map(target)
    assert weights.device.type == "meta" and weights.shape == (1, 6, 7)


def test_dice_loss_values():
    target = mask_tensor()  # 10 PTX pixels of 42
    sure = (target.float()[:, None] - 0.5) * torch.tensor([-40.0, 40.0])[None, :, None, None]
    assert create_loss("dice")(sure, target).item() == pytest.approx(0.0, abs=1e-6)
    # p = 0.5 everywhere: (2 * 5 + 1) / (21 + 10 + 1)
    uniform = torch.zeros(1, 2, 6, 7)
    assert create_loss("dice")(uniform, target).item() == pytest.approx(1 - 11 / 32)
    both = create_loss("ce+dice", dice_weight=2.0)(uniform, target).item()
    assert both == pytest.approx(math.log(2) + 2 * (1 - 11 / 32))


def test_registry_names_and_errors():
    assert {"ce", "wce", "swce", "dice", "ce+dice"} <= set(list_losses())
    with pytest.raises(KeyError, match="swce"):
        create_loss("sw-cel")
    with pytest.raises(ValueError, match="boundary_width"):
        create_loss("swce", boundary_width=-1)
    with pytest.raises(ValueError, match="B x H x W"):
        swce_weight_map(torch.zeros(6, 7, dtype=torch.int64))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["swce", "wce", "dice", "ce+dice"])
def test_loss_and_weight_map_on_cuda(name):
    target = mask_tensor().cuda()
    assert swce_weight_map(target).device == target.device
    torch.testing.assert_close(swce_weight_map(target).cpu(), swce_weight_map(target.cpu()))
    logits = torch.randn(1, 2, 6, 7)
    loss = create_loss(name)(logits.cuda(), target)
    assert loss.device == target.device
    torch.testing.assert_close(loss.cpu(), create_loss(name)(logits, target.cpu()))
