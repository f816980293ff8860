"""The CLI through Typer's runner: JSON, files, gates, exit codes, and one-line errors for bad input."""

import json

import numpy as np
import pytest

from conftest import written
from losslab.cli import app
from losslab.components.losses import LOSSES
from losslab.components.optimizers import OPTIMIZERS
from losslab.components.regression_data import least_squares, synthetic


def test_json_document_is_the_only_thing_on_stdout(cli):
    run = cli("regress", "--optim", "adam", "--lr", "0.05", "--epochs", "800", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    for key in ("command", "status", "config", "final_loss", "epochs_run", "params", "true_params", "optimum",
                "elapsed_s", "versions"):
        assert key in doc
    assert doc["command"] == "regress" and doc["status"] == "ok" and doc["epochs_run"] == 800
    assert doc["config"]["optim"] == {"name": "adam", "lr": 0.05, "momentum": None, "weight_decay": None, "args": [],
                                      "betas": None, "eps": None}
    assert doc["true_params"] == {"w": 2.0, "b": 3.0}
    data = synthetic()
    w, b = least_squares(data.x, data.y)
    assert doc["optimum"]["params"]["w"] == pytest.approx(w[0]) and doc["optimum"]["params"]["b"] == pytest.approx(b)
    assert doc["params"]["w"] == pytest.approx(w[0], abs=1e-3)
    assert set(doc["versions"]) == {"python", "torch", "losslab"}
    assert "epoch" in run.stderr  # progress went to stderr


def test_same_command_twice_gives_identical_numbers(cli):
    args = ("regress", "--optim", "sgd", "--batch-size", "8", "--epochs", "5", "--json", "--quiet", "--seed", "4")
    a, b = cli(*args).json(), cli(*args).json()
    assert a["params"] == b["params"] and a["final_loss"] == b["final_loss"]


def test_expectations_pass_and_fail(cli):
    ok = cli("regress", "--optim", "adam", "--lr", "0.01", "--quiet", "--expect", "w=2±0.05", "--expect", "b=3+-0.05",
             "--target-loss", "0.02")
    assert ok.exit_code == 0, ok.stderr
    bad = cli("regress", "--epochs", "3", "--quiet", "--expect", "w=2±0.001", "--expect", "b=3+-10", "--json")
    assert bad.exit_code == 1
    assert "losslab: expectation FAILED: w=2±0.001" in bad.stderr
    assert "expectation FAILED: b=" not in bad.stderr and "passed: b=3+-10" in bad.stderr
    doc = bad.json()
    assert [e["passed"] for e in doc["expectations"]] == [False, True]


def test_divergence_exits_3_with_status(cli, tmp_path):
    run = cli("regress", "--lr", "100", "--json", "--quiet", "--out", str(tmp_path / "o"))
    assert run.exit_code == 3
    doc = run.json()
    assert doc["status"] == "diverged" and doc["epochs_run"] < 1000 and doc["diverged_epoch"] == doc["epochs_run"]
    saved = json.loads((tmp_path / "o" / "result.json").read_text())
    assert saved["status"] == "diverged"


def test_out_writes_result_history_and_plot(cli, tmp_path):
    out = tmp_path / "run1"
    run = cli("regress", "--epochs", "50", "--quiet", "--out", str(out), "--json")
    assert run.exit_code == 0, run.stderr
    assert written(out) == ["history.csv", "loss.png", "result.json"]
    assert json.loads((out / "result.json").read_text()) == run.json()
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0] == ("epoch,train_loss,w,b,grad_norm,grad_norm/weight,grad_norm/bias,update_ratio/weight,"
                        "update_ratio/bias,lr,elapsed_s") and len(lines) == 51
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_data_and_many_features(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = x @ np.array([1.0, -3.0]) + 0.5
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n" + "\n".join(f"{r[0]},{r[1]},{t}" for r, t in zip(x, y)))
    doc = cli("regress", "--data", str(path), "--optim", "lbfgs", "--epochs", "10", "--json", "--quiet").json()
    assert doc["true_params"] is None
    # a header names the weights after its columns
    assert doc["params"]["w_a"] == pytest.approx(1.0, abs=1e-4)
    assert doc["params"]["w_b"] == pytest.approx(-3.0, abs=1e-4)
    path.write_text("\n".join(f"{r[0]},{r[1]},{t}" for r, t in zip(x, y)))  # no header: w1, w2
    doc = cli("regress", "--data", str(path), "--optim", "lbfgs", "--epochs", "10", "--json", "--quiet").json()
    assert doc["params"]["w1"] == pytest.approx(1.0, abs=1e-4) and doc["params"]["w2"] == pytest.approx(-3.0, abs=1e-4)
    doc = cli("regress", "--true-w", "1,2,3", "--epochs", "5", "--json", "--quiet").json()
    assert set(doc["params"]) == {"w1", "w2", "w3", "b"} and doc["config"]["data"]["features"] == 3


def test_custom_loss_by_import_path(cli, tmp_path, monkeypatch):
    (tmp_path / "myloss.py").write_text("def wmse(pred, target):\n    return (2 * (pred - target) ** 2).mean()\n")
    monkeypatch.chdir(tmp_path)
    run = cli("regress", "--loss", "myloss:wmse", "--epochs", "20", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert run.json()["config"]["loss"]["name"] == "myloss:wmse"


@pytest.mark.parametrize("args, option", [
    (["--lr", "-1"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "abc"], "--lr"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--optim", "adamax9"], "--optim"),
    (["--loss", "nope"], "--loss"),
    (["--loss", "cross-entropy"], "--loss"),
    (["--loss", "nomod_xyz:f"], "--loss"),
    (["--device", "tpu"], "--device"),
    (["--expect", "w~2"], "--expect"),
    (["--expect", "zz=1±1"], "--expect"),
    (["--momentum", "0.9", "--optim", "adam"], "--momentum"),
    (["--betas", "0.9"], "--betas"),
    (["--true-w", "1,x"], "--true-w"),
    (["--target-loss", "inf"], "--target-loss"),
    (["--noise", "-1"], "--noise"),
    (["--data", "/no/such.csv"], "--data"),
    (["--clip-grad-norm", "-2"], "--clip-grad-norm"),
    (["--bogus"], "--bogus"),
])
def test_bad_input_is_one_line_naming_the_option_and_exit_2(cli, args, option):
    cli("regress", *args).assert_usage_error(option)


def test_unwritable_out_is_refused_before_training(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = cli("regress", "--out", str(blocker / "sub"))
    assert run.exit_code == 2 and "--out" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_help_lists_the_tasks_losses_points_to_the_optimizer_list_and_gives_exit_codes(cli):
    text = cli("regress", "--help").stdout
    flat = " ".join(text.split())
    assert "`losslab optimizers`" in flat  # the catalogue is a command of its own ...
    listed = cli("optimizers").stdout
    for name in OPTIMIZERS.names():  # ... that lists every registered optimizer
        assert name in listed
    for entry in LOSSES:
        assert (entry.name in flat.replace("cross-entropy", "")) == ("regression" in entry.meta["tasks"]), entry.name
    assert "130" in flat and "diverged" in flat


def test_every_command_option_is_documented():
    import typer

    command = typer.main.get_command(app).commands["regress"]
    for param in command.params:
        assert param.help, f"{param.name} has no help"


@pytest.mark.slow
def test_version_completion_and_python_dash_m():
    import os
    import subprocess
    import sys

    from losslab import __version__

    exe = os.path.join(os.path.dirname(sys.executable), "losslab")
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout == f"losslab {__version__}\n"
    mod = subprocess.run([sys.executable, "-m", "losslab", "--version"], capture_output=True, text=True)
    assert mod.stdout == f"losslab {__version__}\n" and mod.returncode == 0
    # the shell named explicitly (typer otherwise detects the calling shell, which a test runner may not have)
    script = subprocess.run([exe, "--show-completion", "bash"], capture_output=True, text=True,
                            env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert "_losslab_completion" in script.stdout
    env = {**os.environ, "COMP_WORDS": "losslab regress --opt", "COMP_CWORD": "2", "_LOSSLAB_COMPLETE": "complete_bash"}
    assert subprocess.run([exe], capture_output=True, text=True, env=env).stdout.split() == ["--optim", "--optim-arg"]


def test_help_groups_options_in_panels_and_lists_what_applies_to_the_task(cli):
    text = cli("regress", "--help").stdout
    panels = [line for line in text.splitlines() if line.endswith(" options:")]
    assert panels[:5] == ["Optimizer options:", "Loss options:", "Data options:", "Model options:",
                          "Training options:"]
    loss = text[text.index("Loss options:"):text.index("Data options:")]
    assert "huber" in loss and "cross-entropy" not in loss and "digits" not in text
    many = cli("compare-optimizers", "--help").stdout
    assert "Many runs options:" in many and "Executors options:" in many


HELPED = ["regress", "classify", "lm", "lr-sweep", "compare-optimizers", "compare-losses", "landscape", "benchmark",
          "check-loss", "predict", "generate", "gate", "diff", "replay", "optimizers"]


@pytest.mark.parametrize("command", HELPED)
def test_every_commands_help_fits_in_120_lines_at_80_columns_for_each_task(command):
    import os
    import subprocess
    import sys

    for task in ("regress", "classify", "lm"):
        args = [sys.executable, "-m", "losslab", command, "--help"] + (["--task", task] if task != "regress" else [])
        done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
        if done.returncode == 2:  # (a command without --task)
            continue
        lines = done.stdout.splitlines()
        assert len(lines) <= 120 and max(len(line) for line in lines) <= 80, (command, task, len(lines))


@pytest.mark.parametrize("command", ["lr-sweep", "compare-optimizers", "compare-losses", "landscape"])
def test_a_many_run_commands_help_lists_the_options_of_one_task_in_that_tasks_words(cli, command):
    """--task before or after --help picks the task whose options are listed (the default task's without one);
    the other tasks' options are left out and named by the command that shows them."""
    def section(text: str, title: str) -> set[str]:
        lines = text.split(f"{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        return {line.split()[0] for line in lines if line.startswith("  --")}

    text = cli(command, "--help").stdout
    assert {"--true-w", "--noise"} <= section(text, "Regress options (--task regress)")
    assert "--depth" not in text and "--tokenizer" not in text and "--task classify --help" in text
    classify = cli(command, "--task", "classify", "--help").stdout
    assert cli(command, "--help", "--task", "classify").stdout == classify
    assert {"--depth", "--data-dir", "--subset"} <= section(classify, "Classify options (--task classify)")
    assert "--true-w" not in classify and "synthetic (y = 2x" not in classify and "digits" in classify
    lm = cli(command, "--task", "lm", "--help").stdout
    assert {"--tokenizer", "--block-size", "--layers"} <= section(lm, "Language-model options (--task lm)")
    assert "--epochs" in section(text, "Training options")


def _broken_import(cause: BaseException) -> None:
    """What a pybind11 extension (matplotlib's) raises when its import is interrupted: ImportError from the cause."""
    try:
        raise cause
    except BaseException as exc:
        raise ImportError("initialization failed") from exc


@pytest.mark.parametrize("cause, code, line", [(KeyboardInterrupt(), 130, "losslab: interrupted"),
                                               (ValueError("planted"), 4, "losslab: internal error: ImportError")])
def test_an_import_that_ctrl_c_broke_is_an_interruption_not_an_internal_error(cli, monkeypatch, cause, code, line):
    """A second Ctrl-C while the plots' matplotlib was being imported ended as 'internal error: ImportError:
    initialization failed', exit 4 (seen in CI); an ImportError with no Ctrl-C behind it still is one."""
    from losslab.commands import regress

    monkeypatch.setattr(regress, "main", lambda *a, **k: _broken_import(cause))
    run = cli("regress", "--epochs", "1", "--device", "cpu")
    assert run.exit_code == code, run.stderr
    assert run.stderr.strip().splitlines()[0].startswith(line) and len(run.stderr.strip().splitlines()) == 1


def test_the_command_list_is_in_workflow_order_with_whole_summaries():
    import os
    import subprocess
    import sys

    from losslab.cli.typer_app import WORKFLOW, app

    text = subprocess.run([sys.executable, "-m", "losslab", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"}).stdout
    listed = text.split("Commands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.startswith("  ") and not line.startswith("    ")]
    assert names == list(WORKFLOW) and "..." not in text.split("Commands:")[1]
    assert len([line for line in listed if line.strip()]) == len(WORKFLOW)  # one line each at 80 columns
    assert {c.name for c in app.registered_commands} == set(WORKFLOW)  # every command has its summary


def test_positional_arguments_are_listed_under_arguments_by_name(cli):
    text = cli("gate", "--help").stdout
    assert "Usage: losslab gate [OPTIONS] BASELINE [CANDIDATE]" in text and "{BASELINE}" not in text
    arguments, options = text.split("Arguments:", 1)[1].split("options:", 1)[0], text.split("Arguments:")[0]
    assert arguments.lstrip().startswith("BASELINE ") and "CANDIDATE" in arguments and "<str>" not in arguments
    assert "BASELINE <str>" not in text and "BASELINE" not in options.split("Usage:")[1].split("\n", 1)[1]


@pytest.mark.parametrize("command", ["regress", "compare-optimizers", "gate", "benchmark"])
def test_metavars_read_as_words(cli, command):
    text = cli(command, "--help").stdout
    assert "<" not in text.replace("<=", "") and "list[" not in text  # (typer's <int>, <list[str]>)
    assert command != "compare-optimizers" or ("--lr FLOAT" in text and "--optim-arg TEXT…" in text)


def test_every_commands_help_ends_with_examples_that_parse():
    """Each example is a real invocation: its options exist and take the values given (click parses them against
    the command without running it); every command has 1–6 of them and shows them in --help."""
    import shlex

    import typer.main

    from losslab.cli.typer_app import EXAMPLES, app

    group = typer.main.get_command(app)
    assert set(EXAMPLES) == {c.name for c in app.registered_commands}
    for name, examples in EXAMPLES.items():
        command = group.get_command(None, name)  # type: ignore[arg-type]
        assert 1 <= len(examples) <= 6
        for example in examples:
            words = shlex.split(example)
            assert words[:2] == ["losslab", name], example
            command.make_context(name, words[2:], resilient_parsing=False)
        helped = command.get_help(command.make_context(name, [], resilient_parsing=True))
        assert "Examples:" in helped and examples[0] in helped
