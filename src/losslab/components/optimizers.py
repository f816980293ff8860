"""Optimizer registry: name -> factory(params, OptimConfig) building a torch.optim optimizer.

Each entry's meta holds `default_lr` per task, the set of options it `accepts`, whether it `needs_closure`
(one closure-driven step per batch) and its `stacked` update (the batched form the stacked engine applies,
None when it has none). Options left as None fall through to torch.optim's own defaults, so a run matches a
hand-written loop exactly. Adding an optimizer is one entry here.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from losslab.components.registry import Registry

OPTIMIZERS: Registry[Callable[..., Any]] = Registry("optimizer", "--optim")

_ADAM_LIKE = {"weight_decay", "betas", "eps"}


def _lr(regression: float, classification: float) -> dict[str, float]:
    return {"regression": regression, "classification": classification}


def _kwargs(cfg: Any, *names: str) -> dict[str, Any]:
    """The options the user set, among those this optimizer takes."""
    return {n: getattr(cfg, n) for n in names if getattr(cfg, n) is not None}


@OPTIMIZERS.register("sgd", "plain stochastic gradient descent", default_lr=_lr(0.1, 0.05),
                     accepts={"momentum", "weight_decay"},
                     stacked="sgd")
def _sgd(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, **_kwargs(cfg, "momentum", "weight_decay"))


@OPTIMIZERS.register("momentum", "SGD with heavy-ball momentum (0.9 unless --momentum)", default_lr=_lr(0.05, 0.01),
                     accepts={"momentum", "weight_decay"}, stacked="sgd")
def _momentum(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    momentum = 0.9 if cfg.momentum is None else cfg.momentum
    return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, **_kwargs(cfg, "weight_decay"))


@OPTIMIZERS.register("nesterov", "SGD with Nesterov momentum (0.9 unless --momentum)", default_lr=_lr(0.05, 0.01),
                     accepts={"momentum", "weight_decay"}, stacked="sgd")
def _nesterov(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    momentum = 0.9 if cfg.momentum is None else cfg.momentum
    return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, nesterov=True, **_kwargs(cfg, "weight_decay"))


@OPTIMIZERS.register("adam", "Adam (Kingma & Ba 2014)", default_lr=_lr(0.01, 0.001), accepts=_ADAM_LIKE,
                     stacked="adam")
def _adam(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    return torch.optim.Adam(params, lr=cfg.lr, **_kwargs(cfg, "betas", "eps", "weight_decay"))


@OPTIMIZERS.register("adamw", "Adam with decoupled weight decay (default 0.01)", default_lr=_lr(0.01, 0.001),
                     accepts=_ADAM_LIKE, stacked="adam")
def _adamw(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    return torch.optim.AdamW(params, lr=cfg.lr, **_kwargs(cfg, "betas", "eps", "weight_decay"))


@OPTIMIZERS.register("rmsprop", "RMSprop (alpha 0.99)", default_lr=_lr(0.01, 0.001),
                     accepts={"momentum", "weight_decay", "eps"}, stacked="rmsprop")
def _rmsprop(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    return torch.optim.RMSprop(params, lr=cfg.lr, **_kwargs(cfg, "momentum", "eps", "weight_decay"))


@OPTIMIZERS.register("adagrad", "Adagrad", default_lr=_lr(0.1, 0.01), accepts={"weight_decay", "eps"},
                     stacked="adagrad")
def _adagrad(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    return torch.optim.Adagrad(params, lr=cfg.lr, **_kwargs(cfg, "eps", "weight_decay"))


@OPTIMIZERS.register("lbfgs", "L-BFGS with strong-Wolfe line search, one closure-driven step per batch",
                     default_lr=_lr(1.0, 1.0), accepts=set(), needs_closure=True)
def _lbfgs(params: Iterable[Any], cfg: Any) -> Any:
    import torch

    return torch.optim.LBFGS(params, lr=cfg.lr, line_search_fn="strong_wolfe")


def _torch_class(class_name: str, options: Iterable[str]) -> Callable[..., Any]:
    """A factory of torch.optim's `class_name` given the rate and the options the user set among `options`."""
    names = sorted(options)

    def build(params: Iterable[Any], cfg: Any) -> Any:
        import torch

        return getattr(torch.optim, class_name)(params, lr=cfg.lr, **_kwargs(cfg, *names))

    build.__name__ = f"_{class_name.lower()}"
    return build


# the rest of torch.optim's catalogue, by its lower-case name; trained one by one (no batched update here).
# Rates: regression's full-batch tutorial problem and classification's mini-batch default (per optimizer family)
for _name, _class, _description, _rates, _accepts in (
        ("nadam", "NAdam", "Adam with Nesterov momentum (Dozat 2016)", _lr(0.01, 0.002), _ADAM_LIKE),
        ("radam", "RAdam", "rectified Adam: the adaptive rate warms up by itself (Liu et al. 2019)", _lr(0.02, 0.001),
         _ADAM_LIKE),
        ("adamax", "Adamax", "Adam with the infinity norm (Kingma & Ba 2014)", _lr(0.02, 0.002), _ADAM_LIKE),
        ("adadelta", "Adadelta", "per-parameter rates from running averages (Zeiler 2012)", _lr(1.0, 1.0),
         {"weight_decay", "eps"}),
        ("rprop", "Rprop", "steps from the gradient's sign, for full batches (Riedmiller & Braun 1993)",
         _lr(0.01, 0.01), set()),
        ("asgd", "ASGD", "averaged SGD (Polyak & Juditsky 1992)", _lr(0.1, 0.05), {"weight_decay"}),
        ("adafactor", "Adafactor", "factored second moments (Shazeer & Stern 2018)", _lr(0.05, 0.01),
         {"weight_decay"}),
):
    OPTIMIZERS.register(_name, _description, default_lr=_rates, accepts=set(_accepts), stacked=None,
                        torch_class=_class)(_torch_class(_class, _accepts))


def default_lr(name: str, task: str) -> float:
    """The learning rate an optimizer gets when --lr is not given, per task."""
    return OPTIMIZERS.lookup(name).meta["default_lr"][task]


def stacked_update(name: str) -> Any:
    """The batched update the stacked engine applies for this optimizer, or None (it then runs sequentially)."""
    return OPTIMIZERS.lookup(name).meta.get("stacked")


def needs_closure(name: str) -> bool:
    return bool(OPTIMIZERS.lookup(name).meta.get("needs_closure"))


def build_optimizer(params: Iterable[Any], cfg: Any) -> Any:
    return OPTIMIZERS.lookup(cfg.name).factory(params, cfg)
