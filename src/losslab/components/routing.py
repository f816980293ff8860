"""Parameter routing: Muon takes only the 2-D weights of hidden layers, so a routed optimizer is Muon on those and
another optimizer (AdamW by default, `--optim-arg rest=sgd`) on everything else — embeddings, the output layer's
weight, biases, norms, convolution filters — as one torch.optim.Optimizer that schedules, clipping and checkpoints
treat like any other. `routes` says which parameter went where (the report lists it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def route(model: nn.Module) -> dict[str, str]:
    """Each trainable parameter's optimizer: `muon` for 2-D weights except the model's last 2-D weight (its output
    layer) and embedding tables; `rest` for the others."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    matrices = [n for n, p in named if p.ndim == 2 and id(p) not in embedded]
    head = matrices[-1] if matrices else None
    return {n: "muon" if n in matrices and n != head else "rest" for n, _ in named}


class Routed(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped together; its `param_groups` are theirs (Muon's first),
    so an LR schedule scales every group."""

    def __init__(self, parts: list[tuple[str, torch.optim.Optimizer]], routes: dict[str, str]):
        # (no Optimizer.__init__: the parts hold the parameters, their groups and their state)
        self.parts, self.routes = parts, routes
        self.defaults: dict[str, Any] = {}
        self.param_groups = [g for _, o in parts for g in o.param_groups]
        self._optimizer_step_pre_hooks: Any = {}
        self._optimizer_step_post_hooks: Any = {}

    @property
    def state(self) -> Any:
        merged: dict[Any, Any] = {}
        for _, optimizer in self.parts:
            merged.update(optimizer.state)
        return merged

    @staticmethod
    def build(model: nn.Module, cfg: Any, muon: Any, args: dict[str, Any], fixed: dict[str, Any]) -> "Routed":
        """`muon(params, lr=..., **kwargs)` builds the Muon part; `args` are --optim-arg's (resolved), `fixed` the
        registry entry's arguments."""
        rest = str(args.pop("rest", "adamw")).lower()  # (checked by the config: optimizers.RESTS)
        routes = route(model)
        named = dict(model.named_parameters())
        mine = [named[n] for n, where in routes.items() if where == "muon"]
        others = [named[n] for n, where in routes.items() if where == "rest"]
        shared = {n: getattr(cfg, n) for n in ("momentum", "weight_decay", "eps") if getattr(cfg, n) is not None}
        parts: list[tuple[str, torch.optim.Optimizer]] = []
        if mine:
            parts.append(("muon", muon(mine, lr=cfg.lr, **{**fixed, **shared, **args})))
        if others:
            decay = {"weight_decay": cfg.weight_decay} if cfg.weight_decay is not None else {}
            parts.append((rest, torch.optim.AdamW(others, lr=cfg.lr, **decay) if rest == "adamw" else
                          torch.optim.SGD(others, lr=cfg.lr, momentum=0.9, **decay)))
        names = {"muon": "muon", "rest": rest}
        return Routed(parts, {n: names[where] for n, where in routes.items()})

    def zero_grad(self, set_to_none: bool = True) -> None:
        for _, optimizer in self.parts:
            optimizer.zero_grad(set_to_none)

    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for _, optimizer in self.parts:
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"parts": [(name, optimizer.state_dict()) for name, optimizer in self.parts]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for (_, optimizer), (_, saved) in zip(self.parts, state_dict["parts"]):
            optimizer.load_state_dict(saved)
