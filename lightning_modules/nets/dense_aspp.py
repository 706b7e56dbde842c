"""DenseASPP (Yang et al., CVPR 2018), DenseASPP161 configuration: 35,365,762 parameters.

Backbone: DenseNet-161 (growth 48, blocks 6/12/36/24, 96 stem maps; torchvision's layers,
built with ``weights=None``) at output stride 8: transitions 2 and 3 keep the resolution and
blocks 3 and 4 use dilation 2 and 4 instead; a fourth transition (BN, ReLU, 1x1 conv
2208 -> 1104, no pooling) and BN close it, as in the DenseASPP reference. Head: five densely
connected atrous blocks (rates 3, 6, 12, 18, 24), each [BN ->] ReLU -> 1x1 conv to 512 -> BN ->
ReLU -> dilated 3x3 conv to 128 -> dropout 0.1, each fed the backbone output concatenated with
all earlier blocks' outputs; then dropout 0.1, a 1x1 conv to ``classes`` and bilinear x8.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from lightning_modules.nets.blocks import check_input_size, he_uniform_
from lightning_modules.nets.registry import register_model

ATROUS_RATES = (3, 6, 12, 18, 24)


def dilated_densenet161(in_channels: int) -> tuple[nn.Sequential, int]:
    """DenseNet-161 features at output stride 8 plus DenseASPP's transition 4.

    Returns the module (``B x in_channels x H x W`` -> ``B x 1104 x H/8 x W/8``) and 1104.
    """
    dense = torchvision.models.densenet161(weights=None).features
    dense.conv0 = nn.Conv2d(in_channels, dense.conv0.out_channels, 7, 2, 3, bias=False)
    for transition in (dense.transition2, dense.transition3):
        transition.pool = nn.Identity()  # keep 1/8 resolution
    for block, rate in ((dense.denseblock3, 2), (dense.denseblock4, 4)):
        for layer in block.children():  # dilate the 3x3 convs to keep the receptive field
            layer.conv2.dilation = (rate, rate)
            layer.conv2.padding = (rate, rate)
    channels = dense.norm5.num_features  # 2208
    modules = OrderedDict((name, m) for name, m in dense.named_children() if name != "norm5")
    modules["transition4"] = nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels // 2, 1, bias=False),
    )
    modules["norm5"] = nn.BatchNorm2d(channels // 2)
    return nn.Sequential(modules), channels // 2


def atrous_block(in_channels: int, rate: int, first: bool, dropout: float) -> nn.Sequential:
    """One DenseASPP layer: [BN ->] ReLU -> 1x1 conv 512 -> BN -> ReLU -> 3x3 conv 128 (dilated)."""
    return nn.Sequential(
        nn.Identity() if first else nn.BatchNorm2d(in_channels),  # backbone ends with a BN
        nn.ReLU(),
        nn.Conv2d(in_channels, 512, 1),
        nn.BatchNorm2d(512),
        nn.ReLU(inplace=True),
        nn.Conv2d(512, 128, 3, padding=rate, dilation=rate),
        nn.Dropout2d(dropout),
    )


class DenseASPP(nn.Module):
    """DenseASPP161: ``B x in_channels x H x W`` -> ``B x classes x H x W``; H, W multiples of 8."""

    stride = 8

    def __init__(self, in_channels: int = 3, classes: int = 2, dropout: float = 0.1):
        super().__init__()
        self.backbone, c = dilated_densenet161(in_channels)
        self.aspp = nn.ModuleList()
        for i, rate in enumerate(ATROUS_RATES):
            self.aspp.append(atrous_block(c, rate, first=i == 0, dropout=dropout))
            c += 128
        self.head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(c, classes, 1))
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.stride, type(self).__name__)
        size = x.shape[-2:]
        x = self.backbone(x)
        for block in self.aspp:
            x = torch.cat([block(x), x], dim=1)
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


@register_model(
    "dense_aspp",
    paper="xray",
    defaults={"in_channels": 3},
    paper_params=35_365_762,
    paper_gmacs=39.11,
    size_multiple=DenseASPP.stride,
)
def dense_aspp(in_channels: int = 3, classes: int = 2, **kwargs) -> DenseASPP:
    """DenseASPP161 (DenseNet-161 backbone, output stride 8; X-ray paper baseline)."""
    return DenseASPP(in_channels, classes, **kwargs)
