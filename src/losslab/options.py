"""Every CLI option, declared once, and the builders that turn parsed options into frozen configs.

Commands pick options by name (`@options("lr", "epochs", ..., epochs=1000)`), so `regress`, `classify`,
`compare-optimizers` and `lr-sweep` cannot drift apart. No torch here: `--help` must stay fast.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional

import typer

from losslab.datasets import DATASETS
from losslab.errors import ConfigError
from losslab.losses import LOSSES
from losslab.models import MODELS
from losslab.optimizers import OPTIMIZERS


@dataclass(frozen=True)
class Opt:
    type: Any
    flags: tuple[str, ...]
    help: str
    default: Any = None


def _loss_help() -> str:
    def names(task: str) -> str:
        return ", ".join(e.name for e in LOSSES if task in e.meta["tasks"])

    described = "; ".join(f"{e.name}: {e.description}" for e in LOSSES)
    return (f"Loss (regression: {names('regression')}; classification: {names('classification')}) — {described}; "
            "or an import path package.module:Name (class or function).")


def _lr_help() -> str:
    defaults = ", ".join(f"{e.name} {e.meta['default_lr']['regression']:g}/{e.meta['default_lr']['classification']:g}"
                         for e in OPTIMIZERS)
    return f"Learning rate (default per optimizer, regression/classification: {defaults})."


OPTS: dict[str, Opt] = {
    # optimizer
    "optim": Opt(str, ("--optim",), f"Optimizer: {OPTIMIZERS.help()}."),
    "lr": Opt(Optional[float], ("--lr",), _lr_help()),
    "momentum": Opt(Optional[float], ("--momentum",), "Momentum (sgd, momentum, nesterov, rmsprop)."),
    "weight_decay": Opt(Optional[float], ("--weight-decay",), "L2 / decoupled weight decay."),
    "betas": Opt(Optional[str], ("--betas",), "Adam/AdamW betas, e.g. 0.9,0.999."),
    "eps": Opt(Optional[float], ("--eps",), "Denominator epsilon (adam, adamw, rmsprop, adagrad)."),
    # loss
    "loss": Opt(Optional[str], ("--loss",), _loss_help()),
    "delta": Opt(float, ("--delta",), "Threshold of huber (delta) and smooth-l1 (beta).", 1.0),
    "label_smoothing": Opt(float, ("--label-smoothing",), "Label smoothing of cross-entropy.", 0.0),
    "class_weights": Opt(Optional[str], ("--class-weights",),
                         "'balanced' (inverse class frequency) or a comma list, one weight per class."),
    "gamma": Opt(float, ("--gamma",), "Focusing parameter of the focal loss.", 2.0),
    # training
    "epochs": Opt(Optional[int], ("--epochs",), "Number of epochs (regress 1000; classify per dataset: "
                  + ", ".join(f"{e.name} {e.meta['default_epochs']}" for e in DATASETS) + ")."),
    "batch_size": Opt(Optional[int], ("--batch-size",), "Mini-batch size (regress: full batch; classify: 64); "
                      "batches are shuffled with a generator seeded by --seed."),
    "clip_grad_norm": Opt(Optional[float], ("--clip-grad-norm",), "Clip the global gradient norm to this value."),
    "seed": Opt(int, ("--seed",), "Seed for initial weights and batch order: the same command twice gives "
                "identical numbers.", 0),
    "device": Opt(str, ("--device",), "auto (CUDA, then MPS, then CPU), cpu, cuda or mps.", "auto"),
    # regression data
    "samples": Opt(Optional[int], ("--samples",), "Number of samples (regress synthetic data 100; blobs 600)."),
    "features": Opt(Optional[int], ("--features",), "Number of features (regress: as many as --true-w gives; blobs 2)."),
    "true_w": Opt(str, ("--true-w",), "Synthetic regression data: true weight(s), comma list; one value is used for "
                  "every feature.", "2"),
    "true_b": Opt(float, ("--true-b",), "Synthetic regression data: true bias.", 3.0),
    "noise": Opt(float, ("--noise",), "Synthetic regression data: noise standard deviation.", 0.1),
    "data_seed": Opt(int, ("--data-seed",), "Seed of the synthetic data (numpy.random.seed for regress), of --subset "
                     "and of the validation split.", 42),
    "data": Opt(Optional[str], ("--data",), "Regress on a CSV file instead: feature columns then a target column, "
                "header optional."),
    # classification data and model
    "dataset": Opt(str, ("--dataset",), f"Dataset: {DATASETS.help()}.", "digits"),
    "data_dir": Opt(Optional[str], ("--data-dir",), "torchvision root holding MNIST/, FashionMNIST/, "
                    "cifar-10-batches-py/ (default $LOSSLAB_DATA or ~/.cache/losslab/data)."),
    "download": Opt(bool, ("--download",), "Download mnist/fashion-mnist/cifar10 into --data-dir when missing "
                    "(needs internet).", False),
    "subset": Opt(Optional[int], ("--subset",), "Use only this many training samples (and a proportional part of an "
                  "official test split)."),
    "val_fraction": Opt(float, ("--val-fraction",), "Seeded validation fraction where the dataset has no official "
                        "test split.", 0.2),
    "classes": Opt(int, ("--classes",), "blobs: number of classes.", 3),
    "class_sep": Opt(float, ("--class-sep",), "blobs: spread of the cluster centres (noise has unit variance).", 3.0),
    "imbalance": Opt(Optional[float], ("--imbalance",), "blobs: ratio of the largest to the smallest class."),
    "model": Opt(Optional[str], ("--model",), "Classifier (default per dataset: " + ", ".join(
        f"{e.name} {e.meta['default_model']}" for e in DATASETS) + "): " + "; ".join(
        f"{e.name}: {e.description}" for e in MODELS if e.meta["task"] == "classification") + "."),
    "hidden": Opt(int, ("--hidden",), "Hidden units of the mlp.", 128),
    "patience": Opt(Optional[int], ("--patience",), "Stop after this many epochs without a lower validation loss, "
                    "and restore the best weights."),
    "save": Opt(Optional[str], ("--save",), "Write a checkpoint (weights, optimizer state, config, class names) to "
                "this file, atomically."),
    "resume": Opt(Optional[str], ("--resume",), "Continue training from a checkpoint written by --save "
                  "(--epochs is the total)."),
    # many trials
    "task": Opt(str, ("--task",), "regress (the regress data and options) or classify (the classify dataset, model "
                "and loss options).", "regress"),
    "optims": Opt(str, ("--optims",), "Comma list of optimizers to compare: " + ", ".join(OPTIMIZERS.names()) + ".",
                  "sgd,momentum,adam,rmsprop"),
    "lr_for": Opt(Optional[list[str]], ("--lr-for",), "Learning rate for one optimizer, e.g. adam=0.01 (repeatable or "
                  "comma list); overrides --lr and the default."),
    "seeds": Opt(int, ("--seeds",), "Number of seeds (--seed, --seed+1, ...); runs are paired by seed.", 5),
    "tune": Opt(bool, ("--tune",), "Give every optimizer the same tuning budget: each rate of --tune-grid trained on "
                "one tuning seed; the best by final (classify: validation) loss is rerun on the seeds.", False),
    "tune_grid": Opt(Optional[str], ("--tune-grid",), "Tuning rates: MIN:MAX:PER_DECADE log-spaced or a comma list "
                     "(default 1e-4:1:3, 13 rates)."),
    "range_test": Opt(bool, ("--range-test",), "Run the LR range test (one run, the rate growing each step) instead "
                      "of a grid of short runs.", False),
    "min_lr": Opt(Optional[float], ("--min-lr",), "Lowest rate (grid default 1e-4; range test 1e-7)."),
    "max_lr": Opt(Optional[float], ("--max-lr",), "Highest rate (grid default 1; range test 10)."),
    "num": Opt(int, ("--num",), "Grid: number of log-spaced rates from --min-lr to --max-lr.", 13),
    "lrs": Opt(Optional[str], ("--lrs",), "Grid: explicit comma list of rates instead of --min-lr/--max-lr/--num."),
    "mode": Opt(str, ("--mode",), "Range test schedule: exp (exponential growth) or linear.", "exp"),
    "steps": Opt(int, ("--steps",), "Range test: optimizer steps from --min-lr to --max-lr.", 100),
    "no_vectorize": Opt(bool, ("--no-vectorize",), "Run trials one after another instead of stacked in one batched "
                        "computation (the default for supported models and optimizers).", False),
    "target_accuracy": Opt(Optional[float], ("--target-accuracy",), "classify: validation accuracy whose first "
                           "epoch is reported (default 0.9)."),
    # output and gates
    "json_out": Opt(bool, ("--json",), "Print one JSON document on stdout and nothing else there (progress goes to "
                    "stderr).", False),
    "out": Opt(Optional[str], ("--out",), "Folder for result.json, history.csv and plots (written atomically)."),
    "quiet": Opt(bool, ("--quiet", "-q"), "Print only the final report.", False),
    "expect": Opt(Optional[list[str]], ("--expect",), "Check a result (repeatable): NAME=VALUE±TOL (or +-), "
                  "NAME>=X, NAME<=X, NAME=TEXT; exit 1 if one fails."),
    "target_loss": Opt(Optional[float], ("--target-loss",), "Exit 1 unless the final loss (classify: validation "
                       "loss) is at most this. compare-optimizers: the loss whose first epoch is reported (default "
                       "1.05 x the least-squares optimum's loss)."),
}

OPTIM = ("optim", "lr", "momentum", "weight_decay", "betas", "eps")
TRAIN = ("epochs", "batch_size", "clip_grad_norm", "seed", "device")
REGRESS_DATA = ("loss", "delta", "samples", "features", "true_w", "true_b", "noise", "data_seed", "data")
CLASSIFY_DATA = ("dataset", "data_dir", "download", "subset", "val_fraction", "data_seed", "classes", "samples",
                 "features", "class_sep", "imbalance", "model", "hidden", "loss", "label_smoothing",
                 "class_weights", "gamma")
OUTPUT = ("json_out", "out", "quiet", "expect", "target_loss")

REGRESS_DEFAULTS = {"optim": "sgd", "loss": "mse", "epochs": 1000, "samples": 100}
CLASSIFY_DEFAULTS = {"optim": "adam", "loss": "cross-entropy", "batch_size": 64, "samples": 600, "features": 2}


def unique(*groups: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            seen.setdefault(name, None)
    return tuple(seen)


def options(*names: str, **defaults: Any) -> Callable[[Callable[[dict[str, Any]], int]], Callable[..., int]]:
    """Give a command `def cmd(kw: dict) -> int` the named options, with per-command defaults, as its signature."""

    def decorate(func: Callable[[dict[str, Any]], int]) -> Callable[..., int]:
        params, annotations = [], {}
        for name in names:
            opt = OPTS[name]
            annotation = Annotated[opt.type, typer.Option(*opt.flags, help=opt.help)]
            default = defaults.get(name, opt.default)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotation))
            annotations[name] = annotation

        @functools.wraps(func)
        def command(**kw: Any) -> int:
            return func(kw)

        command.__signature__ = inspect.Signature(params, return_annotation=int)  # type: ignore[attr-defined]
        command.__annotations__ = {**annotations, "return": int}
        del command.__wrapped__  # typer must see the new signature, not the wrapped one
        return command

    return decorate


def _given(kw: dict[str, Any], name: str, default: Any) -> Any:
    value = kw.get(name)
    return default if value is None else value


def flag(name: str) -> str:
    return OPTS[name].flags[0]


def refuse_other_task(kw: dict[str, Any], task: str, defaults: dict[str, Any]) -> None:
    """With --task regress, classification-only options must stay unset, and the reverse."""
    shared = set(REGRESS_DATA) & set(CLASSIFY_DATA)
    other = (set(CLASSIFY_DATA) - shared - {"patience", "save", "resume"} if task == "regression"
             else set(REGRESS_DATA) - shared)
    for name in sorted(other):
        if name in kw and kw[name] != defaults.get(name, OPTS[name].default):
            wanted = "classify" if task == "regression" else "regress"
            raise ConfigError(flag(name), f"applies to --task {wanted} only")


def task_of(kw: dict[str, Any]) -> str:
    task = kw.get("task", "regress")
    if task not in ("regress", "classify"):
        raise ConfigError("--task", f"unknown task {task!r}; choose from: regress, classify")
    return "regression" if task == "regress" else "classification"


def optim_config(kw: dict[str, Any], default_optim: str) -> Any:
    from losslab.config import OptimConfig, parse_floats

    return OptimConfig(name=_given(kw, "optim", default_optim), lr=kw.get("lr"), momentum=kw.get("momentum"),
                       weight_decay=kw.get("weight_decay"), betas=parse_floats("--betas", kw.get("betas")),
                       eps=kw.get("eps"))


def gate_config(kw: dict[str, Any]) -> Any:
    from losslab.config import GateConfig

    return GateConfig(expect=tuple(kw.get("expect") or ()), target_loss=kw.get("target_loss"))


def regress_config(kw: dict[str, Any], *, with_gates: bool = True) -> Any:
    from losslab.config import LossConfig, RegressConfig, RegressDataConfig, TrainConfig, parse_floats

    true_w = parse_floats("--true-w", kw.get("true_w", "2")) or (2.0,)
    return RegressConfig(
        data=RegressDataConfig(samples=_given(kw, "samples", 100), features=_given(kw, "features", len(true_w)),
                               true_w=true_w, true_b=kw.get("true_b", 3.0), noise=kw.get("noise", 0.1),
                               data_seed=kw.get("data_seed", 42), csv=kw.get("data")),
        loss=LossConfig(name=_given(kw, "loss", "mse"), delta=kw.get("delta", 1.0)),
        optim=optim_config(kw, "sgd"),
        train=TrainConfig(epochs=_given(kw, "epochs", 1000), batch_size=kw.get("batch_size"),
                          clip_grad_norm=kw.get("clip_grad_norm"), seed=kw.get("seed", 0),
                          device=kw.get("device", "auto")),
        gates=gate_config(kw) if with_gates else gate_config({}),
        out=kw.get("out"),
    )


def classify_config(kw: dict[str, Any], *, with_gates: bool = True) -> Any:
    from losslab.config import (ClassifyConfig, ClassifyDataConfig, ClassifyLossConfig, ModelConfig, TrainConfig)

    return ClassifyConfig(
        data=ClassifyDataConfig(dataset=kw.get("dataset", "digits"), data_dir=kw.get("data_dir"),
                                download=kw.get("download", False), subset=kw.get("subset"),
                                val_fraction=kw.get("val_fraction", 0.2), data_seed=kw.get("data_seed", 42),
                                classes=kw.get("classes", 3), samples=_given(kw, "samples", 600),
                                features=_given(kw, "features", 2), class_sep=kw.get("class_sep", 3.0),
                                imbalance=kw.get("imbalance")),
        model=ModelConfig(name=kw.get("model"), hidden=kw.get("hidden", 128)),
        loss=ClassifyLossConfig(name=_given(kw, "loss", "cross-entropy"), label_smoothing=kw.get("label_smoothing", 0.0),
                                class_weights=kw.get("class_weights"), gamma=kw.get("gamma", 2.0)),
        optim=optim_config(kw, "adam"),
        train=TrainConfig(epochs=kw.get("epochs"), batch_size=_given(kw, "batch_size", 64),
                          clip_grad_norm=kw.get("clip_grad_norm"), seed=kw.get("seed", 0),
                          device=kw.get("device", "auto")),
        gates=gate_config(kw) if with_gates else gate_config({}),
        patience=kw.get("patience"), save=kw.get("save"), resume=kw.get("resume"), out=kw.get("out"),
    )
