"""Progress in a Jupyter notebook: one display per call that updates in place (IPython's display handles),
never a line per epoch. The Python API switches it on for a call made in a notebook with progress on; the
command's own line-by-line display is quiet then."""

from __future__ import annotations

import sys
import time
from contextvars import ContextVar
from typing import Any, Mapping, Optional

from losslab.engine.events import Consumer, RunInfo
from losslab.outputs.sinks import CONSUMERS, OutputContext

WANTED: ContextVar[bool] = ContextVar("losslab_notebook_progress", default=False)
EVERY_SECONDS = 0.2  # how often the display is redrawn


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython is never imported here to find out)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class NotebookProgress(Consumer):
    """One line of progress, redrawn in place: the epoch of the run being trained (with its loss and the time
    left), or how many runs of a many-run command have finished."""

    def __init__(self, ctx: OutputContext):
        from IPython.display import display

        self.command = ctx.command
        self.handle = display({"text/plain": f"losslab {self.command}: starting"}, raw=True, display_id=True)
        self.started = time.perf_counter()
        self.last = 0.0
        self.done = 0
        self.total = 0

    def _show(self, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self.last >= EVERY_SECONDS:
            self.last = now
            if self.handle is not None:
                self.handle.update({"text/plain": f"losslab {self.command}: {text}"}, raw=True)

    def on_run_begin(self, run: RunInfo) -> None:
        self.total = run.total

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> Optional[bool]:
        epochs = run.epochs or 0
        elapsed = time.perf_counter() - self.started
        done = (self.done + record["epoch"] / epochs) / max(1, self.total) if epochs else 0.0
        left = f", about {elapsed * (1 - done) / done:.0f} s left" if done > 0 else ""
        runs = f"run {self.done + 1}/{self.total}, " if self.total > 1 and run.stacked_with == 1 else ""
        self._show(f"{runs}epoch {record['epoch']}/{epochs}, loss {record['train_loss']:.4g}{left}")
        return None

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        self.done += 1
        if self.total > 1:
            self._show(f"{self.done}/{self.total} runs finished", force=self.done == self.total)

    def on_command_end(self, command: str, status: str, document: Mapping[str, Any]) -> None:
        self._show(f"{status} in {time.perf_counter() - self.started:.1f} s", force=True)


def _factory(ctx: OutputContext) -> Optional[Consumer]:
    return NotebookProgress(ctx) if WANTED.get() else None


CONSUMERS.register("notebook", "progress redrawn in place in a Jupyter notebook (the Python API)")(_factory)
