"""Model registry: name -> factory(**shape) building an nn.Module."""

from __future__ import annotations

from typing import Any, Callable

from losslab.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model", "--model")


@MODELS.register("linear", "nn.Linear(features, 1): the regression model", task="regression")
def _linear(features: int) -> Any:
    from torch import nn

    return nn.Linear(features, 1)
