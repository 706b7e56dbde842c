"""One registry mechanism for everything chosen by name: networks, losses.

A :class:`Registry` maps unique names to entries: the builder plus the facts the rest of the
code asks about (a network's paper, its input-size rules, ...). Register with the decorator
``@registry.register(name, **facts)`` or the call ``registry.register(name, builder,
**facts)``; look up with ``registry.entry(name)`` (an unknown name raises a KeyError listing
the valid ones), list with ``registry.names()`` and build with ``registry.build(name, ...)``.
The facts are the fields of the registry's entry type (:class:`Entry` or a subclass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class Entry:
    """A registered builder. ``description`` defaults to the first line of its docstring."""

    name: str
    builder: Callable[..., Any]
    description: str = ""


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """Unique names of one ``kind`` (``"model"``, ``"loss"``) -> entries of ``entry_type``.

    Args:
        kind: what an entry is, for error messages (``unknown model 'x'; registered models:``).
        entry_type: the dataclass holding builder and facts (:class:`Entry` or a subclass).
        plural: ``kind`` in the plural, when adding an ``s`` is wrong (``"losses"``).
    """

    def __init__(self, kind: str, entry_type: type[E] = Entry, plural: str | None = None):
        self.kind, self.entry_type = kind, entry_type
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, E] = {}

    def register(self, name: str, builder: Callable[..., Any] | None = None, **facts):
        """Register ``builder`` under ``name`` with ``facts`` (entry fields); returns ``builder``.

        Without ``builder``, returns a decorator that registers what it decorates. A name
        registered twice raises a ValueError.
        """
        if builder is None:
            return lambda decorated: self.register(name, decorated, **facts)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if not facts.get("description"):
            facts["description"] = _first_line(builder.__doc__)
        self._entries[name] = self.entry_type(name=name, builder=builder, **facts)
        return builder

    def entry(self, name: str) -> E:
        """The entry of ``name``; unknown names raise a KeyError listing the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names())
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered {self.plural}: {valid}"
            ) from None

    def names(self, **facts) -> list[str]:
        """Registered names, sorted; ``facts`` keep those whose entry has these values."""
        return sorted(
            name
            for name, entry in self._entries.items()
            if all(getattr(entry, key) == value for key, value in facts.items())
        )

    def build(self, name: str, /, *args, **kwargs):
        """Call the builder of ``name`` with ``args`` and ``kwargs``."""
        return self.entry(name).builder(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""
