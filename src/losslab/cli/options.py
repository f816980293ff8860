"""Every CLI option, declared once; commands pick them by name and receive the parsed values as `Given`.

Commands pick options by name (`@options("lr", "epochs", ..., epochs=1000)`), so every command's options
cannot drift apart. No torch here: `--help` must stay fast.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional

import typer

from losslab.cli.experiment import TABLES
from losslab.commands.table import EXECUTOR, OPTIM, SCHEDULE
from losslab.components import tasks
from losslab.components.datasets import DATASETS
from losslab.components.lm_models import LM_MODELS
from losslab.components.losses import LOSSES
from losslab.components.models import MODELS
from losslab.components.optimizers import OPTIMIZERS
from losslab.components.schedules import SCHEDULES
from losslab.config import (
    ClassifyDataConfig,
    ClassifyLossConfig,
    CompareConfig,
    CompareLossesConfig,
    ExecutorConfig,
    LandscapeConfig,
    LossConfig,
    ModelConfig,
    RegressDataConfig,
    ScheduleConfig,
    SweepConfig,
    TrainConfig,
    default_of,
)
from losslab.config.lm import LMDataConfig, LMModelConfig, SampleConfig
from losslab.config.many import ManyRuns
from losslab.errors import Interrupted, OutputClosed


@dataclass(frozen=True)
class Opt:
    type: Any
    flags: tuple[str, ...]
    help: str
    default: Any = None


def _loss_help(task: Optional[str] = None) -> str:
    """--loss help: every loss, or one task's only (a single-task command lists what applies to it)."""
    def names(task: str) -> str:
        return ", ".join(e.name for e in LOSSES if task in e.meta["tasks"])

    described = "; ".join(f"{e.name}: {e.description}" for e in LOSSES if task is None or task in e.meta["tasks"])
    listed = f"{task}: {names(task)}" if task else (f"regression: {names('regression')}; classification: "
                                                    f"{names('classification')}; lm: {names('language-model')}")
    return f"Loss ({listed}) — {described}; or an import path package.module:Name (class or function)."


def task_helps(task: str) -> dict[str, str]:
    """--help's one-line texts of the options whose words depend on the task (a single-task command's, or the task
    a many-run command's --help shows): what applies to that task only."""
    def names(entries: Any, wanted: Callable[[Any], bool]) -> str:
        return ", ".join(e.name for e in entries if wanted(e))

    losses = names(LOSSES, lambda e: task in e.meta["tasks"])
    common = {"loss": f"{losses}, or pkg.mod:Name.", "lr": BRIEF["lr"]}
    if task == "regression":
        return {**common, "dataset": "synthetic (y = 2x + 3 + noise), diabetes, or pkg.mod:NAME.",
                "model": "linear, or your nn.Module: pkg.mod:Class (or file.py:Class).",
                "epochs": "Epochs.", "samples": "Samples of the synthetic data.",
                "features": "Synthetic: feature count; --data: feature columns.",
                "data": "A CSV file of features and a target column.",
                "target": "--data: the target column (default: the last)."}
    if task == "language-model":
        return {**common, "dataset": "shakespeare (embedded), or token ids: pkg.mod:NAME.",
                "data": "A UTF-8 text file (90 % trains, 10 % validates).",
                "model": names(LM_MODELS, lambda e: True) + " (default gpt), or pkg.mod:Class.",
                "epochs": "Epochs of --eval-every steps (default 20).",
                "batch_size": "Windows per step (default 12).",
                "dropout": "The model's dropout.", "hidden": "Hidden units of rnn, gru, lstm.",
                "input_key": "Dict items: the token ids' key."}
    return {**common, "dataset": names(DATASETS, lambda e: True) + ", or pkg.mod:NAME.",
            "data": "A CSV file of features and a label column.",
            "model": names(MODELS, lambda e: e.meta["task"] == "classification") + ", or pkg.mod:Class.",
            "epochs": "Epochs (default per dataset).",
            "samples": "blobs: samples.", "features": "blobs: features; --data: feature columns.",
            "target": "--data: the label column (default: the last).",
            "dropout": "mlp: dropout probability.", "hidden": "Hidden units of the mlp."}


def _takes(option: str) -> str:
    """The optimizers whose registry entry accepts `option`, for its help (a new optimizer updates it)."""
    return ", ".join(e.name for e in OPTIMIZERS if option in e.meta["accepts"]) or "no optimizer"


def _lr_help(task: Optional[str] = None) -> str:
    """--lr's help: each optimizer's default for the task (both tasks' where a command takes either), and the
    classification datasets that have their own (digits trains adam at 0.01, not the task's 0.001)."""
    tasks = [task] if task else ["regression", "classification"]
    defaults = ", ".join(f"{e.name} {'/'.join(format(e.meta['default_lr'][t], 'g') for t in tasks)}"
                         for e in OPTIMIZERS)
    own: dict[str, list[str]] = {}  # a dataset's own defaults, which take precedence for it
    for entry in DATASETS:
        rates = entry.meta.get("default_lr") or {}
        if rates:
            own.setdefault(", ".join(f"{k} {v:g}" for k, v in rates.items()), []).append(entry.name)
    datasets = "; ".join(f"{', '.join(names)}: {rates}" for rates, names in own.items())
    return (f"Learning rate (default per optimizer{'' if task else ', regression/classification'}: {defaults}"
            + (f"; classification datasets with their own, used with them: {datasets}"
               if datasets and task != "regression" else "") + ").")


