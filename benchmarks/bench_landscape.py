"""Landscape speed: a 41×41 plane on the default digits MLP (target <= 10 s), batched (torch.func vmap over chunks
of parameter vectors) against the model evaluated point by point (target >= 8x), and what --track-sharpness 10
adds to the default classify run (target <= 30 %, whole processes).

The plane and the point-by-point reference are timed in one process on the same points (the point-by-point one on
a sample of rows, scaled), alternating, median of the pairs; the classify runs alternate as whole processes
(at least 8 pairs), median of the paired ratios.

Run: .venv/bin/python benchmarks/bench_landscape.py [--pairs 8]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def plane(pairs: int) -> None:
    import torch

    from losslab.api import _config
    from losslab.commands import landscape as command
    from losslab.config import LandscapeConfig
    from losslab.engine import landscape as surface
    from losslab.engine.events import Consumer
    from losslab.engine.problems import build_problem

    run = _config("classify", {"device": "cpu"}).resolved()
    cfg = LandscapeConfig(run=run).resolved()
    problem = build_problem(run)
    [path] = command.train_paths(cfg, problem, Consumer())
    final, model = path.points[-1], path.model
    g = torch.Generator().manual_seed(0)
    d1, d2 = surface.filter_normalised(model, g), surface.filter_normalised(model, g)
    axis = torch.linspace(-1, 1, 41).tolist()
    points = surface.grid_points(final, d2, d1, axis, axis)
    sample = points[:: len(points) // 160][:160]
    batched, single = [], []
    for _ in range(pairs):
        t = time.perf_counter()
        surface.losses(model, problem.loss_fn, problem.x, problem.y, points)
        batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        surface.losses_one_by_one(model, problem.loss_fn, problem.x, problem.y, sample)
        single.append((time.perf_counter() - t) * len(points) / len(sample))
    ratios = [s / b for s, b in zip(single, batched)]
    print(f"41x41 plane, digits MLP ({len(final):,} parameters, {len(problem.x):,} rows): batched median "
          f"{statistics.median(batched):.2f} s (target <= 10 s); point by point (scaled from {len(sample)} points) "
          f"median {statistics.median(single):.2f} s")
    print(f"point by point / batched: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max "
          f"{max(ratios):.2f}) over {pairs} pairs; target >= 8x")


def tracking(pairs: int) -> None:
    exe = shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"
    base = [exe, "classify", "--quiet", "--no-plot", "--device", "cpu"]
    tracked = base + ["--track-sharpness", "10"]

    def wall(cmd: list[str]) -> float:
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t

    wall(base)
    ratios = [wall(tracked) / wall(base) for _ in range(max(8, pairs))]
    print(f"classify with --track-sharpness 10 / without: median {statistics.median(ratios):.3f} (min "
          f"{min(ratios):.3f}, max {max(ratios):.3f}) over {len(ratios)} whole-process pairs; target <= 1.30")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    plane(args.pairs)
    tracking(args.pairs)


if __name__ == "__main__":
    main()
