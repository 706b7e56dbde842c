"""ONNX export of every registered network and of every encoder of the encoder ablation:
onnxruntime's logits match PyTorch's within the bundle's tolerance at a size other than the
traced one (or at the traced one, where a network's graph keeps its size fixed: TransUNet's
position embeddings, SENet's ceil-mode stem). About 10 minutes on 2 cores: marked slow."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.bundle import TOLERANCE, export_onnx, onnx_difference
from lightning_modules.nets import create_model
from lightning_modules.nets.registry import MODELS, list_models
from lightning_modules.nets.smp_models import ct_encoder_ablation

pytestmark = pytest.mark.slow
# the networks that keep a fixed input size (position embeddings of img_size tokens)
FIXED = {n for n in list_models() if MODELS.entry(n).fixed_size}


def _sizes(name: str) -> tuple[int, int]:
    """(traced size, checked size): multiples of the network's total stride."""
    step = max(MODELS.entry(name).size_multiple, 32)
    return (step * 2, step * 2) if name in FIXED else (step * 2, step * 3)


def _check(net, in_channels: int, name: str, tmp_path, fixed: bool) -> None:
    traced, checked = _sizes(name)
    path = tmp_path / "model.onnx"
    dynamic = export_onnx(net.eval(), path, in_channels, traced, dynamic_size=name not in FIXED)
    assert dynamic == (not fixed), f"{name}: dynamic height/width {dynamic}"
    difference = onnx_difference(net, path, in_channels, checked if dynamic else traced)
    assert difference <= TOLERANCE, f"{name}: onnxruntime differs by {difference:.2e}"


@pytest.mark.parametrize("name", list_models())
def test_every_registered_network_exports_to_onnx_with_matching_logits(name, tmp_path):
    torch.manual_seed(0)
    in_channels = MODELS.entry(name).defaults.get("in_channels", 1)
    kwargs = {"img_size": _sizes(name)[0]} if name in FIXED else {}
    net = create_model(name, in_channels=in_channels, **kwargs)
    _check(net, in_channels, name, tmp_path, fixed=name in FIXED)


ENCODERS = [row["encoder"] for row in ct_encoder_ablation()["encoders"]]
# SENet's stem max-pools with ceil_mode=True, which torch.export (torch 2.14) cannot trace with
# a symbolic height and width: these export at the traced size (docs/predict.md)
FIXED_ENCODERS = {"se_resnet50", "se_resnext50_32x4d"}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_of_the_ablation_exports_under_the_unet_decoder(encoder, tmp_path):
    torch.manual_seed(0)
    net = create_model("unet", in_channels=1, encoder_name=encoder)
    _check(net, 1, "unet", tmp_path, fixed=encoder in FIXED_ENCODERS)
