"""A user's own model against the built-in one it equals (the digits MLP: Flatten -> Linear(64, 128) -> ReLU ->
Linear(128, 10), written as a user's class in a file this script writes), in one process:

1. one classify run (Adam, batches of 64): per-epoch time of the user model / the built-in (target <= 1.02),
   and whether their numbers are bit-identical;
2. a 32-rate lr-sweep of the user model stacked with torch.func vs the same 32 runs one after another
   (target >= 8x faster) and vs the built-in MLP's hand-built stacked path (target <= 1.3x its time).

Alternating pairs; medians. Run: .venv/bin/python benchmarks/bench_user_model.py [--pairs 5] [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

USER_MLP = '''
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, x):
        return self.net(x)
'''


def problem(model: str, epochs: int, batch_size: int = 64):
    from losslab.config import ClassifyConfig, ModelConfig, TrainConfig
    from losslab.engine.problems import ClassificationProblem

    cfg = ClassifyConfig(model=ModelConfig(name=model), train=TrainConfig(epochs=epochs, batch_size=batch_size,
                                                                           device="cpu"))
    return ClassificationProblem(cfg.resolved())


def one_run(p) -> tuple[float, list[float]]:
    from losslab.config import OptimConfig
    from losslab.engine.runs import RunSpec, execute

    result = execute(p, RunSpec("run", OptimConfig("adam", lr=0.01), 0))
    per_epoch = result.records[-1]["elapsed_s"] / len(result.records)
    return per_epoch, [r["train_loss"] for r in result.records] + [result.metrics["final_loss"]]


def sweep(p, vectorize: bool) -> float:
    from losslab.config import OptimConfig
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials

    lrs = [1e-4 * (1.0 / 1e-4) ** (i / 31) for i in range(32)]
    specs = [RunSpec(f"{lr:.3g}", OptimConfig("adam", lr=lr), 0) for lr in lrs]
    start = time.perf_counter()
    results, _ = run_trials(p, specs, vectorize=vectorize)
    took = time.perf_counter() - start
    assert all(r.stacked_with == (32 if vectorize else 1) for r in results), "not stacked as intended"
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--sweep-epochs", type=int, default=10)
    args = ap.parse_args()
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "benchmlp.py"), "w") as f:
        f.write(USER_MLP)
    sys.path.insert(0, folder)
    builtin, mine = problem("mlp", args.epochs), problem("benchmlp:MLP", args.epochs)
    one_run(builtin), one_run(mine)  # warm up
    ratios, identical = [], True
    for _ in range(args.pairs):
        t_builtin, numbers_builtin = one_run(builtin)
        t_mine, numbers_mine = one_run(mine)
        ratios.append(t_mine / t_builtin)
        identical = identical and numbers_builtin == numbers_mine
    single = statistics.median(ratios)
    print(f"one run, per epoch: user model / built-in = {single:.3f} (median of {args.pairs} pairs; "
          f"{min(ratios):.3f}-{max(ratios):.3f})  (target <= 1.02)  {'OK' if single <= 1.02 else 'MISSED'}")
    print(f"numbers bit-identical to the built-in's: {identical}")

    sweep_builtin, sweep_mine = problem("mlp", args.sweep_epochs), problem("benchmlp:MLP", args.sweep_epochs)
    sweep(sweep_mine, True), sweep(sweep_builtin, True)  # warm up
    speedups, against_builtin = [], []
    for _ in range(max(3, args.pairs // 2)):
        sequential = sweep(sweep_mine, False)
        stacked = sweep(sweep_mine, True)
        builtin_stacked = sweep(sweep_builtin, True)
        speedups.append(sequential / stacked)
        against_builtin.append(stacked / builtin_stacked)
    s, b = statistics.median(speedups), statistics.median(against_builtin)
    print(f"32-rate sweep of the user MLP, {args.sweep_epochs} epochs: stacked (torch.func) {s:.1f}x faster than "
          f"one after another (target >= 8x)  {'OK' if s >= 8 else 'MISSED'}")
    print(f"  and {b:.2f}x the built-in MLP's stacked time (target <= 1.3x)  {'OK' if b <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
