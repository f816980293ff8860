"""The stacked engine: K runs on a leading dimension, one batched forward/backward and one batched optimizer
update per step, instead of K runs one after another. It emits the same events and builds the same
`RunResult`s (same record and status helpers) as the sequential path.

Covers runs on the same model and data that differ in learning rate, seed, optimizer and loss: models made of
Linear, Flatten, LogSoftmax and elementwise activation layers (the regression model, logistic, mlp without
dropout or batch norm) and every optimizer whose
registry entry names a `stacked` update. Runs sharing optimizer settings form a contiguous slice of the stack,
updated by one batched optimizer through views; runs sharing a loss form contiguous segments, each lossed
under vmap. Each batched update follows torch.optim's own single-tensor update (the hyper-parameters are read
from a real torch.optim optimizer built for the run, so defaults cannot drift); anything else runs
sequentially (`unsupported` says why).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Optional, Sequence

import torch
from torch import nn

from losslab.components.losses import is_import_path
from losslab.components.optimizers import OPTIMIZERS, build_optimizer, stacked_update
from losslab.engine import interrupt
from losslab.engine.events import Consumer
from losslab.engine.batches import epoch_order
from losslab.engine.loop import batch_generator, epoch_record, settle_status
from losslab.engine.problems import Problem, RegressionProblem
from losslab.engine.runs import RunResult, RunSpec, diagnose_run, run_info

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
    return [e.name for e in OPTIMIZERS if e.meta.get("stacked")]


def can_stack(spec: RunSpec) -> bool:
    return stacked_update(spec.optim.name) is not None


def unsupported(problem: Problem, specs: Sequence[RunSpec]) -> Optional[str]:
    """None when these runs can train stacked; otherwise the reason they run one after another."""
    for name in sorted({s.optim.name for s in specs}):
        if stacked_update(name) is None:
            return f"no batched update for {name}"
    losses = {s.loss or problem.loss_cfg for s in specs}
    if any(is_import_path(cfg.name) for cfg in losses):
        return "custom losses run sequentially"
    if problem.source.streamed:
        return "the data is streamed batch by batch"
    template = problem.new_model(0)
    if _layers(template) is None:
        return "the model has layers without a batched form (e.g. convolutions)"
    try:
        hypers = [hyperparameters(specs[g[0]].optim) for g in optimizer_groups(specs)]
        with torch.no_grad():  # every loss must work per run under vmap
            out = StackedModel([template, template])(problem.x[:2], True)
            for cfg in losses:
                torch.func.vmap(problem.loss_for(cfg), in_dims=(0, None))(out, problem.y[:2])
    except Exception as exc:
        return f"batched form failed: {type(exc).__name__}: {exc}"
    for h in hypers:
        if h.get("amsgrad") or h.get("centered") or h.get("maximize") or h.get("dampening", 0) \
                or h.get("lr_decay", 0) or h.get("initial_accumulator_value", 0):
            return "optimizer options without a batched form"
    return None


def optimizer_groups(specs: Sequence[RunSpec]) -> list[list[int]]:
    """Indices of runs that share optimizer settings (all but learning rate), in first-seen order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, t in enumerate(specs):
        key = (t.optim.name, t.optim.momentum, t.optim.weight_decay, t.optim.betas, t.optim.eps)
        groups.setdefault(key, []).append(i)
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


class StackedModel:
    """Parameters of K copies of a Linear/activation/Flatten/LogSoftmax stack, each (K, ...), as autograd leaves."""

    def __init__(self, templates: Sequence[nn.Module]):
        self.k = len(templates)
        self.layers = _layers(templates[0])
        self.params: list[torch.Tensor] = []
        per_model = [list(m.parameters()) for m in templates]
        for i in range(len(per_model[0])):
            stacked = torch.stack([ps[i].detach() for ps in per_model]).clone()
            self.params.append(stacked.requires_grad_(True))

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
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            elif isinstance(layer, nn.LogSoftmax):
                h = torch.log_softmax(h, dim=-1)
            else:  # an elementwise activation module: the same function on every run's slice
                h = layer(h)
        if shared:
            h = h.expand(self.k, *h.shape)
        return h

    def load_into(self, model: nn.Module, k: int) -> nn.Module:
        with torch.no_grad():
            for p, stacked in zip(model.parameters(), self.params):
                p.copy_(stacked[k])
        return model


