"""Bad input on every command: one line naming the option or file, exit 2, no traceback, nothing on stdout —
in process for the whole matrix, and through the installed `losslab` for the cases that need a real process
(closed pipe, ASCII locale, crafted pickles, file modes, the last line of defence)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BIN = shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR")}

# every test here runs real processes (or a Ray runtime): `make test-fast` leaves them out
pytestmark = pytest.mark.slow

HUGE = "1000000000000"
MATRIX = [
    # regress
    (["regress", "--lr", "1e39"], "--lr"),
    (["regress", "--weight-decay", "1e300"], "--weight-decay"),
    (["regress", "--true-w", "1e39"], "--true-w"),
    (["regress", "--samples", HUGE], "--samples"),
    (["regress", "--features", HUGE], "--features"),
    (["regress", "--epochs", HUGE], "--epochs"),
    (["regress", "--out", ""], "--out"),
    # classify
    (["classify", "--classes", "4"], "--classes"),
    (["classify", "--imbalance", "0.5"], "--imbalance"),
    (["classify", "--dataset", "blobs", "--samples", HUGE], "--samples"),
    (["classify", "--hidden", HUGE], "--hidden"),
    (["classify", "--subset", "1"], "--subset"),
    (["classify", "--target-loss", "nan"], "--target-loss"),
    (["classify", "--loss", "mse", "--class-weights", "balanced"], "--class-weights"),
    (["classify", "--save", "/"], "--save"),
    (["classify", "--resume", "/no/such.pt"], "--resume"),
    (["classify", "--dataset", "mnist", "--data-dir", "/no/such/folder"], "--data-dir"),
    (["classify", "--depth", "0"], "--depth"),
    (["classify", "--depth", HUGE], "--depth"),
    (["classify", "--activation", "swish"], "--activation"),
    (["classify", "--init", "orthogonal"], "--init"),
    (["classify", "--dropout", "1"], "--dropout"),
    (["classify", "--dropout", "nan"], "--dropout"),
    (["classify", "--model", "logistic", "--batch-norm"], "--batch-norm"),
    (["classify", "--model", "cnn", "--depth", "3"], "--depth"),
    (["classify", "--expect", "diagnosis=overfit"], "--expect"),
    (["regress", "--clip-grad-value", "0"], "--clip-grad-value"),
    (["regress", "--expect", "diagnosis!=vanishing"], "--expect"),
    (["lr-sweep", "--clip-grad-value", "nan"], "--clip-grad-value"),
    (["compare-losses", "--expect", "diagnosis=slow"], "--expect"),
    (["compare-optimizers", "--task", "classify", "--model", "cnn", "--dropout", "0.5"], "--dropout"),
    (["regress", "--dataset", "mnist"], "--dataset"),
    (["regress", "--target", "y"], "--target"),
    (["regress", "--data", "/no/such.csv"], "--data"),
    (["regress", "--features", "two"], "--features"),
    (["regress", "--tensorboard", ""], "--tensorboard"),
    (["classify", "--data", "/no/such.csv"], "--data"),
    (["classify", "--features", "a,b"], "--features"),
    (["classify", "--workers", "3"], "--workers"),
    (["classify", "--memory-budget", "0"], "--memory-budget"),
    (["classify", "--val-dir", "/x"], "--val-dir"),
    (["classify", "--dataset", "imagefolder", "--data-dir", "/no/such/folder"], "--data-dir"),
    (["lr-sweep", "--task", "classify", "--grayscale"], "--grayscale"),
    (["compare-optimizers", "--task", "classify", "--dataset", "diabetes"], "--dataset"),
    (["compare-losses", "--tensorboard", "/dev/null"], "--tensorboard"),
    (["regress", "--config", "/no/such.toml"], "--config"),
    (["lr-sweep", "--config", "/no/such.toml"], "--config"),
    (["replay", "/no/such.json"], "RESULT"),
    (["replay", "/no/such.json", "--rtol", "nan"], "--rtol"),
    (["compare-optimizers", "--executor", "cluster"], "--executor"),
    (["lr-sweep", "--jobs", "3"], "--jobs"),
    (["compare-losses", "--executor", "process", "--jobs", "0"], "--jobs"),
    (["compare-optimizers", "--ray-address", "auto"], "--ray-address"),
    (["lr-sweep", "--executor", "ray", "--cpus-per-trial", "-1"], "--cpus-per-trial"),
    (["lr-sweep", "--executor", "ray", "--cpus-per-trial", "0.00001"], "--cpus-per-trial"),
    (["lr-sweep", "--num", "100000"], "--num"),
    (["compare-losses", "--retries", "11"], "--retries"),
    # compare-optimizers
    (["compare-optimizers", "--tune", "--lr", "0.1"], "--lr"),
    (["compare-optimizers", "--tune-grid", "0.1,1"], "--tune-grid"),
    (["compare-optimizers", "--lr-for", "adam=0.1", "--lr-for", "adam=0.2"], "--lr-for"),
    (["compare-optimizers", "--task", "classify", "--target-accuracy", "nan"], "--target-accuracy"),
    (["compare-optimizers", "--task", "classify", "--target-loss", "0.5"], "--target-loss"),
    (["compare-optimizers", "--target-accuracy", "0.9"], "--target-accuracy"),
    (["compare-optimizers", "--seeds", HUGE], "--seeds"),
    (["compare-optimizers", "--optims", "sgd,sgd"], "--optims"),
    (["compare-optimizers", "--task", "classify", "--classes", "4"], "--classes"),
    (["compare-optimizers", "--true-b", "1e39"], "--true-b"),
    # lr-sweep
    (["lr-sweep", "--range-test", "--num", "5"], "--num"),
    (["lr-sweep", "--range-test", "--epochs", "5"], "--epochs"),
    (["lr-sweep", "--range-test", "--target-loss", "1"], "--target-loss"),
    (["lr-sweep", "--mode", "linear"], "--mode"),
    (["lr-sweep", "--steps", "50"], "--steps"),
    (["lr-sweep", "--range-test", "--steps", HUGE], "--steps"),
    (["lr-sweep", "--lr", "0.1"], "--lr"),
    (["lr-sweep", "--max-lr", "1e39"], "--max-lr"),
    (["lr-sweep", "--task", "classify", "--target-accuracy", "2"], "--target-accuracy"),
    # compare-losses and check-loss
    (["compare-losses", "--outlier-shift", "1e39"], "--outlier-shift"),
    (["compare-losses", "--outliers", "nan"], "--outliers"),
    (["compare-losses", "--task", "classify", "--losses", "l1"], "--losses"),
    (["compare-losses", "--seeds", HUGE], "--seeds"),
    (["check-loss", "torch.nn:MSELoss", "--points", "0"], "--points"),
    (["check-loss", "no_such_module_xyz:f"], "--loss"),
    (["check-loss", "torch.nn:MSELoss", "--points", "1000000000"], "--points"),
    (["compare-losses", "--losses", ""], "--losses"),
    (["compare-losses", "--losses", " , "], "--losses"),
    (["compare-losses", "--losses", "no_such_module_xyz:f,mse", "--epochs", "3"], "--losses"),
    # numbers at the edge (torch and numpy seed ranges)
    (["regress", "--seed", str(2**64)], "--seed"),
    (["regress", "--data-seed", str(2**32)], "--data-seed"),
    (["classify", "--data-seed", str(2**32)], "--data-seed"),
    (["compare-optimizers", "--seed", str(2**63)], "--seed"),
    (["regress", "--epochs", "0"], "--epochs"),
    (["compare-optimizers", "--task", "classify", "--standardize"], "--standardize:"),
    (["compare-losses", "--task", "classify", "--outliers", "0.1"], "--outliers"),
    # memory: every parameter of every epoch is recorded
    (["regress", "--features", "60000", "--true-w", "1", "--epochs", "2000"], "--features"),
    # output targets checked before training
    (["regress", "--out", "x" * 300], "--out"),
    (["classify", "--save", "x" * 300 + ".pt"], "--save"),
    # executors: checked within seconds, not a hang
    (["compare-losses", "--executor", "ray", "--ray-address", "127.0.0.1:1", "--epochs", "3"], "--ray-address"),
    # a user's model and data, --save and predict
    (["regress", "--threads", "0"], "--threads"),
    (["compare-optimizers", "--rank-by", "accuracy"], "--rank-by"),
    (["compare-optimizers", "--threads", "-2"], "--threads"),
    (["regress", "--model", "cnn"], "--model"),
    (["regress", "--model", "nosuch.module:Net"], "--model"),
    (["classify", "--model", "os:getcwd"], "--model"),
    (["classify", "--model", "collections:OrderedDict"], "--model"),
    (["lr-sweep", "--task", "classify", "--model", "nosuch.module:Net"], "--model"),
    # this round's options (their commands' own tests cover every value; here through a real process, --json)
    (["lr-sweep", "--halving", "--halving-rate", "1"], "--halving-rate"),
    (["compare-losses", "--min-epochs", "3"], "--min-epochs"),
    (["compare-optimizers", "--tune", "--halving", "--min-epochs", "5000"], "--min-epochs"),
    (["regress", "--track-sharpness", "0"], "--track-sharpness"),
    (["classify", "--sharpness-samples", "0"], "--sharpness-samples"),
    (["landscape", "--grid", "2"], "--grid"),
    (["landscape", "--between", "/no/a.pt", "/no/b.pt"], "--between"),
    (["gate", "/no/such.json"], "BASELINE"),
    (["gate", "/no/such.json", "--alpha", "0.9"], "--alpha"),
    (["diff", "/no/a.json", "/no/b.json"], "A"),
    (["regress", "--save", "/"], "--save"),
    (["regress", "--save", "x" * 300 + ".pt"], "--save"),
    (["classify", "--dataset", "nosuch.module:data"], "--dataset"),
    (["regress", "--dataset", "nosuch.module:data"], "--dataset"),
    (["compare-optimizers", "--task", "classify", "--dataset", "os:getcwd"], "--dataset"),
    (["predict", "--checkpoint", "/no/such.pt", "--data", "/etc/hostname"], "--checkpoint"),
    (["predict", "--checkpoint", "/etc/hostname", "--data", "/no/such.csv"], "--data"),
    (["predict", "--checkpoint", "/etc/hostname", "--data", "/etc/hostname"], "--checkpoint"),
]


def run(*args, env=None, **kw):
    return subprocess.run([BIN, *args], capture_output=True, text=True, env={**ENV, **(env or {})}, timeout=120, **kw)


def said(stderr):
    """stderr's lines but the heartbeat's (`… losslab X: starting (importing torch, …), 10 s`: a process that needs
    10 s on a loaded machine to reach its error says it is working first — progress, not part of the error)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("… ")]


