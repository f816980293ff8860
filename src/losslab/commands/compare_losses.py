"""`losslab compare-losses`: what each loss does to a fit. The same model, initial weights, batch order and
optimizer trained with several losses over several seeds (stacked where possible), ranked by a measure that
does not depend on the loss being trained: distance from the clean truth or held-out error (regression, with
seeded outliers), macro-F1 and friends on one validation split (classification)."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from losslab.commands.common import (
    DIAGNOSIS_CHOICES,
    Output,
    Plot,
    Where,
    all_runs,
    check_gates,
    check_outputs,
    context,
    entries_document,
    finish,
    one_by_one_notes,
    pooled_diagnosis,
    pooled_notes,
    run_records,
    settle,
    verdict,
)
from losslab.components.datasets import load_classification, minority_classes
from losslab.components.regression_data import RegressionData, synthetic, with_outliers
from losslab.config import LOSS_RANKINGS, ClassifyConfig, CompareLossesConfig, RegressConfig
from losslab.config.many import halving_rungs
from losslab.engine.events import Consumer
from losslab.engine.problems import (
    AnyProblem,
    ClassificationProblem,
    RegressionProblem,
    build_problem,
    heldout_errors,
    load_regression_data,
)
from losslab.engine.runs import RunResult, RunSpec
from losslab.engine.trials import by_rungs, epochs_asked
from losslab.expect import Outcome, check_names
from losslab.outputs import dispatcher
from losslab.outputs.display import Report, TrialsDisplay, best_cells, counted, epochs_text, fmt, make_console
from losslab.outputs.files import outcomes_document, versions
from losslab.stats import WIN_MARGIN, distinct_seeds, first_rung_check, loss_key, quantile

COMMAND = "compare-losses"
PLOTS = ("fits.png", "curves.png")  # fits.png for one-feature regression only
HIGHER_IS_BETTER = {"macro_f1", "accuracy", "minority_recall"}
LM_MEASURES = ("nll", "accuracy", "perplexity", "bits_per_char")
# held-out errors of a regression: MSE favours the mse loss and MAE the l1 loss by construction; the median
# absolute error is minimised by none of the built-in losses and is not dominated by a minority of outlier rows
HELDOUT = ("heldout_medae", "heldout_mse", "heldout_mae")


@dataclass
class LossSummary:
    name: str
    values: list[float]  # the ranking measure per seed (worst possible when the run did not finish)
    median: float
    q1: float
    q3: float
    measures: dict[str, Optional[float]]  # medians over finished runs of every measure
    diverged: int
    errors: int


@dataclass
class CompareLossesResult:
    config: CompareLossesConfig
    status: str
    rank_by: str
    summaries: list[LossSummary]  # ranked, best first
    runs: dict[str, list[RunResult]]
    measures: dict[str, list[dict[str, float]]]  # per loss, per seed
    winner: Optional[str]
    wins: Optional[int]
    reference: dict[str, Any]  # regression: truth, least squares of the (contaminated) training data, outliers
    elapsed_s: float
    device: str
    data_source: str
    versions: dict[str, str] = field(default_factory=dict)
    split: str = ""  # classification: how the validation split was made (and any imbalance)
    halving: list["LossRung"] = field(default_factory=list)  # successive halving's rungs (none: every loss trained)
    one_by_one: Optional[str] = None  # why runs that could stack trained one after another

    def metrics(self) -> dict[str, Any]:
        return metrics(self.winner, self.summaries, [d["code"] for d in self.diagnosis()])

    def diagnosis(self) -> list[dict[str, Any]]:
        return pooled_diagnosis(all_runs(self.runs))


@dataclass
class LossRung:
    """One rung of successive halving over the losses: those that trained `epochs`, their median ranking measure,
    the best 1/η that continued, and the epochs the rung trained (a run going on from the last rung: its new ones)."""

    epochs: int
    candidates: list[str]
    scores: dict[str, float]
    continued: list[str]
    trained: int

    def document(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "candidates": self.candidates, "scores": self.scores,
                "continued": self.continued, "epochs_trained": self.trained}


def metrics(winner: Optional[str], summaries: Sequence[LossSummary], diagnosis: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"winner": winner or "tie", "diagnosis": diagnosis}
    for s in summaries:
        out.update({f"{s.name}.{k}": v for k, v in s.measures.items()})
        out[f"{s.name}.diverged"] = s.diverged
    return out


def measure_names(task: str, params: Sequence[str], truth: bool) -> list[str]:
    if task == "classification":
        return ["accuracy", "macro_f1", "minority_recall", "nll", "ece"]
    if task == "language-model":
        return list(LM_MEASURES)
    names = list(params) + (["truth_distance"] + [f"{p}_error" for p in params] if truth else []) + list(HELDOUT)
    return names + ["final_loss"]


# --- data ------------------------------------------------------------------------------------------

def regression_data(run: RegressConfig, cfg: CompareLossesConfig) -> tuple[RegressionData, RegressionData, Any,
                                                                            Optional[list[int]]]:
    """(training data with any planted outliers, held-out data, outlier rows, held-out row numbers). Synthetic
    data: a fresh clean draw (data seed + 1) is held out; a user's data: a seeded fifth of its rows, as they are
    (the 1-based data-row numbers are returned)."""
    d = run.data
    held: Optional[list[int]] = None
    if d.csv is None and d.dataset == "synthetic":
        clean = synthetic(d.samples, d.features, d.true_w, d.true_b, d.noise, d.data_seed)
        heldout = synthetic(d.samples, d.features, d.true_w, d.true_b, d.noise, d.data_seed + 1)
    else:
        full = load_regression_data(run)
        order = np.random.default_rng(d.data_seed).permutation(len(full.y))
        cut = max(1, len(order) // 5)
        if len(order) - cut < 2:
            from losslab.errors import ConfigError

            raise ConfigError("--data", f"{d.csv} has too few rows to hold a fifth out")
        pick = lambda rows, tag: RegressionData(full.x[rows], full.y[rows], None, None, f"{full.source} ({tag})",  # noqa: E731
                                                full.feature_names)
        clean, heldout = pick(order[cut:], f"{len(order) - cut} training rows"), pick(order[:cut], f"{cut} held out")
        held = sorted(int(i) + 1 for i in order[:cut])
    train, rows = with_outliers(clean, cfg.outliers or 0.0, cfg.outlier_shift, d.data_seed)
    return train, heldout, rows, held


def regression_measures(problem: RegressionProblem, heldout: RegressionData, r: RunResult) -> dict[str, float]:
    """The linear model's weights, their distance from the truth and its held-out errors (float64, from its
    weights); a user's model's held-out errors (measured by the problem on its predictions)."""
    params = r.metrics["params"]
    if problem.user_model is not None:
        return {k: r.metrics[k] for k in (*HELDOUT, "final_loss")}
    w = np.array([params[n] for n in problem.names[:-1]], dtype=np.float64)
    pred = heldout.x.astype(np.float64) @ w + params["b"]
    out = dict(params)
    if problem.true_params is not None:
        out["truth_distance"] = math.sqrt(sum((params[n] - problem.true_params[n]) ** 2 for n in problem.names))
        out.update({f"{n}_error": abs(params[n] - problem.true_params[n]) for n in problem.names})
    out.update(heldout_errors(pred, heldout.y))
    out["final_loss"] = r.metrics["final_loss"]
    return out


def classification_measures(problem: ClassificationProblem, r: RunResult) -> dict[str, float]:
    confusion = np.array(r.metrics["confusion"], dtype=np.float64)
    support, predicted, hits = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits),
                   where=(precision + recall) > 0)
    minority = minority_classes(problem.k)
    return {"accuracy": r.metrics["accuracy"], "macro_f1": float(f1.mean()),
            "minority_recall": float(recall[minority].mean()) if minority else float(recall.mean()),
            "nll": r.metrics["nll"], "ece": r.metrics["ece"]}


# --- the comparison --------------------------------------------------------------------------------

def prepare(cfg: CompareLossesConfig) -> tuple[AnyProblem, Optional[RegressionData], Any, Optional[list[int]]]:
    if isinstance(cfg.run, RegressConfig):
        train, heldout, rows, held = regression_data(cfg.run, cfg)
        problem = RegressionProblem(cfg.run, train)
        problem.heldout = heldout
        return problem, heldout, rows, held
    if isinstance(cfg.run, ClassifyConfig):
        return ClassificationProblem(cfg.run, load_classification(cfg.run.data)), None, None, None
    return build_problem(cfg.run), None, None, None


def check_losses(cfg: CompareLossesConfig, problem: AnyProblem) -> None:
    """Every loss of the list imported, built and checked on a real batch before any training: a list with a
    loss that cannot train is refused whole, naming it."""
    from losslab.errors import ConfigError

    for name in cfg.losses:
        try:
            problem.loss_for(cfg.loss_config(name))
        except ConfigError as exc:
            raise ConfigError("--losses", f"{name}: {exc.message}") from None


def summarise_measure(name: str, runs: Sequence[RunResult], measures: Sequence[Optional[dict[str, float]]],
                      rank_by: str) -> LossSummary:
    worst = -math.inf if rank_by in HIGHER_IS_BETTER else math.inf
    values = [m[rank_by] if m is not None and math.isfinite(m[rank_by]) else worst for m in measures]
    finished = [m for m in measures if m is not None]
    keys = list(finished[0]) if finished else []
    medians: dict[str, Optional[float]] = {k: statistics.median(m[k] for m in finished) for k in keys}
    return LossSummary(name, values, quantile(values, 0.5), quantile(values, 0.25), quantile(values, 0.75), medians,
                       sum(r.status == "diverged" for r in runs), sum(r.status == "error" for r in runs))


def measured(problem: AnyProblem, heldout: Optional[RegressionData], names: Sequence[str],
             results: Sequence[RunResult]) -> tuple[dict[str, list[RunResult]], dict[str, list[Optional[dict]]]]:
    """Each loss's runs and, per run, every measure (None for a run that did not finish)."""
    runs: dict[str, list[RunResult]] = {name: [] for name in names}
    measures: dict[str, list[Optional[dict[str, float]]]] = {name: [] for name in names}
    for r in results:
        runs[r.spec.group].append(r)
        if r.status != "ok":
            measures[r.spec.group].append(None)
        elif isinstance(problem, RegressionProblem):
            assert heldout is not None
            measures[r.spec.group].append(regression_measures(problem, heldout, r))
        elif isinstance(problem, ClassificationProblem):
            measures[r.spec.group].append(classification_measures(problem, r))
        else:  # a language model: its cross-entropy and accuracy on the whole validation split
            measures[r.spec.group].append({k: r.metrics[k] for k in LM_MEASURES})
    return runs, measures


