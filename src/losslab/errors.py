"""Exit codes and the one error type the CLI turns into a one-line message with exit 2."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    EXPECTATION_FAILED = 1
    USAGE = 2
    DIVERGED = 3
    INTERRUPTED = 130


class ConfigError(ValueError):
    """Invalid user input. `option` names the CLI option at fault (e.g. '--lr')."""

    def __init__(self, option: str, message: str):
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}" if option else message)
