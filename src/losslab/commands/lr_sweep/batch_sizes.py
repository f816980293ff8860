"""`losslab lr-sweep --batch-sizes`: the learning-rate grid at several batch sizes in one sweep — every
(rate, batch size, seed) run trained in one call (stacked per batch size where the engine allows), the best rate
of each batch size by the grid's own rule, and how the best rate scales with the batch size beside the
linear-scaling rule (Goyal et al. 2017: rate ∝ batch) and the square-root rule (Krizhevsky 2014; Hoffer et al.
2017: rate ∝ √batch)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

from losslab.commands.common import (
    Plot,
    default_target,
    entries_document,
    entry_name,
    one_by_one_notes,
    pooled_diagnosis,
    pooled_notes,
    run_document,
)
from losslab.commands.lr_sweep.grid import (
    EXPECTED_IN_A_SWEEP,
    GRID_VS_RANGE,
    GridResult,
    lr_label,
    rates_document,
    settled,
)
from losslab.config import SweepConfig
from losslab.engine.events import Consumer
from losslab.engine.problems import AnyProblem
from losslab.engine.runs import RunResult, RunSpec
from losslab.engine.skeleton import Plan
from losslab.engine.trials import run_trials
from losslab.errors import ConfigError
from losslab.expect import Outcome
from losslab.outputs.display import Report, counted, fmt
from losslab.outputs.files import outcomes_document, versions
from losslab.stats import Summary, rank

BATCH_PLOTS = ("sweep.png", "batch_sizes.png")
RULES = (("linear", 1.0), ("square root", 0.5))  # the scaling rules the fit is set beside: rate ∝ batch^α


def size_label(lr: float, size: int) -> str:
    """A run group: its rate and batch size (`0.01, batch 32`)."""
    return f"{lr_label(lr)}, batch {size}"


def group_labels(cfg: SweepConfig) -> list[str]:
    """Every (rate, batch size) group, in the order the sweep trains them."""
    return [size_label(lr, b) for b in cfg.sizes() if b is not None for lr in cfg.grid()]


@dataclass
class Scaling:
    """How the best rate grows with the batch size: `exponent` α of best rate ∝ batch^α, fitted by least squares
    on log-log over the sizes with a best rate (with its standard error from three sizes on), and what each rule
    predicts from the smallest size's best rate. The grid's rates are a factor `step` apart, so each best rate
    is known within that factor and the exponent within `resolution`."""

    points: list[tuple[int, float]]
    exponent: Optional[float] = None
    stderr: Optional[float] = None
    step: Optional[float] = None
    resolution: Optional[float] = None

    @staticmethod
    def fit(points: Sequence[tuple[int, float]], rates: Sequence[float]) -> "Scaling":
        points = sorted(points)
        step = max((b / a for a, b in zip(rates, rates[1:])), default=None)
        if len({b for b, _ in points}) < 2:
            return Scaling(list(points), step=step)
        from scipy.stats import linregress

        xs, ys = [math.log(b) for b, _ in points], [math.log(lr) for _, lr in points]
        line = linregress(xs, ys)
        span = xs[-1] - xs[0]
        stderr = float(line.stderr) if len(points) > 2 and math.isfinite(line.stderr) else None
        return Scaling(list(points), float(line.slope), stderr, step,
                       math.log(step) / span if step is not None and span > 0 else None)

    def predicted(self, alpha: float, size: int) -> Optional[float]:
        """The rate a rule of exponent `alpha` gives at `size`, from the smallest size's best rate."""
        if not self.points:
            return None
        b0, lr0 = self.points[0]
        return lr0 * (size / b0) ** alpha

    def closer(self) -> Optional[str]:
        if self.exponent is None:
            return None
        exponent = self.exponent
        return min(RULES, key=lambda rule: abs(rule[1] - exponent))[0]

    def describe(self) -> str:
        if self.exponent is None:
            return "scaling: fewer than two batch sizes have a best rate, nothing to fit"
        error = f" ± {self.stderr:.2f}" if self.stderr is not None else ""
        rules = ", ".join(f"the {name} rule ^{alpha:g}" for name, alpha in RULES)
        fitted = (f"scaling: best rate ∝ batch size^{self.exponent:.2f}{error} (least squares on log-log over "
                  f"{len(self.points)} sizes); {rules}")
        if self.resolution is None or self.step is None:
            return f"{fitted}: closer to the {self.closer()} rule"
        within = (f"the grid's rates are {self.step:.3g}× apart, so the exponent is known to about "
                  f"±{self.resolution:.2f}")
        if self.resolution >= RULES[0][1] - RULES[1][1]:
            return (f"{fitted}; {within}: too coarse to tell the rules apart (more rates, --num, or batch sizes "
                    "further apart)")
        return f"{fitted}: closer to the {self.closer()} rule; {within}"

    def document(self) -> dict[str, Any]:
        return {"exponent": self.exponent, "stderr": self.stderr, "rate_step": self.step,
                "exponent_resolution": self.resolution,
                "points": [{"batch_size": b, "best_lr": lr} for b, lr in self.points],
                "rules": {name: {"exponent": alpha, "predicted": [self.predicted(alpha, b) for b, _ in self.points]}
                          for name, alpha in RULES},
                "closer_to": self.closer()}


