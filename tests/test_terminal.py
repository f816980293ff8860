"""The live display in a real pseudo-terminal, 80 and 160 columns wide: no line wider than the terminal, the
epoch counter and the loss unabridged, parameters that do not fit collapsed into one column, and the time left
shown while it trains."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes in a pseudo-terminal

BIN = shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
CURSOR = re.compile(r"\x1b\[[0-9]*[ABK]")  # cursor up/down, erase line: where a redraw starts a new line


def in_terminal(args: list[str], columns: int, raw: bool = False, **more_env: str) -> str:
    """What `losslab ARGS` draws in a pseudo-terminal of `columns` columns, escape codes removed (unless raw)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "CI")}
    env["TERM"] = "xterm-256color"
    env.update(more_env)
    proc = subprocess.Popen([BIN, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    if raw:
        return out.decode("utf-8", "replace")
    return ANSI.sub("", CURSOR.sub("\n", out.decode("utf-8", "replace"))).replace("\r", "\n")


@pytest.mark.parametrize("columns", [80, 160])
def test_the_live_table_fits_the_terminal_and_keeps_the_numbers_whole(columns):
    text = in_terminal(["regress", "--true-w", "2,-1,0.5,4,3", "--epochs", "3000"], columns)  # (~1 s: has an ETA)
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= columns
    [last] = [line for line in lines if "│ 3000/3000 │" in line][-1:]
    cells = [cell.strip() for cell in last.split("│") if cell.strip()]
    assert cells[0] == "3000/3000" and "…" not in last  # the epoch counter and every number whole
    assert re.fullmatch(r"[0-9.e+-]+\*?", cells[1])  # the loss
    assert "‖4 more‖" in text  # six parameters do not fit: the first two, then the norm of the rest
    assert "starting: building the model, first step" in text and " left" in text
    assert "━" in text  # Rich's progress bar under the table
    if columns == 80:  # the per-layer columns have no room: the run says so once
        assert "(no room at 80 columns for: min layer grad, max layer grad" in text


def test_a_range_test_shows_steps_in_one_table_for_all_seeds_with_a_progress_bar():
    text = in_terminal(["lr-sweep", "--range-test", "--seeds", "3", "--no-plot"], 80)
    assert max(len(line) for line in text.split("\n")) <= 80
    assert "┃ epoch" not in text and "┃ seed ┃" in text and "step" in text
    last = text[text.rindex("┃ seed ┃"):]  # the last frame: one row per seed, each with its step counter
    assert len(re.findall(r"│ +\d+ │ +\d+/100 │", last)) == 3
    assert "of 300 (3 seeds)" in text and "━" in text


def test_a_many_run_table_has_a_progress_bar_over_every_run():
    text = in_terminal(["compare-optimizers", "--task", "classify", "--epochs", "5", "--seeds", "2", "--no-plot"], 80)
    assert "runs done" in text and "8 of 8 runs done" in text and "━" in text
    assert max(len(line) for line in text.split("\n")) <= 80


def test_curves_have_a_colour_per_series_on_a_colour_terminal_and_none_with_no_color():
    args = ["compare-optimizers", "--optims", "sgd,adam", "--seeds", "1", "--epochs", "50"]
    text = in_terminal(args, 80, raw=True)
    legend = text[text.rindex("sgd"):]
    # bright blue (not blue: dark on a dark terminal), then red; the legend's colours are the curves'
    assert "\x1b[38;5;12m•\x1b[0m sgd" in text and "\x1b[38;5;1m+\x1b[0m adam" in legend
    assert "\x1b[38;5;12m" in text[:text.rindex("\x1b[38;5;12m•")]  # the sgd curve drawn in it
    plain = in_terminal(args, 80, raw=True, NO_COLOR="1")
    assert "• sgd   + adam" in plain and "\x1b[38;5;12m" not in plain
