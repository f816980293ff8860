"""Where the units of a many-run command train: in this process (`local`), or on a pool of worker processes
(`process`, `--jobs N`). A unit is what `trials.plan` makes of the specs — one stacked group, or one trial — so
every executor trains exactly the same computations and gives the same numbers.

Each worker receives the prepared problem once (pickled at start-up), pins its share of the cores
(`torch.set_num_threads`, set by the worker itself), and returns the units' RunResults; the parent replays each
finished unit's events (run begin, every epoch record, run end) to the command's consumers as units finish, in
any order. A trial that raises is a failed trial; a worker process that dies (killed, out of memory) breaks
the pool: the pool is rebuilt and the unfinished units are submitted again. Only the unit the dead worker was
running is charged an attempt (workers say which unit they start; the pool stops the innocent workers with
SIGTERM, so the one that died otherwise is the culprit); after `--retries` attempts it is reported failed. Ctrl-C
cancels what has not started and reports what finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
import sys
from typing import Any, Optional, Sequence

from losslab import interrupt
from losslab.engine.events import Consumer
from losslab.engine.runs import RunResult, RunSpec, run_info

_problem: Any = None  # the worker's copy of the problem
_started: Any = None  # where a worker says which unit it starts: (pid, unit)


def _init(payload: bytes, threads: int, started: Any) -> None:
    import signal

    import torch

    global _problem, _started
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what stops (and stops the workers)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the parent's stdout may carry a --json document alone: whatever a user's code prints here goes to stderr
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    torch.set_num_threads(threads)
    _problem = pickle.loads(payload)
    _started = started


def _run_unit(unit: int, indices: list[int], specs: list[RunSpec], command: str, total: int,
              threads: int) -> list[RunResult]:
    """One unit in a worker: a stacked group or one trial, without events (the parent replays them)."""
    import torch

    from losslab.engine.units import run_unit

    _started.put((os.getpid(), unit))  # a SimpleQueue writes before it returns: said even if the unit kills us
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


def prepare(problem: Any, specs: Sequence[RunSpec]) -> None:
    """Build every loss the specs name in this process before the problem is shipped: workers then need no
    import of a user's loss module (on a cluster it may not exist), and each loss is checked once. A loss that
    fails to build fails its trials in the workers, as it would locally."""
    for spec in specs:
        try:
            problem.loss_for(spec.loss)
        except Exception:
            pass


def finished(problem: Any, results: list[Optional[RunResult]], unit: Sequence[int], unit_results: Sequence[RunResult],
             events: Consumer, command: str) -> None:
    """A unit's results in their places, and its events to the command's consumers."""
    for i, r in zip(unit, unit_results):
        results[i] = r
    replay_events(problem, unit_results, unit, events, command, len(results))


POLL_SECONDS = 0.2  # how often a waiting parent looks for Ctrl-C
STOP_SECONDS = 5.0  # how long stopped workers get to exit before they are killed


def stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Ctrl-C: drop the units not started and end the running ones now (their trials are reported as not run);
    waiting for a long trial to finish would make Ctrl-C look ignored."""
    import time

    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)  # (forgets the processes)
    for process in processes:
        if process.is_alive():
            process.terminate()
    # none may outlive the command: wait a bounded time for each (a loaded machine is slow to deliver SIGTERM
    # and to reap), then kill what is left
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)


def drain(started: Any, running: dict[int, int]) -> None:
    """Read what the workers said they started: pid -> the unit that worker started last."""
    while not started.empty():
        pid, u = started.get()
        running[pid] = u


