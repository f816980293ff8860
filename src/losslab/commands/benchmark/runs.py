"""A benchmark's runs: each problem of the suite prepared as a `compare-optimizers` config and problem (built and
checked before anything trains), then trained study by study under the ruleset, every run stopping at the
problem's target or its budget; each run's arrival at the target read from its records.

A study is what the median is taken over. `defaults`: one study per seed, its one trial each optimizer at its own
default hyper-parameters. `external` (AlgoPerf's external tuning): per study the same T quasi-random points for
every optimizer (`search_spaces`), each mapped into that optimizer's search space; a trial is one run of every
optimizer at its point on the study's seed; the study's figure for an optimizer is its fastest trial."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from losslab.config.suite import SuiteProblem
from losslab.engine.events import Consumer, RunInfo
from losslab.errors import ConfigError

Build = Callable[[str, dict[str, Any]], Any]  # a command's config from option values (the CLI's builder)
FLAGS = {"regress": "regress", "classify": "classify", "lm": "lm"}  # a problem's command → compare's --task
SHARED = ("executor", "jobs", "retries", "ray_address", "cpus_per_trial", "no_vectorize", "threads", "device")


@dataclass
class Prepared:
    """One problem ready to train: its compare-optimizers config, the problem and its target as a number."""

    spec: SuiteProblem
    config: Any  # (its optimizers: those whose step works on this problem)
    problem: Any
    target: float
    failed: dict[str, str]  # an optimizer whose step fails on this problem's real batch: why

    @property
    def stop_at(self) -> tuple[str, str, float]:
        return self.spec.target.metric, self.spec.target.bound, self.target


def resolved_target(sp: SuiteProblem, problem: Any) -> float:
    """The problem's target as a number: its own, or a reference the prepared problem computes."""
    t = sp.target
    if t.reference == "optimum":
        return t.factor * float(problem.optimum["loss"])
    if t.reference == "trigram":
        return t.factor * float(problem.baselines["trigram"])
    assert t.value is not None
    return t.value


def prepare(sp: SuiteProblem, optims: tuple[str, ...], shared: dict[str, Any], build: Build,
            where: str) -> Prepared:
    """The problem built (data read, a user's model, loss and data checked on a real batch) before any training;
    what fails is one line naming the problem and the option."""
    from losslab.engine.problems import build_problem

    options = {**sp.option_dict(), **shared, "task": FLAGS[sp.command], "optims": list(optims), "epochs": sp.budget}
    try:
        config = build("compare-optimizers", options).resolved()
        problem = build_problem(config.run)
        target = resolved_target(sp, problem)
    except ConfigError as exc:
        raise ConfigError(exc.option or "--suite", f"problem {sp.name!r} of {where}: {exc.message}") from None
    # every run stops at the target (or at its budget): what comes after it is not measured
    problem.train_cfg = replace(problem.train_cfg, stop_at=(sp.target.metric, sp.target.bound, target))
    failed = unfit(config, problem)
    return Prepared(sp, replace(config, optims=tuple(o for o in optims if o not in failed)), problem, target, failed)


def unfit(config: Any, problem: Any) -> dict[str, str]:
    """The optimizers whose one probing step on a real batch of this problem fails, and why: they are reported
    as failed on this problem, and the suite goes on."""
    from losslab.engine.runs import check_optimizer

    out = {}
    for name in config.optims:
        try:
            check_optimizer(problem, config.optim_for(name, config.lr_of(name)[0]))
        except ConfigError as exc:
            out[name] = exc.message
    return out


def accepts(name: str) -> list[str]:
    """The shared hyper-parameters an optimizer's constructor takes: `betas` (a pair) and `weight_decay`."""
    from losslab.components.optimizers import kind

    signature = kind(name, "--optims").signature()
    params = signature.parameters if signature is not None else {}
    out = []
    betas = params.get("betas")
    if betas is not None and isinstance(betas.default, tuple) and len(betas.default) == 2:
        out.append("betas")
    if "weight_decay" in params:
        out.append("weight_decay")
    return out


def spaces(prep: Prepared) -> dict[str, list[dict[str, Any]]]:
    """Each optimizer's search space on this problem (the external ruleset's): its dimensions as plain numbers."""
    from dataclasses import asdict

    from losslab.search_spaces import space

    return {o: [asdict(d) for d in space(prep.config.lr_of(o)[0], accepts(o))] for o in prep.config.optims}


