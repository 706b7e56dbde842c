"""Segmentation losses selectable by name: ``create_loss("ce")``.

Every loss maps logits ``B x C x H x W`` and an int64 target ``B x H x W`` to a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

_LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str):
    """Decorator registering a loss class (or factory) under ``name``."""

    def decorator(factory):
        if name in _LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        _LOSSES[name] = factory
        return factory

    return decorator


def list_losses() -> list[str]:
    return sorted(_LOSSES)


def create_loss(name: str, **kwargs) -> nn.Module:
    """Build the loss registered as ``name``; unknown names list the valid ones."""
    try:
        factory = _LOSSES[name]
    except KeyError:
        valid = ", ".join(list_losses())
        raise KeyError(f"unknown loss {name!r}; registered losses: {valid}") from None
    return factory(**kwargs)


@register_loss("ce")
class CrossEntropyLoss(nn.Module):
    """CEL: plain pixel-wise cross-entropy, mean over pixels."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target)
