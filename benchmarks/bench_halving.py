"""Successive halving against the full grid: a 27-rate CNN `lr-sweep --task classify` on CIFAR-10-format files this
script writes — the best rate each finds, the epochs trained, and the wall time (targets: the same best rate,
<= 1/3 of the epochs, <= 0.4x the wall time). Whole processes, alternating, `--pairs` times (median).

Run: .venv/bin/python benchmarks/bench_halving.py [--pairs 8] [--images 1000] [--epochs 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = str(Path(sys.executable).parent / "losslab")


def run(args: list[str]) -> tuple[float, dict]:
    t = time.perf_counter()
    out = subprocess.run([BIN, *args], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t, json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=9)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' CIFAR-format file writer
    from fakedata import write_cifar10

    with tempfile.TemporaryDirectory() as root:
        write_cifar10(Path(root), per_batch=args.images // 5, test=args.images // 5)
        common = ["lr-sweep", "--task", "classify", "--dataset", "cifar10", "--data-dir", root, "--model", "cnn",
                  "--optim", "sgd", "--min-lr", "1e-4", "--max-lr", "3", "--num", "27", "--epochs", str(args.epochs),
                  "--json", "--quiet", "--device", "cpu"]
        full_t, half_t = [], []
        for _ in range(args.pairs):
            t, full = run(common)
            full_t.append(t)
            t, half = run(common + ["--halving", "--min-epochs", "1"])
            half_t.append(t)
    h = half["halving"]
    print(f"full grid: best-ranked rate {full['suggested_lr']:.3g}, {27 * args.epochs} epochs, "
          f"median {statistics.median(full_t):.1f} s")
    print(f"halving (rate 3, rungs {[r['epochs'] for r in h['rungs']]}): suggested {half['suggested_lr']:.3g}, "
          f"{h['epochs_trained']} epochs ({h['share_of_full_grid']:.0%} of the full grid's; target <= 33%), "
          f"median {statistics.median(half_t):.1f} s ({statistics.median(half_t) / statistics.median(full_t):.2f}x "
          "the full grid's wall time; target <= 0.4x)")
    ratios = sorted(h / f for h, f in zip(half_t, full_t))
    print(f"per-pair wall-time ratios over {len(ratios)} pairs: min {ratios[0]:.2f}, median "
          f"{statistics.median(ratios):.2f}, max {ratios[-1]:.2f}")


if __name__ == "__main__":
    main()
