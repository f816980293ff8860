"""--executor ray on one real local Ray runtime for the module (loopback, 2 CPUs, no dashboard, token auth off):
the same numbers as local and process, a killed worker's trial retried, failures reported per trial."""

import os

import pytest

ray = pytest.importorskip("ray")

from test_executors import SWEEPS, dying_loss, retried_then_reported, same_numbers  # noqa: E402,F401


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


def test_a_killed_ray_worker_is_retried_then_reported(cli, dying_loss):
    retried_then_reported(cli, dying_loss, ["--executor", "ray"])


def test_ray_options_are_checked(cli):
    cli("compare-optimizers", "--ray-address", "auto").assert_usage_error("--ray-address")
    cli("compare-optimizers", "--executor", "ray", "--cpus-per-trial", "0").assert_usage_error("--cpus-per-trial")
    assert not (os.path.exists(os.path.expanduser("~/.ray/auth_token")))
