"""`losslab regress`: fit nn.Linear to regression data and compare the learned w, b with the truth and the exact
least-squares optimum."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from losslab.commands.common import (
    DIAGNOSIS_CHOICES,
    Output,
    Plot,
    Where,
    check_gates,
    check_outputs,
    clipping_note,
    context,
    diagnosis_notes,
    finish,
    layers_document,
    model_notes,
    optimizer_document,
    optimizer_notes,
    sharpness_plots,
)
from losslab.config import RegressConfig
from losslab.engine.events import Consumer
from losslab.engine.problems import RegressionProblem
from losslab.engine.runs import RunSpec, Start, execute, run_info
from losslab.expect import Outcome, check_names
from losslab.objects import shown
from losslab.outputs import dispatcher
from losslab.outputs.display import Column, ProgressDisplay, Report, epoch_columns, fmt, make_console, status_notes
from losslab.outputs.files import outcomes_document, versions

COMMAND = "regress"
PLOTS = ("loss.png",)


@dataclass
class RegressResult:
    config: RegressConfig
    status: str
    records: list[dict[str, Any]]
    epochs_run: int
    final_loss: float
    params: dict[str, float]
    true_params: Optional[dict[str, float]]
    optimum: dict[str, Any]  # {"params": {...}, "loss": float}
    elapsed_s: float
    device: str
    data_source: str
    diverged_epoch: Optional[int] = None
    versions: dict[str, str] = field(default_factory=dict)
    diagnosis: list[Any] = field(default_factory=list)  # engine.diagnosis.Finding
    scaling: Any = None  # components.regression_data.Scaling when trained on standardised columns
    notes: list[str] = field(default_factory=list)  # what the report says of a user's model
    optimizer: dict[str, Any] = field(default_factory=dict)  # common.optimizer_document
    model: Any = None  # the trained model (the Python API returns it; no document holds it)
    error: Optional[str] = None  # why training failed (status "error")

    def metrics(self) -> dict[str, Any]:
        """Flat names that `--expect` can test."""
        return metrics(self.params, self.optimum, self.final_loss, self.epochs_run, self.elapsed_s,
                       [f.code for f in self.diagnosis])


def metrics(params: dict[str, float], optimum: dict[str, Any], final_loss: float, epochs_run: int,
            elapsed_s: float, diagnosis: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(params)
    out.update(final_loss=final_loss, epochs_run=epochs_run, elapsed_s=elapsed_s, optimum_loss=optimum["loss"],
               diagnosis=diagnosis)
    for name, value in params.items():
        out[f"{name}_error"] = abs(value - optimum["params"][name])
    return out


def metric_names(problem: RegressionProblem) -> list[str]:
    """The names `metrics` reports for this problem, known before training."""
    return list(metrics({n: math.nan for n in problem.tracked}, problem.optimum, math.nan, 0, 0.0, []))


def run(cfg: RegressConfig, events: Consumer = Consumer(),
        problem: Optional[RegressionProblem] = None) -> RegressResult:
    """Fit nn.Linear to the regression data with the configured loss and optimizer."""
    cfg = cfg.resolved()
    problem = problem or RegressionProblem(cfg)
    spec = RunSpec("run", cfg.optim, cfg.train.seed)
    model = problem.new_model(spec.seed)  # (kept: --save writes it)
    result = execute(problem, spec, events, info=run_info(problem, spec), start=Start(model), single=True)
    if cfg.save is not None and result.status in ("ok", "interrupted") and result.records:
        save(cfg.save, problem, model, result.records[-1]["epoch"])
    final = result.metrics
    return RegressResult(
        config=cfg, status=result.status, records=result.records, epochs_run=result.epochs_run,
        final_loss=final.get("final_loss", math.nan), params=final.get("params", {}),
        true_params=problem.true_params, optimum=problem.optimum, elapsed_s=result.elapsed_s,
        device=str(problem.device), data_source=problem.data.source, diverged_epoch=result.diverged_epoch,
        versions=versions(), diagnosis=result.diagnosis, scaling=problem.scaling, notes=model_notes(problem),
        error=result.error, model=model, optimizer=optimizer_document(cfg.optim, model, result),
    )


def save(path: str, problem: RegressionProblem, model: Any, epoch: int) -> None:
    """A checkpoint `losslab predict` reads: the weights, how to build the model, the standardisation."""
    from losslab.engine.checkpoints import FORMAT, model_entry
    from losslab.outputs.files import atomic_write
    from losslab.version import __version__

    content = {"format": FORMAT, "losslab": __version__, "epoch": epoch, **model_entry(problem),
               "config": problem.cfg.to_dict(), "state_dict": model.state_dict()}
    import torch

    atomic_write(Path(path), lambda tmp: torch.save(content, tmp))


def document(result: RegressResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab regress`."""
    return {
        "command": "regress",
        "status": result.status,
        "config": result.config.to_dict(),
        "final_loss": result.final_loss,
        "epochs_run": result.epochs_run,
        "diverged_epoch": result.diverged_epoch,
        "params": result.params,
        "true_params": result.true_params,
        "optimum": result.optimum,
        "data": result.data_source,
        "standardization": result.scaling.to_dict() if result.scaling is not None else None,
        "notes": result.notes,
        "optimizer": result.optimizer,
        "error": result.error,
        "device": result.device,
        "elapsed_s": result.elapsed_s,
        "diagnosis": [f.to_dict() for f in result.diagnosis],
        "layers": layers_document(result.records),
        "expectations": outcomes_document(outcomes or []),
        "versions": result.versions,
    }


