"""Frozen, validated run configurations: built once at the CLI edge, passed down unchanged, written into every result.

`__post_init__` validates and never changes a field; defaults that depend on other fields (the optimizer's rate
for the task, the dataset's epochs and model, the sweep's range) are filled in by `resolved()`, which returns a
new config and is idempotent. Every command runs on a resolved config. Sits above the component registries
(it checks names against them) and below the engine.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

from losslab.components.datasets import DATASETS, default_data_dir
from losslab.components.losses import check_task, is_import_path
from losslab.components.models import MODELS
from losslab.components.optimizers import OPTIMIZERS, default_lr
from losslab.components.schedules import SCHEDULES
from losslab.errors import FLOAT32_MAX, ConfigError
from losslab.expect import parse_expectation

DEVICES = ("auto", "cpu", "cuda", "mps")

# The defaults that differ between the two tasks, in one place: the dataclasses below and the CLI both read them.
REGRESS_DEFAULTS: dict[str, Any] = {"optim": "sgd", "loss": "mse", "epochs": 1000, "samples": 100}
CLASSIFY_DEFAULTS: dict[str, Any] = {"optim": "adam", "loss": "cross-entropy", "batch_size": 64, "samples": 600,
                                     "features": 2}


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


def memory_bytes() -> int:
    """This machine's physical memory (24 GiB when the OS will not say)."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 24 << 30


def check_memory(option: str, needed: float, what: str) -> None:
    """Refuse, before allocating anything, a run whose estimated memory exceeds half of this machine's."""
    limit = memory_bytes() / 2
    if needed > limit:
        raise ConfigError(option, f"{what} needs about {needed / 2**30:,.1f} GiB, more than half of this "
                          f"machine's {2 * limit / 2**30:,.0f} GiB; use a smaller value")


def check_target(task: str, target: Optional[float]) -> None:
    """A regression target is a loss (--target-loss); a classification target an accuracy (--target-accuracy)."""
    option = "--target-loss" if task == "regression" else "--target-accuracy"
    check_finite(option, target)
    if task == "classification" and target is not None and not 0 < target <= 1:
        raise ConfigError(option, f"must be in (0, 1] (got {target:g})")


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

    name: str = REGRESS_DEFAULTS["optim"]
    lr: Optional[float] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    betas: Optional[tuple[float, float]] = None
    eps: Optional[float] = None

    def __post_init__(self) -> None:
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

    def for_task(self, task: str, dataset_rates: Optional[dict[str, float]] = None) -> "OptimConfig":
        """The same config with `lr` resolved when unset: the dataset's own default for this optimizer where it
        has one (digits: adam 0.01), else the optimizer's default for this task."""
        if self.lr is not None:
            return self
        return replace(self, lr=(dataset_rates or {}).get(self.name, default_lr(self.name, task)))


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
        if not 0 < self.cpus_per_trial <= 1024:
            raise ConfigError("--cpus-per-trial", f"must be a positive number of CPUs (got {self.cpus_per_trial:g})")
        if self.jobs is not None and not 1 <= self.jobs <= 256:
            raise ConfigError("--jobs", f"must be from 1 to 256 (got {self.jobs})")
        if self.jobs is not None and self.name == "local":
            raise ConfigError("--jobs", "applies to --executor process")
        if not 0 <= self.retries <= 10:
            raise ConfigError("--retries", f"must be from 0 to 10 (got {self.retries})")


REGRESSION_DATASETS = ("synthetic", "diabetes")
FOLDER_DATASETS = ("mnist", "fashion-mnist", "cifar10")  # read from --data-dir (imagefolder requires it given)


