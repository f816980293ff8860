"""The table of training commands: one record per command — its name, module, options, whether it makes one run
or many, and its help — that the CLI, `--config` tables, the Python API, `gate`, `diff`, `replay` and the
output consumers all read. A new training command is its module (with `experiment` and `main`) and its row here.

Options are named by their Python names (`cli.options.OPTIONS` says how each is typed and spelled); the groups
below are the families commands share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from losslab.components.tasks import CLASSIFY_DATA, LM_DATA, REGRESS_DATA, TASKS
from losslab.config import CLASSIFY_DEFAULTS, LM_DEFAULTS, REGRESS_DEFAULTS, SweepConfig, default_of

OPTIM = ("optim", "lr", "momentum", "weight_decay", "betas", "eps", "optim_arg", "muon_rest")
SCHEDULE = ("schedule", "warmup", "step_size", "milestones", "lr_gamma", "eta_min", "peak_lr", "lr_patience",
            "lr_factor")
TRAIN = ("epochs", "batch_size", "clip_grad_norm", "clip_grad_value", *SCHEDULE, "seed", "device", "threads",
         "track_sharpness", "sharpness_samples")
EXECUTOR = ("executor", "jobs", "retries", "ray_address", "cpus_per_trial")
MANY_RUN_OUTPUT = ("json_out", "out", "quiet", "plot", "tensorboard", "config", "print_config", "expect")
OUTPUT = ("json_out", "out", "quiet", "plot", "tensorboard", "expect", "target_loss", "config", "print_config")
HALVING = ("halving", "min_epochs", "halving_rate")

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 a check (--expect) failed; 2 bad usage; 3 diverged; 4 failed or internal error; "
    "130 Ctrl-C."
)
MANY_RUN_EXIT_CODES = EXIT_CODES_HELP.replace("3 diverged; 4 failed", "3 every run diverged; 4 every run failed")


def unique(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """The names of `groups` in order, each once."""
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            seen.setdefault(name, None)
    return tuple(seen)


def both_tasks(*names: str) -> tuple[str, ...]:
    """A many-run command's options: its own, then every task's data, model and loss options and the training
    options."""
    return (*names, *unique(*(t.options for t in TASKS), TRAIN))


@dataclass(frozen=True)
class Command:
    """One training command."""

    name: str  # on the command line; its Python function is the name with _ for -
    module: str  # the module whose `experiment(cfg, json_out=, quiet=)` and `main` run it
    summary: str  # its --help text and the Python function's docstring
    options: tuple[str, ...]  # by Python name, in --help order
    many: bool  # many runs (its result lists entries of runs) or one run
    config: Optional[str] = None  # its config builder in cli.configs (None: its config class from the options)
    config_class: Optional[str] = None  # with config None: "package.module:Class", fields taken by option name
    task: Optional[str] = None  # a one-task command's task: its options' help names only what applies to it
    epilog: str = EXIT_CODES_HELP
    helps: Mapping[str, str] = field(default_factory=dict)  # option help that differs for this command
    defaults: Mapping[str, Any] = field(default_factory=dict)  # option defaults that differ for this command
    replayable: bool = True  # replay, gate and diff read and rerun its results

    @property
    def api(self) -> str:
        return self.name.replace("-", "_")


OPTIMIZER_HELPS = {"rank_by": "final_loss, best_loss, epochs_to_target, …",
                   "target_loss": "The loss epochs_to_target counts."}

COMMANDS: tuple[Command, ...] = (
    Command("regress", "losslab.commands.regress",
            "Fit linear regression (default data: y = 2x + 3 + 0.1·noise) and compare the learned w, b with the "
            "truth and the exact least-squares optimum.",
            unique(OPTIM, REGRESS_DATA, TRAIN, ("save",), OUTPUT), many=False, config="regress_config",
            task="regression", defaults=REGRESS_DEFAULTS),
    Command("classify", "losslab.commands.classify",
            "Train a classifier (logistic, MLP or CNN) on embedded data (digits, blobs) or torchvision datasets, "
            "with per-epoch validation, per-class accuracy and a confusion matrix.",
            unique(CLASSIFY_DATA, OPTIM, TRAIN, ("patience", "save", "resume"), OUTPUT), many=False,
            config="classify_config", task="classification",
            defaults={k: v for k, v in CLASSIFY_DEFAULTS.items() if k != "features"}),  # (--features: blobs 2)
    Command("lm", "losslab.commands.lm",
            "Train a next-token language model (default: a small GPT on tiny Shakespeare, characters) and report "
            "its validation loss, bits per character and perplexity beside the n-gram baselines, then a sample "
            "of generated text.",
            unique(LM_DATA, OPTIM, TRAIN, ("patience", "save", "resume"), OUTPUT), many=False, config="lm_config",
            task="language-model", defaults=LM_DEFAULTS),
    Command("compare-optimizers", "losslab.commands.compare_optimizers",
            "Train the same model from the same initial weights on the same data order with several optimizers "
            "over several seeds, and rank them by median final loss; a winner must beat the runner-up on most "
            "paired seeds.",
            ("task", "optims", "lr", "lr_for", "optim_arg", "muon_rest", "seeds", "tune", "tune_grid", "budget",
             *HALVING,
             "target_accuracy", "rank_by", "no_vectorize", *EXECUTOR, *both_tasks(), *MANY_RUN_OUTPUT, "target_loss"),
            many=True, config="compare_config", epilog=MANY_RUN_EXIT_CODES, helps=OPTIMIZER_HELPS),
    Command("compare-losses", "losslab.commands.compare_losses",
            "What each loss does to a fit: the same model, initial weights and data order trained with several "
            "losses over several seeds (regress: with seeded outliers), ranked by a measure independent of the "
            "loss trained.",
            ("task", "losses", "outliers", "outlier_shift", "rank_by", "seeds", *HALVING, "no_vectorize", *EXECUTOR,
             *OPTIM, *both_tasks(), *MANY_RUN_OUTPUT),
            many=True, config="compare_losses_config", epilog=MANY_RUN_EXIT_CODES),
    Command("lr-sweep", "losslab.commands.lr_sweep",
            "Find a good learning rate: a grid of short runs (stacked into one batched computation where "
            "possible), or with --range-test the LR range test (Smith 2015, as fastai's and Lightning's lr_find) "
            "and its suggestions.",
            ("task", "range_test", "min_lr", "max_lr", "num", "lrs", "batch_sizes", "seeds", "mode", "steps",
             *HALVING, "no_vectorize", *EXECUTOR, "target_accuracy", *OPTIM, *both_tasks(), *MANY_RUN_OUTPUT,
             "target_loss"),
            many=True, config="sweep_config", epilog=MANY_RUN_EXIT_CODES,
            defaults={"seeds": default_of(SweepConfig, "seeds")}),
    Command("landscape", "losslab.commands.landscape",
            "See the loss surface: the exact surface of a two-parameter model with each optimizer's path "
            "(--optims), or for any model the loss along the line from the initial to the final weights (--line) "
            "or on a plane through the final weights (--plane); the sharpness (top Hessian eigenvalue) against "
            "2/lr and the Hessian's trace.",
            ("task", "path_optims", "line", "plane", "between", "grid", "span", "directions", *OPTIM,
             *both_tasks(), "json_out", "out", "quiet", "plot", "config", "print_config"),
            many=True, config="landscape_config", replayable=False,
            epilog="Exit codes: 0 ok; 2 bad usage; 3 every run diverged; 4 internal error; 130 interrupted (Ctrl-C)."),
)

BY_NAME = {c.name: c for c in COMMANDS}


def replayable() -> tuple[str, ...]:
    """The commands whose results `replay`, `gate` and `diff` read and rerun."""
    return tuple(c.name for c in COMMANDS if c.replayable)


def command_of(name: str) -> Optional[Command]:
    return BY_NAME.get(name)


def is_many(name: str) -> bool:
    """Whether a command makes many runs (a training command not in the table, such as check-loss: no)."""
    entry = BY_NAME.get(name)
    return entry is not None and entry.many
