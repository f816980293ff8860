"""The settings every run has: optimizer, loss, schedule, training loop, executor and CI gates; the defaults that
differ between the two tasks in one place (`REGRESS_DEFAULTS`, `CLASSIFY_DEFAULTS`), read by the configs and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

from losslab.components.datasets import dataset_meta
from losslab.components.optimizers import (
    OPTIMIZERS,
    RESTS,
    SHARED,
    check_arguments,
    default_lr,
    family_lr,
    kind,
    registered,
)
from losslab.components.schedules import SCHEDULES
from losslab.config.checks import MAX_SEED, RECORD_BYTES, check_finite, check_memory, check_non_negative, check_positive
from losslab.errors import ConfigError
from losslab.expect import parse_expectation

DEVICES = ("auto", "cpu", "cuda", "mps")


# The defaults that differ between the two tasks, in one place: the dataclasses below and the CLI both read them.
REGRESS_DEFAULTS: dict[str, Any] = {"optim": "sgd", "loss": "mse", "epochs": 1000, "samples": 100}


CLASSIFY_DEFAULTS: dict[str, Any] = {"optim": "adam", "loss": "cross-entropy", "batch_size": 64, "samples": 600,
                                     "features": 2}


# `losslab lm`: nanoGPT's CPU recipe shape (batch 12 of 64-token windows, AdamW 1e-3, clipping 1.0, warm-up
# and cosine decay); an epoch is --eval-every steps, 20 of them 2,000 steps.
LM_DEFAULTS: dict[str, Any] = {"optim": "adamw", "loss": "cross-entropy", "batch_size": 12, "epochs": 20,
                               "clip_grad_norm": 1.0, "schedule": "cosine", "warmup": 1}


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer choice and hyper-parameters; None means the optimizer's own default."""

    name: str = REGRESS_DEFAULTS["optim"]
    lr: Optional[float] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    betas: Optional[tuple[float, float]] = None
    eps: Optional[float] = None
    args: tuple[tuple[str, Any], ...] = ()  # --optim-arg KEY=VALUE: the class's other constructor arguments

    def __post_init__(self) -> None:
        check_positive("--lr", self.lr)
        check_non_negative("--momentum", self.momentum)
        check_non_negative("--weight-decay", self.weight_decay)
        check_positive("--eps", self.eps)
        if self.momentum is not None and self.momentum >= 1:
            raise ConfigError("--momentum", f"must be < 1 (got {self.momentum:g})")
        if self.betas is not None:
            if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
                raise ConfigError("--betas", f"expected two numbers in [0, 1), e.g. 0.9,0.999 (got {self.betas})")
        # (frozen all the way down: lists from JSON, TOML or Python become tuples, so the config stays hashable)
        object.__setattr__(self, "args", tuple((str(key), _frozen(value)) for key, value in self.args))
        keys = [key for key, _ in self.args]
        if len(set(keys)) != len(keys):
            raise ConfigError("--optim-arg", f"sets {sorted(k for k in keys if keys.count(k) > 1)[0]} twice")
        shared = {key: getattr(self, key) for key in SHARED if getattr(self, key) is not None}
        if not registered(self.name):
            check_arguments(kind(self.name), self.args, shared)
            return
        accepts = OPTIMIZERS.lookup(self.name).meta["accepts"]
        for key in shared:
            if key not in accepts:
                users = [e.name for e in OPTIMIZERS if key in e.meta["accepts"]]
                raise ConfigError(f"--{key.replace('_', '-')}", f"does not apply to --optim {self.name} (applies to: "
                                  f"{', '.join(users)})")
        rest = dict(self.args).get("rest")
        if rest is not None and (not kind(self.name).protocol.routed or rest not in RESTS):
            raise ConfigError("--muon-rest", f"rest={rest!r}: the parameters Muon does not take go to "
                              f"{' or '.join(RESTS)}, and only with --optim muon")
        if self.args:
            check_arguments(kind(self.name), [(k, v) for k, v in self.args if k != "rest"], {})

    def for_task(self, task: str, dataset: Optional[str] = None) -> "OptimConfig":
        """The same config with `lr` resolved (`rate_for`)."""
        return self if self.lr is not None else replace(self, lr=rate_for(self.name, task, dataset)[0])


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def rate_for(optim: str, task: str, dataset: Optional[str] = None, given: Optional[float] = None,
             option: str = "--lr") -> tuple[float, str]:
    """The one learning-rate chain, and where the rate came from: the rate the user gave (`option`), else the
    dataset's own default for this optimizer where it has one (digits: adam 0.01), else the optimizer's default
    for the task (the registry's `default_lr`)."""
    if given is not None:
        return given, option
    rates = (dataset_meta(dataset).get("default_lr") or {}) if dataset is not None else {}
    if optim in rates:
        return rates[optim], f"{dataset} default"
    if not registered(optim):
        return family_lr(kind(optim), task)
    return default_lr(optim, task), "default"