@dataclass
class BatchSizesResult:
    config: SweepConfig
    status: str
    sizes: dict[int, GridResult]  # each batch size's grid, ascending
    scaling: Scaling
    target: float
    samples: int  # training rows: a batch size at or above it is one full batch
    elapsed_s: float
    vectorized: bool
    device: str
    data_source: str
    one_by_one: Optional[str] = None
    versions: dict[str, str] = field(default_factory=dict)

    def best(self) -> Optional[tuple[int, Summary]]:
        """The batch size whose suggested rate ends lowest (the grid's ranking), and that rate's summary."""
        chosen = [(b, s) for b, grid in self.sizes.items() for s in grid.summaries
                  if s.lr == grid.suggested_lr and math.isfinite(s.median)]
        if not chosen:
            return None
        top = rank([s for _, s in chosen])[0]
        return next((b, s) for b, s in chosen if s is top)

    def metrics(self) -> dict[str, Any]:
        best = self.best()
        return batch_metrics(best[1].lr if best else None, best[0] if best else None,
                             best[1].median if best else None, self.scaling.exponent,
                             [d["code"] for d in self.diagnosis()])

    def diagnosis(self) -> list[dict[str, Any]]:
        """The runs' findings, pooled as the grid pools them: slow convergence below a batch size's suggested rate
        is expected, and a finding's own rate advice gives way to that batch size's suggestion."""
        suggested = {b: grid.suggested_lr for b, grid in self.sizes.items()}

        def keep(run: Any, finding: Any) -> bool:
            lr = suggested.get(run.spec.changed().get("batch_size", 0))
            return not (lr is not None and (run.spec.optim.lr or 0) < lr and finding.code in EXPECTED_IN_A_SWEEP)

        pooled = pooled_diagnosis([r for grid in self.sizes.values() for rs in grid.runs.values() for r in rs],
                                  keep=keep)
        answer = "; ".join(f"batch {b}: --lr {lr:.3g}" for b, lr in suggested.items() if lr is not None)
        for entry in pooled:
            if answer:
                entry["suggestion"] = re.sub(r"try --lr [0-9.e+-]+", f"use the rate this sweep suggests for each "
                                             f"batch size — {answer} —",
                                             entry.get("suggestion") or "")
        return pooled


def batch_metrics(lr: Optional[float], size: Optional[int], loss: Optional[float], exponent: Optional[float],
                  diagnosis: list[str]) -> dict[str, Any]:
    return {"suggested_lr": lr, "suggested_batch_size": size, "best_final_loss": loss, "scaling_exponent": exponent,
            "diagnosis": diagnosis}


def check_sizes(sizes: Sequence[Optional[int]], samples: int) -> None:
    """Refuse batch sizes that cut an epoch the same way: every size at or above the training rows is one full
    batch."""
    full = [b for b in sizes if b is not None and Plan(samples, b).full_batch]
    if len(full) > 1:
        raise ConfigError("--batch-sizes", f"{' and '.join(map(str, full))} each cover the {samples:,} training rows "
                          f"(one full batch per epoch): keep one of them, or sizes below {samples:,}")


