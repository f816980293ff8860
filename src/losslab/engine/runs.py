"""The one run path: a `RunSpec` (optimizer, loss, seed and any training setting it overrides) goes to `execute`,
which builds the model and optimizer, emits the run's events, trains with `fit`, takes the final metrics and
settles the status. Single runs, sequential trials and the range test all go through it; the stacked engine builds the
same `RunResult`s with the same record and status helpers."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import torch

from losslab import interrupt
from losslab.components.losses import is_import_path
from losslab.components.optimizers import build_optimizer
from losslab.config import LossConfig, OptimConfig
from losslab.engine.diagnosis import Context, Finding, diagnose
from losslab.engine.events import Consumer, RunInfo, current_command
from losslab.engine.loop import FitOptions, FitResult, SingleSide, batch_generator, fit, settle_status
from losslab.engine.problems import Problem
from losslab.engine.schedules import build_schedule
from losslab.engine.skeleton import Plan
from losslab.errors import USER_ERRORS
from losslab.objects import shown

_NO_EVENTS = Consumer()


@dataclass(frozen=True)
class RunSpec:
    """One run: what it is compared under (`group`), its optimizer and loss, the seed of its initial weights
    and batch order, and any other field of the run's config it sets otherwise than the problem (`changes`: dotted
    paths and values, e.g. (("train.batch_size", 32),), (("model.hidden", 64),), (("data.data_seed", 3),);
    `Problem.for_run` applies them). `loss` None trains with the problem's own loss."""

    group: str
    optim: OptimConfig
    seed: int
    loss: Optional[LossConfig] = None
    changes: tuple[tuple[str, Any], ...] = ()
    resume: Optional["Paused"] = field(default=None, compare=False, repr=False)  # continue a run a rung paused

    def resumed(self, paused: Optional["Paused"]) -> "RunSpec":
        """This run, to continue from `paused` (None: from its start)."""
        return replace(self, resume=paused)

    def key(self, loss_name: Optional[str] = None) -> tuple[tuple[str, Any], ...]:
        loss = self.loss.name if self.loss is not None else loss_name
        parts: list[tuple[str, Any]] = [("optimizer", self.optim.name)]
        if self.loss is not None and loss is not None:
            parts.append(("loss", loss))
        return (*parts, ("lr", float(self.optim.lr or 0.0)), *self.changed().items(), ("seed", self.seed))

    def changed(self) -> dict[str, Any]:
        """Its changes by field name (`batch_size`), as its key, JSON row and history.csv row name them."""
        return {path.rsplit(".", 1)[-1]: value for path, value in self.changes}


@dataclass
class RunResult:
    spec: RunSpec
    status: str  # ok, diverged, error, interrupted, not run
    records: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs_run: int = 0
    elapsed_s: float = 0.0  # for stacked runs, this run's share of the batch's time
    error: Optional[str] = None
    stacked_with: int = 1  # how many runs were trained together with this one in one batched computation
    diverged_epoch: Optional[int] = None
    stopped_early: bool = False
    diagnosis: list[Finding] = field(default_factory=list)  # what went wrong, in words (engine.diagnosis)
    steps: Optional[dict[str, list[float]]] = None  # per-step series of a run that has them (the range test)
    node: Optional[str] = None  # the Ray node it trained on (--executor ray)
    paused: Optional["Paused"] = None  # stopped at a halving rung's end: the state to continue from
    optimizer_steps: int = 0  # optimizer steps taken
    grad_evals: int = 0  # forward-backward passes spent (SAM: two per step; a line search: as many as it asked)

    @property
    def score(self) -> float:
        """Final loss; +inf for anything that did not finish cleanly, so failures rank last, never drop out."""
        loss = self.metrics.get("final_loss")
        if self.status != "ok" or loss is None or not math.isfinite(loss):
            return math.inf
        return float(loss)


