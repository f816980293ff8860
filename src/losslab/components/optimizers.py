"""Optimizers: losslab's registry of names (torch.optim's catalogue under lower-case names), and any other class —
by import path (`torch.optim:NAdam`, `myopt:Lion`), by a name pytorch-optimizer's `load_optimizer` knows (`lion`,
`soap`), or given in Python — with the protocol its class needs (`Protocol`, found from the class) and its
constructor arguments (`--optim-arg`) checked against its signature before anything trains.

Each registry entry names its torch.optim class, the arguments it fixes (`nesterov=True`), its `default_lr` per
task and the shared options it `accepts`; `stacked` names the hand-written batched update of the stacked engine
(None: the stacked engine drives the class's own `step()`). Options left as None fall through to the class's own
defaults, so a run matches a hand-written loop exactly. Adding an optimizer is one entry here.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from losslab.components.registry import Registry, did_you_mean, fold
from losslab.errors import USER_ERRORS, ConfigError

OPTIMIZERS: Registry[Callable[..., Any]] = Registry("optimizer", "--optim")

SHARED = ("momentum", "weight_decay", "betas", "eps")  # the options every command has (--momentum, ...)
_ADAM_LIKE = {"weight_decay", "betas", "eps"}
RESTS = ("adamw", "sgd")  # what trains the parameters a routed optimizer (Muon) does not take (--muon-rest)
LIBRARY = "pytorch_optimizer"  # the package whose names `--optim` also takes (pip install pytorch-optimizer)


def _lr(regression: float, classification: float) -> dict[str, float]:
    return {"regression": regression, "classification": classification}


def for_task(rates: Mapping[str, float], task: str) -> float:
    """A task's rate of a family's table: a language model's is the mini-batch (classification) one."""
    return rates[task] if task in rates else rates["classification"]


def _kwargs(cfg: Any, *names: str) -> dict[str, Any]:
    """The options the user set, among those this optimizer takes."""
    return {n: getattr(cfg, n) for n in names if getattr(cfg, n, None) is not None}


def _torch_class(class_name: str, options: Iterable[str], fixed: Optional[Mapping[str, Any]] = None,
                 momentum: Optional[float] = None) -> Callable[..., Any]:
    """A factory of torch.optim's `class_name`: the rate, the arguments it fixes, the shared options the user set
    among `options` (`momentum` a default the user's --momentum replaces) and the user's --optim-arg arguments."""
    names = sorted(options)

    def build(params: Iterable[Any], cfg: Any) -> Any:
        import torch

        kwargs = {**(fixed or {}), **({"momentum": momentum} if momentum is not None else {}),
                  **_kwargs(cfg, *names), **arguments(cfg)}
        return getattr(torch.optim, class_name)(params, lr=cfg.lr, **kwargs)

    build.__name__ = f"_{class_name.lower()}"
    return build


