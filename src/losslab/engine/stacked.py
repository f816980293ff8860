"""The stacked engine: K runs on a leading dimension, one batched forward/backward and one batched optimizer
update per step, instead of K runs one after another. It emits the same events and builds the same
`RunResult`s (same record keys, in `epoch_record`'s order, and the same status helpers) as the sequential path.

Covers runs on the same model and data that differ in learning rate, seed, optimizer and loss: models made of
Linear, Flatten, LogSoftmax and elementwise activation layers (the regression model, logistic, mlp without
dropout or batch norm) and every optimizer whose registry entry names a `stacked` update. All parameters of
all runs live in one (K, P) tensor (`StackedModel.flat`, one row per run) that the layers see as views. Runs
sharing optimizer settings form a contiguous block of rows, updated by one batched optimizer in place; runs
sharing a loss form contiguous segments (the regression MSE in closed form, any other loss under vmap). Each
batched update follows torch.optim's own single-tensor update (the hyper-parameters are read from a real
torch.optim optimizer built for the run, so defaults cannot drift); anything else runs sequentially
(`unsupported` says why). Per-epoch figures are kept on the device and read back in chunks
(`stacked_records.History`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence, cast

import torch
from torch import nn

from losslab import interrupt
from losslab.components.losses import is_import_path
from losslab.components.optimizers import OPTIMIZERS, build_optimizer, kind, stacked_update
from losslab.engine.batches import epoch_order
from losslab.engine.events import Consumer
from losslab.engine.func_stack import Rows
from losslab.engine.loop import batch_generator
from losslab.engine.problems import Problem, RegressionProblem, leaf_outputs
from losslab.engine.runs import RunResult, RunSpec, conclude, end_run, run_info
from losslab.engine.skeleton import Plan
from losslab.engine.stacked_records import History
from losslab.errors import USER_ERRORS
from losslab.limits import memory_bytes
from losslab.objects import shown

_LAYERS = (nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.Identity, nn.Flatten, nn.LogSoftmax)


def _layers(model: nn.Module) -> Optional[list[nn.Module]]:
    mods = list(model) if isinstance(model, nn.Sequential) else [model]
    flat: list[nn.Module] = []
    for m in mods:
        if isinstance(m, nn.Sequential):
            inner = _layers(m)
            if inner is None:
                return None
            flat += inner
        elif isinstance(m, _LAYERS) and (not isinstance(m, nn.Linear) or m.bias is not None):
            flat.append(m)
        else:
            return None
    return flat


def hyperparameters(optim_cfg: Any) -> dict[str, Any]:
    """The settings torch.optim itself would use for this config (its defaults included)."""
    opt = build_optimizer([nn.Parameter(torch.zeros(1))], optim_cfg)
    group = dict(opt.param_groups[0])
    group.pop("params")
    group["decoupled"] = bool(group.get("decoupled_weight_decay", isinstance(opt, torch.optim.AdamW)))
    return group


def stackable_optimizers() -> list[str]:
    return [e.name for e in OPTIMIZERS if kind(e.name).protocol.stackable is None]


def can_stack(spec: RunSpec) -> bool:
    """Whether the run's optimizer can train stacked: a hand-written batched update, or its own step() driven over
    per-run views (any class whose protocol is a plain step)."""
    return stacked_update(spec.optim.name) is not None or kind(spec.optim.name).protocol.stackable is None


def cannot_stack(specs: Sequence[RunSpec]) -> Optional[str]:
    """Why some of these runs' optimizers train one by one whatever the problem (a closure, train/eval modes), or
    None."""
    for name in dict.fromkeys(s.optim.name for s in specs):
        why = kind(name).protocol.stackable
        if stacked_update(name) is None and why is not None:
            return f"{shown(name)} cannot stack: {why}"
    return None


def unsupported(problem: Problem, specs: Sequence[RunSpec]) -> Optional[str]:
    """None when these runs can train stacked; otherwise the reason they run one after another."""
    why = cannot_stack(specs) or problem.cannot_stack
    if why is not None:
        return why
    losses = {s.loss or problem.loss_cfg for s in specs}
    if any(is_import_path(cfg.name) for cfg in losses):
        return "custom losses run sequentially"
    if problem.source.streamed:
        return "the data is streamed batch by batch"
    if problem.train_cfg.track_sharpness:
        return "--track-sharpness measures each run's own model"
    template = problem.new_model(0)
    frozen = [name for name, p in template.named_parameters() if not p.requires_grad]
    if frozen:  # the stacked update moves every parameter: these must stay as the model froze them
        return f"the model freezes {', '.join(frozen[:3])}{' …' if len(frozen) > 3 else ''} (requires_grad=False)"
    kinds = sorted({str(p.dtype).replace("torch.", "") for p in template.parameters()} - {"float32"})
    if kinds:
        return f"the model has {', '.join(kinds)} parameters (the stacked engine trains float32)"
    needed = stacked_memory(template, in_memory(problem)[0], Plan.of(problem).size, len(specs))
    if needed > memory_bytes() / 2:
        return (f"{len(specs)} stacked runs would need about {needed / 2**30:,.1f} GiB (each run's parameters, "
                "gradients, optimizer state and activations), more than half of this machine's memory")
    if _layers(template) is None:
        if getattr(problem, "user_model", None) is None and not problem.stack_by_timing:
            return "the model has layers without a batched form (e.g. convolutions)"
        from losslab.engine.func_stack import probe

        x, _ = in_memory(problem)
        why = probe(template, x[:min(len(x), 8)])
        if why is not None:
            return why
    try:
        hypers = [hyperparameters(specs[g[0]].optim) for g in optimizer_groups(specs)
                  if stacked_update(specs[g[0]].optim.name) is not None]
        with torch.no_grad():  # every loss must work per run under vmap
            x, y = in_memory(problem)
            out = stack_of([template, template])(x[:2], True)
            for cfg in losses:
                torch.func.vmap(problem.loss_for(cfg), in_dims=(0, None))(out, y[:2])
    except USER_ERRORS as exc:
        return f"batched form failed: {type(exc).__name__}: {exc}"
    why = _own_steps_run(template, specs)
    if why is not None:
        return why
    for h in hypers:
        if h.get("amsgrad") or h.get("centered") or h.get("maximize") or h.get("dampening", 0) \
                or h.get("lr_decay", 0) or h.get("initial_accumulator_value", 0):
            return "optimizer options without a batched form"
    return slower_stacked(problem, template, len(specs)) if problem.stack_by_timing else None


def slower_stacked(problem: Problem, template: nn.Module, runs: int, repeats: int = 3) -> Optional[str]:
    """A problem whose runs may or may not gain from stacking (a language model: one large forward pass each)
    is timed before training, as landscape times its grid: one stacked forward-backward pass of the runs (up to
    4) against theirs one by one, the fastest of `repeats`; why not to stack when stacking is slower."""
    k = min(runs, 4)
    x, y = problem.source.draw(Plan.of(problem).size, batch_generator(0))
    loss_fn = problem.loss_fn
    models = [copy.deepcopy(template) for _ in range(k)]
    stack = stack_of(models)
    each = torch.func.vmap(loss_fn, in_dims=(0, None))

    def stacked() -> None:
        stack.zero_grad()
        each(stack(x, True), y).sum().backward()

    def alone() -> None:
        for m in models:
            m.zero_grad()
            loss_fn(m(x), y).backward()

    times = {}
    for name, fn in (("stacked", stacked), ("alone", alone)):
        fn()  # (first-call costs on neither side)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        times[name] = best
    ratio = times["alone"] / times["stacked"]
    if ratio >= 1:
        return None
    return (f"stacking measured {ratio:.2f}x the speed of one by one on this machine (one forward-backward pass "
            f"of {k} runs, timed before training)")


def _own_steps_run(template: nn.Module, specs: Sequence[RunSpec]) -> Optional[str]:
    """None when every optimizer the stack drives through its own step() takes a step over per-run views of a
    two-run stack (a class that needs whole tensors, or fails on views, would otherwise fail every run of the
    stack); else why not."""
    for group in optimizer_groups(specs):
        optim = specs[group[0]].optim
        if stacked_update(optim.name) is not None:
            continue
        stack = stack_of([copy.deepcopy(template), copy.deepcopy(template)])
        try:
            own = OwnStep(optim, stack, [optim.lr or 1e-3] * 2, 0, 2)
            own.step(torch.ones_like(stack.flat) * 1e-3)
        except USER_ERRORS as exc:
            return f"{shown(optim.name)} cannot stack: its step() fails on per-run views: {type(exc).__name__}: {exc}"
    return None


def stacked_memory(template: nn.Module, x: torch.Tensor, batch: int, runs: int) -> float:
    """Bytes that `runs` stacked copies of `template` need for one training step on batches of `batch` rows:
    float32 parameters with their gradient and two optimizer states, and each layer's output kept for the backward
    pass and its gradient. The activations are counted by a forward pass of a copy on the `meta` device (nothing
    is allocated), or, for a model that cannot run there, of two real rows scaled to the batch."""
    params = sum(p.numel() for p in template.parameters())
    try:
        acts = leaf_outputs(copy.deepcopy(template).to("meta"), torch.empty(batch, *x.shape[1:], device="meta"))
    except USER_ERRORS:
        acts = None
    if acts is None:
        rows = min(2, len(x))
        acts = round((leaf_outputs(template, x[:rows]) or 0) * batch / rows)
    return 4.0 * runs * (4 * params + 2 * acts)


def optimizer_groups(specs: Sequence[RunSpec]) -> list[list[int]]:
    """Indices of runs that share optimizer settings (all but learning rate), in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for i, t in enumerate(specs):
        groups.setdefault(replace(t.optim, lr=None), []).append(i)
    return list(groups.values())


