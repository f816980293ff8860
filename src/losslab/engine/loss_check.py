"""Is a user's loss fit to train with? Callable on the task's shapes, a scalar tensor connected to the
prediction's graph, finite on typical inputs, and a gradient that matches finite differences
(`torch.autograd.gradcheck` in float64 at random points away from kinks; `gradgradcheck` on request)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from losslab.errors import USER_ERRORS, describe


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
    max_rel_error: Optional[float] = None  # where |numeric| >= 0.01; below that the absolute tolerance governs
    max_tolerance_share: Optional[float] = None  # the worst |analytic − numeric| / (atol + rtol·|numeric|)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed


# residual magnitudes the gradient is checked at: a wrong backward often hides in one range (a gradient zeroed
# beyond a threshold, a factor wrong near zero); each range keeps clear of a kink at |p − t| = 0
SCALES = (("small", 1e-3, 0.4), ("around 1", 0.5, 1.5), ("large", 2.5, 100.0))
# batch sizes each range is checked at: a backward that divides by a hard-coded batch size is right at that
# size only (1 catches a missing mean, 37 anything tuned to a power of two); the run's own batch comes on top
ROWS = (1, 8, 37)
# gradcheck's tolerances: an element passes when |analytic − numeric| <= ATOL + RTOL·|numeric|
ATOL, RTOL, EPS = 1e-5, 1e-3, 1e-6
# above this many prediction elements the gradient is compared along random directions (gradcheck's fast
# mode), not element by element: the run's own batch can be thousands of rows
ELEMENTWISE = 512


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
    """(where, prediction, target) to check the gradient at: `points` draws per residual scale and batch size,
    then the training data's own predictions and targets (a batch of the run's size) when given."""
    out = []
    for seed in range(points):
        for scale in SCALES:
            name, low, high = scale
            for rows in ROWS:
                out.append((f"{name} residuals (|p − t| in [{low:g}, {high:g}], batch of {rows}, point {seed})",
                            *sample_inputs(task, seed, rows=rows, scale=scale)))
    if data is not None:
        pred, target = data
        out.append((f"the training data (a batch of {len(pred)} rows, the initial model's predictions)", pred,
                    target))
    return out


@dataclass
class Errors:
    """How far an analytic gradient is from central differences at one point: the largest absolute error, the
    largest relative error where |numeric| >= ATOL/RTOL (below that the absolute tolerance governs), the largest
    share of gradcheck's tolerance used (<= 1 passes), and the first element (or direction) beyond it."""

    abs: float
    rel: float
    tolerance: float
    first: Optional[str]


def finite_difference_errors(fn: Callable[..., Any], pred: torch.Tensor, target: torch.Tensor,
                             eps: float = EPS) -> Errors:
    """The analytic gradient against central differences, element by element for small predictions and along
    8 seeded random directions for large ones."""
    (analytic,) = torch.autograd.grad(fn(pred, target), pred)
    f = lambda q: fn(q, target)  # noqa: E731
    with torch.no_grad():
        base = pred.detach().clone()
        if base.numel() <= ELEMENTWISE:
            numeric = torch.zeros_like(base).reshape(-1)
            flat = base.reshape(-1)
            for i in range(flat.numel()):
                up, down = flat.clone(), flat.clone()
                up[i] += eps
                down[i] -= eps
                numeric[i] = (f(up.reshape(base.shape)) - f(down.reshape(base.shape))) / (2 * eps)
            numeric, exact, label = numeric.reshape(base.shape), analytic, "element"
        else:
            g = torch.Generator().manual_seed(0)
            directions = [torch.randn(base.shape, generator=g, dtype=base.dtype) for _ in range(8)]
            directions = [d / torch.linalg.vector_norm(d) for d in directions]
            numeric = torch.stack([(f(base + eps * d) - f(base - eps * d)) / (2 * eps) for d in directions])
            exact = torch.stack([(analytic * d).sum() for d in directions])
            label = "random direction"
    diff = (exact - numeric).abs()
    governed = numeric.abs() >= ATOL / RTOL
    rel = float((diff[governed] / numeric.abs()[governed]).max()) if governed.any() else 0.0
    share = diff / (ATOL + RTOL * numeric.abs())
    first = None
    bad = torch.nonzero(share > 1)
    if len(bad):
        idx = tuple(int(v) for v in bad[0])
        where = f"element {list(idx)}" if label == "element" else f"random direction {idx[0]}"
        first = f"{where}: analytic {float(exact[idx]):.6g}, numeric {float(numeric[idx]):.6g}"
    return Errors(float(diff.max()), rel, float(share.max()), first)


def check_loss(fn: Callable[..., Any], name: str, task: str, *, points: int = 3, second_order: bool = False,
               quick: bool = False, data: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> LossCheck:
    """Every check in order; the first that fails ends the run of checks (later ones depend on it). The gradient
    is checked at `points` draws of each residual scale and batch size (one with `quick`) and on `data`, a batch
    of the training data's (prediction, target) in float64 as large as the run's, when given."""
    report = LossCheck(name, task)
    pred, target = sample_inputs(task, 0)
    try:
        out = fn(pred, target)
    except USER_ERRORS as exc:
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
    except USER_ERRORS as exc:
        report.add("backward", False, describe(exc))
        return report
    if not report.add("backward", grad.shape == pred.shape, f"gradient of shape {tuple(grad.shape)}"):
        return report
    worst = Errors(0.0, 0.0, 0.0, None)
    for where, p, t in probes(task, 1 if quick else points, data):
        why = None
        try:
            torch.autograd.gradcheck(lambda q, t=t: fn(q, t), (p,), eps=EPS, atol=ATOL, rtol=RTOL,
                                     fast_mode=p.numel() > ELEMENTWISE)
        except USER_ERRORS as exc:  # GradcheckError, or a backward that raises on these inputs
            why = describe(exc)
        try:
            e = finite_difference_errors(fn, p, t)
        except USER_ERRORS as exc:
            e = Errors(math.nan, math.nan, math.nan, describe(exc))
        # every point is checked: the figures are the worst over all of them, the mismatch named is the first
        worst = Errors(max(worst.abs, e.abs), max(worst.rel, e.rel), max(worst.tolerance, e.tolerance),
                       worst.first or (f"{where}: {e.first or why}" if why is not None or e.first else None))
    report.max_abs_error, report.max_rel_error, report.max_tolerance_share = worst.abs, worst.rel, worst.tolerance
    detail = (f"max abs error {worst.abs:.2e}, max rel error {worst.rel:.2e}, worst element at "
              f"{worst.tolerance:.2g}× gradcheck's tolerance (≤ 1 passes)")
    if not report.add("gradcheck", worst.first is None, detail + (f"; first mismatch at {worst.first}"
                                                                  if worst.first else "")):
        return report
    if second_order:
        p, t = sample_inputs(task, 0)
        try:
            torch.autograd.gradgradcheck(lambda q: fn(q, t), (p,), eps=1e-6, atol=1e-5, rtol=1e-3)
            report.add("gradgradcheck", True, "second derivatives match finite differences")
        except USER_ERRORS as exc:
            report.add("gradgradcheck", False, describe(exc))
    return report