def run_info(problem: Problem, spec: RunSpec, command: Optional[str] = None, *, index: int = 0, total: int = 1,
             epochs: Optional[int] = None, first_epoch: int = 1, stacked_with: int = 1) -> RunInfo:
    """Who the run is; `command` defaults to the running command's (its begin event's)."""
    problem = problem.for_run(spec)
    return RunInfo(command=command or current_command(), group=spec.group, seed=spec.seed,
                   key=spec.key(problem.loss_cfg.name), index=index, total=total,
                   epochs=epochs or problem.until or problem.train_cfg.epochs or 0, first_epoch=first_epoch,
                   samples=problem.n,
                   batch_size=Plan.of(problem).size, stacked_with=stacked_with)


def diagnose_run(problem: Problem, result: RunResult, stable_lr: Optional[float] = None) -> list[Finding]:
    """The diagnosis of one finished run, with what the problem knows: the least-squares optimum where it is
    the optimum of the run's loss (MSE, no weight decay), early stopping, clipping."""
    loss = (result.spec.loss or problem.loss_cfg).name
    optimum: Any = getattr(problem, "optimum", None)
    exact = (optimum is not None and loss == "mse" and not result.spec.optim.weight_decay
             and getattr(problem, "user_model", None) is None)  # (the optimum of the linear model)
    train = problem.train_cfg
    clip = " and ".join(f"--{name.replace('_', '-')} {value:g}" for name, value in
                        (("clip_grad_norm", train.clip_grad_norm), ("clip_grad_value", train.clip_grad_value))
                        if value is not None) or None
    context = Context(status=result.status, diverged_epoch=result.diverged_epoch, task=problem.task,
                      lr=result.spec.optim.lr, stable_lr=stable_lr,
                      optimum_loss=optimum["loss"] if exact else None,
                      optimum_params=optimum["params"] if exact else None,
                      params=result.metrics.get("params") if exact else None,
                      patience=getattr(problem.cfg, "patience", None), clip_option=clip,
                      ill_conditioned=getattr(problem, "ill_conditioned", None),
                      user_model=problem.user_model, optim=result.spec.optim.name)
    return diagnose(result.records, context)


@dataclass
class Start:
    """Where a run starts when the caller does not let `execute` build it: a model (a checkpoint's, or initial
    weights shared with other code), its optimizer, the batch-order generator and the first epoch to train."""

    model: torch.nn.Module
    optimizer: Any = None
    generator: Optional[torch.Generator] = None
    first_epoch: int = 1
    paused: Optional["Paused"] = None  # a paused run's records and the states it goes on from


@dataclass
class Paused:
    """A run stopped after `epoch` (a halving rung's end), to continue later — in this process or another — as if
    it had never stopped: its records so far and the states of its model, optimizer, schedule, batch-order
    generator, sharpness tracker and of the global RNG (dropout draws from it)."""

    epoch: int
    records: list[dict[str, Any]]
    elapsed_s: float
    state: dict[str, Any]
    steps: int = 0
    grad_evals: int = 0

    @staticmethod
    def of(result: "RunResult", model: torch.nn.Module, optimizer: Any, schedule: Any, options: FitOptions) -> "Paused":
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict() if schedule is not None else None,
                 "generator": options.generator.get_state() if options.generator is not None else None,
                 "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                 "sharpness": getattr(options.sharpness, "vector", None)}
        return Paused(result.epochs_run, list(result.records), result.elapsed_s, state, result.optimizer_steps,
                      result.grad_evals)

    def start(self, model: torch.nn.Module, spec: "RunSpec") -> Start:
        """Where the run goes on: its model (built from its seed) and a new optimizer given their saved states."""
        model.load_state_dict(self.state["model"])
        optimizer = build_optimizer(model, spec.optim)
        optimizer.load_state_dict(self.state["optimizer"])
        generator = batch_generator(spec.seed)
        if self.state["generator"] is not None:
            generator.set_state(self.state["generator"])
        return Start(model, optimizer, generator, self.epoch + 1, self)

    def restore(self, schedule: Any, options: FitOptions) -> None:
        """The schedule's, sharpness tracker's and global RNG's states, just before training goes on."""
        if schedule is not None:  # (building it set the rates anew)
            if self.state.get("schedule") is None:  # a checkpoint's run: its schedule stepped to where it stood
                schedule.replay(self.records)
            else:
                schedule.load_state_dict(self.state["schedule"])
            schedule.optimizer.load_state_dict(self.state["optimizer"])
        if options.sharpness is not None and self.state.get("sharpness") is not None:
            options.sharpness.vector = self.state["sharpness"]  # type: ignore[attr-defined]
        torch.set_rng_state(self.state["rng"])
        if self.state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(self.state["cuda_rng"])