# torch.optim's catalogue by lower-case name. Rates: the regression tutorial's full-batch problem and
# classification's mini-batch default, per optimizer family. `stacked`: the stacked engine's hand-written update.
_CATALOGUE: tuple[tuple[Any, ...], ...] = (
        ("sgd", "SGD", "plain stochastic gradient descent", _lr(0.1, 0.05), {"momentum", "weight_decay"},
         {"stacked": "sgd"}),
        ("momentum", "SGD", "SGD with heavy-ball momentum (0.9 unless --momentum)", _lr(0.05, 0.01),
         {"momentum", "weight_decay"}, {"stacked": "sgd", "momentum": 0.9}),
        ("nesterov", "SGD", "SGD with Nesterov momentum (0.9 unless --momentum)", _lr(0.05, 0.01),
         {"momentum", "weight_decay"}, {"stacked": "sgd", "momentum": 0.9, "fixed": {"nesterov": True}}),
        ("adam", "Adam", "Adam (Kingma & Ba 2014)", _lr(0.01, 0.001), _ADAM_LIKE, {"stacked": "adam"}),
        ("adamw", "AdamW", "Adam with decoupled weight decay (default 0.01)", _lr(0.01, 0.001), _ADAM_LIKE,
         {"stacked": "adam"}),
        ("rmsprop", "RMSprop", "RMSprop (alpha 0.99)", _lr(0.01, 0.001), {"momentum", "weight_decay", "eps"},
         {"stacked": "rmsprop"}),
        ("adagrad", "Adagrad", "Adagrad", _lr(0.1, 0.01), {"weight_decay", "eps"}, {"stacked": "adagrad"}),
        ("lbfgs", "LBFGS", "L-BFGS with strong-Wolfe line search, one closure-driven step per batch", _lr(1.0, 1.0),
         set(), {"fixed": {"line_search_fn": "strong_wolfe"}}),
        ("nadam", "NAdam", "Adam with Nesterov momentum (Dozat 2016)", _lr(0.01, 0.002), _ADAM_LIKE, {}),
        ("radam", "RAdam", "rectified Adam: the adaptive rate warms up by itself (Liu et al. 2019)", _lr(0.02, 0.001),
         _ADAM_LIKE, {}),
        ("adamax", "Adamax", "Adam with the infinity norm (Kingma & Ba 2014)", _lr(0.02, 0.002), _ADAM_LIKE, {}),
        ("adadelta", "Adadelta", "per-parameter rates from running averages (Zeiler 2012)", _lr(1.0, 1.0),
         {"weight_decay", "eps"}, {}),
        ("rprop", "Rprop", "steps from the gradient's sign, for full batches (Riedmiller & Braun 1993)",
         _lr(0.01, 0.01), set(), {"full_batch": True}),
        ("asgd", "ASGD", "averaged SGD (Polyak & Juditsky 1992)", _lr(0.1, 0.05), {"weight_decay"}, {}),
        ("adafactor", "Adafactor", "factored second moments (Shazeer & Stern 2018)", _lr(0.05, 0.01),
         {"weight_decay"}, {}),
        ("muon", "Muon", "orthogonalised momentum on the 2-D hidden weights, AdamW on the rest (Jordan et al. "
         "2024); rates on AdamW's scale (adjust_lr_fn match_rms_adamw)", _lr(0.01, 0.001),
         {"momentum", "weight_decay", "eps"}, {"routed": True, "fixed": {"adjust_lr_fn": "match_rms_adamw"}}),
)
for _name, _class, _description, _rates, _accepts, _extra in _CATALOGUE:
    OPTIMIZERS.register(_name, _description, default_lr=_rates, accepts=set(_accepts), torch_class=_class,
                        stacked=_extra.get("stacked"), full_batch=_extra.get("full_batch", False),
                        routed=_extra.get("routed", False), fixed=dict(_extra.get("fixed") or {}))(
        _torch_class(_class, _accepts, _extra.get("fixed"), _extra.get("momentum")))

# torch.optim classes with no entry, and why (`losslab optimizers` lists them)
REFUSED = {"SparseAdam": "takes sparse gradients only (nn.Embedding(sparse=True)); losslab's models have dense ones"}

# Default rates of optimizers losslab does not register, by class name (lower case), per task: their own family's
# usual rates (Lion about 3-10x below AdamW; schedule-free SGD far above SGD). Other classes: their signature's lr.
FAMILY_LR: dict[str, dict[str, float]] = {
    "lion": _lr(0.003, 0.0003), "tiger": _lr(0.003, 0.0003), "dadaptlion": _lr(1.0, 1.0),
    "sgdschedulefree": _lr(1.0, 0.5), "schedulefreesgd": _lr(1.0, 0.5),
    "adamwschedulefree": _lr(0.01, 0.0025), "schedulefreeadamw": _lr(0.01, 0.0025),
    "radamschedulefree": _lr(0.01, 0.0025), "schedulefreeradam": _lr(0.01, 0.0025),
    "soap": _lr(0.01, 0.003), "adahessian": _lr(0.1, 0.1), "sophiah": _lr(0.01, 0.001),
    "sam": _lr(0.1, 0.05), "prodigy": _lr(1.0, 1.0), "dadaptadam": _lr(1.0, 1.0), "adopt": _lr(0.01, 0.001),
}


