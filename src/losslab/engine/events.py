"""The one event protocol every run emits, whatever the command or engine.

A command emits `on_command_begin` once before its first run and `on_command_end` once after its results are
written (with its status and result document), whatever it is — check-loss and replay included. A run — a single
run, one trial of many, one slice of a stacked batch, a range test — is identified by a `RunInfo` and emits:
`on_run_begin`, `on_batch_end` (progress inside an epoch), `on_epoch_end` (one flat record) and `on_run_end`
(the run's result with its status). A `Consumer` overrides only the hooks it needs; a
`Dispatcher` fans events out to many. Display, result files, early stopping and any future sink are consumers.

A record is a flat dict: `epoch`, `train_loss`, tracked parameter values, `grad_norm`, `lr`, optional `valid_*`
metrics, `elapsed_s`.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

# the running command's name, set by its begin event: every RunInfo the engines build carries it
_COMMAND: ContextVar[str] = ContextVar("losslab_command", default="run")


def current_command() -> str:
    """The name of the command whose begin event came last ("run" outside any command)."""
    return _COMMAND.get()


@dataclass(frozen=True)
class RunInfo:
    """Who is running: the command, the run's key (what tells it apart from the others of the command) and the
    shape of its training."""

    command: str
    group: str = "run"  # the entry this run belongs to: an optimizer, a loss, a learning rate
    seed: int = 0
    key: tuple[tuple[str, Any], ...] = ()  # e.g. (("optimizer", "adam"), ("lr", 0.01), ("seed", 0))
    index: int = 0  # position among the command's runs
    total: int = 1
    epochs: int = 0
    first_epoch: int = 1
    samples: int = 0
    batch_size: int = 0
    stacked_with: int = 1  # how many runs train together in one batched computation with this one

    @property
    def label(self) -> str:
        """A readable, file-name-safe name such as `adam-lr0.01-seed0`."""
        parts = []
        for name, value in self.key:
            text = f"{value:g}" if isinstance(value, float) else str(value)
            parts.append(text if name in ("problem", "optimizer", "loss", "group") else f"{name}{text}")
        return "-".join(parts) or "run"


class Consumer:
    """Override only the hooks you need; the engines skip `on_batch_end` for consumers that do not."""

    def on_command_begin(self, command: str) -> None:
        """Once, before the command's first run (or check)."""

    def on_command_end(self, command: str, status: str, document: Mapping[str, Any]) -> None:
        """Once, after the command's result files and JSON are written; `document` is its --json document."""

    def on_run_begin(self, run: RunInfo) -> None:
        """Before the run's first epoch."""

    def on_batch_end(self, run: RunInfo, epoch: int, batch: int, batches: int, loss: float) -> None:
        """After each mini-batch step: batch `batch` of `batches` of epoch `epoch`, and its loss."""

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> Optional[bool]:
        """After every epoch; return True to stop this run early."""
        return None

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        """Once after the run, whatever its status (ok, diverged, error, interrupted, not run)."""


def wants_batches(consumer: Consumer) -> bool:
    """Whether batch events reach anyone: engines skip building them otherwise."""
    if isinstance(consumer, Dispatcher):
        return bool(consumer.batch_consumers)
    return type(consumer).on_batch_end is not Consumer.on_batch_end


class Dispatcher(Consumer):
    """Delivers every event to each consumer in order; a run stops early when any consumer asks."""

    def __init__(self, consumers: Sequence[Consumer] = ()):
        self.consumers = list(consumers)
        self.batch_consumers = [c for c in self.consumers if wants_batches(c)]

    def preceded_by(self, *first: Consumer) -> "Dispatcher":
        """A dispatcher that feeds `first` (e.g. one run's early stopping, which marks the best record) before
        these consumers."""
        return Dispatcher([*first, *self.consumers])

    def on_command_begin(self, command: str) -> None:
        _COMMAND.set(command)  # the one place a command's name comes from
        for c in self.consumers:
            c.on_command_begin(command)

    def on_command_end(self, command: str, status: str, document: Mapping[str, Any]) -> None:
        for c in self.consumers:
            c.on_command_end(command, status, document)

    def on_run_begin(self, run: RunInfo) -> None:
        for c in self.consumers:
            c.on_run_begin(run)

    def on_batch_end(self, run: RunInfo, epoch: int, batch: int, batches: int, loss: float) -> None:
        for c in self.batch_consumers:
            c.on_batch_end(run, epoch, batch, batches, loss)

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> bool:
        stop = False
        for c in self.consumers:
            stop = bool(c.on_epoch_end(run, record)) or stop
        return stop

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        for c in self.consumers:
            c.on_run_end(run, result)


class BestEpoch(Consumer):
    """Marks each record's `valid_loss_best`, keeps a copy of the best weights, and stops the run after
    `patience` epochs without improvement (when patience is set)."""

    def __init__(self, model: Any, patience: Optional[int] = None, monitor: str = "valid_loss"):
        self.model = model
        self.patience = patience
        self.monitor = monitor
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.best_state: Optional[dict[str, Any]] = None
        self.stale = 0

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> Optional[bool]:
        value = record.get(self.monitor)
        improved = value is not None and value == value and (self.best is None or value < self.best)
        record[f"{self.monitor}_best"] = improved
        if improved:
            self.best, self.best_epoch, self.stale = value, record["epoch"], 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience
