"""K copies of any `nn.Module` trained as one batched computation with `torch.func`: the parameters of the K runs
live in one (K, P) tensor (`flat`, one row per run, in `named_parameters` order) whose (K, ...) views are the
leaves autograd differentiates; the forward pass is `vmap` over `functional_call` of one stateless copy of the
module. It has the interface of `stacked.StackedModel` (the hand-built fast path for stacks of Linear layers), so
the stacked side of the epoch skeleton trains either without knowing which.

What vmap cannot run — a module that updates its buffers in training mode (BatchNorm), data-dependent control
flow, in-place updates of its inputs — is found by `probe` on a real batch before training, and those runs train
one after another instead.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

import torch
from torch import nn

from losslab.errors import USER_ERRORS


class Rows:
    """The parameters of K runs as (K, ...) views (`params`, the leaves autograd differentiates) of one (K, P)
    tensor `flat`: what both stacked model layouts share."""

    k: int
    params: list[torch.Tensor]
    bounds: list[tuple[int, int]]
    shapes: list[Any]  # each parameter's shape in the module

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def run_views(self, tensor: torch.Tensor, k: int) -> list[torch.Tensor]:
        """Run k's parameters as views of row k of a (K, P) tensor (`flat`, or the gradients laid out like it),
        each in the shape the module itself gives it: what an optimizer of one run sees."""
        return [tensor[k, a:b].view(shape) for (a, b), shape in zip(self.bounds, self.shapes)]

    def gradient(self, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(K, P) the last backward's gradients, laid out like `flat` (written into `out` when given)."""
        grads = [p.grad.reshape(self.k, -1) if p.grad is not None else torch.zeros_like(p).reshape(self.k, -1)
                 for p in self.params]
        return torch.cat(grads, dim=1) if out is None else torch.cat(grads, dim=1, out=out)


class FuncStackedModel(Rows):
    """K parameter sets of one module architecture, stacked; buffers (if any) are shared and must not change."""

    def __init__(self, templates: Sequence[nn.Module]):
        from torch.func import functional_call, vmap

        self.k = len(templates)
        first = templates[0]
        self.names = [name for name, _ in first.named_parameters()]
        self.shapes = [p.shape for _, p in first.named_parameters()]
        self.flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in templates])
        self.params: list[torch.Tensor] = []
        self.bounds: list[tuple[int, int]] = []
        offset = 0
        for shape in self.shapes:
            size = int(torch.Size(shape).numel())
            self.params.append(self.flat[:, offset:offset + size].view(self.k, *shape).requires_grad_(True))
            self.bounds.append((offset, offset + size))
            offset += size
        self.base = copy.deepcopy(first)  # the architecture; its own parameters are never read
        self.buffers = {name: b for name, b in first.named_buffers()}

        def one(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (params, self.buffers), (x,))

        self._shared = vmap(one, in_dims=(0, None))
        self._each = vmap(one, in_dims=(0, 0))

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """x is (B, ...) for all runs (shared) or (K, B, ...); returns (K, B, outputs). An operation vmap has no
        batching rule for (CPU attention) runs once per run, as it runs alone: its warning is not the user's
        business (whether stacking pays is timed before training)."""
        import warnings

        params = dict(zip(self.names, self.params))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            return self._shared(params, x) if shared else self._each(params, x)

    def load_into(self, model: nn.Module, k: int, row: Optional[torch.Tensor] = None) -> nn.Module:
        """Run k's parameters (or a saved copy of its row) into a model of the template's layout."""
        row = self.flat[k] if row is None else row
        with torch.no_grad():
            for p, (a, b) in zip(model.parameters(), self.bounds):
                p.copy_(row[a:b].view_as(p))
        return model


def probe(template: nn.Module, x: torch.Tensor) -> Optional[str]:
    """None when two copies of `template` run stacked on the batch `x` (forward and backward, in training mode)
    and give what the module gives alone; otherwise why not, in a few words."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
           for m in template.modules()):
        return "BatchNorm updates its running statistics in training mode"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in template.modules()):
        return "dropout draws would differ from a run trained alone"
    try:
        stack = FuncStackedModel([template, template])
        stack.train(True)
        out = stack(x, True)
        out.sum().backward()
        with torch.no_grad():
            alone = template(x)
        if out.shape[1:] != alone.shape or not torch.allclose(out[0].detach(), alone, rtol=1e-4, atol=1e-5):
            return "the stacked forward differs from the module's own"
    except USER_ERRORS as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"torch.func.vmap cannot run it: {type(exc).__name__}: {first[:120]}"
    finally:
        template.zero_grad(set_to_none=True)
    return None

