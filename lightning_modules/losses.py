"""Segmentation losses selectable by name: ``create_loss("swce")``.

Every loss maps logits ``B x C x H x W`` and an int64 target ``B x H x W`` to a scalar.
``ce`` (CEL), ``wce`` (W-CEL), ``swce`` (SW-CEL, the X-ray paper's loss), ``dice`` and
``ce+dice``.

SW-CEL weights pixel x of image n (N its pixels, T_c its class-c pixels, B the boundary
contour of the pneumothorax class):

    w(x) = sum_c  |N| / |T_c| * [x in T_c]  +  |N| / |B| * [x in B]

B: pneumothorax pixels with a background pixel in their 8-neighbourhood (the paper's "if the
eight neighborhoods of the pixel value '1' have a pixel value of '0'": an edge detector, 3x3
erosion), widened by ``boundary_width`` steps of 3x3 dilation and kept inside the
pneumothorax (the paper has B_c within T_c); pixels on the image border see no neighbours
outside it. The paper draws the contour of the target class only, so the background has no
boundary term. An empty T_c or B contributes nothing. The paper writes
-sum_x w(x) log p(t_x | x); we divide by |N| and average over images, so the loss equals
sum_c mean_{T_c}(CE) + mean_B(CE): the same magnitude at every image size. W-CEL is the
class term alone; with both terms off it is CEL.

``weight_power`` (default 1, the paper's loss) raises both ratios |N|/|T_c| and |N|/|B| to
a power: 0.5 turns a 40-pixel pneumothorax's weight of ~100 into ~10. Under the paper's
weights the loss is lowest when a pixel is called pneumothorax as soon as its probability of
being one passes w_bg / (w_bg + w_ptx), about 1 %, so a network stopped early marks every
margin it is unsure of; docs/models.md has what lower powers did on the phantom.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lightning_modules.registry import Registry

LOSSES: Registry = Registry("loss", plural="losses")


def register_loss(name: str):
    """Decorator registering a loss class (or factory) under ``name``."""
    return LOSSES.register(name)


def list_losses() -> list[str]:
    """Registered loss names, sorted."""
    return LOSSES.names()


def create_loss(name: str, **kwargs) -> nn.Module:
    """Build the loss registered as ``name``; unknown names list the valid ones."""
    return LOSSES.build(name, **kwargs)


@register_loss("ce")
class CrossEntropyLoss(nn.Module):
    """CEL: plain pixel-wise cross-entropy, mean over pixels.

    Every pixel weighs 1, and 1 to any power is 1: ``weight_power`` is taken (and checked) so
    that one profile setting serves the CEL / W-CEL / SW-CEL ablation alike.
    """

    def __init__(self, weight_power: float = 1.0):
        super().__init__()
        check_weight_power(weight_power)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target)


def check_weight_power(weight_power: float) -> float:
    """The weight ratios' exponent, refused outside [0, 1] (1: the paper's weights)."""
    if not 0.0 <= weight_power <= 1.0:
        raise ValueError(f"weight_power must be in [0, 1], got {weight_power}")
    return float(weight_power)


def _inverse_count(members: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """(|N| / |S|) ** ``power`` per image and class from a ``B x C x H x W`` 0/1 membership;
    0 where S is empty."""
    count = members.sum(dim=(2, 3), keepdim=True)
    n = members.shape[-2] * members.shape[-1]
    return torch.where(count > 0, (n / count.clamp(min=1)) ** power, torch.zeros_like(count))


def contour(members: torch.Tensor, boundary_width: int = 1) -> torch.Tensor:
    """Boundary contour of a class: ``B x 1 x H x W`` 0/1 float membership -> 0/1, same shape.

    Member pixels with a non-member among their 8 neighbours, dilated ``boundary_width``
    times by a 3x3 square and kept inside the class. Max-pooling pads with -inf, so the image
    border counts as no neighbour.
    """
    eroded = -F.max_pool2d(-members, 3, stride=1, padding=1)
    edges = members - eroded
    if boundary_width > 0:
        k = 2 * boundary_width + 1
        edges = F.max_pool2d(edges, k, stride=1, padding=boundary_width)
    return edges * members


def swce_weight_map(
    target: torch.Tensor,
    num_classes: int = 2,
    boundary_width: int = 1,
    class_weighting: bool = True,
    boundary_weighting: bool = True,
    target_class: int = 1,
    weight_power: float = 1.0,
) -> torch.Tensor:
    """SW-CEL pixel weights ``B x H x W`` (float32, on ``target``'s device) from ``B x H x W``.

    Class term |N|/|T_c| on T_c, boundary term |N|/|B| on the contour B of ``target_class``,
    each ratio raised to ``weight_power`` (see the module docstring); with both terms off
    every weight is 1. Weights are ratios of pixel counts: unitless.
    """
    if target.ndim != 3:
        raise ValueError(f"target must be B x H x W class indices, got shape {tuple(target.shape)}")
    if not (class_weighting or boundary_weighting):
        return torch.ones(target.shape, device=target.device)
    one_hot = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()
    weights = torch.zeros_like(one_hot[:, 0])
    if class_weighting:
        weights += (_inverse_count(one_hot, weight_power) * one_hot).sum(dim=1)
    if boundary_weighting:
        boundary = contour(one_hot[:, target_class : target_class + 1], boundary_width)
        weights += (_inverse_count(boundary, weight_power) * boundary)[:, 0]
    return weights


@register_loss("swce")
class SpatiallyWeightedCrossEntropyLoss(nn.Module):
    """SW-CEL: cross-entropy weighted per pixel by :func:`swce_weight_map`, / |N|, mean over B.

    Args:
        boundary_width: 3x3 dilation steps widening the edge into the boundary band (0: edge
            pixels only).
        class_weighting, boundary_weighting: switch the two terms (both off: CEL).
        weight_power: exponent of both weight ratios (1: the paper's; see the module
            docstring for what a lower one is for).
    """

    def __init__(
        self, boundary_width=1, class_weighting=True, boundary_weighting=True, weight_power=1.0
    ):
        super().__init__()
        if boundary_width < 0:
            raise ValueError(f"boundary_width must be >= 0 pixels, got {boundary_width}")
        self.weight_power = check_weight_power(weight_power)
        self.boundary_width = int(boundary_width)
        self.class_weighting = class_weighting
        self.boundary_weighting = boundary_weighting

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            w = swce_weight_map(
                target,
                logits.shape[1],
                self.boundary_width,
                self.class_weighting,
                self.boundary_weighting,
                weight_power=self.weight_power,
            )
        ce = F.cross_entropy(logits, target, reduction="none")  # B x H x W
        return (w.to(ce.dtype) * ce).mean()  # mean over pixels (the /|N|) and images


@register_loss("wce")
def weighted_cross_entropy(**kwargs) -> SpatiallyWeightedCrossEntropyLoss:
    """W-CEL: the class-frequency term |N|/|T_c| alone (SW-CEL without boundary weights)."""
    return SpatiallyWeightedCrossEntropyLoss(boundary_weighting=False, **kwargs)


@register_loss("dice")
class SoftDiceLoss(nn.Module):
    """Soft Dice loss of the PTX class, pooled over the batch's pixels.

    ``1 - (2 sum(p g) + s) / (sum(p) + sum(g) + s)``, p the softmax probability of
    ``ptx_class``, g its ground truth, s = ``smooth`` (in pixels): an all-negative batch
    predicted all-negative costs 0 instead of 0/0. Pooling keeps empty images from dominating.
    """

    def __init__(self, ptx_class: int = 1, smooth: float = 1.0):
        super().__init__()
        self.ptx_class, self.smooth = ptx_class, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = logits.softmax(dim=1)[:, self.ptx_class]
        g = (target == self.ptx_class).to(p.dtype)
        dice = (2 * (p * g).sum() + self.smooth) / (p.sum() + g.sum() + self.smooth)
        return 1 - dice


@register_loss("ce+dice")
class CrossEntropyDiceLoss(nn.Module):
    """``ce_weight`` * CEL + ``dice_weight`` * soft Dice loss of the PTX class."""

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, **dice_kwargs):
        super().__init__()
        self.ce_weight, self.dice_weight = ce_weight, dice_weight
        self.dice = SoftDiceLoss(**dice_kwargs)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target)
        return self.ce_weight * ce + self.dice_weight * self.dice(logits, target)
