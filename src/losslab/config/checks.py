"""Validators every config uses: finite and positive numbers, seeds, memory for what a run will record."""

from __future__ import annotations

import math
from typing import Any, Optional, TypeVar

from losslab.errors import FLOAT32_MAX, ConfigError
from losslab.limits import check_memory, memory_bytes  # noqa: F401  (re-exported: the config layer's checks)

MAX_SEED = 2**62  # within torch.manual_seed's range, with room for the seeds a many-run command adds


MAX_DATA_SEED = 2**32 - 2  # numpy.random.seed's range (data seed + 1 draws the held-out set)


def check_finite(option: str, value: Optional[float]) -> None:
    """Finite, and within float32's range: every such number becomes a float32 tensor or hyper-parameter."""
    if value is not None and not math.isfinite(value):
        raise ConfigError(option, f"must be a finite number (got {value})")
    if value is not None and abs(value) > FLOAT32_MAX:
        raise ConfigError(option, f"{value:g} is beyond the float32 range (about ±3.4e38) that training uses")


def check_positive(option: str, value: Optional[float]) -> None:
    check_finite(option, value)
    if value is not None and value <= 0:
        raise ConfigError(option, f"must be > 0 (got {value:g})")


def check_non_negative(option: str, value: Optional[float]) -> None:
    check_finite(option, value)
    if value is not None and value < 0:
        raise ConfigError(option, f"must be >= 0 (got {value:g})")


RECORD_BYTES = 600  # one epoch's record as Python objects, with room for tracked parameters


def check_target(task: str, target: Optional[float]) -> None:
    """A regression target is a loss (--target-loss); a classification target an accuracy (--target-accuracy)."""
    option = "--target-accuracy" if task == "classification" else "--target-loss"
    check_finite(option, target)
    if task == "classification" and target is not None and not 0 < target <= 1:
        raise ConfigError(option, f"must be in (0, 1] (got {target:g})")


def default_of(cls: Any, name: str) -> Any:
    """A config dataclass field's default: the one place a setting's default is written (the CLI reads it here)."""
    import dataclasses

    field = cls.__dataclass_fields__[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


_R = TypeVar("_R", bound="Resolvable")


class Resolvable:
    """A config whose defaults that depend on other fields are filled in by `resolved()`: the config it returns
    says so (`is_resolved`), and resolving that again returns it as it is, so a run resolves its config once
    however many layers ask. A config made by `dataclasses.replace` is a new, unresolved one."""

    def _resolve(self) -> Any:
        raise NotImplementedError

    def resolved(self: _R) -> _R:
        if self.is_resolved:
            return self
        out = self._resolve()
        object.__setattr__(out, "_resolved", True)  # (not a field: never in to_dict, compare or replace)
        return out

    @property
    def is_resolved(self) -> bool:
        return bool(self.__dict__.get("_resolved", False))


RESULT_BYTES = 1 << 30  # a result.json with every run's records: large, but not beyond this


def read_text_file(path: str, option: str, limit: int, what: str) -> str:
    """A text file a command reads whole (a --config, a result to replay or gate), refused before it is read when
    it is not a regular file (`/dev/zero`, a FIFO: reading would never end) or larger than `limit` bytes."""
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(option, f"no such file: {path}")
    if not p.is_file():
        raise ConfigError(option, f"{path} is not a regular file")
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(option, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(option, f"{path} is larger than {limit / 2**20:g} MiB: not {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(option, f"{path} is not UTF-8 text: not {what}") from None
