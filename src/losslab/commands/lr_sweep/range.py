"""The LR range test of `losslab lr-sweep --range-test` (Smith 2015; as in fastai's and Lightning's lr_find):
the suggestions, pure functions of the recorded curve; the test over seeds; its document, report, plots and
curves. The test's mechanics live in `engine.range_test`."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from losslab import interrupt
from losslab.commands.common import (
    Plot,
    entries_document,
)
from losslab.config import SweepConfig
from losslab.engine.events import Consumer
from losslab.engine.problems import AnyProblem
from losslab.engine.range_test import RangeCurve, range_test_run, schedule
from losslab.expect import Outcome
from losslab.outputs.display import Report, counted, fmt
from losslab.outputs.files import outcomes_document, versions
from losslab.stats import geometric_median

RANGE_PLOTS = ("range_test.png",)
# in the order they are recommended; each is named by its rule (docs/commands/lr-sweep.md, "LR range test"):
#   valley      fastai's valley: a little past a third of the longest decreasing stretch of the smoothed loss
#   steepest    the steepest descent of the smoothed loss against log10(lr) (Lightning 1.x's rule)
#   min_loss/10 the rate at the lowest smoothed loss, divided by ten
#   lightning   Lightning 2.x's lr_find number: its own curve (a second run with Lightning's rates, smoothing and
#               stop rule: engine.range_test) and its rule, the steepest descent against the linear rate
#               (torch.gradient with the rates as spacing) skipping the first 10 and the last point
# in the order they are recommended; each is named by its rule (docs/commands/lr-sweep.md, "LR range test"):
#   valley      fastai's valley: a little past a third of the longest decreasing stretch of the smoothed loss
#   steepest    the steepest descent of the smoothed loss against log10(lr) (Lightning 1.x's rule)
#   min_loss/10 the rate at the lowest smoothed loss, divided by ten
#   lightning   Lightning 2.x's lr_find number: its own curve (a second run with Lightning's rates, smoothing and
#               stop rule: engine.range_test) and its rule, the steepest descent against the linear rate
#               (torch.gradient with the rates as spacing) skipping the first 10 and the last point
SUGGESTERS = ("valley", "steepest", "min_loss/10", "lightning")


def steepest(lrs: Sequence[float], losses: Sequence[float], skip_begin: int = 10, skip_end: int = 1) -> Optional[int]:
    """Index of the most negative slope of loss against log10(lr) (Lightning's suggestion), skipping the noisy
    first steps and the last."""
    n = len(losses)
    skip_begin = min(skip_begin, max(0, n // 10))
    lo, hi = skip_begin, n - skip_end
    if hi - lo < 3:
        return None
    x = [math.log10(v) for v in lrs]
    slopes = []
    for i in range(lo, hi):
        a, b = max(i - 1, 0), min(i + 1, n - 1)  # central differences, one-sided at the ends
        slopes.append((losses[b] - losses[a]) / (x[b] - x[a]))
    return lo + min(range(len(slopes)), key=slopes.__getitem__)


def lightning(lrs: Sequence[float], losses: Sequence[float], skip_begin: int = 10, skip_end: int = 1) -> Optional[int]:
    """Index Lightning 2.x's `lr_find().suggestion()` picks (lightning/pytorch/tuner/lr_finder.py, 2.6.6): the
    most negative `torch.gradient` of the smoothed loss with the rates themselves as spacing, on float32 tensors
    as Lightning builds them (at tiny rates the loss differences round away, which is why its pick sits where
    the loss falls fastest per unit of rate), after dropping the first `skip_begin` and last `skip_end` points
    and non-finite losses."""
    import torch

    kept = [(i, lr, loss) for i, (lr, loss) in enumerate(zip(lrs, losses))
            if skip_begin <= i < len(losses) - skip_end and math.isfinite(loss)]
    if len(kept) < 2:
        return None
    loss_t = torch.tensor([k[2] for k in kept])  # float32, as torch.tensor(list) gives in Lightning
    lr_t = torch.tensor([k[1] for k in kept])
    gradients = torch.gradient(loss_t, spacing=[lr_t])[0]
    return kept[int(torch.argmin(gradients))][0]


def valley(losses: Sequence[float], min_drop: float = 1e-3) -> Optional[int]:
    """fastai's 'valley': the longest run of steps along which the loss keeps falling (a longest decreasing
    subsequence), then a point a little past a third of the way along it — low enough to be safe, inside the
    region where the loss still drops fastest. A fall counts only when it exceeds `min_drop` of the curve's
    range: on noise-free full-batch data the flat start drifts down by tiny amounts and would otherwise count."""
    n = len(losses)
    if n < 3:
        return None
    tol = min_drop * (max(losses) - min(losses))
    length = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] - tol and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
        if length[i] > length[best_end]:
            best_end = i
    start = best_end - length[best_end]
    third = (best_end - start) / 3
    return max(0, min(n - 1, start + int(third) + int(third / 2)))


def min_loss_tenth(lrs: Sequence[float], losses: Sequence[float]) -> Optional[float]:
    """The rate at the lowest smoothed loss, divided by ten (the classic rule of thumb)."""
    if not losses:
        return None
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def stable_cap(lrs: Sequence[float], losses: Sequence[float]) -> Optional[float]:
    """Half the rate at which the raw (unsmoothed) loss was lowest. While the rate rises the loss falls until the
    rate passes what training can stand (on a quadratic, the stability limit 2/λ), so the lowest raw loss comes
    at about that limit and half of it is about 1/λ, the fastest rate a quadratic allows. The smoothed curve lags
    the raw one (fastai's 0.98 is a ~50-step average), so a point read off it alone can lie past the limit: on the
    tutorial regression a 100-step linear test's valley was 1.01 where rates above 0.954 diverge."""
    finite = [i for i, loss in enumerate(losses) if math.isfinite(loss)]
    if not finite:
        return None
    return lrs[min(finite, key=losses.__getitem__)] / 2


def suggestions(lrs: Sequence[float], smoothed: Sequence[float],
                lightning_curve: Optional[RangeCurve] = None,
                raw: Optional[Sequence[float]] = None) -> dict[str, Optional[float]]:
    """Recommended first: valley (never above `stable_cap` of the raw losses), then steepest descent, then
    min-loss/10; Lightning's number from its own curve (None without one)."""
    v, s = valley(smoothed), steepest(lrs, smoothed)
    cap = stable_cap(lrs, raw) if raw is not None else None
    valley_lr = lrs[v] if v is not None else None
    if valley_lr is not None and cap is not None:
        valley_lr = min(valley_lr, cap)
    pl = None
    if lightning_curve is not None:
        # Lightning keeps recording after a non-finite loss (NaN from then on) and drops the last point: a curve
        # stopped at the non-finite loss ends with that NaN
        points = lightning_curve.smoothed + ([math.nan] if lightning_curve.stopped == "non-finite loss" else [])
        rates = lightning_curve.lrs + ([math.nan] if lightning_curve.stopped == "non-finite loss" else [])
        at = lightning(rates, points)
        pl = rates[at] if at is not None else None
    return {"valley": valley_lr, "steepest": lrs[s] if s is not None else None,
            "min_loss/10": min_loss_tenth(lrs, smoothed), "lightning": pl}


@dataclass
class RangeRun:
    """One seed's range-test curve and the suggestions read off it."""

    curve: RangeCurve
    suggestions: dict[str, Optional[float]]
    lightning_curve: Optional[RangeCurve] = None

    def __getattr__(self, name: str) -> Any:  # seed, lrs, losses, smoothed, stopped, hashes: the curve's
        return getattr(self.curve, name)


def analyse(curve: RangeCurve, lightning_curve: Optional[RangeCurve] = None) -> RangeRun:
    n = curve.usable
    return RangeRun(curve, suggestions(curve.lrs[:n], curve.smoothed[:n], lightning_curve, curve.losses[:n]),
                    lightning_curve)


@dataclass
class RangeResult:
    config: SweepConfig
    status: str
    runs: list[RangeRun]
    suggestions: dict[str, dict[str, Optional[float]]]  # name -> median, min, max over seeds
    recommended: Optional[float]
    median_curve: dict[str, list[float]]
    state_unchanged: bool
    elapsed_s: float
    device: str
    data_source: str
    versions: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        return range_metrics(self.recommended, self.state_unchanged,
                             {name: spread["median"] for name, spread in self.suggestions.items()})


def range_metrics(recommended: Optional[float], unchanged: bool,
                  medians: dict[str, Optional[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"suggested_lr": recommended, "state_unchanged": str(unchanged).lower()}
    for name, median in medians.items():
        out[name.replace("/", "_").replace("-", "_") + "_lr"] = median
    return out


def range_test(cfg: SweepConfig, problem: AnyProblem, events: Consumer = Consumer(),
               on_seed: Any = None) -> RangeResult:
    """The range test on every seed; Ctrl-C stops the whole test (not just the running seed)."""
    started = time.perf_counter()
    cfg = cfg.resolved()
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    runs: list[RangeRun] = []
    status = "ok"
    try:
        for i, seed in enumerate(seeds):
            curve = range_test_run(problem, cfg, seed, events, index=i, total=len(seeds))
            # Lightning's number needs Lightning's own curve: the same steps again with its rates and smoothing
            theirs = (range_test_run(problem, cfg, seed, lightning=True) if curve.stopped != "interrupted"
                      and not interrupt.requested() else None)
            run = analyse(curve, theirs)
            runs.append(run)
            if run.stopped == "interrupted" or interrupt.requested():
                status = "interrupted"
                break
            if on_seed is not None:
                on_seed(run, len(runs), len(seeds))
    except KeyboardInterrupt:
        status = "interrupted"
    spread: dict[str, dict[str, Optional[float]]] = {}
    for name in SUGGESTERS:
        values = [v for v in (r.suggestions.get(name) for r in runs) if v is not None]
        spread[name] = ({"median": geometric_median(values), "min": min(values), "max": max(values)}
                        if values else {"median": None, "min": None, "max": None})
    recommended = next((spread[n]["median"] for n in SUGGESTERS if spread[n]["median"] is not None), None)
    length = max((len(r.smoothed) for r in runs), default=0)
    low, high = cfg.lr_range
    lrs = schedule(low, high, cfg.steps, cfg.mode)[:length]
    median_curve = {"lr": lrs, "smoothed_loss": [
        statistics.median([r.smoothed[i] for r in runs if i < len(r.smoothed)]) for i in range(length)]}
    unchanged = all(r.hash_before == r.hash_after for r in runs)
    if status == "ok" and not runs[0].smoothed:
        status = "diverged"
    return RangeResult(cfg, status, runs, spread, recommended, median_curve, unchanged,
                       time.perf_counter() - started, str(problem.device), problem.data.source, versions())


def range_document(result: RangeResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lr-sweep --range-test`."""
    return {
        "command": "lr-sweep", "mode": "range-test", "status": result.status, "task": result.config.task,
        "config": result.config.to_dict(),
        "suggested_lr": result.recommended,
        "suggestions": result.suggestions,
        "curve": result.median_curve,
        "runs": [{"seed": r.seed, "stopped": r.stopped, "suggestions": r.suggestions, "lr": r.lrs, "loss": r.losses,
                  "smoothed_loss": r.smoothed,
                  "lightning_curve": curve_document(r.lightning_curve)} for r in result.runs],
        **entries_document({"range test": {"suggestions": result.suggestions, "runs": [
            {"seed": r.seed, "stopped": r.stopped, **r.suggestions} for r in result.runs]}}, []),
        "state_check": {"unchanged": result.state_unchanged,
                        "sha256_before": [r.hash_before for r in result.runs],
                        "sha256_after": [r.hash_after for r in result.runs]},
        "data": result.data_source, "device": result.device, "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []), "versions": result.versions,
    }


def curve_document(curve: Optional[RangeCurve]) -> Optional[dict[str, Any]]:
    if curve is None:
        return None
    return {"lr": curve.lrs, "loss": curve.losses, "smoothed_loss": curve.smoothed, "stopped": curve.stopped}


def range_records(result: RangeResult) -> list[dict[str, Any]]:
    return [{"seed": r.seed, "step": i + 1, "lr": lr, "loss": loss, "smoothed_loss": sm}
            for r in result.runs for i, (lr, loss, sm) in enumerate(zip(r.lrs, r.losses, r.smoothed))]


def range_report(result: RangeResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    cfg = result.config
    rows = []
    for i, name in enumerate(SUGGESTERS):
        s = result.suggestions[name]
        spread = "—" if s["median"] is None else (f"{s['min']:.3g}–{s['max']:.3g}" if len(result.runs) > 1 else "")
        label = name + (" (recommended)" if i == 0 and s["median"] is not None else "")
        rows.append([label, fmt(s["median"], ".3g"), spread])
    title = (f"losslab lr-sweep --range-test: {result.status} — {cfg.run.optim.name}, lr {cfg.min_lr:g} → "
             f"{cfg.max_lr:g} ({cfg.mode}) over {cfg.steps} steps, {counted(len(result.runs), 'seed')}, "
             f"{result.elapsed_s:.1f} s")
    stops = ", ".join(f"seed {r.seed}: {r.stopped} after {len(r.smoothed)} steps" for r in result.runs)
    notes = [f"data: {result.data_source}", f"stopped: {stops}",
             f"suggested lr: {fmt(result.recommended, '.3g')} (valley, fastai's rule: a point about 40 % along the "
             "longest stretch where the smoothed loss falls; never above half the rate at which the raw loss was "
             "lowest, which on a quadratic is about the stability limit 2/λ)",
             "a grid (lr-sweep without --range-test) trains the whole budget at fixed rates and usually suggests a "
             "larger rate for that budget: this test answers where training can safely start",
             "model and optimizer state " + ("unchanged by the test (every parameter and the optimizer's state "
                                             "identical before and after)" if result.state_unchanged else
                                             "CHANGED by the test: parameters or optimizer state differ after it")]
    notes += [o.describe() for o in outcomes]
    return [Report(title, ["suggestion", "lr", "spread over seeds" if len(result.runs) > 1 else ""], rows, notes,
                   {(0, 1)} if rows and rows[0][1] != "—" else set())]


SKIP_END = 5  # steps not drawn at the end of a curve, where the loss explodes (fastai's skip_end)


def without_end(lrs: Sequence[float], losses: Sequence[float]) -> tuple[list[float], list[float]]:
    """A curve as plotted: its last steps dropped (at most a quarter of it), so the final spike does not flatten
    the part that says where to train."""
    keep = max(2, len(lrs) - min(SKIP_END, len(lrs) // 4))
    return list(lrs[:keep]), list(losses[:keep])


def range_plots(result: RangeResult) -> list[Plot]:
    cfg = result.config

    def draw(path: Any) -> None:
        from losslab.outputs.plots import range_test_plot

        range_test_plot([without_end(r.lrs, r.smoothed) for r in result.runs], path,
                        {k: v["median"] for k, v in result.suggestions.items()},
                        raw=[without_end(r.lrs, r.losses) for r in result.runs],
                        title=f"LR range test: {cfg.run.optim.name}, {counted(len(result.runs), 'seed')} "
                              f"(last {SKIP_END} steps not drawn)")

    return list(zip(RANGE_PLOTS, [draw]))


def range_curves(result: RangeResult) -> str:
    from losslab.outputs.terminal_plot import curves

    lrs, losses = without_end(result.median_curve["lr"], result.median_curve["smoothed_loss"])
    mark = (result.recommended, f"suggested {result.recommended:.3g}") if result.recommended else None
    return curves([("smoothed loss", lrs, losses)], title=f"LR range test (last {SKIP_END} steps not drawn)",
                  xlabel="learning rate", logx=True, mark=mark)