def _mse_per_run(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) mean squared error of each run's (B, 1) predictions: MSELoss's reduction, without vmap's per-call
    overhead (a quarter of a stacked regression sweep's time)."""
    return (out - y).pow(2).mean(dim=(1, 2))


def batched_loss(problem: Problem, spec: RunSpec, fn: Any) -> tuple[Any, Any]:
    """The loss of a segment for all its runs at once: (shared targets, per-run targets). The regression MSE
    in closed form; any other loss through vmap."""
    cfg = spec.loss or problem.loss_cfg
    if problem.task == "regression" and cfg.name == "mse":
        return _mse_per_run, _mse_per_run
    return torch.func.vmap(fn, in_dims=(0, None)), torch.func.vmap(fn, in_dims=(0, 0))


def loss_segments(problem: Problem, specs: Sequence[RunSpec]) -> list[tuple[int, int, Any]]:
    """(start, stop, loss function) for each maximal run of consecutive specs that share a loss."""
    segments: list[tuple[int, int, Any]] = []
    for i, spec in enumerate(specs):
        fn = problem.loss_for(spec.loss)
        if segments and segments[-1][2] is fn:
            segments[-1] = (segments[-1][0], i + 1, fn)
        else:
            segments.append((i, i + 1, fn))
    return segments


class StackedModel(Rows):
    """K copies of a Linear/activation/Flatten/LogSoftmax stack in one (K, P) tensor `flat` (run k's parameters
    are row k, in `named_parameters` order); `params` are (K, ...) views of it that autograd treats as leaves, so
    the optimizer, the clipping and the per-epoch statistics touch one tensor instead of one per layer. Linear
    layers are kept in the layout the batched product wants — weights (K, in, out), biases (K, 1, out) — so the
    forward pass records no transposes or reshapes for backward to undo every step."""

    def __init__(self, templates: Sequence[nn.Module]):
        self.k = len(templates)
        layers = _layers(templates[0])
        if layers is None:
            raise ValueError("the model has layers without a batched form")  # stackable() said why before
        self.layers = layers
        self.flat = torch.stack([torch.cat([self._stored(p).reshape(-1) for p in m.parameters()]) for m in templates])
        self.params: list[torch.Tensor] = []
        self.bounds: list[tuple[int, int]] = []
        self.shapes = [p.shape for p in templates[0].parameters()]
        offset = 0
        for p in templates[0].parameters():
            size, shape = p.numel(), self._stored(p).shape
            self.params.append(self.flat[:, offset:offset + size].view(self.k, *shape).requires_grad_(True))
            self.bounds.append((offset, offset + size))
            offset += size

    @staticmethod
    def _stored(p: torch.Tensor) -> torch.Tensor:
        """A Linear parameter as the stack keeps it: weight (out, in) -> (in, out), bias (out,) -> (1, out)."""
        return p.detach().t() if p.ndim == 2 else p.detach().unsqueeze(0)

    def train(self, mode: bool = True) -> None:
        """(Its layers behave the same in training and evaluation.)"""

    def run_views(self, tensor: torch.Tensor, k: int) -> list[torch.Tensor]:
        """Run k's parameters as views of row k of a (K, P) tensor, each in the module's own shape (weights
        (out, in): a transposed view of the stored (in, out))."""
        return [tensor[k, a:b].view(shape[1], shape[0]).t() if len(shape) == 2 else tensor[k, a:b].view(shape)
                for (a, b), shape in zip(self.bounds, self.shapes)]

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """x is (B, ...) for all trials (shared) or (K, B, ...); returns (K, B, outputs)."""
        h, i = x, 0
        for layer in self.layers:
            if isinstance(layer, nn.Flatten):
                h = h.flatten(start_dim=1 if shared else 2)
            elif isinstance(layer, nn.Linear):
                w, b = self.params[i], self.params[i + 1]
                i += 2
                if shared:
                    h = h.expand(self.k, *h.shape)
                    shared = False
                h = torch.baddbmm(b, h, w)
            elif isinstance(layer, nn.LogSoftmax):
                h = torch.log_softmax(h, dim=-1)
            else:  # an elementwise activation module: the same function on every run's slice
                h = layer(h)
        if shared:
            h = h.expand(self.k, *h.shape)
        return h

    def load_into(self, model: nn.Module, k: int, row: Optional[torch.Tensor] = None) -> nn.Module:
        """Run k's parameters (or a saved copy of its row) into a model of the template's layout."""
        row = self.flat[k] if row is None else row
        with torch.no_grad():
            for p, (a, b) in zip(model.parameters(), self.bounds):
                p.copy_(row[a:b].view(self._stored(p).shape).t() if p.ndim == 2 else row[a:b].view_as(p))
        return model


def stack_of(templates: Sequence[nn.Module]) -> Any:
    """K copies of a model stacked: the hand-built layout for stacks of Linear layers (the fastest), any other
    module through torch.func (`func_stack.FuncStackedModel`)."""
    if _layers(templates[0]) is not None:
        return StackedModel(templates)
    from losslab.engine.func_stack import FuncStackedModel

    return FuncStackedModel(templates)


class BatchedOptimizer:
    """torch.optim's single-tensor updates with a per-run learning rate, on the rows [start, stop) of the stacked
    (K, P) parameters (in place, through a view); `kind` is the registry entry's `stacked` update. The updates are
    elementwise, so one update of the whole row block gives each run exactly what its own optimizer would."""

    def __init__(self, kind: str, hyper: dict[str, Any], flat: torch.Tensor, lr: torch.Tensor,
                 start: int = 0, stop: Optional[int] = None):
        self.kind, self.h, self.flat = kind, hyper, flat
        self.start, self.stop = start, stop if stop is not None else flat.shape[0]
        self.whole = self.start == 0 and self.stop == flat.shape[0]
        self.state: dict[str, torch.Tensor] = {}
        self.step_count = 0
        self.set_rates(lr.tolist())
        self._update = getattr(self, f"_{kind}")

    def rates(self) -> list[float]:
        """The learning rate each run of this slice trains with now (what a record's `lr` shows)."""
        return self.rate_list

    def set_rates(self, rates: Sequence[float]) -> None:
        """New per-run rates (a schedule's step); torch.optim reads the group's lr each step, so do we."""
        self.rate_list = list(rates)
        self.lr = torch.tensor(self.rate_list, dtype=torch.float64).view(-1, 1).to(self.flat)

    def step(self, grad: torch.Tensor) -> None:
        """One update from the (K, P) gradients of every run. (No autograd to switch off: the stacked
        parameters' base tensor and the gradients read from it do not require grad.)"""
        self.step_count += 1
        if self.whole:
            self._update(self.flat, grad, self.lr, self.state)
        else:
            self._update(self.flat[self.start:self.stop], grad[self.start:self.stop], self.lr, self.state)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        wd, m = self.h.get("weight_decay", 0), self.h.get("momentum", 0)
        d_p = g if wd == 0 else g.add(p, alpha=wd)
        if m != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d_p.clone()
            else:
                buf.mul_(m).add_(d_p)
            d_p = d_p.add(buf, alpha=m) if self.h.get("nesterov") else buf
        p.addcmul_(d_p, lr, value=-1)

    def _adam(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        (beta1, beta2), wd, step = self.h["betas"], self.h.get("weight_decay", 0), self.step_count
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        if wd != 0:
            if self.h["decoupled"]:
                p.mul_(1 - lr * wd)
            else:
                g = g.add(p, alpha=wd)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = lr / (1 - beta1 ** step)
        denom = exp_avg_sq.sqrt().div_((1 - beta2 ** step) ** 0.5).add_(self.h["eps"])
        p.addcmul_(exp_avg / denom, step_size, value=-1)

    def _rmsprop(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        alpha, eps = self.h["alpha"], self.h["eps"]
        wd, m = self.h.get("weight_decay", 0), self.h.get("momentum", 0)
        if not state:
            state["square_avg"] = torch.zeros_like(p)
            if m > 0:
                state["momentum_buffer"] = torch.zeros_like(p)
        if wd != 0:
            g = g.add(p, alpha=wd)
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        avg = square_avg.sqrt().add_(eps)
        if m > 0:
            buf = state["momentum_buffer"]
            buf.mul_(m).addcdiv_(g, avg)
            p.addcmul_(buf, lr, value=-1)
        else:
            p.addcmul_(g / avg, lr, value=-1)

    def _adagrad(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        wd, eps = self.h.get("weight_decay", 0), self.h["eps"]
        if not state:
            state["sum"] = torch.zeros_like(p)
        if wd != 0:
            g = g.add(p, alpha=wd)
        state["sum"].addcmul_(g, g, value=1)
        std = state["sum"].sqrt().add_(eps)
        p.addcmul_(g / std, lr, value=-1)


def _block_views(model: Any, tensor: torch.Tensor, start: int, stop: int) -> list[torch.Tensor]:
    """Rows [start, stop) of a (K, P) tensor as one (runs, ...) view per parameter, in the stack's layout."""
    return [tensor[start:stop, a:b].view(stop - start, *p.shape[1:]) for p, (a, b) in zip(model.params, model.bounds)]


def _per_run_views(model: Any, tensor: torch.Tensor, start: int, stop: int) -> list[torch.Tensor]:
    return [v for k in range(start, stop) for v in model.run_views(tensor, k)]


def _each_run(optim: Any, params: list[torch.Tensor], lrs: Sequence[float]) -> list[Any]:
    """One optimizer per run (over `params`' run-th share), at its rate: what each run alone would have."""
    share = len(params) // len(lrs)
    return [build_optimizer([{"params": params[i * share:(i + 1) * share], "lr": lr}], optim)
            for i, lr in enumerate(lrs)]


def _run_groups(optim: Any, params: list[torch.Tensor], lrs: Sequence[float]) -> list[Any]:
    """One optimizer with a parameter group per run, at its rate."""
    share = len(params) // len(lrs)
    return [build_optimizer([{"params": params[i * share:(i + 1) * share], "lr": lr} for i, lr in enumerate(lrs)],
                            optim)]


def _whole(optim: Any, params: list[torch.Tensor], lrs: Sequence[float]) -> list[Any]:
    """One optimizer over whole (runs, ...) blocks at the runs' one rate."""
    return [build_optimizer([{"params": params, "lr": lrs[0]}], optim)]


LAYOUTS = {"whole": (_block_views, _whole), "groups": (_per_run_views, _run_groups),
           "each": (_per_run_views, _each_run)}


def alike(optim: Any, model: Any, start: int, stop: int, lrs: Sequence[float], layout: str, steps: int = 3) -> bool:
    """Whether the class gives the runs [start, stop) in `layout` exactly what an optimizer per run gives them
    (`each`, what every run alone has): a few steps of random gradients on copies of the stack, compared to the
    bit, and the numbers it keeps per group (Prodigy's and D-Adaptation's d) equal. `whole` passes for a class
    that updates every element on its own (Adam, Lion, NAdam; not Adafactor, Muon, SOAP, LAMB or Prodigy, whose
    steps use a tensor's shape or norm or a statistic of the group); `groups` for one whose groups do not share a
    statistic."""
    rows = model.flat[start:stop].detach().clone()
    generator = torch.Generator().manual_seed(0)
    try:
        sides = []
        for name in ("each", layout):
            views, build = LAYOUTS[name]
            tensor, grad = torch.zeros_like(model.flat), torch.zeros_like(model.flat)
            tensor[start:stop] = rows
            params = views(model, tensor, start, stop)
            sides.append((tensor, params, views(model, grad, start, stop), grad, build(optim, params, lrs)))
        for _ in range(steps):
            g = torch.randn(rows.shape, generator=generator) * 1e-2
            for _, params, grads, grad, optimizers in sides:
                grad[start:stop] = g
                for p, pg in zip(params, grads):
                    p.grad = pg
                for optimizer in optimizers:
                    optimizer.step()
        reference = [o.param_groups[0] for o in sides[0][4]]
        groups = [g for o in sides[1][4] for g in o.param_groups]
        if len(groups) == 1:  # (one group for every run: each run's numbers must equal its)
            groups = groups * len(reference)
        mixed = any(_number(mine.get(key)) != _number(value) for ref, mine in zip(reference, groups)
                    for key, value in ref.items() if key != "params" and _number(value) is not None)
        return bool(torch.equal(sides[0][0], sides[1][0])) and not mixed
    except USER_ERRORS:
        return False


def _number(value: Any) -> Optional[float]:
    """A group setting as a number (a one-element tensor too), or None for anything else."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class OwnStep:
    """Any optimizer class driven through its own step() for the runs [start, stop) of a stack, over views of the
    stacked parameters: an optimizer per run over its parameters in their own shapes, at its rate — exactly what the
    run alone has; or, for runs at one rate whose class updates every element on its own (`elementwise`), one
    optimizer over whole (runs, ...) tensors, one per layer, so its step makes as few calls as one run's. Before
    every step each view's `.grad` is set to the matching view of the stacked gradient. torch's (or the library's,
    or the user's) code does every update: nothing is re-implemented."""

    def __init__(self, optim: Any, model: Any, lrs: Sequence[float], start: int, stop: int,
                 apart: bool = False):
        """`apart`: the runs' rates may part ways later (ReduceLROnPlateau follows each run's own loss)."""
        self.start, self.stop, self.model = start, stop, model
        self.count = stop - start
        # the fewest step() calls that give every run what it alone would have: whole tensors for an elementwise
        # class at one rate (not when ReduceLROnPlateau can part the rates), a group per run when groups share no
        # statistic, else an optimizer per run
        one_rate = len(set(lrs)) == 1 and not apart and self.count > 1
        self.layout = next(name for name in ("whole", "groups", "each") if name == "each" or (
            (one_rate or name == "groups") and alike(optim, model, start, stop, lrs, name)))
        views, build = LAYOUTS[self.layout]
        self.buffer = torch.zeros_like(model.flat)  # the step's gradients, copied in: their views are made once
        self.params = views(model, model.flat, start, stop)
        self.grads = views(model, self.buffer, start, stop)
        self.optimizers = build(optim, self.params, lrs)

    def rates(self) -> list[float]:
        rates = [float(g["lr"]) for o in self.optimizers for g in o.param_groups]
        return rates * self.count if self.layout == "whole" else rates

    def set_rates(self, rates: Sequence[float]) -> None:
        groups = [g for o in self.optimizers for g in o.param_groups]
        for group, rate in zip(groups, rates):  # (whole: one rate, a schedule moves every run's alike)
            group["lr"] = rate

    def step(self, grad: torch.Tensor) -> None:
        self.buffer.copy_(grad)
        for param, g in zip(self.params, self.grads):  # (again each step: a step() may set .grad to None)
            param.grad = g
        for optimizer in self.optimizers:
            optimizer.step()


class StackedSide:
    """The skeleton's model-and-update part for K runs at once: one batched forward/backward over the stacked
    parameters, each run's own gradient in its row, clipping per row, and one batched update per optimizer block.
    A run whose loss stops being finite is frozen (its weights kept as they were) and leaves the records; the
    others train on. So is a run asked to stop (`retire`: its target reached). Each epoch's figures stay on the
    device (`History`) and come back as records in chunks (every epoch when runs stop at a target)."""

    def __init__(self, problem: Problem, specs: Sequence[RunSpec], plan: Any):
        self.problem, self.specs, self.plan = problem, specs, plan
        self.runs = k = len(specs)
        seeds = sorted({t.seed for t in specs})
        self.templates = {s: problem.new_model(s) for s in seeds}
        self.model = model = stack_of([self.templates[t.seed] for t in specs])
        self.optimizers, start_i = [], 0
        for group in optimizer_groups(specs):
            stop_i = start_i + len(group)
            lrs = torch.tensor([specs[i].optim.lr for i in group], dtype=torch.float64)
            first = specs[group[0]].optim
            update = stacked_update(first.name)
            self.optimizers.append(BatchedOptimizer(update, hyperparameters(first), model.flat, lrs, start_i, stop_i)
                                   if update is not None else OwnStep(first, model, lrs.tolist(), start_i, stop_i,
                                                                      problem.train_cfg.schedule.name == "plateau"))
            start_i = stop_i
        self.segments = [(a, b, *batched_loss(problem, specs[a], fn)) for a, b, fn in loss_segments(problem, specs)]
        self.x, self.y = in_memory(problem)
        self.generators = [batch_generator(s) for s in seeds]
        self.spec_gen = [seeds.index(t.seed) for t in specs]
        cfg = problem.train_cfg
        self.clip_norm, self.clip_value = cfg.clip_grad_norm, cfg.clip_grad_value
        self.clipping = cfg.clip_grad_norm is not None or cfg.clip_grad_value is not None
        self.carriers = _carrier_schedules(problem, specs, plan.batches)
        if self.carriers:  # a scheduler sets the first rate when it is built (warm-up's start, one-cycle's initial)
            self.apply_rates()
        # the linear regression model's parameters, recorded every epoch (none for other models)
        self.names = (problem.tracked or None) if isinstance(problem, RegressionProblem) else None
        layer_names = [name for name, _ in self.templates[seeds[0]].named_parameters()]
        self.keys = record_keys(self.names, layer_names, self.clipping, problem.has_validation)
        self.diverged_at: list[Optional[int]] = [None] * k
        self.stopped_at: dict[int, int] = {}  # runs asked to stop (a target reached): their last epoch
        self.frozen: dict[int, torch.Tensor] = {}
        self.history = History(k, model.bounds, problem.device, with_params=self.names is not None,
                               clipping=self.clipping, validation=problem.has_validation,
                               # (a target to stop at is checked on every epoch's record: no chunk runs past it)
                               every_epoch=bool(self.carriers) or problem.train_cfg.stop_at is not None,
                               units=_units(problem) if self.names else None)
        self.each = torch.ones(k, device=problem.device)
        self.rate_list: list[float] = []
        self.epoch = 0  # the epoch being trained

    def schedules(self) -> Any:
        from losslab.engine.skeleton import Schedules

        return Schedules([_Carried(*pair) for pair in self.carriers], self.apply_rates) if self.carriers else None

    def apply_rates(self) -> None:
        _apply_rates(self.optimizers, self.carriers)
        self.rate_list = []

    def rates(self) -> list[float]:
        if not self.rate_list:  # (they change only when a schedule steps)
            self.rate_list = [lr for optimizer in self.optimizers for lr in optimizer.rates()]
        return self.rate_list

    def batches(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, bool, int]]:
        self.epoch = epoch
        self.model.train(True)
        x, y, n, size = self.x, self.y, self.plan.n, self.plan.size
        slot = self.history.slot
        if not self.plan.full_batch:
            self.history.views[slot][0].zero_()
        if self.clipping:
            self.history.clipped[slot].zero_()
        if self.plan.full_batch:
            return [(x, y, True, n)]
        device = self.problem.device
        draw = getattr(self.problem.source, "draw", None)
        if draw is not None:  # windows of a text: each run's generator draws its own, as it would alone
            return self._drawn(draw, size)
        perms = [epoch_order(n, g).to(device) for g in self.generators]
        batches = []
        for i in range(0, n, size):
            if len(perms) == 1:
                idx = perms[0][i:i + size]
                batches.append((x[idx], y[idx], True, len(idx)))
            else:
                idx = torch.stack([perms[g][i:i + size] for g in self.spec_gen])
                batches.append((x[idx], y[idx], False, idx.shape[1]))
        return batches

    def _drawn(self, draw: Callable[..., Any], size: int) -> list[tuple[torch.Tensor, torch.Tensor, bool, int]]:
        """An epoch of batches drawn by each run's generator (a language model's random windows)."""
        batches = []
        for _ in range(self.plan.batches):
            drawn = [draw(size, g) for g in self.generators]
            if len(drawn) == 1:
                batches.append((drawn[0][0], drawn[0][1], True, size))
            else:
                batches.append((torch.stack([drawn[g][0] for g in self.spec_gen]),
                                torch.stack([drawn[g][1] for g in self.spec_gen]), False, size))
        return batches

    def losses_of(self, xb: torch.Tensor, yb: torch.Tensor, shared: bool) -> torch.Tensor:
        out = self.model(xb, shared)
        if len(self.segments) == 1:  # one loss for all runs: no slices for backward to route through
            _, _, shared_fn, each_fn = self.segments[0]
            return shared_fn(out, yb) if shared else each_fn(out, yb)
        return torch.cat([(shared_fn(out[a:b], yb) if shared else each_fn(out[a:b], yb[a:b]))
                          for a, b, shared_fn, each_fn in self.segments])

    def step(self, batch: tuple[torch.Tensor, torch.Tensor, bool, int], last: bool) -> torch.Tensor:
        xb, yb, shared, size = batch
        model, history = self.model, self.history
        total_loss, last_grad, last_before, _ = history.views[history.slot]
        model.zero_grad()
        losses = self.losses_of(xb, yb, shared)
        if not math.isfinite(losses.detach().sum().item()):  # some run's loss is not finite: it diverged
            for i in torch.nonzero(~torch.isfinite(losses)).flatten().tolist():
                if self.diverged_at[i] is None:
                    self.diverged_at[i] = self.epoch
                    self.frozen[i] = model.flat[i].clone()
        losses.backward(self.each)  # the gradient of the sum: every run's own gradient in its rows
        # the epoch's last step: its gradients (written straight into the history) and size are recorded
        grad = model.gradient(out=last_grad if last else None)
        if self.clipping:
            history.clipped[history.slot] += _clip(grad, self.clip_norm, self.clip_value)
        if last:
            last_before.copy_(model.flat)
        for optimizer in self.optimizers:
            optimizer.step(grad)
        if self.plan.full_batch:  # the mean over the epoch is the one batch's loss
            total_loss.copy_(losses.detach())
        else:
            total_loss += losses.detach().to(total_loss.dtype) * size
        return losses

    def losses(self, batch_losses: torch.Tensor) -> list[float]:
        return batch_losses.detach().tolist()

    def broken(self, batch_losses: torch.Tensor) -> bool:
        return False  # a diverged run is frozen; the others finish the epoch

    def end_epoch(self, epoch: int, rates: list[float], start: float) -> list[tuple[int, dict[str, Any]]]:
        history = self.history
        total_loss, _, _, after = history.views[history.slot]
        if not self.plan.full_batch:
            total_loss /= self.plan.n
        if self.clipping:
            history.clipped[history.slot] /= self.plan.batches
        after.copy_(self.model.flat)
        if self.problem.has_validation:
            history.valid[history.slot].copy_(_evaluate(self.problem, self.model, self.segments))
        return self.flush() if history.close(epoch, rates, time.perf_counter() - start) else []

    def flush(self) -> list[tuple[int, dict[str, Any]]]:
        """Records for the epochs the history holds, each run's in epoch order."""
        built: list[tuple[int, dict[str, Any]]] = []
        keys, names, diverged_at = self.keys, self.names, self.diverged_at
        with interrupt.critical():  # a second Ctrl-C must not leave a chunk's records half read back
            for epoch, rates, elapsed, per_run, valid in self.history.rows():
                for i, (row, rate, at) in enumerate(zip(per_run, rates, diverged_at)):
                    if epoch > self.stopped_at.get(i, epoch):
                        continue  # (stopped: no records after its last epoch)
                    if at is None or epoch < at:  # (valid_loss, valid_acc) come after lr, then elapsed_s
                        rec = dict(zip(keys, (epoch, *row, rate, *valid[i], elapsed) if valid is not None else
                                       (epoch, *row, rate, elapsed)))
                    elif at == epoch:  # the epoch it diverged on: no step measured (as in fit), no validation
                        loss = row[0] if not math.isfinite(row[0]) else math.nan  # inf or NaN, as the loss came
                        if names is not None:  # the weights it stopped with, not those of the step after
                            row = [row[0], *cast(RegressionProblem, self.problem).in_data_units(self.frozen[i]),
                                   *row[1 + len(names):]]
                        rec = {key: value for key, value in zip(keys, (epoch, loss, *row[1:], rate))
                               if not key.startswith("update_ratio/")}
                        rec["elapsed_s"] = elapsed
                    else:
                        continue
                    built.append((i, rec))
        return built

    def retire(self, run: int) -> None:
        """A run asked to stop (it reached its target): its weights are kept as they are now and it leaves the
        records after this epoch; its row still computes with the others (stacked runs share their steps).
        (Diverged runs froze when their loss did.)"""
        if run not in self.frozen:
            self.frozen[run] = self.model.flat[run].clone()
            self.stopped_at[run] = self.epoch

    def training(self) -> bool:
        return len(self.frozen) < self.runs

    def model_of(self, i: int) -> nn.Module:
        """Run i's trained (or frozen) weights in a model of the template's layout."""
        return self.model.load_into(copy.deepcopy(self.templates[self.specs[i].seed]), i, self.frozen.get(i))


class _Carried:
    """A run's schedule on its carrier optimizer: a no-op carrier step before each scheduler step keeps torch's
    optimizer-then-scheduler order."""

    def __init__(self, carrier: Any, schedule: Any):
        self.carrier, self.schedule = carrier, schedule

    def after_batch(self) -> None:
        self.carrier.step()
        self.schedule.after_batch()

    def after_epoch(self, metric: Optional[float]) -> None:
        self.schedule.after_epoch(metric)


def record_keys(names: Optional[Sequence[str]], layer_names: Sequence[str], clipping: bool,
                validation: bool) -> list[str]:
    """The keys of a stacked record, in `epoch_record`'s order, then the validation figures and elapsed_s."""
    keys = ["epoch", "train_loss", *(names or []), "grad_norm", *(f"grad_norm/{name}" for name in layer_names),
            *(f"update_ratio/{name}" for name in layer_names), *(["clipped"] if clipping else []), "lr"]
    return keys + (["valid_loss", "valid_acc", "elapsed_s"] if validation else ["elapsed_s"])


def run_stacked(problem: Problem, specs: Sequence[RunSpec], events: Consumer, *, command: str = "trials",
                total: Optional[int] = None, indices: Optional[Sequence[int]] = None) -> tuple[list[RunResult], bool]:
    """Train `specs` stacked with the epoch skeleton; returns their RunResults in the same order, and whether
    Ctrl-C stopped them. `indices`: the specs' positions among the command's runs (their events' run index)."""
    from losslab.engine.skeleton import Hooks, Outcome, Plan, train

    given = list(specs)
    # each optimizer's runs form one slice of the stack; inside it, runs sharing a loss sit together
    order = [i for g in optimizer_groups(given) for i in sorted(g, key=lambda i: str(given[i].loss))]
    specs = [given[i] for i in order]
    k = len(specs)
    where = list(indices) if indices is not None else list(range(k))
    infos = [run_info(problem, t, command, index=where[order[i]], total=total or k, stacked_with=k)
             for i, t in enumerate(specs)]
    plan = Plan.of(problem)
    side = StackedSide(problem, specs, plan)
    try:
        for info in infos:
            events.on_run_begin(info)
        last = problem.until or problem.train_cfg.epochs or 0  # (a halving rung may stop earlier)
        hooks = Hooks(events, infos, side.schedules(), stop_at=problem.train_cfg.stop_at)
        out = train(side, plan, range(1, last + 1), hooks)
    except KeyboardInterrupt:  # (while a consumer took a run's beginning)
        out = Outcome.of(k)
        out.interrupted, out.status = True, ["interrupted"] * k
    interrupted = out.interrupted
    results = []
    for i, t in enumerate(specs):
        at = out.diverged_epoch[i]
        steps = (at - 1 if at is not None else out.epochs_run[i]) * plan.batches
        result = RunResult(t, out.status[i], out.records[i], {}, out.epochs_run[i], out.elapsed_s / k,
                           error=out.error, stacked_with=k, diverged_epoch=out.diverged_epoch[i],
                           optimizer_steps=steps, grad_evals=steps)
        try:
            conclude(problem, result, side.model_of(i), problem.loss_for(t.loss),
                     measure=result.status in ("ok", "diverged"))
        except KeyboardInterrupt:
            interrupted, result.status, result.metrics = True, "interrupted", {}
        results.append(result)
    for info, result in zip(infos, results):
        interrupted = not end_run(events, info, result) or interrupted
    back: list[Any] = [None] * k
    for position, i in enumerate(order):
        back[i] = results[position]
    return back, interrupted


def _clip(grad: torch.Tensor, norm: Optional[float], value: Optional[float]) -> torch.Tensor:
    """Each run's (row's) gradients clipped as clip_grad_value_ then clip_grad_norm_ would clip them alone; (K,)
    1.0 where clipping changed the run's gradients."""
    active = torch.zeros(grad.shape[0], dtype=torch.bool)
    if value is not None:
        active |= (grad.abs() > value).any(dim=1).cpu()
        grad.clamp_(-value, value)
    if norm is not None:
        total = grad.pow(2).sum(dim=1).sqrt()
        active |= (total > norm).cpu()
        grad.mul_((norm / (total + 1e-6)).clamp(max=1.0).unsqueeze(1))
    return active.double()


def batch_starts(n: int, batch_size: Optional[int]) -> range:
    return range(0, n, batch_size) if batch_size is not None and batch_size < n else range(0, 1)


def _carrier_schedules(problem: Problem, specs: Sequence[RunSpec], batches: int) -> list[tuple[Any, Any]]:
    """One torch optimizer on a single dummy parameter per run, with the run's rate and torch's own scheduler:
    stepping it gives exactly the rates torch.optim.lr_scheduler would give the run."""
    from losslab.engine.schedules import build_schedule

    cfg = problem.train_cfg
    if cfg.schedule.name == "none" and not cfg.schedule.warmup:
        return []
    out = []
    for spec in specs:
        carrier = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=spec.optim.lr)
        out.append((carrier, build_schedule(carrier, cfg.schedule, cfg.epochs or 0, batches)))
    return out


def _apply_rates(optimizers: Sequence[Any], schedules: Sequence[tuple[Any, Any]]) -> None:
    rates = [carrier.param_groups[0]["lr"] for carrier, _ in schedules]
    for optimizer in optimizers:
        optimizer.set_rates(rates[optimizer.start:optimizer.stop])


def _evaluate(problem: Any, model: StackedModel, segments: Sequence[tuple[int, int, Any, Any]],
              chunk: int = 4096) -> torch.Tensor:
    """(2, K) each run's validation loss and accuracy, as problem.evaluate computes them for one model."""
    model.train(False)
    with torch.no_grad():
        n = len(problem.y_val)
        total = torch.zeros(model.k, dtype=torch.float64)
        correct = torch.zeros(model.k, dtype=torch.float64)
        for i in range(0, n, chunk):
            xb, yb = problem.x_val[i:i + chunk], problem.y_val[i:i + chunk]
            out = model(xb, True)
            losses = torch.cat([shared_fn(out[a:b], yb) for a, b, shared_fn, _ in segments])
            total += losses.double().cpu() * len(yb)
            correct += (out.argmax(dim=-1) == yb).flatten(1).sum(dim=1).double().cpu()  # (a sequence's every token)
    return torch.stack([total / n, correct / problem.y_val.numel()])


def in_memory(problem: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """The training tensors of a problem held in memory (stacking never runs on streamed data)."""
    if problem.x is None or problem.y is None:
        raise ValueError("stacked trials need the training data in memory")
    return problem.x, problem.y


def _units(problem: Problem) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """How recorded parameters reach the data's units: a standardised regression's conversion, or as trained."""
    scaling = getattr(problem, "scaling", None)
    return scaling.to_data_units if scaling is not None else None