OPTS: dict[str, Opt] = {
    # optimizer
    "optim": Opt(str, ("--optim",), f"Optimizer: {OPTIMIZERS.help()}; or a name pytorch-optimizer knows when it is "
                 "installed (lion, soap, sophiah, …); or any optimizer class by import path package.module:Class "
                 "(torch.optim:NAdam, myopt:Lion from the current folder). `losslab optimizers` lists them."),
    "lr": Opt(Optional[float], ("--lr",), _lr_help()),
    "momentum": Opt(Optional[float], ("--momentum",), f"Momentum ({_takes('momentum')})."),
    "weight_decay": Opt(Optional[float], ("--weight-decay",),
                        f"L2 / decoupled weight decay ({_takes('weight_decay')})."),
    "betas": Opt(Optional[str], ("--betas",), f"Betas, e.g. 0.9,0.999 ({_takes('betas')})."),
    "eps": Opt(Optional[float], ("--eps",), f"Denominator epsilon ({_takes('eps')})."),
    "muon_rest": Opt(Optional[str], ("--muon-rest",), "muon: the optimizer of the parameters Muon does not take "
                     "(embeddings, biases, norms, the output layer): adamw (the default) or sgd (momentum 0.9)."),
    "optim_arg": Opt(Optional[list[str]], ("--optim-arg",), "A constructor argument of the optimizer's class "
                     "(repeatable): KEY=VALUE, the value a Python literal (betas=0.95,0.98; foreach=False) or an "
                     "import path for an argument that takes a class (base_optimizer=torch.optim:SGD); with "
                     "several optimizers NAME.KEY=VALUE sets one optimizer's (lion.betas=0.95,0.98). Checked "
                     "against the class's signature before training."),
    # loss
    "loss": Opt(Optional[str], ("--loss",), _loss_help()),
    "no_check_loss": Opt(bool, ("--no-check-loss",), "Train an import-path loss without first checking its "
                         "gradient against finite differences (see losslab check-loss).", False),
    "delta": Opt(float, ("--delta",), "Threshold of huber (delta) and smooth-l1 (beta).",
                 default_of(LossConfig, "delta")),
    "label_smoothing": Opt(float, ("--label-smoothing",), "Label smoothing of cross-entropy.",
                           default_of(ClassifyLossConfig, "label_smoothing")),
    "z_loss": Opt(float, ("--z-loss",), "lm: add this times the mean squared log-normaliser of the logits "
                  "(PaLM's z-loss, 1e-4 there) to the loss.", 0.0),
    "class_weights": Opt(Optional[str], ("--class-weights",),
                         "'balanced' (inverse class frequency) or a comma list, one weight per class."),
    "gamma": Opt(float, ("--gamma",), "Focusing parameter of the focal loss.", default_of(ClassifyLossConfig, "gamma")),
    # training
    "epochs": Opt(Optional[int], ("--epochs",), "Number of epochs (regress 1000; classify per dataset: "
                  + ", ".join(f"{e.name} {e.meta['default_epochs']}" for e in DATASETS) + ")."),
    "batch_size": Opt(Optional[int], ("--batch-size",), "Mini-batch size (regress: full batch; classify: 64); "
                      "batches are shuffled with a generator seeded by --seed."),
    "clip_grad_norm": Opt(Optional[float], ("--clip-grad-norm",), "Clip the global gradient norm to this value "
                          "(clip_grad_norm_); the report says on how many steps it was active."),
    "clip_grad_value": Opt(Optional[float], ("--clip-grad-value",), "Clip every gradient element to "
                           "[-VALUE, VALUE] (clip_grad_value_); may be combined with --clip-grad-norm."),
    "schedule": Opt(str, ("--schedule",), f"Learning-rate schedule (torch.optim.lr_scheduler): {SCHEDULES.help()}.",
                    default_of(ScheduleConfig, "name")),
    "warmup": Opt(int, ("--warmup",), "Epochs of linear warm-up before the schedule, stepped per batch.",
                  default_of(ScheduleConfig, "warmup")),
    "step_size": Opt(Optional[int], ("--step-size",), "step: epochs between decays (default 10)."),
    "milestones": Opt(Optional[str], ("--milestones",), "multistep: comma list of epochs, e.g. 10,20."),
    "lr_gamma": Opt(float, ("--lr-gamma",), "step, multistep, exponential: the decay factor.",
                    default_of(ScheduleConfig, "lr_gamma")),
    "eta_min": Opt(float, ("--eta-min",), "cosine: the lowest rate (eta_min).", default_of(ScheduleConfig, "eta_min")),
    "peak_lr": Opt(Optional[float], ("--peak-lr",), "onecycle: the highest rate (max_lr; default 10 x --lr)."),
    "lr_patience": Opt(int, ("--lr-patience",), "plateau: epochs without a lower loss before the rate drops.",
                       default_of(ScheduleConfig, "lr_patience")),
    "lr_factor": Opt(float, ("--lr-factor",), "plateau: the factor the rate is multiplied by.",
                     default_of(ScheduleConfig, "lr_factor")),
    "seed": Opt(int, ("--seed",), "Seed for initial weights and batch order: the same command twice gives "
                "identical numbers.", default_of(TrainConfig, "seed")),
    "threads": Opt(Optional[int], ("--threads",), "CPU threads torch uses for this run (default: torch's own "
                   "choice, every core; on a busy machine fewer can be much faster; --executor process and ray "
                   "workers divide the cores among themselves)."),
    "device": Opt(str, ("--device",), "auto (CUDA, then MPS, then CPU), cpu, cuda or mps.",
                  default_of(TrainConfig, "device")),
    # regression data
    "samples": Opt(Optional[int], ("--samples",), "Number of samples (regress synthetic data 100; blobs 600)."),
    "features": Opt(Optional[str], ("--features",), "Number of features of synthetic data (regress: as many as "
                    "--true-w gives; blobs 2); with --data, a comma list of feature column names (default: every "
                    "column but the target)."),
    "target": Opt(Optional[str], ("--target",), "With --data: the name of the target (regress) or label (classify) "
                  "column (default: the last column)."),
    "true_w": Opt(str, ("--true-w",), "Synthetic regression data: true weight(s), comma list; one value is used for "
                  "every feature.", ",".join(f"{w:g}" for w in default_of(RegressDataConfig, "true_w"))),
    "true_b": Opt(float, ("--true-b",), "Synthetic regression data: true bias.",
                  default_of(RegressDataConfig, "true_b")),
    "noise": Opt(float, ("--noise",), "Synthetic regression data: noise standard deviation.",
                 default_of(RegressDataConfig, "noise")),
    "data_seed": Opt(int, ("--data-seed",), "Seed of the synthetic data (numpy.random.seed for regress), of --subset "
                     "and of the validation split.", default_of(RegressDataConfig, "data_seed")),
    "data": Opt(Optional[str], ("--data",), "A CSV file (comma, semicolon or tab separated; header optional): "
                "feature columns and a target (regress) or label (classify: strings or integers) column; see "
                "--target and --features. lm: a UTF-8 text file (the first 90 % trains)."),
    "standardize": Opt(Optional[bool], ("--standardize/--no-standardize",), "regress: train on standardised "
                       "columns (features and target to mean 0, std 1; reported weights stay in the data's units). "
                       "Default: on for --data FILE.csv, off for the synthetic and bundled data."),
    # classification data and model
    "dataset": Opt(Optional[str], ("--dataset",), "Dataset. regress: synthetic (default; the tutorial's y = 2x + 3 + "
                   f"noise), diabetes (scikit-learn's, bundled). classify (default digits): {DATASETS.help()}; or your "
                   "own: an import path package.module:NAME to tensors (X, y), a Dataset of (input, label) pairs, "
                   "or a pair (train, valid) of them (a function returning one is called). lm: shakespeare (default; "
                   "tiny Shakespeare, embedded) or your token ids by import path: a LongTensor, a pair (train, "
                   "valid) of them or a Dataset of sequences (tensors or dicts with input_ids)."),
    "data_dir": Opt(Optional[str], ("--data-dir",), "torchvision root holding MNIST/, FashionMNIST/, "
                    "cifar-10-batches-py/ (default $LOSSLAB_DATA or ~/.cache/losslab/data)."),
    "val_dir": Opt(Optional[str], ("--val-dir",), "imagefolder: a validation folder with the same class "
                   "subfolders (default: a seeded --val-fraction of --data-dir)."),
    "image_size": Opt(Optional[str], ("--image-size",), "imagefolder: resize every image to H or H,W pixels "
                      "(default: the first image's size)."),
    "grayscale": Opt(bool, ("--grayscale",), "imagefolder: convert images to one channel (default: RGB).",
                     default_of(ClassifyDataConfig, "grayscale")),
    "memory_budget": Opt(str, ("--memory-budget",), "Decode data into memory up to this size (e.g. 2GiB, 500MB); "
                         "larger image folders and Datasets of --dataset import paths are streamed through a "
                         "DataLoader.", "2GiB"),
    "workers": Opt(int, ("--workers",), "DataLoader worker processes reading streamed data (persistent; 0: in this "
                   "process).", default_of(ClassifyDataConfig, "workers")),
    "download": Opt(bool, ("--download",), "Download mnist/fashion-mnist/cifar10 into --data-dir when missing "
                    "(needs internet).", default_of(ClassifyDataConfig, "download")),
    "subset": Opt(Optional[int], ("--subset",), "Use only this many training samples (and a proportional part of an "
                  "official test split)."),
    "val_fraction": Opt(float, ("--val-fraction",), "Seeded validation fraction where the dataset has no official "
                        "test split.", default_of(ClassifyDataConfig, "val_fraction")),
    "classes": Opt(int, ("--classes",), "blobs: number of classes.", default_of(ClassifyDataConfig, "classes")),
    "class_sep": Opt(float, ("--class-sep",), "blobs: spread of the cluster centres (noise has unit variance).",
                     default_of(ClassifyDataConfig, "class_sep")),
    "imbalance": Opt(Optional[float], ("--imbalance",), "blobs: ratio of the largest to the smallest class; other "
                      "datasets: keep 1/R of the training samples of the upper half of the classes (validation "
                      "keeps its natural balance)."),
    "model": Opt(Optional[str], ("--model",), "Model. Your own: an import path package.module:NAME (an nn.Module "
                 "class or a function returning one; the current folder is importable; it is passed in_features, "
                 "input_shape, in_channels, classes/num_classes or out_features by name where its signature asks). "
                 "regress: linear (default). classify (default per dataset: " + ", ".join(
        f"{e.name} {e.meta['default_model']}" for e in DATASETS) + "): " + "; ".join(
        f"{e.name}: {e.description}" for e in MODELS if e.meta["task"] == "classification") + ". lm (default gpt): "
        + "; ".join(f"{e.name}: {e.description}" for e in LM_MODELS) + "; yours gets vocab_size and block_size by "
        "name and maps token ids (batch, time) to logits (batch, time, vocabulary)."),
    "hidden": Opt(int, ("--hidden",), "Hidden units of the mlp (classify) and of rnn, gru, lstm (lm).",
                  default_of(ModelConfig, "hidden")),
    "depth": Opt(int, ("--depth",), "Hidden layers of the mlp.", default_of(ModelConfig, "depth")),
    "activation": Opt(Optional[str], ("--activation",), "Activation: relu, tanh, sigmoid, gelu or none (default: "
                      "mlp relu; cnn none, as in the tutorial CNN)."),
    "init": Opt(str, ("--init",), "Weight initialisation: default (PyTorch's), xavier (Glorot uniform) or kaiming "
                "(He normal), for the activation in use; biases zero.", default_of(ModelConfig, "init")),
    "dropout": Opt(float, ("--dropout",), "mlp: dropout probability after each hidden activation; lm: the "
                   "model's dropout (gpt: attention, residual and embedding; rnn: between layers).",
                   default_of(ModelConfig, "dropout")),
    "batch_norm": Opt(bool, ("--batch-norm",), "mlp: BatchNorm1d after each hidden Linear.",
                      default_of(ModelConfig, "batch_norm")),
    "input_key": Opt(Optional[str], ("--input-key",), "Your dataset's dict items: the key of the input (default: the "
                     "first of input_ids, inputs, input, x; lm: input_ids, ids, tokens)."),
    "target_key": Opt(Optional[str], ("--target-key",), "classify, your dataset's dict items: the key of the label "
                      "(default: the first of labels, label, targets, target, y)."),
    # language models
    "tokenizer": Opt(str, ("--tokenizer",), "lm: char (one token per character of the training text), byte (UTF-8 "
                     "bytes), gpt2 (tiktoken's BPE; pip install tiktoken) or a FILE.tiktoken vocabulary.",
                     default_of(LMDataConfig, "tokenizer")),
    "block_size": Opt(int, ("--block-size",), "lm: tokens per training window (the model's context).",
                      default_of(LMDataConfig, "block_size")),
    "eval_every": Opt(int, ("--eval-every",), "lm: optimizer steps per epoch; the validation loss is measured "
                      "after each (--epochs 20 --eval-every 100: 2,000 steps).",
                      default_of(LMDataConfig, "eval_every")),
    "eval_batches": Opt(int, ("--eval-batches",), "lm: batches of fixed validation windows each evaluation "
                        "averages (the final figures use the whole validation split).",
                        default_of(LMDataConfig, "eval_batches")),
    "layers": Opt(int, ("--layers",), "lm: layers of gpt, rnn, gru, lstm.", default_of(LMModelConfig, "layers")),
    "heads": Opt(int, ("--heads",), "lm gpt: attention heads (they divide --embed).",
                 default_of(LMModelConfig, "heads")),
    "embed": Opt(int, ("--embed",), "lm: embedding width (gpt: the model's width).",
                 default_of(LMModelConfig, "embed")),
    "sample": Opt(int, ("--sample",), "lm: tokens of text generated after training (0: none).",
                  default_of(SampleConfig, "tokens")),
    "temperature": Opt(float, ("--temperature",), "lm: sampling temperature (0: greedy, the most likely token).",
                       default_of(SampleConfig, "temperature")),
    "top_k": Opt(Optional[int], ("--top-k",), "lm: sample among the K most likely tokens only."),
    "prompt": Opt(Optional[str], ("--prompt",), "lm: the text the sample continues, every character in the "
                  "vocabulary (default: a new line, or the validation text's first token where there is none)."),
    "patience": Opt(Optional[int], ("--patience",), "Stop after this many epochs without a lower validation loss, "
                    "and restore the best weights."),
    "save": Opt(Optional[str], ("--save",), "Write a checkpoint (weights, how to build the model, the inputs' "
                "normalisation and feature names, class names; classify also the optimizer state) to this file, "
                "atomically: `losslab predict --checkpoint FILE` uses it."),
    "resume": Opt(Optional[str], ("--resume",), "Continue training from a checkpoint written by --save "
                  "(--epochs is the total)."),
    # many trials
    "task": Opt(str, ("--task",), "; ".join(f"{t.flag} ({t.description})" for t in tasks.TASKS) + ".",
                tasks.TASKS[0].flag),
    "optims": Opt(str, ("--optims",), "Comma list of optimizers to compare: " + ", ".join(OPTIMIZERS.names())
                  + ", a name pytorch-optimizer knows (lion, soap, …) or a class by import path (myopt:Lion).",
                  ",".join(default_of(CompareConfig, "optims"))),
    "lr_for": Opt(Optional[list[str]], ("--lr-for",), "Learning rate for one optimizer, e.g. adam=0.01 (repeatable or "
                  "comma list); overrides --lr and the default."),
    "seeds": Opt(int, ("--seeds",), "Number of seeds (--seed, --seed+1, ...); runs are paired by seed.",
                 default_of(ManyRuns, "seeds")),
    "tune": Opt(bool, ("--tune",), "Give every optimizer the same tuning budget: each rate of --tune-grid trained on "
                "one tuning seed; the best by final (classify: validation) loss is rerun on the seeds.",
                default_of(CompareConfig, "tune")),
    "tune_grid": Opt(Optional[str], ("--tune-grid",), "Tuning rates for every optimizer: MIN:MAX:PER_DECADE log-spaced "
                     "or a comma list (default: 13 rates per optimizer, log-spaced over four decades centred on its "
                     "own default rate: sgd 0.001…10, adam 1e-4…1, lion 3e-5…0.3)."),
    "path_optims": Opt(Optional[str], ("--optims",), "landscape: comma list of optimizers whose paths from one "
                       "start are drawn on one surface (each at its default rate); default: --optim only."),
    "line": Opt(bool, ("--line",), "landscape: the loss along the line from the initial to the final weights.",
                False),
    "plane": Opt(bool, ("--plane",), "landscape: the loss on a plane through the final weights (the default for "
                 "models of more than two parameters).", False),
    "between": Opt(Optional[tuple[str, str]], ("--between",), "landscape: the loss along the line between two "
                   "saved runs (checkpoints of --save, A then B) instead of training one; give the data and model "
                   "options they were trained with."),
    "grid": Opt(int, ("--grid",), "landscape: points per axis.", default_of(LandscapeConfig, "grid")),
    "span": Opt(float, ("--range",), "landscape: the plane's extent (-R..R along each direction; with filter "
                "normalisation 1 is the size of the weights); the line runs from -R/4 to 1+R/4.",
                default_of(LandscapeConfig, "span")),
    "directions": Opt(str, ("--directions",), "landscape --plane: random (filter-normalised, Li et al. 2018) or "
                      "pca (the training path's two principal directions, the path drawn on the plane).",
                      default_of(LandscapeConfig, "directions")),
    "baseline": Opt(str, ("BASELINE",), "The baseline: a result.json or --json document of regress, classify, lm, "
                    "compare-optimizers, compare-losses, lr-sweep, benchmark, or gate."),
    "candidate": Opt(Optional[str], ("CANDIDATE",), "The candidate result; default: the baseline's invocation rerun "
                     "now on this code."),
    "first_seed": Opt(Optional[int], ("--first-seed",), "gate: the candidate's first seed (default: the baseline's, "
                      "so seeds pair up)."),
    "alpha": Opt(float, ("--alpha",), "gate: 1 − the confidence of the intervals.", 0.05),
    "tolerance": Opt(Optional[list[str]], ("--tolerance",), "gate: METRIC=VALUE (repeatable): the change that counts, "
                     "relative (5%) or absolute (0.01); default 1% of the baseline."),
    "fail_on_improvement": Opt(bool, ("--fail-on-improvement",), "gate: exit 1 when a metric improved too (the "
                               "baseline is stale).", False),
    "sets": Opt(Optional[list[str]], ("--set",), "gate: OPTION=VALUE (repeatable): the candidate is the baseline's "
                "run with this option changed (lr=0.001, optim.lr=0.001, loss=focal), run now with the baseline's "
                "missing seeds: an option change gated in one command."),
    "min_seeds": Opt(Optional[int], ("--min-seeds",), "gate: exit 1 (status 'too few seeds') when a side has fewer "
                     "seeds than this: for CI, where a one-seed result must not pass for lack of evidence."),
    "rerun_baseline": Opt(bool, ("--rerun-baseline",), "gate: run the baseline's invocation now for the seeds it "
                          "lacks.", False),
    "markdown": Opt(Optional[str], ("--markdown",), "gate: write a short Markdown table (for a pull request comment "
                    "or a CI job summary) to this file."),
    # benchmark
    "suite": Opt(str, ("--suite",), "benchmark: tiny (for CI: the quadratic, the regression, the digits MLP), "
                 "analytic (the noisy quadratic and Rosenbrock: seconds), small (both, the regression, digits MLP "
                 "and CNN, the character model), or a suite file FILE.toml of [[problem]] tables.", "tiny"),
    "ruleset": Opt(str, ("--ruleset",), "benchmark: defaults (each optimizer at its own default hyper-parameters, "
                   "one study per seed) or external (AlgoPerf's: --trials quasi-random trials in each optimizer's "
                   "search space per study, the fastest trial counts, the median of --studies studies).", "defaults"),
    "studies": Opt(int, ("--studies",), "benchmark --ruleset external: independent studies (the median counts).", 5),
    "trials": Opt(int, ("--trials",), "benchmark --ruleset external: quasi-random trials per optimizer and study, "
                  "the same points for every optimizer.", 5),
    "method": Opt(str, ("--method",), "benchmark --ruleset external: the quasi-random sequence, sobol or halton "
                  "(scipy.stats.qmc, scrambled, seeded by the study).", "sobol"),
    "reference": Opt(Optional[str], ("--reference",), "benchmark: the optimizer the others are compared with, "
                     "paired by study (default: the first of --optims)."),
    "measure": Opt(str, ("--measure",), "benchmark: what times to target count for the profiles and B: steps or "
                   "grad_evals (seconds are shown beside either).", "steps"),
    "track_sharpness": Opt(Optional[int], ("--track-sharpness",), "Every K epochs record the sharpness: the top "
                           "eigenvalue of the training loss's Hessian (power iteration on Hessian-vector products), "
                           "drawn against 2/lr; trials then train one by one."),
    "sharpness_samples": Opt(int, ("--sharpness-samples",), "The training rows the sharpness is measured on (the "
                             "first ones; all when fewer).", default_of(TrainConfig, "sharpness_samples")),
    "halving": Opt(bool, ("--halving",), "Successive halving — every candidate (a rate, or a loss) trains "
                   "--min-epochs, the best 1/--halving-rate go on to rate× the epochs from where they stopped, and so "
                   "on up to --epochs.", False),
    "min_epochs": Opt(Optional[int], ("--min-epochs",), "Halving: the first rung's epochs (default: --epochs / "
                      "rate³, at least 1)."),
    "halving_rate": Opt(int, ("--halving-rate",), "Halving: the rate η (the best 1/η continue, for η× the epochs).",
                        3),
    "range_test": Opt(bool, ("--range-test",), "Run the LR range test (one run, the rate growing each step) instead "
                      "of a grid of short runs.", default_of(SweepConfig, "range_test")),
    "min_lr": Opt(Optional[float], ("--min-lr",), "Lowest rate (grid default 1e-4; range test 1e-7)."),
    "max_lr": Opt(Optional[float], ("--max-lr",), "Highest rate (grid default 1; range test 10)."),
    "num": Opt(int, ("--num",), "Grid: number of log-spaced rates from --min-lr to --max-lr.",
               default_of(SweepConfig, "num")),
    "lrs": Opt(Optional[str], ("--lrs",), "Grid: explicit comma list of rates instead of --min-lr/--max-lr/--num."),
    "batch_sizes": Opt(Optional[str], ("--batch-sizes",), "Grid: the rates at each of these batch sizes (comma "
                       "list, e.g. 32,128,512), in one sweep: the best rate per batch size and how it scales."),
    "mode": Opt(str, ("--mode",), "Range test schedule: exp (exponential growth) or linear.",
                default_of(SweepConfig, "mode")),
    "steps": Opt(int, ("--steps",), "Range test: optimizer steps from --min-lr to --max-lr.",
                 default_of(SweepConfig, "steps")),
    "executor": Opt(str, ("--executor",), "Where trials train: local (this process, stacked where possible), "
                    "process (a pool of --jobs worker processes, each pinned to its share of the cores) or ray "
                    "(Ray tasks on a local runtime or a cluster; pip install 'losslab[ray]'); the numbers are the "
                    "same.", default_of(ExecutorConfig, "name")),
    "ray_address": Opt(Optional[str], ("--ray-address",), "--executor ray: join this cluster (auto: the one `ray "
                       "start` made on this machine; or host:port); default: start a local Ray runtime."),
    "cpus_per_trial": Opt(float, ("--cpus-per-trial",), "--executor ray: CPUs each trial asks for (and its "
                          "torch thread count).", default_of(ExecutorConfig, "cpus_per_trial")),
    "jobs": Opt(Optional[int], ("--jobs",), "--executor process: worker processes (default: the number of cores)."),
    "retries": Opt(int, ("--retries",), "--executor process: resubmit a trial whose worker process died (killed, out "
                   "of memory) this many times before reporting it failed.", default_of(ExecutorConfig, "retries")),
    "no_vectorize": Opt(bool, ("--no-vectorize",), "Run trials one after another instead of stacked in one batched "
                        "computation (the default for supported models and optimizers).", False),
    "target_accuracy": Opt(Optional[float], ("--target-accuracy",), "--task classify: validation accuracy whose first "
                           "epoch is reported (default 0.9)."),
    # compare-losses
    "losses": Opt(Optional[str], ("--losses",), "Comma list of losses to compare (default regress: "
                  "mse,l1,huber,smooth-l1; classify: cross-entropy,mse,focal,weighted-cross-entropy), registered "
                  "names or import paths."),
    "outliers": Opt(Optional[float], ("--outliers",), "regress: fraction of training targets shifted by "
                    "--outlier-shift (rows chosen from --data-seed). Default 0.1 on the synthetic data; your own data "
                    "(--data, --dataset diabetes) is used as it is unless you give it."),
    "outlier_shift": Opt(float, ("--outlier-shift",), "regress: how far outlier targets are shifted.",
                         default_of(CompareLossesConfig, "outlier_shift")),
    "budget": Opt(str, ("--budget",), "What every optimizer gets the same of: epochs (the default: every run "
                  "trains --epochs), or gradient-evaluations (forward-backward passes: --epochs × the steps of an "
                  "epoch; an optimizer that takes two per step, as SAM, or a line search's several, trains fewer "
                  "steps).", "epochs"),
    "rank_by": Opt(Optional[str], ("--rank-by",), "Ranking measure (regress: truth_distance, or heldout_medae — the "
                   "held-out median absolute error, which none of the built-in losses minimises — when the truth "
                   "is unknown; also heldout_mse, heldout_mae; classify: macro_f1, accuracy, minority_recall, nll, "
                   "ece)."),
    # output and gates
    "json_out": Opt(bool, ("--json",), "Print one JSON document on stdout and nothing else there (progress goes to "
                    "stderr).", False),
    "out": Opt(Optional[str], ("--out",), "Folder for result.json, history.csv and plots (written atomically)."),
    "quiet": Opt(bool, ("--quiet", "-q"), "Print only the final report.", False),
    "plot": Opt(Optional[bool], ("--plot/--no-plot",), "Draw the loss curves under the final report (default: in "
                "a terminal, not when piped or with --json/--quiet)."),
    "config": Opt(Optional[str], ("--config",), "Read this command's options from a TOML file (a [command] table, "
                  "e.g. [regress], or top-level keys named like the options: lr = 0.01, batch-size = 32); options "
                  "on the command line override the file."),
    "print_config": Opt(bool, ("--print-config",), "Print the options this run would use as TOML that --config "
                        "accepts, and exit without training.", False),
    "tensorboard": Opt(Optional[str], ("--tensorboard",), "Write TensorBoard event files into this folder as the "
                       "run goes, one run directory per run (view with: tensorboard --logdir DIR)."),
    "expect": Opt(Optional[list[str]], ("--expect",), "Check a result (repeatable): NAME=VALUE±TOL (or +-), "
                  "NAME>=X, NAME<=X, NAME=TEXT; exit 1 if one fails."),
    "target_loss": Opt(Optional[float], ("--target-loss",), "Exit 1 unless the final loss (classify: validation "
                       "loss) is at most this. compare-optimizers: the loss whose first epoch is reported (default "
                       "1.05 x the least-squares optimum's loss)."),
}

