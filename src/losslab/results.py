"""Machine-readable results: the JSON document, history CSV, and atomic file writes."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from losslab.expect import Outcome


def clean(value: Any) -> Any:
    """JSON has no NaN or infinity: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(clean(document), indent=2, allow_nan=False) + "\n"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def history_csv(records: Iterable[Mapping[str, Any]]) -> str:
    records = list(records)
    columns: list[str] = []
    for rec in records:
        columns.extend(k for k in rec if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in rec.items()})
    return buf.getvalue()


def outcomes_document(outcomes: Iterable[Outcome]) -> list[dict[str, Any]]:
    return [{"spec": o.spec, "name": o.name, "passed": o.passed, "actual": o.actual} for o in outcomes]


def regress_document(result: Any, outcomes: Optional[Iterable[Outcome]] = None) -> dict[str, Any]:
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
        "device": result.device,
        "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []),
        "versions": result.versions,
    }


def classify_document(result: Any, outcomes: Optional[Iterable[Outcome]] = None) -> dict[str, Any]:
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
        "expectations": outcomes_document(outcomes or []),
        "versions": result.versions,
    }


def trial_document(r: Any) -> dict[str, Any]:
    doc = {"seed": r.trial.seed, "lr": r.trial.optim.lr, "status": r.status, "epochs_run": r.epochs_run,
           "elapsed_s": r.elapsed_s, **{k: v for k, v in r.metrics.items() if k != "confusion"}}
    if r.error:
        doc["error"] = r.error
    return doc


def compare_document(result: Any, outcomes: Optional[Iterable[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab compare-optimizers`."""
    from losslab.compare import epochs_to_target, run_best_loss

    task = result.config.task
    optimizers = {}
    for s in result.summaries:
        runs = []
        for r in result.runs[s.name]:
            doc = trial_document(r)
            doc["best_loss"] = run_best_loss(r, task)
            doc["epochs_to_target"] = epochs_to_target(r.records, task, result.target)
            runs.append(doc)
        optimizers[s.name] = {
            "lr": s.lr, "lr_source": s.lr_source, "final_loss": {"median": s.median, "q1": s.q1, "q3": s.q3,
                                                                 "mean": s.mean, "std": s.std},
            "best_loss": s.best, "epochs_to_target": s.epochs_to_target, "reached_target": s.reached,
            "time_per_epoch_s": s.time_per_epoch, "diverged": s.diverged, "errors": s.errors, **s.extra,
            "runs": runs,
        }
    return {
        "command": "compare-optimizers",
        "status": result.status,
        "task": task,
        "config": result.config.to_dict(),
        "ranking": [s.name for s in result.summaries],
        "winner": result.winner,
        "tie": result.winner is None,
        "paired_wins": result.wins,
        "target": result.target,
        "optimizers": optimizers,
        "tuning": result.tuning,
        "reference": result.reference,
        "data": result.data_source,
        "device": result.device,
        "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []),
        "versions": result.versions,
    }


def trial_records(results: Iterable[Any], group_key: Optional[str]) -> list[dict[str, Any]]:
    """Per-epoch rows of many trials, prefixed with what tells them apart (e.g. optimizer, seed, lr)."""
    rows = []
    for r in results:
        head = {group_key: r.trial.group} if group_key else {}
        for rec in r.records:
            rows.append({**head, "seed": r.trial.seed, "lr": r.trial.optim.lr, **rec})
    return rows


def grid_document(result: Any, outcomes: Optional[Iterable[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lr-sweep` (grid mode)."""
    from losslab.compare import epochs_to_target, run_best_loss

    task = result.config.task
    rows = []
    for s in result.summaries:
        for r in result.runs[s.name]:
            doc = trial_document(r)
            doc["best_loss"] = run_best_loss(r, task)
            doc["epochs_to_target"] = epochs_to_target(r.records, task, result.target)
            rows.append(doc)
    return {
        "command": "lr-sweep", "mode": "grid", "status": result.status, "task": task,
        "config": result.config.to_dict(),
        "suggested_lr": result.suggested_lr, "largest_stable_lr": result.largest_stable_lr,
        "target": result.target, "vectorized": result.vectorized,
        "rates": [{"lr": s.lr, "final_loss": {"median": s.median, "q1": s.q1, "q3": s.q3}, "best_loss": s.best,
                   "epochs_to_target": s.epochs_to_target, "diverged": s.diverged, "errors": s.errors, **s.extra}
                  for s in result.summaries],
        "results": rows,
        "data": result.data_source, "device": result.device, "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []), "versions": result.versions,
    }


def range_document(result: Any, outcomes: Optional[Iterable[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lr-sweep --range-test`."""
    return {
        "command": "lr-sweep", "mode": "range-test", "status": result.status, "task": result.config.task,
        "config": result.config.to_dict(),
        "suggested_lr": result.recommended,
        "suggestions": result.suggestions,
        "curve": result.median_curve,
        "runs": [{"seed": r.seed, "stopped": r.stopped, "suggestions": r.suggestions, "lr": r.lrs, "loss": r.losses,
                  "smoothed_loss": r.smoothed} for r in result.runs],
        "state_check": {"unchanged": result.state_unchanged,
                        "sha256_before": [r.hash_before for r in result.runs],
                        "sha256_after": [r.hash_after for r in result.runs]},
        "data": result.data_source, "device": result.device, "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []), "versions": result.versions,
    }


def range_records(result: Any) -> list[dict[str, Any]]:
    return [{"seed": r.seed, "step": i + 1, "lr": lr, "loss": loss, "smoothed_loss": sm}
            for r in result.runs for i, (lr, loss, sm) in enumerate(zip(r.lrs, r.losses, r.smoothed))]


def write_run_files(out_dir: str, document: Mapping[str, Any], records: list[Mapping[str, Any]],
                    plots: Iterable[tuple[str, Callable[[Path], None]]] = ()) -> list[Path]:
    """result.json, history.csv and the given plots, each written atomically into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    write_text(out / "history.csv", history_csv(records))
    written.append(out / "history.csv")
    for name, draw in plots:
        atomic_write(out / name, draw)
        written.append(out / name)
    # result.json last: its presence says the other files are complete
    write_text(out / "result.json", dumps(document))
    written.append(out / "result.json")
    return written
