"""The one training loop (`fit`) shared by every command, and the record and status helpers both engines use.

It knows nothing about printing: each epoch becomes a flat record handed to the event consumers.
A non-finite loss stops it at once (status "diverged"); Ctrl-C stops it cleanly ("interrupted").
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from losslab.engine.batches import InMemory
from losslab.engine.events import Consumer, RunInfo
from losslab.errors import ConfigError

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
    steps: int = 0  # optimizer steps taken
    grad_evals: int = 0  # forward-backward passes (SAM: two per step; LBFGS: as many as its line search asked)


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


def use_threads(threads: Optional[int]) -> None:
    """--threads: the CPU threads torch uses in this process (None leaves torch's own choice)."""
    if threads is not None:
        torch.set_num_threads(threads)


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


@dataclass
class FitOptions:
    """How `fit` trains, besides the model, loss, optimizer, data and epochs. `batch_size` None: full batch;
    `evaluate(model)` runs after each epoch under eval mode and no_grad (validation metrics); `track()` returns
    extra values to record (e.g. every parameter of a small model); `on_step(batch_loss)` runs after every optimizer
    step (e.g. the LR range test's schedule), True stops; `schedule` (engine.schedules.LRSchedule) is stepped after
    each batch and after each epoch's record; `first_epoch` > 1 continues a resumed run."""

    batch_size: Optional[int] = None
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None
    generator: Optional[torch.Generator] = None
    evaluate: Optional[Callable[[torch.nn.Module], dict[str, float]]] = None
    track: Optional[Callable[[], dict[str, float]]] = None
    first_epoch: int = 1
    on_step: Optional[Callable[[float], bool]] = None
    schedule: Any = None
    sharpness: Optional[Callable[[torch.nn.Module], float]] = None  # measured after every `sharpness_every` epochs
    sharpness_every: int = 1
    max_grad_evals: Optional[int] = None  # stop when this many forward-backward passes are spent (a budget)
    stop_at: Optional[tuple[str, str, float]] = None  # stop when a record reaches this target (skeleton.reached)


class SingleSide:
    """The skeleton's model-and-update part for one run: a model, its loss and its optimizer, in the textbook order
    (forward, loss, zero_grad, backward, step) or as the optimizer's protocol asks (`optimizers.Protocol`: a
    closure-driven step, SAM's second pass, backward with create_graph, schedule-free's train/eval modes);
    clipping and the per-layer figures of the epoch's last step (gradients taken before the step: some optimizers
    clear or replace them); the record of each epoch as soon as it ends; the steps and forward-backward passes
    spent."""

    runs = 1

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, source: Any, plan: Any, options: FitOptions):
        self.model, self.loss_fn, self.optimizer, self.options = model, loss_fn, optimizer, options
        self.source, self.plan = source, plan
        self.named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        self.small = sum(p.numel() for p in self.params) <= _SMALL_MODEL
        from losslab.components.optimizers import protocol_of

        self.protocol = protocol_of(type(optimizer))
        self.clip = Clipper(self.params, options.clip_grad_norm, options.clip_grad_value)
        self.ratios: dict[str, float] = {}
        self.previous: Optional[list[Any]] = None  # full batch: the values after the last step are the next start
        self.full = source.full() if plan.full_batch else None  # the one batch of full-batch training
        self.total, self.seen, self.last_loss = 0.0, 0, math.nan
        self.active = True
        self.steps = self.evals = 0
        self.norms: Optional[tuple[float, dict[str, float]]] = None  # the last step's gradient norms

    def modes(self, training: bool) -> None:
        """Schedule-free optimizers keep two points: train() before training steps, eval() before evaluating."""
        if self.protocol.train_eval:
            getattr(self.optimizer, "train" if training else "eval")()

    def rates(self) -> list[float]:
        return [self.optimizer.param_groups[0]["lr"]]

    def batches(self, epoch: int) -> Any:
        if not self.model.training:  # (evaluation switched it off; a no-op module walk per epoch costs otherwise)
            self.model.train()
        self.modes(True)
        self.total, self.seen = 0.0, 0
        if self.full is not None:
            return (self.full,)
        return self.source.epoch(self.plan.size, self.options.generator)

    def _measured(self, take_step: Callable[[], Any]) -> Any:
        """Run `take_step` and measure each layer's update for the record."""
        before = self.previous if self.previous is not None else snapshot(self.params, self.small)
        out = take_step()
        self.ratios, after = update_ratios(self.named, before, self.small)
        self.previous = after if self.full is not None else None
        return out

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], last: bool) -> float:
        xb, yb = batch
        if self.protocol.closure:
            value = self._closure_step(xb, yb, last)
        else:  # forward, loss, zero_grad, backward, step: the textbook order
            loss = self.loss_fn(self.model(xb), yb)
            value = loss.item()
            if math.isfinite(value):  # (no step on a non-finite loss)
                self.optimizer.zero_grad()
                if self.protocol.create_graph:
                    with warnings.catch_warnings():  # (the reference cycle it warns of: grads are set to None after)
                        warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
                        loss.backward(create_graph=True)
                else:
                    loss.backward()
                self.evals += 1
                if self.clip.on:
                    self.clip()
                if last:
                    self.norms = layer_grad_norms(self.named, self.small)
                take = self._two_pass(xb, yb) if self.protocol.two_pass else self.optimizer.step
                if last:
                    self._measured(take)
                else:
                    take()
                self.steps += 1
                if self.protocol.create_graph:  # (the graph of the gradient is not kept past the step)
                    self.optimizer.zero_grad()
        if self.full is None:  # mini-batches: the epoch's loss is their mean over rows
            rows = yb.shape[0]
            self.total += value * rows
            self.seen += rows
        self.last_loss = value
        return value

    def _closure(self, xb: torch.Tensor, yb: torch.Tensor) -> Callable[[], torch.Tensor]:
        """The closure a closure-driven step calls: zero_grad, forward, backward (counted), clipping."""
        def closure() -> torch.Tensor:
            self.optimizer.zero_grad()
            loss = self.loss_fn(self.model(xb), yb)
            loss.backward()
            self.evals += 1
            if self.clip.on:
                self.clip()
            return loss

        return closure

    def _two_pass(self, xb: torch.Tensor, yb: torch.Tensor) -> Callable[[], Any]:
        """SAM's step: the gradient is taken; step(closure) moves to a perturbed point, takes a second one there
        through the closure and updates."""
        closure = self._closure(xb, yb)
        return lambda: self.optimizer.step(closure)

    def _closure_step(self, xb: torch.Tensor, yb: torch.Tensor, last: bool) -> float:
        closure = self._closure(xb, yb)
        loss = self._measured(lambda: self.optimizer.step(closure)) if last else self.optimizer.step(closure)
        self.steps += 1
        if last:
            self.norms = layer_grad_norms(self.named, self.small)
        return loss.detach().item()

    def losses(self, batch_loss: float) -> list[float]:
        return [batch_loss]

    def broken(self, batch_loss: float) -> bool:
        budget = self.options.max_grad_evals
        if budget is not None and self.evals >= budget:  # the budget is spent: this epoch is the run's last
            self.active = False
            return True
        return not math.isfinite(batch_loss)

    def end_epoch(self, epoch: int, rates: list[float], start: float) -> list[tuple[int, dict[str, Any]]]:
        train_loss = self.last_loss if self.full is not None else self.total / self.seen
        total_norm, layer_norms = self.norms if self.norms is not None else layer_grad_norms(self.named, self.small)
        self.norms = None
        track = self.options.track
        record = epoch_record(epoch, train_loss, track() if track is not None else None, total_norm,
                              rates[0], layer_norms, self.ratios, self.clip.epoch_fraction())
        self.ratios = {}
        if self.options.evaluate is not None and math.isfinite(train_loss):
            self.modes(False)
            self.model.eval()
            with torch.no_grad():
                record.update(self.options.evaluate(self.model))
        sharpness = self.options.sharpness
        if sharpness is not None and epoch % self.options.sharpness_every == 0 and math.isfinite(train_loss):
            record["sharpness"] = sharpness(self.model)
        record["elapsed_s"] = time.perf_counter() - start
        return [(0, record)]

    def flush(self) -> list[tuple[int, dict[str, Any]]]:
        return []

    def retire(self, run: int) -> None:
        self.active = False

    def training(self) -> bool:
        return self.active


