import math

import pytest
import torch
from torch.nn import functional as F

from lightning_modules.nets.efa_net import FeatureAlignmentNet
from lightning_modules.nets.fa_decoder import (
    FeatureAlignmentDecoder,
    PositionEncoding,
    nearest_codes,
    pixel_centres,
    relative_coordinates,
)

# a small smp-style encoder output: features[i] at stride 2**i, features[0] the input
CHANNELS = (1, 8, 16, 24, 32, 40)


def fake_features(height=64, width=96, batch=2, dtype=torch.float32):
    torch.manual_seed(0)
    return [
        torch.randn(batch, c, height >> i, width >> i, dtype=dtype) for i, c in enumerate(CHANNELS)
    ]


def test_pixel_centres():
    assert pixel_centres(4).tolist() == [-0.75, -0.25, 0.25, 0.75]


@pytest.mark.parametrize("ratio", [1, 2, 4, 8])
def test_nearest_codes_equal_nearest_interpolation(ratio):
    feature = torch.randn(2, 5, 3, 4)
    codes = nearest_codes(feature, (3 * ratio, 4 * ratio))
    assert torch.equal(codes, F.interpolate(feature, scale_factor=ratio, mode="nearest"))


def test_half_precision_features_pick_the_same_codes():
    # bfloat16 cannot hold the centres of a 512-pixel axis; the sampling grid stays float32
    feature = torch.randn(1, 3, 4, 4).to(torch.bfloat16)
    codes = nearest_codes(feature, (512, 512))
    assert codes.dtype == torch.bfloat16
    assert torch.equal(codes, F.interpolate(feature.float(), scale_factor=128).to(torch.bfloat16))
    offsets = relative_coordinates((4, 4), (512, 512), dtype=torch.bfloat16)
    assert torch.equal(offsets.float(), relative_coordinates((4, 4), (512, 512)).bfloat16().float())


def test_relative_coordinates_hand_computed():
    # level 2 x 4 under an 8 x 8 query grid: ratio 4 along rows, 2 along columns.
    # row k: query centre -1 + (2k+1)/8, code centre -1 + (2(k//4)+1)/2, difference times 2
    offsets = relative_coordinates((2, 4), (8, 8))
    assert offsets.shape == (2, 8, 8)
    rows = [-0.75, -0.25, 0.25, 0.75] * 2
    cols = [-0.5, 0.5] * 4
    assert torch.allclose(offsets[0], torch.tensor(rows).view(8, 1).expand(8, 8))
    assert torch.allclose(offsets[1], torch.tensor(cols).view(1, 8).expand(8, 8))


