"""Trial compute time for 32 learning rates x 1000 epochs on the regress defaults (Adam), vectorized vs
sequential, in one process (target >= 30x faster; the median of alternating pairs), the largest per-trial
difference in final weights, and the whole-process wall time of `losslab lr-sweep --num 32` against one
`losslab regress` run (target <= 1.5x).

Run: .venv/bin/python benchmarks/bench_vectorized.py [--trials 32] [--epochs 1000] [--optim adam] [--pairs 5]
     [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from _common import alternating_pairs, losslab_bin, ratio_to_regress  # benchmarks/ is on sys.path when run as a script

from losslab.components.regression_data import synthetic
from losslab.config import OptimConfig, RegressConfig, TrainConfig
from losslab.engine.problems import RegressionProblem
from losslab.engine.runs import RunSpec
from losslab.engine.trials import run_trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--optim", default="adam")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    problem = RegressionProblem(RegressConfig(train=TrainConfig(epochs=args.epochs, device="cpu")), synthetic())
    lrs = [1e-4 * (1.0 / 1e-4) ** (i / (args.trials - 1)) for i in range(args.trials)]
    trials = [RunSpec(f"{lr:.3g}", OptimConfig(args.optim, lr=lr), 0) for lr in lrs]
    run_trials(problem, trials[:2], vectorize=False)  # warm up: first optimizer construction
    run_trials(problem, trials[:2], vectorize=True)

    def timed(vectorize: bool) -> tuple[float, list[tuple[str, dict[str, float]]]]:
        """Wall time of one sweep and each run's (status, final weights); the records are dropped before the
        next sweep, as a command's process would, so that neither side's garbage collection walks them."""
        gc.collect()
        start = time.perf_counter()
        results, _ = run_trials(problem, trials, vectorize=vectorize)
        took = time.perf_counter() - start
        return took, [(r.status, r.metrics.get("params", {})) for r in results]

    seq_times, vec_times, ratios, seq, vec = alternating_pairs(timed, args.pairs)
    t_seq, t_vec, speedup = statistics.median(seq_times), statistics.median(vec_times), statistics.median(ratios)
    worst = 0.0
    for (s_status, s_params), (v_status, v_params) in zip(seq, vec):
        if s_status == v_status == "ok":
            for name, value in s_params.items():
                worst = max(worst, abs(v_params[name] - value) / max(abs(value), 1e-12))
    print(f"{args.trials} trials x {args.epochs} epochs ({args.optim}, lr 1e-4..1):")
    print(f"  sequential: {t_seq:.2f} s   vectorized: {t_vec:.3f} s  (medians of {args.pairs} alternating pairs)")
    print(f"  speed-ups per pair: {', '.join(f'{r:.1f}' for r in ratios)}")
    print(f"speed-up: {speedup:.1f}x (median)  (target >= 30x)  {'OK' if speedup >= 30 else 'MISSED'}")
    print(f"largest relative difference in final weights: {worst:.2e}  (tests require <= 1e-5)")
    print(f"statuses agree: {[s for s, _ in seq] == [v for v, _ in vec]}")

    sweep = [losslab_bin(), "lr-sweep", "--num", "32", "--quiet", "--device", "cpu"]
    ratio, ones, sweeps = ratio_to_regress(sweep, args.repeats)
    print(f"losslab regress: {min(ones):.2f} s   losslab lr-sweep --num 32: {min(sweeps):.2f} s "
          f"(min of {args.repeats})")
    print(f"ratio lr-sweep/regress: {ratio:.2f}  (target <= 1.5)  {'OK' if ratio <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
