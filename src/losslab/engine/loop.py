"""The one training loop (`fit`) shared by every command, and the record and status helpers both engines use.

It knows nothing about printing: each epoch becomes a flat record handed to the event consumers.
A non-finite loss stops it at once (status "diverged"); Ctrl-C stops it cleanly ("interrupted").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from losslab import interrupt
from losslab.engine.batches import InMemory
from losslab.engine.events import Consumer, RunInfo, wants_batches
from losslab.errors import ConfigError, describe

# Gradient norms of models up to this many parameters are summed in Python: for tiny models
# that is cheaper than dispatching torch ops, and the loop's overhead must stay near zero.
_SMALL_MODEL = 256

_NO_EVENTS = Consumer()


@dataclass
class FitResult:
    status: str  # "ok", "diverged", "interrupted", "error" (the step raised; `error` says what)
    records: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    elapsed_s: float = 0.0
    diverged_epoch: Optional[int] = None
    stopped_early: bool = False
    error: Optional[str] = None


# history.csv keeps per-layer columns for models with at most this many parameter tensors (it stays readable);
# the records themselves, and so JSON and the diagnosis, have them for every model.
MAX_LAYER_NORMS = 32


def epoch_record(epoch: int, train_loss: float, tracked: Optional[Mapping[str, float]], grad_norm: float,
                 lr: float, layer_norms: Optional[Mapping[str, float]] = None,
                 ratios: Optional[Mapping[str, float]] = None,
                 clipped: Optional[float] = None) -> dict[str, Any]:
    """The start of every epoch record, in the order every output shows it; validation metrics and
    `elapsed_s` follow. `layer_norms` are keyed `grad_norm/<parameter name>` (e.g. `grad_norm/0.weight`),
    `ratios` `update_ratio/<parameter name>` (|Δp| / |p| of the epoch's last step); `clipped` is the
    fraction of the epoch's steps on which gradient clipping changed the gradients (only when clipping is on)."""
    record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
    if tracked:
        record.update(tracked)
    record["grad_norm"] = grad_norm
    if layer_norms:
        record.update(layer_norms)
    if ratios:
        record.update(ratios)
    if clipped is not None:
        record["clipped"] = clipped
    record["lr"] = lr
    return record


def layer_grad_norms(named: Sequence[tuple[str, torch.Tensor]], small: bool) -> tuple[float, dict[str, float]]:
    """The global L2 norm of the gradients (as clip_grad_norm_ computes it) and each parameter tensor's own
    norm, from one pass over the last step's gradients."""
    keyed = [("grad_norm/" + name, p.grad) for name, p in named if p.grad is not None]
    if small:  # tiny models: Python arithmetic beats a torch dispatch per tensor
        norms = [math.hypot(*flat_list(g)) for _, g in keyed]
    else:
        norms = torch.stack([torch.linalg.vector_norm(g) for _, g in keyed]).tolist() if keyed else []
    return math.hypot(*norms), {key: v for (key, _), v in zip(keyed, norms)}


def snapshot(params: Sequence[torch.Tensor], small: bool) -> list[Any]:
    """The parameters' values before a step, to measure the step's size (`update_ratios`)."""
    if small:
        return [flat_list(p) for p in params]
    return [p.detach().clone() for p in params]


def update_ratios(named: Sequence[tuple[str, torch.Tensor]], before: Sequence[Any],
                  small: bool) -> tuple[dict[str, float], list[Any]]:
    """|p_after - p_before| / |p_before| for each parameter tensor: how big the step was for that layer
    (about 1e-3 is the classic healthy figure; far below, the layer barely learns; near 1, it is overwritten).
    Also returns the values after the step (the next full-batch step's `before`)."""
    out = {}
    if small:
        after = [flat_list(p) for _, p in named]
        for (name, _), new, old in zip(named, after, before):
            step, size = math.dist(new, old), math.hypot(*old)
            out["update_ratio/" + name] = step / size if size > 0 else math.inf if step > 0 else 0.0
        return out, after
    after = [p.detach().clone() for _, p in named]
    steps = torch.stack([torch.linalg.vector_norm(new - old) for new, old in zip(after, before)])
    sizes = torch.stack([torch.linalg.vector_norm(old) for old in before])
    for (name, _), step, size in zip(named, steps.tolist(), sizes.tolist()):
        out["update_ratio/" + name] = step / size if size > 0 else math.inf if step > 0 else 0.0
    return out, after


class Clipper:
    """Gradient clipping by value (clip_grad_value_) and/or by global norm (clip_grad_norm_), counting the
    steps on which it changed the gradients."""

    def __init__(self, params: Sequence[torch.Tensor], norm: Optional[float], value: Optional[float]):
        self.params, self.norm, self.value = list(params), norm, value
        self.on = norm is not None or value is not None
        self.steps = self.active = 0

    def __call__(self) -> None:
        active = False
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.value is not None and grads:
            active = bool(torch.stack([g.abs().max() for g in grads]).max() > self.value)
            torch.nn.utils.clip_grad_value_(self.params, self.value)
        if self.norm is not None:
            active = bool(torch.nn.utils.clip_grad_norm_(self.params, self.norm) > self.norm) or active
        self.steps += 1
        self.active += active

    def epoch_fraction(self) -> Optional[float]:
        """The fraction of steps since the last call on which clipping was active (None when clipping is off)."""
        if not self.on:
            return None
        fraction = self.active / self.steps if self.steps else 0.0
        self.steps = self.active = 0
        return fraction


def batch_generator(seed: int) -> torch.Generator:
    """The generator whose draws give a run's mini-batch order: seeded by the run's seed, like its weights."""
    return torch.Generator().manual_seed(seed)


def settle_status(status: str, metrics: Mapping[str, Any]) -> str:
    """A run that finished "ok" but whose final loss is not finite diverged (e.g. on its last step)."""
    if status == "ok" and not math.isfinite(metrics.get("final_loss", math.nan)):
        return "diverged"
    return status


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cuda was asked for but torch.cuda.is_available() is False here")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("--device", "mps was asked for but torch.backends.mps.is_available() is False here")
    return torch.device(name)


def flat_list(t: torch.Tensor) -> list[float]:
    """A small tensor's values as a flat Python list (tolist() without the cost of a reshape dispatch)."""
    values = t.tolist()
    while values and isinstance(values[0], list):
        values = [v for row in values for v in row]
    return values if isinstance(values, list) else [values]


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: Optional[int] = None,
    clip_grad_norm: Optional[float] = None,
    clip_grad_value: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    evaluate: Optional[Callable[[torch.nn.Module], dict[str, float]]] = None,
    track: Optional[Callable[[], dict[str, float]]] = None,
    events: Consumer = _NO_EVENTS,
    run: Optional[RunInfo] = None,
    first_epoch: int = 1,
    on_step: Optional[Callable[[float], bool]] = None,
    schedule: Any = None,
    source: Any = None,
) -> FitResult:
    """Train `model` on (x, y) for `epochs` epochs, full batch unless `batch_size` is smaller than the data.

    `evaluate(model)` runs after each epoch under eval mode and no_grad (validation metrics);
    `track()` returns extra values to record (e.g. every parameter of a small model).
    `events` gets `on_batch_end` and `on_epoch_end` for `run`; run begin and end are the run path's to emit.
    `first_epoch` > 1 continues a resumed run: epochs first_epoch..epochs are trained.
    `on_step(batch_loss)` runs after every optimizer step (e.g. the LR range test's schedule); True stops.
    `schedule` (engine.schedules.LRSchedule) is stepped after each batch and after each epoch's record.
    `source` (engine.batches.InMemory or Streamed) gives the mini-batches; by default the tensors (x, y).
    """
    run = run or RunInfo("fit")
    source = source if source is not None else InMemory(x, y)
    n = len(source)
    full_batch = batch_size is None or batch_size >= n
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    small = sum(p.numel() for p in params) <= _SMALL_MODEL
    needs_closure = isinstance(optimizer, torch.optim.LBFGS)
    clip = Clipper(params, clip_grad_norm, clip_grad_value)
    result = FitResult(status="ok")
    ratios: dict[str, float] = {}
    previous: Optional[list[Any]] = None  # full batch: the values after the last step are the next one's start

    def measured(take_step: Callable[[], Any]) -> Any:
        """Run `take_step` and measure each layer's update for the record."""
        nonlocal ratios, previous
        before = previous if previous is not None else snapshot(params, small)
        out = take_step()
        ratios, after = update_ratios(named, before, small)
        previous = after if full_batch else None
        return out

    def step(xb: torch.Tensor, yb: torch.Tensor, last: bool) -> float:
        """One optimizer step on one batch; returns the batch loss before the step (NaN stops the run).
        On the epoch's `last` step the size of the update is measured for the record."""
        if needs_closure:
            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                if clip.on:
                    clip()
                return loss

            loss = measured(lambda: optimizer.step(closure)) if last else optimizer.step(closure)
            return loss.detach().item()
        # forward, loss, zero_grad, backward, step: the textbook order
        loss = loss_fn(model(xb), yb)
        value = loss.item()
        if not math.isfinite(value):
            return value  # do not step on a non-finite loss
        optimizer.zero_grad()
        loss.backward()
        if clip.on:
            clip()
        if last:
            measured(optimizer.step)
        else:
            optimizer.step()
        return value

    full_x, full_y = source.full() if full_batch else (None, None)  # the one batch of full-batch training
    batch_events = wants_batches(events)
    batches = 1 if full_batch else math.ceil(n / (batch_size or n))
    start = time.perf_counter()
    try:
        for epoch in range(first_epoch, epochs + 1):
            # forward backward update
            model.train()
            stop_now = False
            lr = optimizer.param_groups[0]["lr"]  # the rate of the epoch's first batch (per-batch schedules move it)
            if full_batch:
                train_loss = step(full_x, full_y, last=True)
                if schedule is not None:
                    schedule.after_batch()
                stop_now = on_step is not None and on_step(train_loss)
                interrupt.check()
            else:
                size = batch_size or n
                total, seen = 0.0, 0
                for b, (xb, yb) in enumerate(source.epoch(size, generator)):
                    batch_loss = step(xb, yb, last=(b + 1) * size >= n)
                    if schedule is not None:
                        schedule.after_batch()
                    total += batch_loss * yb.shape[0]
                    seen += yb.shape[0]
                    stop_now = on_step is not None and on_step(batch_loss)
                    if batch_events:
                        events.on_batch_end(run, b + 1, batches, batch_loss)
                    interrupt.check()
                    if not math.isfinite(batch_loss) or stop_now:
                        break
                train_loss = total / seen
            # record
            total_norm, layer_norms = layer_grad_norms(named, small)
            record = epoch_record(epoch, train_loss, track() if track is not None else None, total_norm,
                                  lr, layer_norms, ratios, clip.epoch_fraction())
            ratios = {}
            diverged = not math.isfinite(train_loss)
            # evaluate
            if evaluate is not None and not diverged:
                model.eval()
                with torch.no_grad():
                    record.update(evaluate(model))
            record["elapsed_s"] = time.perf_counter() - start
            result.records.append(record)
            result.epochs_run = epoch
            if schedule is not None and not diverged:
                schedule.after_epoch(record.get("valid_loss", train_loss))
            stop = bool(events.on_epoch_end(run, record)) or stop_now
            # termination conditions
            if diverged:
                result.status = "diverged"
                result.diverged_epoch = epoch
                break
            if stop:
                result.stopped_early = True
                break
    except KeyboardInterrupt:
        result.status = "interrupted"
    except (BrokenPipeError, MemoryError):
        raise  # not this run's fault: the command stops
    except Exception as exc:  # e.g. a user's loss that fails after some epochs: a status, records kept
        result.status = "error"
        result.error = f"training failed at epoch {len(result.records) + first_epoch}: {describe(exc)}"
    result.elapsed_s = time.perf_counter() - start
    model.eval()
    return result
