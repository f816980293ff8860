"""`losslab classify`: train a classifier with per-epoch validation, early stopping and checkpoints; report
accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

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
from losslab.config import ClassifyConfig, ModelConfig
from losslab.engine.events import BestEpoch, Consumer, Dispatcher
from losslab.engine.loop import batch_generator
from losslab.engine.problems import ClassificationProblem
from losslab.engine.runs import RunSpec, Start, execute, run_info
from losslab.errors import USER_ERRORS, ConfigError
from losslab.expect import Outcome, check_names
from losslab.outputs import dispatcher
from losslab.outputs.display import ProgressDisplay, Report, classify_columns, fmt, make_console, status_notes
from losslab.outputs.files import atomic_write, outcomes_document, versions

COMMAND = "classify"
PLOTS = ("curves.png", "confusion.png")


@dataclass
class ClassifyResult:
    config: ClassifyConfig
    status: str
    records: list[dict[str, Any]]
    epochs_run: int
    best_epoch: Optional[int]
    accuracy: float
    valid_loss: float
    per_class_accuracy: dict[str, Optional[float]]
    confusion: list[list[int]]
    classes: list[str]
    elapsed_s: float
    device: str
    data_source: str
    split: str
    restored_best: bool = False
    resumed_from: Optional[int] = None
    notes: list[str] = field(default_factory=list)
    optimizer: dict[str, Any] = field(default_factory=dict)  # common.optimizer_document
    diverged_epoch: Optional[int] = None
    versions: dict[str, str] = field(default_factory=dict)
    diagnosis: list[Any] = field(default_factory=list)  # engine.diagnosis.Finding
    error: Optional[str] = None  # why training failed (status "error")
    model: Any = None  # the trained model (the Python API returns it; no document holds it)

    def metrics(self) -> dict[str, Any]:
        last = self.records[-1] if self.records else {}
        return metrics(self.accuracy, self.valid_loss, self.best_epoch, self.epochs_run, self.elapsed_s,
                       last.get("train_loss"), self.per_class_accuracy, [f.code for f in self.diagnosis])


def metrics(accuracy: float, valid_loss: float, best_epoch: Optional[int], epochs_run: int, elapsed_s: float,
            train_loss: Optional[float], per_class_accuracy: dict[str, Optional[float]],
            diagnosis: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"accuracy": accuracy, "valid_loss": valid_loss, "final_loss": valid_loss,
                           "best_epoch": best_epoch, "epochs_run": epochs_run, "elapsed_s": elapsed_s,
                           "train_loss": train_loss, "diagnosis": diagnosis}
    for name, acc in per_class_accuracy.items():
        out[f"accuracy_{name}"] = acc
    return out


def metric_names(problem: ClassificationProblem) -> list[str]:
    """The names `metrics` reports for this problem, known before training."""
    return list(metrics(math.nan, math.nan, None, 0, 0.0, None, {c: None for c in problem.data.classes}, []))


# --- checkpoints ---------------------------------------------------------------------------------

def checkpoint(problem: ClassificationProblem, model: Any, optimizer: Any, epoch: int,
               generator: Any) -> dict[str, Any]:
    """What --resume continues from and `losslab predict` predicts with."""
    from losslab.engine.checkpoints import FORMAT, model_entry
    from losslab.version import __version__

    cfg = problem.cfg
    return {"format": FORMAT, "losslab": __version__, "epoch": epoch, **model_entry(problem),
            "dataset": cfg.data.dataset, "optim": cfg.optim.name,
            "config": cfg.to_dict(), "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state()}


def save_checkpoint(path: str, content: dict[str, Any]) -> None:
    import torch

    atomic_write(Path(path), lambda tmp: torch.save(content, tmp))


def load_checkpoint(path: str, cfg: ClassifyConfig, data: Any) -> dict[str, Any]:
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except USER_ERRORS as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")
        raise ConfigError("--resume", f"cannot read checkpoint {path} as plain data (weights_only): "
                          f"{type(exc).__name__}: {why}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "losslab-checkpoint-1":
        raise ConfigError("--resume", f"{path} is not a losslab checkpoint")
    ckpt.setdefault("architecture", ModelConfig().architecture())  # checkpoints from before --depth etc.
    kinds = {"epoch": int, "model": str, "hidden": int, "input_shape": list, "classes": list, "optim": str,
             "state_dict": dict, "optimizer": dict, "generator": torch.Tensor}
    for key, kind in kinds.items():
        if key not in ckpt:
            raise ConfigError("--resume", f"checkpoint {path} has no {key!r} (damaged, or not written by losslab)")
        if not isinstance(ckpt[key], kind) or (kind is int and isinstance(ckpt[key], bool)):
            raise ConfigError("--resume", f"checkpoint {path}: {key!r} is a {type(ckpt[key]).__name__}, expected "
                              f"{kind.__name__}")
    if ckpt["epoch"] < 0:
        raise ConfigError("--resume", f"checkpoint {path}: epoch {ckpt['epoch']} is negative")
    for key, ours in (("model", cfg.model.name), ("hidden", cfg.model.hidden),
                      ("architecture", cfg.model.architecture()),
                      ("input_shape", list(data.input_shape)), ("classes", list(data.classes))):
        if ckpt[key] != ours and not (key == "hidden" and cfg.model.name in ("logistic", "cnn")):
            raise ConfigError("--resume", f"checkpoint {key} is {ckpt[key]} but this run has {ours}")
    if ckpt["epoch"] >= cfg.train.epochs:
        raise ConfigError("--resume", f"checkpoint is already at epoch {ckpt['epoch']}; "
                          f"--epochs {cfg.train.epochs} leaves nothing to train (--epochs is the total)")
    return ckpt


def restore(ckpt: dict[str, Any], cfg: ClassifyConfig, model: Any, optimizer: Any, generator: Any) -> list[str]:
    """A checkpoint's weights, optimizer state (same optimizer only) and batch-order generator, or a one-line
    error naming --resume when any of them does not fit this run. Returns notes for the report."""
    notes = []
    part = "weights"
    try:
        model.load_state_dict(ckpt["state_dict"])
        if ckpt["optim"] == cfg.optim.name:
            part = "optimizer state"
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
            optimizer.load_state_dict(ckpt["optimizer"])
            for group, settings in zip(optimizer.param_groups, fresh):
                group.update(settings)  # this run's --lr, --momentum, ...: the options given are honoured
        else:
            notes.append(f"optimizer state not restored: checkpoint used {ckpt['optim']}, this run {cfg.optim.name}")
        part = "batch-order generator state"
        generator.set_state(ckpt["generator"])  # a resumed run sees the batches the whole run would have
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = next((line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))),
                   lines[0] if lines else "")
        raise ConfigError("--resume", f"cannot restore the checkpoint's {part} into this run: {why}") from None
    return notes


# --- the run -------------------------------------------------------------------------------------

def run(cfg: ClassifyConfig, events: Consumer = Consumer(),
        problem: Optional[ClassificationProblem] = None) -> ClassifyResult:
    """Train a classifier with per-epoch validation; report accuracy, per-class accuracy and the confusion matrix."""
    from losslab.components.optimizers import build_optimizer

    cfg = cfg.resolved()
    problem = problem or ClassificationProblem(cfg)
    data = problem.data
    ckpt = load_checkpoint(cfg.resume, cfg, data) if cfg.resume else None
    spec = RunSpec("run", cfg.optim, cfg.train.seed)
    model = problem.new_model(cfg.train.seed)
    optimizer = build_optimizer(model, cfg.optim)
    generator = batch_generator(cfg.train.seed)  # kept here: a checkpoint saves its state
    first_epoch, notes = 1, model_notes(problem)
    if ckpt is not None:
        notes += restore(ckpt, cfg, model, optimizer, generator)
        first_epoch = ckpt["epoch"] + 1

    best = BestEpoch(model, cfg.patience)
    restored = False

    def restore_best(fitted: Any) -> None:
        nonlocal restored
        if cfg.patience is not None and best.best_state is not None and fitted.status != "interrupted":
            model.load_state_dict(best.best_state)  # early stopping keeps the best weights, not the last
            restored = best.best_epoch != (fitted.records[-1]["epoch"] if fitted.records else None)

    # the best epoch is marked before any display or sink sees the record
    events = (events if isinstance(events, Dispatcher) else Dispatcher([events])).preceded_by(best)
    info = run_info(problem, spec, first_epoch=first_epoch)
    result = execute(problem, spec, events, info=info, start=Start(model, optimizer, generator, first_epoch),
                     single=True, after_fit=restore_best)
    final = result.metrics
    status = result.status
    if cfg.loss.name == "mse":
        notes.append("note: mse on one-hot targets gives weak gradients once a class probability saturates "
                     "(its gradient vanishes with the softmax); cross-entropy's gradient stays p - y, "
                     "which is why it is the usual choice.")
    last_epoch = result.records[-1]["epoch"] if result.records else first_epoch - 1
    if cfg.save is not None and status != "diverged":
        epoch = best.best_epoch if restored and best.best_epoch is not None else last_epoch
        save_checkpoint(cfg.save, checkpoint(problem, model, optimizer, epoch, generator))
    return ClassifyResult(
        config=cfg, status=status, records=result.records, epochs_run=len(result.records),
        best_epoch=best.best_epoch, accuracy=final.get("accuracy", math.nan),
        valid_loss=final.get("final_loss", math.nan), per_class_accuracy=final.get("per_class_accuracy", {}),
        confusion=final.get("confusion", []), classes=list(data.classes), elapsed_s=result.elapsed_s,
        device=str(problem.device), data_source=data.source, split=data.split, restored_best=restored,
        resumed_from=ckpt["epoch"] if ckpt else None, notes=notes, diverged_epoch=result.diverged_epoch,
        versions=versions(), diagnosis=result.diagnosis, error=result.error, model=model,
        optimizer=optimizer_document(cfg.optim, model, result),
    )


# --- outputs -------------------------------------------------------------------------------------

def document(result: ClassifyResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab classify`."""
    last = result.records[-1] if result.records else {}
    return {
        "command": "classify",
        "status": result.status,
        "config": result.config.to_dict(),
        "accuracy": result.accuracy,
        "final_loss": result.valid_loss,
        "valid_loss": result.valid_loss,
        "train_loss": last.get("train_loss"),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "restored_best": result.restored_best,
        "resumed_from": result.resumed_from,
        "diverged_epoch": result.diverged_epoch,
        "classes": result.classes,
        "per_class_accuracy": result.per_class_accuracy,
        "confusion_matrix": result.confusion,
        "data": result.data_source,
        "split": result.split,
        "device": result.device,
        "elapsed_s": result.elapsed_s,
        "notes": result.notes,
        "optimizer": result.optimizer,
        "error": result.error,
        "diagnosis": [f.to_dict() for f in result.diagnosis],
        "layers": layers_document(result.records),
        "expectations": outcomes_document(outcomes or []),
        "versions": result.versions,
    }


