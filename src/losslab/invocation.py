"""The command and options of the current invocation, as a result.json records them for `losslab replay`.
Set by the CLI before a command runs; read when the result document is written. No imports: any layer may
read it."""

from __future__ import annotations

import os
from typing import Any, Optional

_current: Optional[dict[str, Any]] = None


PATH_OPTIONS = ("data", "data-dir", "val-dir", "resume")  # option keys naming input files or folders


def record(command: str, options: dict[str, Any]) -> None:
    """The options as typed, the folder they were typed in, and every input path made absolute (so that `losslab
    replay` finds the same files and user modules from any folder)."""
    global _current
    cwd = os.getcwd()
    paths = {key: os.path.abspath(os.path.expanduser(value)) for key, value in options.items()
             if key in PATH_OPTIONS and isinstance(value, str) and value.strip()}
    _current = {"command": command, "options": dict(options), "cwd": cwd, "paths": paths}


def current() -> Optional[dict[str, Any]]:
    return _current