@dataclass(frozen=True)
class RegressDataConfig:
    """Synthetic y = x·w + b + noise·ε (NumPy-seeded), or a user's CSV when `csv` is set."""

    samples: int = REGRESS_DEFAULTS["samples"]
    features: int = 1
    true_w: tuple[float, ...] = (2.0,)
    true_b: float = 3.0
    noise: float = 0.1
    data_seed: int = 42
    csv: Optional[str] = None
    dataset: str = "synthetic"  # or "diabetes" (scikit-learn's, bundled); ignored with csv
    target: Optional[str] = None  # csv: the target column's name (default: the last column)
    columns: Optional[tuple[str, ...]] = None  # csv: the feature columns' names (default: every other column)
    standardize: Optional[bool] = None  # train on standardised columns; None: for a user's table (csv) only

    def __post_init__(self) -> None:
        if self.dataset not in REGRESSION_DATASETS:
            raise ConfigError("--dataset", f"unknown regression dataset {self.dataset!r}; choose from: "
                              f"{', '.join(REGRESSION_DATASETS)} (or --data FILE.csv)")
        if self.csv is None and (self.target is not None or self.columns is not None):
            raise ConfigError("--target" if self.target is not None else "--features",
                              "names a column of --data FILE.csv; give the file")
        if self.samples < 2:
            raise ConfigError("--samples", f"must be at least 2 (got {self.samples})")
        if self.features < 1:
            raise ConfigError("--features", f"must be a positive integer (got {self.features})")
        check_memory("--samples" if self.samples >= self.features else "--features",
                     3 * 8 * self.samples * self.features, f"{self.samples:,} samples x {self.features:,} features")
        if len(self.true_w) not in (1, self.features):
            raise ConfigError(
                "--true-w", f"gives {len(self.true_w)} weights but --features is {self.features}"
            )
        check_finite("--true-b", self.true_b)
        for w in self.true_w:
            check_finite("--true-w", w)
        check_non_negative("--noise", self.noise)
        if not 0 <= self.data_seed <= MAX_DATA_SEED:
            raise ConfigError("--data-seed", f"must be in [0, 2**32 - 2], NumPy's seed range (got {self.data_seed})")


