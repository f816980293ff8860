"""Helpers shared by the benchmark scripts: timing whole commands and finding the installed `losslab`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


def losslab_bin() -> str:
    """The `losslab` console script installed beside this Python."""
    return shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"


def wall(cmd: list[str], check: bool = True) -> float:
    """Wall seconds of one run of `cmd`, output discarded."""
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=check)
    return time.perf_counter() - start


def ratio_to_regress(cmd: list[str], repeats: int) -> tuple[float, list[float], list[float]]:
    """min wall of `cmd` over min wall of `losslab regress --quiet`, interleaved `repeats` times."""
    one = [losslab_bin(), "regress", "--quiet", "--device", "cpu"]
    wall(one)  # warm the page cache
    ones, many = [], []
    for _ in range(repeats):
        ones.append(wall(one))
        many.append(wall(cmd))
    return min(many) / min(ones), ones, many


def alternating_pairs(timed: Callable[[bool], tuple[float, Any]],
                      pairs: int) -> tuple[list[float], list[float], list[float], Any, Any]:
    """`timed(False)` then `timed(True)`, `pairs` times (a noisy neighbour slows both sides of a pair alike): their
    times, each pair's ratio false/true, and the last outputs of each side."""
    off_times, on_times, ratios = [], [], []
    off = on = None
    for _ in range(pairs):
        t, off = timed(False)
        off_times.append(t)
        t, on = timed(True)
        on_times.append(t)
        ratios.append(off_times[-1] / on_times[-1])
    return off_times, on_times, ratios, off, on
