"""X-ray paper networks: exact parameter counts, growth-rate sweep, blocks, init, input sizes.

Counting builds models on the meta device (shapes only, no memory, no forward pass); the
registry's base test covers forward/backward/state_dict at 256 x 256.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from lightning_modules.nets import create_model, list_models, model_entry
from lightning_modules.nets.blocks import ELU, SCSE, DenseLayer, MultiScaleStem
from lightning_modules.nets.deeplabv3plus_resnet101 import ImagePooling

# The X-ray paper's Table 2 (in_channels=3, classes=2); DeepLab v3+ is the closest known
# reconstruction, 0.02 % below the paper's 59,351,458.
EXACT_COUNTS = {
    "fc_densenet": 5_415_278,
    "ms_scse_fc_densenet": 5_989_096,
    "vanilla_unet": 7_764_098,
    "ms_scse_unet": 8_204_011,
    "segnet": 29_444_162,
    "dense_aspp": 35_365_762,
    "deeplabv3plus_resnet101": 59_339_426,
}
STRIDES = {
    "fc_densenet": 32,
    "ms_scse_fc_densenet": 32,
    "vanilla_unet": 16,
    "ms_scse_unet": 16,
    "segnet": 32,
    "dense_aspp": 8,
    "deeplabv3plus_resnet101": 8,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, in_channels=3, classes=2, **kwargs)


@functools.cache
def default_meta_model(name: str) -> nn.Module:
    """The paper's configuration, built once per test session (read-only use)."""
    return meta_model(name)


def layout(model: nn.Module) -> list[tuple[str, str]]:
    return [(path, type(m).__name__) for path, m in model.named_modules()]


def slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


