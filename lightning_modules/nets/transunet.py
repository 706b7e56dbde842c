"""TransUNet (Chen et al. 2021, arXiv:2102.04306): R50-ViT-B/16 hybrid encoder + CUP decoder.

This is the real TransUNet, about 105.3 M parameters at 256 x 256. The EFA-Net paper's Table 6
row "TransUnet, 66.80 M" measured a smaller unofficial variant: that one is
``transunet_lite`` (``transunet_lite.py``).

Encoder: timm's ``vit_base_r50_s16_224`` hybrid (ResNetV2-50 stem and stages (3, 4, 9) with
GroupNorm and weight-standardised convs -> 1024 ch at 1/16 -> 1x1 patch embedding to 768 ->
learned position embedding -> 12 pre-norm ViT-B blocks -> LayerNorm), built with random
weights for ``img_size``. Its stem (64 ch at 1/2) and first two stages (256 at 1/4, 512 at
1/8) are the skips. Cascaded upsampler (CUP): 3x3 conv 768 -> 512, then four blocks of
bilinear x2, concatenation with the skip, two 3x3 conv + BN + ReLU (256, 128, 64, 16), and a
3x3 conv head.
"""

from __future__ import annotations

import timm
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_modules.nets.registry import register_model


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias, BN follows) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class CupBlock(nn.Module):
    """Bilinear x2 (align_corners=True as the reference), concat skip, two conv+BN+ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


def check_square_input(x: Tensor, img_size: int, model: str) -> None:
    """Both TransUNets have a position embedding for ``img_size`` only: refuse other sizes."""
    h, w = x.shape[-2:]
    if (h, w) != (img_size, img_size):
        raise ValueError(
            f"{model} was built for {img_size} x {img_size} inputs (img_size={img_size}, a "
            f"multiple of 16); got {h} x {w}: resize the input, or build the model with "
            f"img_size set to a multiple of 16"
        )


class TransUNet(nn.Module):
    """R50-ViT-B/16 + CUP: ``B x in_channels x S x S`` -> ``B x classes x S x S``, S = img_size."""

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 2,
        img_size: int = 256,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 16),
    ) -> None:
        super().__init__()
        if img_size % 16:
            raise ValueError(f"img_size={img_size} must be a multiple of 16 (the patch grid)")
        self.img_size = img_size
        self.vit = timm.create_model(
            "vit_base_r50_s16_224",
            pretrained=False,
            img_size=img_size,
            in_chans=in_channels,
            num_classes=0,
            global_pool="",
            class_token=False,
        )
        self.grid = img_size // 16
        self.conv_more = conv_bn_relu(self.vit.embed_dim, 512)
        skips = (512, 256, 64, 0)  # stage 2 (1/8), stage 1 (1/4), stem (1/2), none
        widths = (512, *decoder_channels)
        self.blocks = nn.ModuleList(
            CupBlock(c_in, c_skip, c_out)
            for c_in, c_skip, c_out in zip(widths[:-1], skips, widths[1:], strict=True)
        )
        self.head = nn.Conv2d(decoder_channels[-1], classes, 3, padding=1)

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Transformer features ``B x 768 x S/16 x S/16`` and skips at 1/8, 1/4, 1/2."""
        backbone = self.vit.patch_embed.backbone
        stem = backbone.stem
        x = stem.norm(stem.conv(x))
        skips = [x]  # 64 ch at 1/2, before the max pool
        x = stem.pool(x)
        for stage in backbone.stages:
            x = stage(x)
            skips.append(x)  # 256 at 1/4, 512 at 1/8, 1024 at 1/16
        tokens = self.vit.patch_embed.proj(backbone.norm(x)).flatten(2).transpose(1, 2)
        tokens = self.vit.pos_drop(tokens + self.vit.pos_embed)
        tokens = self.vit.norm(self.vit.blocks(self.vit.norm_pre(tokens)))
        hidden = tokens.transpose(1, 2).reshape(x.shape[0], -1, self.grid, self.grid)
        return hidden, skips[-2::-1]

    def forward(self, x: Tensor) -> Tensor:
        check_square_input(x, self.img_size, "transunet")
        hidden, skips = self.encode(x)
        x = self.conv_more(hidden)
        for block, skip in zip(self.blocks, [*skips, None], strict=True):
            x = block(x, skip)
        return self.head(x)


@register_model(
    "transunet",
    paper="ct",
    defaults={"in_channels": 1},
    fixed_size=True,  # position embeddings for img_size only
    size_multiple=16,  # the patch grid
)
def transunet(in_channels: int = 1, classes: int = 2, img_size: int = 256, **kwargs) -> TransUNet:
    """TransUNet R50-ViT-B/16 (Chen 2021), the real one: ~105.3 M parameters at 256 x 256."""
    return TransUNet(in_channels, classes, img_size=img_size, **kwargs)
