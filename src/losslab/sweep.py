"""`lr-sweep`: a learning-rate grid of short training runs (stacked into one batched computation where
supported), or the LR range test (Smith 2015; as in fastai's and Lightning's lr_find) with its suggestions.

Analysis here is pure (suggestions are functions of the recorded curve); drawing lives in plots.py.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

from losslab.compare import Summary, rank, summarise
from losslab.config import SweepConfig
from losslab.trials import Trial, TrialObserver, TrialResult, run_trials


# --- grid ------------------------------------------------------------------------------------------

@dataclass
class GridResult:
    config: SweepConfig
    status: str
    summaries: list[Summary]  # in learning-rate order
    runs: dict[str, list[TrialResult]]
    suggested_lr: Optional[float]
    largest_stable_lr: Optional[float]
    target: float
    vectorized: bool
    elapsed_s: float
    device: str
    data_source: str
    versions: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        best = next((s for s in self.summaries if s.lr == self.suggested_lr), None)
        return {"suggested_lr": self.suggested_lr, "largest_stable_lr": self.largest_stable_lr,
                "best_final_loss": best.median if best else None}


def lr_label(lr: float) -> str:
    return f"{lr:.3g}"


def grid_sweep(cfg: SweepConfig, problem: Any, observer: Optional[TrialObserver] = None) -> GridResult:
    """Every rate trained for the configured epochs on each seed, from the same initial weights and data order."""
    from losslab.experiments import versions

    started = time.perf_counter()
    task = cfg.task
    grid = cfg.grid()
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    trials = [Trial(lr_label(lr), replace(cfg.run.optim, lr=lr), seed) for seed in seeds for lr in grid]
    results, interrupted = run_trials(problem, trials, observer, vectorize=cfg.vectorize)
    runs: dict[str, list[TrialResult]] = {lr_label(lr): [] for lr in grid}
    for r in results:
        runs[r.trial.group].append(r)
    target = cfg.target
    if target is None:
        target = 1.05 * problem.optimum["loss"] if task == "regression" else 0.9
    summaries = [summarise(lr_label(lr), lr, "grid", runs[lr_label(lr)], task, target) for lr in grid]
    finished = [s for s in summaries if math.isfinite(s.median)]
    suggested = rank(finished)[0].lr if finished else None
    stable = [s.lr for s in summaries if s.diverged == 0 and s.errors == 0 and math.isfinite(s.median)]
    if interrupted:
        status = "interrupted"
    elif not finished:
        status = "diverged"
    else:
        status = "ok"
    return GridResult(cfg, status, summaries, runs, suggested, max(stable) if stable else None, target,
                      any(r.batch > 1 for r in results), time.perf_counter() - started, str(problem.device),
                      problem.data.source, versions())


# --- range test --------------------------------------------------------------------------------------

def schedule(min_lr: float, max_lr: float, steps: int, mode: str) -> list[float]:
    """The learning rate of each step: exponential (log-linear) or linear from min_lr to max_lr."""
    if mode == "linear":
        return [min_lr + (max_lr - min_lr) * i / (steps - 1) for i in range(steps)]
    return [min_lr * (max_lr / min_lr) ** (i / (steps - 1)) for i in range(steps)]


def smooth(losses: Sequence[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average: avg_i / (1 - beta^(i+1))."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def steepest(lrs: Sequence[float], losses: Sequence[float], skip_begin: int = 10, skip_end: int = 1) -> Optional[int]:
    """Index of the most negative slope of loss against log10(lr) (Lightning's suggestion), skipping the noisy
    first steps and the last."""
    n = len(losses)
    skip_begin = min(skip_begin, max(0, n // 10))
    lo, hi = skip_begin, n - skip_end
    if hi - lo < 3:
        return None
    x = [math.log10(v) for v in lrs]
    slopes = []
    for i in range(lo, hi):
        a, b = max(i - 1, 0), min(i + 1, n - 1)  # central differences, one-sided at the ends
        slopes.append((losses[b] - losses[a]) / (x[b] - x[a]))
    return lo + min(range(len(slopes)), key=slopes.__getitem__)


def valley(losses: Sequence[float], min_drop: float = 1e-3) -> Optional[int]:
    """fastai's 'valley': the longest run of steps along which the loss keeps falling (a longest decreasing
    subsequence), then a point a little past a third of the way along it — low enough to be safe, inside the
    region where the loss still drops fastest. A fall counts only when it exceeds `min_drop` of the curve's
    range: on noise-free full-batch data the flat start drifts down by tiny amounts and would otherwise count."""
    n = len(losses)
    if n < 3:
        return None
    tol = min_drop * (max(losses) - min(losses))
    length = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] - tol and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
        if length[i] > length[best_end]:
            best_end = i
    start = best_end - length[best_end]
    third = (best_end - start) / 3
    return max(0, min(n - 1, start + int(third) + int(third / 2)))


def min_loss_tenth(lrs: Sequence[float], losses: Sequence[float]) -> Optional[float]:
    """The rate at the lowest smoothed loss, divided by ten (the classic rule of thumb)."""
    if not losses:
        return None
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def suggestions(lrs: Sequence[float], smoothed: Sequence[float]) -> dict[str, Optional[float]]:
    """Recommended first: valley, then steepest descent, then min-loss/10."""
    v, s = valley(smoothed), steepest(lrs, smoothed)
    return {"valley": lrs[v] if v is not None else None, "steepest": lrs[s] if s is not None else None,
            "min_loss/10": min_loss_tenth(lrs, smoothed)}


def state_hash(model: Any, optimizer: Any) -> str:
    """SHA-256 of every parameter and buffer and of the optimizer's state and hyper-parameters."""
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    buf = io.BytesIO()
    torch.save(optimizer.state_dict(), buf)
    h.update(buf.getvalue())
    return h.hexdigest()


