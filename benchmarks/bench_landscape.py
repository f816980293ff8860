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


def timed_grid(model, loss_fn, x, y, points, pairs: int, label: str) -> None:
    """Alternating: losslab's grid (it times both ways on the first points and takes the faster), forced vmap over
    chunks, and the model's own forward point by point (on a sample of points, scaled)."""
    import torch
    from torch.func import vmap

    from losslab.engine import landscape as surface

    f = surface.loss_at(model.eval(), loss_fn, x, y)
    sample = points[:: max(1, len(points) // 160)][:160]
    auto, forced, single, how = [], [], [], []
    for _ in range(pairs):
        t = time.perf_counter()
        surface.losses(model, loss_fn, x, y, points, how=how)
        auto.append(time.perf_counter() - t)
        t = time.perf_counter()
        with torch.no_grad():
            torch.cat([vmap(f)(points[i:i + 256]) for i in range(0, len(points), 256)])
        forced.append(time.perf_counter() - t)
        t = time.perf_counter()
        surface.losses_one_by_one(model, loss_fn, x, y, sample)
        single.append((time.perf_counter() - t) * len(points) / len(sample))
    med = statistics.median
    print(f"{label}: losslab's grid median {med(auto):.3f} s ({how[-1].split(',')[0]}); vmap over chunks of 256 "
          f"{med(forced):.3f} s; point by point {med(single):.3f} s (scaled from {len(sample)} points)")
    print(f"  point by point / losslab: median {med([s / a for s, a in zip(single, auto)]):.2f}x; point by point "
          f"/ vmap: median {med([s / b for s, b in zip(single, forced)]):.2f}x over {pairs} pairs (target >= 8x)")


def plane(pairs: int) -> None:
    import torch

    from losslab.api import _config
    from losslab.commands import landscape as command
    from losslab.config import LandscapeConfig
    from losslab.engine import landscape as surface
    from losslab.engine.events import Consumer
    from losslab.engine.problems import build_problem

    for task in ("regress", "classify"):
        run = _config(task, {"device": "cpu"}).resolved()
        cfg = LandscapeConfig(run=run).resolved()
        problem = build_problem(run)
        [path] = command.train_paths(cfg, problem, Consumer())
        final, model = path.points[-1], path.model
        g = torch.Generator().manual_seed(0)
        d1, d2 = surface.filter_normalised(model, g), surface.filter_normalised(model, g)
        if task == "regress":  # two parameters: the surface's own directions
            d1, d2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
        axis = torch.linspace(-1, 1, 41).tolist()
        points = surface.grid_points(final, d2, d1, axis, axis)
        label = (f"41x41 {'surface, regress (2 parameters' if task == 'regress' else 'plane, digits MLP ('}"
                 f"{'' if task == 'regress' else format(len(final), ',') + ' parameters'}, {len(problem.x):,} rows)")
        timed_grid(model, problem.loss_fn, problem.x, problem.y, points, pairs, label)


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
