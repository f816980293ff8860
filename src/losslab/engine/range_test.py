"""The LR range test's mechanics (Smith 2015; fastai's and Lightning's lr_find): one run through the shared run
path with the rate growing every step, stopped when the smoothed loss explodes, with the model and optimizer
restored afterwards and their state hashed before and after. Suggestions from the curve are the command's
(pure functions in `commands.lr_sweep`)."""

from __future__ import annotations

import copy
import hashlib
import io
import math
from dataclasses import dataclass, replace
from typing import Any

from losslab.components.optimizers import build_optimizer
from losslab.config import SweepConfig
from losslab.engine.events import Consumer
from losslab.engine.problems import Problem
from losslab.engine.runs import RunSpec, Start, Stepped, execute, run_info
from losslab.engine.skeleton import Plan
from losslab.errors import RunFailed


def schedule(min_lr: float, max_lr: float, steps: int, mode: str) -> list[float]:
    """The learning rate of each step: exponential (log-linear) or linear from min_lr to max_lr."""
    if mode == "linear":
        return [min_lr + (max_lr - min_lr) * i / (steps - 1) for i in range(steps)]
    return [min_lr * (max_lr / min_lr) ** (i / (steps - 1)) for i in range(steps)]


def lightning_schedule(min_lr: float, max_lr: float, steps: int, mode: str) -> list[float]:
    """The rates Lightning's lr_find trains with (lightning/pytorch/tuner/lr_finder.py, `_ExponentialLR` and
    `_LinearLR`, stepped after every batch): the first step at min_lr, step k ≥ 1 at the fraction r = (k + 1) / N
    of the way (so the fraction 1/N is never used and the last step reaches max_lr)."""
    out = [min_lr]
    for k in range(1, steps):
        r = (k + 1) / steps
        out.append(min_lr + r * (max_lr - min_lr) if mode == "linear" else min_lr * (max_lr / min_lr) ** r)
    return out


def state_hash(model: Any, optimizer: Any) -> str:
    """SHA-256 of every parameter and buffer and of the optimizer's state and hyper-parameters."""
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    buf = io.BytesIO()
    torch.save(optimizer.state_dict(), buf)
    h.update(buf.getvalue())
    return h.hexdigest()


@dataclass
class RangeCurve:
    seed: int
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped: str  # "diverged" (smoothed loss passed the threshold), "non-finite loss", "completed", "interrupted"
    hash_before: str
    hash_after: str

    @property
    def usable(self) -> int:
        """Points a suggestion may use: those after the loss exploded say nothing about where to train."""
        return len(self.smoothed) - 1 if self.stopped == "diverged" else len(self.smoothed)


def range_test_run(problem: Problem, cfg: SweepConfig, seed: int, events: Consumer = Consumer(), *,
                   index: int = 0, total: int = 1, lightning: bool = False) -> RangeCurve:
    """One LR range test through the run path; the model and optimizer are restored afterwards.

    `lightning`: the curve as Lightning's `lr_find` builds it (its `_LRCallback`): Lightning's rates, and a
    smoothed loss debiased with the step count *after* the optimizer step (avg / (1 − β^(k+2)) at step k, so its
    first value is about half the loss), a stop once the smoothed loss passes `diverge_factor` × the best from the
    third step on, the stopping point kept on the curve."""
    low, high = cfg.lr_range
    lrs = (lightning_schedule if lightning else schedule)(low, high, cfg.steps, cfg.mode)
    late = 1 if lightning else 0
    spec = RunSpec("range test", replace(cfg.run.optim, lr=lrs[0]), seed)
    model = problem.new_model(seed)
    optimizer = build_optimizer(model, spec.optim)
    before = state_hash(model, optimizer)
    saved_model, saved_optim = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    losses: list[float] = []
    smoothed: list[float] = []
    state: dict[str, Any] = {"avg": 0.0, "best": math.inf, "stopped": "completed"}

    used: list[float] = []

    def on_step(loss: float) -> bool:
        i = len(losses)
        losses.append(loss)
        used.append(lrs[i])
        if not math.isfinite(loss):
            state["stopped"] = "non-finite loss"
            return True
        state["avg"] = cfg.smoothing * state["avg"] + (1 - cfg.smoothing) * loss
        value = state["avg"] / (1 - cfg.smoothing ** (i + 1 + late))
        smoothed.append(value)
        if lightning:  # Lightning compares with the best before this step, from its global step 2 on
            stop = i + 1 > 1 and value > cfg.diverge_factor * state["best"]
            if value < state["best"] or i == 0:
                state["best"] = value
        else:
            state["best"] = min(state["best"], value)
            stop = i > 0 and value > cfg.diverge_factor * state["best"]
        if stop:
            state["stopped"] = "diverged"
            return True
        if i + 1 >= len(lrs):
            return True
        for group in optimizer.param_groups:
            group["lr"] = lrs[i + 1]
        return False

    epochs = math.ceil(cfg.steps / Plan.of(problem).batches) + 1
    info = run_info(problem, spec, index=index, total=total, epochs=epochs)
    try:
        result = execute(problem, spec, events, info=info, start=Start(model, optimizer), single=True,
                         stepped=Stepped(on_step, {"lr": used, "loss": losses}))
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optim)
    if result.status == "error":  # the range test is one run: its failure is the command's
        raise RunFailed(result.error or "the range test failed")
    if result.status == "interrupted":
        state["stopped"] = "interrupted"
    kept = len(smoothed)
    return RangeCurve(seed, lrs[:kept], losses[:kept], smoothed, state["stopped"], before,
                      state_hash(model, optimizer))
