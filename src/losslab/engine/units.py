"""The units trials train in: `plan` splits a command's specs into one stacked group (where
`stacked.unsupported` allows) and single trials; `run_unit` trains one unit. Every executor (engine.trials for
this process, engine.executors for worker processes) runs these same units, so the numbers do not depend on
where they ran."""

from __future__ import annotations

from typing import Optional, Sequence

from losslab.engine.events import Consumer
from losslab.engine.problems import Problem
from losslab.engine.runs import RunResult, RunSpec, Start, execute, run_info

_NO_EVENTS = Consumer()


def plan(problem: Problem, specs: Sequence[RunSpec], vectorize: bool = True) -> list[list[int]]:
    """Units of spec indices: the stackable specs as one group per batch plan (runs that share their training
    settings: the same batches, schedule and epochs; when at least two can stack), then each other spec alone."""
    from losslab.engine import stacked

    stackable = [i for i, s in enumerate(specs) if stacked.can_stack(s) and s.resume is None] \
        if vectorize and len(specs) > 1 else []  # (a paused run goes on alone, from its own state)
    if vectorize and len(specs) > 1:
        why = stacked.cannot_stack([s for s in specs if s.resume is None])
        if why is not None:
            problem.base.unstacked = why
    groups: dict[tuple[tuple[str, object], ...], list[int]] = {}
    for i in stackable:
        groups.setdefault(specs[i].changes, []).append(i)
    stacks = []
    for group in groups.values():
        why = stacked.unsupported(problem.for_run(specs[group[0]]), [specs[i] for i in group]) \
            if len(group) >= 2 else "alone"
        if why is None:
            stacks.append(group)
        elif why != "alone":
            problem.base.unstacked = why
    inside = {i for group in stacks for i in group}
    return stacks + [[i] for i in range(len(specs)) if i not in inside]


def run_unit(problem: Problem, indices: Sequence[int], specs: Sequence[RunSpec], events: Consumer = _NO_EVENTS, *,
             command: str = "trials", total: Optional[int] = None) -> list[RunResult]:
    """One unit: a stacked group in one batched computation, or one trial through the run path."""
    from losslab.components.optimizers import remember
    from losslab.engine import stacked

    for k in getattr(problem.base, "optimizer_kinds", {}).values():  # (classes resolved where the command began)
        remember(k)
    total = total or len(specs)
    problem = problem.for_run(specs[indices[0]])  # (a unit's runs share their training settings)
    if len(indices) > 1:
        results, _ = stacked.run_stacked(problem, [specs[i] for i in indices], events, command=command, total=total,
                                         indices=indices)
        return results
    (i,) = indices
    spec = specs[i]
    model = problem.new_model(spec.seed)  # the seed's initial weights, and the global RNG seeded for the run
    start = spec.resume.start(model, spec) if spec.resume is not None else Start(model)
    return [execute(problem, spec, events, start=start,
                    info=run_info(problem, spec, command, index=i, total=total, first_epoch=start.first_epoch))]
