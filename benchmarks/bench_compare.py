"""Whole-process wall time of `losslab compare-optimizers --quiet` (4 optimizers x 5 seeds, regress defaults,
1000 epochs) against one `losslab regress --quiet` run (target <= 2x; <= 1.3x once trials are vectorized).

Run: .venv/bin/python benchmarks/bench_compare.py [--repeats 3] [--extra-args "--no-vectorize"]
"""

from __future__ import annotations

import argparse
import shlex
import statistics

from _common import losslab_bin, ratio_to_regress  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--extra-args", default="", help="extra arguments for compare-optimizers")
    args = ap.parse_args()
    many = [losslab_bin(), "compare-optimizers", "--quiet", "--device", "cpu", *shlex.split(args.extra_args)]
    ratio, ones, manys = ratio_to_regress(many, args.repeats)
    print(f"losslab regress:            min {min(ones):.2f} s  median {statistics.median(ones):.2f} s")
    print(f"losslab compare-optimizers: min {min(manys):.2f} s  median {statistics.median(manys):.2f} s  "
          f"(20 trials x 1000 epochs {args.extra_args})")
    print(f"ratio compare/regress: {ratio:.2f}  (target <= 2.0 now, <= 1.3 vectorized)  "
          f"{'OK' if ratio <= 2.0 else 'MISSED'} / {'OK' if ratio <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