@dataclass
class Stepped:
    """A run driven step by step (the LR range test): `on_step(loss)` after each step sets the next rate and says
    when to stop; `steps` are its per-step series, kept on the result. No schedule, final metrics or diagnosis."""

    on_step: Callable[[float], bool]
    steps: dict[str, list[float]]


def conclude(problem: Problem, result: RunResult, model: torch.nn.Module, loss_fn: Any, measure: bool) -> None:
    """The end of every run, single or stacked: its final metrics (when `measure`), the status they settle
    (a non-finite final loss is a divergence) and the diagnosis."""
    if measure:
        result.metrics = problem.final_metrics(model, loss_fn)
        result.status = settle_status(result.status, result.metrics)
        if result.status == "diverged" and result.diverged_epoch is None:
            result.diverged_epoch = result.epochs_run
    result.diagnosis = diagnose_run(problem, result)


def end_run(events: Consumer, info: RunInfo, result: RunResult) -> bool:
    """The run's end event; False when Ctrl-C arrived while a consumer handled it (the run is then interrupted)."""
    try:
        events.on_run_end(info, result)
    except KeyboardInterrupt:  # Ctrl-C while a display closes still ends the run cleanly
        result.status = "interrupted"
        return False
    return True


def check_optimizer(problem: Problem, optim: OptimConfig) -> None:
    """An optimizer losslab does not register, tried on a copy of the model for one step on a real batch before
    anything trains: a constructor that raises, an argument the class takes through **kwargs but ignores, a step()
    that fails (e.g. one that needs a closure and was given none) — each one line naming --optim or --optim-arg.
    Checked once per problem and settings."""
    from losslab.components.optimizers import kind, registered
    from losslab.errors import ConfigError, describe

    checked = problem.base.__dict__.setdefault("_optimizers_checked", set())
    if registered(optim.name) or repr(optim) in checked:
        return
    k = kind(optim.name)
    state = torch.get_rng_state()
    try:
        model = problem.new_model(0)
        optimizer = build_optimizer(model, optim.for_task(problem.task))
        known = {key for group in optimizer.param_groups for key in group} | set(getattr(optimizer, "defaults", {}))
        signature = k.signature()
        named = set(signature.parameters) if signature is not None else set()
        ignored = [key for key, _ in optim.args if key not in known | named | {"rest"}]
        if ignored and isinstance(getattr(optimizer, "defaults", None), dict):
            raise ConfigError("--optim-arg", f"{k.label} accepts {ignored[0]}= through **kwargs but does not use "
                              f"it (not among its settings: {', '.join(sorted(optimizer.defaults))})")
        plan = Plan.of(problem)
        source = problem.source
        batch = source.full() if plan.full_batch else next(iter(source.epoch(plan.size, batch_generator(0))))
        side = SingleSide(model, problem.loss_for(None), optimizer, source, plan, FitOptions())
        side.modes(True)
        side.step(batch, True)
    except ConfigError:
        raise
    except USER_ERRORS as exc:
        hint = (" (losslab passes a closure to a step(closure) whose closure has no default, as LBFGS's, and to "
                "SAM-style classes with first_step/second_step)" if "closure" in str(exc).lower() else "")
        raise ConfigError("--optim", f"{k.label}: one step on a real batch fails before training: "
                          f"{describe(exc)}{hint}") from None
    finally:
        torch.set_rng_state(state)
    checked.add(repr(optim))


