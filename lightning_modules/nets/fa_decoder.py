"""Feature Alignment (FA) decoder of EFA-Net (Liu et al. 2023, eqs. 1-5).

The FA decoder is the "implicit feature alignment" head of Hu et al. (ECCV 2022): every pixel
centre of the finest used encoder level is a query point ``x_q``; for each level ``i`` it takes
the nearest latent code ``z_i*`` and the relative coordinate ``dx_i = x_q - x_i*`` (in units of
that level's half cell, so it lies in (-1, 1)), encodes ``dx_i`` as
``psi_i(dx) = [dx, sin(W_i dx), cos(W_i dx)]`` and feeds the concatenation over levels of
``[psi_i(dx_i), z_i*]`` to a per-point MLP that predicts the class logits of ``x_q``.

Coordinates follow the reference code: pixel centres ``-1 + (2k + 1) / n`` in [-1, 1], codes
picked with ``grid_sample(mode="nearest", align_corners=False)``, pairs ordered (row, column).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def pixel_centres(n: int, *, device=None, dtype=None) -> Tensor:
    """Pixel-centre coordinates of an ``n``-pixel axis in [-1, 1]: ``-1 + (2k + 1) / n``."""
    k = torch.arange(n, device=device, dtype=dtype or torch.float32)
    return -1 + (2 * k + 1) / n


def _query_grid(query_size: Sequence[int], *, device=None, dtype=None) -> Tensor:
    """``1 x h x w x 2`` grid of the query pixel centres, (x, y) order as grid_sample wants."""
    rows = pixel_centres(query_size[0], device=device, dtype=dtype)
    cols = pixel_centres(query_size[1], device=device, dtype=dtype)
    row, col = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([col, row], dim=-1).unsqueeze(0)


def nearest_codes(feature: Tensor, query_size: Sequence[int]) -> Tensor:
    """The nearest latent code of every query point: ``B x C x h x w -> B x C x hq x wq``.

    For integer ratios ``hq / h`` this equals nearest-neighbour upsampling. The batch is folded
    into the channels so the query grid is built once, not once per image.
    """
    b, c, h, w = feature.shape
    # coordinates in at least float32: a half-precision grid picks wrong codes on large maps
    dtype = torch.promote_types(feature.dtype, torch.float32)
    grid = _query_grid(query_size, device=feature.device, dtype=dtype)
    flat = feature.reshape(1, b * c, h, w).to(dtype)
    codes = F.grid_sample(flat, grid, mode="nearest", align_corners=False)
    return codes.reshape(b, c, *query_size).to(feature.dtype)


def relative_coordinates(
    level_size: Sequence[int], query_size: Sequence[int], *, device=None, dtype=None
) -> Tensor:
    """``dx = x_q - x*`` for every query point, scaled by the level's size: ``2 x hq x wq``.

    Channel 0 is the row offset times the level height, channel 1 the column offset times its
    width, so each lies in (-1, 1). Independent of the batch and of the feature values.
    Computed in at least float32, returned in ``dtype``.
    """
    h, w = level_size
    work = torch.promote_types(dtype or torch.float32, torch.float32)
    rows = pixel_centres(h, device=device, dtype=work)
    cols = pixel_centres(w, device=device, dtype=work)
    level_coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).unsqueeze(0)
    code_coords = nearest_codes(level_coords, query_size)[0]
    grid = _query_grid(query_size, device=device, dtype=work)[0]  # hq x wq x (x, y)
    query_coords = grid.flip(-1).permute(2, 0, 1)  # (row, col) x hq x wq
    scale = torch.tensor([h, w], device=device, dtype=work).view(2, 1, 1)
    return ((query_coords - code_coords) * scale).to(dtype or work)


class PositionEncoding(nn.Module):
    """Learnable ``psi(dx) = [dx, sin(W dx), cos(W dx)]``: ``2 x h x w -> (2 + 4F) x h x w``.

    ``W`` is a ``2F x 2`` matrix initialised to the ``F`` frequencies ``2**linspace(0, s, F)``
    on each axis (rows 0..F-1 act on the row offset, F..2F-1 on the column offset; no pi),
    and trained with the rest. F = 6, s = 6 give the reference's 26 dimensions.
    """

    def __init__(self, frequencies: int = 6, max_exponent: float = 6.0) -> None:
        super().__init__()
        omega = 2 ** torch.linspace(0, max_exponent, frequencies)
        weight = torch.zeros(2 * frequencies, 2)
        weight[:frequencies, 0] = omega
        weight[frequencies:, 1] = omega
        self.weight = nn.Parameter(weight)
        self.out_channels = 2 + 4 * frequencies

    def forward(self, offsets: Tensor) -> Tensor:
        phase = torch.einsum("fc,chw->fhw", self.weight, offsets)
        return torch.cat([offsets, phase.sin(), phase.cos()], dim=0)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FeatureAlignmentDecoder(nn.Module):
    """FA decoder over an smp-style encoder: feature list -> ``B x classes x H x W`` logits.

    ``features`` follow the smp encoder contract: ``features[0]`` is the input (it gives the
    output size) and ``features[i]`` has stride ``2**i`` and ``encoder_channels[i]`` channels.
    ``levels`` picks the levels used: the EFA paper's five, ``{F_i}, i = 1..5`` (strides 2 to
    32; eq. 4, Fig. 3) by default, the IFA reference code's four (strides 4 to 32,
    ``levels=(2, 3, 4, 5)``) as a named variant. Queries are the pixel centres of the finest
    used level; logits come out there and are bilinearly upsampled to the input. With
    ``decode_at_input`` the queries are the input's own pixel centres instead (the continuous
    field needs no upsampling, as the paper notes), at four times the MLP cost of stride 2.

    Memory: the per-point MLP is a stack of 1x1 convs on the query grid. Its first layer is
    linear in the concatenation of eq. (4), so it is split per level: the code part
    ``W_z z`` runs at the level's own resolution and is then picked by nearest-code sampling
    (selection commutes with a pointwise linear map), and the position part ``W_psi psi`` is
    batch-independent. The ``B x L(C + 26) x h x w`` concatenation (1410 channels with five
    levels) is never built: activations scale as ``B x h w x ~(2 x 512 + 3 x 256)`` floats
    for the MLP plus ``B x C x sum_i H_i W_i`` for the projections, i.e. linearly in batch
    and pixels. It is the same function as the literal concatenation. Measured at 256 x 256
    on EfficientNet-b5 (decoder only): five levels, queries at stride 2: 7.46 GMACs, 324 MiB
    of activations kept per image for the backward pass; four levels at stride 4: 1.82
    GMACs, 83 MiB; five levels decoded at the input grid: 20.4 GMACs, 951 MiB.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        classes: int = 2,
        levels: Sequence[int] = (1, 2, 3, 4, 5),
        channels: int = 256,
        mlp_channels: Sequence[int] = (512, 256, 256),
        frequencies: int = 6,
        max_exponent: float = 6.0,
        decode_at_input: bool = False,
    ) -> None:
        super().__init__()
        levels = tuple(levels)
        if not levels or list(levels) != sorted(set(levels)) or levels[0] < 1:
            raise ValueError(f"levels must be increasing encoder indices >= 1, got {levels}")
        if levels[-1] >= len(encoder_channels):
            raise ValueError(
                f"level {levels[-1]} does not exist: the encoder gives {len(encoder_channels)} "
                f"feature maps (channels {tuple(encoder_channels)}); use levels below that"
            )
        self.levels = levels
        self.channels = channels
        self.decode_at_input = decode_at_input
        self.projections = nn.ModuleList(
            _conv_bn_relu(encoder_channels[i], channels) for i in levels
        )
        self.encodings = nn.ModuleList(PositionEncoding(frequencies, max_exponent) for _ in levels)
        self.point_channels = len(levels) * (self.encodings[0].out_channels + channels)
        widths = [self.point_channels, *mlp_channels]
        # The first MLP layer, weight columns ordered [psi_1, z_1, psi_2, z_2, ...] (eq. 4).
        self.first = nn.Conv2d(widths[0], widths[1], 1)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[1]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths[1:-1], widths[2:], strict=True):
            layers += [_conv_bn_relu(c_in, c_out)]
        layers.append(nn.Conv2d(widths[-1], classes, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """``features`` (smp encoder output) -> logits ``B x classes x H x W`` (H, W of input)."""
        output_size = features[0].shape[-2:]
        query_level = 0 if self.decode_at_input else self.levels[0]
        query_size = tuple(features[query_level].shape[-2:])
        weight = self.first.weight
        hidden = self.first.bias.view(1, -1, 1, 1)
        start = 0
        for level, project, encode in zip(
            self.levels, self.projections, self.encodings, strict=True
        ):
            feature = features[level]
            offsets = relative_coordinates(
                feature.shape[-2:], query_size, device=feature.device, dtype=feature.dtype
            )
            w_psi = weight[:, start : start + encode.out_channels]
            start += encode.out_channels
            w_code = weight[:, start : start + self.channels]
            start += self.channels
            codes = F.conv2d(project(feature), w_code)  # at the level's own resolution
            hidden = hidden + nearest_codes(codes, query_size)
            hidden = hidden + F.conv2d(encode(offsets).unsqueeze(0), w_psi)
        logits = self.mlp(hidden)
        if logits.shape[-2:] == output_size:
            return logits
        return F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
