"""The table of commands is the one place a training command is declared: in a scratch copy of the package, a new
many-run command made of its module and its table row works with --config, TensorBoard, replay, gate, diff and
the Python API, with no other file touched."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import losslab

pytestmark = pytest.mark.slow  # a copy of the package and a dozen processes

ROW = '''
COMMANDS += (Command("seed-spread", "losslab.commands.seed_spread", "One configuration over several seeds: how far "
                     "its final loss spreads.", ("task", "seeds", "no_vectorize", *EXECUTOR, *OPTIM, *both_tasks(),
                                                 *MANY_RUN_OUTPUT), many=True,
                     config_class="losslab.commands.seed_spread:SpreadConfig"),)
'''


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("scratch")
    package = root / "losslab"
    shutil.copytree(Path(losslab.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    module = Path(__file__).parent / "scratch_command" / "seed_spread.py.txt"
    shutil.copy(module, package / "commands" / "seed_spread.py")  # file 1: the command's module
    table = package / "commands" / "table.py"  # file 2: its row
    text = table.read_text()
    table.write_text(text.replace("\nBY_NAME = ", ROW + "\nBY_NAME = "))
    return root


def run(scratch, *args, check=True):
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    out = subprocess.run([sys.executable, "-m", "losslab", *args], capture_output=True, text=True, env=env,
                         cwd=scratch)
    assert not check or out.returncode == 0, out.stderr
    return out


def test_a_new_many_run_command_is_its_module_and_its_row(scratch):
    out, board = scratch / "out", scratch / "tb"
    first = run(scratch, "seed-spread", "--seeds", "3", "--epochs", "40", "--out", str(out), "--tensorboard",
                str(board), "--json", "--quiet")
    doc = json.loads(first.stdout)
    assert doc["command"] == "seed-spread" and len(doc["entries"]["run"]["runs"]) == 3
    assert sorted(p.name for p in (board / "seed-spread").iterdir()) == [f"sgd-lr0.1-seed{s}" for s in range(3)]
    printed = run(scratch, "seed-spread", "--seeds", "3", "--epochs", "40", "--print-config").stdout
    assert printed.startswith("# losslab seed-spread") and "[seed-spread]" in printed and "epochs = 40" in printed
    # replay reruns the recorded options through a --config file: the round trip of the command's config
    assert "identical" in run(scratch, "replay", str(out / "result.json")).stdout
    gated = run(scratch, "gate", str(out / "result.json"), "--seeds", "3", "--json").stdout
    assert json.loads(gated)["status"] == "ok" and json.loads(gated)["metrics"] and json.loads(gated)["curves"]
    (scratch / "gate.json").write_text(gated)
    diff = run(scratch, "diff", str(out / "result.json"), str(scratch / "gate.json")).stdout
    assert "the same options" in diff and "final_loss" in diff
    api = subprocess.run([sys.executable, "-c", "import losslab, inspect; r = losslab.seed_spread(seeds=2, "
                          "epochs=20, progress=False); print(r.status, 'seed_spread' in dir(losslab), "
                          "'seeds' in inspect.signature(losslab.seed_spread).parameters)"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(scratch)}, cwd=scratch)
    assert api.stdout.split() == ["ok", "True", "True"], api.stderr
