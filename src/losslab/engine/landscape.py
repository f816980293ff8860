"""The loss surface around trained weights: the loss at many parameter vectors evaluated as one batched
computation (`torch.func.functional_call` under `vmap`, chunked to a memory budget), filter-normalised random
directions (Li et al. 2018), the principal directions of a training path, and curvature — the top Hessian
eigenvalue (power iteration on Hessian-vector products) and the trace (exact for small models, Hutchinson's
estimate otherwise).

Everything works on a flat parameter vector in `named_parameters` order; the model is evaluated in eval mode
(dropout off, BatchNorm with its running statistics), so a point's loss is a function of its parameters only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten(model: nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, p in model.named_parameters():
        out[name] = vector[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


def loss_at(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], Any]:
    """The loss as a function of the flat parameter vector (buffers as they are). Attention runs on its math
    kernel here: the fused CPU kernels have neither a second derivative (Hessian-vector products) nor a vmap rule."""
    from torch.func import functional_call
    from torch.nn.attention import SDPBackend, sdpa_kernel

    buffers = dict(model.named_buffers())

    def f(theta: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return loss_fn(functional_call(model, ({**unflatten(model, theta), **buffers},), (x,)), y)
    return f


def losses(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, points: torch.Tensor,
           budget: int = 256 * 2**20, how: Optional[list[str]] = None) -> torch.Tensor:
    """The loss at each row of `points` (M, P): batched — `vmap` over chunks sized so that a chunk's activations
    stay within `budget` bytes — or one point after another, whichever is faster here: both are timed on the first
    points (on a CPU a large model's batched matrix products can be slower than one GEMM per point; a small model
    gains from one call for many points). One by one also where vmap cannot run the model or the loss. `how`
    receives a line saying which was used."""
    import time

    from torch.func import vmap

    was = model.training
    model.eval()
    try:
        f = loss_at(model, loss_fn, x, y)
        with torch.no_grad():
            f(points[0])  # a plain call first: a model or loss that fails says so here
            per_point = 4 * (x.numel() + points.shape[1]) * 8  # rough bytes of one point's forward
            chunk = max(1, min(len(points), budget // max(1, per_point)))

            def batched(pts: torch.Tensor) -> torch.Tensor:
                return torch.cat([vmap(f)(pts[i:i + chunk]) for i in range(0, len(pts), chunk)])

            def single(pts: torch.Tensor) -> torch.Tensor:
                return torch.stack([f(p) for p in pts])

            probe = min(len(points), max(8, min(chunk, 64)))
            try:
                start = time.perf_counter()
                head = batched(points[:probe])
                t_batched = time.perf_counter() - start
            except (RuntimeError, ValueError, NotImplementedError):  # not vmappable: one by one
                if how is not None:
                    how.append("point by point (vmap cannot run this model or loss)")
                return single(points)
            start = time.perf_counter()
            single(points[:probe])
            t_single = time.perf_counter() - start
            use = batched if t_batched <= t_single else single
            if how is not None:
                how.append(f"batched (vmap, chunks of {chunk} points)" if use is batched else
                           "point by point (faster here than batched)")
            first = head if use is batched else single(points[:probe])
            return torch.cat([first, use(points[probe:])]) if probe < len(points) else first
    finally:
        model.train(was)


def losses_one_by_one(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                      points: torch.Tensor) -> torch.Tensor:
    """The reference: the model's own forward at each point, its parameters loaded one point at a time."""
    import copy

    probe = copy.deepcopy(model).eval()
    out = []
    with torch.no_grad():
        for p in points:
            torch.nn.utils.vector_to_parameters(p, probe.parameters())
            out.append(loss_fn(probe(x), y))
    return torch.stack(out)


def filter_normalised(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
    """A random direction (flat) with each filter rescaled to the norm of the weight filter it perturbs: the rows
    of a Linear weight, the output channels of a convolution. Biases and other 1-D parameters (normalisation
    layers) get zero, as Li et al. leave them out."""
    parts = []
    for p in model.parameters():
        if p.dim() <= 1:
            parts.append(torch.zeros(p.numel(), dtype=p.dtype))
            continue
        w = p.detach().cpu()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype)
        d_norm = d.reshape(len(d), -1).norm(dim=1).clamp_min(1e-12)
        w_norm = w.reshape(len(w), -1).norm(dim=1)
        parts.append((d * (w_norm / d_norm).view(-1, *[1] * (d.dim() - 1))).reshape(-1))
    return torch.cat(parts).to(next(model.parameters()).device)


def principal_directions(path: torch.Tensor, final: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The two principal directions of a training path's offsets from its final weights (PCA, as Li et al. plot
    trajectories), unit length, and the share of the path's variance each explains."""
    offsets = (path - final).double()
    _, s, v = torch.linalg.svd(offsets, full_matrices=False)
    share = (s ** 2 / (s ** 2).sum().clamp_min(1e-300)).tolist()
    d1 = v[0].to(final.dtype)
    d2 = v[1].to(final.dtype) if len(v) > 1 else torch.zeros_like(d1)
    return d1, d2, (share + [0.0, 0.0])[:2]