def report(result: RegressResult, outcomes: Sequence[Outcome] = ()) -> Report:
    cfg = result.config
    rows = []
    for name, value in result.params.items():
        true = result.true_params.get(name) if result.true_params else None
        opt = result.optimum["params"][name]
        rows.append([name, fmt(value), fmt(true), fmt(opt), fmt(abs(value - opt), ".2e")])
    rows.append(["loss", fmt(result.final_loss), "—", fmt(result.optimum["loss"]),
                 fmt(abs(result.final_loss - result.optimum["loss"]), ".2e")])
    lr = fmt(cfg.optim.lr, "g")
    title = (f"losslab regress: {result.status} — {result.epochs_run} epochs in {result.elapsed_s:.2f} s "
             f"({cfg.optim.name}, lr {lr}, {cfg.loss.name} loss, {result.device})")
    notes = [f"data: {result.data_source}"]
    if not cfg.linear:
        notes.append(f"model: {shown(cfg.model)} (yours); least-squares is the best linear model, for reference")
    notes += result.notes
    notes += optimizer_notes(result.optimizer)
    if result.scaling is not None:
        notes.append(result.scaling.describe())
    if cfg.loss.name != "mse":
        notes.append(f"note: the least-squares optimum minimises MSE; its {cfg.loss.name} loss is shown for "
                     "comparison.")
    notes += status_notes(result)
    notes += clipping_note(result.records, cfg.train)
    notes += diagnosis_notes(result.diagnosis)
    notes += [o.describe() for o in outcomes]
    return Report(title, ["param", "learned", "true", "least-squares", "|learned − optimum|"], rows, notes)


def plots(result: RegressResult) -> list[Plot]:
    cfg = result.config

    def draw(path: Any) -> None:
        from losslab.outputs.plots import loss_curve

        loss_curve(result.records, path, title=f"regress: {cfg.optim.name}, lr {cfg.optim.lr:g}, {cfg.loss.name}",
                   reference=result.optimum["loss"])

    return list(zip(PLOTS, [draw])) + sharpness_plots(result.records, f"sharpness: regress, {cfg.optim.name}, lr "
                                                                       f"{cfg.optim.lr:g}")


def terminal_curves(result: RegressResult) -> str:
    from losslab.outputs.terminal_plot import curves

    epochs = [float(r["epoch"]) for r in result.records]
    return curves([("train", epochs, [r["train_loss"] for r in result.records])], title="training loss",
                  xlabel="epoch")


def experiment(cfg: RegressConfig, *, json_out: bool = False, quiet: bool = False) -> tuple[Output, Where]:
    """The command's checks, training and results, up to its outputs (what the CLI and the Python API share)."""
    cfg = cfg.resolved()
    # validate everything that can be checked before training
    check_outputs(cfg, PLOTS)
    problem = RegressionProblem(cfg)
    check_names(cfg.gates.expect, metric_names(problem), DIAGNOSIS_CHOICES)

    console = make_console(stderr=json_out)
    progress = ProgressDisplay(console, epoch_columns([Column(n, n) for n in problem.tracked]), quiet=quiet)
    events = dispatcher(context(COMMAND, cfg, json_out, quiet), [progress])
    result = run(cfg, events, problem)
    outcomes = check_gates(cfg.gates, result.status, result.metrics())
    return (Output(document(result, outcomes), report(result, outcomes), result.records, outcomes,
                         result.status, plots(result), lambda: terminal_curves(result), result=result),
                   Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def main(cfg: RegressConfig, *, json_out: bool, quiet: bool) -> int:
    return finish(*experiment(cfg, json_out=json_out, quiet=quiet))
