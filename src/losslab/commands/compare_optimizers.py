"""`losslab compare-optimizers`: the same model, initial weights and data order trained by several optimizers
over several seeds, summarised robustly (median, IQR) and ranked with a paired-seed test for the winner."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from losslab.commands.common import (
    DIAGNOSIS_CHOICES,
    Output,
    Plot,
    Where,
    all_runs,
    check_gates,
    check_outputs,
    columns_note,
    context,
    default_target,
    entries_document,
    finish,
    group_sharpness_plots,
    one_by_one_notes,
    pooled_diagnosis,
    pooled_notes,
    run_document,
    run_records,
    settle,
    verdict,
)
from losslab.config import CompareConfig
from losslab.config.many import halving_rungs
from losslab.engine.events import Consumer
from losslab.engine.problems import AnyProblem, RegressionProblem, build_problem
from losslab.engine.runs import RunResult, RunSpec
from losslab.engine.trials import by_rungs, epochs_asked, run_trials
from losslab.expect import Outcome, check_names
from losslab.objects import shown
from losslab.outputs import dispatcher
from losslab.outputs.display import (
    Report,
    TrialsDisplay,
    best_cells,
    counted,
    epochs_text,
    fmt,
    iqr_cell,
    make_console,
    median_cell,
)
from losslab.outputs.files import outcomes_document, versions
from losslab.stats import (
    Summary,
    distinct_seeds,
    epochs_to_target,
    extra_keys,
    first_rung_check,
    loss_key,
    paired_wins,
    quantile,
    rank,
    run_best_loss,
    summarise,
)

COMMAND = "compare-optimizers"
PLOTS = ("curves.png", "tuning.png")  # tuning.png with --tune only


@dataclass
class CompareResult:
    config: CompareConfig
    status: str
    summaries: list[Summary]  # ranked
    runs: dict[str, list[RunResult]]
    winner: Optional[str]
    wins: Optional[int]
    target: Optional[float]
    tuning: Optional[dict[str, Any]]
    reference: dict[str, Any]  # regress: the least-squares optimum
    elapsed_s: float
    device: str
    data_source: str
    versions: dict[str, str] = field(default_factory=dict)
    one_by_one: Optional[str] = None  # why runs that could stack trained one after another

    def metrics(self) -> dict[str, Any]:
        return metrics(self.winner, self.summaries, [d["code"] for d in pooled_diagnosis(all_runs(self.runs))])


def metrics(winner: Optional[str], summaries: Sequence[Summary], diagnosis: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"winner": winner or "tie", "diagnosis": diagnosis}
    for s in summaries:
        out.update(s.metrics())
    return out


def metric_names(cfg: CompareConfig, problem: AnyProblem) -> list[str]:
    """The names `metrics` reports for this comparison, known before training."""
    keys = extra_keys(cfg.task, problem.names if isinstance(problem, RegressionProblem) else [])
    return list(metrics(None, [Summary.placeholder(name, keys) for name in cfg.optims], []))


def tune_runs(cfg: CompareConfig, problem: AnyProblem, events: Consumer,
              seed: int) -> tuple[list[RunResult], bool, list[dict[str, Any]]]:
    """Every optimizer × tuning rate on the tuning seed — or by successive halving (--halving): each rung trains
    the rates still in, for its epochs, and each optimizer keeps its best ceil(n/rate) by final loss (the same
    budget for every optimizer). The results are each rate's last rung's; the rungs as the JSON shows them."""
    epochs = problem.train_cfg.epochs or 0
    schedule = halving_rungs(epochs, cfg.min_epochs, cfg.halving_rate) if cfg.halving else [epochs]
    latest: dict[tuple[str, float], RunResult] = {}
    rungs: list[dict[str, Any]] = []

    def specs_for(alive: dict[str, list[float]]) -> list[RunSpec]:
        return [RunSpec(f"{name}@{lr:g}", cfg.optim_for(name, lr), seed)
                for name in cfg.optims for lr in alive[name]]

    def after(k: int, rung: int, alive: dict[str, list[float]], specs: list[RunSpec],
              done: list[RunResult]) -> dict[str, list[float]]:
        latest.update({(r.spec.optim.name, float(r.spec.optim.lr or 0)): r for r in done})
        if not cfg.halving:
            return {}
        kept = {} if k == len(schedule) - 1 else {name: sorted(lr for lr, _ in sorted(
            ((lr, latest[(name, lr)].score) for lr in alive[name]), key=lambda p: (p[1], p[0]))[
                :max(1, math.ceil(len(alive[name]) / cfg.halving_rate))]) for name in cfg.optims}
        rungs.append({"epochs": rung, "candidates": {n: list(v) for n, v in alive.items()},
                      "scores": {n: {f"{lr:g}": latest[(n, lr)].score for lr in v} for n, v in alive.items()},
                      "continued": kept, "epochs_trained": epochs_asked(specs, rung)})
        return kept

    alive = {name: list(cfg.grid_for(name)) for name in cfg.optims}
    _, interrupted = by_rungs(problem, schedule, alive, specs_for, after, events, cfg)
    order = [(name, lr) for name in cfg.optims for lr in cfg.grid_for(name) if (name, lr) in latest]
    return [latest[key] for key in order], interrupted, rungs


def compare(cfg: CompareConfig, problem: AnyProblem, events: Consumer = Consumer()) -> CompareResult:
    """Tune (optionally), then train every optimizer on every evaluation seed and rank them."""
    started = time.perf_counter()
    cfg = cfg.resolved()
    task = cfg.task
    if cfg.budget == "gradient-evaluations":  # every run stops when it has spent what --epochs of plain steps spend
        from dataclasses import replace

        from losslab.engine.skeleton import Plan

        problem.train_cfg = replace(problem.train_cfg,
                                    max_grad_evals=(problem.train_cfg.epochs or 0) * Plan.of(problem).batches)
    base = cfg.run.train.seed
    seeds = [base + i for i in range(cfg.seeds)]
    lrs: dict[str, tuple[float, str]] = {name: cfg.lr_of(name) for name in cfg.optims}
    tuning: Optional[dict[str, Any]] = None
    interrupted = False
    if cfg.tune:
        tune_seed = base + 1000  # distinct from the evaluation seeds
        results, interrupted, rungs = tune_runs(cfg, problem, events, tune_seed)
        rates = len(cfg.grid_for(cfg.optims[0]))
        centred = "" if cfg.tune_grid is not None else " centred on each one's default"
        tuning = {"seed": tune_seed, "grid": {n: list(cfg.grid_for(n)) for n in cfg.optims},
                  "epochs": cfg.run.train.epochs,
                  "budget": f"{rates} learning rates{centred} x {cfg.run.train.epochs} epochs on seed "
                            f"{tune_seed}, the same for every optimizer" + (
                                f", by successive halving (rate {cfg.halving_rate}, rungs at "
                                f"{', '.join(str(r['epochs']) for r in rungs)} epochs)" if rungs else ""),
                  "results": {}, "chosen": {}, "halving": rungs or None,
                  "epochs_trained": sum(r["epochs_trained"] for r in rungs) if rungs else None,
                  "epochs_full": rates * len(cfg.optims) * (cfg.run.train.epochs or 0)}
        results_of, chosen = tuning["results"], tuning["chosen"]
        for name in cfg.optims:
            mine = [r for r in results if r.spec.optim.name == name]
            results_of[name] = [{"lr": r.spec.optim.lr, "final_loss": r.score, "status": r.status}
                                       for r in mine]
            whole = rungs[-1]["candidates"][name] if rungs else cfg.grid_for(name)  # (halving: the whole budget's)
            finished = [r for r in mine if math.isfinite(r.score) and r.spec.optim.lr in whole]
            if finished:
                best = min(finished, key=lambda r: r.score)
                assert best.spec.optim.lr is not None  # every tuning spec names its rate
                lrs[name] = (best.spec.optim.lr, "tuned")
                chosen[name] = best.spec.optim.lr
            else:
                chosen[name] = None  # every rate diverged: keep the default and say so
    # seed-major order: all optimizers progress together, and machine noise hits them alike
    specs = [RunSpec(name, cfg.optim_for(name, lrs[name][0]), seed)
             for seed in seeds for name in cfg.optims]
    if not interrupted:
        results, interrupted = run_trials(problem, specs, events, vectorize=cfg.vectorize, executor=cfg.executor)
    else:
        results = [RunResult(s, "not run") for s in specs]
    runs: dict[str, list[RunResult]] = {name: [] for name in cfg.optims}
    for r in results:
        runs[r.spec.group].append(r)

    target = cfg.target if cfg.target is not None else default_target(problem)
    summaries = rank([summarise(n, lrs[n][0], lrs[n][1], runs[n], task, target) for n in cfg.optims])
    scores = {n: seed_scores(runs[n], cfg.rank_by, task, target) for n in cfg.optims}
    if cfg.rank_by != "final_loss":  # (final loss: rank's own order, ties broken by the epochs to the target)
        summaries = sorted(summaries, key=lambda s: (quantile(scores[s.name], 0.5), s.name))
    winner, wins = None, None
    top = summaries[0].name
    if len(summaries) == 1:
        winner = top if math.isfinite(quantile(scores[top], 0.5)) else None
    elif math.isfinite(quantile(scores[top], 0.5)):
        wins = paired_wins(scores[top], scores[summaries[1].name])
        distinct = distinct_seeds(scores[top], scores[summaries[1].name])
        wins = min(wins, distinct)  # identical seeds count once
        if wins > distinct / 2:
            winner = top
    reference = problem.optimum if task == "regression" else {}  # type: ignore[union-attr]
    return CompareResult(cfg, settle(interrupted, results), summaries, runs, winner, wins, target, tuning, reference,
                         time.perf_counter() - started, str(problem.device), problem.data.source, versions(),
                         problem.unstacked)


def seed_scores(runs: Sequence[RunResult], measure: str, task: str, target: float) -> list[float]:
    """Each seed's value of the ranking measure, lower better (accuracy negated); +inf for a run that did not
    finish cleanly or never reached the target."""
    out = []
    for r in runs:
        if r.status != "ok":
            out.append(math.inf)
        elif measure == "final_loss":
            out.append(r.score)
        elif measure == "best_loss":
            out.append(run_best_loss(r, task))
        elif measure == "epochs_to_target":
            reached = epochs_to_target(r.records, task, target)
            out.append(float(reached) if reached is not None else math.inf)
        elif measure == "accuracy":
            out.append(-float(r.metrics.get("accuracy", -math.inf)))
        else:
            out.append(float(r.metrics.get(measure, math.inf)))
    return out


# --- outputs -------------------------------------------------------------------------------------

def document(result: CompareResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab compare-optimizers`."""
    task = result.config.task
    optimizers = {}
    for s in result.summaries:
        optimizers[s.name] = {
            "lr": s.lr, "lr_source": s.lr_source, "final_loss": {"median": s.median, "q1": s.q1, "q3": s.q3,
                                                                 "mean": s.mean, "std": s.std},
            "best_loss": s.best, "stopped_at_loss": s.stood, "epochs_to_target": s.epochs_to_target,
            "reached_target": s.reached,
            "time_per_epoch_s": s.time_per_epoch, "diverged": s.diverged, "errors": s.errors, **s.extra,
            "runs": [run_document(r, task, result.target) for r in result.runs[s.name]],
        }
    return {
        "command": "compare-optimizers",
        "status": result.status,
        "task": task,
        "config": result.config.to_dict(),
        "ranking": [s.name for s in result.summaries],
        "winner": result.winner,
        "tie": result.winner is None,
        "paired_wins": result.wins,
        "target": result.target,
        "optimizers": optimizers,
        **entries_document(optimizers, ["optimizer"]),
        "tuning": result.tuning,
        "reference": result.reference,
        "diagnosis": pooled_diagnosis(all_runs(result.runs)),
        "data": result.data_source,
        "device": result.device,
        "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []),
        "versions": result.versions,
        "one_by_one": result.one_by_one,
    }