@dataclass
class RangeRun:
    seed: int
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped: str  # "diverged" (smoothed loss passed the threshold), "non-finite loss", or "completed"
    suggestions: dict[str, Optional[float]]
    hash_before: str
    hash_after: str


def range_test_run(problem: Any, cfg: SweepConfig, seed: int) -> RangeRun:
    """One LR range test through the shared loop; the model and optimizer are restored afterwards."""

    from losslab.optimizers import build_optimizer

    lrs = schedule(float(cfg.min_lr), float(cfg.max_lr), cfg.steps, cfg.mode)
    model = problem.new_model(seed)
    optimizer = build_optimizer(model.parameters(), replace(cfg.run.optim, lr=lrs[0]))
    before = state_hash(model, optimizer)
    saved_model, saved_optim = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    losses: list[float] = []
    smoothed: list[float] = []
    state = {"avg": 0.0, "best": math.inf, "stopped": "completed"}

    def on_step(loss: float) -> bool:
        i = len(losses)
        losses.append(loss)
        if not math.isfinite(loss):
            state["stopped"] = "non-finite loss"
            return True
        state["avg"] = cfg.smoothing * state["avg"] + (1 - cfg.smoothing) * loss
        value = state["avg"] / (1 - cfg.smoothing ** (i + 1))
        smoothed.append(value)
        state["best"] = min(state["best"], value)
        if i > 0 and value > cfg.diverge_factor * state["best"]:
            state["stopped"] = "diverged"
            return True
        if i + 1 >= len(lrs):
            return True
        for group in optimizer.param_groups:
            group["lr"] = lrs[i + 1]
        return False

    try:
        n = problem.x.shape[0]
        batch = problem.train_cfg.batch_size
        per_epoch = 1 if batch is None or batch >= n else math.ceil(n / batch)
        problem.train(model, optimizer, seed=seed, epochs=math.ceil(cfg.steps / per_epoch) + 1, on_step=on_step)
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optim)
    after = state_hash(model, optimizer)
    kept = len(smoothed)
    curve_lrs = lrs[:kept]
    # the points after the loss exploded say nothing about where to train: suggest from before it
    usable = kept - 1 if state["stopped"] == "diverged" else kept
    return RangeRun(seed, curve_lrs, losses[:kept], smoothed, state["stopped"],
                    suggestions(curve_lrs[:usable], smoothed[:usable]), before, after)


@dataclass
class RangeResult:
    config: SweepConfig
    status: str
    runs: list[RangeRun]
    suggestions: dict[str, dict[str, Optional[float]]]  # name -> median, min, max over seeds
    recommended: Optional[float]
    median_curve: dict[str, list[float]]
    state_unchanged: bool
    elapsed_s: float
    device: str
    data_source: str
    versions: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"suggested_lr": self.recommended, "state_unchanged": str(self.state_unchanged).lower()}
        for name, spread in self.suggestions.items():
            out[name.replace("/", "_").replace("-", "_") + "_lr"] = spread["median"]
        return out


def range_test(cfg: SweepConfig, problem: Any, progress: Any = None) -> RangeResult:
    from losslab.experiments import versions

    started = time.perf_counter()
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    runs: list[RangeRun] = []
    status = "ok"
    try:
        for seed in seeds:
            runs.append(range_test_run(problem, cfg, seed))
            if progress is not None:
                progress(runs[-1], len(runs), len(seeds))
    except KeyboardInterrupt:
        status = "interrupted"
    spread: dict[str, dict[str, Optional[float]]] = {}
    for name in ("valley", "steepest", "min_loss/10"):
        values = [r.suggestions[name] for r in runs if r.suggestions.get(name) is not None]
        spread[name] = ({"median": _geometric_median(values), "min": min(values), "max": max(values)}
                        if values else {"median": None, "min": None, "max": None})
    recommended = next((spread[n]["median"] for n in ("valley", "steepest", "min_loss/10")
                        if spread[n]["median"] is not None), None)
    length = max((len(r.smoothed) for r in runs), default=0)
    lrs = schedule(float(cfg.min_lr), float(cfg.max_lr), cfg.steps, cfg.mode)[:length]
    median_curve = {"lr": lrs, "smoothed_loss": [
        statistics.median([r.smoothed[i] for r in runs if i < len(r.smoothed)]) for i in range(length)]}
    unchanged = all(r.hash_before == r.hash_after for r in runs)
    if status == "ok" and not runs[0].smoothed:
        status = "diverged"
    return RangeResult(cfg, status, runs, spread, recommended, median_curve, unchanged,
                       time.perf_counter() - started, str(problem.device), problem.data.source, versions())


def _geometric_median(values: Sequence[float]) -> float:
    """Median of rates on a log scale (the median of log10 values, mapped back)."""
    logs = sorted(math.log10(v) for v in values)
    return 10 ** statistics.median(logs)
