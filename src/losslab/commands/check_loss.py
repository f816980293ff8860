"""`losslab check-loss package.module:Name`: check a custom loss before anyone trains with it — callable on the
task's shapes, a scalar connected to the graph, finite, and a gradient that matches finite differences."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from losslab.components.losses import load_import_path
from losslab.errors import ConfigError, ExitCode
from losslab.outputs.display import Report, fmt, make_console
from losslab.outputs.files import versions

COMMAND = "check-loss"
MAX_POINTS = 100  # draws per residual scale: 100 take a few seconds; more would look like a hang


@dataclass(frozen=True)
class CheckLossConfig:
    loss: str
    task: str = "regression"
    second_order: bool = False
    points: int = 3

    def __post_init__(self) -> None:
        if ":" not in self.loss:
            raise ConfigError("LOSS", f"expected an import path package.module:Name (got {self.loss!r})")
        from losslab.components.tasks import NAMES

        if self.task not in NAMES:
            raise ConfigError("--task", f"unknown task {self.task!r}; choose from: regress, classify")
        if not 1 <= self.points <= MAX_POINTS:
            raise ConfigError("--points", f"must be from 1 to {MAX_POINTS} (got {self.points}); each point checks "
                              "every residual scale")


def document(cfg: CheckLossConfig, result: Any) -> dict[str, Any]:
    return {"command": COMMAND, "status": "passed" if result.passed else "failed", "config": asdict(cfg),
            "loss": result.loss, "task": result.task, "checks": [asdict(c) for c in result.checks],
            "max_abs_error": result.max_abs_error, "max_rel_error": result.max_rel_error,
            "max_tolerance_share": result.max_tolerance_share, "versions": versions()}


def report(result: Any) -> Report:
    from losslab.engine.loss_check import ROWS

    rows = [[c.name, "ok" if c.passed else "FAILED", c.detail] for c in result.checks]
    title = f"losslab check-loss: {'passed' if result.passed else 'FAILED'} — {result.loss} ({result.task})"
    notes = [f"max |analytic − numeric| {fmt(result.max_abs_error, '.2e')}, max relative "
             f"{fmt(result.max_rel_error, '.2e')} where |numeric| ≥ 0.01, worst element at "
             f"{fmt(result.max_tolerance_share, '.2g')}× gradcheck's tolerance 1e-5 + 1e-3·|numeric| (float64, "
             f"central differences, eps 1e-6; batches of {', '.join(map(str, ROWS))} and of the default data's "
             "first 8 rows)"] if result.max_abs_error is not None else []
    return Report(title, ["check", "result", "detail"], rows, notes, text=frozenset({1, 2}))


def default_data(task: str) -> Any:
    """(prediction, target) of an initial model on the rows the task's default data starts with (regress: the
    tutorial data; classify: digits), so the gradient is also checked where training would take it."""
    from losslab.config import ClassifyConfig, RegressConfig
    from losslab.engine.problems import build_problem, data_probe

    return data_probe(build_problem(RegressConfig().resolved() if task == "regression"
                                    else ClassifyConfig().resolved()))


def main(cfg: CheckLossConfig, *, json_out: bool) -> int:
    from losslab import interrupt
    from losslab.commands.common import context, end_command
    from losslab.engine.loss_check import check_loss
    from losslab.outputs.sinks import dispatcher

    events = dispatcher(context(COMMAND, cfg, json_out))
    fn = load_import_path(cfg.loss)
    result = check_loss(fn, cfg.loss, cfg.task, points=cfg.points, second_order=cfg.second_order,
                        data=default_data(cfg.task))
    if interrupt.requested():  # a Ctrl-C during the checks: they did not all run, so nothing "passed"
        raise KeyboardInterrupt
    console = make_console(stderr=json_out)
    report(result).render(console)
    doc = document(cfg, result)
    end_command(events, COMMAND, doc["status"], doc, json_out)
    return int(ExitCode.OK if result.passed else ExitCode.EXPECTATION_FAILED)
