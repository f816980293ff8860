"""The table of tasks: one record per kind of problem losslab trains — its name, its `--task` value (which is also
its single-run command), its own data, model and loss options, what its runs are compared on, the losses a
comparison tries by default and the loss-independent measures that rank them. The CLI (`--task`, the help's
sections, refusing the other task's options), the command table (a many-run command takes every task's
options), compare-losses and gate read it. A new task is its record here, its config dataclass, its problem
(`engine.problems`) and its single-run command (`commands.table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Task:
    name: str  # as results name it: "regression"
    flag: str  # its --task value and its single-run command: "regress"
    description: str  # --task's help
    options: tuple[str, ...]  # its data, model and loss options, by Python name (cli.options.OPTIONS)
    default_losses: tuple[str, ...]  # what compare-losses compares when --losses is not given
    rankings: tuple[str, ...]  # loss-independent measures compare-losses ranks by (the first: the default)
    problem: str  # "package.module:Class" of its prepared problem (engine.problems)
    heading: str = ""  # its options' --help section ("language-model options"); default its flag

    @property
    def section(self) -> str:
        return f"{self.heading or self.flag} options (--task {self.flag})"


REGRESS_DATA = ("dataset", "model", "loss", "no_check_loss", "delta", "samples", "features", "true_w", "true_b",
                "noise", "data_seed", "data", "target", "standardize")
CLASSIFY_DATA = ("dataset", "data", "target", "data_dir", "val_dir", "image_size", "grayscale", "memory_budget",
                 "workers", "download", "subset", "val_fraction", "data_seed", "classes", "samples", "features",
                 "class_sep", "imbalance", "model", "hidden", "depth", "activation", "init", "dropout", "batch_norm",
                 "loss", "no_check_loss", "label_smoothing", "class_weights", "gamma", "input_key", "target_key")
LM_DATA = ("dataset", "data", "input_key", "tokenizer", "block_size", "eval_every", "eval_batches", "model", "layers",
           "heads", "embed", "hidden", "dropout", "loss", "no_check_loss", "label_smoothing", "gamma", "z_loss",
           "sample", "temperature", "top_k", "prompt")

TASKS: tuple[Task, ...] = (
    Task("regression", "regress", "the regress data and options: a real-valued target", REGRESS_DATA,
         ("mse", "l1", "huber", "smooth-l1"), ("truth_distance", "heldout_medae", "heldout_mse", "heldout_mae"),
         "losslab.engine.problems:RegressionProblem"),
    Task("classification", "classify", "the classify dataset, model and loss options: class labels", CLASSIFY_DATA,
         ("cross-entropy", "mse", "focal", "weighted-cross-entropy"), ("macro_f1", "accuracy", "minority_recall",
                                                                       "nll", "ece"),
         "losslab.engine.problems:ClassificationProblem"),
    Task("language-model", "lm", "a next-token language model on text: the lm text, tokenizer, model and sampling "
         "options", LM_DATA, ("cross-entropy", "focal"), ("nll", "accuracy"), "losslab.engine.lm_problem:LMProblem",
         "language-model"),
)
NAMES = tuple(t.name for t in TASKS)
FLAGS = tuple(t.flag for t in TASKS)


def task(name: str, option: str = "--task") -> Task:
    """A task by its name or its --task value (case and -/_ forgiven); a one-line error naming `option`."""
    from losslab.components.registry import choice

    flag = choice(option, name, FLAGS + NAMES, "task")
    return next(t for t in TASKS if flag in (t.name, t.flag))


def only(name: str) -> Optional[Task]:
    """The one task an option belongs to alone; None for an option every task (or none) takes."""
    having = [t for t in TASKS if name in t.options]
    return having[0] if len(having) == 1 else None