def culprits(broken: Sequence[int], running: dict[int, int], exitcodes: dict[int, Optional[int]]) -> set[int]:
    """The units of a broken pool that are charged an attempt: the ones whose worker died by itself. The pool
    stops the surviving workers with SIGTERM, so a worker that ended otherwise (an exit code, SIGKILL from the
    out-of-memory killer) is the one that broke it. When that cannot be told (the culprit was sent SIGTERM too,
    or it died before it said which unit it runs), every unit that was running is charged — or every broken
    unit, so that a pool that keeps breaking ends."""
    import signal

    in_flight = {pid: u for pid, u in running.items() if u in broken}
    dead = {u for pid, u in in_flight.items() if exitcodes.get(pid) not in (None, 0, -signal.SIGTERM)}
    return dead or set(in_flight.values()) or set(broken)


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
    prepare(problem, specs)
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
        started = context.SimpleQueue()
        running: dict[int, int] = {}  # pid -> the unit that worker started last
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init,
                                    initargs=(payload, threads, started)) as pool:
            processes = pool._processes  # (the pool's own dict: it keeps the dead and the stopped)
            futures = {pool.submit(_run_unit, u, units[u], specs, command, total, threads): u for u in pending}
            waiting = set(futures)
            try:
                while waiting:  # short waits, so that Ctrl-C is seen while long trials run
                    done, waiting = cf.wait(waiting, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
                    for future in done:
                        u = futures[future]
                        try:
                            unit_results = future.result()
                        except cf.process.BrokenProcessPool:
                            broken.append(u)
                            continue
                        finished(problem, results, units[u], unit_results, events, command)
                    drain(started, running)  # (a full pipe would block the workers' next start)
                    interrupt.check()
            except KeyboardInterrupt:
                interrupted = True
                stop_workers(pool)
        if not interrupted:
            drain(started, running)
        started.close()
        pending = []
        charged = culprits(broken, running, {pid: p.exitcode for pid, p in (processes or {}).items()})
        for u in broken:
            attempts[u] += u in charged
            if attempts[u] <= retries:
                pending.append(u)
            else:
                for i in units[u]:
                    results[i] = RunResult(specs[i], "error", error=f"the worker process running it died (killed or "
                                           f"out of memory), {attempts[u] - 1} retr{'y' if retries == 1 else 'ies'} "
                                           "included")
    out = [r if r is not None else RunResult(specs[i], "not run") for i, r in enumerate(results)]
    return out, interrupted


# --- Ray -----------------------------------------------------------------------------------------

_cached: dict[str, Any] = {}  # a Ray worker's problems, by payload digest (workers are reused across tasks)


def _ray_unit(payload: bytes, digest: str, indices: list[int], specs: list[RunSpec], command: str, total: int,
              threads: int) -> list[RunResult]:
    """One unit as a Ray task: the problem unpickled once per worker process, the thread count set per task."""
    import torch

    from losslab.engine.units import run_unit

    torch.set_num_threads(threads)  # Ray reuses worker processes; torch keeps the count it first used
    if digest not in _cached:
        _cached.clear()
        _cached[digest] = pickle.loads(payload)  # cloudpickle's output loads with pickle
    return run_unit(_cached[digest], indices, specs, Consumer(), command=command, total=total)


def ray_payload(problem: Any, specs: Sequence[RunSpec]) -> bytes:
    """The problem for Ray workers, with cloudpickle: a user's loss from a module that is not installed (a file in
    the current folder, `--loss mylosses:huber`) travels by value, so it works on every node of a cluster."""
    import sys

    from ray import cloudpickle

    names = {problem.loss_cfg.name, *(s.loss.name for s in specs if s.loss is not None)}
    for name in names:
        module = sys.modules.get(name.split(":")[0]) if ":" in name else None
        where = getattr(module, "__file__", "") or ""
        if module is not None and "site-packages" not in where and "dist-packages" not in where:
            cloudpickle.register_pickle_by_value(module)
    return cloudpickle.dumps(problem)


def connect(address: Optional[str]) -> bool:
    """Join the cluster at `address` ("auto": the one `ray start` made; host:port), or start a local runtime
    (no dashboard; token auth off unless RAY_AUTH_MODE says otherwise, so nothing is written to the home
    folder). Returns whether this call started the runtime (and so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    from losslab.errors import ConfigError

    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=cores(), **kwargs)
    else:
        reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError("--ray-address", f"cannot join a Ray cluster at {address}: {exc}") from None
    interrupt.reinstall()  # ray.init installs its own SIGTERM handler: ours stops the sweep cleanly
    return True


def reachable(address: str, timeout: float = 5.0) -> None:
    """A host:port address answers a TCP connection within `timeout` seconds (ray.init would wait much longer
    for a closed port)."""
    import socket

    from losslab.errors import ConfigError

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("--ray-address", f"expected host:port or auto (got {address!r})")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError("--ray-address", f"nothing answers at {address} within {timeout:g} s: "
                          f"{exc.strerror or exc}") from None


def check_resources(cpus_per_trial: float) -> None:
    """A trial asking for more CPUs than the whole cluster has would wait for ever: refuse it."""
    import ray

    from losslab.errors import ConfigError

    total = ray.cluster_resources().get("CPU", 0)
    if cpus_per_trial > total:
        raise ConfigError("--cpus-per-trial", f"asks for {cpus_per_trial:g} CPUs per trial; the cluster has "
                          f"{total:g}")


def run_ray(problem: Any, specs: Sequence[RunSpec], units: Sequence[list[int]], events: Consumer, *,
            command: str, address: Optional[str], cpus_per_trial: float, retries: int) -> tuple[list[RunResult], bool]:
    """Each unit a Ray task asking for `cpus_per_trial` CPUs (and a GPU when the run is on CUDA); results
    collected with ray.wait as they finish, in any order."""
    import hashlib

    import ray

    started = connect(address)
    try:
        check_resources(cpus_per_trial)
        prepare(problem, specs)
        payload = ray_payload(problem, specs)
        digest = hashlib.sha256(payload).hexdigest()
        payload_ref = ray.put(payload)
        gpus = 1 if str(getattr(problem, "device", "cpu")).startswith("cuda") else 0
        task = ray.remote(_ray_unit).options(num_cpus=cpus_per_trial, num_gpus=gpus, max_retries=retries,
                                             retry_exceptions=False)
        threads = max(1, int(cpus_per_trial))
        total = len(specs)
        specs = list(specs)
        refs = {task.remote(payload_ref, digest, units[u], specs, command, total, threads): u
                for u in range(len(units))}
        results: list[Optional[RunResult]] = [None] * total
        interrupted = False
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                if not done:  # short waits, so that Ctrl-C is seen while long trials run
                    interrupt.check()
                    continue
                u = refs[done[0]]
                try:
                    unit_results = ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    reason = ("the worker process running it died (killed or out of memory), "
                              f"{retries} retr{'y' if retries == 1 else 'ies'} included"
                              if isinstance(exc, (ray.exceptions.WorkerCrashedError,
                                                  ray.exceptions.NodeDiedError)) else
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}")
                    unit_results = [RunResult(specs[i], "error", error=reason) for i in units[u]]
                finished(problem, results, units[u], unit_results, events, command)
                interrupt.check()
        except KeyboardInterrupt:
            interrupted = True
            for ref in pending:
                ray.cancel(ref, force=True)
        out = [r if r is not None else RunResult(specs[i], "not run") for i, r in enumerate(results)]
        return out, interrupted
    finally:
        if started:
            ray.shutdown()