def test_relative_coordinates_per_level_ratio():
    for ratio, pattern in {
        1: [0.0],
        2: [-0.5, 0.5],
        4: [-0.75, -0.25, 0.25, 0.75],
        8: [(2 * m + 1) / 8 - 1 for m in range(8)],
    }.items():
        offsets = relative_coordinates((16 // ratio, 16 // ratio), (16, 16))
        assert torch.allclose(offsets[0, :, 0], torch.tensor(pattern * (16 // len(pattern))))
        assert offsets.abs().max() < 1


def test_position_encoding_values():
    encoding = PositionEncoding()
    assert encoding.out_channels == 26
    offsets = torch.tensor([0.5, -0.25]).view(2, 1, 1)
    psi = encoding(offsets)[:, 0, 0]
    omega = [2 ** (6 * i / 5) for i in range(6)]  # 2**linspace(0, 6, 6): 1, 2.30, ..., 64
    expected = [0.5, -0.25]
    expected += [math.sin(0.5 * w) for w in omega] + [math.sin(-0.25 * w) for w in omega]
    expected += [math.cos(0.5 * w) for w in omega] + [math.cos(-0.25 * w) for w in omega]
    assert torch.allclose(psi, torch.tensor(expected), atol=1e-5)
    assert encoding.weight.requires_grad


def test_factorised_first_layer_equals_equation_4():
    """The decoder equals the literal concatenation [psi_i(dx_i), z_i*] -> MLP of eq. (4)."""
    decoder = FeatureAlignmentDecoder(CHANNELS).double().eval()
    features = fake_features(dtype=torch.float64)
    query = features[1].shape[-2:]  # five levels: queries at stride 2
    parts = []
    for level, project, encode in zip(
        decoder.levels, decoder.projections, decoder.encodings, strict=True
    ):
        offsets = relative_coordinates(features[level].shape[-2:], query, dtype=torch.float64)
        psi = encode(offsets).expand(2, -1, -1, -1)
        parts += [psi, nearest_codes(project(features[level]), query)]
    points = torch.cat(parts, dim=1)
    assert points.shape == (2, 5 * (26 + 256), 32, 48)  # 1410 channels per query point
    logits = decoder.mlp(decoder.first(points))
    expected = F.interpolate(logits, size=(64, 96), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(decoder(features), expected, atol=1e-10)


def test_output_resolution_equals_input_resolution():
    model = FeatureAlignmentNet(in_channels=1, classes=3, encoder_name="resnet18").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 96)).shape == (1, 3, 64, 96)
    decoder = FeatureAlignmentDecoder(CHANNELS, classes=2, levels=(1, 3)).eval()
    with torch.no_grad():
        assert decoder(fake_features()).shape == (2, 2, 64, 96)


def test_decoding_at_the_input_grid_needs_no_upsampling():
    """Queries at the input's pixel centres: the same eq. (4) at four times the points."""
    features = fake_features(dtype=torch.float64)
    decoder = FeatureAlignmentDecoder(CHANNELS, decode_at_input=True).double().eval()
    parts = []
    for level, project, encode in zip(
        decoder.levels, decoder.projections, decoder.encodings, strict=True
    ):
        offsets = relative_coordinates(features[level].shape[-2:], (64, 96), dtype=torch.float64)
        parts += [encode(offsets).expand(2, -1, -1, -1)]
        parts += [nearest_codes(project(features[level]), (64, 96))]
    with torch.no_grad():
        expected = decoder.mlp(decoder.first(torch.cat(parts, dim=1)))
        out = decoder(features)
    assert out.shape == (2, 2, 64, 96)
    assert torch.allclose(out, expected, atol=1e-10)
    # the finest level's offsets are no longer all 0: each input pixel has its own
    assert relative_coordinates((32, 48), (64, 96)).abs().min() == pytest.approx(0.5, abs=1e-5)


def test_gradients_reach_every_level_projection():
    decoder = FeatureAlignmentDecoder(CHANNELS)
    decoder(fake_features()).logsumexp(dim=1).mean().backward()
    for project in decoder.projections:
        assert project[0].weight.grad.abs().sum() > 0
    # the finest level's offsets are all 0, so sin(W dx), cos(W dx) have zero gradient in W
    finest, *coarser = decoder.encodings
    assert torch.equal(finest.weight.grad, torch.zeros(12, 2))
    for encode in coarser:
        assert encode.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "levels, total",
    [((1, 2, 3, 4, 5), 1_141_114), ((2, 3, 4, 5), 983_650)],  # EFA paper's five, IFA's four
)
def test_parameter_count_on_efficientnet_b5_levels(levels, total):
    # EfficientNet-b5 levels 1/2..1/32: 48, 40, 64, 176, 512 channels
    channels = (1, 48, 40, 64, 176, 512)
    decoder = FeatureAlignmentDecoder(channels, levels=levels)
    n = len(levels)
    projections = sum(channels[i] for i in levels) * 256 + n * 256 + n * 2 * 256  # w, b, BN
    encodings = n * 12 * 2
    mlp = (n * (26 + 256) * 512 + 512) + 2 * 512 + (512 * 256 + 256) + 2 * 256
    mlp += (256 * 256 + 256) + 2 * 256 + (256 * 2 + 2)
    assert sum(p.numel() for p in decoder.parameters()) == projections + encodings + mlp == total


def test_non_divisible_input_is_refused():
    model = FeatureAlignmentNet(encoder_name="resnet18")
    with pytest.raises(ValueError, match=r"100 x 64 is not divisible by 32.*128 x 64"):
        model(torch.zeros(1, 1, 100, 64))


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="level 6 does not exist"):
        FeatureAlignmentDecoder(CHANNELS, levels=(2, 6))
    with pytest.raises(ValueError, match="increasing"):
        FeatureAlignmentDecoder(CHANNELS, levels=(3, 2))
