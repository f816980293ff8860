"""`losslab lr-sweep`: a learning-rate grid of short training runs (stacked into one batched computation where
supported), or the LR range test (Smith 2015; as in fastai's and Lightning's lr_find) with its suggestions.

The grid lives in `grid`, the range test and its suggestions (pure functions of the recorded curve) in `range`;
the range test's mechanics in `engine.range_test`, drawing in `outputs.plots`. Here: the command's entry.
"""

from __future__ import annotations

from typing import Any

from losslab.commands.common import (
    DIAGNOSIS_CHOICES,
    Output,
    Where,
    check_gates,
    check_outputs,
    context,
    finish,
    run_records,
)
from losslab.commands.lr_sweep.batch_sizes import (
    BATCH_PLOTS,
    BatchSizesResult,
    Scaling,
    batch_curves,
    batch_document,
    batch_metrics,
    batch_plots,
    batch_report,
    batch_sweep,
    group_labels,
)
from losslab.commands.lr_sweep.grid import (  # (the grid's API)
    GRID_PLOTS,
    GridResult,
    grid_curves,
    grid_document,
    grid_metrics,
    grid_plots,
    grid_report,
    grid_sweep,
    lr_label,
)
from losslab.commands.lr_sweep.range import (  # (the range test's API)
    RANGE_PLOTS,
    SUGGESTERS,
    RangeResult,
    RangeRun,
    lightning,
    min_loss_tenth,
    range_curves,
    range_document,
    range_metrics,
    range_plots,
    range_records,
    range_report,
    range_test,
    steepest,
    suggestions,
    valley,
)
from losslab.config import SweepConfig
from losslab.engine.problems import AnyProblem, build_problem
from losslab.engine.range_test import schedule
from losslab.expect import check_names
from losslab.outputs import OutputContext, dispatcher
from losslab.outputs.display import RangeDisplay, TrialsDisplay, make_console, say
from losslab.stats import loss_key

__all__ = [
    "BATCH_PLOTS",
    "BatchSizesResult",
    "COMMAND",
    "GRID_PLOTS",
    "GridResult",
    "RANGE_PLOTS",
    "RangeResult",
    "RangeRun",
    "SUGGESTERS",
    "Scaling",
    "batch_curves",
    "batch_document",
    "batch_plots",
    "batch_report",
    "batch_sweep",
    "grid_curves",
    "grid_document",
    "grid_metrics",
    "grid_plots",
    "grid_report",
    "grid_sweep",
    "lightning",
    "main",
    "metric_names",
    "min_loss_tenth",
    "range_curves",
    "range_document",
    "range_metrics",
    "range_plots",
    "range_records",
    "range_report",
    "range_test",
    "steepest",
    "suggestions",
    "valley",
]

COMMAND = "lr-sweep"




def metric_names(cfg: SweepConfig) -> list[str]:
    """The names the sweep's `metrics` report, known before training."""
    if cfg.range_test:
        return list(range_metrics(None, True, {name: None for name in SUGGESTERS}))
    if cfg.batch_sizes:
        return list(batch_metrics(None, None, None, None, []))
    return list(grid_metrics(None, None, None, []))


def experiment(cfg: SweepConfig, *, json_out: bool = False, quiet: bool = False) -> tuple[Output, Where]:
    """The command's checks, training and results, up to its outputs (what the CLI and the Python API share)."""
    cfg = cfg.resolved()
    plots = RANGE_PLOTS if cfg.range_test else BATCH_PLOTS if cfg.batch_sizes else GRID_PLOTS
    check_outputs(cfg, plots)
    problem = build_problem(cfg.run)
    check_names(cfg.gates.expect, metric_names(cfg), DIAGNOSIS_CHOICES)
    console = make_console(stderr=json_out)
    ctx = context(COMMAND, cfg, json_out, quiet)

    if cfg.range_test:
        progress = RangeDisplay(console, schedule(*cfg.lr_range, cfg.steps, cfg.mode), cfg.seeds, quiet=quiet)

        def on_seed(run: RangeRun, done: int, total: int) -> None:
            if not quiet:
                say(console, f"[{done}/{total}] range test seed {run.seed}: {run.stopped} after {len(run.smoothed)} "
                    f"steps; valley {run.suggestions['valley'] or float('nan'):.3g}")

        events = dispatcher(ctx, [progress])
        with progress:
            rt = range_test(cfg, problem, events, on_seed)
        outcomes = check_gates(cfg.gates, rt.status, rt.metrics())
        return (Output(range_document(rt, outcomes), range_report(rt, outcomes), range_records(rt), outcomes,
                             rt.status, range_plots(rt), lambda: range_curves(rt), result=rt),
                       Where(console, json_out, quiet, cfg.out, cfg.plot, events))

    if cfg.batch_sizes:
        return batch_experiment(cfg, problem, ctx, console)
    display = TrialsDisplay(console, quiet=quiet, loss_key=loss_key(cfg.task), label="lr")
    display.plan([lr_label(lr) for lr in cfg.grid()], cfg.seeds)
    events = dispatcher(ctx, [display])
    with display:
        grid = grid_sweep(cfg, problem, events)
    outcomes = check_gates(cfg.gates, grid.status, grid.metrics(), loss_key="best_final_loss")
    runs = [r for rs in grid.runs.values() for r in rs]
    return (Output(grid_document(grid, outcomes), grid_report(grid, outcomes), run_records(runs, None),
                         outcomes, grid.status, grid_plots(grid), lambda: grid_curves(grid), result=grid),
                   Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def batch_experiment(cfg: SweepConfig, problem: AnyProblem, ctx: OutputContext, console: Any) -> tuple[Output, Where]:
    """The rate × batch-size grid: one live table over every (rate, batch size) group."""
    display = TrialsDisplay(console, quiet=ctx.quiet, loss_key=loss_key(cfg.task), label="lr")
    display.plan(group_labels(cfg), cfg.seeds)
    events = dispatcher(ctx, [display])
    with display:
        result = batch_sweep(cfg, problem, events)
    outcomes = check_gates(cfg.gates, result.status, result.metrics(), loss_key="best_final_loss")
    runs = [r for grid in result.sizes.values() for rs in grid.runs.values() for r in rs]
    return (Output(batch_document(result, outcomes), batch_report(result, outcomes), run_records(runs, None),
                   outcomes, result.status, batch_plots(result), lambda: batch_curves(result), result=result),
            Where(console, ctx.json_out, ctx.quiet, cfg.out, cfg.plot, events))


def main(cfg: SweepConfig, *, json_out: bool, quiet: bool) -> int:
    return finish(*experiment(cfg, json_out=json_out, quiet=quiet))
