"""One function per command: build data, model, loss and optimizer from a config, run `fit`, return a result.

Nothing here prints. Display and result files consume the returned objects.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from losslab.callbacks import Callback
from losslab.config import RegressConfig
from losslab.data import RegressionData, read_csv, synthetic


def versions() -> dict[str, str]:
    import torch

    from losslab import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "losslab": __version__}


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

    def metrics(self) -> dict[str, Any]:
        """Flat names that `--expect` can test."""
        out: dict[str, Any] = dict(self.params)
        out.update(final_loss=self.final_loss, epochs_run=self.epochs_run, elapsed_s=self.elapsed_s,
                   optimum_loss=self.optimum["loss"])
        for name, value in self.params.items():
            out[f"{name}_error"] = abs(value - self.optimum["params"][name])
        return out


def regress_metric_names(data: RegressionData) -> list[str]:
    names = data.param_names
    return names + ["final_loss", "epochs_run", "elapsed_s", "optimum_loss"] + [f"{n}_error" for n in names]


def load_regression_data(cfg: RegressConfig) -> RegressionData:
    d = cfg.data
    if d.csv is not None:
        return read_csv(d.csv)
    return synthetic(d.samples, d.features, d.true_w, d.true_b, d.noise, d.data_seed)


def regress(cfg: RegressConfig, data: Optional[RegressionData] = None,
            callbacks: Sequence[Callback] = ()) -> RegressResult:
    """Fit nn.Linear to the regression data with the configured loss and optimizer."""
    from losslab.optimizers import build_optimizer
    from losslab.problems import RegressionProblem

    data = data if data is not None else load_regression_data(cfg)
    problem = RegressionProblem(cfg, data)
    model = problem.new_model(cfg.train.seed)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    fitted = problem.train(model, optimizer, seed=cfg.train.seed, callbacks=callbacks)
    final = problem.final(model)
    status = fitted.status
    if status == "ok" and not math.isfinite(final["final_loss"]):
        status = "diverged"
    return RegressResult(
        config=cfg, status=status, records=fitted.records, epochs_run=fitted.epochs_run,
        final_loss=final["final_loss"], params=final["params"], true_params=problem.true_params,
        optimum=problem.optimum, elapsed_s=fitted.elapsed_s, device=str(problem.device), data_source=data.source,
        diverged_epoch=fitted.diverged_epoch or (fitted.epochs_run if status == "diverged" else None),
        versions=versions(),
    )


# --- classify ------------------------------------------------------------------------------------

@dataclass
class ClassifyResult:
    config: Any
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
    diverged_epoch: Optional[int] = None
    versions: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accuracy": self.accuracy, "valid_loss": self.valid_loss, "final_loss": self.valid_loss,
                               "best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                               "elapsed_s": self.elapsed_s}
        last = self.records[-1] if self.records else {}
        out["train_loss"] = last.get("train_loss")
        for name, acc in self.per_class_accuracy.items():
            out[f"accuracy_{name}"] = acc
        return out


def classify_metric_names(classes: Sequence[str]) -> list[str]:
    return (["accuracy", "valid_loss", "final_loss", "best_epoch", "epochs_run", "elapsed_s", "train_loss"]
            + [f"accuracy_{c}" for c in classes])


def _checkpoint(cfg: Any, model: Any, optimizer: Any, data: Any, epoch: int, generator: Any) -> dict[str, Any]:
    from losslab import __version__

    return {"format": "losslab-checkpoint-1", "losslab": __version__, "epoch": epoch,
            "model": cfg.model.name, "hidden": cfg.model.hidden, "input_shape": list(data.input_shape),
            "classes": list(data.classes), "dataset": cfg.data.dataset, "optim": cfg.optim.name,
            "config": cfg.to_dict(), "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state()}


def save_checkpoint(path: str, checkpoint: dict[str, Any]) -> None:
    import torch

    from losslab.results import atomic_write

    atomic_write(Path(path), lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: str, cfg: Any, data: Any) -> dict[str, Any]:
    import torch

    from losslab.errors import ConfigError

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError("--resume", f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "losslab-checkpoint-1":
        raise ConfigError("--resume", f"{path} is not a losslab checkpoint")
    for key, ours in (("model", cfg.model.name), ("hidden", cfg.model.hidden),
                      ("input_shape", list(data.input_shape)), ("classes", list(data.classes))):
        if ckpt[key] != ours and not (key == "hidden" and cfg.model.name in ("logistic", "cnn")):
            raise ConfigError("--resume", f"checkpoint {key} is {ckpt[key]} but this run has {ours}")
    if ckpt["epoch"] >= cfg.train.epochs:
        raise ConfigError("--resume", f"checkpoint is already at epoch {ckpt['epoch']}; "
                          f"--epochs {cfg.train.epochs} leaves nothing to train (--epochs is the total)")
    return ckpt


def classify(cfg: Any, data: Any = None, callbacks: Sequence[Callback] = ()) -> ClassifyResult:
    """Train a classifier with per-epoch validation; report accuracy, per-class accuracy and the confusion matrix."""
    import torch

    from losslab.callbacks import BestEpoch
    from losslab.datasets import load_classification
    from losslab.optimizers import build_optimizer
    from losslab.problems import ClassificationProblem

    data = data if data is not None else load_classification(cfg.data)
    problem = ClassificationProblem(cfg, data)
    ckpt = load_checkpoint(cfg.resume, cfg, data) if cfg.resume else None
    model = problem.new_model(cfg.train.seed)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    generator = torch.Generator().manual_seed(cfg.train.seed)  # mini-batch order
    first_epoch, notes = 1, []
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        if ckpt["optim"] == cfg.optim.name:
            optimizer.load_state_dict(ckpt["optimizer"])
        else:
            notes.append(f"optimizer state not restored: checkpoint used {ckpt['optim']}, this run {cfg.optim.name}")
        generator.set_state(ckpt["generator"])  # a resumed run sees the batches the whole run would have
        first_epoch = ckpt["epoch"] + 1

    best = BestEpoch(model, cfg.patience)
    fitted = problem.train(model, optimizer, seed=cfg.train.seed, callbacks=[best, *callbacks], generator=generator,
                           first_epoch=first_epoch)
    restored = False
    if cfg.patience is not None and best.best_state is not None and fitted.status != "interrupted":
        model.load_state_dict(best.best_state)  # early stopping keeps the best weights, not the last
        restored = best.best_epoch != (fitted.records[-1]["epoch"] if fitted.records else None)
    final = problem.final(model)
    status = fitted.status
    if status == "ok" and not math.isfinite(final["final_loss"]):
        status = "diverged"
    if cfg.loss.name == "mse":
        notes.append("note: mse on one-hot targets gives weak gradients once a class probability saturates "
                     "(its gradient vanishes with the softmax); cross-entropy's gradient stays p - y, "
                     "which is why it is the usual choice.")
    last_epoch = fitted.records[-1]["epoch"] if fitted.records else first_epoch - 1
    if cfg.save is not None and status != "diverged":
        save_checkpoint(cfg.save, _checkpoint(cfg, model, optimizer, data, best.best_epoch if restored else last_epoch,
                                              generator))
    return ClassifyResult(
        config=cfg, status=status, records=fitted.records, epochs_run=len(fitted.records),
        best_epoch=best.best_epoch, accuracy=final["accuracy"], valid_loss=final["final_loss"],
        per_class_accuracy=final["per_class_accuracy"], confusion=final["confusion"], classes=list(data.classes),
        elapsed_s=fitted.elapsed_s, device=str(problem.device), data_source=data.source, split=data.split,
        restored_best=restored, resumed_from=ckpt["epoch"] if ckpt else None, notes=notes,
        diverged_epoch=fitted.diverged_epoch, versions=versions(),
    )
