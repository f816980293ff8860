"""Per-step time of losslab's `fit` against the hand-written tutorial loop, in one process.

Prints the ratio (target <= 1.10) and checks the final weights are bit-identical; then both loops called from
call depths 0..120 (CPython 3.11/3.12 map and unmap a frame chunk on every call that crosses a chunk's end, see
losslab/stack.py): the slowest depth against the fastest, for each.
Run: .venv/bin/python benchmarks/bench_loop.py [--repeats 15] [--epochs 1000] [--no-depths]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
from torch import nn


def tutorial_data() -> tuple[torch.Tensor, torch.Tensor]:
    np.random.seed(42)
    x = np.random.randn(100, 1)
    noise = np.random.randn(100, 1)
    y = 2 * x + 3 + 0.1 * noise
    return torch.from_numpy(x).float(), torch.from_numpy(y).float()


def hand_written(epochs: int, seed: int = 0) -> tuple[float, list[float]]:
    """The tutorial loop, recording the loss each epoch as tutorials do."""
    x, y = tutorial_data()
    torch.manual_seed(seed)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    losses = []
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        pred = model(x)
        loss = loss_fn(pred, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    elapsed = time.perf_counter() - start
    return elapsed, [model.weight.item(), model.bias.item()]


def losslab_fit(epochs: int, seed: int = 0) -> tuple[float, list[float]]:
    """losslab's loop as `losslab regress --quiet` runs it: the (quiet) display and registered consumers attached."""
    from losslab.commands import regress
    from losslab.config import OptimConfig, RegressConfig, TrainConfig
    from losslab.outputs import OutputContext, dispatcher
    from losslab.outputs.display import ProgressDisplay, epoch_columns, make_console

    cfg = RegressConfig(optim=OptimConfig(name="adam", lr=0.01),
                        train=TrainConfig(epochs=epochs, seed=seed, device="cpu"))
    display = ProgressDisplay(make_console(), epoch_columns([]), quiet=True)
    result = regress.run(cfg, dispatcher(OutputContext("regress", cfg, quiet=True), [display]))
    train_s = result.records[-1]["elapsed_s"]
    return train_s, [result.params["w"], result.params["b"]]


def at_depth(depth: int, fn, *args, pad0=0, pad1=0, pad2=0, pad3=0):  # noqa: ANN001
    """fn(*args) called `depth` frames deeper than here (each frame as big as a typical caller's)."""
    return fn(*args) if depth == 0 else at_depth(depth - 1, fn, *args)


def by_depth(epochs: int) -> None:
    """Each loop's per-step time from depths 0, 6, ..., 120: the spread is what a caller's depth costs."""
    spread = {}
    for name, loop in (("hand-written", hand_written), ("losslab fit", losslab_fit)):
        times: dict[int, float] = {}
        for _ in range(5):  # rounds over every depth, so a burst of machine noise hits one round, not one depth
            for d in range(0, 121, 6):
                times[d] = min(times.get(d, math.inf), at_depth(d, loop, epochs)[0])
        slow = max(times, key=times.get)
        spread[name] = times[slow] / min(times.values())
        print(f"{name:13s} from depths 0-120: slowest/fastest {spread[name]:.3f} (slowest at depth {slow}: "
              f"{times[slow] / epochs * 1e6:.1f} us/step, fastest {min(times.values()) / epochs * 1e6:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--no-depths", action="store_true", help="skip the loops called from several depths")
    args = ap.parse_args()
    hand_written(50), losslab_fit(50)  # warm up: first optimizer construction, allocator
    ref_times, ours_times = [], []
    for _ in range(args.repeats):  # interleaved so machine noise hits both alike
        t_ref, w_ref = hand_written(args.epochs)
        t_ours, w_ours = losslab_fit(args.epochs)
        ref_times.append(t_ref)
        ours_times.append(t_ours)
    # the minimum over interleaved repeats is the least noisy estimate on a shared machine
    ref, ours = min(ref_times), min(ours_times)
    print(f"hand-written loop: {ref / args.epochs * 1e6:8.1f} us/step (min of {args.repeats}; "
          f"median {statistics.median(ref_times) / args.epochs * 1e6:.1f})")
    print(f"losslab fit:       {ours / args.epochs * 1e6:8.1f} us/step (min of {args.repeats}; "
          f"median {statistics.median(ours_times) / args.epochs * 1e6:.1f})")
    print(f"ratio losslab/hand-written: {ours / ref:.3f}  (target <= 1.10)  {'OK' if ours / ref <= 1.10 else 'MISSED'}")
    identical = w_ref == w_ours
    print(f"final weights bit-identical: {identical}  hand-written {w_ref}  losslab {w_ours}")
    if not args.no_depths:
        by_depth(args.epochs)


if __name__ == "__main__":
    main()