def execute(problem: Problem, spec: RunSpec, events: Consumer = _NO_EVENTS, *, info: Optional[RunInfo] = None,
            start: Optional[Start] = None, single: bool = False, stepped: Optional[Stepped] = None,
            after_fit: Optional[Callable[[FitResult], None]] = None) -> RunResult:
    """Build (unless `start` gives the model), announce, train, measure and settle one run.

    `after_fit` runs before the final metrics (e.g. restoring the best weights of early stopping).
    A run whose training raises (a user's model or loss failing mid-training) ends with status "error", its
    message and the records it made; one that fails before training raises when `single` (a single-run command:
    its failure is the command's error; Ctrl-C measures a single run where it stopped), else is reported as an
    "error" run so that one trial failing does not stop the others; Ctrl-C as "interrupted".
    """
    problem = problem.for_run(spec)
    if single:
        check_optimizer(problem, spec.optim)
    info = info or run_info(problem, spec)
    began = time.perf_counter()
    result = RunResult(spec, "error")
    try:
        interrupt.check()
        events.on_run_begin(info)
        model = start.model if start is not None else problem.new_model(spec.seed)
        optimizer = start.optimizer if start is not None and start.optimizer is not None else \
            build_optimizer(model, spec.optim)
        loss_fn = problem.loss_for(spec.loss)
        train = problem.train_cfg
        schedule = None if stepped is not None else build_schedule(  # the range test sets rates itself
            optimizer, train.schedule, train.epochs or info.epochs, Plan.of(problem).batches)  # (every epoch)
        options = FitOptions(
            batch_size=train.batch_size, clip_grad_norm=train.clip_grad_norm, clip_grad_value=train.clip_grad_value,
            generator=(start.generator if start is not None else None) or batch_generator(spec.seed),
            evaluate=(lambda m: problem.evaluate(m, loss_fn)) if problem.has_validation else None,
            track=problem.track(model), first_epoch=start.first_epoch if start is not None else 1,
            on_step=stepped.on_step if stepped is not None else None, schedule=schedule,
            sharpness=problem.sharpness_tracker(loss_fn) if train.track_sharpness else None,
            sharpness_every=train.track_sharpness or 1, max_grad_evals=train.max_grad_evals, stop_at=train.stop_at)
        paused = start.paused if start is not None else None
        if paused is not None:
            paused.restore(schedule, options)
        fitted = fit(model, loss_fn, optimizer, problem.source, epochs=info.epochs, options=options, events=events,
                     run=info)
        before = paused or Paused(0, [], 0.0, {})
        result = RunResult(spec, fitted.status, before.records + fitted.records,
                           epochs_run=fitted.epochs_run or before.epoch, elapsed_s=before.elapsed_s + fitted.elapsed_s,
                           diverged_epoch=fitted.diverged_epoch, stopped_early=fitted.stopped_early,
                           error=fitted.error, optimizer_steps=before.steps + fitted.steps,
                           grad_evals=before.grad_evals + fitted.grad_evals)
        if fitted.status == "ok" and not fitted.stopped_early and result.epochs_run == problem.until:
            result.paused = Paused.of(result, model, optimizer, schedule, options)  # a halving rung's end
        if fitted.status == "error":  # what of the user's code was running: their loss or their model
            loss = (spec.loss or problem.loss_cfg).name
            users = [f"--loss {shown(loss)}"] * is_import_path(loss) + [f"--model {shown(problem.user_model)}"] * bool(
                problem.user_model)
            blame = " (" + ", ".join(users) + ")" if users else ""
            result.error = f"{fitted.error}{blame}"
        if after_fit is not None:
            after_fit(fitted)
        if stepped is None:  # the range test's loss rises by design: nothing to measure or diagnose
            conclude(problem, result, model, loss_fn,
                     measure=fitted.status != "error" and (fitted.status != "interrupted" or single))
    except KeyboardInterrupt:
        result.status = "interrupted"
        result.elapsed_s = result.elapsed_s or time.perf_counter() - began
    except BrokenPipeError:  # the reader closed stdout: the command stops
        raise
    except USER_ERRORS as exc:
        if single:
            raise
        result = RunResult(spec, "error", result.records, elapsed_s=time.perf_counter() - began,
                           error=f"{type(exc).__name__}: {exc}")
    result.steps = stepped.steps if stepped is not None else None
    end_run(events, info, result)
    return result
