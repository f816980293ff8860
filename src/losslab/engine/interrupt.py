"""Ctrl-C that stops at a safe point: the first press asks the run to stop, and the engines raise
KeyboardInterrupt only where they check (after a step, between runs), inside the code that turns it into
status "interrupted" — so a press can never land between two lines that must run together. A second press
stops at once (unless a critical section such as writing the JSON document is running: it waits for its end).

Without `graceful()` installed (library use, tests) a KeyboardInterrupt is raised as usual and handled the same
way by the same code.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class _State:
    requested = False  # Ctrl-C pressed: stop at the next check
    critical = 0  # > 0 while something must not be cut (a second press waits for it)
    escalate = False  # a second press arrived during a critical section


STATE = _State()


def requested() -> bool:
    return STATE.requested


def check() -> None:
    """A safe point: stop here (raise KeyboardInterrupt) if Ctrl-C was pressed."""
    if STATE.requested:
        raise KeyboardInterrupt


def _handler(signum: int, frame: Any) -> None:
    if not STATE.requested:
        STATE.requested = True
        return
    if STATE.critical:
        STATE.escalate = True
        return
    raise KeyboardInterrupt


@contextmanager
def graceful() -> Iterator[None]:
    """Install the two-press Ctrl-C handler for the duration of a command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STATE.requested, STATE.critical, STATE.escalate = False, 0, False
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def critical() -> Iterator[None]:
    """A section a second Ctrl-C must not cut in half (e.g. writing a JSON document to stdout)."""
    STATE.critical += 1
    try:
        yield
    finally:
        STATE.critical -= 1
        if not STATE.critical and STATE.escalate:
            STATE.escalate = False
            raise KeyboardInterrupt
