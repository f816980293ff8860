"""--executor ray on one real local Ray runtime for the module (loopback, 2 CPUs, no dashboard, token auth off):
the same numbers as local and process, a killed worker's trial retried, failures reported per trial."""

import os

import pytest

ray = pytest.importorskip("ray")

# every test here runs real processes (or a Ray runtime): `make test-fast` leaves them out
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one Ray runtime at a time

from test_executors import SWEEPS, dying_loss, interrupted_sweep, retried_then_reported, same_numbers  # noqa: E402,F401


@pytest.fixture(scope="module", autouse=True)
def runtime():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # otherwise Ray 2.60 writes a token file in $HOME
    # address="local": always a new runtime of its own, never one another process left running
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def nodes(doc):
    """The `node` of every run of a document (taken out of it), in order."""
    found = []
    if isinstance(doc, dict):
        if "seed" in doc and "node" in doc:
            found.append(doc.pop("node"))
        for value in doc.values():
            found += nodes(value)
    elif isinstance(doc, list):
        for value in doc:
            found += nodes(value)
    return found


@pytest.mark.parametrize("args", SWEEPS)
def test_ray_gives_the_same_json_as_local(cli, args):
    """(test_executors checks process against local: the three executors agree.) Each run records the node."""
    local = cli(*args, "--json")
    on_ray = cli(*args, "--json", "--executor", "ray")
    assert local.exit_code == on_ray.exit_code == 0, on_ray.stderr
    ray_doc = on_ray.json()
    where = nodes(ray_doc)
    assert where and set(where) == {ray.get_runtime_context().get_node_id()} and nodes(local.json()) == []
    assert same_numbers(local.json(), ray_doc) > 40
    assert ray.is_initialized()  # the module's runtime was used, not replaced


def test_a_killed_ray_worker_is_retried_then_reported(cli, dying_loss):
    retried_then_reported(cli, dying_loss, ["--executor", "ray"])


def test_ray_options_are_checked(cli):
    cli("compare-optimizers", "--ray-address", "auto").assert_usage_error("--ray-address")
    cli("compare-optimizers", "--executor", "ray", "--cpus-per-trial", "0").assert_usage_error("--cpus-per-trial")
    assert not (os.path.exists(os.path.expanduser("~/.ray/auth_token")))


def test_ctrl_c_cancels_the_ray_tasks_and_keeps_what_finished(tmp_path):
    """The command joins this module's runtime (--ray-address), so the cluster outlives it: after Ctrl-C its
    cancelled task must not hold the cluster's CPUs."""
    import time

    address = ray.get_runtime_context().gcs_address
    interrupted_sweep(tmp_path, ["--executor", "ray", "--ray-address", address])
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2


def test_sigterm_stops_a_ray_sweep_like_ctrl_c(tmp_path):
    """ray.init installs its own SIGTERM handler (the driver aborted, exit -6, error logs); losslab takes the
    signal back: `kill PID` gives exit 143, status interrupted and complete data files."""
    import signal

    address = ray.get_runtime_context().gcs_address
    interrupted_sweep(tmp_path, ["--executor", "ray", "--ray-address", address], signum=signal.SIGTERM, group=False)


RAYNET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):
        return self.body(x)


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.99)):
        super().__init__(params, dict(lr=lr, betas=betas))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.add_(m.lerp(p.grad, 1 - beta1).sign_(), alpha=-group["lr"])
                m.lerp_(p.grad, 1 - beta2)
'''


def test_a_user_model_from_a_file_reaches_ray_workers_by_value(cli, tmp_path, monkeypatch):
    """The runtime's workers started before the file existed and cannot import it (no PYTHONPATH to it): the
    model travels with the problem, by value, as a cluster node without the file needs it."""
    import sys

    (tmp_path / "raynet.py").write_text(RAYNET)
    monkeypatch.delitem(sys.modules, "raynet", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["compare-optimizers", "--task", "classify", "--model", "raynet:Net", "--optims", "sgd,raynet:Lion",
            "--seeds", "1", "--epochs", "2", "--json", "--no-vectorize", "--device", "cpu"]
    local, on_ray = cli(*args), cli(*args, "--executor", "ray")
    assert local.exit_code == on_ray.exit_code == 0, on_ray.stderr
    for name in ("sgd", "raynet:Lion"):  # (a user's optimizer class travels the same way)
        [a], [b] = local.json()["optimizers"][name]["runs"], on_ray.json()["optimizers"][name]["runs"]
        assert a["status"] == b["status"] == "ok"
        assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-5)  # (a Ray task runs on one thread)