# --help's one-line texts (at 80 columns a command's help fits in ~120 lines); OPTS[name].help is the full text
# (docs/reference/options.md and the Python API's stubs)
BRIEF: dict[str, str] = {
    "optim": "A name (`losslab optimizers`) or pkg.mod:Class.",
    "lr": "Learning rate (default: the optimizer's).",
    "momentum": "Momentum (sgd family, rmsprop, muon).",
    "weight_decay": "Weight decay (L2, or decoupled for adamw).",
    "betas": "Betas, e.g. 0.9,0.999 (adam family).",
    "eps": "Denominator epsilon (adaptive optimizers).",
    "muon_rest": "muon: adamw or sgd for the parameters Muon skips.",
    "optim_arg": "KEY=VALUE for the optimizer's constructor.",
    "no_check_loss": "Skip the gradient check of an import-path loss.",
    "delta": "Threshold of huber (delta) and smooth-l1 (beta).",
    "z_loss": "lm: weight of PaLM's z-loss on the logits.",
    "class_weights": "'balanced' or one weight per class (comma list).",
    "gamma": "Focal loss focusing parameter.",
    "epochs": "Epochs (default per task and dataset).",
    "batch_size": "Mini-batch size (default per task).",
    "clip_grad_norm": "Clip the global gradient norm to this value.",
    "clip_grad_value": "Clip every gradient element to ±VALUE.",
    "schedule": "Schedule: cosine, step, onecycle, …",
    "warmup": "Warm-up epochs before the schedule.",
    "step_size": "step: epochs between decays (default 10).",
    "milestones": "multistep: epochs to decay at, e.g. 10,20.",
    "lr_gamma": "step, exponential: decay factor.",
    "eta_min": "cosine: the lowest rate.",
    "peak_lr": "onecycle: the highest rate (default 10 × --lr).",
    "lr_patience": "plateau: epochs without improvement.",
    "lr_factor": "plateau: factor the rate drops by.",
    "seed": "Seed of initial weights, batch order.",
    "threads": "CPU threads torch uses (default: every core).",
    "device": "auto, cpu, cuda or mps.",
    "samples": "Samples of the synthetic data.",
    "features": "Synthetic: feature count; --data: feature columns.",
    "target": "--data: the target column (default: the last).",
    "true_w": "Synthetic data: true weight(s), comma list.",
    "true_b": "Synthetic data: true bias.",
    "noise": "Synthetic data: noise standard deviation.",
    "data_seed": "Seed of synthetic data and splits.",
    "data": "A CSV file of features and a target column.",
    "standardize": "Standardise columns (default: on for --data).",
    "data_dir": "torchvision root (default $LOSSLAB_DATA).",
    "val_dir": "imagefolder: a validation folder.",
    "image_size": "imagefolder: resize to H or H,W pixels.",
    "grayscale": "imagefolder: one channel.",
    "memory_budget": "Memory for decoded data.",
    "workers": "DataLoader workers (streamed data).",
    "download": "Download torchvision datasets when missing.",
    "subset": "Use only this many training samples.",
    "val_fraction": "Validation fraction.",
    "classes": "blobs: number of classes.",
    "class_sep": "blobs: cluster spread.",
    "imbalance": "Ratio of the largest to the smallest class.",
    "hidden": "Hidden units (mlp; rnn, gru, lstm).",
    "depth": "Hidden layers of the mlp.",
    "activation": "relu, tanh, sigmoid, gelu or none.",
    "init": "default, xavier or kaiming.",
    "dropout": "Dropout probability.",
    "batch_norm": "mlp: BatchNorm1d after each hidden layer.",
    "input_key": "Dict items: the input's key.",
    "target_key": "Dict items: the label's key.",
    "tokenizer": "char, byte, gpt2 (tiktoken) or FILE.tiktoken.",
    "block_size": "Tokens per training window (the context).",
    "eval_every": "Optimizer steps per epoch.",
    "eval_batches": "Validation batches per evaluation.",
    "layers": "Layers of gpt, rnn, gru, lstm.",
    "heads": "gpt: attention heads.",
    "embed": "Embedding width.",
    "sample": "Tokens generated after training (0: none).",
    "temperature": "Sampling temperature (0: greedy).",
    "top_k": "Sample among the K most likely tokens.",
    "prompt": "The text the sample continues.",
    "patience": "Stop after N epochs without a lower validation loss.",
    "save": "Write a checkpoint for `losslab predict`.",
    "resume": "Continue from a --save checkpoint.",
    "task": "regress, classify or lm.",
    "optims": "Optimizers (comma list).",
    "lr_for": "One optimizer's rate, e.g. adam=0.01.",
    "seeds": "Seeds; runs pair up by seed.",
    "tune": "Tune every optimizer's rate on the same grid first.",
    "tune_grid": "--tune's rates: MIN:MAX:PER_DECADE or a list.",
    "path_optims": "Optimizers whose paths are drawn (comma list).",
    "line": "The loss along the line from start to end.",
    "plane": "The loss on a plane through the final weights.",
    "between": "The line between two --save checkpoints.",
    "grid": "Points per axis.",
    "span": "The plane's extent (-R..R).",
    "directions": "--plane: random or pca directions.",
    "first_seed": "The candidate's first seed.",
    "alpha": "1 − the intervals' confidence.",
    "tolerance": "METRIC=VALUE: the change that counts (5%, 0.01).",
    "fail_on_improvement": "Exit 1 on an improvement too.",
    "sets": "OPTION=VALUE: gate the baseline with this change.",
    "min_seeds": "Exit 1 when a side has fewer seeds (for CI).",
    "rerun_baseline": "Rerun the baseline for the seeds it lacks.",
    "markdown": "Write a Markdown summary to this file.",
    "suite": "tiny, analytic, small or a FILE.toml suite.",
    "ruleset": "defaults or external (AlgoPerf's tuning).",
    "studies": "external: independent studies.",
    "trials": "external: quasi-random trials per study.",
    "method": "external: sobol or halton.",
    "reference": "The optimizer the others are compared with.",
    "measure": "Time to target in steps or grad_evals.",
    "track_sharpness": "Every K epochs: the Hessian's top eigenvalue.",
    "sharpness_samples": "Rows the sharpness is measured on.",
    "halving": "Successive halving instead of the full budget.",
    "min_epochs": "Halving: the first rung's epochs.",
    "halving_rate": "Halving: keep the best 1/η each rung.",
    "range_test": "The LR range test instead of a grid.",
    "min_lr": "Lowest rate.",
    "max_lr": "Highest rate.",
    "num": "Grid: log-spaced rates.",
    "lrs": "Grid: these rates (comma list).",
    "batch_sizes": "Grid: at each of these batch sizes.",
    "mode": "Range test: exp or linear.",
    "steps": "Range test: optimizer steps.",
    "executor": "local, process or ray.",
    "ray_address": "ray: a cluster to join (auto, host:port).",
    "cpus_per_trial": "ray: CPUs per trial.",
    "jobs": "process: worker processes (default: cores).",
    "retries": "process: retries after a worker dies.",
    "no_vectorize": "Train runs one by one, not stacked.",
    "target_accuracy": "classify: the accuracy to-target counts.",
    "losses": "Losses to compare (comma list).",
    "outliers": "regress: fraction of shifted targets.",
    "outlier_shift": "regress: how far outliers are shifted.",
    "rank_by": "The ranking measure (default " + ", ".join(f"{t.flag} {t.rankings[0]}" for t in tasks.TASKS) + ").",
    "budget": "epochs or gradient-evaluations.",
    "json_out": "Print one JSON document on stdout.",
    "out": "Folder for result.json, history.csv, plots.",
    "quiet": "Print only the final report.",
    "plot": "Curves under the report (default: terminal).",
    "config": "Read options from a TOML file.",
    "print_config": "Print the options as TOML and exit.",
    "tensorboard": "Write TensorBoard event files here.",
    "expect": "NAME=VALUE±TOL, NAME>=X, ...: exit 1 if one fails.",
    "target_loss": "Exit 1 unless the final loss is at most this.",
}