@dataclass(frozen=True)
class Protocol:
    """How an optimizer must be driven, found from its class."""

    closure: bool = False  # step(closure) runs forward and backward itself, as often as it needs (LBFGS)
    two_pass: bool = False  # the SAM family: backward, then step(closure) takes a second gradient elsewhere
    create_graph: bool = False  # a Hessian estimate from the gradient: backward(create_graph=True) (AdaHessian)
    train_eval: bool = False  # optimizer.train() before training steps, optimizer.eval() before evaluating
    routed: bool = False  # takes only 2-D hidden weights (Muon): the rest goes to AdamW
    takes_model: bool = False  # the constructor takes the model, not its parameters

    def words(self) -> list[str]:
        """What the report says of it, one phrase per trait (none for a plain step)."""
        return [text for on, text in (
            (self.closure, "closure-driven step (forward-backward passes as the step asks)"),
            (self.two_pass, "two forward-backward passes per step (closure)"),
            (self.create_graph, "backward(create_graph=True) for its Hessian estimate"),
            (self.train_eval, "optimizer.train() to train, optimizer.eval() to evaluate"),
            (self.routed, "2-D hidden weights only: the rest to AdamW"),
            (self.takes_model, "built from the model")) if on]

    @property
    def tag(self) -> str:
        """The protocol in a word (the `losslab optimizers` table; `words` says it in full)."""
        return ", ".join(tag for on, tag in ((self.closure, "closure"), (self.two_pass, "two passes"),
                                             (self.create_graph, "create_graph"), (self.train_eval, "train/eval"),
                                             (self.routed, "routed"), (self.takes_model, "model")) if on) or "plain"

    @property
    def passes(self) -> Optional[int]:
        """Forward-backward passes per step; None when the step decides (a line search)."""
        return None if self.closure else 2 if self.two_pass else 1

    @property
    def stackable(self) -> Optional[str]:
        """None when stacked trials can drive its own step(); else why not."""
        for on, why in ((self.closure, "its step takes a closure"), (self.two_pass, "its step takes a closure"),
                        (self.create_graph, "its step needs the graph of the gradient"),
                        (self.routed, "it routes parameters by their shape"),
                        (self.takes_model, "it is built from the model"),
                        (self.train_eval, "it switches its parameters between train and eval")):
            if on:
                return why
        return None


@dataclass(frozen=True)
class Kind:
    """An optimizer as a run builds it: `factory(params, **kwargs)` (a class, or a partial of one), where it
    comes from and its protocol."""

    name: str  # as the user gave it (a registry name, an import path, a library name)
    factory: Callable[..., Any]
    label: str  # `NAdam (torch.optim)`, `Lion (pytorch_optimizer)`, `Lion (yours)`
    protocol: Protocol
    registered: bool = False  # one of losslab's names (its entry builds it)

    @property
    def cls(self) -> Any:
        return self.factory.func if isinstance(self.factory, functools.partial) else self.factory

    def signature(self) -> Optional[inspect.Signature]:
        try:
            return inspect.signature(self.cls.__init__ if inspect.isclass(self.cls) else self.cls)
        except (TypeError, ValueError):
            return None


def protocol_of(cls: Any, routed: bool = False) -> Protocol:
    """The protocol a class needs: from its `step` signature (a required closure; a `hessian` argument), its
    methods (first_step/second_step: SAM; train/eval: schedule-free) and its constructor's first argument."""
    step = getattr(cls, "step", None)
    try:
        params = inspect.signature(step).parameters if step is not None else {}
    except (TypeError, ValueError):
        params = {}
    closure = params.get("closure")
    init = getattr(cls, "__init__", None)
    try:
        first = next(iter(list(inspect.signature(init).parameters)[1:2]), "") if init is not None else ""
    except (TypeError, ValueError):
        first = ""
    return Protocol(
        closure=closure is not None and closure.default is inspect.Parameter.empty,
        two_pass=callable(getattr(cls, "first_step", None)) and callable(getattr(cls, "second_step", None)),
        create_graph="hessian" in params or bool(getattr(cls, "create_graph", False)),
        train_eval=callable(getattr(cls, "train", None)) and callable(getattr(cls, "eval", None)),
        routed=routed, takes_model=first in ("model", "module"))


def is_path(name: str) -> bool:
    return ":" in name


def registered(name: str) -> bool:
    """Whether `name` is one of losslab's own names (no import needed to know it)."""
    return not is_path(name) and fold(name) in {fold(n) for n in OPTIMIZERS.names()}


_KNOWN: dict[str, Kind] = {}  # kinds resolved in another process and handed to this one (`remember`)


def remember(k: Kind) -> None:
    """A kind resolved where the command started (a worker may not be able to import a user's file)."""
    _KNOWN[k.name] = k


