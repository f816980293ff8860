"""`compare-optimizers`: the same model, initial weights and data order trained by several optimizers over
several seeds, summarised robustly (median, IQR) and ranked with a paired-seed test for the winner."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

from losslab.config import CompareConfig
from losslab.trials import Trial, TrialObserver, TrialResult, run_trials


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


def epochs_to_target(records: Sequence[dict[str, Any]], task: str, target: Optional[float]) -> Optional[int]:
    """First epoch whose training loss is at most the target (regression) or whose validation accuracy is at
    least it (classification)."""
    if target is None:
        return None
    for r in records:
        if task == "regression" and r.get("train_loss", math.inf) <= target:
            return r["epoch"]
        if task == "classification" and r.get("valid_acc", -1.0) >= target:
            return r["epoch"]
    return None


def run_best_loss(result: TrialResult, task: str) -> float:
    key = "train_loss" if task == "regression" else "valid_loss"
    losses = [r[key] for r in result.records if key in r and math.isfinite(r[key])]
    return min(losses) if losses else math.inf


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


def summarise(name: str, lr: float, source: str, runs: Sequence[TrialResult], task: str,
              target: Optional[float]) -> Summary:
    finals = [r.score for r in runs]
    finite = [f for f in finals if math.isfinite(f)]
    reach = [e for e in (epochs_to_target(r.records, task, target) for r in runs) if e is not None]
    per_epoch = [r.elapsed_s / r.epochs_run for r in runs if r.epochs_run]
    extra: dict[str, Any] = {}
    ok = [r for r in runs if r.status == "ok"]
    if task == "regression" and ok:
        for pname in ok[0].metrics["params"]:
            extra[pname] = statistics.median(r.metrics["params"][pname] for r in ok)
        extra["optimum_distance"] = statistics.median(r.metrics["optimum_distance"] for r in ok)
    if task == "classification" and ok:
        extra["accuracy"] = statistics.median(r.metrics["accuracy"] for r in ok)
    return Summary(
        name=name, lr=lr, lr_source=source, finals=finals, median=quantile(finals, 0.5), q1=quantile(finals, 0.25),
        q3=quantile(finals, 0.75), mean=statistics.fmean(finite) if finite else math.inf,
        std=statistics.stdev(finite) if len(finite) > 1 else 0.0,
        best=quantile([run_best_loss(r, task) for r in runs], 0.5),
        epochs_to_target=statistics.median(reach) if reach else None, reached=len(reach),
        time_per_epoch=statistics.median(per_epoch) if per_epoch else math.nan,
        diverged=sum(r.status == "diverged" for r in runs), errors=sum(r.status == "error" for r in runs),
        extra=extra,
    )


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


def paired_wins(a: Summary, b: Summary, margin: float = WIN_MARGIN) -> int:
    """Seeds on which `a` ended lower than `b` by more than `margin` relative (runs are paired by seed)."""
    return sum(x < y and (math.isinf(y) or y - x > margin * abs(y)) for x, y in zip(a.finals, b.finals))


@dataclass
class CompareResult:
    config: CompareConfig
    status: str
    summaries: list[Summary]  # ranked
    runs: dict[str, list[TrialResult]]
    winner: Optional[str]
    wins: Optional[int]
    target: Optional[float]
    tuning: Optional[dict[str, Any]]
    reference: dict[str, Any]  # regress: the least-squares optimum
    elapsed_s: float
    device: str
    data_source: str
    versions: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"winner": self.winner or "tie"}
        for s in self.summaries:
            out.update({f"{s.name}.final_loss": s.median, f"{s.name}.best_loss": s.best, f"{s.name}.lr": s.lr,
                        f"{s.name}.epochs_to_target": s.epochs_to_target, f"{s.name}.diverged": s.diverged})
            out.update({f"{s.name}.{k}": v for k, v in s.extra.items()})
        return out


def compare_metric_names(cfg: CompareConfig, param_names: Sequence[str] = ()) -> list[str]:
    extra = list(param_names) + ["optimum_distance"] if cfg.task == "regression" else ["accuracy"]
    names = ["winner"]
    for o in cfg.optims:
        names += [f"{o}.{k}" for k in ["final_loss", "best_loss", "lr", "epochs_to_target", "diverged", *extra]]
    return names


def compare_optimizers(cfg: CompareConfig, problem: Any, observer: Optional[TrialObserver] = None) -> CompareResult:
    """Tune (optionally), then train every optimizer on every evaluation seed and rank them."""
    import time

    from losslab.experiments import versions

    started = time.perf_counter()
    task = cfg.task
    base = cfg.run.train.seed
    seeds = [base + i for i in range(cfg.seeds)]
    lrs = {name: cfg.lr_of(name) for name in cfg.optims}
    tuning = None
    interrupted = False
    if cfg.tune:
        tune_seed = base + 1000  # distinct from the evaluation seeds
        trials = [Trial(f"{name}@{lr:g}", replace(cfg.run.optim, name=name, lr=lr), tune_seed)
                  for name in cfg.optims for lr in cfg.tune_grid]
        results, interrupted = run_trials(problem, trials, observer, vectorize=cfg.vectorize)
        tuning = {"seed": tune_seed, "grid": list(cfg.tune_grid), "epochs": cfg.run.train.epochs,
                  "budget": f"{len(cfg.tune_grid)} learning rates x {cfg.run.train.epochs} epochs on seed "
                            f"{tune_seed}, the same for every optimizer",
                  "results": {}, "chosen": {}}
        for name in cfg.optims:
            mine = [r for r in results if r.trial.optim.name == name]
            tuning["results"][name] = [{"lr": r.trial.optim.lr, "final_loss": r.score, "status": r.status}
                                       for r in mine]
            finished = [r for r in mine if math.isfinite(r.score)]
            if finished:
                best = min(finished, key=lambda r: r.score)
                lrs[name] = (best.trial.optim.lr, "tuned")
                tuning["chosen"][name] = best.trial.optim.lr
            else:
                tuning["chosen"][name] = None  # every rate diverged: keep the default and say so
    runs: dict[str, list[TrialResult]] = {name: [] for name in cfg.optims}
    if not interrupted:
        # seed-major order: all optimizers progress together, and machine noise hits them alike
        trials = [Trial(name, replace(cfg.run.optim, name=name, lr=lrs[name][0]), seed)
                  for seed in seeds for name in cfg.optims]
        results, interrupted = run_trials(problem, trials, observer, vectorize=cfg.vectorize)
        for r in results:
            runs[r.trial.group].append(r)
    else:
        for name in cfg.optims:
            runs[name] = [TrialResult(Trial(name, replace(cfg.run.optim, name=name, lr=lrs[name][0]), s), "not run")
                          for s in seeds]

    target = cfg.target
    if target is None:
        target = 1.05 * problem.optimum["loss"] if task == "regression" else 0.9
    summaries = rank([summarise(n, lrs[n][0], lrs[n][1], runs[n], task, target) for n in cfg.optims])
    winner, wins = None, None
    if len(summaries) == 1:
        winner = summaries[0].name if math.isfinite(summaries[0].median) else None
    elif math.isfinite(summaries[0].median):
        wins = paired_wins(summaries[0], summaries[1])
        if wins > cfg.seeds / 2:
            winner = summaries[0].name
    every = [r for rs in runs.values() for r in rs]
    if interrupted:
        status = "interrupted"
    elif all(r.status in ("diverged", "error") for r in every):
        status = "diverged"
    else:
        status = "ok"
    reference = getattr(problem, "optimum", {}) if task == "regression" else {}
    source = problem.data.source
    return CompareResult(cfg, status, summaries, runs, winner, wins, target, tuning, reference,
                         time.perf_counter() - started, str(problem.device), source, versions())