def scse_params(c: int) -> int:
    return 2 * c * (c // 2) + c // 2 + c + (c + 1)


def fc_densenet_params(k: int, ms_scse: bool, in_ch: int = 3, classes: int = 2) -> int:
    """The FC-DenseNet103 layout (Jegou et al. 2017: blocks of 4, 5, 7, 10, 12 layers, a
    15-layer bottleneck) counted by hand, biases on every conv; at k = 12 the X-ray paper's
    Table 2 gives 5,415,278 (FC-DenseNet) and 5,989,096 (MS_scSE_FC-DenseNet)."""
    # stem: 3x3/5x5/7x7 convs of 16 filters, or one 3x3 conv to 48
    p = (9 + 25 + 49) * in_ch * 16 + 48 if ms_scse else 9 * in_ch * 48 + 48
    c, skips = 48, []

    def dense_layer(c_in: int, scse: bool) -> int:  # BN + 3x3 conv to k [+ scSE on k maps]
        return 2 * c_in + 9 * c_in * k + k + (scse_params(k) if scse else 0)

    for n in (4, 5, 7, 10, 12):
        for _ in range(n):
            p, c = p + dense_layer(c, ms_scse), c + k
        p += (scse_params(c) if ms_scse else 0) + 2 * c + c * c + c  # scSE + transition down
        skips.append(c)
    for _ in range(15):
        p, c = p + dense_layer(c, False), c + k
    new = 15 * k
    for n, skip in zip((12, 10, 7, 5, 4), reversed(skips), strict=True):
        p += 9 * new * new + new + (scse_params(new) if ms_scse else 0)  # transition up
        c = new + skip
        for _ in range(n):
            p, c = p + dense_layer(c, ms_scse), c + k
        new = n * k
    return p + c * classes + classes


@pytest.mark.parametrize("name", sorted(EXACT_COUNTS))
def test_parameter_count_is_the_papers(name):
    entry = model_entry(name)
    count = n_params(default_meta_model(name))
    assert count == EXACT_COUNTS[name]
    assert entry.paper == "xray" and entry.defaults == {"in_channels": 3}
    assert abs(count - entry.paper_params) / entry.paper_params < 1e-3
    assert entry.paper_gmacs > 0


def test_every_xray_model_is_registered():
    assert set(list_models(paper="xray")) == set(EXACT_COUNTS)


def test_hand_count_reproduces_the_paper_at_k12():
    # anchors the hand formula used by the sweep below on the paper's two printed counts
    assert fc_densenet_params(12, ms_scse=False) == 5_415_278
    assert fc_densenet_params(12, ms_scse=True) == 5_989_096


# the paper's sweep is k = 2, 4, ..., 16; the fast set keeps its ends, an odd k and the default
SWEEP = [2, 3, 12, 16] + [slow(k) for k in (4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15)]


@pytest.mark.parametrize("growth_rate", SWEEP)
@pytest.mark.parametrize("name", ["fc_densenet", "ms_scse_fc_densenet"])
def test_growth_rate_changes_only_dense_layer_width(name, growth_rate):
    model = meta_model(name, growth_rate=growth_rate)
    assert n_params(model) == fc_densenet_params(growth_rate, name.startswith("ms"))
    dense_convs = [m[2] for m in model.modules() if isinstance(m, DenseLayer)]
    assert len(dense_convs) == 2 * sum((4, 5, 7, 10, 12)) + 15
    assert {(c.out_channels, c.kernel_size) for c in dense_convs} == {(growth_rate, (3, 3))}
    # same modules in the same places as at k = 12: only widths move with k
    assert layout(model) == layout(default_meta_model(name))


def test_default_growth_rate_is_12():
    model = default_meta_model("fc_densenet")
    assert model.bottleneck.new_channels == 15 * 12
    assert model.head.in_channels == 204


@pytest.mark.parametrize("channels", [2, 3, 12, 60, 96, 157, 504])
def test_scse_parameter_formula(channels):
    assert n_params(SCSE(channels)) == scse_params(channels)


def test_scse_with_zero_weights_returns_its_input():
    # cSE and sSE both give sigmoid(0) = 0.5: U * 0.5 + U * 0.5 = U
    scse = SCSE(8)
    for conv in scse.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(scse(x), x)
    nn.init.constant_(scse.sse[0].bias, 50.0)  # sSE saturates at 1: U * 0.5 + U * 1
    torch.testing.assert_close(scse(x), 1.5 * x)


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.float64, 1e-12), (torch.bfloat16, 5e-3)]
)
def test_cpu_elu_matches_torch_elu_forward_and_backward(dtype, tolerance):
    # values on both sides of 0, 0 itself, and far out on each side
    x = torch.cat([torch.linspace(-12, 6, 997), torch.zeros(3)]).to(dtype).reshape(4, 250)
    upstream = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dtype)
    ours, ref = x.clone().requires_grad_(), x.double().requires_grad_()
    y, y_ref = ELU()(ours), nn.functional.elu(ref)
    assert type(y.grad_fn).__name__ == "_VectorisedELUBackward"  # not torch's own kernel
    (y.double() * upstream.double()).sum().backward()
    (y_ref * upstream.double()).sum().backward()
    assert y.dtype == dtype and ours.grad.dtype == dtype
    torch.testing.assert_close(y.double(), y_ref, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(ours.grad.double(), ref.grad, rtol=tolerance, atol=tolerance)
    with torch.no_grad():  # inference path: no autograd node, same values
        torch.testing.assert_close(ELU()(x), y.detach())
    assert y[x == 0].eq(0).all() and (y.double() >= -1).all()


def test_fc_densenet_exports_its_elu_as_an_onnx_elu_node(tmp_path):
    pytest.importorskip("onnx")
    import onnx

    from lightning_modules.bundle import export_onnx

    layer = nn.Sequential(DenseLayer(4, 3, scse=True)).eval()
    export_onnx(layer, tmp_path / "layer.onnx", 4, 32, dynamic_size=False)
    ops = {node.op_type for node in onnx.load(tmp_path / "layer.onnx").graph.node}
    assert "Elu" in ops and "Exp" not in ops, ops


def test_multi_scale_stem_gives_48_channels_at_input_resolution():
    stem = MultiScaleStem(3)
    assert [b.kernel_size for b in stem.branches] == [(3, 3), (5, 5), (7, 7)]
    assert [b.out_channels for b in stem.branches] == [16, 16, 16]
    assert n_params(stem) == 3 * 16 * (9 + 25 + 49) + 48
    assert stem(torch.randn(2, 3, 20, 28)).shape == (2, 48, 20, 28)


@pytest.mark.parametrize("name", ["ms_scse_fc_densenet", "vanilla_unet"])
def test_he_uniform_initialisation(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, classes=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    for conv in convs:
        w = conv.weight.detach()
        fan_in = w[0].numel() if isinstance(conv, nn.Conv2d) else w.shape[1] * w[0, 0].numel()
        limit = math.sqrt(6 / fan_in)
        assert w.abs().max() <= limit * (1 + 1e-6)
        if w.numel() >= 5000:  # U(-l, l) has std l / sqrt(3) = sqrt(2 / fan_in)
            assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)
        assert conv.bias is None or torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize("name", sorted(STRIDES))
def test_input_size_not_divisible_by_the_stride_is_refused(name):
    model = default_meta_model(name)
    assert model.stride == STRIDES[name]
    s = STRIDES[name]
    with pytest.raises(ValueError, match=f"stride {s}"):
        model(torch.zeros(1, 3, 2 * s, 2 * s + s // 2, device="meta"))


# the two large backbones take seconds to build on CPU: slow set (the registry test runs them)
@pytest.mark.parametrize(
    "name", [slow(n) if n in {"dense_aspp", "deeplabv3plus_resnet101"} else n for n in STRIDES]
)
def test_non_square_input_channels_and_classes_respected(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, classes=3).eval()
    s = STRIDES[name]
    h, w = (s, 2 * s) if s >= 16 else (16, 40)
    with torch.no_grad():
        y = model(torch.rand(1, 1, h, w))
    assert y.shape == (1, 3, h, w)
    assert torch.isfinite(y).all()


def test_ms_scse_unet_optional_multi_scale_stem():
    base = n_params(meta_model("ms_scse_unet"))
    with_stem = n_params(meta_model("ms_scse_unet", multi_scale_stem=True))
    # the stem (4,032) replaces the 3 -> 32 conv (896); its BN and the next conv see 48 maps
    assert with_stem - base == (3 * 16 * 83 + 48) - (27 * 32 + 32) + 2 * 16 + 16 * 32 * 9
    model = create_model("ms_scse_unet", multi_scale_stem=True, in_channels=3, classes=2)
    assert model(torch.rand(1, 3, 32, 48)).shape == (1, 2, 32, 48)


def test_deeplab_image_pooling_bn_matches_bn_on_pooled_map():
    # BN applied after broadcasting equals BN on the 1 x 1 pooled map, and also runs at batch 1
    torch.manual_seed(0)
    branch = ImagePooling(6, 4).train()
    x = torch.randn(3, 6, 5, 7)
    pooled = branch.conv(x.mean(dim=(2, 3), keepdim=True))
    mean, var = (
        pooled.mean(dim=(0, 2, 3), keepdim=True),
        pooled.var(dim=(0, 2, 3), unbiased=False, keepdim=True),
    )
    expected = torch.relu((pooled - mean) / torch.sqrt(var + branch.bn.eps)).expand(-1, -1, 5, 7)
    torch.testing.assert_close(branch(x), expected, rtol=1e-4, atol=1e-5)
    # batch 1: every pooled value is its own mean, so BN gives beta = 0 (up to rounding)
    torch.testing.assert_close(branch(x[:1]), torch.zeros(1, 4, 5, 7), rtol=0, atol=1e-4)


def test_deeplab_output_stride_16_keeps_the_count():
    assert n_params(meta_model("deeplabv3plus_resnet101", output_stride=16)) == 59_339_426
    assert meta_model("deeplabv3plus_resnet101", output_stride=16).stride == 16
    with pytest.raises(ValueError, match="output_stride"):
        meta_model("deeplabv3plus_resnet101", output_stride=32)
