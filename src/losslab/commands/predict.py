"""`losslab predict --checkpoint FILE --data FILE.csv|FOLDER`: a model saved with `--save` (regress or classify,
built-in or the user's own) predicts the rows of a table or the images of a folder, with the inputs prepared as in
training (the same feature
columns by name, the same normalisation; a regression's standardisation undone on its outputs). Writes a CSV
(stdout, or --out FILE) or the --json document; where the table has the label/target column too, the accuracy
(classification) or the mean squared error (regression) of the predictions."""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from losslab.errors import USER_ERRORS, ConfigError, ExitCode

COMMAND = "predict"


@dataclass(frozen=True)
class PredictConfig:
    checkpoint: str
    data: Optional[str] = None  # regress, classify: the inputs
    out: Optional[str] = None  # a CSV file for the predictions (default: stdout)
    model: Optional[str] = None  # the class or factory that builds the saved model (a command line may name one)
    prompt: Optional[str] = None  # a language model: the text it continues (losslab generate's defaults)

    def __post_init__(self) -> None:
        from losslab.config import check_file_target

        if not Path(self.checkpoint).expanduser().is_file():
            raise ConfigError("--checkpoint", f"no such file: {self.checkpoint}")
        if self.data is not None and not Path(self.data).expanduser().exists() and ":" not in self.data:
            raise ConfigError("--data", f"no such file or folder: {self.data}")
        if self.data is not None and self.prompt is not None:
            raise ConfigError("--prompt", "continues a text with a language model; --data gives a table or images "
                              "to a regression or classification model: give one of them")
        check_file_target("--out", self.out)


@dataclass
class Prediction:
    task: str
    model: str
    rows: int
    predictions: list[Any]  # regression: values in the target's units; classification: class names
    probabilities: Optional[list[list[float]]] = None
    classes: Optional[list[str]] = None
    labels: Optional[list[Any]] = None  # the table's own label/target column, when it has one
    metrics: dict[str, float] = field(default_factory=dict)


def table_inputs(ckpt: dict[str, Any], path: str) -> tuple[Any, Optional[list[str]]]:
    """(inputs as float32 in the model's input shape, the label/target column's cells or None) of a table, its
    columns picked as in training: by header name where the model was trained on named columns, else the first
    ones (an image model's: its pixels, flattened); a column after them is the label."""
    import torch

    from losslab.components.tables import read_table

    shape = ckpt["input_shape"]
    width = math.prod(shape)  # images come as rows of their pixels, in (channel, row, column) order
    table = read_table(path, "--data")
    names, target = ckpt.get("features"), ckpt.get("target")
    if names and table.header is not None:
        cols = [table.column(name, "--data") for name in names]
        label = table.column(target, "--data") if target and target in table.header else None
    elif table.width in (width, width + 1):
        cols, label = list(range(width)), (width if table.width == width + 1 else None)
    else:
        what = f"{width} features" if len(shape) == 1 else f"{width} pixel values (inputs of shape {tuple(shape)})"
        raise ConfigError("--data", f"{path} has {table.width} columns; the model takes {what} (and a label "
                          f"column may follow)" + (f": {', '.join(names)}" if names else ""))
    x = torch.tensor(table.numbers(cols, "--data"), dtype=torch.float32).reshape(-1, *shape)
    labels = [row[label].strip() for row in table.rows] if label is not None else None
    return x, labels


def folder_inputs(ckpt: dict[str, Any], path: str) -> tuple[Any, Optional[list[str]]]:
    """(images as training prepared them before normalisation, their class folder names or None) of a folder:
    one subfolder per class (the labels), or the images themselves."""
    import os

    import torch

    from losslab.components.images import bad_image_message, class_folders, image_files, load_image

    shape = ckpt["input_shape"]
    if len(shape) != 3:
        raise ConfigError("--data", f"this model takes rows of {math.prod(shape)} numbers (a table); {path} is a "
                          "folder")
    classes = class_folders(path)
    files = ([(f, c) for c in classes for f in image_files(os.path.join(path, c))] if classes else
             [(f, None) for f in image_files(path)])
    if not files:
        raise ConfigError("--data", f"{path} holds no images (or class folders of images)")
    try:
        x = torch.stack([load_image(f, (shape[1], shape[2]), shape[0] == 1) for f, _ in files])
    except USER_ERRORS as exc:
        raise ConfigError("--data", bad_image_message(exc) or str(exc)) from None
    labels = [str(c) for _, c in files] if classes else None
    return x, labels


def object_inputs(ckpt: dict[str, Any], spec: str) -> tuple[Any, Optional[list[str]]]:
    """(inputs, labels or targets as text, or None) of an import path, as --dataset reads them: inputs X, a pair
    (X, y), or a Dataset of (input, label) pairs (a function returning one is called)."""
    import numpy as np
    import torch

    from losslab.components.losses import user_data

    obj = user_data(spec, "--data")
    labels: Any = None
    try:
        if isinstance(obj, torch.utils.data.Dataset):
            items = [obj[i] for i in range(len(obj))]
            x = torch.stack([torch.as_tensor(np.asarray(a)) for a, _ in items])
            labels = [b for _, b in items]
        elif isinstance(obj, (tuple, list)) and len(obj) == 2:
            x, labels = torch.as_tensor(np.asarray(obj[0])), list(np.asarray(obj[1]).reshape(-1))
        else:
            x = torch.as_tensor(np.asarray(obj))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError("--data", f"{spec}: not numbers: {exc}") from None
    shape = tuple(ckpt["input_shape"])
    if math.prod(x.shape[1:]) != math.prod(shape):
        raise ConfigError("--data", f"{spec} gives inputs of shape {tuple(x.shape[1:])}; the model takes {shape}")
    x = x.float().reshape(-1, *shape)
    as_text = (lambda v: str(int(v))) if ckpt["task"] == "classification" else (lambda v: repr(float(v)))
    return x, [as_text(v) for v in labels] if labels is not None else None


