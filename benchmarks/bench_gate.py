"""Whole-process wall time of `losslab gate BASELINE.json` (the default regress rerun with 5 seeds, stacked, and
compared) against one `losslab regress` run (target: <= 1.3x).

The baseline is written once by `losslab regress --json`. The two commands alternate (at least 8 pairs), each
pair gives a ratio, and the median of the paired ratios is the figure (minimum and maximum beside it).

Run: .venv/bin/python benchmarks/bench_gate.py [--pairs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit {proc.returncode}: {proc.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    exe = shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.json"
        base.write_text(subprocess.run([exe, "regress", "--json", "--quiet", "--device", "cpu"], capture_output=True,
                                       text=True, check=True).stdout)
        one = [exe, "regress", "--quiet", "--no-plot", "--device", "cpu"]
        gate = [exe, "gate", str(base), "--seeds", "5"]
        wall(one), wall(gate)  # warm the file cache
        ratios, ones, gates = [], [], []
        for _ in range(max(8, args.pairs)):
            a, b = wall(one), wall(gate)
            ones.append(a)
            gates.append(b)
            ratios.append(b / a)
    print(f"one regress run: median {statistics.median(ones):.2f} s; gate with 5 seeds: median "
          f"{statistics.median(gates):.2f} s")
    print(f"gate / regress: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}) "
          f"over {len(ratios)} pairs; target <= 1.3")


if __name__ == "__main__":
    main()
