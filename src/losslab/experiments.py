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
from losslab.data import RegressionData, least_squares, read_csv, synthetic


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
    import torch

    from losslab.losses import build_loss
    from losslab.models import MODELS
    from losslab.optimizers import build_optimizer
    from losslab.training import fit, flat_list, resolve_device

    data = data if data is not None else load_regression_data(cfg)
    device = resolve_device(cfg.train.device)
    x = torch.from_numpy(data.x).to(device)
    y = torch.from_numpy(data.y).to(device)

    loss_fn = build_loss(cfg.loss)
    torch.manual_seed(cfg.train.seed)  # initial weights
    model = MODELS.lookup("linear").factory(data.features).to(device)
    check_loss_output(loss_fn, model, x[:2], y[:2])
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    generator = torch.Generator().manual_seed(cfg.train.seed)  # mini-batch order

    names = data.param_names
    weight, bias = model.weight, model.bias

    def track() -> dict[str, float]:
        return dict(zip(names, flat_list(weight) + flat_list(bias)))

    fitted = fit(model, loss_fn, optimizer, x, y, epochs=cfg.train.epochs, batch_size=cfg.train.batch_size,
                 clip_grad_norm=cfg.train.clip_grad_norm, generator=generator, track=track, callbacks=callbacks)

    with torch.no_grad():
        final_loss = float(loss_fn(model(x), y))
        opt_w, opt_b = least_squares(data.x, data.y)
        ls_model = MODELS.lookup("linear").factory(data.features).to(device)
        ls_model.weight.copy_(torch.as_tensor(opt_w, dtype=torch.float32).reshape(1, -1))
        ls_model.bias.fill_(opt_b)
        optimum_loss = float(loss_fn(ls_model(x), y))

    status = fitted.status
    if status == "ok" and not math.isfinite(final_loss):
        status = "diverged"
    true_params = None
    if data.true_w is not None:
        true_params = dict(zip(names, list(data.true_w) + [data.true_b]))
    return RegressResult(
        config=cfg,
        status=status,
        records=fitted.records,
        epochs_run=fitted.epochs_run,
        final_loss=final_loss,
        params=track(),
        true_params=true_params,
        optimum={"params": dict(zip(names, [float(v) for v in opt_w] + [opt_b])), "loss": optimum_loss},
        elapsed_s=fitted.elapsed_s,
        device=str(device),
        data_source=data.source,
        diverged_epoch=fitted.diverged_epoch or (fitted.epochs_run if status == "diverged" else None),
        versions=versions(),
    )


def check_loss_output(loss_fn: Any, model: Any, x: Any, y: Any) -> None:
    """A loss must return a scalar tensor; say so before training rather than fail inside it."""
    import torch

    from losslab.errors import ConfigError

    try:
        with torch.no_grad():
            out = loss_fn(model(x), y)
    except Exception as exc:
        raise ConfigError("--loss", f"calling the loss on a batch failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError("--loss", f"must return a scalar tensor (got {shape})")


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


def class_weights(spec: Optional[str], y: Any, classes: int) -> Any:
    """None, 'balanced' (n / (classes · count_c), as scikit-learn computes it) or a comma list."""
    import torch

    from losslab.config import parse_floats
    from losslab.errors import ConfigError

    if spec is None:
        return None
    if spec == "balanced":
        counts = torch.bincount(y, minlength=classes).double()
        return (len(y) / (classes * counts.clamp_min(1))).float()
    weights = parse_floats("--class-weights", spec) or ()
    if len(weights) != classes:
        raise ConfigError("--class-weights", f"gives {len(weights)} weights for {classes} classes")
    return torch.tensor(weights, dtype=torch.float32)


def evaluate_classifier(model: Any, loss_fn: Any, x: Any, y: Any, chunk: int = 4096) -> tuple[float, Any]:
    """Mean loss and predicted classes over (x, y), in chunks to bound memory. Call under no_grad/eval."""
    import torch

    total, preds = 0.0, []
    for i in range(0, len(y), chunk):
        out = model(x[i:i + chunk])
        total += float(loss_fn(out, y[i:i + chunk])) * len(out)
        preds.append(out.argmax(dim=1))
    return total / len(y), torch.cat(preds)


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
    from losslab.losses import build_loss, wants_log_softmax
    from losslab.models import build_classifier
    from losslab.optimizers import build_optimizer
    from losslab.training import fit, resolve_device

    data = data if data is not None else load_classification(cfg.data)
    device = resolve_device(cfg.train.device)
    k = data.num_classes
    ckpt = load_checkpoint(cfg.resume, cfg, data) if cfg.resume else None

    torch.manual_seed(cfg.train.seed)  # initial weights
    model = build_classifier(cfg.model.name, data.input_shape, k, cfg.model.hidden)
    if wants_log_softmax(cfg.loss.name):
        model = torch.nn.Sequential(*model, torch.nn.LogSoftmax(dim=1))
    model = model.to(device)
    weight = class_weights(cfg.loss.class_weights, data.y_train, k)
    loss_fn = build_loss(cfg.loss, None if weight is None else weight.to(device), classes=k)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    check_loss_output(loss_fn, model, x_train[:2], y_train[:2])
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    first_epoch, notes = 1, []
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        if ckpt["optim"] == cfg.optim.name:
            optimizer.load_state_dict(ckpt["optimizer"])
        else:
            notes.append(f"optimizer state not restored: checkpoint used {ckpt['optim']}, this run {cfg.optim.name}")
        first_epoch = ckpt["epoch"] + 1
    generator = torch.Generator().manual_seed(cfg.train.seed)  # mini-batch order
    if ckpt is not None:
        generator.set_state(ckpt["generator"])  # a resumed run sees the batches the whole run would have

    def evaluate(m: Any) -> dict[str, float]:
        loss, pred = evaluate_classifier(m, loss_fn, x_val, y_val)
        return {"valid_loss": loss, "valid_acc": (pred == y_val).float().mean().item()}

    best = BestEpoch(model, cfg.patience)
    fitted = fit(model, loss_fn, optimizer, x_train, y_train, epochs=cfg.train.epochs,
                 batch_size=cfg.train.batch_size, clip_grad_norm=cfg.train.clip_grad_norm, generator=generator,
                 evaluate=evaluate, callbacks=[best, *callbacks], first_epoch=first_epoch)

    restored = False
    if cfg.patience is not None and best.best_state is not None and fitted.status != "interrupted":
        model.load_state_dict(best.best_state)  # early stopping keeps the best weights, not the last
        restored = best.best_epoch != (fitted.records[-1]["epoch"] if fitted.records else None)
    model.eval()
    with torch.no_grad():
        valid_loss, pred = evaluate_classifier(model, loss_fn, x_val, y_val)
    confusion = torch.bincount(y_val * k + pred, minlength=k * k).reshape(k, k).cpu()
    support = confusion.sum(dim=1)
    per_class = {c: (float(confusion[i, i]) / int(support[i]) if int(support[i]) else None)
                 for i, c in enumerate(data.classes)}
    status = fitted.status
    if status == "ok" and not math.isfinite(valid_loss):
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
        best_epoch=best.best_epoch, accuracy=float(confusion.diag().sum()) / max(1, int(confusion.sum())),
        valid_loss=valid_loss, per_class_accuracy=per_class, confusion=confusion.tolist(),
        classes=list(data.classes), elapsed_s=fitted.elapsed_s, device=str(device), data_source=data.source,
        split=data.split, restored_best=restored, resumed_from=ckpt["epoch"] if ckpt else None, notes=notes,
        diverged_epoch=fitted.diverged_epoch, versions=versions(),
    )
