"""CI gates: parse `--expect` specs (w=2±0.05, w=2+-0.05, accuracy>=0.95, winner=adam) and check them.

A list-valued result (the diagnosis codes) is tested for membership: `diagnosis=overfitting` passes when the
code was found, `diagnosis!=vanishing-gradients` when it was not, `diagnosis=none` when nothing was found."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

from losslab.errors import ConfigError

_SPEC = re.compile(r"^\s*([A-Za-z_][\w.\-:]*)\s*(>=|<=|!=|=)\s*(\S.*?)\s*$")
_TOLERANCE = re.compile(r"^(.+?)\s*(?:±|\+-|\+/-)\s*(.+)$")


@dataclass(frozen=True)
class Expectation:
    spec: str
    name: str
    op: str  # "approx", ">=", "<=", "==", "!="
    value: Union[float, str]
    tol: float = 0.0

    def check(self, actual: Any) -> bool:
        if isinstance(actual, (list, tuple)):  # membership: diagnosis=overfitting, diagnosis!=diverged
            present = not actual if self.value == "none" else str(self.value) in [str(a) for a in actual]
            return present if self.op in ("==", "approx") else not present if self.op == "!=" else False
        if self.op == "!=":
            number = _as_number(self.value)
            if number is not None and isinstance(actual, (int, float)) and not isinstance(actual, bool):
                return float(actual) != number  # epochs_run!=30.0 compares numbers, not their spelling
            return str(actual) != str(self.value)
        if self.op == "==" and isinstance(self.value, str):
            return str(actual) == self.value
        if actual is None or isinstance(actual, str):
            return False
        actual = float(actual)
        if not math.isfinite(actual):
            return False
        if self.op == ">=":
            return actual >= self.value
        if self.op == "<=":
            return actual <= self.value
        return abs(actual - float(self.value)) <= self.tol


@dataclass(frozen=True)
class Outcome:
    spec: str
    name: str
    passed: bool
    actual: Any

    def describe(self) -> str:
        if isinstance(self.actual, (list, tuple)):
            shown = ", ".join(map(str, self.actual)) or "none"
        else:
            shown = f"{self.actual:.6g}" if isinstance(self.actual, float) else str(self.actual)
        return f"{'passed' if self.passed else 'FAILED'}: {self.spec} (got {shown})"


def _as_number(text: Any) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError("--expect", f"{text!r} is not a number in {spec!r}") from None
    if not math.isfinite(value):
        raise ConfigError("--expect", f"{text!r} is not a finite number in {spec!r}")
    return value


def parse_expectation(spec: str) -> Expectation:
    m = _SPEC.match(spec)
    if not m:
        raise ConfigError(
            "--expect", f"cannot parse {spec!r}; use NAME=VALUE±TOL, NAME=VALUE+-TOL, NAME>=X, NAME<=X, NAME=TEXT "
            "or NAME!=TEXT"
        )
    name, op, rhs = m.groups()
    if op == "!=":
        return Expectation(spec, name, "!=", rhs)
    if op in (">=", "<="):
        return Expectation(spec, name, op, _number(rhs, spec))
    tol = _TOLERANCE.match(rhs)
    if tol:
        tolerance = _number(tol.group(2), spec)
        if tolerance < 0:
            raise ConfigError("--expect", f"tolerance must be >= 0 in {spec!r}")
        return Expectation(spec, name, "approx", _number(tol.group(1), spec), tolerance)
    try:
        return Expectation(spec, name, "approx", _number(rhs, spec), 0.0)
    except ConfigError:
        return Expectation(spec, name, "==", rhs)


# the metrics whose values are words (every other metric is a number): `winner=adam`, `state_unchanged=true`, and
# the diagnosis codes, a list tested for membership
TEXT_METRICS = ("winner", "state_unchanged", "diagnosis")


def _malformed(spec: str, exp: Expectation) -> Optional[str]:
    """Why a text value cannot be meant for a number metric (`w=abc`, `w=>1.5`, `w=1,97`), or None."""
    if exp.op not in ("==", "!=") or _as_number(exp.value) is not None:
        return None
    value = str(exp.value)
    if value[:1] in "<>":
        return f"did you mean {exp.name}{value[0]}={value[1:].strip()}? ({spec!r} compares {exp.name} with the text " \
               f"{value!r})"
    if re.fullmatch(r"[+-]?\d+,\d+", value):
        return f"{value!r} is not a number: the decimal point is '.' ({exp.name}={value.replace(',', '.')})"
    return f"{exp.name} is a number; {value!r} is not one"


def check_names(specs: Iterable[str], available: Iterable[str],
                choices: Optional[Mapping[str, Iterable[str]]] = None) -> None:
    """Fail before training when an expectation names something the run will not report, a value that
    `choices[name]` does not allow (a misspelt diagnosis code would pass `!=` for ever), or text where the metric
    is a number (it could only ever fail, as an expectation rather than as the typo it is)."""
    names = list(available)
    for spec in specs:
        exp = parse_expectation(spec)
        if exp.name not in names:
            raise ConfigError("--expect", f"unknown name {exp.name!r} in {spec!r}; available: {', '.join(names)}")
        why = None if exp.name.split(".")[-1] in TEXT_METRICS else _malformed(spec, exp)
        if why:
            raise ConfigError("--expect", why)
        allowed = list((choices or {}).get(exp.name, ()))
        if allowed and str(exp.value) not in allowed:
            raise ConfigError("--expect", f"unknown value {exp.value!r} for {exp.name} in {spec!r}; choose from: "
                              f"{', '.join(allowed)}")


def evaluate(specs: Iterable[str], metrics: Mapping[str, Any], target_loss: Optional[float] = None,
             loss_key: str = "final_loss") -> list[Outcome]:
    outcomes = []
    for spec in specs:
        exp = parse_expectation(spec)
        actual = metrics.get(exp.name)
        outcomes.append(Outcome(spec, exp.name, exp.check(actual), actual))
    if target_loss is not None:
        actual = metrics.get(loss_key)
        exp = Expectation(f"{loss_key}<={target_loss:g} (--target-loss)", loss_key, "<=", target_loss)
        outcomes.append(Outcome(exp.spec, loss_key, exp.check(actual), actual))
    return outcomes
