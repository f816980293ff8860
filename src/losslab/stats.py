"""Statistics over many runs: quantiles, epochs to a target, a robust summary per entry, ranking and paired wins.

Pure Python on plain numbers and on run results (anything with `score`, `status`, `records`, `metrics`,
`epochs_run` and `elapsed_s`); imports nothing from losslab.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default); infinities sort last."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or xs[lo] == xs[hi]:
        return xs[lo]
    if math.isinf(xs[hi]):
        return math.inf
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def loss_key(task: str) -> str:
    """The per-epoch loss that runs of a task are compared on: training loss (regression) or validation loss."""
    return "train_loss" if task == "regression" else "valid_loss"


def epochs_to_target(records: Sequence[dict[str, Any]], task: str, target: Optional[float]) -> Optional[int]:
    """First epoch whose training loss is at most the target (regression), whose validation accuracy is at
    least it (classification) or whose validation loss is at most it (a language model)."""
    if target is None:
        return None
    for r in records:
        if task == "regression" and r.get("train_loss", math.inf) <= target:
            return r["epoch"]
        if task == "classification" and r.get("valid_acc", -1.0) >= target:
            return r["epoch"]
        if task == "language-model" and r.get("valid_loss", math.inf) <= target:
            return r["epoch"]
    return None


def best_loss(records: Sequence[dict[str, Any]], task: str) -> float:
    """The lowest finite loss of a run's records (+inf when none is finite)."""
    key = loss_key(task)
    losses = [r[key] for r in records if key in r and math.isfinite(r[key])]
    return min(losses) if losses else math.inf


def run_best_loss(run: Any, task: str) -> float:
    """A run's lowest loss: its records' (each epoch's loss is taken before that epoch's steps) and the final loss
    measured after the last step, so "best" is never above "final"."""
    final = run.metrics.get("final_loss") if run.status == "ok" else None
    return min(best_loss(run.records, task), final if final is not None and math.isfinite(final) else math.inf)


def extra_keys(task: str, param_names: Sequence[str]) -> list[str]:
    """What a summary carries besides losses: the learned parameters and their distance from the optimum
    (regression), or the validation accuracy (classification)."""
    return [*param_names, "optimum_distance"] if task == "regression" else ["accuracy"]


@dataclass
class Summary:
    name: str
    lr: float
    lr_source: str
    finals: list[float]  # per seed, +inf when the run did not finish cleanly
    median: float
    q1: float
    q3: float
    mean: float
    std: float
    best: float  # median over seeds of each run's best loss
    epochs_to_target: Optional[float]  # median over the runs that reached it
    reached: int
    time_per_epoch: float
    diverged: int
    errors: int
    extra: dict[str, Any] = field(default_factory=dict)  # regress: params, distance; classify: accuracy
    stood: Optional[float] = None  # Ctrl-C: the median loss where the interrupted runs stood (their last epoch)

    def metrics(self) -> dict[str, Any]:
        """Flat `name.metric` values that `--expect` can test."""
        out = {f"{self.name}.final_loss": self.median, f"{self.name}.best_loss": self.best, f"{self.name}.lr": self.lr,
               f"{self.name}.epochs_to_target": self.epochs_to_target, f"{self.name}.diverged": self.diverged}
        out.update({f"{self.name}.{k}": v for k, v in self.extra.items()})
        return out

    @classmethod
    def placeholder(cls, name: str, keys: Sequence[str]) -> "Summary":
        """A summary with no numbers yet: its metric names are those a real one reports."""
        return cls(name, math.nan, "", [], math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, None, 0,
                   math.nan, 0, 0, {k: None for k in keys})


def diverged(run: Any) -> bool:
    """A run diverged when its loss became non-finite, or when the diagnosis found it growing without bound (a
    finite 9.9e+15 is not a result): the table's count and the diagnosis say the same."""
    return run.status == "diverged" or any(f.code == "diverged" for f in getattr(run, "diagnosis", ()))


