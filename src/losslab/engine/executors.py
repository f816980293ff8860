"""Where the units of a many-run command train: in this process (`local`), or on a pool of worker processes
(`process`, `--jobs N`). A unit is what `trials.plan` makes of the specs — one stacked group, or one trial — so
every executor trains exactly the same computations and gives the same numbers.

Each worker receives the prepared problem once (pickled at start-up), pins its share of the cores
(`torch.set_num_threads`, set by the worker itself), and returns the units' RunResults. The events of its runs
(run begin, batches, epoch records) travel to the parent as they happen (`Forwarder`: a pipe for worker
processes, read by a thread so workers never wait on the parent; with the results for Ray tasks), and the parent
passes them on to the command's consumers (`Relay`: each run begins once and each epoch is delivered once, also
when a unit is retried), then each run's end with its result.

A trial that raises is a failed trial; a worker process that dies (killed, out of memory) breaks the pool: the
pool is rebuilt and the unfinished units are submitted again. Only the unit the dead worker was running is
charged an attempt (workers say which unit they start; the pool stops the innocent workers with
SIGTERM, so the one that died otherwise is the culprit); after `--retries` attempts it is reported failed. Ctrl-C
cancels what has not started and reports what finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing
import os
import pickle
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

from losslab import interrupt
from losslab.engine.events import Consumer, wants_batches
from losslab.engine.runs import RunResult, RunSpec, run_info

_problem: Any = None  # the worker's copy of the problem
_channel: Any = None  # (lock, pipe end) to the parent: which unit a worker starts, and its runs' events


class Forwarder(Consumer):
    """In a worker: its runs' begin and epoch events, kept in order and handed to `send` in bundles (every
    FORWARD_SECONDS and at the unit's end), for the parent's `Relay`. Run ends travel with the results."""

    def __init__(self, send: Any, every: float = 0.0):
        import time

        self.send, self.every, self.clock = send, every, time.perf_counter
        self.pending: list[tuple[Any, ...]] = []
        self.last = self.clock()

    def _add(self, message: tuple[Any, ...]) -> None:
        self.pending.append(message)
        if self.clock() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send(("events", self.pending))
            self.pending = []
        self.last = self.clock()

    def on_run_begin(self, run: Any) -> None:
        self._add(("begin", run))

    def on_epoch_end(self, run: Any, record: dict[str, Any]) -> None:
        self._add(("epoch", run, record))


class BatchForwarder(Forwarder):
    """A Forwarder for parents whose consumers want batch events too."""

    def on_batch_end(self, run: Any, epoch: int, batch: int, batches: int, loss: float) -> None:
        self._add(("batch", run, epoch, batch, batches, loss))


def forwarder(send: Any, batches: bool, every: float = 0.0) -> Forwarder:
    return (BatchForwarder if batches else Forwarder)(send, every)


class Relay:
    """In the parent: the events workers forwarded, passed on to the command's consumers. Each run begins once
    and each of its epochs is delivered once (a retried unit trains the same epochs again with the same numbers);
    nothing of a run is delivered after its end."""

    def __init__(self, problem: Any, events: Consumer, command: str, total: int):
        self.problem, self.events, self.command, self.total = problem, events, command, total
        self.begun: set[int] = set()
        self.epochs: dict[int, int] = {}
        self.ended: set[int] = set()

    def __call__(self, messages: Sequence[tuple[Any, ...]]) -> None:
        for kind, run, *rest in messages:
            i = run.index
            if i in self.ended:
                continue
            if kind == "begin":
                self._begin(run)
            elif kind == "epoch" and rest[0]["epoch"] > self.epochs.get(i, 0):
                self._begin(run)
                self.epochs[i] = rest[0]["epoch"]
                self.events.on_epoch_end(run, rest[0])
            elif kind == "batch" and i in self.begun:
                self.events.on_batch_end(run, *rest)

    def _begin(self, run: Any) -> None:
        if run.index not in self.begun:
            self.begun.add(run.index)
            self.events.on_run_begin(run)

    def finished(self, results: list[Optional[RunResult]], unit: Sequence[int],
                 unit_results: Sequence[RunResult]) -> None:
        """A unit's results in their places; what its runs' events did not deliver yet, then each run's end."""
        for i, result in zip(unit, unit_results):
            results[i] = result
            info = run_info(self.problem, result.spec, self.command, index=i, total=self.total,
                            stacked_with=result.stacked_with)
            self._begin(info)
            for record in result.records:
                if record["epoch"] > self.epochs.get(i, 0):
                    self.epochs[i] = record["epoch"]
                    self.events.on_epoch_end(info, record)
            self.ended.add(i)
            self.events.on_run_end(info, result)


