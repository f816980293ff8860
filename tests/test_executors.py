"""--executor process: the same units as local, on worker processes; identical numbers; a worker that dies is
retried; a failing trial does not stop the others."""

import os
import sys

import pytest

from losslab.commands.replay import compare


def same_numbers(a, b):
    for doc in (a, b):
        doc["config"].pop("executor", None)
    compared, diff = compare(a, b, rtol=0.0)
    assert diff is None, diff
    return compared


SWEEPS = [
    # not stackable (dropout): one unit per trial, spread over the workers
    ["compare-optimizers", "--task", "classify", "--dataset", "blobs", "--dropout", "0.2", "--optims", "sgd,adam",
     "--seeds", "2", "--epochs", "5"],
    # stackable: one stacked unit, trained the same way in a worker
    ["lr-sweep", "--lrs", "0.01,0.1,0.3", "--seeds", "2", "--epochs", "50"],
]


@pytest.mark.parametrize("args", SWEEPS)
def test_process_executor_gives_identical_results(cli, args):
    local = cli(*args, "--json")
    pooled = cli(*args, "--json", "--executor", "process", "--jobs", "2")
    assert local.exit_code == pooled.exit_code == 0, pooled.stderr
    assert same_numbers(local.json(), pooled.json()) > 40


DYING = '''
import os, pathlib
import torch

# read when the module is imported in the losslab process; a Ray worker gets the values with the loss (by value)
MARKER = pathlib.Path(os.environ["LOSSLAB_TEST_MARKER"])
PARENT = int(os.environ["LOSSLAB_TEST_PARENT"])


def in_worker():
    """Whether this is a worker (pool process or Ray worker), not the losslab process the test runs."""
    return os.getpid() != PARENT


def dying(pred, target):
    """Kills the worker process the first time it runs in one (the parent's checks run it in the main process)."""
    if in_worker() and not MARKER.exists():
        MARKER.write_text("died once")
        os._exit(9)
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
    while the other loss's run is unaffected."""
    common = ["compare-losses", "--losses", "mse,dyingloss:dying", "--seeds", "1", "--epochs", "20", "--json",
              "--no-check-loss", *executor]
    run = cli(*common)
    assert run.exit_code == 0, run.stderr
    assert marker.exists()  # a worker did die
    assert all(r["status"] == "ok" for entry in run.json()["losses"].values() for r in entry["runs"])
    marker.unlink()
    doc = cli(*common, "--retries", "0").json()
    dead = doc["losses"]["dyingloss:dying"]["runs"][0]
    assert dead["status"] == "error" and "worker process" in dead["error"]
    assert doc["losses"]["mse"]["runs"][0]["status"] == "ok"


def test_a_dead_worker_is_retried_and_a_failing_trial_is_reported(cli, dying_loss):
    retried_then_reported(cli, dying_loss, ["--executor", "process", "--jobs", "2"])
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
