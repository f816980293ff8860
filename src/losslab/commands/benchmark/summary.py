"""What a benchmark's runs say: per problem and optimizer the median over studies of the time to target (each
study's fastest trial), paired statistics against the reference optimizer, the language-model statement
(modded-nanogpt's: the mean validation loss below the target, with its one-sided test), AlgoPerf's performance
profiles and score B per measure, and the verdict in words. Numbers in, numbers and text out: no training here."""

from __future__ import annotations

import math
import statistics
from typing import Any, Optional, Sequence

from losslab.profiles import MEASURES, R_MAX, median, profile, score

TAUS = tuple(round(1 + 0.05 * i, 2) for i in range(int((R_MAX - 1) / 0.05) + 1))  # ρ(τ) at τ = 1, 1.05, …, 4
ALPHA = 0.05  # the paired intervals' level (gate's default)
TIMES = ("epochs", *MEASURES)


def fastest(runs: Sequence[dict[str, Any]], measure: str) -> dict[str, Any]:
    """A study's figure: its fastest trial by `measure` (ties: the first trial)."""
    return min(runs, key=lambda r: (r[measure], r["trial"]))


def figures(runs: Sequence[dict[str, Any]], measure: str) -> dict[str, Any]:
    """One optimizer on one problem: each study's fastest trial, the medians over studies (a miss is inf), how
    many studies reached the target, the median last value of the target's metric, and the first failure."""
    studies = sorted({r["study"] for r in runs})
    chosen = [fastest([r for r in runs if r["study"] == s], measure) for s in studies]
    failed = next((r["error"] for r in runs if r["status"] == "error" and r.get("error")), None)
    finals = [r["final"] for r in chosen if isinstance(r["final"], (int, float)) and not math.isnan(r["final"])]
    return {**{m: median([r[m] for r in chosen]) for m in TIMES},
            "reached": sum(1 for r in chosen if math.isfinite(r["steps"])), "studies": len(chosen),
            "final": statistics.median(finals) if finals else math.nan, "failed": failed,
            "per_study": [{k: r[k] for k in ("study", "trial", "seed", *TIMES, "final")} for r in chosen]}


def versus(reference: dict[str, Any], other: dict[str, Any], measure: str) -> dict[str, Any]:
    """`other` against `reference` on one problem, paired by study: the ratio of times where both reached the
    target (a geometric mean with its Student-t interval, as gate computes them on the logarithms), the studies
    each reached, and a verdict: faster, slower, same, within noise, or a difference in reaching at all."""
    from losslab.verdicts import compare

    a = {s["study"]: s[measure] for s in reference["per_study"]}
    b = {s["study"]: s[measure] for s in other["per_study"]}
    both = [s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s]) and a[s] > 0 and b[s] > 0]
    out: dict[str, Any] = {"reached": other["reached"], "reference_reached": reference["reached"],
                           "studies": other["studies"], "paired": len(both), "ratio": None, "low": None,
                           "high": None}
    if len(both) >= 2:
        c = compare({s: math.log(a[s]) for s in both}, {s: math.log(b[s]) for s in both}, lower_is_better=True,
                    alpha=ALPHA, tolerance=0.0)
        assert c.difference is not None
        out.update(ratio=math.exp(c.difference), low=math.exp(c.low) if c.low is not None else None,
                   high=math.exp(c.high) if c.high is not None else None)
        word = {"improved": "faster", "regressed": "slower", "unchanged": "same"}.get(c.verdict, "within noise")
    elif len(both) == 1:
        out["ratio"] = b[both[0]] / a[both[0]]
        word = "one study"
    else:
        word = "neither reached"
    if other["reached"] != reference["reached"]:  # reaching the target at all says more than the times
        word = "reaches more often" if other["reached"] > reference["reached"] else "reaches less often"
    out["verdict"] = word
    return out