@dataclass(frozen=True)
class GateConfig:
    """CI gates: `--expect` specs and `--target-loss`."""

    expect: tuple[str, ...] = ()
    target_loss: Optional[float] = None

    def __post_init__(self) -> None:
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
    tensorboard: Optional[str] = None  # folder for TensorBoard event files
    plot: Optional[bool] = None  # curves in the terminal report (None: in a terminal, not with --json/--quiet)

    def __post_init__(self) -> None:
        check_task(self.loss.name, "regression")

    def resolved(self) -> "RegressConfig":
        """One weight per feature, and the optimizer's default rate for regression when --lr is unset."""
        data = self.data
        if len(data.true_w) != data.features:
            data = replace(data, true_w=data.true_w * data.features)
        if data.standardize is None:  # a user's table comes in its own units: areas in thousands, prices in 1e5
            data = replace(data, standardize=data.csv is not None)
        return replace(self, data=data, optim=self.optim.for_task("regression"))

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        return self.train.epochs or 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe_folder(option: str, folder: Path, shown: str) -> None:
    """Create a file in `folder` and remove it: the one test of writability that cannot lie."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".losslab-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(option, f"cannot write to {shown}: {exc.strerror or exc}") from None


OUT_RECORD_BYTES = 400  # one epoch record in history.csv and result.json, generously
TENSORBOARD_RECORD_BYTES = 800  # one epoch record as TensorBoard scalar events (about 50 B a scalar)
PLOT_BYTES = 256 << 10  # one PNG, generously


def check_out_dir(path: Optional[str], files: tuple[str, ...] = (), option: str = "--out", records: int = 0) -> None:
    """Fail early (before training) when `--out` (or `--tensorboard`) cannot take every file the run will write
    there: not a folder, not writable, or without room for `records` epoch records and the files."""
    if path is None:
        return
    if not path.strip():
        raise ConfigError(option, "is empty; give a folder name (use . for the current folder)")
    p = Path(path).expanduser()
    try:
        if p.exists() and not p.is_dir():
            raise ConfigError(option, f"{path} exists and is not a folder")
        p.mkdir(parents=True, exist_ok=True)
        for name in files:
            if (p / name).is_dir():
                raise ConfigError(option, f"{p / name} is a folder; the run writes a file there")
    except OSError as exc:  # a name too long for the file system, a read-only or full disk, no permission
        raise ConfigError(option, f"cannot create folder {path}: {exc.strerror or exc}") from None
    _probe_folder(option, p, path)
    plots = sum(name.endswith(".png") for name in files)
    need = records * (TENSORBOARD_RECORD_BYTES if option == "--tensorboard" else OUT_RECORD_BYTES) + plots * PLOT_BYTES
    check_space(option, p, path, need)


def check_space(option: str, folder: Path, shown: str, need: int) -> None:
    import shutil

    free = shutil.disk_usage(folder).free
    if need > free:
        raise ConfigError(option, f"the run writes about {need / 2**20:,.1f} MiB there; {shown} has "
                          f"{free / 2**20:,.1f} MiB free")


def check_file_target(option: str, path: Optional[str]) -> None:
    """Fail early when a file option (e.g. --save) names a folder, or a place that cannot be written."""
    if path is None:
        return
    if not path.strip():
        raise ConfigError(option, "is empty; give a file name")
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            raise ConfigError(option, f"{path} is a folder; give a file name")
        parent = p.resolve().parent
        if not parent.is_dir():
            raise ConfigError(option, f"folder {parent} does not exist")
        if len(p.name.encode()) > os.pathconf(parent, "PC_NAME_MAX"):
            raise ConfigError(option, f"the file name {p.name[:40]}... is longer than the file system allows")
    except OSError as exc:
        raise ConfigError(option, f"cannot write {path}: {exc.strerror or exc}") from None
    _probe_folder(option, parent, str(parent))


@dataclass(frozen=True)
class ClassifyDataConfig:
    """Which dataset, where its files are, how much of it, and how validation data is made."""

    dataset: str = "digits"
    data_dir: Optional[str] = None  # torchvision root; None: $LOSSLAB_DATA or ~/.cache/losslab/data
    download: bool = False
    subset: Optional[int] = None
    val_fraction: float = 0.2  # only where the dataset has no official test split
    data_seed: int = 42  # blobs generation, subset and validation split
    classes: int = 3  # blobs
    samples: int = CLASSIFY_DEFAULTS["samples"]  # blobs
    features: int = CLASSIFY_DEFAULTS["features"]  # blobs
    class_sep: float = 3.0  # blobs: scale of the cluster centres against unit noise
    imbalance: Optional[float] = None  # blobs: largest / smallest class size
    csv: Optional[str] = None  # dataset "csv": a user's table
    target: Optional[str] = None  # csv: the label column's name (default: the last column)
    columns: Optional[tuple[str, ...]] = None  # csv: the feature columns' names (default: every other column)
    val_dir: Optional[str] = None  # imagefolder: a separate validation folder
    image_size: Optional[tuple[int, int]] = None  # imagefolder: (height, width); None: the first image's
    grayscale: bool = False  # imagefolder
    memory_budget: int = 2 * 2**30  # bytes of decoded tensors above which data is streamed
    workers: int = 2  # DataLoader worker processes for decoding images

    def __post_init__(self) -> None:
        DATASETS.lookup(self.dataset)
        folder = DATASETS.lookup(self.dataset).meta.get("folder", False)
        for option, given in (("--val-dir", self.val_dir is not None), ("--image-size", self.image_size is not None),
                              ("--grayscale", self.grayscale), ("--memory-budget", self.memory_budget != 2 * 2**30),
                              ("--workers", self.workers != 2)):
            if given and not folder:
                raise ConfigError(option, f"applies to --dataset imagefolder only (this run uses {self.dataset})")
        if folder and self.imbalance is not None:
            raise ConfigError("--imbalance", "is not available for --dataset imagefolder (drop files instead)")
        if self.image_size is not None and not all(1 <= v <= 4096 for v in self.image_size):
            raise ConfigError("--image-size", f"needs sizes from 1 to 4096 pixels (got {self.image_size})")
        if self.memory_budget <= 0:
            raise ConfigError("--memory-budget", f"must be positive (got {self.memory_budget})")
        if not 0 <= self.workers <= 64:
            raise ConfigError("--workers", f"must be from 0 to 64 (got {self.workers})")
        if (self.dataset == "csv") != (self.csv is not None):
            raise ConfigError("--data" if self.csv is None else "--dataset",
                              "--dataset csv reads the file given by --data FILE.csv")
        if self.csv is None and (self.target is not None or self.columns is not None):
            raise ConfigError("--target" if self.target is not None else "--features",
                              "names a column of --data FILE.csv; give the file")
        if self.subset is not None and self.subset < 1:
            raise ConfigError("--subset", f"must be a positive number of samples (got {self.subset})")
        check_finite("--val-fraction", self.val_fraction)
        if not 0 < self.val_fraction < 1:
            raise ConfigError("--val-fraction", f"must be between 0 and 1 (got {self.val_fraction:g})")
        if not 0 <= self.data_seed <= MAX_DATA_SEED:
            raise ConfigError("--data-seed", f"must be in [0, 2**32 - 2], NumPy's seed range (got {self.data_seed})")
        if self.classes < 2:
            raise ConfigError("--classes", f"must be at least 2 (got {self.classes})")
        if self.samples < 2 * self.classes:
            raise ConfigError("--samples",
                              f"must be at least 2 per class (got {self.samples} for {self.classes} classes)")
        if self.features < 1:
            raise ConfigError("--features", f"must be a positive integer (got {self.features})")
        if self.dataset == "blobs":
            check_memory("--samples" if self.samples >= self.features else "--features",
                         3 * 4 * self.samples * self.features, f"{self.samples:,} samples x {self.features:,} features")
        check_positive("--class-sep", self.class_sep)
        check_finite("--imbalance", self.imbalance)
        if self.imbalance is not None and self.imbalance < 1:
            raise ConfigError("--imbalance",
                              f"is the largest/smallest class ratio, must be >= 1 (got {self.imbalance:g})")

    def resolved(self) -> "ClassifyDataConfig":
        """The data folder of a dataset read from one: as given, else $LOSSLAB_DATA or ~/.cache/losslab/data
        (left unset for data that never reads it, so a result does not depend on $HOME)."""
        if self.data_dir is not None or self.dataset not in FOLDER_DATASETS:
            return self
        return replace(self, data_dir=default_data_dir())


@dataclass(frozen=True)
class ModelConfig:
    name: Optional[str] = None  # None: the dataset's default
    hidden: int = 128
    depth: int = 1  # hidden layers of the mlp
    activation: Optional[str] = None  # None: the model's own (mlp relu, cnn none)
    init: str = "default"
    dropout: float = 0.0
    batch_norm: bool = False

    def __post_init__(self) -> None:
        from losslab.components.models import ACTIVATIONS, INITS

        if self.name is not None:
            MODELS.lookup(self.name)
        if self.hidden < 1:
            raise ConfigError("--hidden", f"must be a positive integer (got {self.hidden})")
        if not 1 <= self.depth <= 1000:
            raise ConfigError("--depth", f"must be an integer from 1 to 1000 (got {self.depth})")
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise ConfigError("--activation", f"unknown activation {self.activation!r}; choose from: "
                              f"{', '.join(ACTIVATIONS)}")
        if self.init not in INITS:
            raise ConfigError("--init", f"unknown initialisation {self.init!r}; choose from: {', '.join(INITS)}")
        check_finite("--dropout", self.dropout)
        if not 0 <= self.dropout < 1:
            raise ConfigError("--dropout", f"must be in [0, 1) (got {self.dropout:g})")
        # at least (inputs + classes) x hidden weights (and hidden² per extra layer), each with a gradient and
        # two optimizer states
        check_memory("--hidden", 16 * (64 * self.hidden + (self.depth - 1) * self.hidden ** 2),
                     f"an mlp with {self.depth} hidden layers of {self.hidden:,} units")
        if self.name is not None:
            self._check_applies()

    def _check_applies(self) -> None:
        """Refuse an architecture option the chosen model does not have, rather than ignore it."""
        given = {"depth": self.depth != 1, "activation": self.activation is not None, "init": self.init != "default",
                 "dropout": self.dropout != 0, "batch_norm": self.batch_norm}
        takes = MODELS.lookup(self.name or "").meta.get("options", ())
        for option, is_given in given.items():
            if is_given and option not in takes:
                users = [e.name for e in MODELS if option in e.meta.get("options", ())]
                raise ConfigError("--" + option.replace("_", "-"), f"does not apply to --model {self.name} "
                                  f"(models that take it: {', '.join(users)})")

    def architecture(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded into this model (initialisation does not matter)."""
        return {"depth": self.depth, "activation": self.activation, "dropout": self.dropout,
                "batch_norm": self.batch_norm}


