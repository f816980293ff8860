"""Model registry: name -> factory building an nn.Module from the data's shape.

Regression: `linear`. Classification: `logistic`, `mlp`, `cnn`; each takes (input_shape, classes, hidden)
and returns logits (the classify experiment appends log_softmax for the nll loss).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from losslab.errors import ConfigError
from losslab.components.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model", "--model")


@MODELS.register("linear", "nn.Linear(features, 1): the regression model", task="regression")
def _linear(features: int) -> Any:
    from torch import nn

    return nn.Linear(features, 1)


@MODELS.register("logistic", "multinomial logistic regression: Flatten -> Linear(inputs, classes)",
                 task="classification")
def _logistic(input_shape: tuple[int, ...], classes: int, hidden: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), classes))


@MODELS.register("mlp", "Flatten -> Linear(inputs, --hidden) -> ReLU -> Linear(--hidden, classes)",
                 task="classification")
def _mlp(input_shape: tuple[int, ...], classes: int, hidden: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))


@MODELS.register("cnn", "the tutorial CNN: 3x [Conv2d 5x5 pad 2 -> MaxPool2d(2)] (32, 32, 64 channels) -> "
                 "Flatten -> Linear(., 64) -> Linear(64, classes)", task="classification")
def _cnn(input_shape: tuple[int, ...], classes: int, hidden: int) -> Any:
    import torch
    from torch import nn

    if len(input_shape) != 3:
        raise ConfigError("--model", f"cnn needs image input (channels, height, width); this data has shape "
                          f"{tuple(input_shape)}: use mlp or logistic")
    channels, height, width = input_shape
    layers: list[Any] = []
    for c_in, c_out in ((channels, 32), (32, 32), (32, 64)):
        layers.append(nn.Conv2d(c_in, c_out, 5, padding=2))
        # pool only while the map is still at least 2x2, so 8x8 digits and smaller images fit too
        if height >= 2 and width >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features(torch.zeros(1, *input_shape)).numel()  # flattened size from the real input shape
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat, 64), nn.Linear(64, classes))


def build_classifier(name: str, input_shape: tuple[int, ...], classes: int, hidden: int) -> Any:
    entry = MODELS.lookup(name)
    if entry.meta["task"] != "classification":
        choices = [e.name for e in MODELS if e.meta["task"] == "classification"]
        raise ConfigError("--model", f"{name!r} is not a classifier; choose from: {', '.join(choices)}")
    return entry.factory(tuple(input_shape), classes, hidden)
