"""EFA-Net (Liu et al. 2023): an smp encoder + the Feature Alignment decoder.

``fa`` takes any segmentation-models-pytorch encoder (``encoder_name``); ``efa_net`` is ``fa``
with EfficientNet-b5, the paper's model. The EFA ablation (Table 4) by name: ``unet``;
``unet`` with ``encoder_name="efficientnet-b5"``; ``fa`` (its default encoder is the U-Net
row's ``resnet34``); ``efa_net``. The rows are listed in ``ct_encoders.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from segmentation_models_pytorch.encoders import get_encoder
from torch import Tensor, nn

from lightning_modules.nets.blocks import check_input_size
from lightning_modules.nets.fa_decoder import FeatureAlignmentDecoder
from lightning_modules.nets.registry import register_model
from lightning_modules.nets.weights import drop_unused_head, load_encoder_weights


class FeatureAlignmentNet(nn.Module):
    """smp encoder -> FA decoder: ``B x in_channels x H x W`` -> ``B x classes x H x W``.

    H and W must be multiples of the encoder's output stride (32). Decoder keywords
    (``levels``, ``channels``, ``mlp_channels``, ``frequencies``, ``max_exponent``) go to
    :class:`FeatureAlignmentDecoder`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 2,
        encoder_name: str = "resnet34",
        encoder_weights: str | Path | None = None,
        encoder_depth: int = 5,
        **decoder_kwargs,
    ) -> None:
        super().__init__()
        self.encoder = drop_unused_head(
            get_encoder(encoder_name, in_channels=in_channels, depth=encoder_depth, weights=None)
        )
        load_encoder_weights(self.encoder, encoder_weights)
        self.decoder = FeatureAlignmentDecoder(
            self.encoder.out_channels, classes=classes, **decoder_kwargs
        )
        self.output_stride = int(getattr(self.encoder, "output_stride", 2**encoder_depth))

    def forward(self, x: Tensor) -> Tensor:
        check_input_size(x, self.output_stride, type(self).__name__)
        return self.decoder(self.encoder(x))


@register_model("fa", paper="ct", defaults={"in_channels": 1}, size_multiple=32)
def fa(
    in_channels: int = 1, classes: int = 2, encoder_name: str = "resnet34", **kwargs
) -> FeatureAlignmentNet:
    """Any smp encoder + Feature Alignment decoder (EFA ablation's "Unet + FA" at resnet34)."""
    return FeatureAlignmentNet(in_channels, classes, encoder_name=encoder_name, **kwargs)


@register_model(
    "efa_net",
    paper="ct",
    defaults={"in_channels": 1},
    paper_params=0.432e6,
    paper_gmacs=1.549,
    size_multiple=32,
)
def efa_net(
    in_channels: int = 1, classes: int = 2, encoder_name: str = "efficientnet-b5", **kwargs
) -> FeatureAlignmentNet:
    """EFA-Net: EfficientNet-b5 encoder + Feature Alignment decoder (the EFA paper's model)."""
    return FeatureAlignmentNet(in_channels, classes, encoder_name=encoder_name, **kwargs)
