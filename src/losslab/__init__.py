"""losslab: PyTorch training experiments (losses, optimizers, learning rates) as one command each — and as one
function each from Python (`losslab.regress(...)`, `losslab.compare_optimizers(...)`, ...; see `losslab.api`).

`import losslab` loads no torch: the functions import what they need when called."""

from typing import TYPE_CHECKING, Any

from losslab.errors import ConfigError
from losslab.version import __version__

API = ("regress", "classify", "lm",
       "compare_optimizers", "compare_losses", "lr_sweep", "lr_find", "landscape", "predict",
       "check_loss", "replay", "gate", "diff", "benchmark", "load", "Result")
__all__ = ["ConfigError", "__version__", *API]


if TYPE_CHECKING:  # what a type checker sees of the functions loaded on first use
    from losslab.api import (  # noqa: F401
        Result,
        benchmark,
        check_loss,
        classify,
        compare_losses,
        compare_optimizers,
        diff,
        gate,
        landscape,
        lm,
        load,
        lr_find,
        lr_sweep,
        predict,
        regress,
        replay,
    )


def _api() -> Any:
    import importlib

    return importlib.import_module("losslab.api")


def __dir__() -> list[str]:
    return sorted({*globals(), *API, *_api().functions()})


def __getattr__(name: str) -> Any:
    """The Python API's functions, imported on first use (the one import here that points up the layers); a
    training command of the table without a function written in `losslab.api` gets one there."""
    import os

    here = os.path.dirname(__file__)
    submodule = os.path.exists(os.path.join(here, f"{name}.py")) or os.path.isdir(os.path.join(here, name))
    if not name.startswith("_") and not submodule:  # (`from losslab import interrupt` loads the module itself)
        try:
            return getattr(_api(), name)
        except AttributeError:
            pass
    raise AttributeError(f"module 'losslab' has no attribute {name!r}")
