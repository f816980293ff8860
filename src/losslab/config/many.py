"""The many-run configs: one `RunConfig` repeated over optimizers (`CompareConfig`), learning rates (`SweepConfig`)
or losses (`CompareLossesConfig`); the fields they share live in `ManyRuns`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from losslab.components.losses import check_task
from losslab.components.tasks import TASKS
from losslab.config.checks import RECORD_BYTES, Resolvable, check_finite, check_memory, check_positive, check_target
from losslab.config.parts import ExecutorConfig, GateConfig, LossConfig, OptimConfig, rate_for
from losslab.config.single import ClassifyConfig, ClassifyLossConfig, RegressConfig, RunConfig
from losslab.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ManyRuns(Resolvable):
    """What every many-run command has: the one-run settings it repeats (`run`: task, data, model, loss, optimizer
    and training), how many seeds, whether trials may stack, where they train, its CI gates and its outputs."""

    run: RunConfig
    seeds: int = 5
    vectorize: bool = True  # stack trials that can train as one batched computation
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    out: Optional[str] = None
    tensorboard: Optional[str] = None  # folder for TensorBoard event files
    plot: Optional[bool] = None  # curves in the terminal report (None: in a terminal, not with --json/--quiet)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError("--seeds", f"must be at least 1 (got {self.seeds})")

    @property
    def task(self) -> str:
        return self.run.task

    def _resolve(self) -> Any:
        """The one-run settings resolved (a command with more to resolve overrides this)."""
        return replace(self, run=self.run.resolved())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task"] = self.task
        return d


def halving_rungs(epochs: int, min_epochs: Optional[int], rate: int) -> list[int]:
    """The epochs of each rung of successive halving: --min-epochs × rate^k while the next rung (rate× more) still
    fits in --epochs, then --epochs (--min-epochs default: --epochs / rate³, at least 1)."""
    first = min_epochs or max(1, round(epochs / rate ** 3))
    out, r = [first], first
    while r * rate * rate <= epochs:
        r *= rate
        out.append(r)
    return out + [epochs]


def check_halving(halving: bool, min_epochs: Optional[int], rate: int, epochs: Optional[int],
                  needs: Optional[str] = None) -> None:
    """--halving's options: the rate from 2, --min-epochs below --epochs, neither without --halving."""
    if not halving:
        if min_epochs is not None or rate != 3:
            raise ConfigError("--min-epochs" if min_epochs is not None else "--halving-rate",
                              "applies with --halving only")
        return
    if needs is not None:
        raise ConfigError("--halving", needs)
    if not 2 <= rate <= 100:
        raise ConfigError("--halving-rate", f"must be from 2 to 100 (got {rate})")
    if min_epochs is not None and epochs is not None and not 1 <= min_epochs < epochs:
        raise ConfigError("--min-epochs", f"must be from 1 to below --epochs {epochs} (got {min_epochs})")


MAX_BATCH_SIZES = 32  # a batch-size sweep's sizes: powers of two from 1 to 2**31 at most
MAX_RATES = 1000  # a grid's rates: 13 to 50 are usual; 100,000 runs would take hours and say no more


# what compare-optimizers may rank by (lower is better, but accuracy)
BUDGETS = ("epochs", "gradient-evaluations")  # compare-optimizers --budget
TUNE_RATES = 13  # --tune's trials per optimizer when --tune-grid is not given
OPTIMIZER_RANKINGS = {"regression": ("final_loss", "best_loss", "epochs_to_target", "optimum_distance"),
                      "classification": ("final_loss", "best_loss", "epochs_to_target", "accuracy"),
                      "language-model": ("final_loss", "best_loss", "epochs_to_target", "accuracy")}


