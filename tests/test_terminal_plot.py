"""Curves in the terminal: plotext line plots of the same records as the PNGs, plain text, 80 columns."""

import json
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
    first = float((tmp_path / "o" / "history.csv").read_text().splitlines()[1].split(",")[1])
    top_tick = re.search(r"^\s*([0-9.]+)┤", run.stdout, re.M).group(1)  # the y axis starts at the first loss
    assert float(top_tick) == pytest.approx(first, abs=1e-3)


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


@pytest.mark.parametrize("at, label", [(2.0, "← suggested 2"), (9.0, "suggested 9 →")])
def test_a_marked_value_is_labelled_beside_its_line_on_the_side_with_room(at, label):
    from losslab.outputs.terminal_plot import curves

    text = curves([("loss", list(range(1, 11)), [10.0 - i for i in range(10)])], title="t", xlabel="x",
                  mark=(at, f"suggested {at:g}"))
    [row] = [line for line in text.splitlines() if label in line]
    line = text.splitlines()[1].index("┬")  # where the vertical line meets the frame's top
    assert (row.index(label) == line) if label.startswith("←") else (row.index(label) + len(label) == line + 1)
