"""Curves in the terminal: plotext line plots of the same records as the PNGs, plain text, 80 columns."""

import json
import math
import re

import pytest

ANSI = re.compile(r"\x1b\[")


def test_plot_on_demand_draws_the_recorded_curve_in_plain_text(cli, tmp_path):
    run = cli("regress", "--epochs", "200", "--plot", "--quiet", "--out", str(tmp_path / "o"))
    assert run.exit_code == 0, run.stderr
    assert "training loss (log scale)" in run.stdout and "epoch" in run.stdout
    assert not ANSI.search(run.stdout)
    plot_lines = [line for line in run.stdout.splitlines() if any(c in line for c in "┤│┬┌└")]
    assert len(plot_lines) >= 10 and max(len(line) for line in plot_lines) <= 80
    losses = [float(line.split(",")[1]) for line in (tmp_path / "o" / "history.csv").read_text().splitlines()[1:]]
    y_ticks = [float(t) for t in re.findall(r"^\s*([0-9.e+-]+)┤", run.stdout, re.M)]
    # a log axis: powers of ten within the curve's range, in scientific notation below 0.001
    assert len(y_ticks) >= 2 and all(min(losses) <= t <= max(losses) for t in y_ticks)
    assert all(math.log10(t) == round(math.log10(t)) for t in y_ticks)
    x_axis = run.stdout.splitlines()[[i for i, line in enumerate(run.stdout.splitlines()) if "└" in line][0] + 1]
    assert x_axis.split() == ["1", "50", "100", "150", "200"]  # whole epochs, round steps


def test_off_a_terminal_and_with_json_there_is_no_plot_unless_asked(cli):
    assert "┤" not in cli("regress", "--epochs", "20").stdout  # CliRunner is not a terminal
    assert "┤" not in cli("regress", "--epochs", "20", "--no-plot").stdout
    run = cli("regress", "--epochs", "20", "--json", "--plot")
    assert json.loads(run.stdout)["command"] == "regress"  # stdout stays the JSON document
    assert "┤" in run.stderr


@pytest.mark.parametrize("args, title", [
    (["classify", "--dataset", "blobs", "--epochs", "5"], "loss"),
    (["compare-optimizers", "--optims", "sgd,adam", "--seeds", "2", "--epochs", "30"], "median train loss over seeds"),
    (["compare-losses", "--losses", "mse,l1", "--seeds", "2", "--epochs", "30"], "median training loss"),
    (["lr-sweep", "--lrs", "0.01,0.1,0.5", "--epochs", "30"], "final loss against the learning rate"),
    (["lr-sweep", "--range-test", "--steps", "40"], "LR range test (last 5 steps not drawn)"),
])
def test_every_command_draws_its_curves(cli, args, title):
    run = cli(*args, "--plot", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert title in run.stdout and not ANSI.search(run.stdout)
    assert max(len(line) for line in run.stdout.splitlines() if "┤" in line or "┬" in line) <= 80


def test_series_have_their_own_markers_and_a_legend_under_the_plot():
    from losslab.outputs.terminal_plot import curves

    text = curves([("train", [1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0]), ("valid", [1, 2, 3, 4], [4.5, 3.8, 3.1, 2.9])],
                  title="loss", xlabel="epoch")
    *plot, legend = text.splitlines()
    assert legend == "• train   + valid"
    body = "\n".join(plot)
    assert "•" in body and "+" in body and "train" not in body and "valid" not in body


@pytest.mark.parametrize("at", [2.0, 9.0])
def test_a_marked_value_is_a_line_named_in_the_legend_never_text_on_the_curve(at):
    from losslab.outputs.terminal_plot import curves

    text = curves([("loss", list(range(1, 11)), [10.0 - i for i in range(10)])], title="t", xlabel="x",
                  mark=(at, f"suggested {at:g}"))
    *plot, legend = text.splitlines()
    assert legend == f"│ suggested {at:g}" and not any("suggested" in line for line in plot)
    top = plot[1]  # the frame's top: the vertical line meets it where the x axis has `at`
    axis = plot[[i for i, line in enumerate(plot) if "└" in line][0]]
    assert "┬" in top and "┴" in axis
