"""Is a user's loss fit to train with? Callable on the task's shapes, a scalar tensor connected to the
prediction's graph, finite on typical inputs, and a gradient that matches finite differences
(`torch.autograd.gradcheck` in float64 at random points away from kinks; `gradgradcheck` on request)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from losslab.errors import describe


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class LossCheck:
    loss: str
    task: str
    checks: list[Check] = field(default_factory=list)
    max_abs_error: Optional[float] = None
    max_rel_error: Optional[float] = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed


# residual magnitudes the gradient is checked at: a wrong backward often hides in one range (a gradient zeroed
# beyond a threshold, a factor wrong near zero); each range keeps clear of a kink at |p − t| = 0
SCALES = (("small", 1e-3, 0.4), ("around 1", 0.5, 1.5), ("large", 2.5, 100.0))


def sample_inputs(task: str, seed: int, rows: int = 8, classes: int = 4,
                  scale: tuple[str, float, float] = SCALES[1]) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 (prediction, target) of the task's shapes. Regression predictions sit at a residual of either sign
    whose size is drawn log-uniformly from the scale's range; classification logits are scaled to it."""
    g = torch.Generator().manual_seed(seed)
    _, low, high = scale
    size = lambda: torch.exp(torch.empty(rows, 1, dtype=torch.float64).uniform_(  # noqa: E731
        math.log(low), math.log(high), generator=g))
    if task == "regression":
        target = torch.randn(rows, 1, generator=g, dtype=torch.float64) * max(1.0, high / 10)
        sign = torch.where(torch.rand(rows, 1, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
        pred = target + sign * size()
        return pred.requires_grad_(True), target
    logits = torch.randn(rows, classes, generator=g, dtype=torch.float64) * size()
    return logits.requires_grad_(True), torch.randint(0, classes, (rows,), generator=g)


def probes(task: str, points: int, data: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
           ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(where, prediction, target) to check the gradient at: `points` draws per residual scale, then the training
    data's own predictions and targets when given."""
    out = []
    for seed in range(points):
        for scale in SCALES:
            name, low, high = scale
            out.append((f"{name} residuals (|p − t| in [{low:g}, {high:g}], point {seed})",
                        *sample_inputs(task, seed, scale=scale)))
    if data is not None:
        pred, target = data
        out.append((f"the training data ({len(pred)} rows, the initial model's predictions)", pred, target))
    return out


def finite_difference_errors(fn: Callable[..., Any], pred: torch.Tensor, target: torch.Tensor,
                             eps: float = 1e-6) -> tuple[float, float, Optional[str]]:
    """Largest absolute and relative error of the analytic gradient against central differences, and the
    first element that disagrees (beyond gradcheck's default tolerances) by index."""
    (analytic,) = torch.autograd.grad(fn(pred, target), pred)
    numeric = torch.zeros_like(pred)
    with torch.no_grad():
        flat, out = pred.detach().clone().reshape(-1), numeric.reshape(-1)
        for i in range(flat.numel()):
            up, down = flat.clone(), flat.clone()
            up[i] += eps
            down[i] -= eps
            out[i] = (fn(up.reshape(pred.shape), target) - fn(down.reshape(pred.shape), target)) / (2 * eps)
    diff = (analytic - numeric).abs()
    rel = diff / numeric.abs().clamp_min(1e-12)
    bad = torch.nonzero(diff > 1e-5 + 1e-3 * numeric.abs())
    first = None
    if len(bad):
        idx = tuple(int(v) for v in bad[0])
        first = f"element {list(idx)}: analytic {float(analytic[idx]):.6g}, numeric {float(numeric[idx]):.6g}"
    return float(diff.max()), float(rel.max()), first


def check_loss(fn: Callable[..., Any], name: str, task: str, *, points: int = 3, second_order: bool = False,
               quick: bool = False, data: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> LossCheck:
    """Every check in order; the first that fails ends the run of checks (later ones depend on it). The gradient
    is checked at `points` draws of each residual scale (one with `quick`) and on `data`, a batch of the training
    data's (prediction, target) in float64, when given."""
    report = LossCheck(name, task)
    pred, target = sample_inputs(task, 0)
    try:
        out = fn(pred, target)
    except Exception as exc:
        report.add("callable", False, f"calling it with (prediction {tuple(pred.shape)}, target "
                   f"{tuple(target.shape)}) raised {describe(exc)}")
        return report
    report.add("callable", True, f"(prediction {tuple(pred.shape)}, target {tuple(target.shape)})")
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        report.add("scalar", False, f"returns {shape}; a loss must return a scalar tensor")
        return report
    if out.is_complex() or not out.is_floating_point() or out.layout != torch.strided:
        kind = "complex" if out.is_complex() else "sparse" if out.layout != torch.strided else str(out.dtype)
        report.add("scalar", False, f"returns a {kind} tensor; a loss must return a real floating-point scalar")
        return report
    report.add("scalar", True, "a scalar tensor")
    if not out.requires_grad:
        report.add("connected", False, "the value is not connected to the prediction's graph (a constant, a "
                   "detached tensor or a number): training would have no gradient")
        return report
    report.add("connected", True, "part of the prediction's graph")
    if not report.add("finite", bool(torch.isfinite(out.detach())), f"value {float(out.detach()):.6g}"):
        return report
    try:
        (grad,) = torch.autograd.grad(out, pred)
    except Exception as exc:
        report.add("backward", False, describe(exc))
        return report
    if not report.add("backward", grad.shape == pred.shape, f"gradient of shape {tuple(grad.shape)}"):
        return report
    worst_abs, worst_rel, first = 0.0, 0.0, None
    for where, p, t in probes(task, 1 if quick else points, data):
        try:
            torch.autograd.gradcheck(lambda q, t=t: fn(q, t), (p,), eps=1e-6, atol=1e-5, rtol=1e-3)
            ok = True
        except Exception as exc:  # GradcheckError, or a backward that raises on these inputs
            ok, why = False, describe(exc)
        try:
            a, r, element = finite_difference_errors(fn, p, t)
        except Exception as exc:
            a, r, element = math.nan, math.nan, describe(exc)
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
        if not ok:
            first = f"{where}: {element or why}"
            break
    report.max_abs_error, report.max_rel_error = worst_abs, worst_rel
    detail = f"max abs error {worst_abs:.2e}, max rel error {worst_rel:.2e}"
    if not report.add("gradcheck", first is None, detail + (f"; first mismatch at {first}" if first else "")):
        return report
    if second_order:
        p, t = sample_inputs(task, 0)
        try:
            torch.autograd.gradgradcheck(lambda q: fn(q, t), (p,), eps=1e-6, atol=1e-5, rtol=1e-3)
            report.add("gradgradcheck", True, "second derivatives match finite differences")
        except Exception as exc:
            report.add("gradgradcheck", False, describe(exc))
    return report