def predict(cfg: PredictConfig) -> Prediction:
    import torch

    from losslab.engine.checkpoints import read, rebuild

    ckpt = read(cfg.checkpoint)
    model = rebuild(ckpt, model=cfg.model)
    if ckpt["task"] == "language-model":
        from losslab.commands.generate import GenerateConfig, continue_text

        if cfg.data is not None:
            raise ConfigError("--data", f"{cfg.checkpoint} holds a language model: give --prompt TEXT to continue")
        text = continue_text(GenerateConfig(cfg.checkpoint, cfg.prompt), ckpt, model)
        return Prediction("language-model", ckpt["model"], 1, [text])
    if cfg.data is None:
        raise ConfigError("--data", f"{cfg.checkpoint} holds a {ckpt['task']} model: give --data with its inputs")
    if Path(cfg.data).is_dir():
        x, labels = folder_inputs(ckpt, cfg.data)
    elif not Path(cfg.data).exists() and ":" in cfg.data:
        x, labels = object_inputs(ckpt, cfg.data)
    else:
        x, labels = table_inputs(ckpt, cfg.data)
    task = ckpt["task"]
    if task == "regression":
        scaling = ckpt.get("scaling")
        if scaling is not None:
            x = (x.double() - torch.tensor(scaling["x_mean"])) / torch.tensor(scaling["x_std"])
        with torch.no_grad():
            out = model(x.float()).reshape(-1).double()
        if scaling is not None:
            out = out * scaling["y_std"] + scaling["y_mean"]
        values = out.tolist()
        result = Prediction(task, ckpt["model"], len(values), values, labels=labels)
        if labels is not None:
            truth = torch.tensor([float(v) for v in labels], dtype=torch.float64)
            result.metrics = {"mse": float(((out - truth) ** 2).mean()), "mae": float((out - truth).abs().mean())}
        return result
    if ckpt.get("mean") is not None:
        x = (x - ckpt["mean"]) / ckpt["std"]
    with torch.no_grad():
        out = model(x)
    out = out.double()  # probabilities in float64: they sum to 1 to the last digits written
    probs = out.exp() if ckpt.get("log_softmax") else torch.softmax(out, dim=1)
    classes = list(ckpt.get("classes") or [str(i) for i in range(out.shape[1])])
    chosen = [classes[i] for i in probs.argmax(dim=1).tolist()]
    result = Prediction(task, ckpt["model"], len(chosen), chosen, probs.tolist(), classes, labels)
    if labels is not None:
        result.metrics = {"accuracy": sum(p == t for p, t in zip(chosen, labels)) / max(1, len(labels))}
    return result


def document(cfg: PredictConfig, result: Prediction) -> dict[str, Any]:
    from losslab.outputs.files import versions

    return {"command": COMMAND, "status": "ok", "config": asdict(cfg), "task": result.task, "model": result.model,
            "rows": result.rows, "predictions": result.predictions, "probabilities": result.probabilities,
            "classes": result.classes, "metrics": result.metrics, "versions": versions()}


def csv_text(result: Prediction) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    probability_columns = [f"p_{c}" for c in result.classes or []]
    writer.writerow(["row", "prediction", *probability_columns])
    for i, value in enumerate(result.predictions):
        cells = [repr(value) if isinstance(value, float) else value]
        if result.probabilities is not None:
            cells += [f"{p:.6g}" for p in result.probabilities[i]]
        writer.writerow([i + 1, *cells])
    return buffer.getvalue()


def summary(result: Prediction) -> str:
    if result.task == "language-model":
        return f"losslab predict: {len(result.predictions[0]):,} characters from {result.model} (language model)"
    said = ", ".join(f"{k} {v:.6g}" for k, v in result.metrics.items() if math.isfinite(v))
    return (f"losslab predict: {result.rows} rows with {result.model} ({result.task})"
            + (f"; against the table's own column: {said}" if said else ""))


def main(cfg: PredictConfig, *, json_out: bool) -> int:
    from losslab.commands.common import context, emit, end_command
    from losslab.interrupt import critical
    from losslab.outputs.files import atomic_write
    from losslab.outputs.sinks import dispatcher

    events = dispatcher(context(COMMAND, cfg, json_out))
    result = predict(cfg)
    doc = document(cfg, result)
    text = csv_text(result) if result.task != "language-model" else result.predictions[0] + "\n"
    if cfg.out is not None:
        def write(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(Path(cfg.out).expanduser(), write)
    if not json_out and cfg.out is None:
        with critical():
            emit(text, sys.stdout)
    print(summary(result) + (f"; written to {cfg.out}" if cfg.out else ""), file=sys.stderr)
    end_command(events, COMMAND, "ok", doc, json_out)
    return int(ExitCode.OK)
