"""Loss registry: name -> factory(LossConfig) returning a callable loss(pred, target) -> scalar.

Every entry's meta says the `tasks` it serves ("regression", "classification"), so a command can refuse
a loss that does not fit its target. `package.module:Name` loads a user's class or function.
For classification, factories get the class weights too; `mse` is then taken on one-hot targets.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from typing import Any, Callable, Iterator

from losslab.components.registry import Registry
from losslab.errors import USER_ERRORS, ConfigError

LOSSES: Registry[Callable[..., Any]] = Registry("loss", "--loss")


@LOSSES.register("mse", "mean squared error (the least-squares loss; classify: softmax vs one-hot)",
                 tasks=("regression", "classification"))
def _mse(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    from torch import nn

    if classes:
        return OneHotMSE(classes)
    return nn.MSELoss()


@LOSSES.register("l1", "mean absolute error (robust to outliers; fits the median)", tasks=("regression",))
def _l1(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    from torch import nn

    return nn.L1Loss()


@LOSSES.register("smooth-l1", "smooth L1: quadratic below --delta (as beta), linear above", tasks=("regression",))
def _smooth_l1(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    from torch import nn

    return nn.SmoothL1Loss(beta=cfg.delta)


@LOSSES.register("huber", "Huber loss with threshold --delta", tasks=("regression",))
def _huber(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    from torch import nn

    return nn.HuberLoss(delta=cfg.delta)


@LOSSES.register("cross-entropy", "softmax cross-entropy on logits and class indices (--label-smoothing)",
                 tasks=("classification", "language-model"))
def _cross_entropy(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    from torch import nn

    return nn.CrossEntropyLoss(weight=weight, label_smoothing=getattr(cfg, "label_smoothing", 0.0))


@LOSSES.register("weighted-cross-entropy", "cross-entropy with balanced class weights n / (classes x count), "
                 "as scikit-learn's class_weight='balanced'", tasks=("classification",), balanced_weights=True)
def _weighted_cross_entropy(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    from torch import nn

    return nn.CrossEntropyLoss(weight=weight)


@LOSSES.register("nll", "negative log-likelihood; the model then ends in log_softmax",
                 tasks=("classification", "language-model"),
                 log_softmax=True)
def _nll(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    from torch import nn

    return nn.NLLLoss(weight=weight)


@LOSSES.register("focal", "focal loss -(1-p)^gamma log p (Lin et al. 2017; --gamma) for hard or rare classes",
                 tasks=("classification", "language-model"))
def _focal(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    return FocalLoss(getattr(cfg, "gamma", 2.0), weight)


class FocalLoss:
    """Mean of -w_y (1 - p_y)^gamma log p_y over the batch (weighted mean when class weights are given)."""

    def __init__(self, gamma: float, weight: Any = None):
        self.gamma = gamma
        self.weight = weight

    def __call__(self, logits: Any, target: Any) -> Any:
        import torch.nn.functional as F

        logp = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1 - logp.exp()) ** self.gamma) * logp
        if self.weight is None:
            return loss.mean()
        w = self.weight[target]
        return (loss * w).sum() / w.sum()


class OneHotMSE:
    """MSE between softmax probabilities and one-hot targets."""

    def __init__(self, classes: int):
        self.classes = classes

    def __call__(self, logits: Any, target: Any) -> Any:
        import torch.nn.functional as F

        return F.mse_loss(F.softmax(logits, dim=1), F.one_hot(target, self.classes).to(logits.dtype))


def is_import_path(name: str) -> bool:
    return ":" in name


def check_task(name: str, task: str) -> None:
    """Refuse a registered loss made for another kind of target; import paths are trusted."""
    if is_import_path(name):
        return
    entry = LOSSES.lookup(name)
    if task not in entry.meta["tasks"]:
        fitting = [e.name for e in LOSSES if task in e.meta["tasks"]]
        if task == "regression":
            why = "regression fits a real-valued target, but it expects class labels"
        elif task == "language-model":
            why = "a language model predicts the next token with a distribution over the vocabulary"
        else:
            why = "classification predicts class labels, but it expects a real-valued target"
        raise ConfigError(
            "--loss",
            f"{name!r} is a {entry.meta['tasks'][0]} loss: {why}; choose from: {', '.join(fitting)} "
            "or an import path package.module:Name",
        )


SLOW_IMPORT_SECONDS = 2.0  # a user module still importing after this long gets a line saying so


def import_user_module(module_name: str, option: str) -> Any:
    """Import a user's module: its failures (an exception, sys.exit) are one line naming `option`; an import
    that takes long says so on stderr, so a module that never returns is not a silent hang (Ctrl-C stops it)."""
    import threading

    def slow() -> None:
        print(f"losslab: still importing {module_name!r} for {option} (its module code is running; Ctrl-C "
              "twice stops)", file=sys.stderr, flush=True)

    timer = threading.Timer(SLOW_IMPORT_SECONDS, slow)
    timer.daemon = True
    timer.start()
    try:
        return importlib.import_module(module_name)
    except SystemExit as exc:
        raise ConfigError(option, f"importing module {module_name!r} called sys.exit({exc.code!r})") from None
    except KeyboardInterrupt:
        from losslab import interrupt

        if interrupt.requested():  # the user pressed Ctrl-C (twice) while it imported
            raise
        raise ConfigError(option, f"importing module {module_name!r} raised KeyboardInterrupt") from None
    except USER_ERRORS as exc:
        raise ConfigError(option, f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    finally:
        timer.cancel()


@contextlib.contextmanager
def user_code() -> Iterator[None]:
    """Run a user's code outside training (its module's import, a model's constructor, a data function): Ctrl-C
    stops it at the first press (it has no safe point of ours to wait for), and the working folder is put back
    if it moved (a relative --out, --save or --data means the folder the command was started in)."""
    from losslab import interrupt

    start = os.getcwd()
    try:
        with interrupt.at_once():
            yield
    finally:
        if os.getcwd() != start:
            os.chdir(start)


def import_object(spec: str, option: str) -> Any:
    """The object an import path `package.module:Name` names (the current folder importable, as `python -m`
    makes it); its failures are one line naming `option`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(option, f"expected an import path package.module:Name (got {spec!r})")
    if os.getcwd() not in sys.path:  # like `python -m`, let users name modules in the current folder
        sys.path.insert(0, os.getcwd())
    module_name = module_of_file(module_name, attr, option)
    with user_code():
        module = obj = import_user_module(module_name, option)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(option, f"module {module_name!r} has no attribute {attr!r}{nearby(module, attr, option)}")
        obj = getattr(obj, part)
    standard_library(spec, obj, option)
    return obj


