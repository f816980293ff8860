"""The learning-rate grid of `losslab lr-sweep`: short runs at each rate (stacked where possible), the rate
that trains best and the largest stable one; its document, report, plots and curves."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

from losslab.commands.common import (
    Plot,
    all_runs,
    columns_note,
    default_target,
    entries_document,
    entry_name,
    group_sharpness_plots,
    one_by_one_notes,
    pooled_diagnosis,
    pooled_notes,
    run_document,
)
from losslab.config import SweepConfig
from losslab.engine.events import Consumer
from losslab.engine.problems import AnyProblem
from losslab.engine.runs import RunResult, RunSpec, diagnose_run
from losslab.engine.trials import budget, by_rungs, epochs_asked, run_trials
from losslab.expect import Outcome
from losslab.outputs.display import Report, counted, epochs_text, fmt, iqr_cell, median_cell
from losslab.outputs.files import outcomes_document, versions
from losslab.stats import Summary, diverged, first_rung_check, loss_key, rank, summarise

GRID_PLOTS = ("sweep.png",)
EXPECTED_IN_A_SWEEP = ("slow-convergence",)  # findings a rate below the suggested one is expected to have
MARGIN = 3.0  # the suggestion keeps this factor below the smallest unstable rate ...
NEAR_BEST = 0.01  # ... when a rate there ends within this fraction of the grid's best median loss


@dataclass
class Suggestion:
    """The grid's suggested rate and why: the best-ranked rate, or one with a margin from divergence."""

    lr: Optional[float]
    best: Optional[float]  # the best-ranked rate of the grid (the suggestion when no margin is needed)
    edge: Optional[float]  # the smallest rate that diverged or ended above its first epoch's loss

    def describe(self) -> str:
        rule = ("lowest median final loss; ties within 4 significant digits go to the rate that reaches the "
                "target sooner")
        if self.lr is None or self.edge is None:
            return f"{fmt(self.lr, '.3g')} ({rule})"
        if self.lr == self.best:
            near = "" if self.best * MARGIN <= self.edge else (
                f"; no rate {MARGIN:g}× below {self.edge:.3g}, where training broke, comes within "
                f"{NEAR_BEST:.0%} of its loss: it has no margin")
            return f"{self.lr:.3g} ({rule}{near})"
        return (f"{self.lr:.3g} (lowest median final loss among rates at least {MARGIN:g}× below {self.edge:.3g}, "
                f"the smallest that diverged or did not improve; the best-ranked {self.best:.3g} is not "
                f"{NEAR_BEST:.0%} better but sits next to that edge, where one more seed or epoch can tip it over)")


def suggest(summaries: Sequence[Summary], unstable: Sequence[float],
            eligible: Optional[Sequence[Summary]] = None) -> Suggestion:
    """The best-ranked finished rate, moved down to keep a factor MARGIN from the smallest unstable rate when a
    rate there is as good (within NEAR_BEST of the best median loss). `unstable`: the rates seen to diverge or
    end above their first epoch's loss; `eligible`: the rates that may be suggested (with halving, those that
    trained the whole budget)."""
    finished = [s for s in (summaries if eligible is None else eligible) if math.isfinite(s.median)]
    if not finished:
        return Suggestion(None, None, None)
    best = rank(finished)[0]
    edge = min(unstable, default=None)
    if edge is None or best.lr * MARGIN <= edge:
        return Suggestion(best.lr, best.lr, edge)
    safe = [s for s in finished if s.lr * MARGIN <= edge and s.median <= best.median + NEAR_BEST * abs(best.median)]
    return Suggestion(rank(safe)[0].lr if safe else best.lr, best.lr, edge)


@dataclass
class Rung:
    """One rung of successive halving: the rates that trained `epochs`, their scores (median final loss over
    seeds), and the best 1/η that continued to the next rung."""

    epochs: int
    candidates: list[float]
    scores: dict[float, float]
    continued: list[float]
    trained: int = 0  # epochs its runs trained (a run that went on from the last rung: only the new ones)
    margin: Optional[str] = None  # after the rungs, for the grid's margin rule: the question its rates answer


def next_rung(epochs: int, alive: Sequence[float], runs: dict[str, list[RunResult]], task: str, target: float,
              rate: int, last: bool, trained: int = 0) -> Rung:
    """Rank the rates that trained this rung as the grid ranks them (median final loss to 4 significant digits,
    then epochs to the target; diverged last); the best ceil(n/rate) continue, none after the last rung."""
    summaries = [summarise(lr_label(lr), lr, "grid", runs[lr_label(lr)], task, target) for lr in alive]
    ranked = rank(summaries)
    keep = [] if last else [s.lr for s in ranked[:max(1, math.ceil(len(alive) / rate))] if math.isfinite(s.median)]
    return Rung(epochs, list(alive), {s.lr: s.median for s in summaries}, sorted(keep), trained)