@dataclass(frozen=True)
class LossConfig:
    """Loss function by registry name or import path 'package.module:Name'."""

    name: str = REGRESS_DEFAULTS["loss"]
    delta: float = 1.0
    check: bool = True  # an import-path loss has its gradient checked before training (--no-check-loss skips)

    def __post_init__(self) -> None:
        check_positive("--delta", self.delta)


@dataclass(frozen=True)
class ScheduleConfig:
    """A learning-rate schedule from torch.optim.lr_scheduler (see components/schedules.py) and linear warm-up."""

    name: str = "none"
    warmup: int = 0  # epochs of linear warm-up, stepped per batch
    step_size: Optional[int] = None
    milestones: Optional[tuple[int, ...]] = None
    lr_gamma: float = 0.1
    eta_min: float = 0.0
    peak_lr: Optional[float] = None
    lr_patience: int = 10
    lr_factor: float = 0.1

    def __post_init__(self) -> None:
        entry = SCHEDULES.lookup(self.name)
        accepts = entry.meta["accepts"]
        defaults = {"step_size": None, "milestones": None, "lr_gamma": 0.1, "eta_min": 0.0, "peak_lr": None,
                    "lr_patience": 10, "lr_factor": 0.1}
        for key, default in defaults.items():
            if getattr(self, key) != default and key not in accepts:
                users = [e.name for e in SCHEDULES if key in e.meta["accepts"]]
                raise ConfigError("--" + key.replace("_", "-"), f"does not apply to --schedule {self.name} "
                                  f"(applies to: {', '.join(users)})")
        if self.warmup < 0:
            raise ConfigError("--warmup", f"must be >= 0 epochs (got {self.warmup})")
        if self.warmup and self.name == "onecycle":
            raise ConfigError("--warmup", "does not apply to --schedule onecycle (it warms up by itself)")
        if self.step_size is not None and self.step_size < 1:
            raise ConfigError("--step-size", f"must be a positive number of epochs (got {self.step_size})")
        if self.milestones is not None and (not self.milestones or any(m < 1 for m in self.milestones)
                                            or list(self.milestones) != sorted(set(self.milestones))):
            raise ConfigError("--milestones", f"must be increasing positive epochs, e.g. 10,20 (got {self.milestones})")
        if self.name == "multistep" and self.milestones is None:
            raise ConfigError("--milestones", "--schedule multistep needs --milestones, e.g. 10,20")
        check_positive("--lr-gamma", self.lr_gamma)
        check_non_negative("--eta-min", self.eta_min)
        check_positive("--peak-lr", self.peak_lr)
        check_positive("--lr-factor", self.lr_factor)
        if self.lr_factor >= 1:
            raise ConfigError("--lr-factor", f"must be < 1 (got {self.lr_factor:g})")
        if self.lr_patience < 0:
            raise ConfigError("--lr-patience", f"must be >= 0 (got {self.lr_patience})")


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings shared by every command."""

    epochs: Optional[int] = REGRESS_DEFAULTS["epochs"]  # None: the command's default (classify: per dataset)
    batch_size: Optional[int] = None  # None: full batch
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None
    seed: int = 0
    device: str = "auto"
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    threads: Optional[int] = None  # CPU threads torch uses; None: torch's own choice
    track_sharpness: Optional[int] = None  # every K epochs: the top Hessian eigenvalue of the training loss
    sharpness_samples: int = 1024  # the training rows it is measured on (the first ones; all when fewer)
    max_grad_evals: Optional[int] = None  # a run stops when it has spent this many forward-backward passes
    stop_at: Optional[tuple[str, str, float]] = None  # (record key, "<=" or ">=", value): a run stops on reaching it

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError("--epochs", f"must be a positive integer (got {self.epochs})")
        if self.epochs is not None and self.schedule.warmup and self.schedule.warmup >= self.epochs:
            raise ConfigError("--warmup", f"{self.schedule.warmup} warm-up epochs leave nothing of --epochs "
                              f"{self.epochs}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise ConfigError("--batch-size", f"must be a positive integer (got {self.batch_size})")
        check_positive("--clip-grad-norm", self.clip_grad_norm)
        check_positive("--clip-grad-value", self.clip_grad_value)
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError("--seed", f"must be in [0, 2**62] (got {self.seed})")
        if self.epochs is not None:
            check_memory("--epochs", self.epochs * RECORD_BYTES, f"recording {self.epochs:,} epochs")
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ConfigError("--threads", f"must be from 1 to 1024 (got {self.threads})")
        if self.track_sharpness is not None and not 1 <= self.track_sharpness <= 10**6:
            raise ConfigError("--track-sharpness", f"is every K epochs, K from 1 (got {self.track_sharpness})")
        if not 1 <= self.sharpness_samples <= 10**7:
            raise ConfigError("--sharpness-samples", f"must be from 1 to 10,000,000 (got {self.sharpness_samples})")
        if self.device not in DEVICES:
            raise ConfigError("--device", f"unknown device {self.device!r}; choose from: {', '.join(DEVICES)}")


EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class ExecutorConfig:
    """Where a many-run command's trials train (engine.executors)."""

    name: str = "local"
    jobs: Optional[int] = None  # process: worker processes (default: the number of cores)
    retries: int = 1  # resubmissions of a unit whose worker process died
    ray_address: Optional[str] = None  # ray: None starts a local runtime; "auto" or host:port joins a cluster
    cpus_per_trial: float = 1.0  # ray: CPUs each task asks for

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise ConfigError("--executor", f"unknown executor {self.name!r}; choose from: {', '.join(EXECUTORS)}")
        if self.name == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise ConfigError("--executor", "ray needs Ray installed: pip install 'losslab[ray]'")
        if self.name != "ray" and (self.ray_address is not None or self.cpus_per_trial != 1.0):
            raise ConfigError("--ray-address" if self.ray_address is not None else "--cpus-per-trial",
                              "applies to --executor ray")
        check_finite("--cpus-per-trial", self.cpus_per_trial)
        if not 0.01 <= self.cpus_per_trial <= 1024:
            raise ConfigError("--cpus-per-trial", f"must be from 0.01 to 1024 CPUs (got {self.cpus_per_trial:g}); Ray "
                              "cannot schedule finer fractions")
        if self.jobs is not None and not 1 <= self.jobs <= 256:
            raise ConfigError("--jobs", f"must be from 1 to 256 (got {self.jobs})")
        if self.jobs is not None and self.name == "local":
            raise ConfigError("--jobs", "applies to --executor process")
        if not 0 <= self.retries <= 10:
            raise ConfigError("--retries", f"must be from 0 to 10 (got {self.retries})")


@dataclass(frozen=True)
class GateConfig:
    """CI gates: `--expect` specs and `--target-loss`."""

    expect: tuple[str, ...] = ()
    target_loss: Optional[float] = None

    def __post_init__(self) -> None:
        for spec in self.expect:
            parse_expectation(spec)
        check_finite("--target-loss", self.target_loss)