def summarise(name: str, lr: float, source: str, runs: Sequence[Any], task: str, target: Optional[float]) -> Summary:
    finals = [r.score for r in runs]
    finite = [f for f in finals if math.isfinite(f)]
    reach = [e for e in (epochs_to_target(r.records, task, target) for r in runs) if e is not None]
    per_epoch = [r.elapsed_s / r.epochs_run for r in runs if r.epochs_run]
    extra: dict[str, Any] = {}
    key = loss_key(task)
    stood = [r.records[-1][key] for r in runs if r.status == "interrupted" and r.records and key in r.records[-1]]
    ok = [r for r in runs if r.status == "ok"]
    if ok:
        params = list(ok[0].metrics.get("params", {}))
        for key in extra_keys(task, params):
            if key in params:
                extra[key] = statistics.median(r.metrics["params"][key] for r in ok)
            elif all(key in r.metrics for r in ok):  # (a user's regression model has no optimum distance)
                extra[key] = statistics.median(r.metrics[key] for r in ok)
    return Summary(
        name=name, lr=lr, lr_source=source, finals=finals, median=quantile(finals, 0.5), q1=quantile(finals, 0.25),
        q3=quantile(finals, 0.75), mean=statistics.fmean(finite) if finite else math.inf,
        std=statistics.stdev(finite) if len(finite) > 1 else 0.0,
        best=quantile([run_best_loss(r, task) for r in runs], 0.5),
        epochs_to_target=statistics.median(reach) if reach else None, reached=len(reach),
        time_per_epoch=statistics.median(per_epoch) if per_epoch else math.nan,
        diverged=sum(diverged(r) for r in runs), errors=sum(r.status == "error" for r in runs),
        extra=extra, stood=quantile(stood, 0.5) if stood else None,
    )


def first_rung_check(first: Mapping[Any, float], second: Mapping[Any, float], epochs: int, what: str,
                     rate: int) -> Optional[str]:
    """Whether successive halving's first rung (`epochs` long) was long enough to rank: its leader (lowest score)
    must still lead the next rung among the candidates both trained. When it does not, say so, with the Kendall τ
    of the two orders (scipy.stats) and a first rung `rate`× longer to try (`what` names the candidates)."""
    both = [k for k in second if k in first and math.isfinite(first[k])]
    if len(both) < 2:
        return None
    lead = min(both, key=lambda k: (first[k], str(k)))
    if min(both, key=lambda k: (second[k], str(k))) == lead:
        return None
    from scipy.stats import kendalltau

    tau = kendalltau([first[k] for k in both], [second[k] for k in both]).statistic
    shown = f"{lead:g}" if isinstance(lead, float) else str(lead)
    return (f"the first rung ({epochs} epoch{'s' if epochs != 1 else ''}) was too short to rank the {what}: its "
            f"leader {shown} did not lead the next rung (Kendall τ {tau:.2f} between the two rungs' orders over "
            f"{len(both)}), so it may have stopped one that wins later; --min-epochs {epochs * rate} gives halving a "
            "fairer start")


def rank(summaries: Sequence[Summary]) -> list[Summary]:
    """By median final loss to 4 significant digits (closer is float noise), then by median epochs to the
    target, then mean; failures (+inf) last."""
    def key(s: Summary) -> tuple[float, float, float, str]:
        median = float(f"{s.median:.4g}") if math.isfinite(s.median) else math.inf
        reach = s.epochs_to_target if s.epochs_to_target is not None else math.inf
        return (median, reach, s.mean, s.name)

    return sorted(summaries, key=key)


# A paired win needs a real difference: two runs that both reached the optimum differ only by float noise.
WIN_MARGIN = 1e-4


def paired_wins(a: Any, b: Any, margin: float = WIN_MARGIN) -> int:
    """Seeds on which `a` ended lower than `b` by more than `margin` relative (runs are paired by seed); `a` and
    `b` are Summaries (their final losses) or lists of per-seed values."""
    xs, ys = (a.finals if isinstance(a, Summary) else a), (b.finals if isinstance(b, Summary) else b)
    return sum(x < y and (math.isinf(y) or y - x > margin * abs(y)) for x, y in zip(xs, ys))


SAME_SEEDS = 1e-6  # relative: seeds whose results agree this closely gave one result, not several


def distinct_seeds(*per_seed: Sequence[float]) -> int:
    """How many independent comparisons paired seeds give: their number, or 1 when every entry's value is the same
    on every seed (deterministic full-batch training reaches the same optimum from every start: five seeds are
    one comparison repeated five times, not five pieces of evidence)."""
    n = max((len(v) for v in per_seed), default=0)
    for values in per_seed:
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) != len(values) or not finite:
            return n
        if max(finite) - min(finite) > SAME_SEEDS * max(abs(v) for v in finite):
            return n
    return min(n, 1)


def geometric_median(values: Sequence[float]) -> float:
    """Median of positive rates on a log scale (the median of log10 values, mapped back)."""
    logs = sorted(math.log10(v) for v in values)
    return 10 ** statistics.median(logs)