def ranked(names: Sequence[str], runs: dict[str, list[RunResult]], measures: dict[str, list[Optional[dict]]],
           rank_by: str, reached: Optional[dict[str, int]] = None) -> list[LossSummary]:
    """The losses best first by median measure (4 significant digits, then name); with halving, those that
    reached a later rung come before those stopped earlier (`reached`: the last rung each trained in)."""
    sign = -1.0 if rank_by in HIGHER_IS_BETTER else 1.0
    return sorted((summarise_measure(n, runs[n], measures[n], rank_by) for n in names),
                  key=lambda s: (-(reached or {}).get(s.name, 0),
                                 float(f"{sign * s.median:.4g}") if math.isfinite(s.median) else math.inf, s.name))


def halve(cfg: CompareLossesConfig, problem: AnyProblem, heldout: Optional[RegressionData], events: Consumer,
          rank_by: str) -> tuple[list[RunResult], bool, list[LossRung], dict[str, int]]:
    """Every loss on every seed — or by successive halving (--halving): after each rung the best 1/η losses by
    the ranking measure go on from where they stopped. Returns the runs (each loss's last rung's), whether Ctrl-C
    stopped them, the rungs and the last rung each loss trained in."""
    seeds = [cfg.run.train.seed + i for i in range(cfg.seeds)]
    epochs = problem.train_cfg.epochs or 0
    latest: dict[tuple[str, int], RunResult] = {}
    rungs: list[LossRung] = []
    reached: dict[str, int] = {}

    def specs_for(alive: list[str]) -> list[RunSpec]:
        return [RunSpec(name, cfg.run.optim, seed, loss=cfg.loss_config(name)) for seed in seeds for name in alive]

    def after(k: int, rung: int, alive: list[str], specs: list[RunSpec], done: list[RunResult]) -> list[str]:
        latest.update({(r.spec.group, r.spec.seed): r for r in done})
        reached.update({name: k for name in alive})
        if not cfg.halving:
            return []
        runs, measures = measured(problem, heldout, alive, done)
        order = ranked(alive, runs, measures, rank_by)
        keep = [] if rung == epochs else [s.name for s in order[:max(1, math.ceil(len(alive) / cfg.halving_rate))]
                                          if math.isfinite(s.median)]
        rungs.append(LossRung(rung, list(alive), {s.name: s.median for s in order}, keep, epochs_asked(specs, rung)))
        return keep

    schedule = halving_rungs(epochs, cfg.min_epochs, cfg.halving_rate) if cfg.halving else [epochs]
    _, interrupted = by_rungs(problem, schedule, list(cfg.losses), specs_for, after, events, cfg)
    results = [latest[(name, seed)] for seed in seeds for name in cfg.losses if (name, seed) in latest]
    return results, interrupted, rungs, reached


