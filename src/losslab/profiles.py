"""Performance profiles and the benchmark score, as MLCommons AlgoPerf defines them (Dolan & Moré's profiles of
training times): for each problem p and optimizer s a measure t[s][p] (steps, gradient evaluations or seconds to
the problem's target; a miss is +inf), the ratio r = t / the best t on that problem, the profile
ρ_s(τ) = the fraction of problems with r ≤ τ, and the score B_s = (1 / (r_max − 1)) ∫₁^{r_max} ρ_s(τ) dτ with
r_max = 4. ρ is a step function, so the integral is exact: a problem at ratio r ≤ r_max adds (r_max − r) to it.

No torch and no numpy here: the report, the JSON and `gate` read these numbers.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

R_MAX = 4.0  # AlgoPerf's: a ratio above 4 counts as a miss
MEASURES = ("steps", "grad_evals", "seconds")  # what a time to target is counted in


def arrival(records: Sequence[Mapping[str, Any]], metric: str, bound: str, value: float, steps_per_epoch: int,
            evals_per_step: float = 1.0) -> dict[str, float]:
    """When a run first reached its target, from its per-epoch records: the epoch, the optimizer steps and
    gradient evaluations by the end of that epoch, and the seconds its record says had passed; +inf in each for a
    run that never did (a miss). `bound` "<=" (a loss) or ">=" (an accuracy)."""
    for record in records:
        if meets(record, metric, bound, value):
            steps = record["epoch"] * steps_per_epoch
            return {"epochs": float(record["epoch"]), "steps": float(steps), "grad_evals": steps * evals_per_step,
                    "seconds": float(record.get("elapsed_s", math.nan))}
    return {"epochs": math.inf, **{m: math.inf for m in MEASURES}}


def meets(record: Mapping[str, Any], metric: str, bound: str, value: float) -> bool:
    """Whether a record's `metric` is finite and within `bound` ("<=" or ">=") of `value`."""
    v = record.get(metric)
    return isinstance(v, (int, float)) and math.isfinite(v) and (v <= value if bound == "<=" else v >= value)


def median(values: Sequence[float]) -> float:
    """The median with misses as +inf (AlgoPerf's median over studies: more than half missing is a miss)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no value to take the median of")
    mid = n // 2
    if n % 2:
        return ordered[mid]
    a, b = ordered[mid - 1], ordered[mid]
    return math.inf if math.isinf(b) else (a + b) / 2


def ratios(times: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Each optimizer's ratio to the best time on each problem (+inf: missed, or no optimizer reached it).
    `times[optimizer][problem]`; every optimizer must have every problem."""
    problems = _problems(times)
    best = {p: min(times[s][p] for s in times) for p in problems}
    out: dict[str, dict[str, float]] = {}
    for s, row in times.items():
        out[s] = {}
        for p in problems:
            t, b = row[p], best[p]
            if t < 0 or math.isnan(t):
                raise ValueError(f"{s} on {p}: a time to target must be >= 0 or inf (got {t})")
            if math.isinf(t):
                out[s][p] = math.inf
            elif t == b:  # (ties are each the best)
                out[s][p] = 1.0
            else:  # (a best of 0: the target held from the start; a later arrival is no finite multiple of it)
                out[s][p] = t / b if b > 0 else math.inf
    return out


def profile(times: Mapping[str, Mapping[str, float]], taus: Sequence[float]) -> dict[str, list[float]]:
    """ρ_s(τ) at each τ: the fraction of problems on which optimizer s is within a factor τ of the best."""
    r = ratios(times)
    n = len(_problems(times))
    return {s: [sum(1 for v in row.values() if v <= tau) / n for tau in taus] for s, row in r.items()}


def score(times: Mapping[str, Mapping[str, float]], r_max: float = R_MAX) -> dict[str, float]:
    """B_s = (1 / (r_max − 1)) ∫₁^{r_max} ρ_s(τ) dτ, exactly: the mean over problems of (r_max − r) / (r_max − 1)
    for ratios r ≤ r_max (0 for the rest). 1 for an optimizer best on every problem; 0 for one that misses all."""
    if not r_max > 1:
        raise ValueError(f"r_max must be above 1 (got {r_max})")
    r = ratios(times)
    n = len(_problems(times))
    return {s: sum((r_max - v) / (r_max - 1) for v in row.values() if v <= r_max) / n for s, row in r.items()}


def _problems(times: Mapping[str, Mapping[str, float]]) -> list[str]:
    if not times:
        raise ValueError("no optimizer to profile")
    first = list(next(iter(times.values())))
    if not first:
        raise ValueError("no problem to profile")
    for s, row in times.items():
        if set(row) != set(first):
            raise ValueError(f"{s} has times for {sorted(row)}, the others for {sorted(first)}")
    return first
