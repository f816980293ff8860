"""Typer commands: parse options, build a config, call an experiment, hand the result to display and results.

No torch at module level: `losslab --help` must stay fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

# click's UsageError, whether typer vendors click (new releases) or depends on it (older ones)
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

from losslab.datasets import DATASETS
from losslab.errors import ConfigError, ExitCode
from losslab.losses import LOSSES
from losslab.models import MODELS
from losslab.optimizers import OPTIMIZERS

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 an --expect/--target-loss check failed; 2 bad usage; "
    "3 training diverged (non-finite loss); 130 interrupted (Ctrl-C)."
)


class _Group(TyperGroup):
    """Turns every usage error into one line on stderr and exit 2; maps Ctrl-C to 130."""

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name or "losslab", complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `losslab`: show the help
                print(exc.format_message(), file=sys.stderr)
                return self._exit(ExitCode.USAGE, standalone_mode)
            where = exc.ctx.command_path if exc.ctx is not None else "losslab"
            print(f"{where}: error: {exc.format_message()}", file=sys.stderr)
            code = ExitCode.USAGE
        except ConfigError as exc:
            print(f"losslab: error: {exc}", file=sys.stderr)
            code = ExitCode.USAGE
        except (typer.Abort, KeyboardInterrupt):
            print("losslab: interrupted", file=sys.stderr)
            code = ExitCode.INTERRUPTED
        return self._exit(code, standalone_mode)

    @staticmethod
    def _exit(code: int, standalone_mode: bool) -> int:
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


app = typer.Typer(
    cls=_Group,
    name="losslab",
    help="Experiments on PyTorch training: losses, optimizers, learning rates and the training loop, "
         "made visible and measurable. " + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _loss_help(task: str) -> str:
    entries = "; ".join(f"{e.name}: {e.description}" for e in LOSSES if task in e.meta["tasks"])
    return f"Loss: {entries}; or an import path package.module:Name (class or function)."


def _optim_config(optim: str, lr: Optional[float], momentum: Optional[float], weight_decay: Optional[float],
                  betas: Optional[str], eps: Optional[float]) -> Any:
    from losslab.config import OptimConfig, parse_floats

    return OptimConfig(name=optim, lr=lr, momentum=momentum, weight_decay=weight_decay,
                       betas=parse_floats("--betas", betas), eps=eps)


# Options shared by the training commands ----------------------------------------------------------
Optim = Annotated[str, typer.Option("--optim", help=f"Optimizer: {OPTIMIZERS.help()}.")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default per optimizer, regression/classification: "
                                             + ", ".join(f"{e.name} {e.meta['default_lr']['regression']:g}/"
                                                         f"{e.meta['default_lr']['classification']:g}" for e in OPTIMIZERS)
                                             + ").")]
Momentum = Annotated[Optional[float], typer.Option("--momentum", help="Momentum (sgd, momentum, nesterov, rmsprop).")]
WeightDecay = Annotated[Optional[float], typer.Option("--weight-decay", help="L2 / decoupled weight decay.")]
Betas = Annotated[Optional[str], typer.Option("--betas", help="Adam/AdamW betas, e.g. 0.9,0.999.")]
Eps = Annotated[Optional[float], typer.Option("--eps", help="Denominator epsilon (adam, adamw, rmsprop, adagrad).")]
Epochs = Annotated[int, typer.Option("--epochs", help="Number of epochs.")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Mini-batch size (default: full batch); "
                                                  "batches are shuffled with a generator seeded by --seed.")]
ClipGradNorm = Annotated[Optional[float], typer.Option("--clip-grad-norm", help="Clip the global gradient norm to this value.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for initial weights and batch order: the same command twice gives identical numbers.")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there (progress goes to stderr).")]
Out = Annotated[Optional[str], typer.Option("--out", help="Folder for result.json, history.csv and plots (written atomically).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final report.")]
Expect = Annotated[Optional[list[str]], typer.Option("--expect", help="Check a result, e.g. w=2±0.05 or b=3+-0.05 or final_loss<=0.02 (repeatable); exit 1 if one fails.")]
TargetLoss = Annotated[Optional[float], typer.Option("--target-loss", help="Exit 1 unless the final loss is at most this.")]


@app.callback()
def _root() -> None:
    """Experiments on PyTorch training."""


@app.command(epilog=EXIT_CODES_HELP)
def regress(
    optim: Optim = "sgd",
    lr: Lr = None,
    loss: Annotated[str, typer.Option("--loss", help=_loss_help("regression"))] = "mse",
    delta: Annotated[float, typer.Option("--delta", help="Threshold of huber (delta) and smooth-l1 (beta).")] = 1.0,
    momentum: Momentum = None,
    weight_decay: WeightDecay = None,
    betas: Betas = None,
    eps: Eps = None,
    epochs: Epochs = 1000,
    batch_size: BatchSize = None,
    clip_grad_norm: ClipGradNorm = None,
    seed: Seed = 0,
    device: Device = "auto",
    samples: Annotated[int, typer.Option("--samples", help="Synthetic data: number of samples.")] = 100,
    features: Annotated[Optional[int], typer.Option("--features", help="Synthetic data: number of features (default: as many as --true-w gives).")] = None,
    true_w: Annotated[str, typer.Option("--true-w", help="Synthetic data: true weight(s), comma list; one value is used for every feature.")] = "2",
    true_b: Annotated[float, typer.Option("--true-b", help="Synthetic data: true bias.")] = 3.0,
    noise: Annotated[float, typer.Option("--noise", help="Synthetic data: noise standard deviation.")] = 0.1,
    data_seed: Annotated[int, typer.Option("--data-seed", help="Synthetic data: numpy.random.seed value.")] = 42,
    data: Annotated[Optional[str], typer.Option("--data", help="Train on a CSV file instead: feature columns then a target column, header optional.")] = None,
    json_out: Json = False,
    out: Out = None,
    quiet: Quiet = False,
    expect: Expect = None,
    target_loss: TargetLoss = None,
) -> int:
    """Fit linear regression (default data: y = 2x + 3 + 0.1·noise) and compare the learned w, b with the truth
    and the exact least-squares optimum."""
    from losslab.commands import run_regress
    from losslab.config import GateConfig, LossConfig, RegressConfig, RegressDataConfig, TrainConfig, parse_floats

    true_ws = parse_floats("--true-w", true_w) or (2.0,)
    cfg = RegressConfig(
        data=RegressDataConfig(samples=samples, features=features or len(true_ws), true_w=true_ws, true_b=true_b,
                               noise=noise, data_seed=data_seed, csv=data),
        loss=LossConfig(name=loss, delta=delta),
        optim=_optim_config(optim, lr, momentum, weight_decay, betas, eps),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, clip_grad_norm=clip_grad_norm, seed=seed,
                          device=device),
        gates=GateConfig(expect=tuple(expect or ()), target_loss=target_loss),
        out=out,
    )
    return run_regress(cfg, json_out=json_out, quiet=quiet)


@app.command(epilog=EXIT_CODES_HELP)
def classify(
    dataset: Annotated[str, typer.Option("--dataset", help=f"Dataset: {DATASETS.help()}.")] = "digits",
    model: Annotated[Optional[str], typer.Option("--model", help="Model (default per dataset: " + ", ".join(
        f"{e.name} {e.meta['default_model']}" for e in DATASETS) + "): " + "; ".join(
        f"{e.name}: {e.description}" for e in MODELS if e.meta["task"] == "classification") + ".")] = None,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden units of the mlp.")] = 128,
    loss: Annotated[str, typer.Option("--loss", help=_loss_help("classification"))] = "cross-entropy",
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", help="Label smoothing of cross-entropy.")] = 0.0,
    class_weights: Annotated[Optional[str], typer.Option("--class-weights", help="'balanced' (inverse class frequency) or a comma list, one weight per class.")] = None,
    gamma: Annotated[float, typer.Option("--gamma", help="Focusing parameter of the focal loss.")] = 2.0,
    optim: Optim = "adam",
    lr: Lr = None,
    momentum: Momentum = None,
    weight_decay: WeightDecay = None,
    betas: Betas = None,
    eps: Eps = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Number of epochs, the total when resuming (default per dataset: " + ", ".join(f"{e.name} {e.meta['default_epochs']}" for e in DATASETS) + ").")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Mini-batch size; batches are shuffled with a generator seeded by --seed.")] = 64,
    clip_grad_norm: ClipGradNorm = None,
    seed: Seed = 0,
    device: Device = "auto",
    patience: Annotated[Optional[int], typer.Option("--patience", help="Stop after this many epochs without a lower validation loss, and restore the best weights.")] = None,
    save: Annotated[Optional[str], typer.Option("--save", help="Write a checkpoint (weights, optimizer state, config, class names) to this file, atomically.")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue training from a checkpoint written by --save.")] = None,
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="torchvision root holding MNIST/, FashionMNIST/, cifar-10-batches-py/ (default $LOSSLAB_DATA or ~/.cache/losslab/data).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Download mnist/fashion-mnist/cifar10 into --data-dir when missing (needs internet).")] = False,
    subset: Annotated[Optional[int], typer.Option("--subset", help="Use only this many training samples (and a proportional part of an official test split).")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Seeded validation fraction where the dataset has no official test split.")] = 0.2,
    data_seed: Annotated[int, typer.Option("--data-seed", help="Seed of the blobs data, --subset and the validation split.")] = 42,
    classes: Annotated[int, typer.Option("--classes", help="blobs: number of classes.")] = 3,
    samples: Annotated[int, typer.Option("--samples", help="blobs: number of samples.")] = 600,
    features: Annotated[int, typer.Option("--features", help="blobs: number of features.")] = 2,
    class_sep: Annotated[float, typer.Option("--class-sep", help="blobs: spread of the cluster centres (noise has unit variance).")] = 3.0,
    imbalance: Annotated[Optional[float], typer.Option("--imbalance", help="blobs: ratio of the largest to the smallest class.")] = None,
    json_out: Json = False,
    out: Annotated[Optional[str], typer.Option("--out", help="Folder for result.json, history.csv, curves.png and confusion.png (written atomically).")] = None,
    quiet: Quiet = False,
    expect: Annotated[Optional[list[str]], typer.Option("--expect", help="Check a result, e.g. accuracy>=0.95, valid_loss<=0.2, accuracy_3>=0.9 (repeatable); exit 1 if one fails.")] = None,
    target_loss: Annotated[Optional[float], typer.Option("--target-loss", help="Exit 1 unless the final validation loss is at most this.")] = None,
) -> int:
    """Train a classifier (logistic, MLP or CNN) on embedded data (digits, blobs) or torchvision datasets,
    with per-epoch validation, per-class accuracy and a confusion matrix."""
    from losslab.commands import run_classify
    from losslab.config import (ClassifyConfig, ClassifyDataConfig, ClassifyLossConfig, GateConfig, ModelConfig,
                                TrainConfig)

    cfg = ClassifyConfig(
        data=ClassifyDataConfig(dataset=dataset, data_dir=data_dir, download=download, subset=subset,
                                val_fraction=val_fraction, data_seed=data_seed, classes=classes, samples=samples,
                                features=features, class_sep=class_sep, imbalance=imbalance),
        model=ModelConfig(name=model, hidden=hidden),
        loss=ClassifyLossConfig(name=loss, label_smoothing=label_smoothing, class_weights=class_weights, gamma=gamma),
        optim=_optim_config(optim, lr, momentum, weight_decay, betas, eps),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, clip_grad_norm=clip_grad_norm, seed=seed,
                          device=device),
        gates=GateConfig(expect=tuple(expect or ()), target_loss=target_loss),
        patience=patience, save=save, resume=resume, out=out,
    )
    return run_classify(cfg, json_out=json_out, quiet=quiet)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
