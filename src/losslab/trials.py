"""Many runs of one prepared problem. A trial is one optimizer config and one seed, trained by the shared loop.

Fairness by construction: every trial of a seed starts from the same initial weights (one model built per
seed, deep-copied for each trial) and sees the same batch order (a generator seeded by the seed).
One trial diverging or raising does not stop the others; Ctrl-C stops the run and marks what did not run.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from losslab.callbacks import Callback
from losslab.config import OptimConfig


@dataclass(frozen=True)
class Trial:
    group: str  # what trials are compared under: an optimizer name, or a learning rate
    optim: OptimConfig
    seed: int


@dataclass
class TrialResult:
    trial: Trial
    status: str  # ok, diverged, error, interrupted, not run
    records: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs_run: int = 0
    elapsed_s: float = 0.0  # for stacked trials, this trial's share of the batch's time
    error: Optional[str] = None
    batch: int = 1  # how many trials were trained together with this one (vectorized)

    @property
    def score(self) -> float:
        """Final loss; +inf for anything that did not finish cleanly, so failures rank last, never drop out."""
        loss = self.metrics.get("final_loss")
        if self.status != "ok" or loss is None or not math.isfinite(loss):
            return math.inf
        return float(loss)


class TrialObserver:
    """Display hooks for a batch of trials; override what you need."""

    def on_trial_start(self, trial: Trial, index: int, total: int) -> None:
        """Before a trial's first epoch."""

    def on_epoch(self, trial: Trial, record: dict[str, Any]) -> None:
        """After each epoch of a trial."""

    def on_trial_end(self, result: TrialResult, index: int, total: int) -> None:
        """After a trial, whatever its status."""


class _Forward(Callback):
    def __init__(self, observer: TrialObserver, trial: Trial):
        self.observer, self.trial = observer, trial

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.observer.on_epoch(self.trial, record)


def run_trials(problem: Any, trials: Sequence[Trial], observer: Optional[TrialObserver] = None,
               vectorize: bool = True) -> tuple[list[TrialResult], bool]:
    """Run trials in this process: stacked together where `vectorized` supports them (see
    `vectorized.unsupported`), one after another otherwise. Returns the results in trial order and whether
    Ctrl-C stopped the run."""
    observer = observer or TrialObserver()
    if not vectorize or len(trials) < 2:
        return run_sequential(problem, trials, observer)
    from losslab.vectorized import BATCHED_OPTIMIZERS, run_vectorized, unsupported

    stacked = [i for i, t in enumerate(trials) if t.optim.name in BATCHED_OPTIMIZERS]
    if len(stacked) < 2 or unsupported(problem, [trials[i] for i in stacked]) is not None:
        return run_sequential(problem, trials, observer)
    rest = [i for i in range(len(trials)) if i not in set(stacked)]
    results: list[Optional[TrialResult]] = [None] * len(trials)
    starts = iter(range(len(trials)))
    batch, interrupted = run_vectorized(
        problem, [trials[i] for i in stacked],
        on_start=lambda t: observer.on_trial_start(t, next(starts), len(trials)), on_epoch=observer.on_epoch)
    for j, (i, r) in enumerate(zip(stacked, batch)):
        results[i] = r
        interrupted = _notify_end(observer, r, j, len(trials)) or interrupted
    if rest:
        if interrupted:
            others = [TrialResult(trials[i], "not run") for i in rest]
        else:
            others, interrupted = run_sequential(problem, [trials[i] for i in rest], observer, offset=len(stacked),
                                                 total=len(trials))
        for i, r in zip(rest, others):
            results[i] = r
    return [r for r in results if r is not None], interrupted


def run_sequential(problem: Any, trials: Sequence[Trial], observer: TrialObserver, offset: int = 0,
                   total: Optional[int] = None) -> tuple[list[TrialResult], bool]:
    """One trial after another in this process (no process start-up, model rebuild or import cost each)."""
    from losslab.optimizers import build_optimizer

    total = total or len(trials)
    templates: dict[int, Any] = {}
    results: list[TrialResult] = []
    interrupted = False
    for index, trial in enumerate(trials):
        if interrupted:
            results.append(TrialResult(trial, "not run"))
            continue
        start = time.perf_counter()
        try:
            observer.on_trial_start(trial, offset + index, total)
            if trial.seed not in templates:
                templates[trial.seed] = problem.new_model(trial.seed)
            model = copy.deepcopy(templates[trial.seed])  # same initial weights for every trial of this seed
            optimizer = build_optimizer(model.parameters(), trial.optim)
            fitted = problem.train(model, optimizer, seed=trial.seed, callbacks=[_Forward(observer, trial)])
            metrics = problem.final(model) if fitted.status != "interrupted" else {}
            status = fitted.status
            if status == "ok" and not math.isfinite(metrics.get("final_loss", math.nan)):
                status = "diverged"
            result = TrialResult(trial, status, fitted.records, metrics, fitted.epochs_run, fitted.elapsed_s)
        except KeyboardInterrupt:
            result = TrialResult(trial, "interrupted", elapsed_s=time.perf_counter() - start)
        except Exception as exc:  # one optimizer raising must not stop the others
            result = TrialResult(trial, "error", elapsed_s=time.perf_counter() - start,
                                 error=f"{type(exc).__name__}: {exc}")
        interrupted = result.status == "interrupted"
        results.append(result)
        interrupted = _notify_end(observer, result, offset + index, total) or interrupted
    return results, interrupted


def _notify_end(observer: TrialObserver, result: TrialResult, index: int, total: int) -> bool:
    """Tell the observer a trial ended; True when Ctrl-C arrived meanwhile (a Ctrl-C between trials
    must stop the run as cleanly as one during a trial)."""
    try:
        observer.on_trial_end(result, index, total)
    except KeyboardInterrupt:
        return True
    return False
