"""Executors: whole `losslab` processes with --executor local (sequential, torch using both cores for each trial),
process (--jobs 2, one thread each) and ray (local runtime, 1 CPU per trial), alternating, `--pairs` times, on
three workloads:

- cnn: 8 CNN trials (compare-optimizers on CIFAR-10-format files this script writes, 2 optimizers x 4 seeds, a
  few epochs each) — the issue's target: process and ray >= 1.6x faster than local on 2 cores. Also timed:
  local with one thread (OMP_NUM_THREADS=1), and one trial with 1 and 2 threads, which bound what two
  single-thread workers can gain over one two-thread trial at a time (2 x t(2 threads) / t(1 thread)).
- mlp: 8 MLP trials with dropout (not stackable) on the bundled digits, 120 epochs: small matrix products that
  torch's intra-op threads do not speed up, the case the process executor is for on a small machine.
- tiny: 20 tiny regress trials (--no-vectorize, 50 epochs): the executors' fixed overhead per command.

Prints the median wall time of each and the speedups against local.
Run: .venv/bin/python benchmarks/bench_executors.py [--pairs 3] [--images 2000] [--epochs 2] [--workloads cnn,mlp,tiny]
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


def trial_threads(root: str, epochs: int) -> dict[int, float]:
    """Seconds one CNN trial takes in this process with 1 and with 2 intra-op threads (median of 3 each)."""
    import torch

    from losslab.components.datasets import load_classification
    from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig, OptimConfig, TrainConfig
    from losslab.engine.problems import ClassificationProblem
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials

    cfg = ClassifyConfig(data=ClassifyDataConfig("cifar10", data_dir=root), model=ModelConfig("cnn"),
                         train=TrainConfig(epochs=epochs, device="cpu"))
    problem = ClassificationProblem(cfg, load_classification(cfg.data))
    spec = [RunSpec("sgd", OptimConfig("sgd", lr=0.01), 0)]
    run_trials(problem, spec)  # warm up
    times: dict[int, list[float]] = {1: [], 2: []}
    before = torch.get_num_threads()
    for _ in range(3):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            start = time.perf_counter()
            run_trials(problem, spec)
            times[threads].append(time.perf_counter() - start)
    torch.set_num_threads(before)
    return {t: statistics.median(v) for t, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workloads", default="cnn,mlp,tiny")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' CIFAR-format file writer
    from fakedata import write_cifar10

    chosen = args.workloads.split(",")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    one_thread = {**env, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as root:
        write_cifar10(Path(root), per_batch=args.images // 5, test=args.images // 5)
        commands = {
            "cnn": ["compare-optimizers", "--task", "classify", "--dataset", "cifar10", "--data-dir", root, "--model",
                    "cnn", "--optims", "sgd,adam", "--seeds", "4", "--epochs", str(args.epochs), "--quiet",
                    "--device", "cpu"],
            "mlp": ["compare-optimizers", "--task", "classify", "--dataset", "digits", "--model", "mlp", "--dropout",
                    "0.2", "--optims", "sgd,adam", "--seeds", "4", "--epochs", "120", "--quiet", "--device", "cpu"],
            "tiny": ["compare-optimizers", "--optims", "sgd,momentum,adam,rmsprop,adagrad", "--seeds", "4", "--epochs",
                     "50", "--no-vectorize", "--quiet"],
        }
        configs = {"local": ([], env), "local 1 thread": ([], one_thread),
                   "process": (["--executor", "process", "--jobs", "2"], env), "ray": (["--executor", "ray"], env)}
        times = {w: {n: [] for n in configs if n != "local 1 thread" or w != "tiny"} for w in chosen}
        for i in range(args.pairs):
            for workload in chosen:
                for name in times[workload]:
                    extra, run_env = configs[name]
                    times[workload][name].append(timed(commands[workload] + extra, run_env))
            print(f"round {i + 1}: " + "; ".join(f"{w}: " + ", ".join(f"{n} {v[-1]:.1f} s" for n, v in times[w].items())
                                                for w in chosen), flush=True)
        per_trial = trial_threads(root, args.epochs) if "cnn" in chosen else None
    labels = {"cnn": f"8 CNN trials, {args.images} images, {args.epochs} epochs",
              "mlp": "8 MLP trials with dropout on digits, 120 epochs",
              "tiny": "20 tiny regress trials (fixed overhead)"}
    for workload in chosen:
        med = {n: statistics.median(v) for n, v in times[workload].items()}
        print(f"{labels[workload]}: " + ", ".join(f"{n} {med[n]:.1f} s" for n in med))
        for n in ("process", "ray"):
            speed = med["local"] / med[n]
            target = f"(target >= 1.6x) {'OK' if speed >= 1.6 else 'MISSED'}" if workload == "cnn" else ""
            print(f"  {n} vs local: {speed:.2f}x {target}")
            if "local 1 thread" in med:
                one = med['local 1 thread'] / med[n]
                print(f"  {n} vs local with one thread: {one:.2f}x (scaling efficiency {one / 2:.0%} of the 2x "
                      "two one-thread workers could give)")
        if workload == "tiny":
            print(f"  overhead: process +{med['process'] - med['local']:.1f} s, ray +{med['ray'] - med['local']:.1f} s "
                  "per command (worker start-up, problem shipping, runtime start)")
    if per_trial is not None:
        bound = 2 * per_trial[2] / per_trial[1]
        print(f"one CNN trial: {per_trial[1]:.2f} s with 1 thread, {per_trial[2]:.2f} s with 2 threads "
              f"({per_trial[1] / per_trial[2]:.2f}x from the second thread): two one-thread workers can be at most "
              f"{bound:.2f}x faster than local's one two-thread trial at a time, before any start-up cost")


if __name__ == "__main__":
    main()
