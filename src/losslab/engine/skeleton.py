"""The one epoch skeleton every engine trains with.

`train` decides the epochs and the batches of each epoch (`Plan`), steps the learning-rate schedules after
every batch and after every epoch's record, checks for Ctrl-C after every step, sends batch and epoch events,
settles divergence and early stopping per run, and turns an exception into a failed run. What it trains is a
`Side`: the model-and-update part, which runs the batches of an epoch through one parameter set
(`loop.SingleSide`: a model and its torch.optim optimizer) or K parameter sets at once (`stacked.StackedSide`),
and builds each epoch's record. A side may hand records over later than the epoch they describe (the stacked
side reads its figures back in chunks); the skeleton delivers them in order whenever they come.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence

from losslab import interrupt
from losslab.engine.events import Consumer, RunInfo, wants_batches
from losslab.errors import USER_ERRORS, describe
from losslab.profiles import meets
from losslab.stack import on_fresh_stack


@dataclass(frozen=True)
class Plan:
    """How an epoch is cut into batches: full batch when there is no batch size or it covers the data."""

    n: int
    batch_size: Optional[int] = None
    drawn: bool = False  # batches are drawn at random (a text's windows): never the whole data as one batch

    @property
    def full_batch(self) -> bool:
        return not self.drawn and (self.batch_size is None or self.batch_size >= self.n)

    @property
    def size(self) -> int:
        """The rows of a (full) batch."""
        return self.n if self.full_batch or self.batch_size is None else self.batch_size

    @property
    def batches(self) -> int:
        """Optimizer steps per epoch."""
        return 1 if self.full_batch else -(-self.n // self.size)

    @staticmethod
    def of(problem: Any) -> "Plan":
        return Plan.of_source(problem.source, problem.train_cfg.batch_size)

    @staticmethod
    def of_source(source: Any, batch_size: Optional[int]) -> "Plan":
        return Plan(len(source), batch_size, drawn=hasattr(source, "draw"))


class Side(Protocol):
    """The model-and-update part the skeleton trains."""

    runs: int  # parameter sets trained together (1 for a single run)

    def rates(self) -> list[float]:
        """Each run's learning rate now (a record's `lr`: the rate of the epoch's first batch)."""

    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of `epoch`, in the run's order (and the model in training mode)."""

    def step(self, batch: Any, last: bool) -> Any:
        """Forward, backward, clipping and update on one batch; returns the batch's losses before the step.
        On the epoch's `last` batch the step's size is measured for the record."""

    def losses(self, batch_losses: Any) -> list[float]:
        """Each run's loss of a batch, as Python floats (for batch events and `on_step`)."""

    def broken(self, batch_losses: Any) -> bool:
        """Whether the rest of the epoch's batches must be skipped (a single run's loss is not finite)."""

    def end_epoch(self, epoch: int, rates: list[float], start: float) -> list[tuple[int, dict[str, Any]]]:
        """The epoch is trained: (run, record) pairs ready now, for this epoch or earlier ones."""

    def flush(self) -> list[tuple[int, dict[str, Any]]]:
        """The records not handed over yet (after the last epoch, or after Ctrl-C)."""

    def retire(self, run: int) -> None:
        """Run `run` diverged or was stopped: it trains no further."""

    def training(self) -> bool:
        """Whether any run still trains."""


class Schedules:
    """The runs' LR schedules (`engine.schedules.LRSchedule`, torch's own schedulers), and `apply`, which passes
    the rates they set on to the optimizers that train (the stacked side's batched optimizers)."""

    def __init__(self, schedules: Sequence[Any], apply: Optional[Callable[[], None]] = None):
        self.schedules, self.apply = list(schedules), apply

    def after_batch(self) -> None:
        for schedule in self.schedules:
            schedule.after_batch()
        if self.apply is not None:
            self.apply()

    def after_epoch(self, metrics: Sequence[tuple[int, float]]) -> None:
        """`metrics`: (run, the loss its epoch ended with) for the runs still training."""
        for run, metric in metrics:
            self.schedules[run].after_epoch(metric)
        if self.apply is not None and metrics:
            self.apply()


