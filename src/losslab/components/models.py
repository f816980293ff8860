"""Model registry: name -> factory building an nn.Module from the data's shape.

Regression: `linear`. Classification: `logistic`, `mlp`, `cnn`; each takes (input_shape, classes, hidden)
and returns logits (the classify experiment appends log_softmax for the nll loss).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from losslab.components.registry import Registry
from losslab.errors import USER_ERRORS, ConfigError

MODELS: Registry[Callable[..., Any]] = Registry("model", "--model")


@MODELS.register("linear", "nn.Linear(features, 1): the regression model", task="regression")
def _linear(features: int) -> Any:
    from torch import nn

    return nn.Linear(features, 1)


ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "none")
INITS = ("default", "xavier", "kaiming")


def activation(name: str) -> Any:
    from torch import nn

    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
            "none": nn.Identity}[name]()


def initialise(model: Any, init: str, activation_name: str) -> Any:
    """`default` keeps PyTorch's own initialisation; `xavier` (Glorot, uniform) and `kaiming` (He, normal, fan-in)
    reset every Linear and Conv2d weight for the activation in use, with zero biases."""
    from torch import nn

    if init == "default":
        return model
    # torch.nn.init's names for the nonlinearity each scheme is computed for (gelu is treated as relu)
    nonlinearity = {"relu": "relu", "gelu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
                    "none": "linear"}[activation_name]
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if init == "xavier":
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(nonlinearity))
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@MODELS.register("logistic", "multinomial logistic regression: Flatten -> Linear(inputs, classes)",
                 task="classification", options=("init",))
def _logistic(input_shape: tuple[int, ...], classes: int, cfg: Any) -> Any:
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), classes))


@MODELS.register("mlp", "Flatten -> --depth x [Linear(., --hidden) -> (BatchNorm1d) -> --activation (relu) -> "
                 "(Dropout)] -> Linear(--hidden, classes)", task="classification",
                 options=("hidden", "depth", "activation", "init", "dropout", "batch_norm"), activation="relu")
def _mlp(input_shape: tuple[int, ...], classes: int, cfg: Any) -> Any:
    from torch import nn

    layers: list[Any] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(cfg.depth):
        layers.append(nn.Linear(width, cfg.hidden))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(cfg.hidden))
        layers.append(activation(cfg.activation or "relu"))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        width = cfg.hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


@MODELS.register("cnn", "the tutorial CNN: 3x [Conv2d 5x5 pad 2 -> MaxPool2d(2)] (32, 32, 64 channels) -> "
                 "Flatten -> Linear(., 64) -> Linear(64, classes); like the tutorial, no activation between its "
                 "layers unless --activation names one", task="classification", options=("activation", "init"),
                 activation="none")
def _cnn(input_shape: tuple[int, ...], classes: int, cfg: Any) -> Any:
    import torch
    from torch import nn

    if len(input_shape) != 3:
        raise ConfigError("--model", f"cnn needs image input (channels, height, width); this data has shape "
                          f"{tuple(input_shape)}: use mlp or logistic")
    act = cfg.activation or "none"
    channels, height, width = input_shape
    layers: list[Any] = []
    for c_in, c_out in ((channels, 32), (32, 32), (32, 64)):
        layers.append(nn.Conv2d(c_in, c_out, 5, padding=2))
        if act != "none":
            layers.append(activation(act))
        # pool only while the map is still at least 2x2, so 8x8 digits and smaller images fit too
        if height >= 2 and width >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features(torch.zeros(1, *input_shape)).numel()  # flattened size from the real input shape
    head: list[Any] = [nn.Linear(flat, 64)] + ([activation(act)] if act != "none" else []) + [nn.Linear(64, classes)]
    return nn.Sequential(features, nn.Flatten(), *head)


def build_classifier(cfg: Any, input_shape: tuple[int, ...], classes: int) -> Any:
    """The classifier `cfg` (config.ModelConfig) names, built and initialised (seed the RNG first); a user's own
    model (an import path) is built by its own code."""
    if is_user_model(cfg.name):
        return build_user_model(cfg.name, tuple(input_shape), classes)
    entry = MODELS.lookup(cfg.name)
    if entry.meta["task"] != "classification":
        choices = [e.name for e in MODELS if e.meta["task"] == "classification"]
        raise ConfigError("--model", f"{cfg.name!r} is not a classifier; choose from: {', '.join(choices)}")
    model = entry.factory(tuple(input_shape), classes, cfg)
    return initialise(model, cfg.init, cfg.activation or entry.meta.get("activation", "none"))


# --- a user's own model: --model package.module:NAME ---------------------------------------------------------

# what losslab passes a user's model by keyword, where its signature asks for it
KNOWN_ARGUMENTS = ("in_features", "input_shape", "in_channels", "classes", "num_classes", "out_features")


def is_user_model(name: Optional[str]) -> bool:
    return name is not None and ":" in name


def load_user_model(spec: str) -> Any:
    """The class or factory `package.module:NAME` names (the current folder is importable, as for --loss)."""
    import inspect

    from losslab.components.losses import import_object

    obj = import_object(spec, "--model")
    if not callable(obj) or (inspect.isclass(obj) and not _is_module_class(obj)):
        raise ConfigError("--model", f"{spec} is not an nn.Module subclass or a function returning one")
    return obj


def _is_module_class(cls: type) -> bool:
    from torch import nn

    return issubclass(cls, nn.Module)


def known_arguments(input_shape: tuple[int, ...], outputs: int) -> dict[str, Any]:
    """What losslab knows of the data, under the names a model's signature may ask for."""
    out: dict[str, Any] = {"in_features": math.prod(input_shape), "input_shape": tuple(input_shape),
                           "classes": outputs, "num_classes": outputs, "out_features": outputs}
    if len(input_shape) == 3:
        out["in_channels"] = input_shape[0]
    return out