GRID_VS_RANGE = ("a grid trains the whole budget at each fixed rate; --range-test raises the rate every step of one "
                 "short run and points where the loss falls fastest, usually a smaller rate: use the grid's for this "
                 "budget, the range test's as a quick safe start")


@dataclass
class GridResult:
    config: SweepConfig
    status: str
    summaries: list[Summary]  # in learning-rate order
    runs: dict[str, list[RunResult]]
    suggested_lr: Optional[float]
    largest_stable_lr: Optional[float]
    target: float
    vectorized: bool
    elapsed_s: float
    device: str
    data_source: str
    versions: dict[str, str] = field(default_factory=dict)
    suggestion: Optional[Suggestion] = None
    halving: list["Rung"] = field(default_factory=list)  # successive halving's rungs (none: the full grid)
    margin: list["Rung"] = field(default_factory=list)  # then the rates the margin rule needs, at the whole budget
    one_by_one: Optional[str] = None  # why runs that could stack trained one after another

    def metrics(self) -> dict[str, Any]:
        best = next((s for s in self.summaries if s.lr == self.suggested_lr), None)
        return grid_metrics(self.suggested_lr, self.largest_stable_lr, best.median if best else None,
                            [d["code"] for d in self.diagnosis()])

    def diagnosis(self) -> list[dict[str, Any]]:
        """The runs' findings, pooled; a sweep's small rates converge slowly by design (that is what the sweep
        measures, not a problem), so slow convergence below the suggested rate is left out here (each run's own
        document keeps it). A finding's own advice of another rate ("try --lr 0.155", worked out from one run)
        gives way to the sweep's answer, so the report names one rate to use."""
        def keep(run: Any, finding: Any) -> bool:
            below = self.suggested_lr is not None and (run.spec.optim.lr or 0) < self.suggested_lr
            return not (below and finding.code in EXPECTED_IN_A_SWEEP)

        pooled = pooled_diagnosis(all_runs(self.runs), keep=keep)
        if self.suggested_lr is not None:
            answer = f"use the rate this sweep suggests, --lr {self.suggested_lr:.3g}"
            for entry in pooled:
                entry["suggestion"] = re.sub(r"try --lr [0-9.e+-]+", answer, entry.get("suggestion") or "")
        return pooled


def grid_metrics(suggested: Optional[float], stable: Optional[float], best: Optional[float],
                 diagnosis: list[str]) -> dict[str, Any]:
    return {"suggested_lr": suggested, "largest_stable_lr": stable, "best_final_loss": best, "diagnosis": diagnosis}


# how far above its first epoch's loss a run may end and still count as not worse: the final loss is measured
# again after training, and a float32 sum of the same numbers in another order differs by ~1e-7 relative (a rate
# stopped after one epoch at 1.4507267475 against its record's 1.4507266283 once read as "training broke")
SAME_LOSS = 1e-5


def improved(run: RunResult, task: str) -> bool:
    """A run is stable when it ends no higher than its first epoch: a finite loss that exploded is not."""
    start = run.records[0].get(loss_key(task)) if run.records else None
    end = run.metrics.get("final_loss") if run.status == "ok" else None
    return (start is not None and end is not None and math.isfinite(start)
            and end <= start + SAME_LOSS * abs(start))


def broke(summary: Summary, runs: Sequence[RunResult], task: str) -> bool:
    """Whether a rate was seen to break: a seed diverged or ended above its first epoch's loss."""
    return summary.diverged > 0 or (summary.errors == 0 and math.isfinite(summary.median)
                                    and not all(improved(r, task) for r in runs))


