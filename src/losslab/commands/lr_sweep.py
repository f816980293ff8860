"""`losslab lr-sweep`: a learning-rate grid of short training runs (stacked into one batched computation where
supported), or the LR range test (Smith 2015; as in fastai's and Lightning's lr_find) with its suggestions.

Analysis here is pure (suggestions are functions of the recorded curve); the range test's mechanics live in
`engine.range_test`, drawing in `outputs.plots`.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

from losslab import interrupt
from losslab.commands.common import (
    DATA_FILES,
    DIAGNOSIS_CHOICES,
    Output,
    Plot,
    Where,
    all_runs,
    check_gates,
    default_target,
    finish,
    pooled_diagnosis,
    pooled_notes,
    run_document,
    run_records,
)
from losslab.config import SweepConfig, check_out_dir
from losslab.engine.events import Consumer
from losslab.engine.problems import AnyProblem, build_problem
from losslab.engine.range_test import RangeCurve, range_test_run, schedule
from losslab.engine.runs import RunResult, RunSpec, diagnose_run
from losslab.engine.trials import run_trials
from losslab.expect import Outcome, check_names
from losslab.outputs import OutputContext, dispatcher
from losslab.outputs.display import ProgressDisplay, Report, TrialsDisplay, epoch_columns, fmt, make_console
from losslab.outputs.files import outcomes_document, versions
from losslab.stats import Summary, geometric_median, loss_key, rank, summarise

COMMAND = "lr-sweep"
GRID_PLOTS, RANGE_PLOTS = ("sweep.png",), ("range_test.png",)
# in the order they are recommended; each is named by its rule (README "LR range test"):
#   valley      fastai's valley: a little past a third of the longest decreasing stretch of the smoothed loss
#   steepest    the steepest descent of the smoothed loss against log10(lr) (Lightning 1.x's rule)
#   min_loss/10 the rate at the lowest smoothed loss, divided by ten
#   lightning   Lightning 2.x's lr_find number: its own curve (a second run with Lightning's rates, smoothing and
#               stop rule: engine.range_test) and its rule, the steepest descent against the linear rate
#               (torch.gradient with the rates as spacing) skipping the first 10 and the last point
SUGGESTERS = ("valley", "steepest", "min_loss/10", "lightning")


# --- grid ------------------------------------------------------------------------------------------

@dataclass
class GridResult:
    config: SweepConfig
    status: str
    summaries: list[Summary]  # in learning-rate order
    runs: dict[str, list[RunResult]]
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
        return grid_metrics(self.suggested_lr, self.largest_stable_lr, best.median if best else None,
                            [d["code"] for d in self.diagnosis()])

    def diagnosis(self) -> list[dict[str, Any]]:
        return pooled_diagnosis(all_runs(self.runs))


def grid_metrics(suggested: Optional[float], stable: Optional[float], best: Optional[float],
                 diagnosis: list[str]) -> dict[str, Any]:
    return {"suggested_lr": suggested, "largest_stable_lr": stable, "best_final_loss": best, "diagnosis": diagnosis}


def improved(run: RunResult, task: str) -> bool:
    """A run is stable when it ends no higher than its first epoch: a finite loss that exploded is not."""
    start = run.records[0].get(loss_key(task)) if run.records else None
    end = run.metrics.get("final_loss") if run.status == "ok" else None
    return start is not None and end is not None and math.isfinite(start) and end <= start



def lr_label(lr: float) -> str:
    return f"{lr:.3g}"


def grid_sweep(cfg: SweepConfig, problem: AnyProblem, events: Consumer = Consumer()) -> GridResult:
    """Every rate trained for the configured epochs on each seed, from the same initial weights and data order."""
    started = time.perf_counter()
    cfg = cfg.resolved()
    task = cfg.task
    grid = cfg.grid()
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    specs = [RunSpec(lr_label(lr), replace(cfg.run.optim, lr=lr), seed) for seed in seeds for lr in grid]
    results, interrupted = run_trials(problem, specs, events, vectorize=cfg.vectorize, executor=cfg.executor)
    runs: dict[str, list[RunResult]] = {lr_label(lr): [] for lr in grid}
    for r in results:
        runs[r.spec.group].append(r)
    target = cfg.target if cfg.target is not None else default_target(problem)
    summaries = [summarise(lr_label(lr), lr, "grid", runs[lr_label(lr)], task, target) for lr in grid]
    finished = [s for s in summaries if math.isfinite(s.median)]
    suggested = rank(finished)[0].lr if finished else None
    stable = [s.lr for s in summaries if s.diverged == 0 and s.errors == 0 and math.isfinite(s.median)
              and all(improved(r, task) for r in runs[s.name])]
    largest_stable = max(stable) if stable else None
    for r in results:  # a diverged rate's suggestion: the grid's own largest stable rate
        if r.status == "diverged" and largest_stable is not None:
            r.diagnosis = diagnose_run(problem, r, stable_lr=largest_stable)
    if interrupted or finished:
        status = "interrupted" if interrupted else "ok"
    else:
        status = "failed" if all(r.status == "error" for r in results) else "diverged"
    return GridResult(cfg, status, summaries, runs, suggested, largest_stable, target,
                      any(r.stacked_with > 1 for r in results), time.perf_counter() - started, str(problem.device),
                      problem.data.source, versions())


# --- range test: suggestions from the curve ----------------------------------------------------------

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


def lightning(lrs: Sequence[float], losses: Sequence[float], skip_begin: int = 10, skip_end: int = 1) -> Optional[int]:
    """Index Lightning 2.x's `lr_find().suggestion()` picks (lightning/pytorch/tuner/lr_finder.py, 2.6.6): the
    most negative `torch.gradient` of the smoothed loss with the rates themselves as spacing, on float32 tensors
    as Lightning builds them (at tiny rates the loss differences round away, which is why its pick sits where
    the loss falls fastest per unit of rate), after dropping the first `skip_begin` and last `skip_end` points
    and non-finite losses."""
    import torch

    kept = [(i, lr, loss) for i, (lr, loss) in enumerate(zip(lrs, losses))
            if skip_begin <= i < len(losses) - skip_end and math.isfinite(loss)]
    if len(kept) < 2:
        return None
    loss_t = torch.tensor([k[2] for k in kept])  # float32, as torch.tensor(list) gives in Lightning
    lr_t = torch.tensor([k[1] for k in kept])
    gradients = torch.gradient(loss_t, spacing=[lr_t])[0]
    return kept[int(torch.argmin(gradients))][0]


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


def suggestions(lrs: Sequence[float], smoothed: Sequence[float],
                lightning_curve: Optional[RangeCurve] = None) -> dict[str, Optional[float]]:
    """Recommended first: valley, then steepest descent, then min-loss/10; Lightning's number from its own
    curve (None without one)."""
    v, s = valley(smoothed), steepest(lrs, smoothed)
    pl = None
    if lightning_curve is not None:
        # Lightning keeps recording after a non-finite loss (NaN from then on) and drops the last point: a curve
        # stopped at the non-finite loss ends with that NaN
        points = lightning_curve.smoothed + ([math.nan] if lightning_curve.stopped == "non-finite loss" else [])
        rates = lightning_curve.lrs + ([math.nan] if lightning_curve.stopped == "non-finite loss" else [])
        at = lightning(rates, points)
        pl = rates[at] if at is not None else None
    return {"valley": lrs[v] if v is not None else None, "steepest": lrs[s] if s is not None else None,
            "min_loss/10": min_loss_tenth(lrs, smoothed), "lightning": pl}


@dataclass
class RangeRun:
    """One seed's range-test curve and the suggestions read off it."""

    curve: RangeCurve
    suggestions: dict[str, Optional[float]]
    lightning_curve: Optional[RangeCurve] = None

    def __getattr__(self, name: str) -> Any:  # seed, lrs, losses, smoothed, stopped, hashes: the curve's
        return getattr(self.curve, name)