def rate_notes(result: CompareResult) -> list[str]:
    """What the report says of the rates: untuned per-optimizer defaults, or the tuning and its rungs."""
    cfg, notes = result.config, []
    defaults = [s for s in result.summaries if s.lr_source.endswith("default")]
    if len(defaults) > 1 and len({s.lr for s in result.summaries}) > 1:
        rates = ", ".join(f"{shown(s.name)} {s.lr:g} ({s.lr_source})" for s in defaults)
        notes.append(f"untuned: these rates are each optimizer's default ({rates}), not found for this problem, "
                     "so the ranking compares the rates as much as the optimizers; --tune gives every optimizer the "
                     "same search")
    if result.tuning:
        t = result.tuning
        chosen = ", ".join(f"{k} {v:g}" if v is not None else f"{k} (all rates diverged; default kept)"
                           for k, v in t["chosen"].items())
        notes.append(f"tuning budget: {t['budget']}; chosen: {chosen}")
        if t["halving"]:
            notes.append(f"  {t['epochs_trained']:,} tuning epochs trained of {t['epochs_full']:,} for the full "
                         f"grid ({t['epochs_trained'] / t['epochs_full']:.0%})")
            for i, rung in enumerate(t["halving"][:-1], 1):
                kept = "; ".join(f"{n} {', '.join(f'{lr:g}' for lr in v) or '(none)'}"
                                 for n, v in rung["continued"].items())
                notes.append(f"  rung {i} ({epochs_text(rung['epochs'])}), the best continue: {kept}")
            if len(t["halving"]) > 1:
                first, second = t["halving"][0], t["halving"][1]
                for name in first["scores"]:
                    check = first_rung_check(first["scores"][name], second["scores"].get(name, {}), first["epochs"],
                                             f"rates of {name}", cfg.halving_rate)
                    notes += [f"  {check}"] if check else []
    return notes


