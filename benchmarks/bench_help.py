"""Wall time of `losslab --help` and `losslab regress --help` beside `python -c "import typer, rich"`
(target: help <= 0.3 s), and which heavy modules each loads (must be none of torch, torchvision, matplotlib).

Run: .venv/bin/python benchmarks/bench_help.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import wall  # benchmarks/ is on sys.path when run as a script

HEAVY = ("torch", "torchvision", "matplotlib")
PROBE = (
    "import sys, json\n"
    "from losslab.cli import app\n"
    "try:\n"
    "    app(args={args!r}, prog_name='losslab')\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    py = sys.executable
    cases = {
        "python -c 'import typer, rich'": [py, "-c", "import typer, rich"],
        "losslab --help": [py, "-m", "losslab", "--help"],
        "losslab regress --help": [py, "-m", "losslab", "regress", "--help"],
    }
    for cmd in cases.values():
        wall(cmd)  # warm the page cache
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, cmd in cases.items():
            times[name].append(wall(cmd))
    base = min(times["python -c 'import typer, rich'"])
    for name, ts in times.items():
        print(f"{name:32s} min {min(ts):.3f} s  median {statistics.median(ts):.3f} s  "
              f"(+{min(ts) - base:.3f} s over typer+rich)")
    worst = max(min(times["losslab --help"]), min(times["losslab regress --help"]))
    print(f"help wall time {worst:.3f} s  (target <= 0.3 s)  {'OK' if worst <= 0.3 else 'MISSED'}")
    for argv in (["--help"], ["regress", "--help"]):
        probe = subprocess.run([py, "-c", PROBE.format(args=argv, heavy=HEAVY)], capture_output=True, text=True)
        loaded = json.loads(probe.stderr.strip().splitlines()[-1])
        print(f"losslab {' '.join(argv)}: heavy modules loaded: {loaded or 'none'}")


if __name__ == "__main__":
    main()
