"""Did a number get worse? Per-seed samples of a baseline and a candidate, compared with a confidence interval
and a verdict — regressed, improved, unchanged or inconclusive — and the smallest change the seeds can detect.

Seeds both sides ran are paired (the difference per seed: initial weights and data order cancel out); otherwise the
two samples are compared as independent (Welch). Intervals are Student-t intervals at level 1 − alpha. Pure
Python and scipy's t quantiles; imports nothing from losslab.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

POWER = 0.8  # the power at which the detectable change is stated
FLOAT_NOISE = 1e-6  # relative differences below this are float rounding (stacked vs one-by-one runs), not change


def t_quantile(p: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass
class Comparison:
    """One metric of one entry: baseline and candidate samples and what they say."""

    n_baseline: int
    n_candidate: int
    paired: bool
    baseline: float  # medians
    candidate: float
    difference: Optional[float]  # candidate − baseline: mean of the paired differences, or difference of means
    low: Optional[float]  # the (1 − alpha) interval of that difference
    high: Optional[float]
    detectable: Optional[float]  # the smallest change these seeds detect at alpha with POWER
    verdict: str
    worse: Optional[float] = None  # the change in the worse direction (positive: worse), for the tolerance
    lost: int = 0  # seeds finite in the baseline but non-finite or missing in the candidate (diverged, failed)

    def relative(self) -> Optional[float]:
        if self.difference is None or not self.baseline:
            return None
        return self.difference / abs(self.baseline)


def _interval(diffs: Sequence[float], alpha: float) -> tuple[float, float, float, float]:
    """Mean, low, high and the detectable change of a one-sample t analysis of `diffs` (n >= 2)."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    se = sd / math.sqrt(n)
    half = t_quantile(1 - alpha / 2, n - 1) * se
    detect = (t_quantile(1 - alpha / 2, n - 1) + t_quantile(POWER, n - 1)) * se
    return mean, mean - half, mean + half, detect


def _welch(a: Sequence[float], b: Sequence[float], alpha: float) -> tuple[float, float, float, float]:
    """Difference of means (b − a), its Welch interval and the detectable change."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    mean = statistics.fmean(b) - statistics.fmean(a)
    if se == 0:
        return mean, mean, mean, 0.0
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0) + (vb ** 2 / (len(b) - 1) if vb else 0))
    half = t_quantile(1 - alpha / 2, df) * se
    return mean, mean - half, mean + half, (t_quantile(1 - alpha / 2, df) + t_quantile(POWER, df)) * se


def compare(baseline: dict[int, float], candidate: dict[int, float], *, lower_is_better: Optional[bool],
            alpha: float, tolerance: float) -> Comparison:
    """Samples by seed. `lower_is_better` None: a change either way is just a change (a suggested rate).
    `tolerance` (in the metric's units, >= 0): changes within it count as unchanged."""
    a = {s: v for s, v in baseline.items() if math.isfinite(v)}
    b = {s: v for s, v in candidate.items() if math.isfinite(v)}
    common = sorted(set(a) & set(b))
    if not a and not b and baseline and baseline == candidate:  # e.g. a target missed on every seed by both
        same = next(iter(baseline.values()))
        return Comparison(0, 0, True, same, same, 0.0, None, None, None, "unchanged")
    med_a = statistics.median(a.values()) if a else math.nan
    med_b = statistics.median(b.values()) if b else math.nan
    paired = len(common) >= 2
    if paired:
        mean, low, high, detect = _interval([b[s] - a[s] for s in common], alpha)
    elif len(a) >= 2 and len(b) >= 2:
        mean, low, high, detect = _welch(list(a.values()), list(b.values()), alpha)
    else:  # one seed a side: a difference, no interval
        mean = (statistics.fmean(b.values()) - statistics.fmean(a.values())) if a and b else math.nan
        low = high = detect = None  # type: ignore[assignment]
    noise = FLOAT_NOISE * max(abs(med_a), abs(med_b), 1e-12)
    floor = max(tolerance, noise)
    sign = 0 if lower_is_better is None else (1 if lower_is_better else -1)
    verdict = _verdict(mean, low, high, floor, sign, noise)
    worse = None if sign == 0 or not math.isfinite(mean) else sign * mean
    # the worst change of all: a seed the baseline finished that the candidate did not (its loss became NaN, its
    # run failed, the metric is gone) — no interval is needed to call that worse
    lost = len(lost_seeds(baseline, candidate))
    if lost and sign != 0:
        verdict, worse = "regressed", math.inf
    return Comparison(len(a), len(b), paired, med_a, med_b, mean if math.isfinite(mean) else None, low, high,
                      detect, verdict, worse, lost)


def lost_seeds(baseline: Mapping[int, float], candidate: Mapping[int, float]) -> list[int]:
    """The candidate's seeds that ended non-finite where the baseline's are finite: on the seeds both ran (paired),
    every candidate seed when the samples are unpaired and the baseline has no non-finite one, and every baseline
    seed when the candidate has no value at all (its metric is gone)."""
    finite = lambda v: v is not None and math.isfinite(v)  # noqa: E731
    if not candidate:
        return [s for s, v in baseline.items() if finite(v)]
    common = set(baseline) & set(candidate)
    if common:
        return sorted(s for s in common if finite(baseline[s]) and not finite(candidate[s]))
    if baseline and all(finite(v) for v in baseline.values()):
        return sorted(s for s, v in candidate.items() if not finite(v))
    return []


def _verdict(mean: float, low: Optional[float], high: Optional[float], floor: float, sign: int,
             noise: float) -> str:
    """regressed/improved: the whole interval beyond float noise on one side and the change beyond the tolerance;
    unchanged: the whole interval within the tolerance; inconclusive otherwise (too few seeds, or too wide)."""
    if not math.isfinite(mean):
        return "inconclusive"
    if low is None or high is None:  # no interval: only an exact match (to float noise) says anything
        return "unchanged" if abs(mean) <= noise else "inconclusive"
    if low > noise or high < -noise:
        if abs(mean) <= floor:
            return "unchanged"
        if sign == 0:
            return "changed"
        return "regressed" if (mean > 0) == (sign > 0) else "improved"
    if -floor <= low and high <= floor:
        return "unchanged"
    return "inconclusive"


def separation(baseline: Mapping[int, Sequence[float]], candidate: Mapping[int, Sequence[float]]) \
        -> tuple[Optional[float], Optional[int]]:
    """Two sets of per-seed curves (per epoch): the area between their median curves (mean absolute difference
    per epoch, over the epochs both have), and the first epoch (from 1) where the medians differ by more than the
    seeds' spread (the larger range of the two sides at that epoch; float noise at least)."""
    if not baseline or not candidate:
        return None, None
    length = min(min(len(c) for c in baseline.values()), min(len(c) for c in candidate.values()))
    if length == 0:
        return None, None
    area, first = 0.0, None
    for e in range(length):
        xa = [c[e] for c in baseline.values()]
        xb = [c[e] for c in candidate.values()]
        ma, mb = statistics.median(xa), statistics.median(xb)
        if not (math.isfinite(ma) and math.isfinite(mb)):
            return None if e == 0 else area / e, first if first is not None else e + 1
        gap = abs(mb - ma)
        area += gap
        spread = max(max(xa) - min(xa), max(xb) - min(xb), FLOAT_NOISE * max(abs(ma), abs(mb), 1e-12))
        if first is None and gap > spread:
            first = e + 1
    return area / length, first