def kind(name: str, option: str = "--optim") -> Kind:
    """The optimizer `name` names: a registry name, an import path, or a name of pytorch-optimizer's
    `load_optimizer` (when installed). Failures are one line naming `option`. (Resolved each time: an import path
    reads the module Python has cached, so a module reloaded in a notebook gives its new class.)"""
    import torch

    if name in _KNOWN:
        return _KNOWN[name]
    if registered(name):
        entry = OPTIMIZERS.lookup(name)
        cls = getattr(torch.optim, entry.meta["torch_class"])
        return Kind(entry.name, cls, f"{cls.__name__} (torch.optim)", protocol_of(cls, entry.meta["routed"]), True)
    if is_path(name):
        from losslab.components.losses import import_object

        obj = import_object(name, option)
        return _kind_of(name, obj, option)
    found = library()
    if found is not None and fold(name).replace("-", "") in found:
        cls = found[fold(name).replace("-", "")]
        return Kind(name, cls, f"{cls.__name__} ({LIBRARY})", protocol_of(cls))
    raise ConfigError(option, unknown_message(name, found))


@functools.lru_cache(maxsize=1)
def library() -> Optional[dict[str, Any]]:
    """pytorch-optimizer's optimizers by lower-case name, or None when it is not installed."""
    try:
        import pytorch_optimizer
    except ImportError:
        return None
    out = {}
    for key in pytorch_optimizer.get_supported_optimizers():
        try:
            out[str(key).lower()] = pytorch_optimizer.load_optimizer(str(key))
        except USER_ERRORS:
            continue
    return out


def unknown_message(name: str, library: Optional[dict[str, Any]]) -> str:
    ours = OPTIMIZERS.names()
    extra = sorted(library or {})
    hint = did_you_mean(name, ours + extra)
    where = (f"; or one of {LIBRARY}'s {len(extra)} ({', '.join(extra[:6])}, … — `losslab optimizers --all`)"
             if library is not None else f"; {LIBRARY} is not installed (pip install pytorch-optimizer gives lion, "
             "soap, sophiah, …)")
    return (f"unknown optimizer {name!r}{hint}; choose from: {', '.join(ours)}{where}; or a class by import path "
            "package.module:Class (torch.optim:NAdam, myopt:Lion)")


def _kind_of(name: str, obj: Any, option: str) -> Kind:
    """A class (or a partial of one) given by import path or in Python, checked to be an optimizer class."""
    import torch

    cls = obj.func if isinstance(obj, functools.partial) else obj
    if not inspect.isclass(cls) or not callable(getattr(cls, "step", None)) \
            or not callable(getattr(cls, "zero_grad", None)):
        what = f"a {type(cls).__name__}" if not inspect.isclass(cls) else f"the class {cls.__name__}"
        raise ConfigError(option, f"{shown_name(name)} is {what}, not an optimizer class (a torch.optim.Optimizer "
                          "subclass, or a class with step() and zero_grad())")
    if cls.__name__ in REFUSED and cls.__module__.startswith("torch.optim"):
        raise ConfigError(option, f"{cls.__name__} {REFUSED[cls.__name__]}")
    module = cls.__module__.split(".")[0]
    source = "torch.optim" if module == "torch" else module if module in (LIBRARY, "schedulefree") else "yours"
    routed = cls is getattr(torch.optim, "Muon", None)
    return Kind(name, obj, f"{cls.__name__} ({source})", protocol_of(cls, routed))


def shown_name(name: str) -> str:
    from losslab.objects import shown

    return str(shown(name))


def arguments(cfg: Any) -> dict[str, Any]:
    """The --optim-arg arguments of a config, import paths of classes resolved (`base_optimizer=torch.optim:SGD`)."""
    return {key: _value(value) for key, value in (getattr(cfg, "args", None) or ())}


def _value(value: Any) -> Any:
    if isinstance(value, str) and is_path(value) and " " not in value:
        from losslab.components.losses import import_object

        return import_object(value, "--optim-arg")
    return value


