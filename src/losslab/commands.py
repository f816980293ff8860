"""What each CLI command does after parsing: run the experiment, show it, write results, pick the exit code.

Shared by all commands so that display, JSON, files and gates behave the same everywhere.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, Sequence

from losslab.config import ClassifyConfig, RegressConfig, check_out_dir
from losslab.errors import ExitCode
from losslab.expect import Outcome, check_names, evaluate


def exit_code(status: str, outcomes: Sequence[Outcome]) -> int:
    if status == "interrupted":
        return ExitCode.INTERRUPTED
    if status == "diverged":
        return ExitCode.DIVERGED
    if any(not o.passed for o in outcomes):
        return ExitCode.EXPECTATION_FAILED
    return ExitCode.OK


def finish(*, document: Mapping[str, Any], report: Any, records: list[dict[str, Any]], outcomes: Sequence[Outcome],
           status: str, json_out: bool, console: Any, out: str | None,
           plots: Sequence[tuple[str, Callable[..., None]]] = ()) -> int:
    """Report, JSON, result files and exit code: the common tail of every command."""
    from losslab.display import print_failures
    from losslab.results import dumps, write_run_files

    if out is not None:  # files first: a closed pipe on stdout must not lose what the user asked to keep
        write_run_files(out, document, records, plots)
    for part in report if isinstance(report, (list, tuple)) else [report]:
        part.render(console)
    if out is not None:
        print(f"results written to {out}/", file=console.file, flush=True)
    if json_out:
        sys.stdout.write(dumps(document))
        sys.stdout.flush()
    print_failures(outcomes)
    return int(exit_code(status, outcomes))


def run_regress(cfg: RegressConfig, *, json_out: bool, quiet: bool) -> int:
    from losslab.callbacks import History
    from losslab.display import Column, ProgressDisplay, epoch_columns, make_console, regress_report
    from losslab.experiments import load_regression_data, regress, regress_metric_names
    from losslab.results import regress_document

    # validate everything that can be checked before the (slow) torch import and training
    check_out_dir(cfg.out)
    data = load_regression_data(cfg)
    check_names(cfg.gates.expect, regress_metric_names(data))

    console = make_console(stderr=json_out)
    progress = ProgressDisplay(console, epoch_columns([Column(n, n) for n in data.param_names]), quiet=quiet)
    result = regress(cfg, data=data, callbacks=[History(), progress])

    outcomes = evaluate(cfg.gates.expect, result.metrics(), cfg.gates.target_loss) \
        if result.status != "interrupted" else []
    document = regress_document(result, outcomes)

    def draw(path: Any) -> None:
        from losslab.plots import loss_curve

        loss_curve(result.records, path, title=f"regress: {cfg.optim.name}, lr {cfg.optim.lr:g}, {cfg.loss.name}",
                   reference=result.optimum["loss"])

    return finish(document=document, report=regress_report(result, outcomes), records=result.records,
                  outcomes=outcomes, status=result.status, json_out=json_out, console=console, out=cfg.out,
                  plots=[("loss.png", draw)])


def run_classify(cfg: ClassifyConfig, *, json_out: bool, quiet: bool) -> int:
    from losslab.callbacks import History
    from losslab.datasets import load_classification
    from losslab.display import ProgressDisplay, classify_columns, classify_report, make_console
    from losslab.experiments import classify, classify_metric_names
    from losslab.results import classify_document

    check_out_dir(cfg.out)
    data = load_classification(cfg.data)
    check_names(cfg.gates.expect, classify_metric_names(data.classes))

    console = make_console(stderr=json_out)
    progress = ProgressDisplay(console, classify_columns(), quiet=quiet, max_rows=20)
    result = classify(cfg, data=data, callbacks=[History(), progress])

    outcomes = evaluate(cfg.gates.expect, result.metrics(), cfg.gates.target_loss) \
        if result.status != "interrupted" else []
    document = classify_document(result, outcomes)

    def curves(path: Any) -> None:
        from losslab.plots import classification_curves

        classification_curves(result.records, path, title=f"classify: {cfg.data.dataset}, {cfg.model.name}, "
                              f"{cfg.optim.name} lr {cfg.optim.lr:g}", best_epoch=result.best_epoch)

    def confusion(path: Any) -> None:
        from losslab.plots import confusion_matrix

        confusion_matrix(result.confusion, result.classes, path, title=f"{cfg.data.dataset}: accuracy "
                         f"{result.accuracy:.4f}")

    return finish(document=document, report=classify_report(result, outcomes), records=result.records,
                  outcomes=outcomes, status=result.status, json_out=json_out, console=console, out=cfg.out,
                  plots=[("curves.png", curves), ("confusion.png", confusion)])


def build_problem(run_cfg: Any) -> tuple[Any, list[str]]:
    """The prepared problem of a regress or classify config, and the names of its parameters (regress)."""
    if isinstance(run_cfg, ClassifyConfig):
        from losslab.datasets import load_classification
        from losslab.problems import ClassificationProblem

        return ClassificationProblem(run_cfg, load_classification(run_cfg.data)), []
    from losslab.experiments import load_regression_data
    from losslab.problems import RegressionProblem

    data = load_regression_data(run_cfg)
    return RegressionProblem(run_cfg, data), data.param_names


def run_compare(cfg: Any, *, json_out: bool, quiet: bool) -> int:
    from losslab.compare import compare_metric_names, compare_optimizers
    from losslab.display import TrialsDisplay, compare_report, make_console
    from losslab.results import compare_document, trial_records

    check_out_dir(cfg.out)
    problem, names = build_problem(cfg.run)
    check_names(cfg.gates.expect, compare_metric_names(cfg, names))

    console = make_console(stderr=json_out)
    loss_key = "train_loss" if cfg.task == "regression" else "valid_loss"
    display = TrialsDisplay(console, quiet=quiet, loss_key=loss_key)
    display.plan(list(cfg.optims), cfg.seeds)
    with display:
        result = compare_optimizers(cfg, problem, observer=display)

    outcomes = evaluate(cfg.gates.expect, result.metrics()) if result.status != "interrupted" else []
    document = compare_document(result, outcomes)
    runs = [r for rs in result.runs.values() for r in rs]

    def curves(path: Any) -> None:
        from losslab.plots import median_curves

        data = {s.name: [[rec[loss_key] for rec in r.records if loss_key in rec] for r in result.runs[s.name]]
                for s in result.summaries}
        median_curves(data, path, title=f"compare-optimizers: {cfg.task}, {cfg.seeds} seeds",
                      ylabel="training loss" if loss_key == "train_loss" else "validation loss")

    def tuning(path: Any) -> None:
        from losslab.plots import loss_vs_lr

        points = {n: [(row["lr"], row["final_loss"]) for row in rows] for n, rows in result.tuning["results"].items()}
        loss_vs_lr(points, path, title=f"tuning on seed {result.tuning['seed']}", marks=result.tuning["chosen"])

    plots = [("curves.png", curves)] + ([("tuning.png", tuning)] if result.tuning else [])
    # one trial diverging is a result, not a failure: exit 3 only when every run diverged
    return finish(document=document, report=compare_report(result, outcomes), records=trial_records(runs, "optimizer"),
                  outcomes=outcomes, status=result.status, json_out=json_out, console=console, out=cfg.out,
                  plots=plots)


def run_sweep(cfg: Any, *, json_out: bool, quiet: bool) -> int:
    from losslab.display import TrialsDisplay, grid_report, make_console, range_report
    from losslab.results import grid_document, range_document, range_records, trial_records
    from losslab.sweep import grid_sweep, lr_label, range_test

    check_out_dir(cfg.out)
    problem, _ = build_problem(cfg.run)
    names = ["suggested_lr", "largest_stable_lr", "best_final_loss"] if not cfg.range_test else \
        ["suggested_lr", "valley_lr", "steepest_lr", "min_loss_10_lr", "state_unchanged"]
    check_names(cfg.gates.expect, names)
    console = make_console(stderr=json_out)

    if cfg.range_test:
        def progress(run: Any, done: int, total: int) -> None:
            if not quiet:
                print(f"[{done}/{total}] range test seed {run.seed}: {run.stopped} after {len(run.smoothed)} steps; "
                      f"valley {run.suggestions['valley'] or float('nan'):.3g}", file=console.file, flush=True)

        result: Any = range_test(cfg, problem, progress)
        outcomes = evaluate(cfg.gates.expect, result.metrics()) if result.status != "interrupted" else []

        def draw(path: Any) -> None:
            from losslab.plots import range_test_plot

            range_test_plot([(r.lrs, r.smoothed) for r in result.runs], path,
                            {k: v["median"] for k, v in result.suggestions.items()},
                            title=f"LR range test: {cfg.run.optim.name}, {len(result.runs)} seed(s)")

        return finish(document=range_document(result, outcomes), report=range_report(result, outcomes),
                      records=range_records(result), outcomes=outcomes, status=result.status, json_out=json_out,
                      console=console, out=cfg.out, plots=[("range_test.png", draw)])

    loss_key = "train_loss" if cfg.task == "regression" else "valid_loss"
    display = TrialsDisplay(console, quiet=quiet, loss_key=loss_key, label="lr")
    display.plan([lr_label(lr) for lr in cfg.grid()], cfg.seeds)
    with display:
        result = grid_sweep(cfg, problem, observer=display)
    outcomes = evaluate(cfg.gates.expect, result.metrics()) if result.status != "interrupted" else []
    runs = [r for rs in result.runs.values() for r in rs]

    def sweep(path: Any) -> None:
        from losslab.plots import sweep_plot

        sweep_plot([(r.trial.optim.lr, r.score, r.status) for r in runs], path, result.suggested_lr,
                   title=f"lr-sweep: {cfg.run.optim.name}, {cfg.run.train.epochs} epochs",
                   ylabel="final loss" if cfg.task == "regression" else "final validation loss")

    return finish(document=grid_document(result, outcomes), report=grid_report(result, outcomes),
                  records=trial_records(runs, None), outcomes=outcomes, status=result.status, json_out=json_out,
                  console=console, out=cfg.out, plots=[("sweep.png", sweep)])
