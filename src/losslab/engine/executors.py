"""Where the units of a many-run command train: in this process (`local`), or on a pool of worker processes
(`process`, `--jobs N`). A unit is what `trials.plan` makes of the specs — one stacked group, or one trial — so
every executor trains exactly the same computations and gives the same numbers.

Each worker receives the prepared problem once (pickled at start-up), pins its share of the cores
(`torch.set_num_threads`, set by the worker itself), and returns the units' RunResults; the parent replays each
finished unit's events (run begin, every epoch record, run end) to the command's consumers as units finish, in
any order. A trial that raises is a failed trial; a worker process that dies (killed, out of memory) breaks
the pool: the pool is rebuilt and the unfinished units are submitted again, up to `--retries` times, before
they are reported failed. Ctrl-C cancels what has not started and reports what finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
from typing import Any, Optional, Sequence

from losslab.engine import interrupt
from losslab.engine.events import Consumer
from losslab.engine.runs import RunResult, RunSpec, run_info

_problem: Any = None  # the worker's copy of the problem


def _init(payload: bytes, threads: int) -> None:
    import torch

    global _problem
    torch.set_num_threads(threads)
    _problem = pickle.loads(payload)


def _run_unit(indices: list[int], specs: list[RunSpec], command: str, total: int, threads: int) -> list[RunResult]:
    """One unit in a worker: a stacked group or one trial, without events (the parent replays them)."""
    import torch

    from losslab.engine.units import run_unit

    torch.set_num_threads(threads)  # workers are reused; torch keeps the count it first used otherwise
    return run_unit(_problem, indices, specs, Consumer(), command=command, total=total)


def replay_events(problem: Any, results: Sequence[RunResult], indices: Sequence[int], events: Consumer,
                  command: str, total: int) -> None:
    """The events a unit would have emitted in this process, for the consumers of the command."""
    for i, result in zip(indices, results):
        info = run_info(problem, result.spec, command, index=i, total=total, stacked_with=result.stacked_with)
        events.on_run_begin(info)
        for record in result.records:
            events.on_epoch_end(info, record)
        events.on_run_end(info, result)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_process(problem: Any, specs: Sequence[RunSpec], units: Sequence[list[int]], events: Consumer, *,
                command: str, jobs: Optional[int], retries: int) -> tuple[list[RunResult], bool]:
    """Units on `jobs` worker processes (default: the number of cores), each pinned to cores // jobs threads."""
    if getattr(getattr(problem, "source", None), "streamed", False):
        from losslab.errors import ConfigError

        raise ConfigError("--executor", "streamed data (an image folder over --memory-budget) runs with --executor "
                          "local; its DataLoader workers already use the cores")
    jobs = max(1, min(jobs or cores(), len(units)))
    threads = max(1, cores() // jobs)
    payload = pickle.dumps(problem)
    total = len(specs)
    specs = list(specs)
    results: list[Optional[RunResult]] = [None] * total
    attempts = {u: 0 for u in range(len(units))}
    pending = list(range(len(units)))
    interrupted = False
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    while pending and not interrupted:
        broken: list[int] = []
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init,
                                    initargs=(payload, threads)) as pool:
            futures = {pool.submit(_run_unit, units[u], specs, command, total, threads): u for u in pending}
            try:
                for future in cf.as_completed(futures):
                    u = futures[future]
                    try:
                        unit_results = future.result()
                    except cf.process.BrokenProcessPool:
                        broken.append(u)
                        continue
                    for i, r in zip(units[u], unit_results):
                        results[i] = r
                    replay_events(problem, unit_results, units[u], events, command, total)
                    interrupt.check()
            except KeyboardInterrupt:
                interrupted = True
                for f in futures:
                    f.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
        pending = []
        for u in broken:
            attempts[u] += 1
            if attempts[u] <= retries:
                pending.append(u)
            else:
                for i in units[u]:
                    results[i] = RunResult(specs[i], "error", error=f"the worker process running it died (killed or "
                                           f"out of memory), {attempts[u] - 1} retr{'y' if retries == 1 else 'ies'} "
                                           "included")
    out = [r if r is not None else RunResult(specs[i], "not run") for i, r in enumerate(results)]
    return out, interrupted