def assert_one_line(proc, code, needle):
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = said(proc.stderr)
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, option", MATRIX, ids=[" ".join(a) for a, _ in MATRIX])
def test_bad_input_matrix(cli, args, option):
    """With --json: exit 2, one line naming the option, nothing on stdout — in process (a real process for Ray,
    whose runtime the test process must not join; the tests below take real processes for the rest)."""
    if "ray" in args:
        proc = run(*args, "--json")
        assert_one_line(proc, 2, option)
        assert proc.stdout == ""
    else:
        cli(*args, "--json").assert_usage_error(option)


@pytest.mark.parametrize("command", [["regress"], ["classify"], ["compare-optimizers"], ["lr-sweep"]])
def test_json_stdout_stays_empty_on_bad_input_in_a_real_process(command):
    proc = run(*command, "--seed", "-1", "--json")
    assert_one_line(proc, 2, "--seed")
    assert proc.stdout == ""


def test_a_closed_stdout_is_a_quiet_exit_141():
    proc = subprocess.run(f"'{BIN}' regress --epochs 3000 --device cpu | head -1", shell=True, capture_output=True,
                          text=True, env=ENV, executable="/bin/bash", timeout=120)
    assert proc.stdout.startswith("epoch 1/3000") and proc.stderr == ""
    status = subprocess.run(f"'{BIN}' regress --epochs 3000 --device cpu | head -1 >/dev/null; "
                            "echo ${PIPESTATUS[0]}", shell=True, capture_output=True, text=True, env=ENV,
                            executable="/bin/bash", timeout=120)
    assert status.stdout.strip() == "141"