def margin_rates(summaries: Sequence[Summary], full: set[float], unstable: Sequence[float],
                 phase: int) -> tuple[list[float], Optional[str]]:
    """The rates successive halving stopped early that the grid's margin rule needs trained to the whole budget,
    and what they answer. Phase 0: those above the best full-budget rate by less than MARGIN (does training break
    there?); phase 1, when it breaks within MARGIN of the best: the best-ranked at its last rung of those at least
    MARGIN below the break (is one as good as the best?). Retrained from their start: a few runs, not the grid."""
    finished = [s for s in summaries if s.lr in full and math.isfinite(s.median)]
    if not finished:
        return [], None
    best = rank(finished)[0].lr
    edge = min(unstable, default=math.inf)
    if phase == 0:
        above = [s.lr for s in summaries if best < s.lr < min(best * MARGIN, edge) and s.lr not in full]
        return above, "whether training breaks within the margin above the best rate"
    if edge >= best * MARGIN:
        return [], None
    below = [s for s in summaries if s.lr * MARGIN <= edge and s.lr not in full and math.isfinite(s.median)]
    return [s.lr for s in rank(below)[:1]], "whether a rate at least the margin below where training broke is as good"


def lr_label(lr: float) -> str:
    return f"{lr:.3g}"


def grid_sweep(cfg: SweepConfig, problem: AnyProblem, events: Consumer = Consumer()) -> GridResult:
    """Every rate trained for the configured epochs on each seed, from the same initial weights and data order."""
    started = time.perf_counter()
    cfg = cfg.resolved()
    task = cfg.task
    grid = cfg.grid()
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    target = cfg.target if cfg.target is not None else default_target(problem)
    epochs = problem.train_cfg.epochs or 0
    rungs = cfg.rungs(epochs) if cfg.halving else [epochs]
    runs: dict[str, list[RunResult]] = {lr_label(lr): [] for lr in grid}
    halving: list[Rung] = []

    def specs_for(alive: list[float]) -> list[RunSpec]:
        return [RunSpec(lr_label(lr), replace(cfg.run.optim, lr=lr), seed) for seed in seeds for lr in alive]

    def after(k: int, rung: int, alive: list[float], specs: list[RunSpec], done: list[RunResult]) -> list[float]:
        for lr in alive:  # each rate's runs: those of the last rung it trained in
            runs[lr_label(lr)] = [r for r in done if r.spec.group == lr_label(lr)]
        if not cfg.halving:
            return []
        halving.append(next_rung(rung, alive, runs, task, target, cfg.halving_rate, last=k == len(rungs) - 1,
                                 trained=epochs_asked(specs, rung)))
        return halving[-1].continued

    results, interrupted = by_rungs(problem, rungs, list(grid), specs_for, after, events, cfg)
    complete = not halving or halving[-1].epochs == epochs  # (halving stops early when every rate diverged)
    whole = set(halving[-1].candidates) if halving and complete else set(grid) if complete else set()
    summaries = [summarise(lr_label(lr), lr, "grid", runs[lr_label(lr)], task, target) for lr in grid]
    margin: list[Rung] = []
    for phase in range(2 if halving and complete else 0):  # the margin rule's questions, at the whole budget
        unstable = [s.lr for s in summaries if broke(s, runs[s.name], task)]
        extra, why = margin_rates(summaries, whole, unstable, phase)
        if not extra or interrupted:
            continue
        with budget(problem, epochs):
            done, interrupted = run_trials(problem, specs_for(extra), events, vectorize=cfg.vectorize,
                                           executor=cfg.executor)
        results += done
        for lr in extra:
            runs[lr_label(lr)] = [r for r in done if r.spec.group == lr_label(lr)]
        whole |= set(extra)
        summaries = [summarise(lr_label(lr), lr, "grid", runs[lr_label(lr)], task, target) for lr in grid]
        margin.append(Rung(epochs, extra, {s.lr: s.median for s in summaries if s.lr in extra}, [],
                           epochs_asked(specs_for(extra), epochs), margin=why))
    summaries, suggestion, largest_stable, status = settled(cfg, problem, runs, whole, target, interrupted)
    return GridResult(cfg, status, summaries, runs, suggestion.lr, largest_stable, target,
                      any(r.stacked_with > 1 for r in results), time.perf_counter() - started, str(problem.device),
                      problem.data.source, versions(), suggestion, halving, margin, problem.unstacked)


