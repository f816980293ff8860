"""The language-model config (`losslab lm`, `--task lm`): the text and its tokenizer, the model's sizes, the
next-token loss, sampling, and the loop (an epoch is --eval-every optimizer steps, each on --batch-size random
windows of --block-size tokens)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Optional

from losslab.components.datasets import is_user_dataset
from losslab.components.losses import check_task
from losslab.components.models import is_user_model
from losslab.config.checks import Resolvable, check_finite, check_memory
from losslab.config.files import check_file_target
from losslab.config.parts import LM_DEFAULTS, GateConfig, LossConfig, OptimConfig, TrainConfig
from losslab.errors import ConfigError

LM_DATASETS = ("shakespeare",)  # embedded (components.text)
TOKENIZERS = ("char", "byte", "gpt2")  # or a FILE.tiktoken vocabulary


def check_keys(dataset: str, input_key: Optional[str], target_key: Optional[str] = None) -> None:
    """--input-key and --target-key name the keys of a user's dataset's dict items: nothing else has them."""
    for option, key in (("--input-key", input_key), ("--target-key", target_key)):
        if key is not None and not is_user_dataset(dataset):
            raise ConfigError(option, f"names a key of the dict items of your dataset (--dataset "
                              f"package.module:NAME); {dataset} has none")
        if key is not None and not key:
            raise ConfigError(option, "is empty")


@dataclass(frozen=True)
class LMDataConfig:
    """The text (the embedded tiny Shakespeare, a user's UTF-8 file, or a user's token dataset), its tokenizer,
    and how it is cut into windows and evaluated."""

    dataset: str = "shakespeare"  # or a user's token dataset: an import path package.module:NAME
    text: Optional[str] = None  # --data FILE.txt
    tokenizer: str = "char"
    block_size: int = 64
    eval_every: int = 100  # optimizer steps per epoch: one evaluation each
    eval_batches: int = 20  # batches of fixed validation windows each evaluation averages
    input_key: Optional[str] = None  # a token dataset's dict items: the ids' key (None: input_ids, ids, tokens)

    def __post_init__(self) -> None:
        if self.dataset not in LM_DATASETS and not is_user_model(self.dataset):
            raise ConfigError("--dataset", f"unknown text {self.dataset!r} for --task lm; choose from: "
                              f"{', '.join(LM_DATASETS)} (or --data FILE.txt, or your own token dataset as an import "
                              "path package.module:NAME)")
        if self.tokenizer not in TOKENIZERS and not self.tokenizer.endswith(".tiktoken"):
            raise ConfigError("--tokenizer", f"unknown tokenizer {self.tokenizer!r}; choose from: "
                              f"{', '.join(TOKENIZERS)} or a FILE.tiktoken vocabulary")
        check_keys(self.dataset, self.input_key)
        if self.text is not None and not Path(self.text).expanduser().is_file():
            raise ConfigError("--data", f"no such text file: {self.text}")
        for option, value, top in (("--block-size", self.block_size, 65536), ("--eval-every", self.eval_every, 10**7),
                                   ("--eval-batches", self.eval_batches, 10**5)):
            if not 1 <= value <= top:
                raise ConfigError(option, f"must be from 1 to {top:,} (got {value})")


@dataclass(frozen=True)
class LMModelConfig:
    """A built-in language model (components.lm_models) and its sizes, or a user's model by import path."""

    name: str = "gpt"
    layers: int = 4
    heads: int = 4
    embed: int = 128
    hidden: int = 128  # rnn, gru, lstm
    dropout: float = 0.0

    def __post_init__(self) -> None:
        from losslab.components.lm_models import LM_MODELS, LMShape

        if not is_user_model(self.name):
            LM_MODELS.lookup(self.name)
        LMShape(vocab=1, embed=self.embed, heads=self.heads, layers=self.layers, hidden=self.hidden,
                dropout=self.dropout)  # (its checks: --heads divides --embed, sizes, dropout)
        width = max(self.embed, self.hidden)
        check_memory("--embed" if self.embed >= self.hidden else "--hidden", 16 * 12 * self.layers * width ** 2,
                     f"{self.layers} layers of width {width:,}")