def lm_statement(runs: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """modded-nanogpt's record rule on a language-model problem: the mean final validation loss over the studies
    below the target, with the p-value of the one-sided t-test (None below two runs or with no spread)."""
    values = [r["final"] for r in runs if isinstance(r["final"], (int, float)) and math.isfinite(r["final"])]
    mean = statistics.fmean(values) if values else math.nan
    p: Optional[float] = None
    if len(values) >= 2 and statistics.stdev(values) > 0:
        from scipy.stats import ttest_1samp

        p = float(ttest_1samp(values, target, alternative="less").pvalue)
    return {"mean": mean, "runs": len(values), "p": p, "below": bool(values) and mean < target}


def summarise(problems: dict[str, dict[str, Any]], optims: Sequence[str], reference: str,
              measure: str) -> dict[str, Any]:
    """Each problem's figures and statistics filled in; the profiles and scores per measure; the verdict."""
    for p in problems.values():
        runs = p.pop("runs_raw")
        p["optimizers"] = {o: figures([r for r in runs if r["optimizer"] == o], measure) for o in optims}
        p["statistics"] = {o: versus(p["optimizers"][reference], p["optimizers"][o], measure)
                           for o in optims if o != reference}
        if p["command"] == "lm":
            p["lm"] = {o: lm_statement(p["optimizers"][o]["per_study"], p["target"]) for o in optims}
    scores: dict[str, dict[str, Any]] = {}
    for m in MEASURES:
        times = {o: {name: p["optimizers"][o][m] for name, p in problems.items()} for o in optims}
        scores[m] = {"score": score(times), "profile": profile(times, TAUS)}
    return {"measure": measure, "reference": reference, "problems": problems, "taus": list(TAUS),
            "scores": scores, "score": scores[measure]["score"],
            "verdict": verdict(problems, optims, reference, measure, scores[measure]["score"])}


def verdict(problems: dict[str, dict[str, Any]], optims: Sequence[str], reference: str, measure: str,
            b: dict[str, float]) -> list[str]:
    """What the data supports, one sentence per optimizer against the reference."""
    unit = {"steps": "steps", "grad_evals": "gradient evaluations", "seconds": "seconds"}[measure]
    lines = []
    for o in optims:
        if o == reference:
            continue
        stats = {name: p["statistics"][o] for name, p in problems.items()}
        faster = [n for n, s in stats.items() if s["verdict"] == "faster"]
        slower = [n for n, s in stats.items() if s["verdict"] == "slower"]
        more = [n for n, s in stats.items() if s["verdict"] == "reaches more often"]
        less = [n for n, s in stats.items() if s["verdict"] == "reaches less often"]
        noise = [n for n, s in stats.items() if s["verdict"] in ("within noise", "same")]
        single = [n for n, s in stats.items() if s["verdict"] == "one study"]
        ratios = [s["ratio"] for s in stats.values() if s["ratio"] is not None]
        parts = []
        if ratios:
            g = math.exp(statistics.fmean(math.log(r) for r in ratios))
            parts.append(f"needs {g:.2f}× {reference}'s {unit} where both reach the target "
                         f"({len(ratios)} of {len(stats)} problems)")
        for words, names in (("faster on", faster), ("slower on", slower), ("reaches it more often on", more),
                             ("reaches it less often on", less), ("within noise on", noise),
                             ("one study each (no interval: give --seeds or --studies 2 or more) on", single)):
            if names:
                parts.append(f"{words} {', '.join(names)}")
        if not parts:
            parts.append(f"neither it nor {reference} reached any target")
        lines.append(f"{o}: " + "; ".join(parts) + f"; B = {b[o]:.2f} vs {b[reference]:.2f}")
    return lines


def shown(value: float, reached: int = 0, studies: int = 0, failed: Optional[str] = None) -> str:
    """A time to target as a report shows it: a count, ∞ for a miss, `failed` for an optimizer that failed; the
    studies that reached it when not all did."""
    if failed is not None and not math.isfinite(value):
        return "failed"
    if not math.isfinite(value):
        return "∞"
    text = f"{value:,.0f}" if value >= 10 else f"{value:.3g}"
    return text if reached == studies else f"{text} ({reached}/{studies})"
