"""TransUNet-lite: the unofficial "TransUNet" the EFA-Net paper measured (Table 6, 66.80 M).

Not Chen et al.'s TransUNet (that is ``transunet``, ~105.3 M) but a popular re-implementation
that carries its name: a 7x7/2 conv stem to 128 ch; three BatchNorm bottleneck stages with
stride 2 (256 at 1/4, 512 at 1/8, 1024 at 1/16); a ViT on the 1/16 map (tokens of 1024 =
a linear projection of each position, class token, learned position embedding, 8 post-norm
blocks with 4 heads, qkv and output projections without bias, MLP 512, dropout 0.1);
3x3 conv 1024 -> 512 + BN + ReLU; a decoder of bilinear x2 + concat skip + two 3x3
conv + BN + ReLU (256, 128, 64, 16); a 1x1 head.

Size: 67,066,754 parameters at 256 x 256 and 1 -> 2 channels. The paper's 66.80 M is thop's
count, which skips parameters held directly by a non-leaf module: the position embedding
(257 x 1024) and the class token (1024): 67,066,754 - 264,192 = 66,802,562. Attention is
scaled by 1/sqrt(d) (the re-implementation multiplies by sqrt(d), a bug that changes no size).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_modules.nets.registry import register_model
from lightning_modules.nets.transunet import check_square_input


class Bottleneck(nn.Module):
    """1x1 -> 3x3 stride 2 -> 1x1 bottleneck (width = out) with a strided 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        c = out_channels
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, c, 1, stride=2, bias=False), nn.BatchNorm2d(c)
        )
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class PostNormBlock(nn.Module):
    """x = LN(x + drop(MHA(x))); x = LN(x + MLP(x)) with bias-free qkv/out projections."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = self.norm1(x + F.dropout(self.out(attended), self.dropout, self.training))
        return self.norm2(x + self.mlp(x))


class UpBlock(nn.Module):
    """Bilinear x2 (align_corners=True), concat [skip, x], two 3x3 conv (bias) + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers += [
                nn.Conv2d(c_in, out_channels, 3, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([skip, x], dim=1)
        return self.layers(x)


class TransUNetLite(nn.Module):
    """``B x in_channels x S x S`` -> ``B x classes x S x S`` logits, S = ``img_size``."""

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 2,
        img_size: int = 256,
        width: int = 128,
        heads: int = 4,
        mlp_dim: int = 512,
        depth: int = 8,
    ) -> None:
        super().__init__()
        if img_size % 16:
            raise ValueError(f"img_size={img_size} must be a multiple of 16 (the token grid)")
        self.img_size = img_size
        self.grid = img_size // 16
        dim = 8 * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.stages = nn.ModuleList(Bottleneck(width * m, width * 2 * m) for m in (1, 2, 4))
        self.projection = nn.Linear(dim, dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, self.grid**2 + 1, dim))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)
        self.token_dropout = nn.Dropout(0.1)
        self.transformer = nn.Sequential(
            *(PostNormBlock(dim, heads, mlp_dim) for _ in range(depth))
        )
        self.neck = nn.Sequential(
            nn.Conv2d(dim, 512, 3, padding=1), nn.BatchNorm2d(512), nn.ReLU(inplace=True)
        )
        self.up = nn.ModuleList(
            [
                UpBlock(512 + 4 * width, 2 * width),
                UpBlock(2 * width + 2 * width, width),
                UpBlock(width + width, width // 2),
                UpBlock(width // 2, width // 8),
            ]
        )
        self.head = nn.Conv2d(width // 8, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_square_input(x, self.img_size, "transunet_lite")
        skips = [self.stem(x)]  # 1/2
        for stage in self.stages:
            skips.append(stage(skips[-1]))  # 1/4, 1/8, 1/16
        b = x.shape[0]
        tokens = self.projection(skips.pop().flatten(2).transpose(1, 2))
        tokens = torch.cat([self.class_token.expand(b, -1, -1), tokens], dim=1)
        tokens = self.transformer(self.token_dropout(tokens + self.position))
        hidden = tokens[:, 1:].transpose(1, 2).reshape(b, -1, self.grid, self.grid)
        x = self.neck(hidden)
        for block, skip in zip(self.up, [*skips[::-1], None], strict=True):
            x = block(x, skip)
        return self.head(x)


@register_model(
    "transunet_lite",
    paper="ct",
    defaults={"in_channels": 1},
    paper_params=66.80e6,
    paper_gmacs=32.43,
    fixed_size=True,  # position embeddings for img_size only
    size_multiple=16,  # the token grid
)
def transunet_lite(
    in_channels: int = 1, classes: int = 2, img_size: int = 256, **kwargs
) -> TransUNetLite:
    """TransUNet-lite, the unofficial variant of the EFA paper's Table 6 (67.07 M real)."""
    return TransUNetLite(in_channels, classes, img_size=img_size, **kwargs)
