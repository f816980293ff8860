"""Loss registry: name -> factory(LossConfig) returning a callable loss(pred, target) -> scalar.

Every entry's meta says its `task` ("regression" or "classification"), so a command can refuse
a loss that does not fit its target. `package.module:Name` loads a user's class or function.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import TYPE_CHECKING, Any, Callable

from losslab.errors import ConfigError
from losslab.registry import Registry

if TYPE_CHECKING:
    from losslab.config import LossConfig

LOSSES: Registry[Callable[..., Any]] = Registry("loss", "--loss")


@LOSSES.register("mse", "mean squared error (the least-squares loss)", task="regression")
def _mse(cfg: "LossConfig") -> Any:
    from torch import nn

    return nn.MSELoss()


@LOSSES.register("l1", "mean absolute error (robust to outliers; fits the median)", task="regression")
def _l1(cfg: "LossConfig") -> Any:
    from torch import nn

    return nn.L1Loss()


@LOSSES.register("smooth-l1", "smooth L1: quadratic below --delta (as beta), linear above", task="regression")
def _smooth_l1(cfg: "LossConfig") -> Any:
    from torch import nn

    return nn.SmoothL1Loss(beta=cfg.delta)


@LOSSES.register("huber", "Huber loss with threshold --delta", task="regression")
def _huber(cfg: "LossConfig") -> Any:
    from torch import nn

    return nn.HuberLoss(delta=cfg.delta)


@LOSSES.register("cross-entropy", "softmax cross-entropy on logits and class indices", task="classification")
def _cross_entropy(cfg: "LossConfig") -> Any:
    from torch import nn

    return nn.CrossEntropyLoss()


@LOSSES.register("nll", "negative log-likelihood on log-probabilities", task="classification")
def _nll(cfg: "LossConfig") -> Any:
    from torch import nn

    return nn.NLLLoss()


def is_import_path(name: str) -> bool:
    return ":" in name


def check_task(name: str, task: str) -> None:
    """Refuse a registered loss made for another kind of target; import paths are trusted."""
    if is_import_path(name):
        return
    entry = LOSSES.lookup(name)
    if entry.meta["task"] != task:
        fitting = [e.name for e in LOSSES if e.meta["task"] == task]
        if task == "regression":
            why = "regression fits a real-valued target, but it expects class labels"
        else:
            why = "classification predicts class labels, but it expects a real-valued target"
        raise ConfigError(
            "--loss",
            f"{name!r} is a {entry.meta['task']} loss: {why}; choose from: {', '.join(fitting)} "
            "or an import path package.module:Name",
        )


def load_import_path(spec: str) -> Any:
    """Load `package.module:Name`; a class is instantiated with no arguments."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError("--loss", f"expected an import path package.module:Name (got {spec!r})")
    if os.getcwd() not in sys.path:  # like `python -m`, let users name modules in the current folder
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError("--loss", f"cannot import module {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError("--loss", f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError("--loss", f"cannot construct {spec} with no arguments: {exc}") from None
    if not callable(obj):
        raise ConfigError("--loss", f"{spec} is not callable")
    return obj


def build_loss(cfg: "LossConfig") -> Any:
    if is_import_path(cfg.name):
        return load_import_path(cfg.name)
    return LOSSES.lookup(cfg.name).factory(cfg)
