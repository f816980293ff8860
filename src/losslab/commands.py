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

    for part in report if isinstance(report, (list, tuple)) else [report]:
        part.render(console)
    if out is not None:
        write_run_files(out, document, records, plots)
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