def weights_epoch(result: ClassifyResult) -> str:
    """Which epoch's weights the run returns (and the accuracy above measures): the best with --patience, else
    the last."""
    if result.restored_best and result.best_epoch is not None:
        return f"{result.best_epoch} (the best, restored)"
    last = result.records[-1]["epoch"] if result.records else None
    if last is None:
        return "—"
    hint = "" if result.best_epoch in (None, last) else " (the last; --patience N returns the best)"
    return f"{last}{hint}"


def report(result: ClassifyResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    """Summary, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    cfg = result.config
    restored = " (weights restored from it)" if result.restored_best else ""
    title = (f"losslab classify: {result.status} — {cfg.data.dataset}, {cfg.model.name}, {cfg.loss.name}, "
             f"{cfg.optim.name} lr {fmt(cfg.optim.lr, 'g')}: {result.epochs_run} epochs in {result.elapsed_s:.2f} s "
             f"on {result.device}")
    summary_rows = [["accuracy", f"{result.accuracy:.4f}"], ["validation loss", fmt(result.valid_loss)],
                    ["weights from epoch", weights_epoch(result)],
                    ["lowest validation loss at epoch", f"{result.best_epoch}{restored}" if result.best_epoch else "—"]]
    notes = [f"data: {result.data_source}; validation: {result.split}"] + list(result.notes) + optimizer_notes(
        result.optimizer)
    if result.resumed_from is not None:
        notes.append(f"resumed from a checkpoint at epoch {result.resumed_from}")
    notes += status_notes(result)
    notes += clipping_note(result.records, cfg.train)
    notes += diagnosis_notes(result.diagnosis)
    notes += [o.describe() for o in outcomes]
    summary = Report(title, ["metric", "value"], summary_rows, [])
    support = [sum(row) for row in result.confusion]
    per_class = Report("per-class accuracy", ["class", "accuracy", "support"],
                       [[c, fmt(result.per_class_accuracy.get(c), ".4f"), str(n)]
                        for c, n in zip(result.classes, support)], [])
    confusion = Report("confusion matrix (rows: true class, columns: predicted)", ["true \\ pred", *result.classes],
                       [[c, *(str(v) for v in row)] for c, row in zip(result.classes, result.confusion)], notes)
    return [summary, per_class, confusion]


def plots(result: ClassifyResult) -> list[Plot]:
    cfg = result.config

    def curves(path: Any) -> None:
        from losslab.outputs.plots import classification_curves

        classification_curves(result.records, path, title=f"classify: {cfg.data.dataset}, {cfg.model.name}, "
                              f"{cfg.optim.name} lr {cfg.optim.lr:g}", best_epoch=result.best_epoch)

    def confusion(path: Any) -> None:
        from losslab.outputs.plots import confusion_matrix

        confusion_matrix(result.confusion, result.classes, path, title=f"{cfg.data.dataset}: accuracy "
                         f"{result.accuracy:.4f}")

    # a run stopped before its first epoch ended (Ctrl-C, an error) has nothing to draw
    drawers: list[Callable[[Any], None]] = [curves, confusion]
    return [(name, draw) for name, draw, has in zip(PLOTS, drawers, [result.records, result.confusion]) if has] + \
        sharpness_plots(result.records, f"sharpness: classify, {cfg.optim.name}, lr {cfg.optim.lr:g}")


def terminal_curves(result: ClassifyResult) -> str:
    from losslab.outputs.terminal_plot import curves

    epochs = [float(r["epoch"]) for r in result.records]
    return curves([("train", epochs, [r["train_loss"] for r in result.records]),
                   ("valid", epochs, [r.get("valid_loss") for r in result.records])], title="loss", xlabel="epoch")


def experiment(cfg: ClassifyConfig, *, json_out: bool = False, quiet: bool = False) -> tuple[Output, Where]:
    """The command's checks, training and results, up to its outputs (what the CLI and the Python API share)."""
    cfg = cfg.resolved()
    check_outputs(cfg, PLOTS)
    problem = ClassificationProblem(cfg)
    check_names(cfg.gates.expect, metric_names(problem), DIAGNOSIS_CHOICES)

    console = make_console(stderr=json_out)
    progress = ProgressDisplay(console, classify_columns(), quiet=quiet, max_rows=20)
    events = dispatcher(context(COMMAND, cfg, json_out, quiet), [progress])
    result = run(cfg, events, problem)
    outcomes = check_gates(cfg.gates, result.status, result.metrics())
    return (Output(document(result, outcomes), report(result, outcomes), result.records, outcomes,
                         result.status, plots(result), lambda: terminal_curves(result), result=result),
                   Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def main(cfg: ClassifyConfig, *, json_out: bool, quiet: bool) -> int:
    return finish(*experiment(cfg, json_out=json_out, quiet=quiet))
