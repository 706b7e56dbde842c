"""The one registry mechanism (``lightning_modules.registry``) behind networks and losses."""

from dataclasses import dataclass

import pytest

from lightning_modules.losses import LOSSES
from lightning_modules.nets import MODELS
from lightning_modules.registry import Entry, Registry


@dataclass(frozen=True)
class ColourEntry(Entry):
    warm: bool = False


def test_decorator_and_call_register_with_facts_and_docstring_description():
    colours = Registry("colour", ColourEntry)

    @colours.register("red", warm=True)
    def red(shade: int = 1) -> str:
        """Red, the warm one.

        More text.
        """
        return f"red{shade}"

    assert red() == "red1"  # the decorator hands the builder back
    colours.register("blue", lambda shade=1: f"blue{shade}", description="Blue.")
    assert colours.names() == ["blue", "red"]
    assert colours.names(warm=True) == ["red"]
    assert colours.entry("red").description == "Red, the warm one."
    assert colours.entry("blue").description == "Blue."
    assert colours.build("blue", shade=2) == "blue2"
    assert "red" in colours and "green" not in colours and len(colours) == 2


def test_unknown_and_duplicate_names_are_refused_clearly():
    losses = Registry("loss", plural="losses")
    losses.register("ce", dict)
    losses.register("dice", dict)
    with pytest.raises(KeyError, match=r"unknown loss 'sw'; registered losses: ce, dice"):
        losses.entry("sw")
    with pytest.raises(ValueError, match="loss 'ce' is registered twice"):
        losses.register("ce", list)


def test_networks_and_losses_share_the_mechanism():
    assert isinstance(MODELS, Registry) and isinstance(LOSSES, Registry)
    assert {"ce", "wce", "swce", "dice", "ce+dice"} <= set(LOSSES.names())
    assert MODELS.names(fixed_size=True) == ["transunet", "transunet_lite"]