@dataclass(frozen=True, kw_only=True)
class CompareConfig(ManyRuns):
    """Several optimizers on one problem (`run` holds the task's data, model, loss and training settings)."""

    optims: tuple[str, ...] = ("sgd", "momentum", "adam", "rmsprop")
    lr: Optional[float] = None
    lr_for: tuple[tuple[str, float], ...] = ()
    optim_args: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # --optim-arg, per optimizer
    tune: bool = False
    tune_grid: Optional[tuple[float, ...]] = None  # --tune's rates for every optimizer; None: centred on each's own

    halving: bool = False  # tuning by successive halving: each optimizer's best 1/halving_rate rates continue
    min_epochs: Optional[int] = None
    halving_rate: int = 3
    target: Optional[float] = None  # regression: a loss; classification: a validation accuracy
    rank_by: str = "final_loss"  # what ranks the optimizers (OPTIMIZER_RANKINGS)
    budget: str = "epochs"  # BUDGETS: every run trains the epochs, or spends the same forward-backward passes

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.budget not in BUDGETS:
            raise ConfigError("--budget", f"unknown budget {self.budget!r}; choose from: {', '.join(BUDGETS)}")
        check_halving(self.halving, self.min_epochs, self.halving_rate, self.run.train.epochs,
                      None if self.tune else "tunes the rates (--tune): it applies with --tune")
        if self.rank_by not in OPTIMIZER_RANKINGS[self.task]:
            raise ConfigError("--rank-by", f"unknown measure {self.rank_by!r} for {self.task}; choose from: "
                              f"{', '.join(OPTIMIZER_RANKINGS[self.task])}")
        if not self.optims:
            raise ConfigError("--optims", "give at least one optimizer, e.g. sgd,adam")
        if len(set(self.optims)) != len(self.optims):
            raise ConfigError("--optims", f"lists an optimizer twice: {','.join(self.optims)}")
        for name in self.optims:  # unknown names list the choices; arguments are checked against each class
            self.optim_for(name, None)
        check_positive("--lr", self.lr)
        for name, value in self.lr_for:
            if name not in self.optims:
                raise ConfigError("--lr-for", f"{name!r} is not among --optims {','.join(self.optims)}")
            check_positive("--lr-for", value)
        runs = self.seeds * len(self.optims) * (1 + (TUNE_RATES if self.tune else 0))
        check_memory("--seeds", runs * (self.run.train.epochs or 100) * RECORD_BYTES, f"{runs:,} runs' records")
        check_target(self.task, self.target)


    def _resolve(self) -> "CompareConfig":
        return replace(self, run=self.run.resolved())

    def grid_for(self, name: str) -> tuple[float, ...]:
        """The rates --tune trains for one optimizer: --tune-grid's, or 13 log-spaced over four decades centred on
        the optimizer's own default rate (sgd 0.1: 0.001 … 10; lion 0.003: 3e-05 … 0.3), so every optimizer gets
        the same number of trials around where its family trains."""
        if self.tune_grid is not None:
            return self.tune_grid
        centre = self.lr_of(name)[0]
        half = TUNE_RATES // 2
        return tuple(float(f"{centre * 10 ** (i / 3):.3g}") for i in range(-half, half + 1))

    def optim_for(self, name: str, lr: Optional[float]) -> OptimConfig:
        """One optimizer's settings: the shared ones, its rate and its own --optim-arg arguments."""
        return replace(self.run.optim, name=name, lr=lr, args=dict(self.optim_args).get(name, ()))

    def lr_of(self, name: str) -> tuple[float, str]:
        """The learning rate an optimizer gets before any tuning, and where it came from (`rate_for`)."""
        given = dict(self.lr_for)
        if name in given:
            return given[name], "--lr-for"
        dataset = self.run.data.dataset if isinstance(self.run, ClassifyConfig) else None
        return rate_for(name, self.task, dataset, self.lr)

    def to_dict(self) -> dict[str, Any]:
        """As every config; `run.optim` keeps only the settings every optimizer shares (its name and rate are
        not what trained: `optims` and each optimizer's rate in the results are)."""
        d = super().to_dict()
        for key in ("name", "lr"):
            d["run"]["optim"].pop(key, None)
        return d

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        rates = 1 + (TUNE_RATES if self.tune else 0)
        return self.seeds * len(self.optims) * rates * (self.run.train.epochs or 0)



