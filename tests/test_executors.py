"""--executor process: the same units as local, on worker processes; identical numbers; a worker that dies is
retried; a failing trial does not stop the others."""

import os
import sys

import pytest

from lines import next_event
from losslab.commands.replay import compare

# worker processes and minute-long sweeps: `make test-fast` leaves these out
pytestmark = pytest.mark.slow


def same_numbers(a, b):
    for doc in (a, b):
        doc["config"].pop("executor", None)
        doc["config"].pop("shared", None)  # (benchmark: the options its problems' runs share, the executor's)
    compared, diff = compare(a, b, rtol=0.0)
    assert diff is None, diff
    return compared


SWEEPS = [
    # not stackable (dropout): one unit per trial, spread over the workers
    ["compare-optimizers", "--task", "classify", "--dataset", "blobs", "--dropout", "0.2", "--optims", "sgd,adam",
     "--seeds", "2", "--epochs", "5"],
    # stackable: one stacked unit, trained the same way in a worker
    ["lr-sweep", "--lrs", "0.01,0.1,0.3", "--seeds", "2", "--epochs", "50"],
    # a stacked unit per batch size (runs overriding the problem's batch size), the units spread over the workers
    ["lr-sweep", "--lrs", "0.01,0.1,0.5", "--batch-sizes", "10,40", "--seeds", "2", "--epochs", "5"],
    # successive halving one by one: the survivors go on, on a worker, from the state a rung paused them in
    ["lr-sweep", "--task", "classify", "--dataset", "blobs", "--dropout", "0.2", "--lrs", "0.01,0.03,0.1,0.3",
     "--seeds", "2", "--epochs", "9", "--halving", "--min-epochs", "1"],
    # a language model (tiny Shakespeare, a one-layer gpt): one unit per trial (whether its runs stack is timed
    # where they train, so it could differ between executors: not here)
    ["compare-optimizers", "--task", "lm", "--optims", "adamw,lion", "--seeds", "2", "--epochs", "2", "--eval-every",
     "5", "--eval-batches", "2", "--block-size", "16", "--batch-size", "4", "--layers", "1", "--embed", "32",
     "--heads", "2", "--threads", "1", "--no-vectorize"],
    # a benchmark: every problem's trials (external ruleset: quasi-random points) on the workers (one study: each
    # trial starts a pool of its own, ~3 s; test_benchmark checks the studies' seeds)
    ["benchmark", "--optims", "sgd,adam", "--suite", "analytic", "--ruleset", "external", "--studies", "1",
     "--trials", "2"],
]


# (the halving sweep on worker processes: test_halving.py::test_halving_on_worker_processes_continues_runs_there…;
# test_ray runs every sweep here)
@pytest.mark.parametrize("args", [sweep for sweep in SWEEPS if "--halving" not in sweep])
def test_process_executor_gives_identical_results(cli, args):
    local = cli(*args, "--json")
    pooled = cli(*args, "--json", "--executor", "process", "--jobs", "2")
    assert local.exit_code == pooled.exit_code == 0, pooled.stderr
    assert same_numbers(local.json(), pooled.json()) > 40


DYING = '''
import os, pathlib, time
import torch

# read when the module is imported in the losslab process; a Ray worker gets the values with the loss (by value)
MARKER = pathlib.Path(os.environ["LOSSLAB_TEST_MARKER"])
PARENT = int(os.environ["LOSSLAB_TEST_PARENT"])
OTHER = MARKER.with_name("slow-started")


def in_worker():
    """Whether this is a worker (pool process or Ray worker), not the losslab process the test runs."""
    return os.getpid() != PARENT


def dying(pred, target):
    """Kills the worker process the first time it runs in one (the parent's checks run it in the main process),
    once the `slow` trial runs in another worker (or after 20 s): an innocent trial is in flight when it dies."""
    if in_worker() and not MARKER.exists():
        for _ in range(2000):
            if OTHER.exists():
                break
            time.sleep(0.01)
        MARKER.write_text("died once")
        os._exit(9)
    return torch.nn.functional.mse_loss(pred, target)


def slow(pred, target):
    """MSE taking 0.1 s a step in a worker: still running when `dying` kills its own worker."""
    if in_worker():
        OTHER.touch()
        time.sleep(0.1)
    return torch.nn.functional.mse_loss(pred, target)


def failing(pred, target):
    if in_worker():
        raise ValueError("this loss fails in workers")
    return torch.nn.functional.mse_loss(pred, target)
'''


