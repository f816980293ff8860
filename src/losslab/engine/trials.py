"""Many runs of one prepared problem. `plan` splits the specs into units — one stacked group (where
`stacked.unsupported` allows) and single trials — and an executor runs the units: here, one after another
(`local`), or on worker processes (`engine.executors`). Every executor trains the same units, so the numbers do
not depend on where they ran.

Fairness by construction: every run of a seed starts from the same initial weights (the model is built from
the seed for each run, which also seeds the global RNG that dropout draws from, so a run's numbers do not
depend on which runs came before it) and sees the same batch order (a generator seeded by the seed). One run
diverging or raising does not stop the others; Ctrl-C stops the whole command and marks what did not run.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

from losslab import interrupt
from losslab.config.many import ManyRuns
from losslab.engine.events import Consumer, current_command
from losslab.engine.problems import Problem
from losslab.engine.runs import RunResult, RunSpec, check_optimizer
from losslab.engine.units import plan, run_unit

_NO_EVENTS = Consumer()
Alive = TypeVar("Alive")  # what a sweep's rungs narrow down: rates, losses, each optimizer's rates


def run_trials(problem: Problem, specs: Sequence[RunSpec], events: Consumer = _NO_EVENTS, *, vectorize: bool = True,
               executor: Any = None) -> tuple[list[RunResult], bool]:
    """Run `specs`; returns the results in spec order and whether Ctrl-C stopped the run. `executor`
    (config.ExecutorConfig) says where: None or `local` in this process. The runs carry the running command's
    name (workers get it from here)."""
    command = current_command()
    for spec in specs:  # a class losslab does not register takes one step on a real batch before anything trains
        check_optimizer(problem.for_run(spec), spec.optim)
    units = plan(problem, specs, vectorize)
    if executor is not None and executor.name == "process":
        from losslab.engine.executors import run_process

        return run_process(problem, specs, units, events, command=command, jobs=executor.jobs,
                           retries=executor.retries)
    if executor is not None and executor.name == "ray":
        from losslab.engine.executors import run_ray

        return run_ray(problem, specs, units, events, command=command, address=executor.ray_address,
                       cpus_per_trial=executor.cpus_per_trial, retries=executor.retries)
    results: list[Optional[RunResult]] = [None] * len(specs)
    interrupted = False
    for unit in units:
        interrupted = interrupted or interrupt.requested()
        if interrupted:
            for i in unit:
                results[i] = RunResult(specs[i], "not run")
            continue
        try:
            unit_results = run_unit(problem, unit, specs, events, command=command, total=len(specs))
        except KeyboardInterrupt:
            unit_results = [RunResult(specs[i], "interrupted") for i in unit]
        for i, r in zip(unit, unit_results):
            results[i] = r
        interrupted = interrupted or any(r.status == "interrupted" for r in unit_results) or interrupt.requested()
    return [r if r is not None else RunResult(specs[i], "not run") for i, r in enumerate(results)], interrupted


def go_on(specs: Sequence[RunSpec], done: Sequence[RunResult]) -> list[RunSpec]:
    """`specs` for the next rung of successive halving: each run the last rung paused (`done`) goes on from its
    state; the others (stacked runs keep no state) train from their start again. The paused states are let go."""
    paused = {(r.spec.key(), r.spec.group): r.paused for r in done}
    for r in done:
        r.paused = None
    return [s.resumed(paused.get((s.key(), s.group))) for s in specs]


def epochs_asked(specs: Sequence[RunSpec], last: int) -> int:
    """The epochs `specs` train up to epoch `last` (a run going on from a paused state: only its new ones)."""
    return sum(last - (s.resume.epoch if s.resume is not None else 0) for s in specs)


@contextmanager
def budget(problem: Problem, epochs: int) -> Iterator[Problem]:
    """The problem's runs stop after epoch `epochs` inside the block (a rung of successive halving): a run stopped
    there is the whole run's beginning — the same initial weights, batch order and schedule (which still spans
    every epoch of --epochs); one that continues from its `RunResult.paused` state goes on as if never stopped."""
    old = problem.until
    problem.until = epochs if epochs < (problem.train_cfg.epochs or 0) else None
    try:
        yield problem
    finally:
        problem.until = old


def by_rungs(problem: Problem, rungs: Sequence[int], alive: Alive, specs_for: Callable[[Alive], list[RunSpec]],
             after: Callable[[int, int, Alive, list[RunSpec], list[RunResult]], Alive], events: Consumer,
             how: ManyRuns) -> tuple[list[RunResult], bool]:
    """Successive halving's one loop (a single rung for a plain sweep): rung k trains `specs_for(alive)` up to
    epoch `rungs[k]`, runs the last rung paused going on from where they stopped; `after(k, epochs, alive,
    specs, done)` ranks what the rung gave and returns who goes on. Ends after the last rung, when nothing goes on, or
    on Ctrl-C. `how` is the sweep's config (stacking, executor). Returns every rung's results and
    whether Ctrl-C stopped it."""
    results: list[RunResult] = []
    done: list[RunResult] = []
    interrupted = False
    for k, epochs in enumerate(rungs):
        specs = go_on(specs_for(alive), done)
        with budget(problem, epochs):
            done, interrupted = run_trials(problem, specs, events, vectorize=how.vectorize, executor=how.executor)
        results += done
        alive = after(k, epochs, alive, specs, done)
        if interrupted or not alive:
            break
    return results, interrupted
