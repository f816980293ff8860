"""The Python API's costs: `import losslab` (wall time over a bare interpreter, median of alternating pairs;
target <= 60 ms, and no torch loaded), and a call's overhead over its own training time — the time of
`losslab.regress(...)` against the training loop's time inside it (the last record's elapsed_s), for the
default regression at 1000 epochs (target <= 2%).

Run: .venv/bin/python benchmarks/bench_api.py [--pairs 8] [--calls 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    extra = []
    for _ in range(args.pairs):  # alternating pairs: a bare interpreter, then one importing losslab
        bare = wall("pass")
        extra.append(wall("import losslab") - bare)
    loaded = subprocess.run([sys.executable, "-c", "import sys, losslab; print('torch' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    ms = statistics.median(extra) * 1e3
    print(f"import losslab: {ms:.1f} ms over a bare interpreter (median of {args.pairs} pairs; "
          f"{min(extra) * 1e3:.1f}-{max(extra) * 1e3:.1f})  (target <= 60 ms)  {'OK' if ms <= 60 else 'MISSED'}; "
          f"torch loaded: {loaded}")

    import losslab

    losslab.regress(epochs=50, device="cpu", progress=False)  # warm up: torch, the first optimizer
    overheads = []
    for _ in range(args.calls):
        start = time.perf_counter()
        result = losslab.regress(epochs=1000, device="cpu", progress=False)
        total = time.perf_counter() - start
        train = result.history[-1]["elapsed_s"]
        overheads.append(total / train - 1)
    overhead = statistics.median(overheads)
    print(f"losslab.regress(epochs=1000): call time over its training time +{overhead * 100:.1f}% (median of "
          f"{args.calls}; {min(overheads) * 100:.1f}-{max(overheads) * 100:.1f}%)  (target <= 2%)  "
          f"{'OK' if overhead <= 0.02 else 'MISSED'}")


if __name__ == "__main__":
    main()