def batch_sweep(cfg: SweepConfig, problem: AnyProblem, events: Consumer = Consumer()) -> BatchSizesResult:
    """Every rate at every batch size on each seed, in one call: the same initial weights and batch order per seed
    (a seed's order is one permutation per epoch, cut into each size's batches)."""
    started = time.perf_counter()
    cfg = cfg.resolved()
    sizes = [b for b in cfg.sizes() if b is not None]
    check_sizes(sizes, problem.n)
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    target = cfg.target if cfg.target is not None else default_target(problem)
    specs = [RunSpec(size_label(lr, b), replace(cfg.run.optim, lr=lr), seed, changes=(("train.batch_size", b),))
             for b in sizes for seed in seeds for lr in cfg.grid()]
    results, interrupted = run_trials(problem, specs, events, vectorize=cfg.vectorize, executor=cfg.executor)
    grids: dict[int, GridResult] = {}
    for b in sizes:
        runs = {lr_label(lr): [r for r in results if r.spec.group == size_label(lr, b)] for lr in cfg.grid()}
        summaries, suggestion, stable, status = settled(cfg, problem, runs, set(cfg.grid()), target, interrupted)
        grids[b] = GridResult(cfg, status, summaries, runs, suggestion.lr, stable, target,
                              any(r.stacked_with > 1 for rs in runs.values() for r in rs), 0.0,
                              str(problem.device), problem.data.source, suggestion=suggestion)
    scaling = Scaling.fit([(b, g.suggested_lr) for b, g in grids.items() if g.suggested_lr is not None], cfg.grid())
    return BatchSizesResult(cfg, _status(interrupted, list(grids.values()), results), grids, scaling, target,
                            problem.n, time.perf_counter() - started, any(r.stacked_with > 1 for r in results),
                            str(problem.device), problem.data.source, problem.unstacked, versions())


def _status(interrupted: bool, grids: Sequence[GridResult], results: Sequence[RunResult]) -> str:
    if interrupted:
        return "interrupted"
    if any(g.status == "ok" for g in grids):
        return "ok"
    return "failed" if all(r.status == "error" for r in results) else "diverged"


