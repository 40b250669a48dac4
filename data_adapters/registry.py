"""One registry per family (image readers, model loaders, saliency methods, metrics).

A registry key equals the name of the module that defines the entry, so adding a method is adding
one module; a bad key gets close-match suggestions.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from data_adapters.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")

MSG_UNKNOWN = "unknown {family} {name!r}{hint}; known: {known}"


class Registry(Generic[T]):
    """A name → entry mapping for one family of plug-ins."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, entry: T, name: str | None = None) -> T:
        """Register ``entry`` under ``name``, by default the last component of its module's name.

        Families whose entries are one-line functions (metrics) name them explicitly instead.
        """
        name = name or entry.__module__.rsplit(".", 1)[-1]
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise UnknownNameError(
                MSG_UNKNOWN.format(family=self.family, name=name, hint=hint, known=", ".join(sorted(self._entries)))
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