@pytest.fixture
def dying_loss(tmp_path, monkeypatch):
    """dyingloss.py in the current folder, importable by workers; returns the marker a dying worker leaves."""
    (tmp_path / "dyingloss.py").write_text(DYING)
    monkeypatch.delitem(sys.modules, "dyingloss", raising=False)  # another test's copy reads another marker
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("LOSSLAB_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("LOSSLAB_TEST_PARENT", str(os.getpid()))
    return tmp_path / "marker"


def retried_then_reported(cli, marker, executor):
    """A worker killed mid-trial: retried once by default (every run ends ok), reported failed with --retries 0
    while the other loss's run, in flight in another worker when the pool broke, is unaffected."""
    common = ["compare-losses", "--losses", "dyingloss:slow,dyingloss:dying", "--seeds", "1", "--epochs", "20",
              "--json", "--no-check-loss", *executor]
    run = cli(*common)
    assert run.exit_code == 0, run.stderr
    assert marker.exists()  # a worker did die
    assert all(r["status"] == "ok" for entry in run.json()["losses"].values() for r in entry["runs"])
    marker.unlink()
    marker.with_name("slow-started").unlink()
    doc = cli(*common, "--retries", "0").json()
    dead = doc["losses"]["dyingloss:dying"]["runs"][0]
    assert dead["status"] == "error" and "worker process" in dead["error"]
    assert marker.with_name("slow-started").exists()  # the innocent trial was running in the other worker
    assert doc["losses"]["dyingloss:slow"]["runs"][0]["status"] == "ok"


def test_a_failing_trial_is_reported_and_the_others_train(cli, dying_loss):
    """(A worker that dies: test_a_dead_worker_costs_only_its_own_trial_beside_a_cpu_hog, on a loaded machine.)"""
    failing = cli("compare-losses", "--losses", "mse,dyingloss:failing", "--seeds", "1", "--epochs", "20", "--json",
                  "--executor", "process", "--jobs", "2", "--no-check-loss").json()
    bad = failing["losses"]["dyingloss:failing"]["runs"][0]
    assert bad["status"] == "error" and "this loss fails in workers" in bad["error"]
    assert failing["losses"]["mse"]["runs"][0]["status"] == "ok"


def test_executor_options_are_checked(cli):
    cli("compare-optimizers", "--executor", "cluster").assert_usage_error("--executor")
    cli("compare-optimizers", "--executor", "process", "--jobs", "0").assert_usage_error("--jobs")
    cli("lr-sweep", "--jobs", "2").assert_usage_error("--jobs")
    cli("compare-losses", "--retries", "-1").assert_usage_error("--retries")


def children(pid):
    """Pids of the processes whose parent is `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def survivors(pids, wait=10.0):
    """The processes of `pids` still running `wait` seconds after the command exited, with their command lines.
    (multiprocessing's resource tracker ends when it reads the end of its pipe, a moment after the command.)"""
    import time

    deadline = time.monotonic() + wait
    while [pid for pid in pids if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    out = []
    for pid in pids:
        if alive(pid):
            try:
                out.append((pid, open(f"/proc/{pid}/cmdline").read().replace("\0", " ")))
            except OSError:
                pass
    return out


SLOW = """import time

import torch


def slow(pred, target):
    time.sleep(0.02)  # 3000 epochs: a minute
    return torch.nn.functional.mse_loss(pred, target)
"""


def interrupted_sweep(tmp_path, executor, signum=None, group=True):
    """Two trials on an executor, a quick one and one of a minute; Ctrl-C as a terminal sends it (SIGINT to the
    command's whole process group) once the quick one has finished: exit 130 within seconds, the finished trial
    written as ok, the other interrupted or not run, no traceback. Returns the processes the command had started
    (its children while it ran)."""
    import json
    import shutil
    import signal
    import subprocess
    import time
    from pathlib import Path

    (tmp_path / "slowloss.py").write_text(SLOW)
    bin_ = shutil.which("losslab", path=str(Path(sys.executable).parent))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "TERM")}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.Popen([bin_, "compare-losses", "--losses", "mse,slowloss:slow", "--seeds", "1",
                             "--epochs", "3000",
                             "--no-check-loss", "--out", str(out), "--json", "--device", "cpu", *executor],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)
    try:
        line = next_event(proc.stderr)  # the quick trial's progress line
        assert line.startswith("[1/2]") and "mse" in line, line + proc.stderr.read()
        workers = children(proc.pid)
        pressed = time.monotonic()
        signum = signum or signal.SIGINT
        if group:
            os.killpg(proc.pid, signum)
        else:  # `kill PID`: the command alone
            os.kill(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    waited = time.monotonic() - pressed
    assert proc.returncode == 128 + int(signum), stderr
    assert "Traceback" not in stderr, stderr
    assert waited < 30, f"the command took {waited:.0f} s to stop after Ctrl-C"  # the slow trial needs a minute
    doc = json.loads(stdout)
    assert doc["status"] == "interrupted"
    assert doc["losses"]["mse"]["runs"][0]["status"] == "ok", (doc["losses"]["mse"]["runs"][0], stderr)
    assert doc["losses"]["slowloss:slow"]["runs"][0]["status"] in ("interrupted", "not run")
    assert json.loads((out / "result.json").read_text())["status"] == "interrupted"
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) > 3000 and all(line.count(",") == history[0].count(",") for line in history)
    return workers


def test_ctrl_c_stops_the_process_executor_at_once_and_keeps_what_finished(tmp_path):
    workers = interrupted_sweep(tmp_path, ["--executor", "process", "--jobs", "2"])
    assert len(workers) >= 2  # the pool's worker processes ...
    assert not survivors(workers)  # ... are gone with the command


@pytest.fixture
def cpu_hog():
    """A busy process beside the test, as on a loaded machine: the CI failures of earlier stops happened only under
    load. One is enough for a load above the two cores: the suite's other xdist worker keeps the other core busy
    (two hogs took a core's worth of time from the rest of the suite)."""
    import subprocess

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    yield hogs
    for hog in hogs:
        hog.kill()
        hog.wait()


def test_a_dead_worker_costs_only_its_own_trial_beside_a_cpu_hog(cli, dying_loss, cpu_hog):
    retried_then_reported(cli, dying_loss, ["--executor", "process", "--jobs", "2"])
    assert all(hog.poll() is None for hog in cpu_hog)  # the load lasted the whole test


def test_ctrl_c_leaves_no_worker_alive_beside_a_cpu_hog(tmp_path, cpu_hog):
    workers = interrupted_sweep(tmp_path, ["--executor", "process", "--jobs", "2"])
    assert len(workers) >= 2 and not survivors(workers)
    assert all(hog.poll() is None for hog in cpu_hog)


def test_only_the_unit_whose_worker_died_is_charged():
    """The pool stops its surviving workers with SIGTERM (exit code -15): the worker that ended otherwise is the
    culprit. Figures as seen in a run: the innocent worker 3737 running unit 0, the dying one 3740 running unit 1."""
    from losslab.engine.executors import culprits

    assert culprits([0, 1], {3737: 0, 3740: 1}, {3737: -15, 3740: 9}) == {1}
    assert culprits([0, 1, 2], {3737: 0, 3740: 1}, {3737: -9, 3740: -15}) == {0}  # the out-of-memory killer's SIGKILL
    # a worker that ran unit 2 earlier and now idles is not charged for it; unit 2 was never started here
    assert culprits([1, 2], {3737: 1, 3740: 0}, {3737: 1, 3740: -15}) == {1}
    # cannot tell (every worker ended by SIGTERM): every running unit is charged, so retries still end
    assert culprits([0, 1, 2], {3737: 0, 3740: 1}, {3737: -15, 3740: -15}) == {0, 1}
    # no worker said what it runs (died while starting): every broken unit is charged
    assert culprits([0, 1], {}, {3737: 1}) == {0, 1}


def test_a_units_events_are_all_taken_before_its_runs_end():
    """The CI failure of stop 28: a unit's result came back through the pool before the channel's reader thread had
    taken the unit's last events from the pipe, and the runs ended without them. The parent now waits for the
    worker's word that the unit is done, which the worker sends after its events."""
    import multiprocessing

    from losslab.engine.executors import Channel

    channel = Channel(multiprocessing.get_context("spawn"))
    lock, pipe = channel.ends
    try:
        for unit in (0, 1):
            pipe.send(("start", 100 + unit, unit))
            pipe.send(("events", [("batch", unit, b) for b in range(1, 200)]))
            pipe.send(("done", unit))
        taken = channel.until_done(1) + channel.until_done(0)  # 0's word came in the first call's messages
        assert [m for m in taken if m[0] == "events"] == [
            ("events", [("batch", unit, b) for b in range(1, 200)]) for unit in (0, 1)]
        assert channel.done == {0, 1} and channel.messages() == []
    finally:
        channel.close()


def test_a_benchmark_keeps_one_pool_of_workers_per_problem(cli, monkeypatch):
    """Each trial of a benchmark is a call of its own; the workers (each ~3 s of imports) start once per problem
    and the numbers are those of the local executor."""
    from losslab.engine import executors

    pools = []
    original = executors._pool

    def counted(key, context, payload):
        made = original(key, context, payload)
        pools.append((key[0], made[2]))  # (the problem's digest, whether the pool was a kept one)
        return made

    monkeypatch.setattr(executors, "_pool", counted)
    args = ["benchmark", "--optims", "sgd,adam", "--suite", "analytic", "--ruleset", "external", "--studies", "1",
            "--trials", "3", "--json"]
    pooled = cli(*args, "--executor", "process", "--jobs", "2")
    assert pooled.exit_code == 0, pooled.stderr
    problems = list(dict.fromkeys(digest for digest, _ in pools))
    assert len(problems) == 2 and len(pools) == 6  # two problems, three trials each
    assert [kept for _, kept in pools] == [False, True, True] * 2
    assert executors._kept is None  # closed when the benchmark ended
    assert same_numbers(cli(*args).json(), pooled.json()) > 40
