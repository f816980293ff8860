"""Objects handed to the Python API (a model, a dataset, a loss) live in the module `losslab._objects` under
generated names, so the commands' code finds them by import path as it finds a user's own module; `shown` is how
a report names one: by what it is (`Net`, `tensors (X 256×4, y 256)`), never by that generated path."""

from __future__ import annotations

import itertools
import sys
import types
from typing import Any

MODULE = types.ModuleType("losslab._objects", "objects given to the Python API, by generated name")
sys.modules[MODULE.__name__] = MODULE
_COUNTER = itertools.count(1)
_SHOWN: dict[str, str] = {}


def register(value: Any, kind: str, shown: str) -> str:
    """`value`'s import path (`losslab._objects:model1`; an optimizer class under its own name when that is free,
    `losslab._objects:Lion`); reports call it `shown`."""
    name = f"{kind}{next(_COUNTER)}"
    if kind == "optim" and shown.isidentifier() and getattr(MODULE, shown, value) is value:
        name = shown
    setattr(MODULE, name, value)
    path = f"{MODULE.__name__}:{name}"
    _SHOWN[path] = shown
    return path


def shown(spec: Any) -> Any:
    """What a report calls an option's value: an object given in Python by what it is, anything else as given."""
    return _SHOWN.get(spec, spec) if isinstance(spec, str) else spec


def describe(value: Any) -> str:
    """A short name for an object: a class or function by its name, an instance by its class's, tensors and
    arrays by their shapes (`tensors (X 256×4, y 256)`)."""
    if isinstance(value, (tuple, list)) and value and all(hasattr(v, "shape") for v in value):
        kind = "tensors" if all(type(v).__module__.startswith("torch") for v in value) else "arrays"
        shapes = ", ".join(f"{label} {'×'.join(str(int(d)) for d in v.shape)}"
                           for label, v in zip(("X", "y", "z"), value))
        return f"{kind} ({shapes})"
    if hasattr(value, "columns") and hasattr(value, "shape"):
        return f"DataFrame ({value.shape[0]}×{value.shape[1]})"
    import functools

    if isinstance(value, functools.partial):
        arguments = ", ".join(f"{key}={v!r}" for key, v in value.keywords.items())
        return f"{describe(value.func)}({arguments})"
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if isinstance(name, str) and (isinstance(value, type) or callable(value) and not hasattr(value, "__dict__")
                                  or type(value).__name__ == "function"):
        return name
    return type(value).__name__