@dataclass(frozen=True)
class ClassifyLossConfig(LossConfig):
    name: str = CLASSIFY_DEFAULTS["loss"]
    label_smoothing: float = 0.0
    class_weights: Optional[str] = None  # "balanced" or a comma list
    gamma: float = 2.0

    def __post_init__(self) -> None:
        check_finite("--label-smoothing", self.label_smoothing)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("--label-smoothing", f"must be in [0, 1) (got {self.label_smoothing:g})")
        if self.label_smoothing and self.name != "cross-entropy":
            raise ConfigError("--label-smoothing", f"applies to cross-entropy only (got --loss {self.name})")
        check_non_negative("--gamma", self.gamma)
        if self.class_weights is not None and self.class_weights != "balanced":
            weights = parse_floats("--class-weights", self.class_weights) or ()
            if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
                raise ConfigError("--class-weights", "weights must be >= 0 with at least one > 0")
        if self.class_weights is not None and self.name == "mse":
            raise ConfigError("--class-weights", "does not apply to --loss mse")
        if self.class_weights is not None and is_import_path(self.name):
            raise ConfigError("--class-weights", "does not apply to an import-path loss (it is built with no "
                              "arguments); weight the classes inside it")


@dataclass(frozen=True)
class ClassifyConfig:
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: ClassifyLossConfig = field(default_factory=ClassifyLossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name=CLASSIFY_DEFAULTS["optim"]))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=None,
                                                                   batch_size=CLASSIFY_DEFAULTS["batch_size"]))
    gates: GateConfig = field(default_factory=GateConfig)
    patience: Optional[int] = None
    save: Optional[str] = None
    resume: Optional[str] = None
    out: Optional[str] = None
    tensorboard: Optional[str] = None  # folder for TensorBoard event files
    plot: Optional[bool] = None  # curves in the terminal report (None: in a terminal, not with --json/--quiet)

    def __post_init__(self) -> None:
        check_task(self.loss.name, "classification")
        if self.patience is not None and self.patience < 1:
            raise ConfigError("--patience", f"must be a positive number of epochs (got {self.patience})")
        if self.resume is not None and not Path(self.resume).is_file():
            raise ConfigError("--resume", f"no such checkpoint file: {self.resume}")
        check_file_target("--save", self.save)
        if self.resume is not None and (self.train.schedule.name != "none" or self.train.schedule.warmup):
            raise ConfigError("--schedule", "a resumed run cannot continue a schedule yet: train without "
                              "--resume, or without --schedule/--warmup")

    def resolved(self) -> "ClassifyConfig":
        """The dataset's default epochs and model, its data folder, and the optimizer's default rate for
        classification, where the user gave none."""
        entry = DATASETS.lookup(self.data.dataset)
        train, model, data = self.train, self.model, self.data.resolved()
        if train.epochs is None:
            train = replace(train, epochs=entry.meta["default_epochs"])
        if model.name is None:
            model = replace(model, name=entry.meta["default_model"])
        return replace(self, train=train, model=model, data=data,
                       optim=self.optim.for_task("classification", entry.meta.get("default_lr")))

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        return self.train.epochs or 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RunConfig = Union[RegressConfig, ClassifyConfig]  # the one-run settings a many-run command repeats


