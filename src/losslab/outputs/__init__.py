"""Consumers of training events and results: live display, reports, JSON/CSV files, plots.

Every command builds its event dispatcher with `dispatcher(ctx, own)`: the command's own display first, then
one instance of each consumer registered in `CONSUMERS` whose factory accepts this run (a factory returns None
to stay out, e.g. a file sink when its option is unset). A new sink is one `Consumer` class and one
`CONSUMERS.register(...)` line, and every command then feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from losslab.components.registry import Registry
from losslab.engine.events import Consumer, Dispatcher


@dataclass(frozen=True)
class OutputContext:
    """What a consumer factory may look at: the command, its resolved config and the output options."""

    command: str
    config: Any
    json_out: bool = False
    quiet: bool = False
    out: Optional[str] = None


CONSUMERS: Registry[Callable[[OutputContext], Optional[Consumer]]] = Registry("output consumer", "")


def dispatcher(ctx: OutputContext, own: Sequence[Consumer] = ()) -> Dispatcher:
    """The command's own consumers followed by every registered one that wants this run."""
    extra = [c for c in (entry.factory(ctx) for entry in CONSUMERS) if c is not None]
    return Dispatcher([*own, *extra])
