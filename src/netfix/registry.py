"""netfix's one registry style: a name -> entry table per kind (methods, scenarios, forgetting operators, editors,
architectures, benches), each read the same way.

A :class:`Registry` refuses a name registered twice (unless ``replace=True``), answers an unknown name with an
error that lists the valid ones and names the argument to fix, and lists its names sorted.

Example:
    >>> shapes = Registry("shape", "--shape")
    >>> @shapes.register("square")
    ... def square(x): return x * x
    >>> shapes.get("square")(3)
    9
    >>> shapes.names()
    ['square']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError, unknown

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` by name; ``argument`` is the option an unknown name is reported against."""

    def __init__(self, kind: str, argument: str) -> None:
        self.kind, self.argument = kind, argument
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Register ``entry`` under ``name``; a second entry under one name is refused unless ``replace``."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"name: expected a non-empty {self.kind} name; got {name!r}.")
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise ConfigError(f"name: {self.kind} {name!r} is already registered. Fix: pick another name, or "
                              "pass replace=True.")
        self._entries[name] = entry
        return entry

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        def deco(entry: T) -> T:
            return self.add(name, entry, replace=replace)
        return deco

    def get(self, name: str, argument: "str | None" = None) -> T:
        """The entry ``name``; an unknown name raises :class:`~netfix.errors.UnknownNameError` listing the
        valid ones and naming ``argument`` (default: the registry's)."""
        if not isinstance(name, str) or name not in self._entries:
            raise unknown(self.kind, name, self.names(), argument or self.argument)
        return self._entries[name]

    def remove(self, name: str) -> bool:
        """Forget ``name`` (whether it was registered)."""
        return self._entries.pop(name, None) is not None

    def find(self, name: str) -> "T | None":
        """The entry ``name``, or ``None``."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, sorted by name."""
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