def task_only(name: str) -> Optional[str]:
    """The --task value of the one task an option applies to alone; None for an option every task takes."""
    task = tasks.only(name)
    return task.flag if task is not None else None

# --help groups the options in panels, in this order
PANELS = {
    "Optimizer": OPTIM,
    "Loss": ("loss", "losses", "no_check_loss", "delta", "label_smoothing", "z_loss", "class_weights", "gamma",
             "outliers", "outlier_shift"),
    "Data": ("dataset", "data", "target", "features", "samples", "true_w", "true_b", "noise", "data_seed",
             "standardize", "input_key", "target_key", "data_dir", "val_dir", "image_size", "grayscale",
             "memory_budget", "workers", "download",
             "subset", "val_fraction", "classes", "class_sep", "imbalance"),
    "Model": ("model", "hidden", "depth", "activation", "init", "dropout", "batch_norm", "layers", "heads", "embed"),
    "Language model": ("tokenizer", "block_size", "eval_every", "eval_batches", "sample", "temperature", "top_k",
                       "prompt"),
    "Training": ("epochs", "batch_size", "clip_grad_norm", "clip_grad_value", "seed", "device", "threads",
                 "track_sharpness", "sharpness_samples",
                 "patience", "save", "resume"),
    "Schedule": SCHEDULE,
    "Gate": ("sets", "first_seed", "alpha", "tolerance", "fail_on_improvement", "rerun_baseline", "min_seeds",
             "markdown"),
    "Benchmark": ("suite", "ruleset", "studies", "trials", "method", "reference", "measure"),
    "Landscape": ("path_optims", "line", "plane", "between", "grid", "span", "directions"),
    "Many runs": ("task", "rank_by", "budget", "halving", "min_epochs", "halving_rate", "optims", "lr_for", "seeds",
                  "tune", "tune_grid",
                  "range_test", "min_lr", "max_lr", "num", "lrs", "batch_sizes",
                  "mode", "steps", "no_vectorize", "target_accuracy"),
    "Executors": EXECUTOR,
}