def compare(cfg: CompareLossesConfig, problem: AnyProblem, heldout: Optional[RegressionData] = None,
            outlier_rows: Any = None, events: Consumer = Consumer(),
            heldout_rows: Optional[list[int]] = None) -> CompareLossesResult:
    started = time.perf_counter()
    task = cfg.task
    truth = isinstance(problem, RegressionProblem) and problem.true_params is not None and problem.user_model is None
    rank_by = cfg.rank_by or (LOSS_RANKINGS[task][0] if task != "regression" else
                              "truth_distance" if truth else "heldout_medae")
    results, interrupted, rungs, reached = halve(cfg, problem, heldout, events, rank_by)
    runs, measures = measured(problem, heldout, cfg.losses, results)
    summaries = ranked(cfg.losses, runs, measures, rank_by, reached if rungs else None)
    # the winner: of the losses that trained every epoch, the best by a paired-seed majority over the second
    finalists = [s for s in summaries if not rungs or reached.get(s.name) == len(rungs) - 1]
    sign = -1.0 if rank_by in HIGHER_IS_BETTER else 1.0
    winner, wins = None, None
    if finalists and math.isfinite(finalists[0].median) and (not rungs or rungs[-1].epochs == cfg.run.train.epochs):
        if len(finalists) == 1:
            winner = finalists[0].name
        else:
            a, b = finalists[0].values, finalists[1].values
            wins = sum(sign * x < sign * y and (math.isinf(y) or abs(y - x) > WIN_MARGIN * abs(y))
                       for x, y in zip(a, b))
            distinct = distinct_seeds(a, b)
            wins = min(wins, distinct)  # identical seeds count once
            winner = finalists[0].name if wins > distinct / 2 else None
    reference: dict[str, Any] = {}
    if isinstance(problem, RegressionProblem):
        reference = {"truth": problem.true_params, "least_squares": problem.optimum["params"],
                     "outliers": int(len(outlier_rows)) if outlier_rows is not None else 0,
                     "outlier_shift": cfg.outlier_shift, "heldout_rows": heldout_rows}
    return CompareLossesResult(cfg, settle(interrupted, results), rank_by, summaries, runs,
                               {k: [m or {} for m in v] for k, v in measures.items()}, winner, wins, reference,
                               time.perf_counter() - started, str(problem.device), problem.data.source, versions(),
                               problem.data.split if isinstance(problem, ClassificationProblem) else "", rungs,
                               problem.unstacked)