def settled(cfg: SweepConfig, problem: AnyProblem, runs: dict[str, list[RunResult]], whole: set[float],
            target: float, interrupted: bool) -> tuple[list[Summary], Suggestion, Optional[float], str]:
    """What a grid's runs (by rate label) say: each rate's summary, the suggested rate, the largest stable one
    (among `whole`, the rates that trained the whole budget) and the grid's status. A diverged run's diagnosis
    then points at the grid's own largest stable rate."""
    task = cfg.task
    summaries = [summarise(lr_label(lr), lr, "grid", runs[lr_label(lr)], task, target) for lr in cfg.grid()]
    full = [s for s in summaries if math.isfinite(s.median) and s.lr in whole]
    finished = [s for s in summaries if math.isfinite(s.median)]
    # stable: seen to train the whole budget without breaking (a rate halving stopped early was not seen there)
    stable = [s.lr for s in summaries if s.diverged == 0 and s.errors == 0 and math.isfinite(s.median)
              and s.lr in whole and not broke(s, runs[s.name], task)]
    largest_stable = max(stable) if stable else None
    suggestion = suggest(summaries, [s.lr for s in summaries if broke(s, runs[s.name], task)], eligible=full)
    results = [r for rs in runs.values() for r in rs]
    for r in results:  # a diverged rate's suggestion: the grid's own largest stable rate
        if diverged(r) and largest_stable is not None:
            r.diagnosis = diagnose_run(problem.for_run(r.spec), r, stable_lr=largest_stable)
    if interrupted or finished:
        status = "interrupted" if interrupted else "ok"
    else:
        status = "failed" if all(r.status == "error" for r in results) else "diverged"
    return summaries, suggestion, largest_stable, status