@dataclass(frozen=True, kw_only=True)
class SweepConfig(ManyRuns):
    """`lr-sweep`: a learning-rate grid of short runs, or (range_test) one run with a growing rate."""

    range_test: bool = False
    min_lr: Optional[float] = None  # grid: 1e-4; range test: 1e-7
    max_lr: Optional[float] = None  # grid: 1; range test: 10
    num: int = 13
    lrs: Optional[tuple[float, ...]] = None
    batch_sizes: Optional[tuple[int, ...]] = None  # the grid of rates at each of these batch sizes, in one sweep
    seeds: int = 1
    mode: str = "exp"  # range test schedule: exp or linear
    steps: int = 100
    halving: bool = False  # successive halving: after each rung the best 1/halving_rate of the rates continue
    min_epochs: Optional[int] = None  # the first rung's epochs (default: --epochs / rate^3, at least 1)
    halving_rate: int = 3
    smoothing: float = 0.98
    diverge_factor: float = 4.0  # range test stops when the smoothed loss exceeds this times the best
    target: Optional[float] = None

    def __post_init__(self) -> None:
        super().__post_init__()
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
            if len(set(self.lrs)) > MAX_RATES:
                raise ConfigError("--lrs", f"gives {len(set(self.lrs)):,} rates; a grid takes at most {MAX_RATES:,} "
                                  "(--range-test sweeps the rate continuously in one run)")
        if not 2 <= self.num <= MAX_RATES:
            raise ConfigError("--num", f"must be from 2 to {MAX_RATES:,} (got {self.num:,}); --range-test sweeps the "
                              "rate continuously in one run")
        if self.steps < 10:
            raise ConfigError("--steps", f"must be at least 10 (got {self.steps})")
        check_memory("--steps", self.steps * self.seeds * 4 * 32, f"a range test of {self.steps:,} steps")
        if not self.range_test:
            rates = len(set(self.lrs)) if self.lrs else self.num
            check_memory("--seeds", self.seeds * rates * (self.run.train.epochs or 100) * RECORD_BYTES,
                         f"{self.seeds * rates:,} runs' records")
        if self.mode not in ("exp", "linear"):
            raise ConfigError("--mode", f"unknown schedule {self.mode!r}; choose from: exp, linear")
        self._check_halving()
        self._check_batch_sizes()
        check_target(self.task, self.target)

    def _check_batch_sizes(self) -> None:
        sizes = self.batch_sizes
        if sizes is None:
            return
        if self.range_test:
            raise ConfigError("--batch-sizes", "gives a grid of rates × batch sizes; the range test runs one "
                              "batch size")
        if self.halving:
            raise ConfigError("--batch-sizes", "trains the whole rate × batch-size grid; --halving ranks the rates of "
                              "one batch size: drop one of them")
        if len(set(sizes)) < 2 or any(b <= 0 for b in sizes):
            raise ConfigError("--batch-sizes", f"needs at least two different positive batch sizes (got "
                              f"{','.join(map(str, sizes))})")
        if len(set(sizes)) > MAX_BATCH_SIZES:
            raise ConfigError("--batch-sizes", f"gives {len(set(sizes))} batch sizes; a sweep takes at most "
                              f"{MAX_BATCH_SIZES}")
        rates = len(set(self.lrs)) if self.lrs else self.num
        check_memory("--batch-sizes", self.seeds * rates * len(set(sizes)) * (self.run.train.epochs or 100)
                     * RECORD_BYTES, f"{self.seeds * rates * len(set(sizes)):,} runs' records")

    def sizes(self) -> tuple[Optional[int], ...]:
        """The batch sizes the grid trains at: those of --batch-sizes (ascending), else the run's own."""
        return tuple(sorted(set(self.batch_sizes))) if self.batch_sizes else (self.run.train.batch_size,)
    # (with --batch-sizes the run's own --batch-size is not used: each run overrides it)

    @property
    def lr_range(self) -> tuple[float, float]:
        """(min, max) rate: as given, else 1e-4..1 for a grid and 1e-7..10 for the range test."""
        low = self.min_lr if self.min_lr is not None else (1e-7 if self.range_test else 1e-4)
        high = self.max_lr if self.max_lr is not None else (10.0 if self.range_test else 1.0)
        return float(low), float(high)

    def _resolve(self) -> "SweepConfig":
        low, high = self.lr_range
        return replace(self, run=self.run.resolved(), min_lr=low, max_lr=high)

    def _check_halving(self) -> None:
        check_halving(self.halving, self.min_epochs, self.halving_rate, self.run.train.epochs,
                      "applies to a grid (without --range-test)" if self.range_test else None)

    def rungs(self, epochs: int) -> list[int]:
        return halving_rungs(epochs, self.min_epochs, self.halving_rate)


    def grid(self) -> tuple[float, ...]:
        if self.lrs is not None:
            return tuple(sorted(set(self.lrs)))
        low, high = self.lr_range
        return tuple(low * (high / low) ** (i / (self.num - 1)) for i in range(self.num))

    @property
    def records(self) -> int:
        """Epoch records the command will write (what --out and --tensorboard must have room for)."""
        return self.seeds * (self.steps if self.range_test else
                             len(self.grid()) * len(self.sizes()) * (self.run.train.epochs or 0))



LOSS_RANKINGS = {t.name: t.rankings for t in TASKS}  # (components.tasks)