def test_an_ascii_locale_gets_ascii_output():
    proc = run("regress", "--epochs", "5", "--device", "cpu", env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.isascii() and "loss" in proc.stdout and " - " in proc.stdout  # "—" spelled "-"


def test_result_files_get_the_umask_mode(tmp_path):
    proc = subprocess.run(f"umask 022; '{BIN}' regress --epochs 5 --quiet --device cpu --out '{tmp_path / 'o'}'",
                          shell=True, capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("result.json", "history.csv", "loss.png"):
        assert (tmp_path / "o" / name).stat().st_mode & 0o777 == 0o644, name
    assert not list((tmp_path / "o").glob(".*"))  # no temporary files left behind


def test_paths_are_checked_before_training(tmp_path):
    (tmp_path / "o" / "result.json").mkdir(parents=True)
    proc = run("regress", "--out", str(tmp_path / "o"), "--device", "cpu")
    assert_one_line(proc, 2, "--out")
    assert "epoch" not in proc.stdout  # refused before the first epoch
    proc = run("classify", "--save", str(tmp_path), "--epochs", "1")
    assert_one_line(proc, 2, "--save")


def test_a_users_loss_that_prints_keeps_json_clean(tmp_path):
    (tmp_path / "noisy.py").write_text("import torch\nprint('imported')\n"
                                       "def loss(p, t):\n    print('called')\n    return ((p - t) ** 2).mean()\n")
    proc = run("regress", "--loss", "noisy:loss", "--epochs", "3", "--json", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok" and "called" in proc.stderr
    # in worker processes too: what they print goes to stderr, stdout stays one JSON document
    pooled = run("compare-losses", "--losses", "noisy:loss,mse", "--seeds", "1", "--epochs", "3", "--json",
                 "--executor", "process", "--jobs", "2", cwd=tmp_path)
    assert pooled.returncode == 0, pooled.stderr
    assert json.loads(pooled.stdout)["status"] == "ok" and "called" in pooled.stderr


def test_a_slow_user_import_says_so_instead_of_hanging_silently(tmp_path):
    (tmp_path / "slowimport.py").write_text("import time\nimport torch\ntime.sleep(4)\n"
                                            "def loss(p, t):\n    return ((p - t) ** 2).mean()\n")
    proc = run("check-loss", "slowimport:loss", cwd=tmp_path)
    assert proc.returncode == 0 and "still importing 'slowimport' for --loss" in proc.stderr, proc.stderr


LOSSES = """
import sys, torch
calls = [0]
def late(p, t):
    calls[0] += p.dtype == torch.float32  # training's calls (the gradient check's are float64)
    if calls[0] > 300:
        raise RuntimeError("fails after a while")
    return ((p - t) ** 2).mean()
nan_calls = [0]
def nan_later(p, t):
    nan_calls[0] += p.dtype == torch.float32
    loss = ((p - t) ** 2).mean()
    return loss * float("nan") if nan_calls[0] > 300 else loss
def constant(p, t):
    return torch.tensor(1.0)
def detached(p, t):
    return ((p - t) ** 2).mean().detach()
def vector(p, t):
    return (p - t) ** 2
class NeedsArgs:
    def __init__(self, scale):
        self.scale = scale
not_callable = 3
class WrongShape(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, t):
        ctx.save_for_backward(p, t)
        return ((p - t) ** 2).mean()
    @staticmethod
    def backward(ctx, g):
        p, t = ctx.saved_tensors
        return (2 * (p - t) / p.numel())[:1] * g, None
class WrongCount(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, t):
        ctx.save_for_backward(p, t)
        return ((p - t) ** 2).mean()
    @staticmethod
    def backward(ctx, g):
        p, t = ctx.saved_tensors
        return (2 * (p - t) / p.numel() * g,)
"""


@pytest.mark.parametrize("name, code, needle", [
    ("losses:constant", 2, "not connected"),
    ("losses:detached", 2, "not connected"),
    ("losses:vector", 2, "scalar"),
    ("losses:NeedsArgs", 2, "no arguments"),
    ("losses:not_callable", 2, "not callable"),
    ("losses:WrongShape", 2, "backward"),
    ("losses:WrongCount", 2, "backward"),
    ("exits:f", 2, "sys.exit"),
    ("interrupts:f", 2, "KeyboardInterrupt"),
    ("losses:late", 4, "epoch"),
])
def test_every_failure_of_a_users_loss_is_one_line(tmp_path, name, code, needle):
    (tmp_path / "losses.py").write_text(LOSSES)
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(5)\n")
    (tmp_path / "interrupts.py").write_text("raise KeyboardInterrupt\n")
    proc = run("regress", "--loss", name, "--epochs", "500", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert_one_line(proc, code, needle)
    assert "--loss" in proc.stderr


def test_the_last_line_of_defence_is_one_line_and_debug_shows_the_traceback(tmp_path):
    probe = ("import sys\nfrom losslab.commands import regress\n"
             "def boom(*a, **k):\n    raise ZeroDivisionError('planted')\n"
             "regress.main = boom\nfrom losslab.cli import main\nsys.argv = ['losslab'] + sys.argv[1:]\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", probe, "regress"], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert_one_line(proc, 4, "internal error: ZeroDivisionError: planted")
    proc = subprocess.run([sys.executable, "-c", probe, "regress", "--debug"], capture_output=True, text=True,
                          env=ENV, timeout=120)
    assert proc.returncode == 4 and "Traceback" in proc.stderr


# --- dataset files are data, not code ------------------------------------------------------------------

class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_pickle_is_refused_and_never_executed(tmp_path):
    from fakedata import write_cifar10

    folder = write_cifar10(tmp_path, per_batch=4, test=4)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({"data": Payload(marker), "labels": [0]}, fh)
    proc = run("classify", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1")
    assert_one_line(proc, 2, "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize("corrupt, needle", [
    (lambda d: d.update(labels=d["labels"][:-1]), "labels"),
    (lambda d: d.update(labels=[str(v) for v in d["labels"]]), "integers"),
    (lambda d: d.update(labels=[float(v) for v in d["labels"]]), "integers"),
    (lambda d: d.update(data=d["data"].astype(np.float32)), "uint8"),
])
def test_corrupt_cifar_batches_are_refused_with_the_file_named(cli, tmp_path, corrupt, needle):
    from fakedata import write_cifar10

    folder = write_cifar10(tmp_path, per_batch=4, test=4)
    with open(folder / "data_batch_2", "rb") as fh:
        entry = pickle.load(fh)
    corrupt(entry)
    with open(folder / "data_batch_2", "wb") as fh:
        pickle.dump(entry, fh)
    run_ = cli("classify", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1")
    run_.assert_usage_error("--data-dir")
    assert "data_batch_2" in run_.stderr and needle in run_.stderr


def test_duplicate_cifar_class_names_are_refused(cli, tmp_path):
    from fakedata import write_cifar10

    folder = write_cifar10(tmp_path, per_batch=4, test=4)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["cat"] * 10}, fh)
    run_ = cli("classify", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1")
    run_.assert_usage_error("--data-dir")
    assert "repeat" in run_.stderr


def test_mnist_images_and_labels_of_different_counts_or_sizes_are_refused(cli, tmp_path):
    from fakedata import write_idx, write_mnist

    raw = write_mnist(tmp_path, train=20, test=10)
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(25, dtype=np.uint8))
    run_ = cli("classify", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1")
    run_.assert_usage_error("--data-dir")
    assert "20 images but" in run_.stderr and "25 labels" in run_.stderr
    raw = write_mnist(tmp_path / "b", train=20, test=10)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((10, 10, 10), dtype=np.uint8))
    run_ = cli("classify", "--dataset", "mnist", "--data-dir", str(tmp_path / "b"), "--epochs", "1")
    run_.assert_usage_error("--data-dir")
    assert "28x28" in run_.stderr


def test_checkpoints_load_with_weights_only(tmp_path, cli):
    marker = tmp_path / "pwned"
    import torch

    torch.save({"format": "losslab-checkpoint-1", "x": Payload(marker)}, tmp_path / "evil.pt")
    run_ = cli("classify", "--resume", str(tmp_path / "evil.pt"), "--epochs", "2")
    run_.assert_usage_error("--resume")
    assert not marker.exists()


def test_a_users_loss_that_becomes_nan_is_reported_as_diverged_with_exit_3(tmp_path):
    (tmp_path / "losses.py").write_text(LOSSES)
    proc = run("regress", "--loss", "losses:nan_later", "--epochs", "500", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "training diverged at epoch" in proc.stdout and proc.stderr == ""


def test_replay_and_print_config_round_trip_any_string_and_every_flag(tmp_path):
    """An experiment file from --print-config is valid TOML for every flag (--standardize/--no-standardize
    included) and any string (quotes, backslashes, newlines, control characters); a run made with them replays.
    (How a run is shown, --plot, --json, --quiet, is not an experiment setting: the file leaves it out.)"""
    weird = tmp_path / 'we"ird\\dir\nname\x01'
    printed = run("regress", "--standardize", "--plot", "--epochs", "5", "--out", str(weird), "--print-config")
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "e.toml").write_text(printed.stdout)
    import tomllib

    table = tomllib.loads(printed.stdout)["regress"]
    assert table["standardize"] is True and "plot" not in table and table["out"] == str(weird)
    proc = run("regress", "--config", str(tmp_path / "e.toml"), "--quiet", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    replay = run("replay", str(weird / "result.json"))
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stderr


@pytest.mark.parametrize("invocation, needle", [
    ("null", "no 'invocation'"), ('"regress"', "no 'invocation'"),
    ('{"command": "regress"}', "invocation.options"), ('{"command": "nope", "options": {}}', "invocation.command"),
    ('{"command": "regress", "options": {"lr": {"a": 1}}}', "'lr'"),
    ('{"command": "regress", "options": {}, "paths": [1]}', "invocation.paths"),
    ("[" * 100000 + "]" * 100000, "not a readable result.json")])
def test_result_files_with_a_broken_invocation_are_one_line(tmp_path, invocation, needle):
    (tmp_path / "r.json").write_text('{"invocation": ' + invocation + "}")
    assert_one_line(run("replay", str(tmp_path / "r.json")), 2, needle)


def test_a_fifo_as_the_result_file_is_refused_not_read(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    assert_one_line(run("replay", str(tmp_path / "fifo")), 2, "not a regular file")


def test_replay_runs_in_the_recorded_folder_so_relative_data_and_loss_modules_are_found(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mylosses.py").write_text("import torch\ndef huber(p, t):\n"
                                                   "    return torch.nn.functional.huber_loss(p, t)\n")
    (tmp_path / "work" / "t.csv").write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(20)))
    proc = run("regress", "--data", "t.csv", "--loss", "mylosses:huber", "--epochs", "20", "--out", "o", "--quiet",
               "--no-plot", cwd=tmp_path / "work")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "work" / "o" / "result.json").read_text())
    assert doc["invocation"]["paths"]["data"] == str(tmp_path / "work" / "t.csv")
    elsewhere = run("replay", str(tmp_path / "work" / "o" / "result.json"), cwd=tmp_path)
    assert elsewhere.returncode == 0 and "identical" in elsewhere.stdout, elsewhere.stderr


def test_replaying_a_digits_result_does_not_depend_on_home_or_losslab_data(tmp_path):
    proc = run("classify", "--epochs", "1", "--out", str(tmp_path / "o"), "--quiet", "--no-plot")
    assert proc.returncode == 0 and json.loads((tmp_path / "o" / "result.json").read_text())["config"]["data"][
        "data_dir"] is None
    again = run("replay", str(tmp_path / "o" / "result.json"), env={"HOME": str(tmp_path), "LOSSLAB_DATA": "/x"})
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_users_module_that_calls_sys_exit_is_one_line_not_its_exit_code(tmp_path):
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(7)\n")
    for args in (["regress", "--loss", "exits:f"], ["check-loss", "exits:f"],
                 ["compare-losses", "--losses", "exits:f,mse", "--executor", "process", "--epochs", "3"]):
        assert_one_line(run(*args, cwd=tmp_path), 2, "sys.exit(7)")


@pytest.mark.parametrize("body, needle", [
    ("return ((p - t) ** 2).mean() * (1 + 1j)", "complex"),
    ("return ((p - t) ** 2).sum().to_sparse()", "sparse"),
    ("raise ValueError('float32 only') if p.dtype == torch.float64 else None", "float32 only")])
def test_check_loss_on_odd_losses_reports_a_failed_check(tmp_path, body, needle):
    (tmp_path / "odd.py").write_text(f"import torch\ndef f(p, t):\n    {body}\n")
    proc = run("check-loss", "odd:f", "--json", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed" and needle in json.dumps(doc["checks"])


def test_stdout_full_or_closed_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([BIN, "regress", "--epochs", "3", "--json", "--quiet"], stdout=full,
                              stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
    assert proc.returncode == 4 and said(proc.stderr) == [
        "losslab: error: cannot write to stdout: No space left on device"]
    closed = subprocess.run(f"{BIN} regress --epochs 3 --json >&-", shell=True, capture_output=True, text=True,
                            env=ENV, timeout=120)
    assert_one_line(closed, 2, "--json")
    quiet = subprocess.run(f"{BIN} regress --epochs 3 >&-", shell=True, capture_output=True, text=True, env=ENV,
                           timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_model_that_writes_to_file_descriptor_1_cannot_break_the_json_document(tmp_path):
    (tmp_path / "fd1.py").write_text(
        "import os\nfrom torch import nn\n\nclass Net(nn.Module):\n"
        "    def __init__(self, in_features):\n        super().__init__()\n"
        "        self.lin = nn.Linear(in_features, 1)\n\n"
        "    def forward(self, x):\n        os.write(1, b'hello from fd 1\\n')\n        return self.lin(x)\n")
    proc = run("regress", "--model", "fd1:Net", "--epochs", "3", "--json", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok" and "hello from fd 1" in proc.stderr


def test_a_file_size_limit_on_stdout_fails_the_command_instead_of_cutting_the_document(tmp_path):
    """`ulimit -f 8` once gave an 8 KiB document and exit 0. Python ignores SIGXFSZ, so the write gets EFBIG."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    with open(tmp_path / "j.json", "w") as out:
        proc = subprocess.run([BIN, "compare-optimizers", "--epochs", "20", "--json", "--quiet", "--device", "cpu"],
                              stdout=out, stderr=subprocess.PIPE, text=True, env=ENV, timeout=120,
                              preexec_fn=limit)
    assert proc.returncode == 4 and said(proc.stderr) == [
        "losslab: error: cannot write to stdout: File too large"]


def test_a_tensorboard_run_folder_in_the_way_gets_a_version_and_a_read_only_one_is_refused(tmp_path):
    (tmp_path / "tb" / "regress").mkdir(parents=True)
    (tmp_path / "tb" / "regress" / "sgd-lr0.1-seed0").write_text("a file where the run folder goes")
    for _ in range(2):
        assert run("regress", "--epochs", "3", "--tensorboard", str(tmp_path / "tb"), "--quiet").returncode == 0
    assert sorted(p.name for p in (tmp_path / "tb" / "regress").iterdir()) == [
        "sgd-lr0.1-seed0", "sgd-lr0.1-seed0-version_1", "sgd-lr0.1-seed0-version_2"]
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "tb" / "regress").chmod(0o555)
        assert_one_line(run("regress", "--epochs", "3", "--tensorboard", str(tmp_path / "tb")), 2, "--tensorboard")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """One classify checkpoint (a real --save) that each damage below starts from."""
    path = tmp_path_factory.mktemp("checkpoint") / "c.pt"
    assert run("classify", "--epochs", "1", "--save", str(path), "--quiet").returncode == 0
    return path


@pytest.mark.parametrize("damage, needle", [
    (lambda c: c.pop("optimizer"), "has no 'optimizer'"), (lambda c: c.update(epoch="two"), "'epoch' is a str"),
    (lambda c: c.update(state_dict={k: v[:1] for k, v in c["state_dict"].items()}), "weights"),
    (lambda c: c.update(generator=__import__("torch").zeros(3, dtype=__import__("torch").uint8)), "generator")])
def test_damaged_checkpoints_are_one_line(tmp_path, checkpoint, damage, needle):
    import torch

    ckpt = torch.load(checkpoint, weights_only=True)
    damage(ckpt)
    torch.save(ckpt, tmp_path / "d.pt")
    assert_one_line(run("classify", "--epochs", "3", "--resume", str(tmp_path / "d.pt")), 2, needle)


def test_a_nul_byte_in_a_csv_is_refused_with_its_line(tmp_path):
    (tmp_path / "n.csv").write_bytes(b"x,y\n1,2\n3,\x004\n5,6\n")
    for command in ("regress", "classify"):
        assert_one_line(run(command, "--data", str(tmp_path / "n.csv")), 2, "line 3 holds a NUL byte")


def test_expect_compares_numbers_given_as_text_as_numbers():
    proc = run("regress", "--epochs", "30", "--quiet", "--expect", "epochs_run!=30.0")
    assert proc.returncode == 1
    assert run("regress", "--epochs", "30", "--quiet", "--expect", "epochs_run!=31").returncode == 0


@pytest.mark.parametrize("signum, code", [(15, 143), (1, 129)])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path, signum, code):
    import signal
    import time

    proc = subprocess.Popen([BIN, "regress", "--epochs", "2000000", "--out", str(tmp_path / "o"), "--no-plot",
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    time.sleep(6)
    proc.send_signal(signal.Signals(signum))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert json.loads((tmp_path / "o" / "result.json").read_text())["status"] == "interrupted"
    assert not list((tmp_path / "o").glob("*.tmp")) and "Traceback" not in err


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root, as CI and the dev machines run; skipped elsewhere)."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_disk_without_room_is_refused_before_training_and_a_disk_filling_up_is_survived(small_disk):
    for option in ("--out", "--tensorboard"):
        assert_one_line(run("regress", "--epochs", "400000", option, str(small_disk / option[2:])), 2,
                        f"{option}: the run writes about")
    import time

    # 60 epochs of 1,000 one-row batches: long enough (about 15 s) to fill the disk while it trains
    proc = subprocess.Popen([BIN, "regress", "--epochs", "60", "--samples", "1000", "--batch-size", "1",
                             "--tensorboard", str(small_disk / "tb"), "--quiet", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60  # the disk fills once training writes (not before its free-space check)
    while time.monotonic() < deadline and not any((small_disk / "tb").rglob("events.*")):
        time.sleep(0.2)
    time.sleep(1)
    subprocess.run(["dd", "if=/dev/zero", f"of={small_disk / 'fill'}", "bs=1k", "count=5000"], capture_output=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "losslab regress: ok" in out
    assert said(err) == [
        f"losslab: warning: --tensorboard: cannot write to {small_disk / 'tb'} (No space left on device); "
        "TensorBoard output stopped here, the run goes on"]


def test_images_too_large_to_train_are_refused_by_the_memory_estimate(tmp_path):
    """--image-size up to 4096 is accepted, but a cnn on 2048x2048 images in batches of 64 needs about 68 GiB of
    activations: refused before any allocation, naming --image-size."""
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "big" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (90 * i, 0, 0)).save(tmp_path / "big" / c / f"{i}.png")
    proc = run("classify", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "big"), "--image-size", "2048")
    assert_one_line(proc, 2, "--image-size")
    assert "GiB" in proc.stderr


def test_ctrl_c_before_the_first_epoch_ends_is_an_interruption_not_a_failure(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([BIN, "classify", "--dataset", "blobs", "--samples", "3000000", "--epochs", "1",
                             "--out", str(tmp_path / "o"), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    time.sleep(8)  # data made, the first (long) epoch under way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "internal error" not in err, err
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["status"] == "interrupted" and doc["epochs_run"] == 0


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf"])
def test_a_bad_progress_interval_is_one_line_naming_the_variable(value):
    proc = run("regress", "--epochs", "3", "--json", env={"LOSSLAB_PROGRESS_EVERY": value})
    assert_one_line(proc, 2, "LOSSLAB_PROGRESS_EVERY")
    assert proc.stdout == ""