def fit(model: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer, data: Any, *, epochs: int, options: Optional[FitOptions] = None,
        events: Consumer = _NO_EVENTS, run: Optional[RunInfo] = None) -> FitResult:
    """Train `model` on `data` — tensors (x, y), or a batch source (engine.batches.InMemory or Streamed) — for
    epochs `options.first_epoch`..`epochs` with the epoch skeleton; `events` gets `on_batch_end` and
    `on_epoch_end` for `run` (run begin and end are the run path's)."""
    from losslab.engine.skeleton import Hooks, Plan, Schedules, train

    options = options or FitOptions()
    source = InMemory(*data) if isinstance(data, tuple) else data
    plan = Plan.of_source(source, options.batch_size)
    side = SingleSide(model, loss_fn, optimizer, source, plan, options)
    schedules = Schedules([options.schedule]) if options.schedule is not None else None
    out = train(side, plan, range(options.first_epoch, epochs + 1),
                Hooks(events, [run or RunInfo("fit")], schedules, options.on_step, options.stop_at))
    model.eval()
    side.modes(False)  # (what is measured, saved or plotted next is the optimizer's evaluation point)
    return FitResult(out.status[0], out.records[0], out.epochs_run[0], out.elapsed_s, out.diverged_epoch[0],
                     out.stopped_early[0], out.error, side.steps, side.evals)
