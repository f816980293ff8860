"""Frozen, validated run configurations: built once at the CLI edge, passed down unchanged, written into every result."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from losslab.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def check_finite(option: str, value: Optional[float]) -> None:
    if value is not None and not math.isfinite(value):
        raise ConfigError(option, f"must be a finite number (got {value})")


def check_positive(option: str, value: Optional[float]) -> None:
    check_finite(option, value)
    if value is not None and value <= 0:
        raise ConfigError(option, f"must be > 0 (got {value:g})")


def check_non_negative(option: str, value: Optional[float]) -> None:
    check_finite(option, value)
    if value is not None and value < 0:
        raise ConfigError(option, f"must be >= 0 (got {value:g})")


def parse_floats(option: str, text: Optional[str]) -> Optional[tuple[float, ...]]:
    """Parse a comma list such as '0.9,0.999' into finite floats."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(option, f"expected comma-separated numbers (got {text!r})") from None
    for v in values:
        check_finite(option, v)
    return values


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer choice and hyper-parameters; None means the optimizer's own default."""

    name: str = "sgd"
    lr: Optional[float] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    betas: Optional[tuple[float, float]] = None
    eps: Optional[float] = None

    def __post_init__(self) -> None:
        from losslab.optimizers import OPTIMIZERS

        entry = OPTIMIZERS.lookup(self.name)
        check_positive("--lr", self.lr)
        check_non_negative("--momentum", self.momentum)
        check_non_negative("--weight-decay", self.weight_decay)
        check_positive("--eps", self.eps)
        if self.momentum is not None and self.momentum >= 1:
            raise ConfigError("--momentum", f"must be < 1 (got {self.momentum:g})")
        if self.betas is not None:
            if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
                raise ConfigError("--betas", f"expected two numbers in [0, 1), e.g. 0.9,0.999 (got {self.betas})")
        accepts = entry.meta["accepts"]
        for option, value in (
            ("--momentum", self.momentum),
            ("--weight-decay", self.weight_decay),
            ("--betas", self.betas),
            ("--eps", self.eps),
        ):
            key = option.lstrip("-").replace("-", "_")
            if value is not None and key not in accepts:
                users = [e.name for e in OPTIMIZERS if key in e.meta["accepts"]]
                raise ConfigError(
                    option, f"does not apply to --optim {self.name} (applies to: {', '.join(users)})"
                )
        if self.lr is None:
            object.__setattr__(self, "lr", entry.meta["default_lr"])


@dataclass(frozen=True)
class LossConfig:
    """Loss function by registry name or import path 'package.module:Name'."""

    name: str = "mse"
    delta: float = 1.0

    def __post_init__(self) -> None:
        check_positive("--delta", self.delta)


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings shared by every command."""

    epochs: int = 1000
    batch_size: Optional[int] = None  # None: full batch
    clip_grad_norm: Optional[float] = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ConfigError("--epochs", f"must be a positive integer (got {self.epochs})")
        if self.batch_size is not None and self.batch_size <= 0:
            raise ConfigError("--batch-size", f"must be a positive integer (got {self.batch_size})")
        check_positive("--clip-grad-norm", self.clip_grad_norm)
        if self.seed < 0:
            raise ConfigError("--seed", f"must be >= 0 (got {self.seed})")
        if self.device not in DEVICES:
            raise ConfigError("--device", f"unknown device {self.device!r}; choose from: {', '.join(DEVICES)}")


@dataclass(frozen=True)
class RegressDataConfig:
    """Synthetic y = x·w + b + noise·ε (NumPy-seeded), or a user's CSV when `csv` is set."""

    samples: int = 100
    features: int = 1
    true_w: tuple[float, ...] = (2.0,)
    true_b: float = 3.0
    noise: float = 0.1
    data_seed: int = 42
    csv: Optional[str] = None

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ConfigError("--samples", f"must be at least 2 (got {self.samples})")
        if self.features < 1:
            raise ConfigError("--features", f"must be a positive integer (got {self.features})")
        if len(self.true_w) == 1 and self.features > 1:
            object.__setattr__(self, "true_w", self.true_w * self.features)
        if len(self.true_w) != self.features:
            raise ConfigError(
                "--true-w", f"gives {len(self.true_w)} weights but --features is {self.features}"
            )
        check_finite("--true-b", self.true_b)
        check_non_negative("--noise", self.noise)
        if self.data_seed < 0:
            raise ConfigError("--data-seed", f"must be >= 0 (got {self.data_seed})")


@dataclass(frozen=True)
class GateConfig:
    """CI gates: `--expect` specs and `--target-loss`."""

    expect: tuple[str, ...] = ()
    target_loss: Optional[float] = None

    def __post_init__(self) -> None:
        from losslab.expect import parse_expectation

        for spec in self.expect:
            parse_expectation(spec)
        check_finite("--target-loss", self.target_loss)


@dataclass(frozen=True)
class RegressConfig:
    data: RegressDataConfig = field(default_factory=RegressDataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    out: Optional[str] = None

    def __post_init__(self) -> None:
        from losslab.losses import check_task

        check_task(self.loss.name, "regression")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_out_dir(path: Optional[str]) -> None:
    """Fail early (before training) when `--out` cannot be written."""
    if path is None:
        return
    import tempfile

    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".losslab-probe-"):
            pass
    except OSError as exc:
        raise ConfigError("--out", f"cannot write to {path}: {exc.strerror or exc}") from None