FORWARD_SECONDS = 0.1  # how often a worker process sends its runs' events


def _send(message: Any) -> None:
    lock, pipe = _channel
    with lock:  # (a bundle may be larger than the pipe writes atomically)
        pipe.send(message)


def _init(payload: bytes, threads: int, channel: Any) -> None:
    import signal

    import torch

    global _problem, _channel
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what stops (and stops the workers)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the parent's stdout may carry a --json document alone: whatever a user's code prints here goes to stderr
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    torch.set_num_threads(threads)
    _problem = pickle.loads(payload)
    _channel = channel


def _run_unit(unit: int, indices: list[int], specs: list[RunSpec], command: str, total: int,
              threads: int, batches: bool) -> list[RunResult]:
    """One unit in a worker: a stacked group or one trial, its events forwarded to the parent."""
    import torch

    from losslab.engine.units import run_unit

    _send(("start", os.getpid(), unit))  # sent before it returns: said even if the unit kills the worker
    torch.set_num_threads(threads)  # workers are reused; torch keeps the count it first used otherwise
    forward = forwarder(_send, batches, FORWARD_SECONDS)
    try:
        return run_unit(_problem, indices, specs, forward, command=command, total=total)
    finally:
        forward.flush()
        _send(("done", unit))  # after its last events: the parent waits for this before it ends the unit's runs


def prepare(problem: Any, specs: Sequence[RunSpec]) -> None:
    """Build every loss the specs name in this process before the problem is shipped: workers then need no
    import of a user's loss module (on a cluster it may not exist), and each loss is checked once. A loss that
    fails to build fails its trials in the workers, as it would locally."""
    for spec in specs:
        try:
            problem.loss_for(spec.loss)
        except Exception:
            pass
    from losslab.components.optimizers import kind, registered

    # a user's optimizer class travels with the problem (`units.run_unit` hands it to the worker's registry)
    problem.base.optimizer_kinds = {s.optim.name: kind(s.optim.name) for s in specs if not registered(s.optim.name)}


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


class Channel:
    """The workers' pipe to the parent (`ends` go to the workers): a thread reads it into an inbox as messages
    come, so a worker never waits for a parent busy with its consumers."""

    def __init__(self, context: Any):
        import queue
        import threading

        self.reader, writer = context.Pipe(duplex=False)
        self.ends = (context.Lock(), writer)
        self.inbox: Any = queue.SimpleQueue()
        self.open = True
        self.done: set[int] = set()  # the units whose workers said they are done (their events all sent)
        self.thread = threading.Thread(target=self._read, name="losslab-channel", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while self.open:
                if self.reader.poll(0.05):
                    self.inbox.put(self.reader.recv())
        except (EOFError, OSError):
            pass

    def _take(self, message: Any) -> Any:
        if message[0] == "done":
            self.done.add(message[1])
        return message

    def messages(self) -> list[Any]:
        out = []
        while not self.inbox.empty():
            out.append(self._take(self.inbox.get()))
        return out

    def until_done(self, unit: int, timeout: float = 10.0) -> list[Any]:
        """The messages up to the worker's word that `unit` is done: its result can come back through the pool
        before the reader thread has taken the unit's last events from the pipe."""
        import queue
        import time

        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while unit not in self.done and (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self._take(self.inbox.get(timeout=left)))
            except queue.Empty:
                break
        return out

    def close(self) -> list[Any]:
        """Stop reading; the messages not taken yet."""
        self.open = False
        self.thread.join(1.0)
        out = self.messages()
        self.reader.close()
        self.ends[1].close()
        return out


def dispatch(messages: Sequence[Any], running: dict[int, int], relay: Relay) -> None:
    """Workers' messages: which unit a worker (pid) starts, and bundles of its runs' events."""
    for message in messages:
        if message[0] == "start":
            running[message[1]] = message[2]
        elif message[0] == "events":
            relay(message[1])


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


_kept: Optional[tuple[tuple[str, int, int], Any, "Channel"]] = None  # a pool kept for the next call (keep_pools)
_keeping = 0


@contextmanager
def keep_pools() -> Iterator[None]:
    """Within it, `run_process` keeps its worker pool for the next call on the same problem with the same workers
    (a benchmark trains each trial of a problem in a call of its own: one pool start, ~3 s of torch imports per
    worker, per problem instead of per trial). The pool is closed when the outermost `with` ends."""
    global _keeping
    _keeping += 1
    try:
        yield
    finally:
        _keeping -= 1
        if not _keeping:
            _drop_kept()


def _drop_kept() -> None:
    global _kept
    if _kept is not None:
        _, pool, channel = _kept
        _kept = None
        pool.shutdown(wait=True, cancel_futures=True)
        channel.close()


def _pool(key: tuple[str, int, int], context: Any, payload: bytes) -> tuple[Any, "Channel", bool]:
    """(pool, channel, whether it is a kept one) for this call: the kept pool when its problem and sizes are
    these, else a new one (a kept pool of another problem is closed first)."""
    global _kept
    if _kept is not None and _kept[0] == key:
        _, pool, channel = _kept
        _kept = None
        channel.done.clear()  # (unit numbers start again at 0 in every call)
        return pool, channel, True
    _drop_kept()
    jobs, threads = key[1], key[2]
    channel = Channel(context)
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init,
                                  initargs=(payload, threads, channel.ends))
    return pool, channel, False