def project(path: torch.Tensor, origin: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """Coordinates (α, β) of each point of `path` in the plane origin + α d1 + β d2 (least squares)."""
    basis = torch.stack([d1, d2], dim=1).double()
    coords = torch.linalg.lstsq(basis, (path - origin).double().T).solution.T
    return coords.to(path.dtype)


# --- curvature ---------------------------------------------------------------------------------------------------

def hvp_of(f: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ H v, the Hessian of `f` at `theta` times `v`: the vector-Jacobian product of the gradient
    (reverse-over-reverse with torch.func; H is symmetric), its graph built once for every v."""
    from torch.func import grad, vjp

    _, pullback = vjp(grad(f), theta)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return pullback(v)[0]
    return hvp


@dataclass
class Eigen:
    value: float
    iterations: int
    converged: bool
    tolerance: float
    vector: Optional[torch.Tensor] = None  # the last iterate: where a next measurement can start


def top_eigenvalue(hvp: Callable[[torch.Tensor], torch.Tensor], size: int, *, tol: float = 1e-6,
                   max_iter: int = 500, seed: int = 0, dtype: torch.dtype = torch.float32,
                   device: Any = "cpu", start: Optional[torch.Tensor] = None) -> Eigen:
    """The largest (algebraic) Hessian eigenvalue by power iteration on H v, converged when the Rayleigh quotient
    changes by less than `tol` relative; when the dominant eigenvalue is negative, the iteration is repeated on
    H − λ I, whose dominant eigenvalue is then λmax − λ."""
    last: list[torch.Tensor] = []

    def power(op: Callable[[torch.Tensor], torch.Tensor], first: Optional[torch.Tensor]) -> tuple[float, int, bool]:
        if first is not None:
            v = first.detach().to(dtype=dtype, device=device).clone()
        else:
            g = torch.Generator().manual_seed(seed)
            v = torch.randn(size, generator=g, dtype=dtype).to(device)
        v /= v.norm().clamp_min(1e-30)
        value = 0.0
        for i in range(1, max_iter + 1):
            w = op(v)
            new = float(torch.dot(v, w))
            norm = w.norm()
            if not math.isfinite(new) or norm == 0:
                last[:] = [v]
                return new, i, norm == 0
            v = w / norm
            if i > 1 and abs(new - value) <= tol * max(abs(new), 1e-12):
                last[:] = [v]
                return new, i, True
            value = new
        last[:] = [v]
        return value, max_iter, False

    value, iterations, converged = power(hvp, start)
    if value < 0:
        shifted, more, converged = power(lambda v: hvp(v) - value * v, None)
        value, iterations = shifted + value, iterations + more
    return Eigen(value, iterations, converged, tol, last[0] if last else None)


@dataclass
class Trace:
    value: float
    exact: bool
    std_error: float  # of Hutchinson's estimate (0 when exact)
    samples: int


EXACT_TRACE_UP_TO = 4096  # parameters: the trace is the sum of e_iᵀ H e_i over every basis vector


def hessian_trace(hvp: Callable[[torch.Tensor], torch.Tensor], size: int, *, samples: int = 200, seed: int = 0,
                  dtype: torch.dtype = torch.float32, device: Any = "cpu") -> Trace:
    """The trace of the Hessian: exact (every diagonal entry through one H e_i each) for models up to
    EXACT_TRACE_UP_TO parameters, else Hutchinson's estimate E[vᵀ H v] over Rademacher vectors, with its standard
    error."""
    if size <= EXACT_TRACE_UP_TO:
        total = 0.0
        for i in range(size):
            e = torch.zeros(size, dtype=dtype, device=device)
            e[i] = 1.0
            total += float(hvp(e)[i])
        return Trace(total, True, 0.0, size)
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(samples):
        v = (torch.randint(0, 2, (size,), generator=g) * 2 - 1).to(dtype).to(device)
        values.append(float(torch.dot(v, hvp(v))))
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / max(1, len(values) - 1))
    return Trace(mean, False, sd / math.sqrt(len(values)), samples)


def grid_points(origin: torch.Tensor, d1: torch.Tensor, d2: Optional[torch.Tensor], alphas: Sequence[float],
                betas: Sequence[float] = ()) -> torch.Tensor:
    """origin + α d1 (+ β d2) for every α (and β): (len(alphas) [× len(betas)], P), α varying slowest."""
    a = torch.tensor(list(alphas), dtype=origin.dtype, device=origin.device)
    if d2 is None:
        return origin + a[:, None] * d1
    b = torch.tensor(list(betas), dtype=origin.dtype, device=origin.device)
    return (origin + a[:, None, None] * d1 + b[None, :, None] * d2).reshape(-1, len(origin))


class SharpnessTracker:
    """The top Hessian eigenvalue of a model's loss on a fixed evaluation set, measured again and again during
    training: each power iteration starts from the last measurement's eigenvector (the top direction moves
    little between measurements), converged to `tol` relative."""

    def __init__(self, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, tol: float = 1e-3, max_iter: int = 300):
        self.loss_fn, self.x, self.y, self.tol, self.max_iter = loss_fn, x, y, tol, max_iter
        self.vector: Optional[torch.Tensor] = None
        self.last: Optional[Eigen] = None

    def __call__(self, model: nn.Module) -> float:
        was = model.training
        model.eval()
        try:
            theta = flat(model)
            hvp = hvp_of(loss_at(model, self.loss_fn, self.x, self.y), theta)
            start = self.vector if self.vector is not None and len(self.vector) == len(theta) else None
            self.last = top_eigenvalue(hvp, len(theta), tol=self.tol, max_iter=self.max_iter, dtype=theta.dtype,
                                       device=theta.device, start=start)
            self.vector = self.last.vector
            return self.last.value
        finally:
            model.train(was)
