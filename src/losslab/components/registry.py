"""Name -> factory registries with one-line descriptions; lookups list the valid choices on a miss.

Registries hold no torch objects: factories import torch when called, so the CLI can list
choices (and `--help` can show them) without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from losslab.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def fold(name: str) -> str:
    """A name as choices are compared: case and `_`/`-` ignored."""
    return name.strip().lower().replace("_", "-")


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean adam?)' for a close misspelling of one of `choices`, else ''."""
    import difflib

    close = difflib.get_close_matches(fold(name), [fold(c) for c in choices], n=2, cutoff=0.6)
    by_fold = {fold(c): c for c in choices}
    return f" (did you mean {' or '.join(by_fold[c] for c in close)}?)" if close else ""


def choice(option: str, value: str, choices: Any, kind: str = "value") -> str:
    """`value` as one of a fixed tuple of choices, forgiving case; or a one-line error naming `option`."""
    folded = {fold(c): c for c in choices}
    if fold(value) in folded:
        return str(folded[fold(value)])
    raise ConfigError(option, f"unknown {kind} {value!r}{did_you_mean(value, list(choices))}; choose from: "
                      f"{', '.join(choices)}")


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

    def canonical(self, name: str) -> str:
        """The registered spelling of `name`: as given, or matched ignoring case and `_`/`-` (`Adam`, `SMOOTH_L1`);
        otherwise a one-line error with the choices and the closest ones ("did you mean ...")."""
        if name in self._entries:
            return name
        folded = {fold(key): key for key in self._entries}
        if fold(name) in folded:
            return folded[fold(name)]
        head, dot, tail = name.rpartition(".")
        if dot and head and tail.isidentifier() and ":" not in name:  # `mymodels.TinyCNN`: the colon form was meant
            raise ConfigError(self.option, f"unknown {self.kind} {name!r}; did you mean {head}:{tail}? (an import "
                              f"path names its module, then its object after a colon)")
        raise ConfigError(self.option, f"unknown {self.kind} {name!r}{did_you_mean(name, list(self._entries))}; "
                          f"choose from: {', '.join(self._entries)}")

    def lookup(self, name: str) -> Entry[F]:
        return self._entries[self.canonical(name)]

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry[F]]:
        return iter(self._entries.values())

    def help(self) -> str:
        """Choices with descriptions, for CLI help text."""
        return "; ".join(f"{e.name}: {e.description}" for e in self)
