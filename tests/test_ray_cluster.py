"""Clusters started with `ray start`: a two-node cluster on one machine — a head and a second node, 1 CPU each, the
second with its own raylet and object store — is reached with --ray-address auto, spreads trials over both nodes
with the numbers of `local`, and a node stopped mid-sweep (its processes killed) has its unfinished trials retried
on the head, nothing lost."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

# every test here runs real processes (or a Ray runtime): `make test-fast` leaves them out
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one Ray runtime at a time



def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


from test_executors import same_numbers  # noqa: E402
from test_ray import nodes  # noqa: E402

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
LOSSLAB = shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"
ENV = {**{k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "COLUMNS")},
       "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

SLOWISH = '''
import time

import torch


def slowish(pred, target):  # 10 ms a call: a trial of 200 epochs takes about 2 s
    time.sleep(0.01)
    return torch.nn.functional.mse_loss(pred, target)


def slowish2(pred, target):
    time.sleep(0.01)
    return torch.nn.functional.l1_loss(pred, target)


def slowish3(pred, target):
    time.sleep(0.01)
    return torch.nn.functional.huber_loss(pred, target)


def slowish4(pred, target):
    time.sleep(0.01)
    return torch.nn.functional.smooth_l1_loss(pred, target)
'''


def alive_nodes(address: str) -> int:
    code = ("import ray; ray.init(address=%r, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


def start_node(args: list[str], cpus: int = 1) -> subprocess.Popen:
    """`ray start ... --block` in a session of its own: killing that process group stops the node's processes."""
    return subprocess.Popen([RAY, "start", "--num-cpus", str(cpus), "--disable-usage-stats", "--block", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(node: subprocess.Popen) -> None:
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait(timeout=30)


@contextlib.contextmanager
def cluster(head_cpus: int = 1):
    """A head (`head_cpus` CPUs for tasks) and a second node of 1 CPU, both alive: yields (address, second)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start_node(["--head", "--port", str(port), "--include-dashboard=false", "--node-ip-address=127.0.0.1"],
                      cpus=head_cpus)
    second = None
    try:
        deadline = time.monotonic() + 90
        while alive_nodes(address) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        second = start_node(["--address", address, "--node-ip-address=127.0.0.1"])
        while alive_nodes(address) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert alive_nodes(address) == 2, "the two-node cluster did not come up"
        yield address, second
    finally:
        for node in (second, head):
            if node is not None:
                stop(node)


@pytest.fixture(scope="module")
def two_nodes():  # one cluster for both tests: placement first, then its second node is stopped
    with cluster() as nodes_:
        yield nodes_


@pytest.fixture
def losses(tmp_path):
    (tmp_path / "slowish.py").write_text(SLOWISH)
    return tmp_path


ARGS = ["compare-losses", "--losses", "slowish:slowish,slowish:slowish2,slowish:slowish3,slowish:slowish4",
        "--seeds", "1", "--epochs", "200", "--no-check-loss", "--json", "--quiet", "--device", "cpu"]


def run(args: list[str], cwd: Path, env: dict | None = None) -> dict:
    proc = subprocess.run([LOSSLAB, *args], capture_output=True, text=True,
                          env={**ENV, "PYTHONPATH": str(cwd), **(env or {})}, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


LOCAL: dict[str, dict] = {}  # the sweep's numbers on --executor local, made once


def local_numbers(cwd: Path) -> dict:
    if "doc" not in LOCAL:
        LOCAL["doc"] = run(ARGS, cwd)
    return json.loads(json.dumps(LOCAL["doc"]))


def test_trials_spread_over_two_nodes_with_the_numbers_of_local(two_nodes, losses):
    # `auto` as Ray resolves it: RAY_ADDRESS first (without it Ray picks the latest cluster of any on the machine —
    # a runtime another test or process left there once made this test join one with no CPUs)
    on_cluster = run([*ARGS, "--executor", "ray", "--ray-address", "auto"], losses, {"RAY_ADDRESS": two_nodes[0]})
    runs = [run for entry in on_cluster["entries"].values() for run in entry["runs"]]
    assert len(runs) == 4 and len({run["node"] for run in runs}) == 2  # both nodes trained
    nodes(on_cluster)  # (taken out of the document: the numbers are compared without them)
    assert on_cluster["config"]["executor"]["ray_address"] == "auto"
    assert same_numbers(local_numbers(losses), on_cluster) > 20


def test_a_node_stopped_mid_sweep_has_its_trials_retried_on_the_head(two_nodes, losses):
    address, second = two_nodes
    proc = subprocess.Popen([LOSSLAB, *ARGS, "--executor", "ray", "--ray-address", address, "--retries", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "PYTHONPATH": str(losses)}, cwd=losses)
    time.sleep(4)  # the first two trials are running, one on each node
    stop(second)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    runs = [r for entry in doc["losses"].values() for r in entry["runs"]]
    assert [r["status"] for r in runs] == ["ok"] * 4, runs
    assert len(set(nodes(doc))) >= 1 and same_numbers(local_numbers(losses), doc) > 20
