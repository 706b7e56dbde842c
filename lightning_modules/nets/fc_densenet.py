"""FC-DenseNet103 (Jegou et al. 2017) and the X-ray paper's MS_scSE_FC-DenseNet.

Layout (FC-DenseNet103): 3x3 conv to 48 maps; five down blocks of (4, 5, 7, 10, 12) dense
layers, each followed by a transition down; a 15-layer bottleneck; five up blocks of
(12, 10, 7, 5, 4) layers, each after a transition up of the previous block's new maps
concatenated with the matching skip; 1x1 conv head on the last up block's whole stack.
Dense layers use ELU and dropout 0.2 (the X-ray paper); every conv is HeUniform initialised.

MS_scSE_FC-DenseNet replaces the stem by the multi-scale stem and adds scSE on the new maps of
every down/up dense layer (not the bottleneck's), on each down-block output and on each
transition-up output: the placements that give the paper's 5,989,096 parameters exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import (
    SCSE,
    DenseBlock,
    MultiScaleStem,
    TransitionDown,
    TransitionUp,
    check_input_size,
    he_uniform_,
)
from lightning_modules.nets.registry import register_model

DOWN_LAYERS = (4, 5, 7, 10, 12)
BOTTLENECK_LAYERS = 15
STEM_CHANNELS = 48


class FCDenseNet(nn.Module):
    """FC-DenseNet: ``B x in_channels x H x W`` -> ``B x classes x H x W`` logits.

    H and W must be multiples of 2 ** len(down_layers) (32 for FC-DenseNet103).
    ``multi_scale`` and ``scse`` switch on the MS_scSE_FC-DenseNet additions.
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 2,
        growth_rate: int = 12,
        down_layers: tuple[int, ...] = DOWN_LAYERS,
        bottleneck_layers: int = BOTTLENECK_LAYERS,
        dropout: float = 0.2,
        multi_scale: bool = False,
        scse: bool = False,
    ):
        super().__init__()
        if growth_rate < 1:
            raise ValueError(f"growth_rate must be a positive integer, got {growth_rate}")
        self.stride = 2 ** len(down_layers)
        k, c = growth_rate, STEM_CHANNELS
        self.stem = (
            MultiScaleStem(in_channels) if multi_scale else nn.Conv2d(in_channels, c, 3, 1, 1)
        )

        self.down_blocks = nn.ModuleList()
        self.down_scse = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        skip_channels = []
        for n in down_layers:
            block = DenseBlock(c, n, k, dropout, scse)
            c = block.out_channels
            self.down_blocks.append(block)
            self.down_scse.append(SCSE(c) if scse else nn.Identity())
            self.transitions_down.append(TransitionDown(c, dropout))
            skip_channels.append(c)

        # the bottleneck's 15 layers carry no scSE (the paper's count rules them out)
        self.bottleneck = DenseBlock(c, bottleneck_layers, k, dropout, scse=False)
        new = self.bottleneck.new_channels

        self.transitions_up = nn.ModuleList()
        self.up_scse = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for n, skip in zip(reversed(down_layers), reversed(skip_channels), strict=True):
            self.transitions_up.append(TransitionUp(new))
            self.up_scse.append(SCSE(new) if scse else nn.Identity())
            block = DenseBlock(new + skip, n, k, dropout, scse)
            self.up_blocks.append(block)
            new = block.new_channels
        self.head = nn.Conv2d(self.up_blocks[-1].out_channels, classes, 1)
        he_uniform_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.stride, type(self).__name__)
        x = self.stem(x)
        skips = []
        for block, scse, down in zip(
            self.down_blocks, self.down_scse, self.transitions_down, strict=True
        ):
            x = scse(block(x))
            skips.append(x)
            x = down(x)
        stack = self.bottleneck(x)
        x = stack[:, -self.bottleneck.new_channels :]
        for up, scse, block, skip in zip(
            self.transitions_up, self.up_scse, self.up_blocks, reversed(skips), strict=True
        ):
            stack = block(torch.cat([scse(up(x)), skip], dim=1))
            x = stack[:, -block.new_channels :]
        return self.head(stack)


@register_model(
    "fc_densenet",
    paper="xray",
    defaults={"in_channels": 3},
    paper_params=5_415_278,
    paper_gmacs=15.39,
    size_multiple=2 ** len(DOWN_LAYERS),
)
def fc_densenet(in_channels: int = 3, classes: int = 2, growth_rate: int = 12, **kwargs):
    """FC-DenseNet103 with ELU, dropout 0.2, HeUniform (X-ray paper baseline)."""
    return FCDenseNet(in_channels, classes, growth_rate, **kwargs)


@register_model(
    "ms_scse_fc_densenet",
    paper="xray",
    defaults={"in_channels": 3},
    paper_params=5_989_096,
    paper_gmacs=15.59,
    size_multiple=2 ** len(DOWN_LAYERS),
)
def ms_scse_fc_densenet(in_channels: int = 3, classes: int = 2, growth_rate: int = 12, **kwargs):
    """MS_scSE_FC-DenseNet: FC-DenseNet103 + multi-scale stem + scSE (the X-ray paper's model)."""
    return FCDenseNet(in_channels, classes, growth_rate, multi_scale=True, scse=True, **kwargs)
