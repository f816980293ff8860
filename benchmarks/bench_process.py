"""Whole-process wall time and peak memory of `losslab regress --optim adam --lr 0.01 --quiet`
against the plain tutorial script run as a process (targets: <= 1.05x both).

Measured as an outside timer sees it: the two commands alternate (at least 8 pairs), each pair gives a ratio,
and the median of the paired ratios is the figure (the minimum is printed beside it).

Run: .venv/bin/python benchmarks/bench_process.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN_SCRIPT = """\
import numpy as np
import torch
from torch import nn

np.random.seed(42)
x = np.random.randn(100, 1)
noise = np.random.randn(100, 1)
y = 2 * x + 3 + 0.1 * noise
X, Y = torch.from_numpy(x).float(), torch.from_numpy(y).float()

torch.manual_seed(0)
model = nn.Linear(1, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
loss_fn = nn.MSELoss()
for epoch in range(1000):
    model.train()
    loss = loss_fn(model(X), Y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"w={model.weight.item():.5f} b={model.bias.item():.5f} loss={loss.item():.6f}")
"""


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process, measured with wait4 for that child only."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit {proc.returncode}: {proc.stderr.read().decode()}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    args.repeats = max(8, args.repeats)
    losslab = shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "tutorial.py"
        script.write_text(PLAIN_SCRIPT)
        plain_cmd = [sys.executable, str(script)]
        ours_cmd = [losslab, "regress", "--optim", "adam", "--lr", "0.01", "--quiet", "--device", "cpu"]
        run(plain_cmd), run(ours_cmd)  # warm the page cache
        plain, ours = [], []
        for _ in range(args.repeats):
            plain.append(run(plain_cmd))
            ours.append(run(ours_cmd))
    for label, rows in (("plain script", plain), ("losslab regress", ours)):
        walls = [w for w, _ in rows]
        print(f"{label:16s} wall min {min(walls):.3f} s  median {statistics.median(walls):.3f} s  "
              f"peak RSS {max(m for _, m in rows):.1f} MiB")
    ratios = [o / p for (o, _), (p, _) in zip(ours, plain)]
    wall_ratio = statistics.median(ratios)
    mem_ratio = max(m for _, m in ours) / max(m for _, m in plain)
    print(f"wall-time ratio, median of {len(ratios)} alternating pairs: {wall_ratio:.3f}  (min {min(ratios):.3f}; "
          f"target <= 1.05)  {'OK' if wall_ratio <= 1.05 else 'MISSED'}")
    print(f"peak-memory ratio:         {mem_ratio:.3f}  (target <= 1.05)  {'OK' if mem_ratio <= 1.05 else 'MISSED'}")


if __name__ == "__main__":
    main()