@dataclass(frozen=True)
class LMLossConfig(LossConfig):
    name: str = LM_DEFAULTS["loss"]
    label_smoothing: float = 0.0
    gamma: float = 2.0  # focal
    z_loss: float = 0.0  # + z_loss · mean(logsumexp(logits)²) (PaLM's auxiliary loss): keeps the logits' scale small

    def __post_init__(self) -> None:
        check_task(self.name, "language-model")
        check_finite("--z-loss", self.z_loss)
        if not 0 <= self.z_loss <= 1:
            raise ConfigError("--z-loss", f"must be from 0 to 1 (PaLM used 1e-4; got {self.z_loss:g})")
        check_finite("--label-smoothing", self.label_smoothing)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("--label-smoothing", f"must be in [0, 1) (got {self.label_smoothing:g})")
        if self.label_smoothing and self.name != "cross-entropy":
            raise ConfigError("--label-smoothing", f"applies to cross-entropy only (got --loss {self.name})")


@dataclass(frozen=True)
class SampleConfig:
    """The text generated after training: `tokens` new tokens after `prompt`."""

    tokens: int = 300
    temperature: float = 0.8
    top_k: Optional[int] = None
    prompt: Optional[str] = None  # None: a new line where the vocabulary has one, else the validation's first token

    def __post_init__(self) -> None:
        if not 0 <= self.tokens <= 100_000:
            raise ConfigError("--sample", f"must be from 0 (no sample) to 100,000 tokens (got {self.tokens})")
        check_finite("--temperature", self.temperature)
        if self.temperature < 0:
            raise ConfigError("--temperature", f"must be 0 (greedy) or more (got {self.temperature:g})")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("--top-k", f"must be at least 1 (got {self.top_k})")


def lm_train(**given: Any) -> TrainConfig:
    """The loop of `losslab lm` (LM_DEFAULTS)."""
    from losslab.config.parts import ScheduleConfig

    return TrainConfig(epochs=LM_DEFAULTS["epochs"], batch_size=LM_DEFAULTS["batch_size"],
                       clip_grad_norm=LM_DEFAULTS["clip_grad_norm"],
                       schedule=ScheduleConfig(LM_DEFAULTS["schedule"], warmup=LM_DEFAULTS["warmup"]), **given)


@dataclass(frozen=True)
class LMConfig(Resolvable):
    task: ClassVar[str] = "language-model"  # (components.tasks)

    data: LMDataConfig = field(default_factory=LMDataConfig)
    model: LMModelConfig = field(default_factory=LMModelConfig)
    loss: LMLossConfig = field(default_factory=LMLossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name=LM_DEFAULTS["optim"]))
    train: TrainConfig = field(default_factory=lm_train)
    sample: SampleConfig = field(default_factory=SampleConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    patience: Optional[int] = None
    save: Optional[str] = None
    resume: Optional[str] = None  # a checkpoint of --save to go on from (--epochs is the total)
    out: Optional[str] = None
    tensorboard: Optional[str] = None
    plot: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.train.batch_size is None:
            raise ConfigError("--batch-size", "a language model trains on batches of windows: give a batch size "
                              f"(default {LM_DEFAULTS['batch_size']})")
        if self.patience is not None and self.patience < 1:
            raise ConfigError("--patience", f"must be a positive number of epochs (got {self.patience})")
        check_file_target("--save", self.save)
        if self.resume is not None and not Path(self.resume).expanduser().is_file():
            raise ConfigError("--resume", f"no such checkpoint file: {self.resume}")
        if self.data.dataset != "shakespeare" and self.data.text is not None:
            raise ConfigError("--dataset", f"--data reads your text; --dataset {self.data.dataset} would be ignored")

    def _resolve(self) -> "LMConfig":
        return replace(self, optim=self.optim.for_task("language-model"))

    @property
    def records(self) -> int:
        return self.train.epochs or 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
