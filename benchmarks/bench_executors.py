"""Executors: a classify sweep of 8 CNN trials (compare-optimizers on CIFAR-10-format files this script writes,
2 optimizers x 4 seeds, a few epochs each) with --executor local (sequential, torch using both cores),
process (--jobs 2, one thread each) and ray (local runtime, 1 CPU per trial); and the fixed overhead of the
Ray and process executors on tiny regress trials (20 trials of 50 epochs), to say when they pay off.

Each configuration runs as a whole `losslab` process, alternating, `--pairs` times; prints the median wall
time of each and the speedups against local (target >= 1.6x on 2 cores for process and ray).
Run: .venv/bin/python benchmarks/bench_executors.py [--pairs 3] [--images 2000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = str(Path(sys.executable).parent / "losslab")


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([BIN, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    from losslab.components.fakedata import write_cifar10

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as root:
        write_cifar10(Path(root), per_batch=args.images // 5, test=args.images // 5)
        cnn = ["compare-optimizers", "--task", "classify", "--dataset", "cifar10", "--data-dir", root, "--model", "cnn",
               "--optims", "sgd,adam", "--seeds", "4", "--epochs", str(args.epochs), "--quiet", "--device", "cpu"]
        tiny = ["compare-optimizers", "--optims", "sgd,momentum,adam,rmsprop,adagrad", "--seeds", "4", "--epochs", "50",
                "--no-vectorize", "--quiet"]
        configs = {"local": [], "process": ["--executor", "process", "--jobs", "2"], "ray": ["--executor", "ray"]}
        times: dict[str, dict[str, list[float]]] = {"cnn": {k: [] for k in configs}, "tiny": {k: [] for k in configs}}
        for i in range(args.pairs):
            for name, extra in configs.items():
                times["cnn"][name].append(timed(cnn + extra, env))
                times["tiny"][name].append(timed(tiny + extra, env))
            print(f"round {i + 1}: " + ", ".join(f"{w} {n} {times[w][n][-1]:.1f} s" for w in times for n in configs),
                  flush=True)
    for workload, label in (("cnn", f"8 CNN trials, {args.images} images, {args.epochs} epochs"),
                            ("tiny", "20 tiny regress trials (fixed overhead)")):
        med = {n: statistics.median(v) for n, v in times[workload].items()}
        print(f"{label}: " + ", ".join(f"{n} {med[n]:.1f} s" for n in med))
        for n in ("process", "ray"):
            speed = med["local"] / med[n]
            verdict = ("OK" if speed >= 1.6 else "MISSED") if workload == "cnn" else ""
            print(f"  {n} vs local: {speed:.2f}x {'(target >= 1.6x) ' + verdict if workload == 'cnn' else ''}")
        if workload == "tiny":
            print(f"  overhead: process +{med['process'] - med['local']:.1f} s, ray +{med['ray'] - med['local']:.1f} s "
                  "per command (worker start-up, problem shipping, runtime start)")


if __name__ == "__main__":
    main()
