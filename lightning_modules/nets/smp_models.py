"""The EFA-Net paper's CT baselines: segmentation-models-pytorch architectures (Table 6).

U-Net, UNet++, FPN, LinkNet and DeepLabV3+ with smp's defaults, encoder ``resnet34`` unless
``encoder_name`` says otherwise (the encoder ablation of Tables 2-3 is ``unet`` with the
encoders listed in ``ct_encoders.yaml``). Nothing is ever downloaded: ``encoder_weights`` is
``None`` (random init) or the path of a local file, see
:func:`lightning_modules.nets.weights.load_encoder_weights`.
"""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import yaml
from torch import nn

from lightning_modules.nets.registry import register_model
from lightning_modules.nets.weights import drop_unused_head, load_encoder_weights

CT_ENCODERS_FILE = Path(__file__).with_name("ct_encoders.yaml")


def ct_encoder_ablation() -> dict[str, list[dict]]:
    """The EFA paper's encoder ablation (Tables 2-3) and EFA ablation (Table 4), as rows.

    Returns ``{"encoders": [...], "efa_ablation": [...]}`` read from ``ct_encoders.yaml``.
    """
    with open(CT_ENCODERS_FILE) as handle:
        return yaml.safe_load(handle)


def build_smp(
    architecture: type[nn.Module],
    in_channels: int = 1,
    classes: int = 2,
    encoder_name: str = "resnet34",
    encoder_weights: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """An smp model with random init, then the local ``encoder_weights`` file if one is given."""
    model = architecture(
        encoder_name=encoder_name,
        encoder_weights=None,
        in_channels=in_channels,
        classes=classes,
        **kwargs,
    )
    drop_unused_head(model.encoder)
    load_encoder_weights(model.encoder, encoder_weights)
    return model


def _register(
    name: str, architecture, params: float, gmacs: float, text: str, size_multiple: int = 32
) -> None:
    def builder(in_channels=1, classes=2, encoder_name="resnet34", encoder_weights=None, **kw):
        return build_smp(architecture, in_channels, classes, encoder_name, encoder_weights, **kw)

    builder.__doc__ = text
    register_model(
        name,
        paper="ct",
        defaults={"in_channels": 1},
        paper_params=params,
        paper_gmacs=gmacs,
        size_multiple=size_multiple,  # the encoder's output stride (smp checks it)
    )(builder)


_register(
    "unet",
    smp.Unet,
    24.43e6,
    7.76,
    "U-Net (Ronneberger 2015), smp, resnet34 encoder.",
    size_multiple=1,  # smp's U-Net resizes its decoder to each skip: any size runs
)
_register(
    "unetplusplus", smp.UnetPlusPlus, 26.07e6, 18.36, "UNet++ (Zhou 2018), smp, resnet34 encoder."
)
_register("fpn", smp.FPN, 23.15e6, 6.77, "FPN (Lin 2017), smp, resnet34 encoder.")
_register("linknet", smp.Linknet, 21.77e6, 5.37, "LinkNet (Chaurasia 2017), smp, resnet34.")
_register(
    "deeplabv3plus",
    smp.DeepLabV3Plus,
    22.43e6,
    7.82,
    "DeepLabV3+ (Chen 2018), smp, resnet34 encoder.",
    size_multiple=16,  # smp's DeepLabV3+ dilates the last stage: encoder output stride 16
)