def run_process(problem: Any, specs: Sequence[RunSpec], units: Sequence[list[int]], events: Consumer, *,
                command: str, jobs: Optional[int], retries: int) -> tuple[list[RunResult], bool]:
    """Units on `jobs` worker processes (default: the number of cores), each pinned to cores // jobs threads."""
    global _kept
    if getattr(getattr(problem, "source", None), "streamed", False):
        from losslab.errors import ConfigError

        raise ConfigError("--executor", "streamed data (over --memory-budget) runs with --executor "
                          "local; its DataLoader workers already use the cores")
    jobs = max(1, min(jobs or cores(), len(units)))
    threads = max(1, cores() // jobs)
    prepare(problem, specs)
    payload = pickle.dumps(problem)
    specs = list(specs)
    results: list[Optional[RunResult]] = [None] * len(specs)
    relay = Relay(problem, events, command, len(specs))
    batches = wants_batches(events)
    attempts = {u: 0 for u in range(len(units))}
    pending = list(range(len(units)))
    interrupted = False
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    key = (hashlib.sha256(payload).hexdigest(), jobs, threads)
    while pending and not interrupted:
        broken: list[int] = []
        running: dict[int, int] = {}  # pid -> the unit that worker started last
        pool, channel, _ = _pool(key, context, payload)
        processes = pool._processes  # (the pool's own dict: it keeps the dead and the stopped)
        clean = False  # the units all came back (no exception on the way)
        try:
            futures = {pool.submit(_run_unit, u, units[u], specs, command, len(specs), threads, batches): u
                       for u in pending}
            waiting = set(futures)
            while waiting:  # short waits, so that Ctrl-C is seen while long trials run
                done, waiting = cf.wait(waiting, timeout=POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
                dispatch(channel.messages(), running, relay)
                for future in done:
                    try:
                        unit_results = future.result()
                    except cf.process.BrokenProcessPool:
                        broken.append(futures[future])
                        continue
                    dispatch(channel.until_done(futures[future]), running, relay)
                    relay.finished(results, units[futures[future]], unit_results)
                interrupt.check()
            clean = True
        except KeyboardInterrupt:
            interrupted = True
            stop_workers(pool)
        finally:
            kept = bool(_keeping) and clean and not broken
            if not kept:
                pool.shutdown(wait=True)
                if not clean and not interrupted:
                    channel.close()  # (an error on its way out: the pipe closed with the pool)
        if kept:  # (the next call on this problem finds it: keep_pools)
            left = channel.messages()
            _kept = (key, pool, channel)
        else:
            left = channel.close()
        if not interrupted:
            dispatch(left, running, relay)
        pending = []
        charged = culprits(broken, running, {pid: p.exitcode for pid, p in (processes or {}).items()})
        for u in broken:
            attempts[u] += u in charged
            if attempts[u] <= retries:
                pending.append(u)
            else:
                relay.finished(results, units[u], [RunResult(
                    specs[i], "error", error=f"the worker process running it died (killed or out of memory), "
                    f"{attempts[u] - 1} retr{'y' if retries == 1 else 'ies'} included") for i in units[u]])
    out = [r if r is not None else RunResult(specs[i], "not run") for i, r in enumerate(results)]
    return out, interrupted


# --- Ray -----------------------------------------------------------------------------------------

_cached: dict[str, Any] = {}  # a Ray worker's problems, by payload digest (workers are reused across tasks)


def _ray_unit(payload: bytes, digest: str, indices: list[int], specs: list[RunSpec], command: str, total: int,
              threads: int, batches: bool) -> tuple[list[RunResult], list[Any]]:
    """One unit as a Ray task: the problem unpickled once per worker process, the thread count set per task;
    returns the results and the bundles of its runs' events."""
    import torch

    from losslab.engine.units import run_unit

    torch.set_num_threads(threads)  # Ray reuses worker processes; torch keeps the count it first used
    if digest not in _cached:
        _cached.clear()
        _cached[digest] = pickle.loads(payload)  # cloudpickle's output loads with pickle
    sent: list[Any] = []
    forward = forwarder(sent.append, batches, every=float("inf"))
    results = run_unit(_cached[digest], indices, specs, forward, command=command, total=total)
    forward.flush()
    import ray

    node = ray.get_runtime_context().get_node_id()
    for r in results:
        r.node = node
    return results, [bundle for _, bundle in sent]


def ray_payload(problem: Any, specs: Sequence[RunSpec]) -> bytes:
    """The problem for Ray workers, with cloudpickle: a user's loss from a module that is not installed (a file in
    the current folder, `--loss mylosses:huber`), model (`--model mynet:Net`) or optimizer (`--optim myopt:Lion`)
    travels by value, so it works on every node of a cluster."""
    import sys

    from ray import cloudpickle

    names = {problem.loss_cfg.name, *(s.loss.name for s in specs if s.loss is not None),
             *(s.optim.name for s in specs)}  # a user's optimizer class (`--optim myopt:Lion`) too
    if getattr(problem, "user_model", None) is not None:  # a user's model travels the same way
        names.add(problem.user_model)
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
        ray.init(address="local", num_cpus=cores(), **kwargs)  # its own, never a cluster left running
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


NO_NODE_SECONDS = 10.0  # how long a Ray sweep waits for a node that can run its trials before it gives them up


class NodeWatch:
    """Whether any node of the cluster can still run a trial: when every node with `cpus` CPUs is lost mid-sweep
    (and none joins within NO_NODE_SECONDS), the trials left can never be placed, and waiting would be for ever."""

    def __init__(self, cpus: float):
        self.cpus, self.looked = cpus, 0.0
        self.since: Optional[float] = None  # since when no node could run a trial

    def lost(self) -> Optional[str]:
        """Why the trials left cannot run (None while a node can run them), looked at every second."""
        import ray

        now = time.monotonic()
        if now - self.looked < 1.0:
            return None
        self.looked = now
        total = ray.cluster_resources().get("CPU", 0)
        if total >= self.cpus:
            self.since = None
            return None
        since = self.since = self.since or now
        if now - since < NO_NODE_SECONDS:
            return None
        return (f"not run: no node of the cluster is left with {self.cpus:g} CPU(s) for it (it has {total:g} now; "
                f"the nodes that ran trials were lost and none joined within {NO_NODE_SECONDS:g} s)")


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
        batches = wants_batches(events)
        refs = {task.remote(payload_ref, digest, units[u], specs, command, total, threads, batches): u
                for u in range(len(units))}
        results: list[Optional[RunResult]] = [None] * total
        relay = Relay(problem, events, command, total)
        interrupted = False
        pending = list(refs)
        watch = NodeWatch(cpus_per_trial)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                if not done:  # short waits, so that Ctrl-C (or a cluster with no node left) is seen
                    interrupt.check()
                    why = watch.lost()
                    if why is not None:
                        for ref in pending:
                            ray.cancel(ref, force=True)
                            relay.finished(results, units[refs[ref]], [RunResult(specs[i], "error", error=why)
                                                                       for i in units[refs[ref]]])
                        pending = []
                    continue
                u = refs[done[0]]
                try:
                    unit_results, bundles = ray.get(done[0])
                    for bundle in bundles:
                        relay(bundle)
                except ray.exceptions.RayError as exc:
                    reason = ("the worker process running it died (killed or out of memory), "
                              f"{retries} retr{'y' if retries == 1 else 'ies'} included"
                              if isinstance(exc, (ray.exceptions.WorkerCrashedError,
                                                  ray.exceptions.NodeDiedError)) else
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}")
                    unit_results = [RunResult(specs[i], "error", error=reason) for i in units[u]]
                relay.finished(results, units[u], unit_results)
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
