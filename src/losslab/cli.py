"""Typer commands: parse options, build a config, call an experiment, hand the result to display and results.

No torch at module level: `losslab --help` must stay fast.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer
from typer.core import TyperGroup

# click's UsageError, whether typer vendors click (new releases) or depends on it (older ones)
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

from losslab.errors import ConfigError, ExitCode
from losslab.options import (CLASSIFY_DATA, CLASSIFY_DEFAULTS, OPTIM, OUTPUT, REGRESS_DATA, REGRESS_DEFAULTS, TRAIN,
                             classify_config, options, regress_config, unique)

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


@app.callback()
def _root() -> None:
    """Experiments on PyTorch training."""


@app.command(epilog=EXIT_CODES_HELP)
@options(*unique(OPTIM, REGRESS_DATA, TRAIN, OUTPUT), **REGRESS_DEFAULTS)
def regress(kw: dict[str, Any]) -> int:
    """Fit linear regression (default data: y = 2x + 3 + 0.1·noise) and compare the learned w, b with the truth
    and the exact least-squares optimum."""
    from losslab.commands import run_regress

    return run_regress(regress_config(kw), json_out=kw["json_out"], quiet=kw["quiet"])


@app.command(epilog=EXIT_CODES_HELP)
@options(*unique(CLASSIFY_DATA, OPTIM, TRAIN, ("patience", "save", "resume"), OUTPUT), **CLASSIFY_DEFAULTS)
def classify(kw: dict[str, Any]) -> int:
    """Train a classifier (logistic, MLP or CNN) on embedded data (digits, blobs) or torchvision datasets,
    with per-epoch validation, per-class accuracy and a confusion matrix."""
    from losslab.commands import run_classify

    return run_classify(classify_config(kw), json_out=kw["json_out"], quiet=kw["quiet"])


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