def batch_document(result: BatchSizesResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lr-sweep --batch-sizes`."""
    task = result.config.task
    best = result.best()
    return {
        "command": "lr-sweep", "mode": "batch-sizes", "status": result.status, "task": task,
        "config": result.config.to_dict(),
        **result.metrics(),
        "target": result.target, "vectorized": result.vectorized,
        "batch_sizes": [{"batch_size": b, "steps_per_epoch": Plan(result.samples, b).batches,
                         "suggested_lr": g.suggested_lr, "largest_stable_lr": g.largest_stable_lr,
                         "best_final_loss": next((s.median for s in g.summaries if s.lr == g.suggested_lr), None),
                         "rates": rates_document(g.summaries)} for b, g in result.sizes.items()],
        "scaling": result.scaling.document(),
        **entries_document({entry_name({"lr": s.lr, "batch_size": b}, ["lr", "batch_size"]): {**doc, "runs": [
            run_document(r, task, result.target) for r in g.runs[s.name]]}
            for b, g in result.sizes.items() for s, doc in zip(g.summaries, rates_document(g.summaries))},
            ["lr", "batch_size"]),
        "results": [run_document(r, task, result.target) for g in result.sizes.values() for s in g.summaries
                    for r in g.runs[s.name]],
        "diagnosis": result.diagnosis(),
        "data": result.data_source, "device": result.device, "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []), "versions": result.versions,
        "one_by_one": result.one_by_one, "best": None if best is None else {"batch_size": best[0], "lr": best[1].lr},
    }


def _cell(summary: Summary, chosen: bool) -> str:
    if not math.isfinite(summary.median):
        return "diverged" if summary.diverged else "failed" if summary.errors else "—"
    return f"{summary.median:.4g}" + (" ←" if chosen else "")


def loss_name(task: str) -> str:
    return "final training loss" if task == "regression" else "final validation loss"


def batch_report(result: BatchSizesResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    cfg = result.config
    sizes = list(result.sizes)
    grids = list(result.sizes.values())
    rows, marked = [], set()
    for i, lr in enumerate(cfg.grid()):
        row = [f"{lr:.3g}"]
        for j, grid in enumerate(grids, 1):
            summary = grid.summaries[i]
            row.append(_cell(summary, lr == grid.suggested_lr))
            if lr == grid.suggested_lr:
                marked.add((i, j))
        rows.append(row)
    title = (f"losslab lr-sweep: {result.status} — {cfg.run.optim.name}, {len(cfg.grid())} rates × {len(sizes)} "
             f"batch sizes × {counted(cfg.seeds, 'seed')} × {cfg.run.train.epochs} epochs in {result.elapsed_s:.1f} s "
             f"({'vectorized' if result.vectorized else 'sequential'})")
    loss = loss_name(cfg.task)
    grid_notes = [f"data: {result.data_source}",
                  f"cells: the median {loss} over seeds at each rate (rows) and batch size (columns); ← each batch "
                  "size's suggested rate (the grid's rule: lowest median loss, kept a margin below where training "
                  "broke)",
                  f"every batch size trains {cfg.run.train.epochs:,} epochs: a smaller batch takes more steps per "
                  "epoch"]
    heat = Report(title, ["lr", *(f"batch {b}" for b in sizes)], rows, grid_notes, marked)
    return [heat, scaling_report(result, outcomes)]


def scaling_report(result: BatchSizesResult, outcomes: Sequence[Outcome]) -> Report:
    rules = [(name, alpha) for name, alpha in RULES]
    rows, best_cells = [], set()
    best = result.best()
    for i, (b, grid) in enumerate(result.sizes.items()):
        summary = next((s for s in grid.summaries if s.lr == grid.suggested_lr), None)
        rows.append([f"{b}", f"{Plan(result.samples, b).batches:,}", fmt(grid.suggested_lr, ".3g"),
                     fmt(grid.largest_stable_lr, ".3g"), fmt(summary.median if summary else None, ".4g"),
                     *(fmt(result.scaling.predicted(alpha, b), ".3g") for _, alpha in rules)])
        if best is not None and best[0] == b:
            best_cells.update({(i, 0), (i, 2)})
    notes = [result.scaling.describe(),
             "steps: optimizer steps per epoch; best lr: the grid's suggested rate; stable: the largest stable rate; "
             "linear and sqrt: the smallest batch size's best rate scaled by (batch / smallest) and by "
             "√(batch / smallest)",
             f"median loss: the suggested rate's median {loss_name(result.config.task)} over seeds"]
    if best is not None:
        notes.append(f"best: batch size {best[0]} at --lr {best[1].lr:.3g} (lowest median loss of the suggested rates)")
    notes += one_by_one_notes(result.one_by_one)
    notes.append(GRID_VS_RANGE)
    if result.status == "interrupted":
        notes.append("interrupted: unfinished runs rank last and are marked in the JSON.")
    notes += pooled_notes(result.diagnosis())
    notes += [o.describe() for o in outcomes]
    return Report("best rate per batch size",
                  ["batch", "steps", "best lr", "stable", "median loss", "linear", "sqrt"], rows, notes,
                  best_cells)


def batch_plots(result: BatchSizesResult) -> list[Plot]:
    cfg = result.config
    ylabel = loss_name(cfg.task)

    def sweep(path: Any) -> None:
        from losslab.outputs.plots import loss_vs_lr

        points = {f"batch {b}": [(s.lr, s.median) for s in g.summaries] for b, g in result.sizes.items()}
        marks = {f"batch {b}": g.suggested_lr for b, g in result.sizes.items() if g.suggested_lr is not None}
        loss_vs_lr(points, path, title=f"lr-sweep: {cfg.run.optim.name}, {cfg.run.train.epochs} epochs, median over "
                   + counted(cfg.seeds, 'seed'), marks=marks, ylabel=ylabel)

    def heat(path: Any) -> None:
        from losslab.outputs.plots import heat_map

        values = [[s.median for s in g.summaries] for g in result.sizes.values()]
        best = [next((i for i, s in enumerate(g.summaries) if s.lr == g.suggested_lr), None)
                for g in result.sizes.values()]
        heat_map(values, list(cfg.grid()), [f"{b}" for b in result.sizes], path, best,
                 title=f"median {ylabel}: rate × batch size (○ suggested)", ylabel="batch size")

    return list(zip(BATCH_PLOTS, [sweep, heat]))


def batch_curves(result: BatchSizesResult) -> str:
    from losslab.outputs.terminal_plot import curves

    series = [(f"batch {b}", [s.lr for s in g.summaries if math.isfinite(s.median)],
               [s.median for s in g.summaries if math.isfinite(s.median)]) for b, g in result.sizes.items()]
    return curves([s for s in series if s[1]], title="final loss against the learning rate per batch size",
                  xlabel="learning rate", logx=True)