class BatchedOptimizer:
    """torch.optim's single-tensor updates with a per-run learning rate, on the slice [start, stop) of the
    stacked parameters (in-place through views); `kind` is the registry entry's `stacked` update."""

    def __init__(self, kind: str, hyper: dict[str, Any], params: Sequence[torch.Tensor], lr: torch.Tensor,
                 start: int = 0, stop: Optional[int] = None):
        self.kind, self.h, self.params = kind, hyper, list(params)
        self.start, self.stop = start, stop if stop is not None else params[0].shape[0]
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]
        self.step_count = 0
        self.lr_values = lr
        self.lr = [lr.view(-1, *([1] * (p.ndim - 1))).to(p) for p in self.params]
        self._update = getattr(self, f"_{kind}")

    def rates(self) -> list[float]:
        """The learning rate each run of this slice trains with now (what a record's `lr` shows)."""
        return self.lr_values.tolist()

    def set_rates(self, rates: Sequence[float]) -> None:
        """New per-run rates (a schedule's step); torch.optim reads the group's lr each step, so do we."""
        self.lr_values = torch.tensor(list(rates), dtype=torch.float64)
        self.lr = [self.lr_values.view(-1, *([1] * (p.ndim - 1))).to(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        a, b = self.start, self.stop
        for p, lr, state in zip(self.params, self.lr, self.state):
            if p.grad is not None:
                self._update(p[a:b], p.grad[a:b], lr, state)

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
        beta1, beta2 = self.h["betas"]
        wd, eps, step = self.h.get("weight_decay", 0), self.h["eps"], self.step_count
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
        denom = (exp_avg_sq.sqrt() / ((1 - beta2 ** step) ** 0.5)).add_(eps)
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


def _per_trial_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """(K,) global L2 norm of each trial's gradients."""
    total = None
    for p in params:
        if p.grad is not None:
            sq = p.grad.pow(2).flatten(start_dim=1).sum(dim=1)
            total = sq if total is None else total + sq
    return total.sqrt() if total is not None else torch.zeros(1)


def run_stacked(problem: Problem, specs: Sequence[RunSpec], events: Consumer, *, command: str = "trials",
                total: Optional[int] = None) -> tuple[list[RunResult], bool]:
    """Train `specs` stacked; returns their RunResults in the same order, and whether Ctrl-C stopped them."""
    given = list(specs)
    # each optimizer's runs form one slice of the stack; inside it, runs sharing a loss sit together
    order = [i for g in optimizer_groups(given) for i in sorted(g, key=lambda i: str(given[i].loss))]
    specs = [given[i] for i in order]
    k = len(specs)
    cfg = problem.train_cfg
    device = problem.device
    seeds = sorted({t.seed for t in specs})
    templates = {s: problem.new_model(s) for s in seeds}
    model = StackedModel([templates[t.seed] for t in specs])
    optimizers, start_i = [], 0
    for group in optimizer_groups(specs):
        stop_i = start_i + len(group)
        lrs = torch.tensor([specs[i].optim.lr for i in group], dtype=torch.float64)
        first = specs[group[0]].optim
        optimizers.append(BatchedOptimizer(stacked_update(first.name), hyperparameters(first), model.params, lrs,
                                           start_i, stop_i))
        start_i = stop_i
    segments = [(a, b, *batched_loss(problem, specs[a], fn)) for a, b, fn in loss_segments(problem, specs)]
    x, y = problem.x, problem.y
    n = x.shape[0]
    full_batch = cfg.batch_size is None or cfg.batch_size >= n
    generators = {s: batch_generator(s) for s in seeds}
    spec_gen = [seeds.index(t.seed) for t in specs]
    names = problem.names if isinstance(problem, RegressionProblem) else None
    infos = [run_info(problem, t, command, index=order[i], total=total or k, stacked_with=k)
             for i, t in enumerate(specs)]
    records: list[list[dict[str, Any]]] = [[] for _ in specs]
    layer_names = [name for name, _ in templates[seeds[0]].named_parameters()]
    schedules = _carrier_schedules(problem, specs, len(batch_starts(n, cfg.batch_size)))
    if schedules:  # a scheduler sets the first rate when it is built (warm-up's start, one-cycle's initial rate)
        _apply_rates(optimizers, schedules)
    clipping = cfg.clip_grad_norm is not None or cfg.clip_grad_value is not None
    alive = [True] * k
    diverged_at: list[Optional[int]] = [None] * k
    frozen: dict[int, list[torch.Tensor]] = {}
    status = ["ok"] * k
    interrupted = False

    def losses_of(xb: torch.Tensor, yb: torch.Tensor, shared: bool) -> torch.Tensor:
        out = model(xb, shared)
        parts = [(shared_fn(out[a:b], yb) if shared else each_fn(out[a:b], yb[a:b]))
                 for a, b, shared_fn, each_fn in segments]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def freeze(i: int, epoch: int) -> None:
        alive[i] = False
        diverged_at[i] = epoch
        status[i] = "diverged"
        frozen[i] = [p[i].detach().clone() for p in model.params]

    start = time.perf_counter()
    epoch = 0
    try:
        for info in infos:
            events.on_run_begin(info)
        for epoch in range(1, cfg.epochs + 1):
            # forward backward update, all runs at once
            if full_batch:
                batches = [(x, y, True, n)]
            else:
                perms = [epoch_order(n, g).to(device) for g in generators.values()]
                batches = []
                for i in range(0, n, cfg.batch_size):
                    if len(perms) == 1:
                        idx = perms[0][i:i + cfg.batch_size]
                        batches.append((x[idx], y[idx], True, len(idx)))
                    else:
                        idx = torch.stack([perms[g][i:i + cfg.batch_size] for g in spec_gen])
                        batches.append((x[idx], y[idx], False, idx.shape[1]))
            total_loss = torch.zeros(k, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
            clipped = torch.zeros(k, dtype=torch.float64)
            before: list[torch.Tensor] = []
            for b, (xb, yb, shared, size) in enumerate(batches):
                losses = losses_of(xb, yb, shared)
                finite = torch.isfinite(losses)
                if not bool(finite.all()):
                    for i in torch.nonzero(~finite).flatten().tolist():
                        if alive[i]:
                            freeze(i, epoch)
                for p in model.params:
                    p.grad = None
                losses.sum().backward()
                if clipping:
                    clipped += _clip(model.params, cfg.clip_grad_norm, cfg.clip_grad_value)
                if b == len(batches) - 1:
                    before = [p.detach().clone() for p in model.params]
                for optimizer in optimizers:
                    optimizer.step()
                if schedules:
                    for carrier, schedule in schedules:
                        carrier.step()  # a no-op step keeps torch's optimizer-then-scheduler order
                        schedule.after_batch()
                    _apply_rates(optimizers, schedules)
                total_loss += losses.detach().to(total_loss.dtype) * size
                interrupt.check()
            # record
            train_loss = (total_loss / n).tolist()
            norms = _per_trial_norm(model.params).tolist()
            layers = _per_trial_layer_norms(model.params, layer_names)
            ratios = _per_trial_update_ratios(model.params, before, layer_names)
            clip_fraction = (clipped / len(batches)).tolist() if clipping else None
            tracked = None
            if names is not None:
                w, b = model.params[0].detach().reshape(k, -1).tolist(), model.params[1].detach().reshape(k, -1).tolist()
                tracked = [dict(zip(names, wi + bi)) for wi, bi in zip(w, b)]
            valid = _evaluate(problem, model, segments) if problem.has_validation else None
            rates = [lr for optimizer in optimizers for lr in optimizer.rates()]
            elapsed = time.perf_counter() - start
            for i, t in enumerate(specs):
                if not alive[i] and diverged_at[i] != epoch:
                    continue
                rec = epoch_record(epoch, train_loss[i] if alive[i] else math.nan,
                                   tracked[i] if tracked is not None else None, norms[i], rates[i],
                                   {name: values[i] for name, values in layers.items()},
                                   {name: values[i] for name, values in ratios.items()},
                                   clip_fraction[i] if clip_fraction is not None else None)
                if valid is not None and alive[i]:
                    rec["valid_loss"], rec["valid_acc"] = valid[0][i], valid[1][i]
                rec["elapsed_s"] = elapsed
                records[i].append(rec)
                events.on_epoch_end(infos[i], rec)
            if schedules:
                for i, (carrier, schedule) in enumerate(schedules):
                    if alive[i]:
                        schedule.after_epoch(valid[0][i] if valid is not None else train_loss[i])
                _apply_rates(optimizers, schedules)
            # termination conditions
            if not any(alive):
                break
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.perf_counter() - start

    results = []
    for i, t in enumerate(specs):
        run_model = copy.deepcopy(templates[t.seed])
        if i in frozen:
            with torch.no_grad():
                for p, v in zip(run_model.parameters(), frozen[i]):
                    p.copy_(v)
        else:
            model.load_into(run_model, i)
        st = "interrupted" if interrupted and status[i] == "ok" else status[i]
        try:
            metrics = problem.final_metrics(run_model, problem.loss_for(t.loss)) if st != "interrupted" else {}
        except KeyboardInterrupt:
            interrupted, st, metrics = True, "interrupted", {}
        st = settle_status(st, metrics) if st == "ok" else st
        result = RunResult(t, st, records[i], metrics, len(records[i]), elapsed / k, stacked_with=k,
                           diverged_epoch=diverged_at[i])
        result.diagnosis = diagnose_run(problem, result)
        results.append(result)
    for info, result in zip(infos, results):
        try:
            events.on_run_end(info, result)
        except KeyboardInterrupt:  # Ctrl-C between runs must stop the command as cleanly as one during them
            interrupted = True
    back: list[Any] = [None] * k
    for position, i in enumerate(order):
        back[i] = results[position]
    return back, interrupted


def _clip(params: Sequence[torch.Tensor], norm: Optional[float], value: Optional[float]) -> torch.Tensor:
    """Each run's gradients clipped as clip_grad_value_ then clip_grad_norm_ would clip them alone; (K,) 1.0
    where clipping changed the run's gradients."""
    k = params[0].shape[0]
    active = torch.zeros(k, dtype=torch.bool)
    if value is not None:
        for p in params:
            active |= (p.grad.abs().flatten(start_dim=1) > value).any(dim=1).cpu()
            p.grad.clamp_(-value, value)
    if norm is not None:
        total = _per_trial_norm(params)
        active |= (total > norm).cpu()
        coef = (norm / (total + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(coef.view(-1, *([1] * (p.ndim - 1))))
    return active.double()


def _per_trial_update_ratios(params: Sequence[torch.Tensor], before: Sequence[torch.Tensor],
                             names: Sequence[str]) -> dict[str, list[float]]:
    """Per layer, each run's |Δp| / |p| over the epoch's last step."""
    if not before:
        return {}
    steps = torch.stack([(p.detach() - old).pow(2).flatten(start_dim=1).sum(dim=1) for p, old in zip(params, before)])
    sizes = torch.stack([old.pow(2).flatten(start_dim=1).sum(dim=1) for old in before])
    ratio = torch.where(sizes > 0, (steps / sizes).sqrt(), torch.where(steps > 0, math.inf, 0.0)).tolist()
    return {f"update_ratio/{name}": row for name, row in zip(names, ratio)}


def _per_trial_layer_norms(params: Sequence[torch.Tensor], names: Sequence[str]) -> dict[str, list[float]]:
    """Per layer, each run's gradient norm."""
    grads = [(name, p.grad) for name, p in zip(names, params) if p.grad is not None]
    if not grads:
        return {}
    values = torch.stack([g.pow(2).flatten(start_dim=1).sum(dim=1) for _, g in grads]).sqrt().tolist()
    return {f"grad_norm/{name}": row for (name, _), row in zip(grads, values)}


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
        out.append((carrier, build_schedule(carrier, cfg.schedule, cfg.epochs, batches)))
    return out


def _apply_rates(optimizers: Sequence[BatchedOptimizer], schedules: Sequence[tuple[Any, Any]]) -> None:
    rates = [carrier.param_groups[0]["lr"] for carrier, _ in schedules]
    for optimizer in optimizers:
        optimizer.set_rates(rates[optimizer.start:optimizer.stop])


def _evaluate(problem: Any, model: StackedModel, segments: Sequence[tuple[int, int, Any, Any]],
              chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-run validation loss and accuracy, as problem.evaluate computes them for one model."""
    with torch.no_grad():
        n = len(problem.y_val)
        total = torch.zeros(model.k, dtype=torch.float64)
        correct = torch.zeros(model.k, dtype=torch.float64)
        for i in range(0, n, chunk):
            xb, yb = problem.x_val[i:i + chunk], problem.y_val[i:i + chunk]
            out = model(xb, True)
            losses = torch.cat([shared_fn(out[a:b], yb) for a, b, shared_fn, _ in segments])
            total += losses.double().cpu() * len(yb)
            correct += (out.argmax(dim=-1) == yb).sum(dim=1).double().cpu()
    return (total / n).tolist(), (correct / n).tolist()