def pass_notes(result: CompareResult) -> list[str]:
    """The budget, and the optimizers whose steps are not one forward-backward pass each (SAM, a line search)."""
    notes = []
    spent = {name: (statistics.median(r.optimizer_steps for r in runs), statistics.median(r.grad_evals for r in runs))
             for name, runs in result.runs.items() if runs and any(r.status != "not run" for r in runs)}
    uneven = {name: pair for name, pair in spent.items() if pair[0] != pair[1]}
    if result.config.budget == "gradient-evaluations":
        budget = next(iter(spent.values()), (0, 0))[1] if spent else 0
        notes.append(f"budget: the same forward-backward passes for every run (--epochs × steps per epoch, "
                     f"{max(p[1] for p in spent.values()) if spent else budget:,.0f} at most)")
    for name, (steps, evals) in uneven.items():
        notes.append(f"{shown(name)}: {evals:,.0f} gradient evaluations in {steps:,.0f} steps per run (median)"
                     + ("" if result.config.budget == "gradient-evaluations" else
                        " — --budget gradient-evaluations gives every optimizer the same passes"))
    return notes


def report(result: CompareResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    """Two tables so each fits a terminal: the ranking by final loss, then speed and what was learned."""
    cfg = result.config
    regress = cfg.task == "regression"
    param_names = [k for k in (result.summaries[0].extra if result.summaries else {}) if k not in
                   ("optimum_distance", "accuracy")]
    if len(param_names) > 3:
        param_names = []  # many weights: the distance from the optimum says it in one number
    # sized for an 80-column terminal; the mean and standard deviation are in the JSON
    ranking_headers = ["#", "optimizer", "lr", "median loss", "IQR", "best loss", "diverged"]
    ranking = []
    for i, s in enumerate(result.summaries, start=1):
        ranking.append([str(i), str(shown(s.name)), f"{s.lr:g}" + (" (tuned)" if s.lr_source == "tuned" else ""),
                        median_cell(s), iqr_cell(s), fmt(s.best, ".5g"),
                        f"{s.diverged}/{len(s.finals)}" + (f" +{s.errors} errors" if s.errors else "")])
    stacked = [name for name, runs in result.runs.items() if any(r.stacked_with > 1 for r in runs)]
    together = len(stacked) == len(result.runs)  # one batched computation: one time for all, not a column
    detail_headers = ["optimizer", "to target"] + ([] if together else ["ms/epoch"]) + \
        (param_names + ["|θ − θ*|"] if regress else ["val acc"])
    detail = []
    for s in result.summaries:
        reach = "—" if s.epochs_to_target is None else f"{s.epochs_to_target:g} ({s.reached}/{len(s.finals)})"
        row = [str(shown(s.name)), reach] + ([] if together else [
            fmt(s.time_per_epoch * 1e3, ".3g") if math.isfinite(s.time_per_epoch) else "—"])
        if regress:
            row += [fmt(s.extra.get(p)) for p in param_names] + [fmt(s.extra.get("optimum_distance"), ".2e")]
        else:
            row += [fmt(s.extra.get("accuracy"), ".4f")]
        detail.append(row)
    task = ("regression" if cfg.task == "regression" else f"{cfg.task} ({cfg.run.data.dataset}, "
                                                        f"{getattr(cfg.run.model, 'name', cfg.run.model)})")
    title = (f"losslab compare-optimizers: {result.status} — {task}, {counted(cfg.seeds, 'seed')} × "
             f"{cfg.run.train.epochs} epochs, ranked by median {cfg.rank_by.replace('_', ' ')} "
             f"({result.elapsed_s:.1f} s)")
    notes = [f"data: {result.data_source}",
             columns_note(cfg.task, result.target)]
    if regress and result.reference:
        ref = result.reference
        notes.append("least-squares optimum: " + ", ".join(f"{k}={v:.6g}" for k, v in ref["params"].items())
                     + f", loss {ref['loss']:.6g}")
    measure = cfg.rank_by.replace("_", " ")
    notes += verdict(result, cfg.seeds, f"better {measure}" if cfg.rank_by != "final_loss" else "lower final loss",
                     f"the best median {measure}" if cfg.rank_by != "final_loss" else "the lowest median")
    notes += rate_notes(result)
    notes += pass_notes(result)
    for name, runs in result.runs.items():
        for r in runs:
            if r.status in ("error",):
                notes.append(f"{name} seed {r.spec.seed}: {r.error}")
    if result.status == "interrupted":
        notes.append("interrupted: trials that did not finish rank last and are marked in the JSON; a median loss "
                     "marked (stopped) is where the interrupted runs stood at their last epoch.")
    notes += pooled_notes(pooled_diagnosis(all_runs(result.runs)))
    notes += [o.describe() for o in outcomes]
    last = len(detail_headers) - 1
    score = (lambda s: s.extra.get("optimum_distance", math.inf)) if regress else \
        (lambda s: s.extra.get("accuracy", -math.inf))
    ranking_best = best_cells(result.summaries, [(3, lambda s: s.median, min), (5, lambda s: s.best, min)])
    detail_best = best_cells(result.summaries, [(last, score, min if regress else max)])
    if together:
        notes.append(stacked_note(result, stacked))
    elif stacked:
        notes.append(f"stacked in one batched computation: {', '.join(stacked)} (ms/epoch is each run's share of it)")
    notes += one_by_one_notes(result.one_by_one)
    return [Report(title, ranking_headers, ranking, [], ranking_best),
            Report("convergence and result per optimizer (medians over seeds)", detail_headers, detail, notes,
                   detail_best)]


def stacked_note(result: CompareResult, stacked: list[str]) -> str:
    """Every run in one batched computation: its time per epoch, once (each run's share would be one number
    repeated down a column)."""
    runs = [r for name in stacked for r in result.runs[name] if r.stacked_with > 1]
    share = [s.time_per_epoch for s in result.summaries if math.isfinite(s.time_per_epoch)]
    if not runs or not share:
        return f"stacked in one batched computation: {', '.join(stacked)}"
    together = statistics.median(share) * runs[0].stacked_with * 1e3
    return (f"stacked in one batched computation: {', '.join(stacked)} ({counted(runs[0].stacked_with, 'run')} "
            f"together, {fmt(together, '.3g')} ms per epoch)")


def plots(result: CompareResult) -> list[Plot]:
    cfg = result.config
    key = loss_key(cfg.task)

    def curves(path: Any) -> None:
        from losslab.outputs.plots import median_curves

        data = {s.name: [[rec[key] for rec in r.records if key in rec] for r in result.runs[s.name]]
                for s in result.summaries}
        median_curves(data, path, title=f"compare-optimizers: {cfg.task}, {counted(cfg.seeds, 'seed')}",
                      ylabel="training loss" if key == "train_loss" else "validation loss")

    def tuning(path: Any) -> None:
        from losslab.outputs.plots import loss_vs_lr

        assert result.tuning is not None
        points = {n: [(row["lr"], row["final_loss"]) for row in rows] for n, rows in result.tuning["results"].items()}
        loss_vs_lr(points, path, title=f"tuning on seed {result.tuning['seed']}", marks=result.tuning["chosen"])

    return list(zip(PLOTS, [curves, tuning] if result.tuning else [curves])) + group_sharpness_plots(
        result.runs, "sharpness per optimizer against 2/lr")


def terminal_curves(result: CompareResult) -> str:
    """One median curve per optimizer (training loss; classification: validation loss)."""
    from losslab.outputs.terminal_plot import curves, median_by_epoch

    key = "train_loss" if result.config.task == "regression" else "valid_loss"
    series = [(str(shown(s.name)), *median_by_epoch([r.records for r in result.runs[s.name]], key))
              for s in result.summaries]
    return curves(series, title=f"median {key.replace('_', ' ')} over seeds", xlabel="epoch")


def experiment(cfg: CompareConfig, *, json_out: bool = False, quiet: bool = False) -> tuple[Output, Where]:
    """The command's checks, training and results, up to its outputs (what the CLI and the Python API share)."""
    cfg = cfg.resolved()
    check_outputs(cfg, PLOTS)
    problem = build_problem(cfg.run)
    check_names(cfg.gates.expect, metric_names(cfg, problem), DIAGNOSIS_CHOICES)

    console = make_console(stderr=json_out)
    display = TrialsDisplay(console, quiet=quiet, loss_key=loss_key(cfg.task))
    display.plan(list(cfg.optims), cfg.seeds)
    events = dispatcher(context(COMMAND, cfg, json_out, quiet), [display])
    with display:
        result = compare(cfg, problem, events)
    outcomes = check_gates(cfg.gates, result.status, result.metrics())
    runs = [r for rs in result.runs.values() for r in rs]
    # one run diverging is a result, not a failure: exit 3 only when every run diverged
    return (Output(document(result, outcomes), report(result, outcomes), run_records(runs, "optimizer"),
                         outcomes, result.status, plots(result), lambda: terminal_curves(result), result=result),
                   Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def main(cfg: CompareConfig, *, json_out: bool, quiet: bool) -> int:
    return finish(*experiment(cfg, json_out=json_out, quiet=quiet))