def panel(name: str) -> str:
    """The --help panel an option is listed in (Output for the rest)."""
    return next((title for title, names in PANELS.items() if name in names), "Output")

class Given:
    """The options a command was called with, by attribute (`given.lr`); an option the command does not take
    reads as its declared default. `set(name)` tells whether the value differs from the command's default."""

    def __init__(self, values: dict[str, Any], defaults: dict[str, Any]):
        self._values, self._defaults = values, defaults

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._values:
            return self._values[name]
        if name not in OPTS:
            raise AttributeError(f"no option {name!r}")
        return OPTS[name].default

    def has(self, name: str) -> bool:
        """Whether the command takes this option (it then has a value, given or default)."""
        return name in self._values

    def set(self, name: str) -> bool:
        return name in self._values and self._values[name] != self._defaults.get(name, OPTS[name].default)


# each registered command's options and their defaults for it: what the Python API (losslab.api) accepts
SIGNATURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}


def is_argument(opt: Opt) -> bool:
    """An Opt whose one flag is a metavar in capitals (BASELINE) is a positional argument."""
    return len(opt.flags) == 1 and opt.flags[0].isupper()


METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}


def metavar(kind: Any) -> Optional[str]:
    """What --help writes after an option: INT, FLOAT, TEXT; TEXT… for a repeatable one (typer: <list[str]>)."""
    import typing

    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is list:
        return f"{metavar(args[0]) or 'TEXT'}…"
    if args and typing.get_origin(kind) is typing.Union:
        return metavar(args[0])
    return METAVARS.get(kind)