def halving_document(result: CompareLossesResult) -> Optional[dict[str, Any]]:
    if not result.halving:
        return None
    cfg = result.config
    full = len(cfg.losses) * cfg.seeds * (cfg.run.train.epochs or 0)
    trained = sum(r.trained for r in result.halving)
    return {"rate": cfg.halving_rate, "rungs": [r.document() for r in result.halving], "epochs_trained": trained,
            "epochs_full": full, "share_of_full": trained / full if full else None}


def stopped_mark(result: CompareLossesResult, name: str) -> str:
    """" (E)" for a loss successive halving stopped after E epochs, before the last rung (as lr-sweep marks rates)."""
    last = max((r.epochs for r in result.halving if name in r.candidates), default=None)
    return f" ({last})" if last is not None and last != result.halving[-1].epochs else ""


def accuracy_flag(result: CompareLossesResult) -> list[str]:
    """A classification winner ranked by another measure whose validation accuracy is the lowest of all: said, so
    a reader who looks at accuracy is not misled by the word "winner"."""
    if result.config.task != "classification" or result.winner is None or result.rank_by == "accuracy":
        return []
    accuracy = {s.name: s.measures.get("accuracy") for s in result.summaries}
    known = {k: v for k, v in accuracy.items() if v is not None and math.isfinite(v)}
    if len(known) < 2 or result.winner not in known or known[result.winner] > min(known.values()):
        return []
    best = max(known, key=known.__getitem__)
    return [f"note: the winner {result.winner} has the lowest validation accuracy ({known[result.winner]:.4f}; "
            f"{best} {known[best]:.4f}): it wins on {result.rank_by}, not on accuracy (--rank-by accuracy ranks by "
            "it)"]