@dataclass
class Outcome:
    """What training gave each run: its records and how it ended."""

    records: list[list[dict[str, Any]]]
    status: list[str]
    diverged_epoch: list[Optional[int]]
    stopped_early: list[bool]
    elapsed_s: float = 0.0
    interrupted: bool = False
    error: Optional[str] = None  # the exception that failed every run of the side
    epochs_run: list[int] = field(default_factory=list)

    @staticmethod
    def of(runs: int) -> "Outcome":
        return Outcome([[] for _ in range(runs)], ["ok"] * runs, [None] * runs, [False] * runs,
                       epochs_run=[0] * runs)


@dataclass
class Hooks:
    """What a caller adds to the skeleton: the runs' events, schedules and a per-step hook."""

    events: Consumer = field(default_factory=Consumer)
    infos: Sequence[RunInfo] = ()  # one per run of the side
    schedules: Optional[Schedules] = None
    on_step: Optional[Callable[[float], bool]] = None  # after each step with a single run's loss; True stops it
    stop_at: Optional[tuple[str, str, float]] = None  # (record key, "<=" or ">=", value): a run stops on reaching it


def reached(record: dict[str, Any], stop_at: Optional[tuple[str, str, float]]) -> bool:
    """Whether `record` meets the target `stop_at` (a benchmark's: a run stops counting there)."""
    return stop_at is not None and meets(record, *stop_at)


def train(side: Side, plan: Plan, epochs: range, hooks: Hooks) -> Outcome:
    """Train `side` for `epochs` (a range of epoch numbers: a resumed run starts after 1)."""
    return on_fresh_stack(_train, side, plan, epochs, hooks)  # a loop whose calls cross no chunk end


def _train(side: Side, plan: Plan, epochs: range, hooks: Hooks) -> Outcome:
    out = Outcome.of(side.runs)
    events, infos, schedules, on_step = hooks.events, hooks.infos, hooks.schedules, hooks.on_step
    # batch events are progress inside an epoch: none when an epoch is one batch
    batch_events = bool(infos) and plan.batches > 1 and wants_batches(events)
    asked_stop = False

    def deliver(ready: list[tuple[int, dict[str, Any]]]) -> None:
        """Records to the runs, then to the consumers (a Ctrl-C in a consumer leaves no run a record short);
        divergence, early stopping and the per-epoch schedules."""
        metrics = []
        for run, record in ready:
            out.records[run].append(record)
            out.epochs_run[run] = record["epoch"]
            loss = record["train_loss"]
            if not math.isfinite(loss):
                if out.diverged_epoch[run] is None:
                    out.status[run], out.diverged_epoch[run] = "diverged", record["epoch"]
                    side.retire(run)
            elif schedules is not None:
                metrics.append((run, record.get("valid_loss", loss)))
        if schedules is not None:
            schedules.after_epoch(metrics)
        for run, record in ready:
            stop = bool(events.on_epoch_end(infos[run], record)) if infos else False
            stop = reached(record, hooks.stop_at) or stop
            if (stop or asked_stop) and out.status[run] == "ok" and not out.stopped_early[run]:
                out.stopped_early[run] = True
                side.retire(run)

    batches = plan.batches
    start = time.perf_counter()
    try:
        for epoch in epochs:
            rates = side.rates()
            for b, batch in enumerate(side.batches(epoch)):
                batch_losses = side.step(batch, b + 1 == batches)
                if schedules is not None:
                    schedules.after_batch()
                if on_step is not None:
                    asked_stop = on_step(side.losses(batch_losses)[0])
                if batch_events:
                    for info, loss in zip(infos, side.losses(batch_losses)):
                        events.on_batch_end(info, epoch, b + 1, batches, loss)
                interrupt.check()
                if asked_stop or side.broken(batch_losses):
                    break
            deliver(side.end_epoch(epoch, rates, start))
            if not side.training():
                break
    except KeyboardInterrupt:
        out.interrupted = True
    except (BrokenPipeError, MemoryError):
        raise  # not this run's fault: the command stops
    except USER_ERRORS as exc:  # e.g. a user's loss that fails after some epochs: a status, records kept
        out.error = f"training failed at epoch {len(out.records[0]) + epochs.start}: {describe(exc)}"
        out.status = ["error"] * side.runs
    try:
        deliver(side.flush())
    except KeyboardInterrupt:
        out.interrupted = True
    if out.interrupted:
        out.status = ["interrupted" if s == "ok" else s for s in out.status]
    out.elapsed_s = time.perf_counter() - start
    return out
