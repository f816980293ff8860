"""Stacked trials of optimizers losslab did not write — torch's NAdam, and a Lion class in a file of the
benchmark's own — through their own step() (one parameter group per run over per-run views of the stacked
parameters), against the same runs one by one, in one process: a 32-rate grid on the tutorial regression
(200 epochs) and on the digits MLP (10 epochs, mini-batches of 64), the difference measured over the rates up to
0.01; then a 5-seed compare of one such optimizer
(one rate) against the same with the built-in batched Adam. The median of alternating pairs (a noisy neighbour
slows both sides of a pair alike) and the largest relative difference in final loss between the two sides.

Run: .venv/bin/python benchmarks/bench_any_optimizer.py [--pairs 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import alternating_pairs  # benchmarks/ is on sys.path when run as a script

from losslab.config import ClassifyConfig, ModelConfig, OptimConfig, RegressConfig, TrainConfig
from losslab.engine.problems import ClassificationProblem, RegressionProblem
from losslab.engine.runs import RunSpec
from losslab.engine.trials import run_trials

LION = """
import torch


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(m.lerp(p.grad, 1 - beta1).sign_(), alpha=-group["lr"])
                m.lerp_(p.grad, 1 - beta2)
"""


def measure(problem, specs, pairs: int) -> tuple[float, float, float, float]:
    """(median ratio one-by-one / stacked, median stacked s, median one-by-one s, worst relative difference)."""
    run_trials(problem, specs[:2], vectorize=False)  # warm up
    run_trials(problem, specs[:2], vectorize=True)

    def timed(stacked: bool):
        start = time.perf_counter()
        results, _ = run_trials(problem, specs, vectorize=stacked)
        return time.perf_counter() - start, results

    off, on, ratios, one, many = alternating_pairs(timed, pairs)
    assert all(r.stacked_with == len(specs) for r in many), problem.unstacked
    # (rates above 0.01 make some runs chaotic: a rounding difference in the batched gradient grows without bound)
    worst = max(abs(a.metrics["final_loss"] - b.metrics["final_loss"]) / abs(b.metrics["final_loss"])
                for a, b in zip(many, one) if (a.spec.optim.lr or 0) <= 0.01)
    return statistics.median(ratios), statistics.median(on), statistics.median(off), worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args()
    folder = tempfile.mkdtemp()
    Path(folder, "benchlion.py").write_text(textwrap.dedent(LION))
    sys.path.insert(0, folder)
    rates = [10 ** (-4 + 4 * i / 31) for i in range(32)]
    print(f"{'problem':<24} {'optimizer':<18} {'stacked s':>9} {'one by one s':>12} {'ratio':>6} {'worst rel':>9}")
    for label, problem, optimizers in (
            ("regression, 200 epochs", RegressionProblem(RegressConfig(train=TrainConfig(epochs=200, device="cpu"))
                                                         .resolved()), ("nadam", "benchlion:Lion", "adam")),
            ("digits MLP, 10 epochs", ClassificationProblem(ClassifyConfig(
                model=ModelConfig("mlp"), train=TrainConfig(epochs=10, batch_size=64, device="cpu")).resolved()),
             ("nadam", "benchlion:Lion", "adam"))):
        for name in optimizers:
            specs = [RunSpec(f"{lr:.3g}", OptimConfig(name, lr=lr), 0) for lr in rates]
            ratio, on, off, worst = measure(problem, specs, args.pairs)
            kind = "(built-in batched)" if name == "adam" else ""
            print(f"{label:<24} {name + kind:<18} {on:9.2f} {off:12.2f} {ratio:5.1f}x {worst:9.1e}")
    problem = RegressionProblem(RegressConfig(train=TrainConfig(epochs=200, device="cpu")).resolved())
    times = {}
    for name in ("benchlion:Lion", "adam"):
        specs = [RunSpec(name, OptimConfig(name, lr=0.01), seed) for seed in range(5)]
        run_trials(problem, specs, vectorize=True)
        samples = []
        for _ in range(args.pairs):
            start = time.perf_counter()
            run_trials(problem, specs, vectorize=True)
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
    print(f"5-seed compare, one rate, regression: Lion through its own step {times['benchlion:Lion']:.3f} s, "
          f"built-in batched adam {times['adam']:.3f} s: {times['benchlion:Lion'] / times['adam']:.2f}x")


if __name__ == "__main__":
    main()