def halving_notes(result: CompareLossesResult) -> list[str]:
    doc = halving_document(result)
    if doc is None:
        return []
    lines = [f"successive halving (rate {doc['rate']}): rungs at {', '.join(str(r.epochs) for r in result.halving)} "
             f"epochs; {doc['epochs_trained']:,} epochs trained of {doc['epochs_full']:,} for every loss "
             f"({doc['share_of_full']:.0%}); the losses that trained every epoch rank first, the others by the rung "
             "they stopped at (marked (E): their figures are from epoch E)"]
    for i, rung in enumerate(result.halving[:-1], 1):
        kept = ", ".join(rung.continued) or "none (every loss diverged)"
        lines.append(f"  rung {i} ({epochs_text(rung.epochs)}): {len(rung.candidates)} loss(es) → the best "
                     f"{len(rung.continued)} continue: {kept}")
    if len(result.halving) > 1:
        first, second = result.halving[0], result.halving[1]
        check = first_rung_check(first.scores, second.scores, first.epochs, "losses", doc["rate"])
        lines += [f"  {check}"] if check else []
    return lines


# --- outputs -------------------------------------------------------------------------------------

def metric_names(cfg: CompareLossesConfig, problem: AnyProblem) -> list[str]:
    params = problem.tracked if isinstance(problem, RegressionProblem) else []
    truth = isinstance(problem, RegressionProblem) and problem.true_params is not None and not problem.user_model
    keys = measure_names(cfg.task, params, truth)
    placeholders = [LossSummary(n, [], math.nan, math.nan, math.nan, {k: None for k in keys}, 0, 0)
                    for n in cfg.losses]
    return list(metrics(None, placeholders, []))


def document(result: CompareLossesResult, outcomes: Optional[Sequence[Outcome]] = None) -> dict[str, Any]:
    losses = {}
    for s in result.summaries:
        losses[s.name] = {
            "rank_measure": {"name": result.rank_by, "median": s.median, "q1": s.q1, "q3": s.q3},
            **s.measures, "diverged": s.diverged, "errors": s.errors,
            "runs": [{"seed": r.spec.seed, "status": r.status, "epochs_run": r.epochs_run, "elapsed_s": r.elapsed_s,
                      **({"error": r.error} if r.error else {}), **({"node": r.node} if r.node else {}),
                      "diagnosis": [f.code for f in r.diagnosis], **m}
                     for r, m in zip(result.runs[s.name], result.measures[s.name])],
        }
    return {"command": COMMAND, "status": result.status, "task": result.config.task,
            "config": result.config.to_dict(), "rank_by": result.rank_by,
            "ranking": [s.name for s in result.summaries], "winner": result.winner, "tie": result.winner is None,
            "paired_wins": result.wins, "losses": losses, **entries_document(losses, ["loss"]),
            "reference": result.reference,
            "diagnosis": result.diagnosis(), "data": result.data_source,
            "device": result.device, "elapsed_s": result.elapsed_s,
            "expectations": outcomes_document(outcomes or []), "versions": result.versions,
            "halving": halving_document(result), "one_by_one": result.one_by_one}


