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
    requested = False  # Ctrl-C pressed (or SIGTERM/SIGHUP received): stop at the next check
    signum = signal.SIGINT  # the signal that asked: the exit code is 128 + its number
    critical = 0  # > 0 while something must not be cut (a second press waits for it)
    escalate = False  # a second press arrived during a critical section
    at_once = 0  # > 0 while a user's code runs outside training (an import, a constructor): the first press stops it


STATE = _State()
# SIGTERM (kill, a CI job's timeout) and SIGHUP (a closed terminal) stop a run as Ctrl-C does
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def requested() -> bool:
    return STATE.requested


def check() -> None:
    """A safe point: stop here (raise KeyboardInterrupt) if Ctrl-C was pressed."""
    if STATE.requested:
        raise KeyboardInterrupt


def _handler(signum: int, frame: Any) -> None:
    if not STATE.requested:
        STATE.requested = True
        STATE.signum = signal.Signals(signum)
        if STATE.at_once and not STATE.critical:
            raise KeyboardInterrupt
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
    STATE.requested, STATE.critical, STATE.escalate, STATE.signum = False, 0, False, signal.SIGINT
    STATE.at_once = 0
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def reinstall() -> None:
    """Take the signals back after a library installed its own handlers (ray.init does for SIGTERM)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _handler:
        for signum in SIGNALS:
            signal.signal(signum, _handler)


def exit_code() -> int:
    """128 + the signal that stopped the command (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + int(STATE.signum)


@contextmanager
def at_once() -> Iterator[None]:
    """A section with no safe point of losslab's inside (a user's module importing, a model's 60-second
    constructor): the first press stops it there and then, rather than at a check that would come minutes later."""
    STATE.at_once += 1
    try:
        yield
    finally:
        STATE.at_once -= 1


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
