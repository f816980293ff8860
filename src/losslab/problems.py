"""A training problem, prepared once and shared by every run on it: data tensors on the device, a model
factory, the loss, per-epoch evaluation and final metrics. Single runs, trials and sweeps all train through
`Problem.train`, which calls the one `fit` loop."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch

from losslab.callbacks import Callback
from losslab.training import FitResult, fit, flat_list, resolve_device


class Problem:
    """Base: subclasses set x, y, loss_fn, task and implement new_model / final."""

    task: str
    x: torch.Tensor
    y: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train_cfg: Any

    def new_model(self, seed: int) -> torch.nn.Module:
        raise NotImplementedError

    def track(self, model: torch.nn.Module) -> Optional[Callable[[], dict[str, float]]]:
        """Values recorded every epoch besides loss, grad norm and lr (e.g. the parameters of a small model)."""
        return None

    def evaluate(self, model: torch.nn.Module) -> Optional[dict[str, float]]:
        """Validation metrics each epoch (called in eval mode under no_grad); None when there is no validation."""
        return None

    def final(self, model: torch.nn.Module) -> dict[str, Any]:
        """Metrics of the trained model; always has `final_loss`."""
        raise NotImplementedError

    def train(self, model: torch.nn.Module, optimizer: Any, *, seed: int, callbacks: Sequence[Callback] = (),
              generator: Optional[torch.Generator] = None, first_epoch: int = 1, epochs: Optional[int] = None,
              on_step: Optional[Callable[[float], bool]] = None) -> FitResult:
        has_eval = type(self).evaluate is not Problem.evaluate
        return fit(model, self.loss_fn, optimizer, self.x, self.y, epochs=epochs or self.train_cfg.epochs,
                   batch_size=self.train_cfg.batch_size, clip_grad_norm=self.train_cfg.clip_grad_norm,
                   generator=generator or torch.Generator().manual_seed(seed),
                   evaluate=self.evaluate if has_eval else None, track=self.track(model),
                   callbacks=callbacks, first_epoch=first_epoch, on_step=on_step)


def check_loss_output(loss_fn: Any, model: Any, x: Any, y: Any) -> None:
    """A loss must return a scalar tensor; say so before training rather than fail inside it."""
    from losslab.errors import ConfigError

    try:
        with torch.no_grad():
            out = loss_fn(model(x), y)
    except Exception as exc:
        raise ConfigError("--loss", f"calling the loss on a batch failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError("--loss", f"must return a scalar tensor (got {shape})")


class RegressionProblem(Problem):
    task = "regression"

    def __init__(self, cfg: Any, data: Any):
        from losslab.data import least_squares
        from losslab.losses import build_loss

        self.cfg, self.data, self.train_cfg = cfg, data, cfg.train
        self.device = resolve_device(cfg.train.device)
        self.x = torch.from_numpy(data.x).to(self.device)
        self.y = torch.from_numpy(data.y).to(self.device)
        self.loss_fn = build_loss(cfg.loss)
        self.names = data.param_names
        probe = self._linear()
        check_loss_output(self.loss_fn, probe, self.x[:2], self.y[:2])
        opt_w, opt_b = least_squares(data.x, data.y)
        with torch.no_grad():
            probe.weight.copy_(torch.as_tensor(opt_w, dtype=torch.float32).reshape(1, -1))
            probe.bias.fill_(opt_b)
            optimum_loss = float(self.loss_fn(probe(self.x), self.y))
        self.optimum = {"params": dict(zip(self.names, [float(v) for v in opt_w] + [opt_b])), "loss": optimum_loss}
        self.true_params = (dict(zip(self.names, list(data.true_w) + [data.true_b]))
                            if data.true_w is not None else None)

    def _linear(self) -> torch.nn.Module:
        from losslab.models import MODELS

        return MODELS.lookup("linear").factory(self.data.features).to(self.device)

    def new_model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)  # initial weights
        return self._linear()

    def params(self, model: torch.nn.Module) -> dict[str, float]:
        return dict(zip(self.names, flat_list(model.weight) + flat_list(model.bias)))

    def track(self, model: torch.nn.Module) -> Callable[[], dict[str, float]]:
        names, weight, bias = self.names, model.weight, model.bias
        return lambda: dict(zip(names, flat_list(weight) + flat_list(bias)))

    def final(self, model: torch.nn.Module) -> dict[str, Any]:
        with torch.no_grad():
            final_loss = float(self.loss_fn(model(self.x), self.y))
        params = self.params(model)
        distance = math.sqrt(sum((params[n] - self.optimum["params"][n]) ** 2 for n in self.names))
        return {"final_loss": final_loss, "params": params, "optimum_distance": distance}


def evaluate_classifier(model: Any, loss_fn: Any, x: Any, y: Any, chunk: int = 4096) -> tuple[float, Any]:
    """Mean loss and predicted classes over (x, y), in chunks to bound memory. Call under no_grad/eval."""
    total, preds = 0.0, []
    for i in range(0, len(y), chunk):
        out = model(x[i:i + chunk])
        total += float(loss_fn(out, y[i:i + chunk])) * len(out)
        preds.append(out.argmax(dim=1))
    return total / len(y), torch.cat(preds)


def class_weights(spec: Optional[str], y: Any, classes: int) -> Any:
    """None, 'balanced' (n / (classes · count_c), as scikit-learn computes it) or a comma list."""
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


class ClassificationProblem(Problem):
    task = "classification"

    def __init__(self, cfg: Any, data: Any):
        from losslab.losses import build_loss

        self.cfg, self.data, self.train_cfg = cfg, data, cfg.train
        self.device = resolve_device(cfg.train.device)
        self.k = data.num_classes
        weight = class_weights(cfg.loss.class_weights, data.y_train, self.k)
        self.loss_fn = build_loss(cfg.loss, None if weight is None else weight.to(self.device), classes=self.k)
        self.x, self.y = data.x_train.to(self.device), data.y_train.to(self.device)
        self.x_val, self.y_val = data.x_val.to(self.device), data.y_val.to(self.device)
        check_loss_output(self.loss_fn, self.new_model(0), self.x[:2], self.y[:2])

    def new_model(self, seed: int) -> torch.nn.Module:
        from losslab.losses import wants_log_softmax
        from losslab.models import build_classifier

        torch.manual_seed(seed)  # initial weights
        model = build_classifier(self.cfg.model.name, self.data.input_shape, self.k, self.cfg.model.hidden)
        if wants_log_softmax(self.cfg.loss.name):
            model = torch.nn.Sequential(*model, torch.nn.LogSoftmax(dim=1))
        return model.to(self.device)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        loss, pred = evaluate_classifier(model, self.loss_fn, self.x_val, self.y_val)
        return {"valid_loss": loss, "valid_acc": (pred == self.y_val).float().mean().item()}

    def final(self, model: torch.nn.Module) -> dict[str, Any]:
        model.eval()
        with torch.no_grad():
            valid_loss, pred = evaluate_classifier(model, self.loss_fn, self.x_val, self.y_val)
        k = self.k
        confusion = torch.bincount(self.y_val * k + pred, minlength=k * k).reshape(k, k).cpu()
        support = confusion.sum(dim=1)
        per_class = {c: (float(confusion[i, i]) / int(support[i]) if int(support[i]) else None)
                     for i, c in enumerate(self.data.classes)}
        return {"final_loss": valid_loss, "accuracy": float(confusion.diag().sum()) / max(1, int(confusion.sum())),
                "per_class_accuracy": per_class, "confusion": confusion.tolist()}