# the report's words for the measures (the JSON keeps the keys)
MEASURE_WORDS = {"bits_per_char": "bits/char", "truth_distance": "|θ − truth|", "heldout_mse": "held-out MSE",
                 "heldout_mae": "held-out MAE", "heldout_medae": "held-out MedAE", "macro_f1": "macro-F1",
                 "minority_recall": "minority recall", "final_loss": "final loss"}


def words(measure: str) -> str:
    return MEASURE_WORDS.get(measure, measure.replace("_", " "))


def same_numbers(result: CompareLossesResult) -> list[str]:
    """A note for losses that gave identical numbers on every seed (huber and smooth-l1 are one loss at
    delta = beta = 1), so a reader does not take their two ranks for a difference."""
    notes, seen = [], set()
    for i, a in enumerate(result.summaries):
        for b in result.summaries[i + 1:]:
            if a.name in seen or b.name in seen or not a.values or list(a.values) != list(b.values):
                continue
            seen.add(b.name)
            why = ""
            if {a.name, b.name} == {"huber", "smooth-l1"} and getattr(result.config.run.loss, "delta", None) == 1.0:
                why = ": at --delta 1 Huber's loss and smooth L1 are the same function"
            notes.append(f"{a.name} and {b.name} gave identical numbers on every seed{why} (their ranks are a tie)")
    return notes


def report(result: CompareLossesResult, outcomes: Sequence[Outcome] = ()) -> list[Report]:
    cfg = result.config
    regress = cfg.task == "regression"
    if regress:
        params = [k for k in (result.summaries[0].measures if result.summaries else {})
                  if not k.endswith("_error") and k not in ("truth_distance", "final_loss", *HELDOUT)][:3]
        # the ranking measure first; on clean held-out data (synthetic) MSE is a fair second, on a user's rows
        # the MSE that favours the mse loss is shown beside the neutral MedAE
        shown = (result.rank_by, "heldout_mse") if result.rank_by != "heldout_mse" else (result.rank_by,
                                                                                           "heldout_medae")
        cols = params + [c for c in dict.fromkeys(shown) if any(c in s.measures for s in result.summaries)]
    else:
        cols = measure_names(cfg.task, [], False)
    headers = ["#", "loss", *[words(c) for c in cols], "diverged"]
    rows = []
    for i, s in enumerate(result.summaries, start=1):
        rows.append([str(i), s.name + stopped_mark(result, s.name), *[fmt(s.measures.get(c), ".4g") for c in cols],
                     f"{s.diverged}/{len(s.values)}" + (f" +{s.errors} errors" if s.errors else "")])
    pick = {c: (max if c in HIGHER_IS_BETTER else min) for c in cols}
    best = best_cells(result.summaries, [(2 + j, (lambda s, c=c: s.measures.get(c)), pick[c])
                                         for j, c in enumerate(cols)])
    title = (f"losslab compare-losses: {result.status} — {cfg.task}, {cfg.run.optim.name} lr {cfg.run.optim.lr:g}, "
             f"{counted(cfg.seeds, 'seed')} × {cfg.run.train.epochs} epochs, ranked by median {words(result.rank_by)} "
             f"({result.elapsed_s:.1f} s)")
    notes = [f"data: {result.data_source}" + (f"; validation: {result.split}" if result.split else "")]
    ref = result.reference
    if regress and ref:
        if ref.get("truth"):
            notes.append("truth: " + ", ".join(f"{k}={v:g}" for k, v in ref["truth"].items()))
        planted = "planted outliers included" if ref.get("outliers") else "as the data is"
        notes.append(f"least squares of the training data ({planted}): "
                     + ", ".join(f"{k}={v:.4g}" for k, v in ref["least_squares"].items()))
        if ref.get("heldout_rows") is None:
            notes.append("held out: a fresh draw of the synthetic data (data seed + 1), clean: the fit never saw it")
        else:
            notes.append(f"held out: {len(ref['heldout_rows'])} of your rows chosen by --data-seed "
                         f"{getattr(cfg.run.data, 'data_seed', '')} (their numbers are in the JSON's "
                         "reference.heldout_rows), as "
                         "they are: any outliers your data has are in them too")
        if result.rank_by == "heldout_medae":
            notes.append("ranked by the held-out median absolute error (MedAE): none of mse, l1, huber, smooth-l1 "
                         "minimises it and a minority of outlier rows cannot dominate it; held-out MSE favours mse "
                         "and held-out MAE favours l1 by construction (both in the JSON)")
    notes += verdict(result, cfg.seeds, f"better {words(result.rank_by)}", f"the best median {words(result.rank_by)}")
    notes += same_numbers(result)
    notes += accuracy_flag(result)
    notes += halving_notes(result)
    for name, runs in result.runs.items():
        notes += [f"{name} seed {r.spec.seed}: {r.error}" for r in runs if r.status == "error"]
    stacked = [name for name, runs in result.runs.items() if any(r.stacked_with > 1 for r in runs)]
    if stacked:
        notes.append(f"stacked in one batched computation: {', '.join(stacked)}")
    notes += one_by_one_notes(result.one_by_one)
    notes += pooled_notes(result.diagnosis())
    notes += [o.describe() for o in outcomes]
    return [Report(title, headers, rows, notes, best)]


