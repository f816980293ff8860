"""Exit codes and the one error type the CLI turns into a one-line message with exit 2."""

from __future__ import annotations

from enum import IntEnum

FLOAT32_MAX = 3.4028234663852886e38  # the largest float32: numbers that become tensors or rates must fit


class ExitCode(IntEnum):
    OK = 0
    EXPECTATION_FAILED = 1
    USAGE = 2
    DIVERGED = 3
    FAILED = 4  # an internal error, or every run of a many-run command raised
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # stdout closed by the reader (`| head`): 128 + SIGPIPE, as the shell reports it


# What a call into a user's code (model, dataset, loss, a class a file names) may end with: any exception, or
# sys.exit() — which must become a failed check or a failed run, never losslab's own exit code (a dataset that
# calls sys.exit(0) would otherwise read as success to a CI step)
USER_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit)


def describe(exc: BaseException) -> str:
    """An exception in one line: its type and the first non-blank line of its message."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class RunFailed(Exception):
    """A single run raised during training (e.g. a user's loss that fails after some epochs): one line, exit 4."""


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM/SIGHUP) stopped a command by an exception rather than by a status: carried past typer,
    which would turn a KeyboardInterrupt into a silent exit 130, to the one place that says so."""


class OutputClosed(Exception):
    """The reader closed stdout (a BrokenPipeError, re-raised as this so that click does not turn it into exit 1)."""


class ConfigError(ValueError):
    """Invalid user input. `option` names the CLI option at fault (e.g. '--lr')."""

    def __init__(self, option: str, message: str):
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}" if option else message)
