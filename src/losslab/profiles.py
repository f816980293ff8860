"""Performance profiles and the benchmark score, as MLCommons AlgoPerf defines them (Dolan & Moré's profiles of
training times): for each problem p and optimizer s a measure t[s][p] (steps, gradient evaluations or seconds to
the problem's target; a miss is +inf), the ratio r = t / the best t on that problem, the profile
ρ_s(τ) = the fraction of problems with r ≤ τ, and the score B_s = (1 / (r_max − 1)) ∫₁^{r_max} ρ_s(τ) dτ with
r_max = 4. ρ is a step function, so the integral is exact: a problem at ratio r ≤ r_max adds (r_max − r) to it.

No torch and no numpy here: the report, the JSON and `gate` read these numbers.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

R_MAX = 4.0  # AlgoPerf's: a ratio above 4 counts as a miss


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
