"""Model registry: name -> factory building an nn.Module from the data's shape.

Regression: `linear`. Classification: `logistic`, `mlp`, `cnn`; each takes (input_shape, classes, hidden)
and returns logits (the classify experiment appends log_softmax for the nll loss).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from losslab.components.registry import Registry
from losslab.errors import ConfigError

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
    """The classifier `cfg` (config.ModelConfig) names, built and initialised (seed the RNG first)."""
    entry = MODELS.lookup(cfg.name)
    if entry.meta["task"] != "classification":
        choices = [e.name for e in MODELS if e.meta["task"] == "classification"]
        raise ConfigError("--model", f"{cfg.name!r} is not a classifier; choose from: {', '.join(choices)}")
    model = entry.factory(tuple(input_shape), classes, cfg)
    return initialise(model, cfg.init, cfg.activation or entry.meta.get("activation", "none"))
