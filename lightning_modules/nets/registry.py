"""One registry for every segmentation network of both papers.

Register a builder with :func:`register_model`; build it by name with :func:`create_model`.
A builder takes ``in_channels`` and ``classes`` (plus its own keywords) and returns an
``nn.Module`` mapping ``B x in_channels x H x W`` to ``B x classes x H x W`` logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered network: its builder and the facts the model table prints beside it."""

    name: str
    builder: ModelBuilder
    paper: str  # "ct", "xray" or "" (a building block shared by both)
    description: str
    defaults: dict = field(default_factory=dict)  # in_channels/classes the paper's table used
    paper_params: float | None = None  # parameters printed by the paper
    paper_gmacs: float | None = None  # "GFLOPs" printed by the paper (thop MACs)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    paper: str = "",
    description: str = "",
    defaults: dict | None = None,
    paper_params: float | None = None,
    paper_gmacs: float | None = None,
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder`` under ``name`` (names are unique)."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name=name,
            builder=builder,
            paper=paper,
            description=description or _first_line(builder.__doc__),
            defaults=dict(defaults or {}),
            paper_params=paper_params,
            paper_gmacs=paper_gmacs,
        )
        return builder

    return decorator


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def list_models(paper: str | None = None) -> list[str]:
    """Registered names, optionally only those of one paper (``"ct"`` or ``"xray"``)."""
    return sorted(n for n, e in _REGISTRY.items() if paper is None or e.paper == paper)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; unknown names raise a KeyError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        ) from None


def create_model(name: str, in_channels: int = 1, classes: int = 2, **kwargs) -> nn.Module:
    """Build the registered network ``name``.

    Returns an ``nn.Module`` mapping ``B x in_channels x H x W`` to ``B x classes x H x W``
    logits. Extra keywords go to the builder (``encoder_name``, ``growth_rate``, ...).
    """
    return model_entry(name).builder(in_channels=in_channels, classes=classes, **kwargs)