def trial_configs(prep: Prepared, ruleset: str, study: int, trials: int, method: str,
                  seeds: int) -> list[tuple[Any, dict[str, dict[str, Any]]]]:
    """The compare-optimizers configs that train one study, each with every optimizer's hyper-parameters in it.
    defaults: one config over `seeds` seeds (the studies); external: one per trial, on the study's seed."""
    from losslab.search_spaces import trials as draw
    from losslab.search_spaces import unit_points

    base = prep.config
    optims = base.optims
    if ruleset == "defaults":
        return [(replace(base, seeds=seeds), {o: {"lr": base.lr_of(o)[0]} for o in optims})]
    seeded = replace(base, seeds=1, run=replace(base.run, train=replace(base.run.train,
                                                                        seed=base.run.train.seed + study)))
    points = unit_points(trials, study, method)
    drawn = {o: draw(base.lr_of(o)[0], accepts(o), trials, study, points=points) for o in optims}
    given = dict(base.optim_args)
    out = []
    for t in range(trials):
        values = {o: drawn[o][t] for o in optims}
        args = tuple((o, tuple((k, v) for k, v in given.get(o, ()) if k not in values[o])
                      + tuple((k, v) for k, v in values[o].items() if k != "lr")) for o in optims)
        out.append((replace(seeded, lr_for=tuple((o, values[o]["lr"]) for o in optims), optim_args=args), values))
    return out


def run_document(r: Any, prep: Prepared, study: int, trial: int, values: dict[str, Any]) -> dict[str, Any]:
    """One run: its study, trial, seed and hyper-parameters, its arrival at the target, its last metric."""
    from losslab.engine.skeleton import Plan
    from losslab.profiles import arrival

    metric, bound, target = prep.stop_at
    per_step = (r.grad_evals / r.optimizer_steps) if r.optimizer_steps else 1.0
    arrived = arrival(r.records, metric, bound, target, Plan.of(prep.problem).batches, per_step)
    last = next((rec[metric] for rec in reversed(r.records) if metric in rec), math.nan)
    where = {"node": r.node} if r.node is not None else {}  # (--executor ray: the node it trained on)
    return {"study": study, "trial": trial, "seed": r.spec.seed, **values, **arrived, "final": last,
            "status": r.status, "error": r.error, "epochs_run": r.epochs_run, **where, "records": r.records}


class Renumbered(Consumer):
    """A compare's run events passed on as runs `offset`… of the whole benchmark (`total` runs), keyed by their
    problem too: one live display and one ETA over every problem, one TensorBoard folder per problem's run."""

    def __init__(self, events: Consumer, offset: int, total: int, problem: str):
        self.events, self.offset, self.total, self.problem = events, offset, total, problem

    def _info(self, run: RunInfo) -> RunInfo:
        return replace(run, index=self.offset + run.index, total=self.total,
                       key=(("problem", self.problem), *run.key))

    def on_run_begin(self, run: RunInfo) -> None:
        self.events.on_run_begin(self._info(run))

    def on_batch_end(self, run: RunInfo, epoch: int, batch: int, batches: int, loss: float) -> None:
        self.events.on_batch_end(self._info(run), epoch, batch, batches, loss)

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> Optional[bool]:
        return self.events.on_epoch_end(self._info(run), record)

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        self.events.on_run_end(self._info(run), result)


def train_problem(prep: Prepared, cfg: Any, events: Consumer, offset: int, total: int) -> tuple[list[dict[str, Any]],
                                                                                                   str]:
    """Every run of one problem under the ruleset: (one document per run, the status: ok or interrupted)."""
    from losslab.commands.compare_optimizers import compare

    studies = 1 if cfg.ruleset == "defaults" else cfg.studies
    runs: list[dict[str, Any]] = []
    for name, why in prep.failed.items():  # (one failed run per study and trial: a miss with its reason)
        for study in range(cfg.seeds if cfg.ruleset == "defaults" else cfg.studies):
            runs += [{"optimizer": name, "study": study, "trial": t, "seed": None, "epochs": math.inf,
                      **{m: math.inf for m in ("steps", "grad_evals", "seconds")}, "final": math.nan,
                      "status": "error", "error": why, "epochs_run": 0, "records": []}
                     for t in range(1 if cfg.ruleset == "defaults" else cfg.trials)]
    offset += len(runs)
    if not prep.config.optims:
        return runs, "ok"
    from losslab.engine.executors import keep_pools

    with keep_pools():  # (--executor process: one pool of workers for every trial of this problem)
        for study in range(studies):
            for trial, (config, values) in enumerate(trial_configs(prep, cfg.ruleset, study, cfg.trials,
                                                                    cfg.method, cfg.seeds)):
                result = compare(config, prep.problem, Renumbered(events, offset, total, prep.spec.name))
                offset += sum(len(rs) for rs in result.runs.values())
                for name, rs in result.runs.items():
                    for i, r in enumerate(rs):
                        s = i if cfg.ruleset == "defaults" else study  # defaults: a seed is a study
                        runs.append({"optimizer": name, **run_document(r, prep, s, trial, values[name])})
                if result.status == "interrupted":
                    return runs, "interrupted"
    return runs, "ok"


def runs_per_problem(cfg: Any) -> int:
    """How many runs one problem trains: optimizers × seeds (defaults) or × studies × trials (external)."""
    return len(cfg.optims) * (cfg.seeds if cfg.ruleset == "defaults" else cfg.studies * cfg.trials)
