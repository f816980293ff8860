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

from losslab.engine import interrupt
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


# Per-layer gradient norms are recorded for models with at most this many parameter tensors (history.csv stays
# readable); the global norm always is.
MAX_LAYER_NORMS = 32


def epoch_record(epoch: int, train_loss: float, tracked: Optional[Mapping[str, float]], grad_norm: float,
                 lr: float, layer_norms: Optional[Mapping[str, float]] = None) -> dict[str, Any]:
    """The start of every epoch record, in the order every output shows it; validation metrics and
    `elapsed_s` follow. `layer_norms` are keyed `grad_norm/<parameter name>` (e.g. `grad_norm/0.weight`)."""
    record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
    if tracked:
        record.update(tracked)
    record["grad_norm"] = grad_norm
    if layer_norms:
        record.update(layer_norms)
    record["lr"] = lr
    return record


def layer_grad_norms(named: Sequence[tuple[str, torch.Tensor]], small: bool) -> tuple[float, dict[str, float]]:
    """The global L2 norm of the gradients (as clip_grad_norm_ computes it) and, for models with at most
    MAX_LAYER_NORMS parameter tensors, each tensor's own norm — from one pass over the last step's gradients."""
    keyed = [("grad_norm/" + name, p.grad) for name, p in named if p.grad is not None]
    if small:  # tiny models: Python arithmetic beats a torch dispatch per tensor
        squares = [sum(v * v for v in flat_list(g)) for _, g in keyed]
    else:
        squares = torch.stack([torch.linalg.vector_norm(g) for _, g in keyed]).pow(2).tolist() if keyed else []
    total = math.sqrt(sum(squares))
    if len(named) > MAX_LAYER_NORMS:
        return total, {}
    return total, {key: math.sqrt(v) for (key, _), v in zip(keyed, squares)}


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
    generator: Optional[torch.Generator] = None,
    evaluate: Optional[Callable[[torch.nn.Module], dict[str, float]]] = None,
    track: Optional[Callable[[], dict[str, float]]] = None,
    events: Consumer = _NO_EVENTS,
    run: Optional[RunInfo] = None,
    first_epoch: int = 1,
    on_step: Optional[Callable[[float], bool]] = None,
    schedule: Any = None,
) -> FitResult:
    """Train `model` on (x, y) for `epochs` epochs, full batch unless `batch_size` is smaller than the data.

    `evaluate(model)` runs after each epoch under eval mode and no_grad (validation metrics);
    `track()` returns extra values to record (e.g. every parameter of a small model).
    `events` gets `on_batch_end` and `on_epoch_end` for `run`; run begin and end are the run path's to emit.
    `first_epoch` > 1 continues a resumed run: epochs first_epoch..epochs are trained.
    `on_step(batch_loss)` runs after every optimizer step (e.g. the LR range test's schedule); True stops.
    `schedule` (engine.schedules.LRSchedule) is stepped after each batch and after each epoch's record.
    """
    run = run or RunInfo("fit")
    n = x.shape[0]
    full_batch = batch_size is None or batch_size >= n
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    small = sum(p.numel() for p in params) <= _SMALL_MODEL
    needs_closure = isinstance(optimizer, torch.optim.LBFGS)
    result = FitResult(status="ok")

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        """One optimizer step on one batch; returns the batch loss before the step (NaN stops the run)."""
        if needs_closure:
            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                if clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
                return loss

            return optimizer.step(closure).detach().item()
        # forward, loss, zero_grad, backward, step: the textbook order
        loss = loss_fn(model(xb), yb)
        value = loss.item()
        if not math.isfinite(value):
            return value  # do not step on a non-finite loss
        optimizer.zero_grad()
        loss.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
        optimizer.step()
        return value

    batch_events = wants_batches(events)
    batches = 1 if full_batch else math.ceil(n / batch_size)
    start = time.perf_counter()
    try:
        for epoch in range(first_epoch, epochs + 1):
            # forward backward update
            model.train()
            stop_now = False
            if full_batch:
                train_loss = step(x, y)
                if schedule is not None:
                    schedule.after_batch()
                stop_now = on_step is not None and on_step(train_loss)
                interrupt.check()
            else:
                perm = torch.randperm(n, generator=generator).to(x.device)
                total, seen = 0.0, 0
                for i in range(0, n, batch_size):
                    idx = perm[i:i + batch_size]
                    batch_loss = step(x[idx], y[idx])
                    if schedule is not None:
                        schedule.after_batch()
                    total += batch_loss * idx.shape[0]
                    seen += idx.shape[0]
                    stop_now = on_step is not None and on_step(batch_loss)
                    if batch_events:
                        events.on_batch_end(run, i // batch_size + 1, batches, batch_loss)
                    interrupt.check()
                    if not math.isfinite(batch_loss) or stop_now:
                        break
                train_loss = total / seen
            # record
            total_norm, layer_norms = layer_grad_norms(named, small)
            record = epoch_record(epoch, train_loss, track() if track is not None else None, total_norm,
                                  optimizer.param_groups[0]["lr"], layer_norms)
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
