"""One registry for every segmentation network of both papers.

Register a builder with :func:`register_model`; build it by name with :func:`create_model`.
A builder takes ``in_channels`` and ``classes`` (plus its own keywords) and returns an
``nn.Module`` mapping ``B x in_channels x H x W`` to ``B x classes x H x W`` logits. The
entries live in :data:`MODELS`, a :class:`lightning_modules.registry.Registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from lightning_modules.registry import Entry, Registry

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry(Entry):
    """A registered network: its builder, its input-size rules and the facts the model table
    prints beside it.

    ``fixed_size``: the builder takes ``img_size`` and the network runs at that size only (the
    TransUNets' position embeddings); build it with ``img_size`` = the images' side.
    ``size_multiple``: input height and width (and ``img_size``) must be multiples of it, at
    the builder's defaults (the network's total stride; its ``stride`` attribute, where it has
    one, says it for other keywords).
    """

    paper: str = ""  # "ct", "xray" or "" (a building block shared by both)
    defaults: dict = field(default_factory=dict)  # in_channels/classes the paper's table used
    paper_params: float | None = None  # parameters printed by the paper
    paper_gmacs: float | None = None  # "GFLOPs" printed by the paper (thop MACs)
    fixed_size: bool = False
    size_multiple: int = 1

    def __post_init__(self) -> None:
        if self.size_multiple < 1:
            raise ValueError(f"model {self.name!r}: size_multiple must be >= 1 pixel")


MODELS: Registry[ModelEntry] = Registry("model", ModelEntry)


def register_model(
    name: str,
    *,
    paper: str = "",
    description: str = "",
    defaults: dict | None = None,
    paper_params: float | None = None,
    paper_gmacs: float | None = None,
    fixed_size: bool = False,
    size_multiple: int = 1,
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder`` under ``name`` (names are unique)."""
    return MODELS.register(
        name,
        paper=paper,
        description=description,
        defaults=dict(defaults or {}),
        paper_params=paper_params,
        paper_gmacs=paper_gmacs,
        fixed_size=fixed_size,
        size_multiple=size_multiple,
    )


def list_models(paper: str | None = None) -> list[str]:
    """Registered names, optionally only those of one paper (``"ct"`` or ``"xray"``)."""
    return MODELS.names() if paper is None else MODELS.names(paper=paper)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; unknown names raise a KeyError listing the valid ones."""
    return MODELS.entry(name)


def create_model(name: str, in_channels: int = 1, classes: int = 2, **kwargs) -> nn.Module:
    """Build the registered network ``name``.

    Returns an ``nn.Module`` mapping ``B x in_channels x H x W`` to ``B x classes x H x W``
    logits. Extra keywords go to the builder (``encoder_name``, ``growth_rate``, ...).
    """
    return MODELS.build(name, in_channels=in_channels, classes=classes, **kwargs)
