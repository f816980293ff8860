"""The single-run configs: `RegressConfig` and `ClassifyConfig` (data, model, loss, optimizer, training)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from losslab.components.datasets import dataset_meta, default_data_dir, is_user_dataset
from losslab.components.losses import check_task, is_import_path
from losslab.components.models import MODELS, is_user_model
from losslab.config.checks import (
    MAX_DATA_SEED,
    Resolvable,
    check_finite,
    check_memory,
    check_non_negative,
    check_positive,
    default_of,
)
from losslab.config.files import check_file_target
from losslab.config.lm import LMConfig, check_keys
from losslab.config.parsing import parse_floats
from losslab.config.parts import CLASSIFY_DEFAULTS, REGRESS_DEFAULTS, GateConfig, LossConfig, OptimConfig, TrainConfig
from losslab.errors import ConfigError

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
        if self.dataset not in REGRESSION_DATASETS and ":" not in self.dataset:
            raise ConfigError("--dataset", f"unknown regression dataset {self.dataset!r}; choose from: "
                              f"{', '.join(REGRESSION_DATASETS)} (or --data FILE.csv, or your own as an import path "
                              "package.module:NAME)")
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


def known_model(name: str) -> Any:
    """A registered model's entry; an unknown name is refused with the choices and the import-path form."""
    try:
        return MODELS.lookup(name)
    except ConfigError as exc:
        raise ConfigError("--model", f"{exc.message}, or your own as an import path package.module:NAME") from None


@dataclass(frozen=True)
class RegressConfig(Resolvable):
    task: ClassVar[str] = "regression"  # (components.tasks)

    data: RegressDataConfig = field(default_factory=RegressDataConfig)
    model: str = "linear"  # or a user's model: an import path package.module:NAME
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    out: Optional[str] = None
    tensorboard: Optional[str] = None  # folder for TensorBoard event files
    plot: Optional[bool] = None  # curves in the terminal report (None: in a terminal, not with --json/--quiet)
    save: Optional[str] = None  # a checkpoint file for `losslab predict`

    def __post_init__(self) -> None:
        check_task(self.loss.name, "regression")
        check_file_target("--save", self.save)
        if self.model != "linear" and not is_user_model(self.model):
            entry = known_model(self.model)
            raise ConfigError("--model", f"{entry.name!r} is a classifier; regress trains linear or your own model "
                              "(an import path package.module:NAME)")

    @property
    def linear(self) -> bool:
        """Whether the model is the linear one (whose weights are reported against the truth and the optimum)."""
        return self.model == "linear"

    def _resolve(self) -> "RegressConfig":
        """One weight per feature, and the optimizer's default rate for regression when --lr is unset."""
        data = self.data
        if len(data.true_w) != data.features:
            data = replace(data, true_w=data.true_w * data.features)
        if data.standardize is None:  # a user's table comes in its own units: areas in thousands, prices in 1e5
            data = replace(data, standardize=data.csv is not None or ":" in data.dataset)
        return replace(self, data=data, optim=self.optim.for_task("regression"))

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        return self.train.epochs or 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClassifyDataConfig(Resolvable):
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
    input_key: Optional[str] = None  # a dataset's dict items: the input's key (None: input_ids, inputs, input, x)
    target_key: Optional[str] = None  # and the label's (None: labels, label, targets, target, y)

    def __post_init__(self) -> None:
        folder = dataset_meta(self.dataset).get("folder", False)  # (an unknown name lists the choices)
        streams = folder or is_user_dataset(self.dataset)
        for option, given, where in (
                ("--val-dir", self.val_dir is not None, folder), ("--image-size", self.image_size is not None, folder),
                ("--grayscale", self.grayscale, folder), ("--memory-budget", self.memory_budget != 2 * 2**30, streams),
                ("--workers", self.workers != 2, streams)):
            if given and not where:
                also = "" if where is folder else " or a dataset import path"
                raise ConfigError(option, f"applies to --dataset imagefolder{also} only (this run uses {self.dataset})")
        check_keys(self.dataset, self.input_key, self.target_key)
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

    def _resolve(self) -> "ClassifyDataConfig":
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

        if self.name is not None and not is_user_model(self.name):
            known_model(self.name)
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
        if is_user_model(self.name):
            given["hidden"] = self.hidden != default_of(ModelConfig, "hidden")
            for option, is_given in given.items():
                if is_given:
                    raise ConfigError("--" + option.replace("_", "-"), f"applies to the built-in models; "
                                      f"{self.name} is your own model: its code sets its architecture")
            return
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
class ClassifyConfig(Resolvable):
    task: ClassVar[str] = "classification"  # (components.tasks)

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

    def _resolve(self) -> "ClassifyConfig":
        """The dataset's default epochs and model, its data folder, and the optimizer's default rate for
        classification, where the user gave none."""
        meta = dataset_meta(self.data.dataset)
        train, model, data = self.train, self.model, self.data.resolved()
        if train.epochs is None:
            train = replace(train, epochs=meta["default_epochs"])
        if model.name is None:
            model = replace(model, name=meta["default_model"])
        return replace(self, train=train, model=model, data=data,
                       optim=self.optim.for_task("classification", self.data.dataset))

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        return self.train.epochs or 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RunConfig = Union[RegressConfig, ClassifyConfig, LMConfig]  # the one-run settings a many-run command repeats
