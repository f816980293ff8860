"""A cluster that loses every node able to run trials mid-sweep: a head with no CPUs for tasks and one worker
node of 1 CPU, the worker's processes killed while the sweep runs. The sweep does not wait for ever: after
NO_NODE_SECONDS without a node that can place a trial, the unfinished trials are reported failed with the
reason, and what finished is written."""

import json
import subprocess
import time

import pytest

pytest.importorskip("ray")

from test_ray_cluster import ENV, LOSSLAB, SLOWISH, cluster, stop  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one Ray runtime at a time


@pytest.fixture
def head_and_worker():
    with cluster(head_cpus=0) as nodes:
        yield nodes


def test_with_no_node_left_the_unfinished_trials_fail_with_the_reason_and_what_finished_is_written(
        head_and_worker, tmp_path):
    address, worker = head_and_worker
    (tmp_path / "slowish.py").write_text(SLOWISH)
    args = ["compare-losses", "--losses", "slowish:slowish,slowish:slowish2,slowish:slowish3,slowish:slowish4",
            "--seeds", "1", "--epochs", "200", "--no-check-loss", "--json", "--quiet", "--device", "cpu",
            "--executor", "ray", "--ray-address", address, "--out", str(tmp_path / "out"), "--no-plot"]
    proc = subprocess.Popen([LOSSLAB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    time.sleep(7)  # a trial or two done on the worker, one running
    stop(worker)
    started = time.monotonic()
    out, err = proc.communicate(timeout=240)
    assert time.monotonic() - started < 120, "the sweep waited too long for a node"
    doc = json.loads(out)
    runs = [r for entry in doc["losses"].values() for r in entry["runs"]]
    finished = [r for r in runs if r["status"] == "ok"]
    assert proc.returncode == (0 if finished else 4), err  # (exit 4: every run failed)
    failed = [r for r in runs if r["status"] != "ok"]
    assert failed and all(r["status"] == "error" and "no node of the cluster is left" in r["error"] for r in failed)
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == doc["status"]
    rows = (tmp_path / "out" / "history.csv").read_text().splitlines()
    assert len(rows) - 1 >= 200 * len(finished)  # every epoch of what finished
