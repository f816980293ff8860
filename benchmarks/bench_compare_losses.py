"""Whole-process wall time of `losslab compare-losses --quiet` (4 losses x 5 seeds, tutorial data with
outliers, 1000 epochs) against one `losslab regress --quiet` run (target <= 1.3x, the same as compare-optimizers).

Run: .venv/bin/python benchmarks/bench_compare_losses.py [--repeats 8]
"""

from __future__ import annotations

import argparse
import statistics

from _common import losslab_bin, ratio_to_regress  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()
    ratio, ones, manys = ratio_to_regress([losslab_bin(), "compare-losses", "--quiet", "--device", "cpu"],
                                          max(8, args.repeats))
    print(f"losslab regress:        min {min(ones):.2f} s  median {statistics.median(ones):.2f} s")
    print(f"losslab compare-losses: min {min(manys):.2f} s  median {statistics.median(manys):.2f} s  "
          "(4 losses x 5 seeds x 1000 epochs)")
    print(f"ratio compare-losses/regress: {ratio:.2f}  (target <= 1.3)  {'OK' if ratio <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