def log_grid(low: float, high: float, per_decade: int) -> tuple[float, ...]:
    """Log-spaced points from low to high inclusive, `per_decade` per factor of ten (rounded to 3 digits)."""
    n = int(round(math.log10(high / low) * per_decade)) + 1
    return tuple(float(f"{low * (high / low) ** (i / (n - 1)):.3g}") for i in range(n)) if n > 1 else (low,)


def parse_grid(option: str, text: str) -> tuple[float, ...]:
    """'MIN:MAX:PER_DECADE' (log-spaced) or a comma list of positive rates."""
    if ":" in text:
        parts = text.split(":")
        try:
            low, high, per = float(parts[0]), float(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise ConfigError(option, f"expected MIN:MAX:PER_DECADE, e.g. 1e-4:1:3 (got {text!r})") from None
        if len(parts) != 3 or not (0 < low < high) or per < 1 or not math.isfinite(high):
            raise ConfigError(option, f"needs 0 < MIN < MAX and PER_DECADE >= 1 (got {text!r})")
        return log_grid(low, high, per)
    values = parse_floats(option, text) or ()
    if not values or any(v <= 0 for v in values):
        raise ConfigError(option, f"learning rates must be > 0 (got {text!r})")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class CompareConfig:
    """Several optimizers on one problem (`run` holds the task's data, model, loss and training settings)."""

    run: RunConfig
    optims: tuple[str, ...] = ("sgd", "momentum", "adam", "rmsprop")
    lr: Optional[float] = None
    lr_for: tuple[tuple[str, float], ...] = ()
    seeds: int = 5
    tune: bool = False
    tune_grid: tuple[float, ...] = field(default_factory=lambda: log_grid(1e-4, 1.0, 3))
    target: Optional[float] = None  # regression: a loss; classification: a validation accuracy
    vectorize: bool = True  # stack trials that differ only in learning rate and seed
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    out: Optional[str] = None
    tensorboard: Optional[str] = None  # folder for TensorBoard event files
    plot: Optional[bool] = None  # curves in the terminal report (None: in a terminal, not with --json/--quiet)

    def __post_init__(self) -> None:
        if not self.optims:
            raise ConfigError("--optims", "give at least one optimizer, e.g. sgd,adam")
        for name in self.optims:
            OPTIMIZERS.lookup(name)  # unknown names list the choices
        if len(set(self.optims)) != len(self.optims):
            raise ConfigError("--optims", f"lists an optimizer twice: {','.join(self.optims)}")
        check_positive("--lr", self.lr)
        for name, value in self.lr_for:
            if name not in self.optims:
                raise ConfigError("--lr-for", f"{name!r} is not among --optims {','.join(self.optims)}")
            check_positive("--lr-for", value)
        if self.seeds < 1:
            raise ConfigError("--seeds", f"must be at least 1 (got {self.seeds})")
        runs = self.seeds * len(self.optims) * (1 + (len(self.tune_grid) if self.tune else 0))
        check_memory("--seeds", runs * (self.run.train.epochs or 100) * RECORD_BYTES, f"{runs:,} runs' records")
        check_target(self.task, self.target)

    @property
    def task(self) -> str:
        return "classification" if isinstance(self.run, ClassifyConfig) else "regression"

    def resolved(self) -> "CompareConfig":
        return replace(self, run=self.run.resolved())

    def lr_of(self, name: str) -> tuple[float, str]:
        """The learning rate an optimizer gets before any tuning, and where it came from."""
        given = dict(self.lr_for)
        if name in given:
            return given[name], "--lr-for"
        if self.lr is not None:
            return self.lr, "--lr"
        if isinstance(self.run, ClassifyConfig):
            rates = DATASETS.lookup(self.run.data.dataset).meta.get("default_lr") or {}
            if name in rates:
                return rates[name], f"{self.run.data.dataset} default"
        return default_lr(name, self.task), "default"

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        rates = 1 + (len(self.tune_grid) if self.tune else 0)
        return self.seeds * len(self.optims) * rates * (self.run.train.epochs or 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task"] = self.task
        return d


def parse_lr_for(values: Optional[list[str]]) -> tuple[tuple[str, float], ...]:
    """'adam=0.01' items, repeatable or comma-separated."""
    pairs: list[tuple[str, float]] = []
    for value in values or []:
        for item in value.split(","):
            name, sep, rate = item.partition("=")
            try:
                lr = float(rate)
            except ValueError:
                lr = math.nan
            if not sep or not name.strip() or not math.isfinite(lr):
                raise ConfigError("--lr-for", f"expected OPTIMIZER=RATE, e.g. adam=0.01 (got {item!r})")
            if any(name.strip() == seen for seen, _ in pairs):
                raise ConfigError("--lr-for", f"gives {name.strip()!r} twice; give each optimizer one rate")
            pairs.append((name.strip(), lr))
    return tuple(pairs)


@dataclass(frozen=True)
class SweepConfig:
    """`lr-sweep`: a learning-rate grid of short runs, or (range_test) one run with a growing rate."""

    run: RunConfig  # task, data, model, loss, optimizer (its lr is swept)
    range_test: bool = False
    min_lr: Optional[float] = None  # grid: 1e-4; range test: 1e-7
    max_lr: Optional[float] = None  # grid: 1; range test: 10
    num: int = 13
    lrs: Optional[tuple[float, ...]] = None
    seeds: int = 1
    mode: str = "exp"  # range test schedule: exp or linear
    steps: int = 100
    smoothing: float = 0.98
    diverge_factor: float = 4.0  # range test stops when the smoothed loss exceeds this times the best
    target: Optional[float] = None
    vectorize: bool = True
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    out: Optional[str] = None
    tensorboard: Optional[str] = None  # folder for TensorBoard event files
    plot: Optional[bool] = None  # curves in the terminal report (None: in a terminal, not with --json/--quiet)

    def __post_init__(self) -> None:
        low, high = self.lr_range
        check_positive("--min-lr", low)
        check_positive("--max-lr", high)
        if low >= high:
            raise ConfigError("--min-lr", f"must be below --max-lr (got {low:g} >= {high:g})")
        if self.lrs is not None:
            if self.range_test:
                raise ConfigError("--lrs", "gives a grid; the range test takes --min-lr, --max-lr and --steps")
            if len(self.lrs) < 2 or any(not math.isfinite(v) or v <= 0 for v in self.lrs):
                raise ConfigError("--lrs", "needs at least two positive learning rates")
        if self.num < 2:
            raise ConfigError("--num", f"must be at least 2 (got {self.num})")
        if self.steps < 10:
            raise ConfigError("--steps", f"must be at least 10 (got {self.steps})")
        check_memory("--steps", self.steps * self.seeds * 4 * 32, f"a range test of {self.steps:,} steps")
        if not self.range_test:
            rates = len(set(self.lrs)) if self.lrs else self.num
            check_memory("--seeds", self.seeds * rates * (self.run.train.epochs or 100) * RECORD_BYTES,
                         f"{self.seeds * rates:,} runs' records")
        if self.mode not in ("exp", "linear"):
            raise ConfigError("--mode", f"unknown schedule {self.mode!r}; choose from: exp, linear")
        if self.seeds < 1:
            raise ConfigError("--seeds", f"must be at least 1 (got {self.seeds})")
        check_target(self.task, self.target)

    @property
    def lr_range(self) -> tuple[float, float]:
        """(min, max) rate: as given, else 1e-4..1 for a grid and 1e-7..10 for the range test."""
        low = self.min_lr if self.min_lr is not None else (1e-7 if self.range_test else 1e-4)
        high = self.max_lr if self.max_lr is not None else (10.0 if self.range_test else 1.0)
        return float(low), float(high)

    def resolved(self) -> "SweepConfig":
        low, high = self.lr_range
        return replace(self, run=self.run.resolved(), min_lr=low, max_lr=high)

    @property
    def task(self) -> str:
        return "classification" if isinstance(self.run, ClassifyConfig) else "regression"

    def grid(self) -> tuple[float, ...]:
        if self.lrs is not None:
            return tuple(sorted(set(self.lrs)))
        low, high = self.lr_range
        return tuple(low * (high / low) ** (i / (self.num - 1)) for i in range(self.num))

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        return self.seeds * (self.steps if self.range_test else len(self.grid()) * (self.run.train.epochs or 0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task"] = self.task
        return d


LOSS_RANKINGS = {"regression": ("truth_distance", "heldout_medae", "heldout_mse", "heldout_mae"),
                 "classification": ("macro_f1", "accuracy", "minority_recall", "nll", "ece")}


@dataclass(frozen=True)
class CompareLossesConfig:
    """Several losses on one problem: same initial weights, batch order and optimizer; ranked by a measure
    that does not depend on the loss being trained."""

    run: RunConfig
    losses: tuple[str, ...] = ("mse", "l1", "huber", "smooth-l1")
    seeds: int = 5
    outliers: Optional[float] = None  # regression: fraction of training targets shifted (None: 0.1 on synthetic data)
    outlier_shift: float = 20.0
    rank_by: Optional[str] = None  # None: truth_distance (heldout_medae when the truth is unknown) or macro_f1
    vectorize: bool = True
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    out: Optional[str] = None
    tensorboard: Optional[str] = None  # folder for TensorBoard event files
    plot: Optional[bool] = None  # curves in the terminal report (None: in a terminal, not with --json/--quiet)

    def __post_init__(self) -> None:
        if not self.losses:
            raise ConfigError("--losses", "give at least one loss, e.g. mse,l1")
        if len(set(self.losses)) != len(self.losses):
            raise ConfigError("--losses", f"lists a loss twice: {','.join(self.losses)}")
        for name in self.losses:
            try:
                check_task(name, self.task)
            except ConfigError as exc:
                raise ConfigError("--losses", exc.message) from None
        if self.seeds < 1:
            raise ConfigError("--seeds", f"must be at least 1 (got {self.seeds})")
        check_finite("--outliers", self.outliers)
        if self.outliers is not None and not 0 <= self.outliers < 0.5:
            raise ConfigError("--outliers", f"is the fraction of targets shifted, in [0, 0.5) (got {self.outliers:g})")
        check_finite("--outlier-shift", self.outlier_shift)
        if self.rank_by is not None and self.rank_by not in LOSS_RANKINGS[self.task]:
            raise ConfigError("--rank-by", f"unknown measure {self.rank_by!r} for {self.task}; choose from: "
                              f"{', '.join(LOSS_RANKINGS[self.task])}")
        runs = self.seeds * len(self.losses)
        check_memory("--seeds", runs * (self.run.train.epochs or 100) * RECORD_BYTES, f"{runs:,} runs' records")

    @property
    def task(self) -> str:
        return "classification" if isinstance(self.run, ClassifyConfig) else "regression"

    def loss_config(self, name: str) -> LossConfig:
        """The run's loss settings (--delta, --gamma) under another loss name."""
        if isinstance(self.run, ClassifyConfig):
            return ClassifyLossConfig(name=name, gamma=self.run.loss.gamma, check=self.run.loss.check)
        return LossConfig(name=name, delta=self.run.loss.delta, check=self.run.loss.check)

    def resolved(self) -> "CompareLossesConfig":
        """Outliers are planted in the synthetic tutorial data only, unless --outliers is given."""
        run = self.run.resolved()
        outliers = self.outliers
        if outliers is None:
            synthetic = isinstance(run, RegressConfig) and run.data.csv is None and run.data.dataset == "synthetic"
            outliers = 0.1 if synthetic else 0.0
        return replace(self, run=run, outliers=outliers)

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        return self.seeds * len(self.losses) * (self.run.train.epochs or 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task"] = self.task
        return d
