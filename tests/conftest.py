"""Shared test helpers: tiny seeded data, the tutorial reference data, a CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from losslab.cli import app
from losslab.engine.events import Consumer, RunInfo


def tutorial_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """The five NumPy lines every tutorial uses, written out independently of losslab.data."""
    np.random.seed(42)
    x = np.random.randn(100, 1)
    noise = np.random.randn(100, 1)
    y = 2 * x + 3 + 0.1 * noise
    return torch.from_numpy(x).float(), torch.from_numpy(y).float()


def written(out: Any) -> list[str]:
    """The files a command wrote into its --out folder, without those an output consumer registered for itself
    (`CONSUMERS.register(..., files=...)`): what the command itself is answerable for."""
    from losslab.outputs.sinks import consumer_files

    return sorted(p.name for p in out.iterdir() if p.name not in consumer_files())


class Run:
    def __init__(self, result: Any):
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exception = result.exception

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def assert_usage_error(self, option: str) -> None:
        """Bad input: exit 2, one line on stderr naming the option, no traceback, nothing on stdout."""
        assert self.exit_code == 2, (self.stdout, self.stderr)
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and option in lines[0], self.stderr
        assert "Traceback" not in self.stderr and self.stdout == ""


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str) -> Run:
        threads = torch.get_num_threads()
        try:
            return Run(runner.invoke(app, list(args)))
        finally:  # (--threads N sets the process's count: a later test in this worker must not inherit it)
            torch.set_num_threads(threads)

    return invoke


def regress_run(cfg: Any, data: Any = None, consumers: Any = ()) -> Any:
    """`losslab regress`'s run on `cfg` (and optional data), its events going to `consumers`."""
    from losslab.commands import regress
    from losslab.engine.events import Dispatcher
    from losslab.engine.problems import RegressionProblem

    cfg = cfg.resolved()
    return regress.run(cfg, Dispatcher(consumers), RegressionProblem(cfg, data))


def classify_run(cfg: Any, data: Any = None, consumers: Any = ()) -> Any:
    """`losslab classify`'s run on `cfg` (and optional prepared data), its events going to `consumers`."""
    from losslab.commands import classify
    from losslab.engine.events import Dispatcher
    from losslab.engine.problems import ClassificationProblem

    cfg = cfg.resolved()
    return classify.run(cfg, Dispatcher(consumers), ClassificationProblem(cfg, data))


@dataclass
class Recorder(Consumer):
    """Keeps every run's epoch records by run label (tests and sinks that need the whole history)."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> None:
        self.records.setdefault(run.label, []).append(record)

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        self.ended[run.label] = result.status
