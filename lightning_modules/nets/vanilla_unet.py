"""The X-ray paper's U-Net (7,764,098 parameters) and MS_scSE_U-Net (8,204,011).

U-Net (Ronneberger et al. 2015) at base 32 with four poolings (32, 64, 128, 256, 512 maps):
two 3x3 convs (bias) + ReLU per level, BatchNorm after each of the 10 contracting-path convs
only, 2x2 transposed-conv upsampling, 1x1 head. MS_scSE_U-Net adds one scSE (reduction 2) at
the end of every resolution stage (C = 32, 64, 128, 256, 512, 256, 128, 64, 32): that alone
gives the paper's count exactly, so the paper's model carries no extra multi-scale parameters;
``multi_scale_stem=True`` adds the 3x3/5x5/7x7 stem anyway for those who want the name's module.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import SCSE, MultiScaleStem, check_input_size, he_uniform_
from lightning_modules.nets.registry import register_model


def conv_block(
    in_channels: int, out_channels: int, batch_norm: bool, first: nn.Module | None = None
) -> nn.Sequential:
    """Two 3x3 convs (bias) each followed by [BN and] ReLU; ``first`` replaces the first conv."""
    first = first or nn.Conv2d(in_channels, out_channels, 3, padding=1)
    mid = getattr(first, "out_channels", out_channels)

    def norm(c):
        return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

    return nn.Sequential(
        first,
        norm(mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid, out_channels, 3, padding=1),
        norm(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: ``B x in_channels x H x W`` -> ``B x classes x H x W``; H, W multiples of 16."""

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 2,
        base_channels: int = 32,
        depth: int = 4,
        scse: bool = False,
        multi_scale_stem: bool = False,
    ):
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stride = 2**depth

        def stage_end(c):  # one scSE per resolution stage in MS_scSE_U-Net
            return SCSE(c) if scse else nn.Identity()

        stem = MultiScaleStem(in_channels) if multi_scale_stem else None
        self.encoder = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            first = stem if i == 0 else None
            self.encoder.append(nn.Sequential(conv_block(c, w, True, first), stage_end(w)))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.decoder.append(nn.Sequential(conv_block(2 * w, w, False), stage_end(w)))
            c = w
        self.head = nn.Conv2d(c, classes, 1)
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.stride, type(self).__name__)
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the deepest stage is the bottom of the U, not a skip
        for up, stage in zip(self.ups, self.decoder, strict=True):
            x = stage(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


@register_model(
    "vanilla_unet",
    paper="xray",
    defaults={"in_channels": 3},
    paper_params=7_764_098,
    paper_gmacs=11.59,
    size_multiple=16,  # 2 ** depth, 4 poolings
)
def vanilla_unet(in_channels: int = 3, classes: int = 2, **kwargs) -> UNet:
    """U-Net, base 32, 4 poolings, BN on the contracting path (X-ray paper baseline)."""
    return UNet(in_channels, classes, **kwargs)


@register_model(
    "ms_scse_unet",
    paper="xray",
    defaults={"in_channels": 3},
    paper_params=8_204_011,
    paper_gmacs=11.6,
    size_multiple=16,  # 2 ** depth, 4 poolings
)
def ms_scse_unet(in_channels: int = 3, classes: int = 2, **kwargs) -> UNet:
    """MS_scSE_U-Net: the U-Net with one scSE per resolution stage (X-ray paper)."""
    return UNet(in_channels, classes, scse=True, **kwargs)
