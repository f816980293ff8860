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

from losslab.errors import ConfigError, ExitCode
from losslab.losses import LOSSES
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


def _choices(registry: Any) -> str:
    return ", ".join(registry.names())


# Options shared by the training commands ----------------------------------------------------------
Optim = Annotated[str, typer.Option("--optim", help=f"Optimizer: {OPTIMIZERS.help()}.")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default: the optimizer's own, "
                                             + ", ".join(f"{e.name} {e.meta['default_lr']:g}" for e in OPTIMIZERS)
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
    loss: Annotated[str, typer.Option("--loss", help=f"Loss: {'; '.join(f'{e.name}: {e.description}' for e in LOSSES if e.meta['task'] == 'regression')}; or an import path package.module:Name (class or function).")] = "mse",
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
    from losslab.config import (GateConfig, LossConfig, OptimConfig, RegressConfig, RegressDataConfig, TrainConfig,
                                parse_floats)

    true_ws = parse_floats("--true-w", true_w) or (2.0,)
    cfg = RegressConfig(
        data=RegressDataConfig(samples=samples, features=features or len(true_ws), true_w=true_ws, true_b=true_b,
                               noise=noise, data_seed=data_seed, csv=data),
        loss=LossConfig(name=loss, delta=delta),
        optim=OptimConfig(name=optim, lr=lr, momentum=momentum, weight_decay=weight_decay,
                          betas=parse_floats("--betas", betas), eps=eps),
        train=TrainConfig(epochs=epochs, batch_size=batch_size, clip_grad_norm=clip_grad_norm, seed=seed,
                          device=device),
        gates=GateConfig(expect=tuple(expect or ()), target_loss=target_loss),
        out=out,
    )
    return run_regress(cfg, json_out=json_out, quiet=quiet)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
