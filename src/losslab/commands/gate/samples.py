"""Per-seed numbers of an experiment — what `gate` and `diff` compare: read from a result document (and the
history.csv beside it), or made now by running a recorded invocation for chosen seeds (stacked where possible).

A `Side` holds, per entry (the run of regress/classify, each optimizer, loss or rate of a many-run command), each
metric by seed and the loss curve by seed, plus the facts of the whole experiment (the winner, the suggested rate).
A gate's own document keeps the sides it made, so it is a multi-seed result that a later gate can use as baseline.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from losslab.commands.table import command_of, is_many, replayable
from losslab.errors import ConfigError

# metric -> lower is better (None: either way is just a change)
DIRECTION: dict[str, Optional[bool]] = {
    "final_loss": True, "valid_loss": True, "best_loss": True, "epochs_to_target": True, "optimum_distance": True,
    "accuracy": False, "macro_f1": False,
    "valley": None, "steepest": None, "min_loss/10": None, "lightning": None,
    # a benchmark's times to target (per problem and optimizer; a miss: inf)
    "steps_to_target": True, "grad_evals_to_target": True,
}
FACTS = ("winner", "suggested_lr", "target")
COMMANDS = (*replayable(), "gate", "benchmark")  # the results gate and diff read
# documents written before every many-run document listed `entries` (losslab 0.1): where their entries were
LEGACY_ENTRIES = {"compare-optimizers": ("optimizers", "optimizer"), "compare-losses": ("losses", "loss")}
OUTPUT_ONLY = ("out", "tensorboard", "save", "json", "quiet", "print-config", "config", "plot", "expect",
               "target-loss", "resume")


@dataclass
class Side:
    command: str
    task: str
    invocation: dict[str, Any]
    source: str
    values: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)  # entry -> metric -> seed -> value
    curves: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # entry -> seed -> loss per epoch
    facts: dict[str, Any] = field(default_factory=dict)
    version: Optional[str] = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted({s for metrics in self.values.values() for by_seed in metrics.values() for s in by_seed})

    def document(self) -> dict[str, Any]:
        return {"command": self.command, "task": self.task, "invocation": self.invocation, "source": self.source,
                "seeds": self.seeds, "version": self.version, "facts": self.facts, "config": self.config,
                "values": {e: {m: {str(s): v for s, v in by.items()} for m, by in ms.items()}
                           for e, ms in self.values.items()},
                "curves": {e: {str(s): c for s, c in by.items()} for e, by in self.curves.items()}}

    @classmethod
    def of_document(cls, doc: dict[str, Any], source: str) -> "Side":
        return cls(doc["command"], doc["task"], doc["invocation"], source,
                   {e: {m: {int(s): _number(v) for s, v in by.items()} for m, by in ms.items()}
                    for e, ms in doc["values"].items()},
                   {e: {int(s): [_number(v) for v in c] for s, c in by.items()} for e, by in doc["curves"].items()},
                   doc.get("facts", {}), doc.get("version"), doc.get("config", {}))

    def merge(self, other: "Side") -> None:
        """Add the seeds of `other` this side does not have."""
        for entry, metrics in other.values.items():
            for metric, by_seed in metrics.items():
                mine = self.values.setdefault(entry, {}).setdefault(metric, {})
                for seed, value in by_seed.items():
                    mine.setdefault(seed, value)
        for entry, curves in other.curves.items():
            for seed, curve in curves.items():
                self.curves.setdefault(entry, {}).setdefault(seed, curve)


SETTINGS_IGNORED = ("out", "tensorboard", "plot", "save", "resume", "gates", "json", "quiet", "print-config",
                    "config")  # where output went, and what was checked of it


def settings(side: Side) -> dict[str, Any]:
    """The settings a result ran with: its resolved config, flattened (optim.lr, train.epochs, ...), or else the
    options its invocation recorded (what `diff` lists and a gate's summary says changed)."""
    def flat(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if k not in SETTINGS_IGNORED:
                    out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
            return out
        return {prefix: value}

    if side.config:  # (a many-run command's run settings sit under "run": compared with a single run's)
        config = json.loads(json.dumps(side.config, default=str))  # (as a file holds it: tuples are lists)
        return {k.removeprefix("run."): v for k, v in flat(config, "").items()}
    return {k: v for k, v in (side.invocation.get("options") or {}).items() if k not in SETTINGS_IGNORED}


def changed(a: Side, b: Side) -> list[tuple[str, Any, Any]]:
    """(setting, a's value, b's value) of every setting that differs between two results."""
    sa, sb = settings(a), settings(b)
    return [(k, sa.get(k), sb.get(k)) for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]


def _number(v: Any) -> float:
    if v is None:
        return math.nan
    return float(v)



def read(path: str, role: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A losslab result document (and the rows of the history.csv beside it), or one line naming `role`."""
    from losslab.config.checks import RESULT_BYTES, read_text_file
    from losslab.outputs.documents import check_document

    p = Path(path).expanduser()
    text = read_text_file(path, role, RESULT_BYTES, "a losslab result")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(role, f"{path} is not a readable losslab result (truncated or not JSON: "
                          f"{type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("command") not in COMMANDS:
        raise ConfigError(role, f"{path} is not a losslab result of {', '.join(COMMANDS)} (no such 'command')")
    check_document(doc, path, role)
    rows: list[dict[str, Any]] = []
    history = p.with_name("history.csv")
    if history.is_file():
        with history.open(encoding="utf-8", newline="") as f:
            rows = [dict(row) for row in csv.DictReader(f)]
    return doc, rows


def task_of(doc: dict[str, Any]) -> str:
    """A result's task: as it says, else its single-run command's (components.tasks), else the first task's."""
    from losslab.components.tasks import NAMES, TASKS

    if doc.get("task") in NAMES:
        return str(doc["task"])
    return next((t.name for t in TASKS if t.flag == doc.get("command")), TASKS[0].name)


def of_result(doc: dict[str, Any], rows: Sequence[dict[str, Any]], source: str, role: str) -> Side:
    """The per-seed numbers a result document holds (a gate's: the side it ran, its candidate)."""
    from losslab.stats import loss_key

    if doc["command"] == "gate":
        try:
            return Side.of_document(doc["candidate"], source)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(role, f"{source}: a gate document without a readable 'candidate'") from None
    task = task_of(doc)
    side = Side(doc["command"], task, doc.get("invocation") or {}, source,
                version=(doc.get("versions") or {}).get("losslab"), config=doc.get("config") or {})
    try:
        _fill(side, doc)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError(role, f"{source}: a {doc['command']} result with missing or malformed fields") from None
    side.facts = {k: doc[k] for k in FACTS if k in doc and not isinstance(doc[k], (dict, list))}
    if doc["command"] == "benchmark":
        return side  # (its samples are times to target per study; its history rows are many problems' curves)
    key, group = loss_key(task), _group_column(doc)
    for row in rows:
        entry = _entry_of_row(doc, row, group)
        value = row.get(key)
        if entry is None or value in (None, ""):
            continue
        seed = int(float(row.get("seed") or _single_seed(doc)))
        side.curves.setdefault(entry, {}).setdefault(seed, []).append(float(value))
    return side


def _single_seed(doc: dict[str, Any]) -> int:
    return int(((doc.get("config") or {}).get("train") or {}).get("seed") or 0)


def _group_column(doc: dict[str, Any]) -> Optional[list[str]]:
    """The history.csv columns that name a row's entry (None: a one-run result's rows are all its run's)."""
    if not is_many(doc["command"]):
        return None
    if "entry_columns" in doc:
        return list(doc["entry_columns"])
    legacy = LEGACY_ENTRIES.get(doc["command"])
    return [legacy[1]] if legacy else ["lr"] if doc.get("mode") == "grid" else []


def _entry_of_row(doc: dict[str, Any], row: dict[str, Any], columns: Optional[list[str]]) -> Optional[str]:
    from losslab.commands.common import entry_name

    if columns is None:
        return "run"
    if not columns:  # one entry takes every row; several without columns cannot be told apart
        entries = list(doc.get("entries") or [])
        return entries[0] if len(entries) == 1 else None
    if any(row.get(c) in (None, "") for c in columns):
        return None
    if len(columns) == 1 and not _numeric(row[columns[0]]):
        return str(row[columns[0]])
    return entry_name({c: float(row[c]) for c in columns}, columns)


def _numeric(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _put(side: Side, entry: str, seed: int, metrics: dict[str, Any]) -> None:
    if metrics.get("status") in ("error", "not run", "interrupted"):
        return  # no numbers of its own: a failed run is missing, not a sample
    for metric in DIRECTION:
        value = metrics.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            side.values.setdefault(entry, {}).setdefault(metric, {})[seed] = float(value)
        elif metric == "epochs_to_target" and metric in metrics and value is None:
            # not reached within the budget: counted as one epoch past it (a censored value, stated in the report)
            side.values.setdefault(entry, {}).setdefault(metric, {})[seed] = float(metrics.get("epochs_run", 0) + 1)


def _fill(side: Side, doc: dict[str, Any]) -> None:
    command = doc["command"]
    if command == "benchmark":  # entry PROBLEM/OPTIMIZER: its time to target per study (a miss: inf, not a gap)
        for name, problem in doc["problems"].items():
            for optim, figures in problem["optimizers"].items():
                for study in figures["per_study"]:
                    for metric in ("steps", "grad_evals"):
                        value = study[metric]
                        by_study = side.values.setdefault(f"{name}/{optim}", {}).setdefault(f"{metric}_to_target", {})
                        by_study[int(study["study"])] = math.inf if value is None else float(value)
    elif not is_many(command):
        _put(side, "run", _single_seed(doc), doc)
    elif "entries" in doc:  # the one many-run shape
        for name, entry in doc["entries"].items():
            for row in entry["runs"]:
                _put(side, name, int(row["seed"]), row)
    elif command in LEGACY_ENTRIES:
        for name, entry in doc[LEGACY_ENTRIES[command][0]].items():
            for row in entry["runs"]:
                _put(side, name, int(row["seed"]), row)
    elif doc.get("mode") == "range-test":
        for run in doc["runs"]:
            _put(side, "range test", int(run["seed"]), run["suggestions"])
    else:
        for row in doc["results"]:
            _put(side, f"lr={float(row['lr']):g}", int(row["seed"]), row)


# --- running a recorded invocation for chosen seeds --------------------------------------------------------------

Configure = Callable[[str, dict[str, Any]], Any]  # (command, option values by Python name) -> its config


def options_of(invocation: dict[str, Any]) -> dict[str, Any]:
    """The recorded options as Python option names, without those that only say where output goes."""
    return {k.replace("-", "_"): v for k, v in (invocation.get("options") or {}).items()
            if k not in OUTPUT_ONLY and v is not None}


def run_seeds(invocation: dict[str, Any], seeds: Sequence[int], configure: Configure, source: str) -> Side:
    """The invocation's command run now for `seeds`: regress and classify as stacked trials of one config, a
    many-run command with --seed and --seeds."""
    import os

    command = invocation.get("command")
    if command == "benchmark":
        return _benchmark(invocation, seeds, configure, source)
    row = command_of(str(command))
    if row is None or not row.replayable:
        raise ConfigError("BASELINE", f"its invocation runs {command!r}; gate reruns {', '.join(replayable())}")
    options = options_of(invocation)
    cwd, here = invocation.get("cwd"), os.getcwd()
    if isinstance(cwd, str) and os.path.isdir(cwd):  # relative data paths and user modules as they were found
        os.chdir(cwd)
    try:
        if not row.many:
            return _stacked(row.name, options, seeds, configure, invocation, source)
        return _many(row.name, options, seeds, configure, invocation, source)
    finally:
        os.chdir(here)


def _stacked(command: str, options: dict[str, Any], seeds: Sequence[int], configure: Configure,
             invocation: dict[str, Any], source: str) -> Side:
    from losslab.commands.common import default_target, run_document
    from losslab.engine.problems import build_problem
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials
    from losslab.stats import loss_key
    from losslab.version import __version__

    cfg = configure(command, {**options, "seed": seeds[0]}).resolved()
    problem = build_problem(cfg)
    task = problem.task
    results, interrupted = run_trials(problem, [RunSpec("run", cfg.optim, s) for s in seeds], vectorize=True)
    if interrupted:
        raise KeyboardInterrupt
    target = default_target(problem)
    side = Side(command, task, invocation, source, version=__version__, config=cfg.to_dict())
    for r in results:
        _put(side, "run", r.spec.seed, run_document(r, task, target))
        side.curves.setdefault("run", {})[r.spec.seed] = [rec.get(loss_key(task), math.nan) for rec in r.records]
    return side


def _benchmark(invocation: dict[str, Any], seeds: Sequence[int], configure: Configure, source: str) -> Side:
    """A benchmark's invocation run now with `seeds` as its studies (seeds 0… under defaults, studies 0… under the
    external ruleset)."""
    from losslab.commands import benchmark

    if list(seeds) != list(range(len(seeds))):
        raise ConfigError("--first-seed", f"a benchmark's studies are numbered from 0; these are not: {list(seeds)}")
    options = options_of(invocation)
    count = "seeds" if options.get("ruleset", "defaults") == "defaults" else "studies"
    cfg = configure("benchmark", {**options, count: len(seeds)})
    output, _ = benchmark.experiment(cfg, configure, json_out=True, quiet=True)
    if output.status == "interrupted":
        raise KeyboardInterrupt
    side = of_result(json.loads(json.dumps(output.document, default=str)), [], source, "BASELINE")
    side.invocation = invocation
    return side


def _many(command: str, options: dict[str, Any], seeds: Sequence[int], configure: Configure,
          invocation: dict[str, Any], source: str) -> Side:
    import importlib

    if list(seeds) != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ConfigError("--seeds", f"{command} runs consecutive seeds; these are not: {list(seeds)}")
    module = importlib.import_module(command_of(command).module)  # type: ignore[union-attr]
    cfg = configure(command, {**options, "seed": seeds[0], "seeds": len(seeds)})
    output, _ = module.experiment(cfg, json_out=True, quiet=True)
    if output.status == "interrupted":
        raise KeyboardInterrupt
    doc = json.loads(json.dumps(output.document, default=str))
    rows = [{k: ("" if v is None else str(v)) for k, v in row.items()} for row in output.records]
    side = of_result(doc, rows, source, "BASELINE")
    side.invocation = invocation
    return side