@dataclass(frozen=True, kw_only=True)
class CompareLossesConfig(ManyRuns):
    """Several losses on one problem: same initial weights, batch order and optimizer; ranked by a measure
    that does not depend on the loss being trained."""

    losses: tuple[str, ...] = ("mse", "l1", "huber", "smooth-l1")
    outliers: Optional[float] = None  # regression: fraction of training targets shifted (None: 0.1 on synthetic data)
    outlier_shift: float = 20.0
    rank_by: Optional[str] = None  # None: truth_distance (heldout_medae when the truth is unknown) or macro_f1
    halving: bool = False  # successive halving: after each rung the best 1/halving_rate of the losses continue
    min_epochs: Optional[int] = None
    halving_rate: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_halving(self.halving, self.min_epochs, self.halving_rate, self.run.train.epochs)
        if not self.losses:
            raise ConfigError("--losses", "give at least one loss, e.g. mse,l1")
        if len(set(self.losses)) != len(self.losses):
            raise ConfigError("--losses", f"lists a loss twice: {','.join(self.losses)}")
        for name in self.losses:
            try:
                check_task(name, self.task)
            except ConfigError as exc:
                raise ConfigError("--losses", exc.message) from None
        check_finite("--outliers", self.outliers)
        if self.outliers is not None and not 0 <= self.outliers < 0.5:
            raise ConfigError("--outliers", f"is the fraction of targets shifted, in [0, 0.5) (got {self.outliers:g})")
        check_finite("--outlier-shift", self.outlier_shift)
        if self.rank_by is not None and self.rank_by not in LOSS_RANKINGS[self.task]:
            raise ConfigError("--rank-by", f"unknown measure {self.rank_by!r} for {self.task}; choose from: "
                              f"{', '.join(LOSS_RANKINGS[self.task])}")
        runs = self.seeds * len(self.losses)
        check_memory("--seeds", runs * (self.run.train.epochs or 100) * RECORD_BYTES, f"{runs:,} runs' records")


    def loss_config(self, name: str) -> LossConfig:
        """The run's loss settings (--delta, --gamma) under another loss name."""
        if isinstance(self.run, ClassifyConfig):
            return ClassifyLossConfig(name=name, gamma=self.run.loss.gamma, check=self.run.loss.check)
        return LossConfig(name=name, delta=self.run.loss.delta, check=self.run.loss.check)

    def _resolve(self) -> "CompareLossesConfig":
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



LANDSCAPE_MODES = ("auto", "line", "plane")
LANDSCAPE_DIRECTIONS = ("random", "pca")


@dataclass(frozen=True, kw_only=True)
class LandscapeConfig(Resolvable):
    """`landscape`: the loss around the weights one run (or each of `optims`, from one start) trained to."""

    run: RunConfig
    optims: tuple[str, ...] = ()  # paths of these optimizers on one surface (default: the run's --optim)
    optim_args: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # --optim-arg, per optimizer
    mode: str = "auto"  # auto: the exact surface for two-parameter models, else the plane; line; plane
    grid: int = 41  # points per axis
    span: float = 1.0  # plane: alpha and beta from -span to span; line: t from -span/4 to 1 + span/4
    directions: str = "random"  # plane: filter-normalised random directions, or the path's principal ones
    between: Optional[tuple[str, str]] = None  # the line between two saved runs (--save files) instead of training
    out: Optional[str] = None
    plot: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.mode not in LANDSCAPE_MODES:
            raise ConfigError("--line", f"unknown mode {self.mode!r}")
        if not 3 <= self.grid <= 401:
            raise ConfigError("--grid", f"must be from 3 to 401 points per axis (got {self.grid})")
        if not (math.isfinite(self.span) and 0 < self.span <= 1000):
            raise ConfigError("--range", f"must be a positive number up to 1000 (got {self.span})")
        if self.directions not in LANDSCAPE_DIRECTIONS:
            raise ConfigError("--directions", f"unknown {self.directions!r}; choose from: "
                              f"{', '.join(LANDSCAPE_DIRECTIONS)}")
        if self.directions == "pca" and self.mode == "line":
            raise ConfigError("--directions", "applies to the plane (--plane), not to --line")
        if len(set(self.optims)) != len(self.optims):
            raise ConfigError("--optims", "names an optimizer twice")
        if self.between is not None and (self.mode == "plane" or self.optims or self.directions != "random"):
            raise ConfigError("--between", "draws the line between two saved runs: it does not combine with "
                              "--plane, --directions or --optims")

    @property
    def task(self) -> str:
        return self.run.task

    def _resolve(self) -> "LandscapeConfig":
        return replace(self, run=self.run.resolved())

    def optim_for(self, name: str) -> Any:
        """The optimizer settings of one path: the run's own for its --optim, that optimizer's default rate (and
        the shared hyper-parameters that apply to it) for the others of --optims."""
        args = dict(self.optim_args).get(name, ())
        if name == self.run.optim.name:
            return replace(self.run.optim, args=args) if args else self.run.optim
        dataset = self.run.data.dataset if isinstance(self.run, ClassifyConfig) else None
        return replace(self.run.optim, name=name, lr=rate_for(name, self.task, dataset)[0], momentum=None, betas=None,
                       eps=None, args=args)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task"] = self.task
        return d
