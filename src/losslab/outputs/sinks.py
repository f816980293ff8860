"""The registry of extra event consumers (`CONSUMERS`), what their factories see (`OutputContext`), and the
dispatcher every command builds (`dispatcher`). A leaf module: consumers register here without importing the
`outputs` package that re-exports it."""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from losslab.components.registry import Registry
from losslab.engine.events import Consumer, Dispatcher


@dataclass(frozen=True)
class OutputContext:
    """What a consumer factory may look at: the command, its resolved config, the output options (`out`: the --out
    folder, `tensorboard`: the --tensorboard folder), its task ("regression", "classification"; None for a
    command that trains nothing) and whether it makes many runs (`commands.common.context` fills them in)."""

    command: str
    config: Any
    json_out: bool = False
    quiet: bool = False
    out: Optional[str] = None
    tensorboard: Optional[str] = None
    task: Optional[str] = None
    many: bool = False


# factory(ctx) -> a consumer, or None when it has nothing to do for this command; `files=` (meta): what it writes
# into --out
CONSUMERS: Registry[Callable[[OutputContext], Optional[Consumer]]] = Registry("output consumer", "")


def consumer_files() -> set[str]:
    """Every file a registered consumer may write into --out."""
    return {name for entry in CONSUMERS for name in entry.meta.get("files", ())}


def dispatcher(ctx: OutputContext, own: Sequence[Consumer] = ()) -> Dispatcher:
    """The command's own consumers followed by every registered one that wants this run. Built once per command,
    right before its work starts: it announces the command (`on_command_begin`) to every consumer; `finish`
    (commands.common) ends it."""
    from losslab.config import check_out_dir

    made = [(entry, entry.factory(ctx)) for entry in CONSUMERS]
    extra = [c for _, c in made if c is not None]
    # the files a consumer writes into --out (its registration's `files`), checked before any work
    check_out_dir(ctx.out, tuple(name for entry, c in made if c is not None for name in entry.meta.get("files", ())))
    events = Dispatcher([*own, *extra])
    events.on_command_begin(ctx.command)
    return events