def plots(result: CompareLossesResult, problem: AnyProblem, outlier_rows: Any) -> list[Plot]:
    cfg = result.config
    key = loss_key(cfg.task)

    def fits(path: Any) -> None:
        from losslab.outputs.plots import regression_fits

        lines = {s.name: (s.measures.get("w"), s.measures.get("b")) for s in result.summaries}
        regression_fits(problem.data.x[:, 0], problem.data.y[:, 0], outlier_rows, lines, result.reference.get("truth"),
                        path, title=f"compare-losses: median fit over {counted(cfg.seeds, 'seed')}")

    def curves(path: Any) -> None:
        from losslab.outputs.plots import median_curves

        data = {s.name: [[rec[key] for rec in r.records if key in rec] for r in result.runs[s.name]]
                for s in result.summaries}
        median_curves(data, path, title=f"compare-losses: each loss's own {key.replace('_', ' ')} (not comparable "
                      "across losses)", ylabel=key.replace("_", " "))

    one_feature = isinstance(problem, RegressionProblem) and problem.data.features == 1
    return list(zip(PLOTS, [fits, curves])) if one_feature else [(PLOTS[1], curves)]


def terminal_curves(result: CompareLossesResult) -> str:
    """One median training-loss curve per loss, each divided by its first epoch's value: the losses have units of
    their own (mse's 35 would flatten l1's 2 into a line), their progress is comparable."""
    from losslab.outputs.terminal_plot import curves, median_by_epoch

    series = []
    for s in result.summaries:
        epochs, losses = median_by_epoch([r.records for r in result.runs[s.name]], "train_loss")
        first = next((v for v in losses if v > 0), None)
        if first is not None:
            series.append((s.name, epochs, [v / first for v in losses]))
    return curves(series, title="median training loss over seeds ÷ its first epoch's", xlabel="epoch")


def experiment(cfg: CompareLossesConfig, *, json_out: bool = False, quiet: bool = False) -> tuple[Output, Where]:
    """The command's checks, training and results, up to its outputs (what the CLI and the Python API share)."""
    cfg = cfg.resolved()
    check_outputs(cfg, PLOTS, sharpness=False)
    problem, heldout, rows, held = prepare(cfg)
    check_losses(cfg, problem)
    check_names(cfg.gates.expect, metric_names(cfg, problem), DIAGNOSIS_CHOICES)
    console = make_console(stderr=json_out)
    display = TrialsDisplay(console, quiet=quiet, loss_key=loss_key(cfg.task), label="loss")
    display.plan(list(cfg.losses), cfg.seeds)
    events = dispatcher(context(COMMAND, cfg, json_out, quiet), [display])
    with display:
        result = compare(cfg, problem, heldout, rows, events, held)
    outcomes = check_gates(cfg.gates, result.status, result.metrics())
    runs = [r for rs in result.runs.values() for r in rs]
    return (Output(document(result, outcomes), report(result, outcomes), run_records(runs, "loss"), outcomes,
                         result.status, plots(result, problem, rows), lambda: terminal_curves(result), result=result),
                   Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def main(cfg: CompareLossesConfig, *, json_out: bool, quiet: bool) -> int:
    return finish(*experiment(cfg, json_out=json_out, quiet=quiet))