def grid_document(result: GridResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    """The `--json` / result.json document of `losslab lr-sweep` (grid mode)."""
    task = result.config.task
    rows = [run_document(r, task, result.target) for s in result.summaries for r in result.runs[s.name]]
    return {
        "command": "lr-sweep", "mode": "grid", "status": result.status, "task": task,
        "config": result.config.to_dict(),
        "suggested_lr": result.suggested_lr, "largest_stable_lr": result.largest_stable_lr,
        "target": result.target, "vectorized": result.vectorized,
        "rates": rates_document(result.summaries),
        "results": rows,
        **entries_document({entry_name({"lr": s.lr}, ["lr"]): {**doc, "runs": [
            run_document(r, task, result.target) for r in result.runs[s.name]]}
            for s, doc in zip(result.summaries, rates_document(result.summaries))}, ["lr"]),
        "diagnosis": result.diagnosis(),
        "data": result.data_source, "device": result.device, "elapsed_s": result.elapsed_s,
        "expectations": outcomes_document(outcomes or []), "versions": result.versions,
        "halving": halving_document(result), "one_by_one": result.one_by_one,
    }


def rates_document(summaries: Sequence[Summary]) -> list[dict[str, Any]]:
    """Each rate's summary over its seeds, as a grid's document lists them."""
    return [{"lr": s.lr, "final_loss": {"median": s.median, "q1": s.q1, "q3": s.q3}, "best_loss": s.best,
             "stopped_at_loss": s.stood, "epochs_to_target": s.epochs_to_target, "diverged": s.diverged,
             "errors": s.errors, **s.extra} for s in summaries]


def epochs_trained(result: GridResult) -> tuple[int, int]:
    """(epochs the sweep trained over every run, epochs the full grid trains)."""
    seeds = result.config.seeds
    total = (result.config.run.train.epochs or 0) * len(result.summaries) * seeds
    if not result.halving:
        return total, total
    return sum(rung.trained for rung in result.halving + result.margin), total


def halving_document(result: GridResult) -> Optional[dict[str, Any]]:
    if not result.halving:
        return None
    trained, full = epochs_trained(result)
    return {"rate": result.config.halving_rate,
            "rungs": [{"epochs": r.epochs, "candidates": r.candidates,
                       "scores": [{"lr": lr, "median_final_loss": v} for lr, v in r.scores.items()],
                       "continued": r.continued} for r in result.halving],
            "margin_rungs": [{"epochs": r.epochs, "rates": r.candidates, "question": r.margin,
                              "scores": [{"lr": lr, "median_final_loss": v} for lr, v in r.scores.items()]}
                             for r in result.margin],
            "epochs_trained": trained, "epochs_full_grid": full, "share_of_full_grid": trained / full if full else None}


def stopped_at(result: GridResult, lr: float) -> Optional[int]:
    """The epochs a rate trained when halving stopped it before the last rung (None: the whole budget)."""
    last = None
    for rung in result.halving + result.margin:
        if lr in rung.candidates:
            last = rung.epochs
    return last if last is not None and result.halving and last != result.halving[-1].epochs else None


def halving_notes(result: GridResult) -> list[str]:
    if not result.halving:
        return []
    trained, full = epochs_trained(result)
    rate = result.config.halving_rate
    lines = [f"successive halving (rate {rate}): rungs at {', '.join(str(r.epochs) for r in result.halving)} epochs; "
             f"{trained:,} epochs trained of {full:,} for the full grid ({trained / full:.0%}); a rate marked (E) "
             "stopped after E epochs; only rates that trained every epoch are suggested"]
    for i, rung in enumerate(result.halving[:-1], 1):
        kept = ", ".join(f"{lr:.3g}" for lr in rung.continued) or "none (every rate diverged)"
        lines.append(f"  rung {i} ({epochs_text(rung.epochs)}): {len(rung.candidates)} rate(s) → the best "
                     f"{len(rung.continued)} continue: {kept}")
    if len(result.halving) > 1:
        check = first_rung_check(result.halving[0].scores, result.halving[1].scores, result.halving[0].epochs,
                                 "rates", rate)
        lines += [f"  {check}"] if check else []
    for rung in result.margin:
        lines.append(f"  then the whole budget for {', '.join(f'{lr:.3g}' for lr in rung.candidates)}: {rung.margin}")
    if result.margin:
        lines.append(f"  (the grid keeps its suggestion {MARGIN:g}× below where training broke: halving trains what "
                     "that rule needs, so both suggest by the same rule)")
    return lines


def grid_report(result: GridResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    cfg = result.config
    regress = cfg.task == "regression"
    # short headers so the table fits 80 columns; the notes say what they mean
    headers = ["lr", "median loss", "IQR", "best loss", "to target", "diverged"] + ([] if regress else ["val acc"])
    rows, best = [], set()
    for i, s in enumerate(result.summaries):
        reach = "—" if s.epochs_to_target is None else f"{s.epochs_to_target:g} ({s.reached}/{len(s.finals)})"
        mark = " ←" if s.lr == result.suggested_lr else ""
        stopped = stopped_at(result, s.lr)
        mark += f" ({stopped})" if stopped else ""
        row = [f"{s.lr:.3g}{mark}", median_cell(s), iqr_cell(s),
               fmt(s.best, ".5g"), reach,
               f"{s.diverged}/{len(s.finals)}" + (f" (+{s.errors} errors)" if s.errors else "")]
        if not regress:
            row.append(fmt(s.extra.get("accuracy"), ".4f"))
        rows.append(row)
        if s.lr == result.suggested_lr:
            best.update({(i, 0), (i, 1)})
    title = (f"losslab lr-sweep: {result.status} — {cfg.run.optim.name}, {len(result.summaries)} rates × "
             f"{counted(cfg.seeds, 'seed')} × {cfg.run.train.epochs} epochs in {result.elapsed_s:.1f} s "
             f"({'vectorized' if result.vectorized else 'sequential'})")
    notes = [f"data: {result.data_source}",
             columns_note(cfg.task, result.target),
             f"suggested lr (←): "
             f"{(result.suggestion or Suggestion(result.suggested_lr, None, None)).describe()}",
             f"largest stable rate (no seed diverged or ended above its first epoch's loss): "
             f"{fmt(result.largest_stable_lr, '.3g')}"]
    notes += halving_notes(result)
    notes += one_by_one_notes(result.one_by_one)
    notes.append(GRID_VS_RANGE)
    if result.status == "interrupted":
        notes.append("interrupted: unfinished rates rank last and are marked in the JSON; a median loss marked "
                     "(stopped) is where the interrupted runs stood at their last epoch.")
    notes += pooled_notes(result.diagnosis())
    notes += [o.describe() for o in outcomes]
    return [Report(title, headers, rows, notes, best)]


def grid_plots(result: GridResult) -> list[Plot]:
    cfg = result.config
    runs = [r for rs in result.runs.values() for r in rs]

    def sweep(path: Any) -> None:
        from losslab.outputs.plots import sweep_plot

        sweep_plot([(r.spec.optim.lr, r.score, r.status) for r in runs], path, result.suggested_lr,
                   title=f"lr-sweep: {cfg.run.optim.name}, {cfg.run.train.epochs} epochs",
                   ylabel="final loss" if cfg.task == "regression" else "final validation loss")

    return list(zip(GRID_PLOTS, [sweep])) + group_sharpness_plots(result.runs, "sharpness per rate against 2/lr")


def grid_curves(result: GridResult) -> str:
    from losslab.outputs.terminal_plot import curves

    finished = [s for s in result.summaries if math.isfinite(s.median)]
    mark = (result.suggested_lr, f"suggested {result.suggested_lr:.3g}") if result.suggested_lr else None
    return curves([("median final loss", [s.lr for s in finished], [s.median for s in finished])],
                  title="final loss against the learning rate", xlabel="learning rate", logx=True, mark=mark)