def options(*names: str, command: str, helps: Optional[dict[str, str]] = None,
            **defaults: Any) -> Callable[[Callable[[Given], int]], Callable[..., int]]:
    """Give the command `command`'s function `def cmd(given: Given) -> int` the named options, with per-command
    defaults (and help texts, `helps`), as its signature; with --config among them, a [command] table of a file
    gives values too."""
    if "config" in names:
        TABLES.append(command)
    SIGNATURES[command] = (names, {name: defaults.get(name, OPTS[name].default) for name in names})

    def decorate(func: Callable[[Given], int]) -> Callable[..., int]:
        return _Entry(func, functools.partial(_entry, func, names, command, helps, defaults))

    return decorate


class _Entry:
    """A command's callback whose signature (one typer.Option per option, ~1 ms a command) is built when typer
    first asks for it: `losslab regress` builds regress's only, not every command's."""

    def __init__(self, func: Callable[..., int], build: Callable[[], Callable[..., int]]) -> None:
        self.__name__ = self.__qualname__ = func.__name__
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__
        self._build = build
        self._built: Optional[Callable[..., int]] = None

    def _entry(self) -> Callable[..., int]:
        if self._built is None:
            self._built = self._build()
        return self._built

    @property
    def __signature__(self) -> inspect.Signature:
        return self._entry().__signature__  # type: ignore[attr-defined]

    @property
    def __annotations__(self) -> dict[str, Any]:  # type: ignore[override]
        return self._entry().__annotations__

    def __call__(self, **values: Any) -> int:
        return self._entry()(**values)