def module_of_file(name: str, attr: str, option: str) -> str:
    """A module given as a file (`./models.py`, `sub/models.py`, `~/work/models.py`): its folder made importable
    and its module name returned; a folder path without `.py`, or a file that is not there, one line naming
    `option`. A module name is returned as it is."""
    from pathlib import Path

    if not (name.endswith(".py") or "/" in name or os.sep in name):
        return name
    path = Path(name).expanduser()
    if path.suffix != ".py":
        raise ConfigError(option, f"{name!r} is a path: name the file, {name}.py:{attr}, or "
                          f"{'.'.join(Path(name).parts).lstrip('.')}:{attr} as a module")
    if not path.is_file():
        raise ConfigError(option, f"no file {name} (looked in {os.getcwd()})")
    if not path.stem.isidentifier():
        raise ConfigError(option, f"{path.name}: a module's file name must be a Python name (letters, digits, _)")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return path.stem


def nearby(module: Any, attr: str, option: str) -> str:
    """'; did you mean TinyCNN? (its nn.Module classes: MLP, TinyCNN)' for a misspelt name in a user's module:
    close names among those it defines, and for --model the nn.Module classes it has."""
    from losslab.components.registry import did_you_mean

    own = [n for n, v in vars(module).items() if not n.startswith("_")
           and getattr(v, "__module__", None) == module.__name__ and callable(v)]
    hint = did_you_mean(attr, own).replace(" (did you mean", "; did you mean").rstrip(")") if own else ""
    if option == "--model":
        import torch

        classes = [n for n in own if isinstance(vars(module)[n], type) and issubclass(vars(module)[n],
                                                                                        torch.nn.Module)]
        hint += f" (its nn.Module classes: {', '.join(classes)})" if classes else " (it defines no nn.Module class)"
    return hint


def standard_library(spec: str, obj: Any, option: str) -> None:
    """Refuse an object of Python's own library before anything calls it: no model, loss or dataset is one, and
    an import path read from a file (a checkpoint, a result to replay, a --config) could otherwise name
    `sys:exit`, `os:abort`, `tempfile:mkdtemp` or `code:interact`."""
    import functools

    inner = obj.func if isinstance(obj, functools.partial) else obj  # a partial of a user's class is the class's
    roots = {spec.partition(":")[0].split(".")[0], str(getattr(inner, "__module__", None) or "").split(".")[0]}
    stdlib = sorted(r for r in roots if r in sys.stdlib_module_names or r == "builtins")
    if stdlib:
        raise ConfigError(option, f"{spec} is part of Python's standard library ({stdlib[0]}): losslab calls only "
                          "your own code or a library's model, loss or dataset")


def user_data(spec: str, option: str) -> Any:
    """What a user's data import path gives: the object itself, or what calling it returns (a function, or a class
    that is not a Dataset); a call that fails is one line naming `option`."""
    import torch

    obj = import_object(spec, option)
    if callable(obj) and not isinstance(obj, torch.utils.data.Dataset):
        try:
            with user_code():
                obj = obj()
        except USER_ERRORS as exc:
            raise ConfigError(option, f"{spec}() failed: {type(exc).__name__}: {exc}") from None
    return obj


def load_import_path(spec: str) -> Any:
    """Load `package.module:Name`; a class is instantiated with no arguments."""
    obj = import_object(spec, "--loss")
    if inspect.isclass(obj) and _is_autograd_function(obj):
        function: Any = obj
        return function.apply  # a torch.autograd.Function is called through apply, with its own backward
    if inspect.isclass(obj):
        try:
            with user_code():
                obj = obj()
        except USER_ERRORS as exc:
            raise ConfigError("--loss", f"cannot construct {spec} with no arguments: {exc}") from None
    if not callable(obj):
        raise ConfigError("--loss", f"{spec} is not callable")
    return obj


def _is_autograd_function(cls: type) -> bool:
    import torch

    return issubclass(cls, torch.autograd.Function)


def build_loss(cfg: Any, weight: Any = None, classes: int = 0) -> Any:
    """The loss callable; `classes` > 0 builds the classification form (class `weight`s optional)."""
    if is_import_path(cfg.name):
        return load_import_path(cfg.name)
    return LOSSES.lookup(cfg.name).factory(cfg, weight, classes)


def wants_balanced_weights(name: str) -> bool:
    return not is_import_path(name) and bool(LOSSES.lookup(name).meta.get("balanced_weights"))


def wants_log_softmax(name: str) -> bool:
    return not is_import_path(name) and bool(LOSSES.lookup(name).meta.get("log_softmax"))