def analyse(curve: RangeCurve, lightning_curve: Optional[RangeCurve] = None) -> RangeRun:
    n = curve.usable
    return RangeRun(curve, suggestions(curve.lrs[:n], curve.smoothed[:n], lightning_curve), lightning_curve)


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
        return range_metrics(self.recommended, self.state_unchanged,
                             {name: spread["median"] for name, spread in self.suggestions.items()})


def range_metrics(recommended: Optional[float], unchanged: bool,
                  medians: dict[str, Optional[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"suggested_lr": recommended, "state_unchanged": str(unchanged).lower()}
    for name, median in medians.items():
        out[name.replace("/", "_").replace("-", "_") + "_lr"] = median
    return out


def range_test(cfg: SweepConfig, problem: AnyProblem, events: Consumer = Consumer(),
               on_seed: Any = None) -> RangeResult:
    """The range test on every seed; Ctrl-C stops the whole test (not just the running seed)."""
    started = time.perf_counter()
    cfg = cfg.resolved()
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    runs: list[RangeRun] = []
    status = "ok"
    try:
        for i, seed in enumerate(seeds):
            curve = range_test_run(problem, cfg, seed, events, index=i, total=len(seeds))
            # Lightning's number needs Lightning's own curve: the same steps again with its rates and smoothing
            theirs = (range_test_run(problem, cfg, seed, lightning=True) if curve.stopped != "interrupted"
                      and not interrupt.requested() else None)
            run = analyse(curve, theirs)
            runs.append(run)
            if run.stopped == "interrupted" or interrupt.requested():
                status = "interrupted"
                break
            if on_seed is not None:
                on_seed(run, len(runs), len(seeds))
    except KeyboardInterrupt:
        status = "interrupted"
    spread: dict[str, dict[str, Optional[float]]] = {}
    for name in SUGGESTERS:
        values = [v for v in (r.suggestions.get(name) for r in runs) if v is not None]
        spread[name] = ({"median": geometric_median(values), "min": min(values), "max": max(values)}
                        if values else {"median": None, "min": None, "max": None})
    recommended = next((spread[n]["median"] for n in SUGGESTERS if spread[n]["median"] is not None), None)
    length = max((len(r.smoothed) for r in runs), default=0)
    low, high = cfg.lr_range
    lrs = schedule(low, high, cfg.steps, cfg.mode)[:length]
    median_curve = {"lr": lrs, "smoothed_loss": [
        statistics.median([r.smoothed[i] for r in runs if i < len(r.smoothed)]) for i in range(length)]}
    unchanged = all(r.hash_before == r.hash_after for r in runs)
    if status == "ok" and not runs[0].smoothed:
        status = "diverged"
    return RangeResult(cfg, status, runs, spread, recommended, median_curve, unchanged,
                       time.perf_counter() - started, str(problem.device), problem.data.source, versions())


# --- outputs -------------------------------------------------------------------------------------

def grid_document(result: GridResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lr-sweep` (grid mode)."""
    task = result.config.task
    rows = [run_document(r, task, result.target) for s in result.summaries for r in result.runs[s.name]]
    return {
        "command": "lr-sweep", "mode": "grid", "status": result.status, "task": task,
        "config": result.config.to_dict(),
        "suggested_lr": result.suggested_lr, "largest_stable_lr": result.largest_stable_lr,
        "target": result.target, "vectorized": result.vectorized,
        "rates": [{"lr": s.lr, "final_loss": {"median": s.median, "q1": s.q1, "q3": s.q3}, "best_loss": s.best,
                   "epochs_to_target": s.epochs_to_target, "diverged": s.diverged, "errors": s.errors, **s.extra}
                  for s in result.summaries],
        "results": rows,
        "diagnosis": result.diagnosis(),
        "data": result.data_source, "device": result.device, "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []), "versions": result.versions,
    }


def range_document(result: RangeResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lr-sweep --range-test`."""
    return {
        "command": "lr-sweep", "mode": "range-test", "status": result.status, "task": result.config.task,
        "config": result.config.to_dict(),
        "suggested_lr": result.recommended,
        "suggestions": result.suggestions,
        "curve": result.median_curve,
        "runs": [{"seed": r.seed, "stopped": r.stopped, "suggestions": r.suggestions, "lr": r.lrs, "loss": r.losses,
                  "smoothed_loss": r.smoothed,
                  "lightning_curve": curve_document(r.lightning_curve)} for r in result.runs],
        "state_check": {"unchanged": result.state_unchanged,
                        "sha256_before": [r.hash_before for r in result.runs],
                        "sha256_after": [r.hash_after for r in result.runs]},
        "data": result.data_source, "device": result.device, "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []), "versions": result.versions,
    }


def curve_document(curve: Optional[RangeCurve]) -> Optional[dict[str, Any]]:
    if curve is None:
        return None
    return {"lr": curve.lrs, "loss": curve.losses, "smoothed_loss": curve.smoothed, "stopped": curve.stopped}


def range_records(result: RangeResult) -> list[dict[str, Any]]:
    return [{"seed": r.seed, "step": i + 1, "lr": lr, "loss": loss, "smoothed_loss": sm}
            for r in result.runs for i, (lr, loss, sm) in enumerate(zip(r.lrs, r.losses, r.smoothed))]


def grid_report(result: GridResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    cfg = result.config
    regress = cfg.task == "regression"
    # short headers so the table fits 80 columns; the notes say what they mean
    headers = ["lr", "median loss", "IQR", "best loss", "to target", "diverged"] + ([] if regress else ["val acc"])
    rows, best = [], set()
    for i, s in enumerate(result.summaries):
        reach = "—" if s.epochs_to_target is None else f"{s.epochs_to_target:g} ({s.reached}/{len(s.finals)})"
        mark = " ←" if s.lr == result.suggested_lr else ""
        row = [f"{s.lr:.3g}{mark}", fmt(s.median, ".5g"), f"{fmt(s.q1, '.3g')}–{fmt(s.q3, '.3g')}",
               fmt(s.best, ".5g"), reach,
               f"{s.diverged}/{len(s.finals)}" + (f" (+{s.errors} errors)" if s.errors else "")]
        if not regress:
            row.append(fmt(s.extra.get("accuracy"), ".4f"))
        rows.append(row)
        if s.lr == result.suggested_lr:
            best.update({(i, 0), (i, 1)})
    title = (f"losslab lr-sweep: {result.status} — {cfg.run.optim.name}, {len(result.summaries)} rates × "
             f"{cfg.seeds} seed(s) × {cfg.run.train.epochs} epochs in {result.elapsed_s:.1f} s "
             f"({'vectorized' if result.vectorized else 'sequential'})")
    notes = [f"data: {result.data_source}",
             f"median loss and IQR: final {'training' if regress else 'validation'} loss over seeds; to target: "
             f"median first epoch reaching {'loss' if regress else 'accuracy'} {fmt(result.target, '.4g')} "
             "(runs that reached it)",
             f"suggested lr (←): {fmt(result.suggested_lr, '.3g')} (lowest median final loss; ties within 4 "
             "significant digits go to the rate that reaches the target sooner)",
             f"largest stable rate (no seed diverged or ended above its first epoch's loss): "
             f"{fmt(result.largest_stable_lr, '.3g')}"]
    if result.status == "interrupted":
        notes.append("interrupted: unfinished rates rank last and are marked in the JSON.")
    notes += pooled_notes(result.diagnosis())
    notes += [o.describe() for o in outcomes]
    return [Report(title, headers, rows, notes, best)]


def range_report(result: RangeResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    cfg = result.config
    rows = []
    for i, name in enumerate(SUGGESTERS):
        s = result.suggestions[name]
        spread = "—" if s["median"] is None else (f"{s['min']:.3g}–{s['max']:.3g}" if len(result.runs) > 1 else "")
        label = name + (" (recommended)" if i == 0 and s["median"] is not None else "")
        rows.append([label, fmt(s["median"], ".3g"), spread])
    title = (f"losslab lr-sweep --range-test: {result.status} — {cfg.run.optim.name}, lr {cfg.min_lr:g} → "
             f"{cfg.max_lr:g} ({cfg.mode}) over {cfg.steps} steps, {len(result.runs)} seed(s), "
             f"{result.elapsed_s:.1f} s")
    stops = ", ".join(f"seed {r.seed}: {r.stopped} after {len(r.smoothed)} steps" for r in result.runs)
    notes = [f"data: {result.data_source}", f"stopped: {stops}",
             f"suggested lr: {fmt(result.recommended, '.3g')}",
             "model and optimizer state " + ("unchanged by the test (SHA-256 of parameters and optimizer state "
                                             "identical before and after)" if result.state_unchanged else
                                             "CHANGED by the test (hash mismatch)")]
    notes += [o.describe() for o in outcomes]
    return [Report(title, ["suggestion", "lr", "spread over seeds" if len(result.runs) > 1 else ""], rows, notes,
                   {(0, 1)} if rows and rows[0][1] != "—" else set())]


def grid_plots(result: GridResult) -> list[Plot]:
    cfg = result.config
    runs = [r for rs in result.runs.values() for r in rs]

    def sweep(path: Any) -> None:
        from losslab.outputs.plots import sweep_plot

        sweep_plot([(r.spec.optim.lr, r.score, r.status) for r in runs], path, result.suggested_lr,
                   title=f"lr-sweep: {cfg.run.optim.name}, {cfg.run.train.epochs} epochs",
                   ylabel="final loss" if cfg.task == "regression" else "final validation loss")

    return list(zip(GRID_PLOTS, [sweep]))


def range_plots(result: RangeResult) -> list[Plot]:
    cfg = result.config

    def draw(path: Any) -> None:
        from losslab.outputs.plots import range_test_plot

        range_test_plot([(r.lrs, r.smoothed) for r in result.runs], path,
                        {k: v["median"] for k, v in result.suggestions.items()},
                        title=f"LR range test: {cfg.run.optim.name}, {len(result.runs)} seed(s)")

    return list(zip(RANGE_PLOTS, [draw]))


def grid_curves(result: GridResult) -> str:
    from losslab.outputs.terminal_plot import curves

    finished = [s for s in result.summaries if math.isfinite(s.median)]
    mark = (result.suggested_lr, f"suggested {result.suggested_lr:.3g}") if result.suggested_lr else None
    return curves([("median final loss", [s.lr for s in finished], [s.median for s in finished])],
                  title="final loss against the learning rate", xlabel="learning rate", logx=True, mark=mark)


def range_curves(result: RangeResult) -> str:
    from losslab.outputs.terminal_plot import curves

    curve = result.median_curve
    mark = (result.recommended, f"suggested {result.recommended:.3g}") if result.recommended else None
    return curves([("smoothed loss", curve["lr"], curve["smoothed_loss"])], title="LR range test",
                  xlabel="learning rate", logx=True, mark=mark)


def metric_names(cfg: SweepConfig) -> list[str]:
    """The names the sweep's `metrics` report, known before training."""
    if cfg.range_test:
        return list(range_metrics(None, True, {name: None for name in SUGGESTERS}))
    return list(grid_metrics(None, None, None, []))


def main(cfg: SweepConfig, *, json_out: bool, quiet: bool) -> int:
    cfg = cfg.resolved()
    check_out_dir(cfg.out, DATA_FILES + (RANGE_PLOTS if cfg.range_test else GRID_PLOTS), records=cfg.records)
    check_out_dir(cfg.tensorboard, option="--tensorboard", records=cfg.records)
    problem = build_problem(cfg.run)
    check_names(cfg.gates.expect, metric_names(cfg), DIAGNOSIS_CHOICES)
    console = make_console(stderr=json_out)
    ctx = OutputContext(COMMAND, cfg, json_out, quiet, cfg.out)

    if cfg.range_test:
        progress = ProgressDisplay(console, epoch_columns([]), quiet=quiet)

        def on_seed(run: RangeRun, done: int, total: int) -> None:
            if not quiet:
                print(f"[{done}/{total}] range test seed {run.seed}: {run.stopped} after {len(run.smoothed)} steps; "
                      f"valley {run.suggestions['valley'] or float('nan'):.3g}", file=console.file, flush=True)

        events = dispatcher(ctx, [progress])
        rt = range_test(cfg, problem, events, on_seed)
        outcomes = check_gates(cfg.gates, rt.status, rt.metrics())
        return finish(Output(range_document(rt, outcomes), range_report(rt, outcomes), range_records(rt), outcomes,
                             rt.status, range_plots(rt), lambda: range_curves(rt)),
                      Where(console, json_out, quiet, cfg.out, cfg.plot, events))

    display = TrialsDisplay(console, quiet=quiet, loss_key=loss_key(cfg.task), label="lr")
    display.plan([lr_label(lr) for lr in cfg.grid()], cfg.seeds)
    events = dispatcher(ctx, [display])
    with display:
        grid = grid_sweep(cfg, problem, events)
    outcomes = check_gates(cfg.gates, grid.status, grid.metrics(), loss_key="best_final_loss")
    runs = [r for rs in grid.runs.values() for r in rs]
    return finish(Output(grid_document(grid, outcomes), grid_report(grid, outcomes), run_records(runs, None),
                         outcomes, grid.status, grid_plots(grid), lambda: grid_curves(grid)),
                  Where(console, json_out, quiet, cfg.out, cfg.plot, events))
