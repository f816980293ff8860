"""Benchmark suites (issue 35): problems stated in the terms of the training commands — a command (`regress`,
`classify`, `lm`), its options, a target on a per-epoch record and a budget in epochs — so that a user's suite
(`--suite FILE.toml`) and the built-in ones are read the same way. The target is where a run stops counting: its
epochs, optimizer steps, gradient evaluations and seconds to reach it are what a benchmark compares.

A suite file:

    [[problem]]
    name = "my-net"
    command = "classify"
    options = { dataset = "mydata:train", model = "mymodel:Net", batch-size = 32 }
    target = "valid_acc >= 0.9"        # or valid_loss <= 0.3, train_loss <= 1.01 * optimum, valid_loss <= trigram
    budget = 30                        # epochs

Targets name a record key and a bound: a number, or a reference the problem computes (`optimum`: the regression's
least-squares loss; `trigram`: a language model's trigram baseline), optionally scaled (`1.01 * optimum`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from losslab.errors import ConfigError

COMMANDS = ("regress", "classify", "lm")  # the single-run commands a problem can be stated in
LOWER = {"train_loss": "regress", "valid_loss": "classify, lm"}  # bounds from above: lower is better
HIGHER = {"valid_acc": "classify"}  # bounds from below
REFERENCES = {"optimum": "regress", "trigram": "lm"}
_TARGET = re.compile(r"^\s*(\w+)\s*(<=|>=)\s*(?:(?P<factor>[0-9.eE+-]+)\s*\*\s*)?(?P<value>[\w.eE+-]+)\s*$")


@dataclass(frozen=True)
class Target:
    metric: str  # a per-epoch record key: train_loss, valid_loss, valid_acc
    bound: str  # "<=" or ">="
    value: Optional[float] = None  # a number, or None with a reference
    reference: Optional[str] = None  # "optimum" or "trigram": resolved by the problem
    factor: float = 1.0

    def text(self) -> str:
        rhs = f"{self.value:g}" if self.reference is None else (
            f"{self.factor:g} * {self.reference}" if self.factor != 1 else self.reference)
        return f"{self.metric} {self.bound} {rhs}"


def parse_target(text: str, command: str, where: str = "--suite") -> Target:
    """A target such as `valid_acc >= 0.97` or `train_loss <= 1.01 * optimum`, checked against the command."""
    m = _TARGET.match(text or "")
    if m is None:
        raise ConfigError(where, f"target {text!r}: expected METRIC <= VALUE or METRIC >= VALUE (e.g. valid_acc >= "
                          "0.97, train_loss <= 1.01 * optimum)")
    metric, bound, factor, value = m.group(1), m.group(2), m.group("factor"), m.group("value")
    kinds = {**LOWER, **HIGHER}
    if metric not in kinds:
        raise ConfigError(where, f"target {text!r}: unknown metric {metric!r}; choose from: {', '.join(kinds)}")
    if command not in kinds[metric]:
        raise ConfigError(where, f"target {text!r}: {command} records no {metric} (it is {kinds[metric]}'s)")
    if bound != ("<=" if metric in LOWER else ">="):
        raise ConfigError(where, f"target {text!r}: {metric} is reached from {'above' if metric in LOWER else 'below'}"
                          f": write {metric} {'<=' if metric in LOWER else '>='} …")
    try:
        scale = float(factor) if factor is not None else 1.0
        number = float(value)
    except ValueError:
        number = None
    if number is not None and factor is None:
        if metric == "valid_acc" and not 0 < number <= 1:
            raise ConfigError(where, f"target {text!r}: an accuracy is in (0, 1]")
        return Target(metric, bound, number)
    if value not in REFERENCES or REFERENCES[value] != command:
        refs = ", ".join(f"{k} ({c})" for k, c in REFERENCES.items())
        raise ConfigError(where, f"target {text!r}: {value!r} is not a number or a reference of {command} "
                          f"(references: {refs})")
    if not scale > 0:
        raise ConfigError(where, f"target {text!r}: the factor must be positive")
    return Target(metric, bound, None, value, scale)


@dataclass(frozen=True)
class SuiteProblem:
    name: str
    command: str
    options: tuple[tuple[str, Any], ...]  # the command's options by Python name
    target: Target
    budget: int  # epochs: a run that has not reached the target by then missed it
    note: str = ""

    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class Suite:
    name: str
    problems: tuple[SuiteProblem, ...] = field(default_factory=tuple)


def problem(name: str, command: str, target: str, budget: int, note: str = "", **options: Any) -> SuiteProblem:
    return SuiteProblem(name, command, tuple(sorted(options.items())), parse_target(target, command), budget, note)


# The built-in problems. The analytic ones train as `regress` with import paths (components.benchmark_problems):
# their model holds θ and outputs the objective, the loss is its mean.
_ANALYTIC = "losslab.components.benchmark_problems"
QUADRATIC = problem("quadratic", "regress", "train_loss <= 88.7", 100,
                    "DeepOBS's noisy quadratic_deep, 100-D, batches of 128: within 2 % of the least mean loss 86.94",
                    model=f"{_ANALYTIC}:quadratic_model", dataset=f"{_ANALYTIC}:quadratic_data",
                    loss=f"{_ANALYTIC}:objective", standardize=False, batch_size=128)
ROSENBROCK = problem("rosenbrock", "regress", "train_loss <= 0.01", 3000,
                     "the Rosenbrock valley from (-1.2, 1), exact gradients: within 0.01 of its minimum 0 at (1, 1)",
                     model=f"{_ANALYTIC}:rosenbrock_model", dataset=f"{_ANALYTIC}:rosenbrock_data",
                     loss=f"{_ANALYTIC}:objective", standardize=False)
REGRESSION = problem("regression", "regress", "train_loss <= 1.01 * optimum", 1000,
                     "the tutorial's y = 2x + 3 + noise, full batch: within 1 % of the least-squares loss")
DIGITS_MLP = problem("digits-mlp", "classify", "valid_acc >= 0.97", 30,
                     "scikit-learn's digits, an MLP (AlgoPerf's MNIST development target 0.97)",
                     dataset="digits", model="mlp")
DIGITS_CNN = problem("digits-cnn", "classify", "valid_acc >= 0.97", 15, "digits, the tutorial CNN",
                     dataset="digits", model="cnn")
SHAKESPEARE = problem("shakespeare-char", "lm", "valid_loss <= trigram", 12,
                      "the default gpt on tiny Shakespeare (an epoch: 100 steps; cosine over the 12): below the "
                      "trigram baseline, 2.046 nats per character")
SUITES = {"small": Suite("small", (QUADRATIC, ROSENBROCK, REGRESSION, DIGITS_MLP, DIGITS_CNN, SHAKESPEARE)),
          "analytic": Suite("analytic", (QUADRATIC, ROSENBROCK)),
          "tiny": Suite("tiny", (QUADRATIC, problem("regression", "regress", "train_loss <= 1.01 * optimum", 300,
                                         REGRESSION.note),
                                 problem("digits-mlp", "classify", "valid_acc >= 0.95", 10, DIGITS_MLP.note,
                                         dataset="digits", model="mlp")))}


def read_suite(path: str) -> Suite:
    """A user's suite file (TOML: [[problem]] tables), every field checked; one line naming --suite, the file and
    the problem when something is wrong."""
    import tomllib

    file = Path(path).expanduser()
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("--suite", f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("--suite", f"{path} is not TOML: {exc}") from None
    entries = doc.get("problem")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("--suite", f"{path} has no [[problem]] tables")
    problems = [_entry(entry, i, path) for i, entry in enumerate(entries, start=1)]
    names = [p.name for p in problems]
    if len(set(names)) != len(names):
        raise ConfigError("--suite", f"{path}: the problem name {next(n for n in names if names.count(n) > 1)!r} "
                          "is used twice")
    return Suite(file.stem, tuple(problems))


def _entry(entry: Any, i: int, path: str) -> SuiteProblem:
    where = f"{path}, problem {i}"
    if not isinstance(entry, dict):
        raise ConfigError("--suite", f"{where}: expected a table")
    kinds = {"name": str, "command": str, "target": str, "budget": int, "options": dict, "note": str}
    for key, value in entry.items():
        if key not in kinds:
            raise ConfigError("--suite", f"{where}: unknown key {key!r}; a problem has {', '.join(kinds)}")
        if not isinstance(value, kinds[key]) or (kinds[key] is int and isinstance(value, bool)):
            raise ConfigError("--suite", f"{where}: {key} must be a {kinds[key].__name__} (got {value!r})")
    for key in ("name", "command", "target", "budget"):
        if key not in entry:
            raise ConfigError("--suite", f"{where}: no {key}")
    if entry["command"] not in COMMANDS:
        raise ConfigError("--suite", f"{where}: command {entry['command']!r}; choose from: {', '.join(COMMANDS)}")
    if not 1 <= entry["budget"] <= 10**6:
        raise ConfigError("--suite", f"{where}: budget is epochs, from 1 (got {entry['budget']})")
    target = parse_target(entry["target"], entry["command"], "--suite")
    options = {str(k).replace("-", "_"): v for k, v in (entry.get("options") or {}).items()}
    return SuiteProblem(entry["name"], entry["command"], tuple(sorted(options.items())), target, entry["budget"],
                        entry.get("note", ""))