def check_arguments(k: Kind, args: Sequence[tuple[str, Any]], shared: Mapping[str, Any],
                    option: str = "--optim-arg") -> None:
    """Refuse, before training, an argument the class does not take (the nearest one named) and an argument of
    the wrong type (the default's type); `shared` are --momentum, --betas, ... as set."""
    signature = k.signature()
    if signature is None:
        return
    params = {n: p for n, p in list(signature.parameters.items())[1:]
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if inspect.isclass(k.cls):
        params.pop("params", None)
    # **kwargs count as settings only in a wrapper, which hands them to the optimizer it wraps (SAM's base_optimizer);
    # elsewhere (pytorch-optimizer's classes take **kwargs and ignore them) a key must be a named parameter
    open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()) and any(
        "optimizer" in n for n in params)
    fixed = set(getattr(k.factory, "keywords", None) or {})
    for key, value in list(args) + [(n, v) for n, v in shared.items()]:
        from_shared = (key, value) not in list(args)
        opt = f"--{key.replace('_', '-')}" if from_shared else option
        if key not in params and not open_ended:
            near = did_you_mean(key, list(params))
            raise ConfigError(opt, f"{k.label} takes no argument {key!r}{near}; it takes: "
                              f"{', '.join(n for n in params if n not in fixed) or 'none'}")
        default = params[key].default if key in params else inspect.Parameter.empty
        if not _fits(value, default):
            raise ConfigError(opt, f"{key}={value!r} does not fit {k.label}'s {key} (its default is {default!r})")


def _fits(value: Any, default: Any) -> bool:
    """Whether `value` has the kind of value the default has (numbers for numbers, pairs for pairs, ...)."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list)) and len(value) == len(default)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def parse_argument(text: str, option: str = "--optim-arg") -> tuple[str, Any]:
    """`KEY=VALUE` (the value a Python literal: 0.95,0.98 is a pair; an import path stays a string, resolved
    when the optimizer is built; any other text stays text)."""
    import ast

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not all(part.isidentifier() for part in key.split(".")):
        raise ConfigError(option, f"expected KEY=VALUE, e.g. betas=0.95,0.98 or lion.betas=0.95,0.98 (got {text!r})")
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return key, value


def family_lr(k: Kind, task: str) -> tuple[float, str]:
    """The default rate of an optimizer losslab does not register: its family's (FAMILY_LR), else the rate its
    class's signature gives, else 0.001; and where it came from."""
    rates = FAMILY_LR.get(k.cls.__name__.lower()) if inspect.isclass(k.cls) else None
    if rates is not None:
        return for_task(rates, task), f"{k.cls.__name__} family default"
    keywords = getattr(k.factory, "keywords", None) or {}
    if isinstance(keywords.get("lr"), (int, float)):
        return float(keywords["lr"]), "given with the class"
    signature = k.signature()
    lr = signature.parameters.get("lr") if signature is not None else None
    if lr is not None and isinstance(lr.default, (int, float)) and not isinstance(lr.default, bool) and lr.default > 0:
        return float(lr.default), f"{k.cls.__name__}'s own default"
    return 0.001, "default (the class names none)"


def default_lr(name: str, task: str) -> float:
    """The learning rate an optimizer gets when --lr is not given, per task."""
    if registered(name):
        return float(for_task(OPTIMIZERS.lookup(name).meta["default_lr"], task))
    return family_lr(kind(name), task)[0]


def stacked_update(name: str) -> Any:
    """The hand-written batched update the stacked engine applies for this optimizer, or None."""
    if not registered(name):
        return None
    return OPTIMIZERS.lookup(name).meta.get("stacked")



def build_optimizer(target: Any, cfg: Any) -> Any:
    """`cfg`'s optimizer over a model's parameters (`target` an nn.Module; routed and model-taking optimizers need
    it) or over a list of parameters. A constructor that raises is one line naming --optim."""
    from torch import nn

    k = kind(cfg.name)
    if k.protocol.routed and isinstance(target, nn.Module):
        from losslab.components.routing import Routed

        fixed = OPTIMIZERS.lookup(k.name).meta["fixed"] if k.registered else {}
        return Routed.build(target, cfg, k.factory, arguments(cfg), fixed)
    params: Any = target.parameters() if isinstance(target, nn.Module) and not k.protocol.takes_model else target
    try:
        if k.registered:
            return OPTIMIZERS.lookup(cfg.name).factory(params, cfg)
        kwargs = {**_kwargs(cfg, *SHARED), **arguments(cfg)}
        return k.factory(params, lr=cfg.lr, **kwargs) if cfg.lr is not None else k.factory(params, **kwargs)
    except ConfigError:
        raise
    except USER_ERRORS as exc:
        raise ConfigError("--optim", f"{k.label}({', '.join(f'{a}={v!r}' for a, v in kwargs_shown(cfg))}) raised "
                          f"{type(exc).__name__}: {exc}") from None


def kwargs_shown(cfg: Any) -> list[tuple[str, Any]]:
    return [("lr", cfg.lr), *_kwargs(cfg, *SHARED).items(), *(getattr(cfg, "args", None) or ())]
