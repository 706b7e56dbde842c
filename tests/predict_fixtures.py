"""Networks with known output for the predict tests: PTX wherever the input is darker than a
threshold, at the input's own size, so every output pixel can be checked against the input."""

from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn

from lightning_modules.diagnosis import DiagnosisRule
from lightning_modules.inference import Predictor

DARK = 0.2  # the threshold network's PTX: windowed CT (or radiograph) values below this


class DarkIsPneumothorax(nn.Module):
    """Logits of PTX = 40 * (dark - x): a network whose masks are known in advance."""

    def __init__(self, dark: float = DARK):
        super().__init__()
        self.dark = dark

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ptx = 40.0 * (self.dark - x[:, :1])
        return torch.cat([torch.zeros_like(ptx), ptx], dim=1)


def predictor(modality: str, tta: str = "none", dark: float = DARK) -> Predictor:
    data = (
        "datamodules.xray.XRayDataModule" if modality == "xray" else "datamodules.ct.CTDataModule"
    )
    config = {"data": {"class_path": data, "init_args": {}}}
    return Predictor(DarkIsPneumothorax(dark), None, 1, DiagnosisRule("paper", 50), config, tta=tta)


def options(**kw):
    return Namespace(**{"batch_size": 4, "save_probabilities": False, **kw})
