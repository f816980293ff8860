"""The command and options of the current invocation, as a result.json records them for `losslab replay`.
Set by the CLI before a command runs; read when the result document is written. No imports: any layer may
read it."""

from __future__ import annotations

from typing import Any, Optional

_current: Optional[dict[str, Any]] = None


def record(command: str, options: dict[str, Any]) -> None:
    global _current
    _current = {"command": command, "options": dict(options)}


def current() -> Optional[dict[str, Any]]:
    return _current
