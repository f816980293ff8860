"""Many runs of one prepared problem: the specs are split between the engines that can run them — stacked into
one batched computation where `stacked.unsupported` allows, one after another through `runs.execute` otherwise.

Fairness by construction: every run of a seed starts from the same initial weights (one model built per seed,
deep-copied for each run) and sees the same batch order (a generator seeded by the seed). One run diverging
or raising does not stop the others; Ctrl-C stops the whole command and marks what did not run.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

from losslab.engine import interrupt
from losslab.engine.events import Consumer
from losslab.engine.problems import Problem
from losslab.engine.runs import RunResult, RunSpec, execute, run_info

_NO_EVENTS = Consumer()


def run_trials(problem: Problem, specs: Sequence[RunSpec], events: Consumer = _NO_EVENTS, *, command: str = "trials",
               vectorize: bool = True) -> tuple[list[RunResult], bool]:
    """Run `specs` in this process; returns the results in spec order and whether Ctrl-C stopped the run."""
    from losslab.engine import stacked

    stackable = [i for i, s in enumerate(specs) if stacked.can_stack(s)] if vectorize and len(specs) > 1 else []
    if len(stackable) < 2 or stacked.unsupported(problem, [specs[i] for i in stackable]) is not None:
        return run_sequential(problem, specs, events, command=command)
    rest = [i for i in range(len(specs)) if i not in set(stackable)]
    results: list[Optional[RunResult]] = [None] * len(specs)
    batch, interrupted = stacked.run_stacked(problem, [specs[i] for i in stackable], events, command=command,
                                             total=len(specs))
    for i, r in zip(stackable, batch):
        results[i] = r
    if rest:
        if interrupted:
            others = [RunResult(specs[i], "not run") for i in rest]
        else:
            others, interrupted = run_sequential(problem, [specs[i] for i in rest], events, command=command,
                                                 offset=len(stackable), total=len(specs))
        for i, r in zip(rest, others):
            results[i] = r
    return [r for r in results if r is not None], interrupted


def run_sequential(problem: Problem, specs: Sequence[RunSpec], events: Consumer = _NO_EVENTS, *,
                   command: str = "trials", offset: int = 0, total: Optional[int] = None) -> tuple[list[RunResult], bool]:
    """One run after another in this process (no process start-up, model rebuild or import cost each)."""
    total = total or len(specs)
    templates: dict[int, Any] = {}
    results: list[RunResult] = []
    interrupted = False
    for index, spec in enumerate(specs):
        interrupted = interrupted or interrupt.requested()
        if interrupted:
            results.append(RunResult(spec, "not run"))
            continue
        try:
            if spec.seed not in templates:
                templates[spec.seed] = problem.new_model(spec.seed)
            model = copy.deepcopy(templates[spec.seed])  # same initial weights for every run of this seed
            info = run_info(problem, spec, command, index=offset + index, total=total)
        except KeyboardInterrupt:
            results.append(RunResult(spec, "interrupted"))
            interrupted = True
            continue
        result = execute(problem, spec, events, info=info, model=model)
        interrupted = result.status == "interrupted"
        results.append(result)
    return results, interrupted