def build_user_model(spec: str, input_shape: tuple[int, ...], outputs: int, factory: Any = None,
                     also: Optional[dict[str, Any]] = None) -> Any:
    """`spec`'s model (its class or function `factory`, loaded when not given) built with what its signature asks
    for (by keyword), or with no arguments (`also`: more it may ask for, as a language model's vocab_size and
    block_size); its failures are one line naming --model."""
    import inspect

    from torch import nn

    factory = factory if factory is not None else load_user_model(spec)
    known = {**known_arguments(input_shape, outputs), **(also or {})}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it with nothing
        params = {}  # type: ignore[assignment]
    kwargs = {name: known[name] for name in params if name in known}
    missing = [name for name, p in params.items() if name not in known and p.default is p.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        given = ", ".join(k for k in (*KNOWN_ARGUMENTS, *(also or {})) if k in known)
        raise ConfigError("--model", f"{spec} needs {', '.join(missing)}, which losslab cannot give (it passes "
                          f"{given} by name where asked)")
    import torch

    from losslab.components.losses import user_code

    try:
        with user_code():
            model = factory(**kwargs)
    except USER_ERRORS as exc:
        raise ConfigError("--model", f"building {spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
                          f"failed: {type(exc).__name__}: {exc}") from None
    finally:
        changed = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)  # a model must not change how the rest of the run makes tensors
    if changed != torch.float32:
        raise ConfigError("--model", f"{spec} sets torch's default dtype to {str(changed).replace('torch.', '')} "
                          "(torch.set_default_dtype) while it is built; losslab trains in float32: build the model "
                          "without it (or convert the model itself with .double() and cast inside forward)")
    if not isinstance(model, nn.Module):
        raise ConfigError("--model", f"{spec} returned {type(model).__name__}, not an nn.Module")
    kinds = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if p.is_complex()})
    if kinds:
        raise ConfigError("--model", f"{spec} has {', '.join(kinds)} parameters; losslab trains real parameters "
                          "(split a complex weight into real and imaginary parts)")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("--model", f"{spec} has no trainable parameters: nothing to train")
    return model
