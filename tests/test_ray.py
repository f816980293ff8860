"""--executor ray on one real local Ray runtime for the module (loopback, 2 CPUs, no dashboard, token auth off):
the same numbers as local and process, a killed worker's trial retried, failures reported per trial."""

import json
import os
import sys

import pytest

ray = pytest.importorskip("ray")

from test_executors import DYING, SWEEPS, same_numbers  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def runtime():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # otherwise Ray 2.60 writes a token file in $HOME
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("args", SWEEPS)
def test_ray_gives_the_same_json_as_local(cli, args):
    """(test_executors checks process against local: the three executors agree.)"""
    local = cli(*args, "--json")
    on_ray = cli(*args, "--json", "--executor", "ray")
    assert local.exit_code == on_ray.exit_code == 0, on_ray.stderr
    assert same_numbers(local.json(), on_ray.json()) > 40
    assert ray.is_initialized()  # the module's runtime was used, not replaced


def test_a_killed_ray_worker_is_retried_then_reported(cli, tmp_path, monkeypatch):
    (tmp_path / "dyingloss.py").write_text(DYING)
    monkeypatch.delitem(sys.modules, "dyingloss", raising=False)  # another test's copy reads another marker
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("LOSSLAB_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("LOSSLAB_TEST_PARENT", str(os.getpid()))
    common = ["compare-losses", "--losses", "mse,dyingloss:dying", "--seeds", "1", "--epochs", "20", "--json",
              "--executor", "ray", "--no-check-loss"]
    doc = cli(*common).json()
    assert (tmp_path / "marker").exists()
    assert all(r["status"] == "ok" for entry in doc["losses"].values() for r in entry["runs"])
    (tmp_path / "marker").unlink()
    doc = cli(*common, "--retries", "0").json()
    dead = doc["losses"]["dyingloss:dying"]["runs"][0]
    assert dead["status"] == "error" and "worker process" in dead["error"]
    assert doc["losses"]["mse"]["runs"][0]["status"] == "ok"


def test_ray_options_are_checked(cli):
    cli("compare-optimizers", "--ray-address", "auto").assert_usage_error("--ray-address")
    cli("compare-optimizers", "--executor", "ray", "--cpus-per-trial", "0").assert_usage_error("--cpus-per-trial")
    assert not (os.path.exists(os.path.expanduser("~/.ray/auth_token")))
