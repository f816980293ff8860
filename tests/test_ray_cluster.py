"""--ray-address auto: a sweep submitted to a cluster started separately with `ray start --head`."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

# every test here runs real processes (or a Ray runtime): `make test-fast` leaves them out
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def cluster():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    start = subprocess.run([str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--include-dashboard=false",
                            f"--port={free_port()}", "--node-ip-address=127.0.0.1"],
                           capture_output=True, text=True, env=env, timeout=180)
    assert start.returncode == 0, start.stderr
    yield env
    subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_a_sweep_runs_on_a_cluster_started_with_ray_start(cluster):
    args = [str(BIN / "losslab"), "lr-sweep", "--lrs", "0.01,0.1", "--epochs", "30", "--json", "--quiet"]
    on_cluster = subprocess.run(args + ["--executor", "ray", "--ray-address", "auto"], capture_output=True,
                                text=True, env=cluster, timeout=300)
    local = subprocess.run(args, capture_output=True, text=True, env=cluster, timeout=300)
    assert on_cluster.returncode == 0, on_cluster.stderr
    a, b = json.loads(local.stdout), json.loads(on_cluster.stdout)
    assert [r["final_loss"] for r in a["results"]] == [r["final_loss"] for r in b["results"]]
    assert b["config"]["executor"]["ray_address"] == "auto"
