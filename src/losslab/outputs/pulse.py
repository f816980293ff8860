"""A command's signs of life while it works, before and between its displays' own lines.

Off a terminal (a CI log), a line at least every `EVERY` seconds: what the display at work says it is doing
(`provide`), or that the command is starting (importing torch, building the data and model) before any display.
On a terminal, a first frame, `losslab CMD: starting…`, the moment the options are read — before torch is
imported — that the live display (or the first line of output) replaces. Every display's plain line calls
`touch()`, so the heartbeat speaks only into silence.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional


def _every() -> Optional[float]:
    """LOSSLAB_PROGRESS_EVERY's seconds (None: not a positive number; `begin` names it in a one-line error)."""
    text = os.environ.get("LOSSLAB_PROGRESS_EVERY") or "10"
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


# seconds of silence before a heartbeat line (LOSSLAB_PROGRESS_EVERY: a CI log that wants more or fewer)
EVERY = _every() or 10.0

_lock = threading.Lock()
_last = time.perf_counter()
_provider: Optional[Callable[[], Optional[str]]] = None
_command = ""
_started = 0.0
_frame = False  # the terminal shows the transient "starting…" line
_used = False  # a display has said what it does
_stop: Optional[threading.Event] = None
_stream: Any = None  # where heartbeat lines go


def touch() -> None:
    """A line was just printed: the next heartbeat waits another EVERY seconds."""
    global _last
    _last = time.perf_counter()


def provide(status: Optional[Callable[[], Optional[str]]], stream: Any = None) -> None:
    """What the heartbeat says while a display works (None: the display is done); a provider that returns None
    has nothing to say yet. A display off a terminal (`stream`) starts the heartbeat if no command did (the Python
    API, tests)."""
    global _provider, _used
    _provider = status
    if status is not None:
        _used = True
        if stream is not None and not _is_terminal(stream):
            _ensure(stream)


def begin(command: str, quiet: bool = False, stream: Any = None) -> None:
    """The command has read its options and starts working."""
    global _command, _started, _frame, _used
    if _every() is None:
        from losslab.errors import ConfigError

        raise ConfigError("LOSSLAB_PROGRESS_EVERY", f"{os.environ.get('LOSSLAB_PROGRESS_EVERY')!r} is not a "
                          "positive number of seconds (e.g. LOSSLAB_PROGRESS_EVERY=30)")
    stream = stream or sys.stderr
    _command, _started, _used = command, time.perf_counter(), False
    touch()
    if quiet or stream is None:
        return
    if _is_terminal(stream):
        stream.write(f"\x1b[2mlosslab {command}: starting…\x1b[0m")
        stream.flush()
        _frame = True
        return
    _ensure(stream)


@contextmanager
def working(command: str, quiet: bool = False) -> Iterator[None]:
    """`begin` … `end` around a command's work (`end` also when it fails: its error line starts clean)."""
    begin(command, quiet)
    try:
        yield
    finally:
        end()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _ensure(stream: Any) -> None:
    """The heartbeat thread running, writing to `stream` (the latest display's: one thread per process)."""
    global _stop, _stream
    with _lock:
        _stream = stream
        if _stop is None:
            _stop = threading.Event()
            threading.Thread(target=_beat, args=(_stop,), daemon=True, name="losslab-pulse").start()


def clear(stream: Any = None) -> None:
    """Remove the "starting…" frame before anything else is drawn on its line."""
    global _frame
    with _lock:
        if _frame:
            _frame = False
            stream = stream or sys.stderr
            try:
                stream.write("\r\x1b[2K")
                stream.flush()
            except (OSError, ValueError):
                pass


def end() -> None:
    """The command is done: no more heartbeats, no frame left."""
    global _stop, _provider, _command
    clear()
    with _lock:
        if _stop is not None:
            _stop.set()
            _stop = None
    _provider, _command = None, ""


def _says() -> Optional[str]:
    said = _provider() if _provider is not None else None
    if said or not _command:
        return said
    seconds = f"{time.perf_counter() - _started:.0f} s"
    if not _used:  # (no display yet: torch, the data and the model are on their way)
        return f"losslab {_command}: starting (importing torch, building the data and the model), {seconds}"
    return f"losslab {_command}: working, {seconds}"


def _beat(stop: threading.Event) -> None:
    while not stop.wait(min(1.0, EVERY / 2)):
        if time.perf_counter() - _last < EVERY:
            continue
        said = _says()
        if not said:
            continue
        try:
            print(f"… {said}", file=_stream, flush=True)
        except (OSError, ValueError):  # the reader went away: the command itself will notice
            return
        touch()
