"""SegNet (Badrinarayanan et al. 2017) as compared in the X-ray paper: 29,444,162 parameters.

Encoder: the 13 convs of VGG16-BN (3x3 conv with bias -> BN -> ReLU) in five stages, each
ending in a 2x2 max pool that remembers its indices. Decoder: the mirror image, each stage
starting with max-unpooling at those indices; the last conv of a decoder stage maps to the
width of the stage below. The final 64 -> 64 conv block is followed by a 3x3 conv head
64 -> classes (bias, no BN) instead of a 13th mirrored conv.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import check_input_size, he_uniform_
from lightning_modules.nets.registry import register_model

VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def stage(widths: list[int], in_channels: int) -> nn.Sequential:
    """Consecutive conv-BN-ReLU layers with output widths ``widths``."""
    layers = []
    for w in widths:
        layers.append(conv_bn_relu(in_channels, w))
        in_channels = w
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    """SegNet: ``B x in_channels x H x W`` -> ``B x classes x H x W`` (H, W multiples of 32)."""

    stride = 2 ** len(VGG16_STAGES)

    def __init__(self, in_channels: int = 3, classes: int = 2):
        super().__init__()
        self.encoder = nn.ModuleList()
        c = in_channels
        for widths in VGG16_STAGES:
            self.encoder.append(stage(list(widths), c))
            c = widths[-1]
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(VGG16_STAGES))):
            widths = list(VGG16_STAGES[i])
            if i > 0:  # hand the stage below its own width
                widths[-1] = VGG16_STAGES[i - 1][-1]
            else:  # the head takes the place of the last mirrored conv
                widths = widths[:-1]
            self.decoder.append(stage(widths, c))
            c = widths[-1]
        self.head = nn.Conv2d(c, classes, 3, padding=1)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.stride, type(self).__name__)
        pooled = []
        for enc in self.encoder:
            x = enc(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            pooled.append((indices, size))
        for dec in self.decoder:
            indices, size = pooled.pop()
            x = dec(self.unpool(x, indices, output_size=size))
        return self.head(x)


@register_model(
    "segnet",
    paper="xray",
    defaults={"in_channels": 3},
    paper_params=29_444_162,
    paper_gmacs=40.14,
    size_multiple=SegNet.stride,
)
def segnet(in_channels: int = 3, classes: int = 2) -> SegNet:
    """SegNet with a VGG16-BN encoder and max-unpooling decoder (X-ray paper baseline)."""
    return SegNet(in_channels, classes)