def _signature(names: tuple[str, ...], helps: Optional[dict[str, str]],
               defaults: dict[str, Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    """The named options as typer reads them: one parameter each, annotated with its typer.Option/Argument."""
    params, annotations = [], {}
    for name in names:
        opt = OPTS[name]
        text = (helps or {}).get(name) or BRIEF.get(name, opt.help)
        default = defaults.get(name, opt.default)
        annotation: Any
        if is_argument(opt):  # a positional argument (BASELINE): required unless its type is Optional
            annotation = Annotated[opt.type, typer.Argument(help=text, metavar=opt.flags[0],
                                                            show_default=False)]
            if opt.type is str:
                default = inspect.Parameter.empty
        else:
            annotation = Annotated[opt.type, typer.Option(*opt.flags, help=text, metavar=metavar(opt.type),
                                                          rich_help_panel=panel(name))]
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if is_argument(opt) else inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
        annotations[name] = annotation
    return inspect.Signature(params, return_annotation=int), {**annotations, "return": int}


def _entry(func: Callable[[Given], int], names: tuple[str, ...], command: str, helps: Optional[dict[str, str]],
           defaults: dict[str, Any]) -> Callable[..., int]:
    """`func` as typer's callback: the named options as its signature; the values parsed, merged with a --config
    file's, recorded (`losslab.invocation`) and handed to `func` as `Given`."""
    chosen = {name: defaults.get(name, OPTS[name].default) for name in names}

    @functools.wraps(func)
    def entry(**values: Any) -> int:
        from losslab.cli.experiment import dumps, key_of, merged

        try:
            name = command
            values = merged(values, names, OPTS, name, chosen)  # --config under the command line
            if values.pop("print_config", False):
                print(dumps(values, OPTS, name), end="")
                return 0
            values.pop("config", None)
            from losslab import invocation

            invocation.record(name, {key_of(OPTS, k): v for k, v in values.items() if v is not None})
            return func(Given(values, chosen))
        except BrokenPipeError:
            raise OutputClosed() from None
        except KeyboardInterrupt:
            raise Interrupted() from None

    entry.__signature__, entry.__annotations__ = _signature(names, helps, defaults)  # type: ignore[attr-defined]
    del entry.__wrapped__  # typer must see the new signature, not the wrapped one
    return entry


def flag(name: str) -> str:
    """The option as a user types it: `--standardize` for `--standardize/--no-standardize`."""
    return OPTS[name].flags[0].split("/")[0]
