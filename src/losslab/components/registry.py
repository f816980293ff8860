"""Name -> factory registries with one-line descriptions; lookups list the valid choices on a miss.

Registries hold no torch objects: factories import torch when called, so the CLI can list
choices (and `--help` can show them) without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from losslab.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[F]):
    name: str
    description: str
    factory: F
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[F]):
    """An ordered mapping of names to factories for one kind of component."""

    def __init__(self, kind: str, option: str):
        self.kind = kind
        self.option = option
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str, description: str, **meta: Any) -> Callable[[F], F]:
        def decorator(factory: F) -> F:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, description, factory, dict(meta))
            return factory

        return decorator

    def lookup(self, name: str) -> Entry[F]:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                self.option, f"unknown {self.kind} {name!r}; choose from: {', '.join(self._entries)}"
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry[F]]:
        return iter(self._entries.values())

    def help(self) -> str:
        """Choices with descriptions, for CLI help text."""
        return "; ".join(f"{e.name}: {e.description}" for e in self)
