"""Config assembly: parsed options (`Given`) -> one frozen, resolved config per command.

An option left unset passes nothing, so the config dataclasses' own defaults apply (one source of defaults).
"""

from __future__ import annotations

import re
from typing import Any, Optional, Union

from losslab.cli.options import Given, flag
from losslab.commands.table import SCHEDULE, Command
from losslab.components import tasks
from losslab.components.datasets import DATASETS
from losslab.components.losses import LOSSES
from losslab.components.models import MODELS
from losslab.components.optimizers import OPTIMIZERS, RESTS, kind, parse_argument, registered
from losslab.components.registry import choice
from losslab.components.schedules import SCHEDULES
from losslab.components.tables import expand
from losslab.config import (
    BUDGETS,
    CLASSIFY_DEFAULTS,
    DEVICES,
    LM_DEFAULTS,
    REGRESS_DEFAULTS,
    ClassifyConfig,
    ClassifyDataConfig,
    ClassifyLossConfig,
    CompareConfig,
    CompareLossesConfig,
    ExecutorConfig,
    GateConfig,
    LandscapeConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RegressConfig,
    RegressDataConfig,
    ScheduleConfig,
    SweepConfig,
    TrainConfig,
    parse_floats,
    parse_grid,
    parse_ints,
    parse_lr_for,
)
from losslab.config.lm import LM_DATASETS, LMConfig, LMDataConfig, LMLossConfig, LMModelConfig, SampleConfig
from losslab.errors import ConfigError


def _set(**values: Any) -> dict[str, Any]:
    """The given values only: None (an unset option) leaves the dataclass default."""
    return {k: v for k, v in values.items() if v is not None}


YOURS = ", or your own as an import path package.module:NAME"


def named(registry: Any, name: Optional[str], option: Optional[str] = None, also: str = "") -> Optional[str]:
    """A registry name as registered (`Adam` -> `adam`; a close misspelling gets "did you mean"); import paths and
    None pass through. `option` names the option in errors when it is not the registry's own (`--optims`);
    `also` is added to the choices (YOURS: a user's own component)."""
    if name is None or ":" in name:
        return name
    try:
        return str(registry.canonical(name))
    except ConfigError as exc:
        raise ConfigError(option or exc.option, exc.message + also) from None


def task_of(given: Given) -> str:
    """The task --task names (components.tasks), by its name ("regression")."""
    return tasks.task(given.task).name


def refuse_other_task(given: Given, task: str) -> None:
    """Options that belong to another task alone must stay unset."""
    for other in tasks.TASKS:
        if other.name != task:
            for name in other.options:
                if given.set(name) and tasks.only(name) is other:
                    raise ConfigError(flag(name), f"applies to --task {other.flag} only")


def optimizer_named(name: str, option: str = "--optim") -> str:
    """A registry name in its registered spelling; an import path or a library's name checked to name an
    optimizer class (one line naming `option` if not)."""
    name = name.strip()
    if registered(name):
        return OPTIMIZERS.canonical(name)
    kind(name, option)
    return name


def optim_names(text: str, option: str) -> tuple[str, ...]:
    return tuple(optimizer_named(o, option) for o in text.split(",") if o.strip())


def optim_args(given: Given, names: tuple[str, ...]) -> dict[str, tuple[tuple[str, Any], ...]]:
    """--optim-arg per optimizer: KEY=VALUE applies to each of `names`, NAME.KEY=VALUE to NAME's alone (NAME as
    given, or the class name of an import path: lion.betas, Lion.betas, myopt:Lion.betas)."""
    out: dict[str, list[tuple[str, Any]]] = {n: [] for n in names}
    for text in given.optim_arg or ():
        key, value = parse_argument(text)
        head, dot, last = key.rpartition(".")
        if not dot:
            for name in names:
                out[name].append((key, value))
            continue
        folded = head.lower()
        matches = [n for n in names if folded in (n.lower(), n.rpartition(":")[2].lower())]
        if not matches:
            raise ConfigError("--optim-arg", f"{text!r} names {head!r}, which is not among the optimizers "
                              f"({', '.join(names)})")
        out[matches[0]].append((last, value))
    if given.muon_rest is not None:  # (--optim-arg rest=... by its own name)
        routed = [n for n in names if kind(n).protocol.routed]
        if not routed:
            raise ConfigError("--muon-rest", f"applies to muon only (the optimizers here: {', '.join(names)})")
        rest = choice("--muon-rest", given.muon_rest, RESTS, "optimizer")
        for name in routed:
            out[name] = [(k, v) for k, v in out[name] if k != "rest"] + [("rest", rest)]
    return {n: tuple(v) for n, v in out.items() if v}


def optim_config(given: Given, default_name: str) -> OptimConfig:
    """The run's optimizer; --optim-arg goes to it unless the command trains several optimizers (their configs
    take it per optimizer)."""
    name = optimizer_named(given.optim or default_name)
    if given.has("optims") or given.set("path_optims"):
        return OptimConfig(**_set(name=name, lr=given.lr, momentum=given.momentum, weight_decay=given.weight_decay,
                                  betas=parse_floats("--betas", given.betas), eps=given.eps))
    return OptimConfig(**_set(name=name, lr=given.lr, momentum=given.momentum,
                              weight_decay=given.weight_decay, betas=parse_floats("--betas", given.betas),
                              eps=given.eps, args=optim_args(given, (name,)).get(name)))


def gate_config(given: Given, with_target_loss: bool = True) -> GateConfig:
    return GateConfig(expect=tuple(given.expect or ()),
                      target_loss=given.target_loss if with_target_loss else None)


def schedule_config(given: Given) -> ScheduleConfig:
    milestones = None
    if given.milestones is not None:
        try:
            milestones = tuple(int(m) for m in given.milestones.split(","))
        except ValueError:
            raise ConfigError("--milestones",
                              f"expected comma-separated epochs, e.g. 10,20 (got {given.milestones!r})") from None
    return ScheduleConfig(**_set(name=named(SCHEDULES, given.schedule), warmup=given.warmup, step_size=given.step_size,
                                 milestones=milestones, lr_gamma=given.lr_gamma, eta_min=given.eta_min,
                                 peak_lr=given.peak_lr, lr_patience=given.lr_patience, lr_factor=given.lr_factor))


def train_config(given: Given, **defaults: Any) -> TrainConfig:
    values = {**defaults, **_set(epochs=given.epochs, batch_size=given.batch_size,
                                 clip_grad_norm=given.clip_grad_norm, clip_grad_value=given.clip_grad_value,
                                 seed=given.seed, device=choice("--device", given.device, DEVICES, "device"),
                                 threads=given.threads, track_sharpness=given.track_sharpness,
                                 sharpness_samples=given.sharpness_samples)}
    return TrainConfig(**values, schedule=schedule_config(given))


def features_option(given: Given) -> tuple[Optional[int], Optional[tuple[str, ...]]]:
    """--features: a number of synthetic features, or with --data a comma list of column names."""
    if given.features is None:
        return None, None
    text = str(given.features).strip()
    if given.data is not None:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if not names:
            raise ConfigError("--features", "expected a comma list of column names of --data")
        return None, names
    try:
        return int(text), None
    except ValueError:
        raise ConfigError("--features", f"expected a number of features (column names need --data FILE.csv); "
                          f"got {text!r}") from None


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """--image-size H or H,W."""
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        raise ConfigError("--image-size", f"expected H or H,W in pixels (got {text!r})") from None
    if len(parts) not in (1, 2):
        raise ConfigError("--image-size", f"expected H or H,W in pixels (got {text!r})")
    return (parts[0], parts[-1])


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(option: str, text: Optional[str]) -> Optional[int]:
    """A size such as 2GiB, 500MB or 1000000 (bytes)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ConfigError(option, f"expected a size such as 2GiB, 500MB or a number of bytes (got {text!r})")
    value = float(m.group(1)) * _UNITS[unit]
    if not 0 < value < 2**62:
        raise ConfigError(option, f"must be a positive size (got {text!r})")
    return int(value)


def executor_config(given: Given) -> ExecutorConfig:
    return ExecutorConfig(**_set(name=given.executor, jobs=given.jobs, retries=given.retries,
                                 ray_address=given.ray_address, cpus_per_trial=given.cpus_per_trial))


def regress_config(given: Given, *, with_gates: bool = True) -> RegressConfig:
    true_w = parse_floats("--true-w", given.true_w) or (2.0,)
    count, columns = features_option(given)
    if given.data is not None and given.dataset not in (None, "synthetic"):
        raise ConfigError("--dataset", f"--data reads your file; --dataset {given.dataset} would be ignored")
    data = RegressDataConfig(**_set(samples=given.samples, features=count or len(true_w), true_w=true_w,
                                    true_b=given.true_b, noise=given.noise, data_seed=given.data_seed,
                                    csv=expand(given.data), dataset=given.dataset, target=given.target,
                                    columns=columns, standardize=given.standardize))
    return RegressConfig(data=data, **_set(model=named(MODELS, given.model, also=YOURS)),
                         loss=LossConfig(**_set(name=named(LOSSES, given.loss, also=YOURS), delta=given.delta),
                                         check=not given.no_check_loss),
                         optim=optim_config(given, REGRESS_DEFAULTS["optim"]), train=train_config(given),
                         gates=gate_config(given) if with_gates else GateConfig(),
                         out=expand(given.out), tensorboard=expand(given.tensorboard), plot=given.plot,
                         save=expand(given.save)).resolved()


BLOBS_ONLY = ("classes", "class_sep", "samples", "features")


def classify_config(given: Given, *, with_gates: bool = True) -> ClassifyConfig:
    dataset = named(DATASETS, given.dataset, also=YOURS) or ("csv" if given.data is not None else "digits")
    if given.data is not None and dataset != "csv":
        raise ConfigError("--dataset", f"--data reads your file; --dataset {dataset} would be ignored")
    count, columns = features_option(given)
    if dataset != "blobs":
        for name in BLOBS_ONLY:
            if given.set(name) and not (name == "features" and columns is not None):
                raise ConfigError(flag(name), f"applies to --dataset blobs only (this run uses {dataset})")
    data = ClassifyDataConfig(**_set(dataset=dataset, data_dir=expand(given.data_dir), download=given.download,
                                     subset=given.subset, val_fraction=given.val_fraction,
                                     data_seed=given.data_seed, classes=given.classes, samples=given.samples,
                                     features=count, class_sep=given.class_sep,
                                     imbalance=given.imbalance, csv=expand(given.data), target=given.target,
                                     columns=columns, val_dir=expand(given.val_dir),
                                     image_size=parse_size(given.image_size), grayscale=given.grayscale or None,
                                     memory_budget=parse_bytes("--memory-budget", given.memory_budget),
                                     workers=given.workers, input_key=given.input_key,
                                     target_key=given.target_key))
    loss = ClassifyLossConfig(**_set(name=named(LOSSES, given.loss, also=YOURS), label_smoothing=given.label_smoothing,
                                     class_weights=given.class_weights, gamma=given.gamma),
                              check=not given.no_check_loss)
    return ClassifyConfig(data=data, model=ModelConfig(**_set(name=named(MODELS, given.model, also=YOURS),
                                                             hidden=given.hidden, depth=given.depth,
                                                             activation=given.activation, init=given.init,
                                                             dropout=given.dropout, batch_norm=given.batch_norm)),
                           loss=loss,
                          optim=optim_config(given, CLASSIFY_DEFAULTS["optim"]),
                          train=train_config(given, epochs=None, batch_size=CLASSIFY_DEFAULTS["batch_size"]),
                          gates=gate_config(given) if with_gates else GateConfig(),
                          patience=given.patience, save=expand(given.save), resume=expand(given.resume),
                          out=expand(given.out), tensorboard=expand(given.tensorboard), plot=given.plot).resolved()


def lm_config(given: Given, *, with_gates: bool = True) -> LMConfig:
    """`losslab lm` (and --task lm): the text, tokenizer, model, loss and sampling; the loop's defaults are
    LM_DEFAULTS (the schedule and clipping only where the command's own defaults give them: `losslab lm`)."""
    from losslab.components.lm_models import LM_MODELS

    dataset = given.dataset or "shakespeare"
    data = LMDataConfig(**_set(dataset=dataset if ":" in dataset else named_choice("--dataset", dataset, LM_DATASETS),
                               text=expand(given.data), tokenizer=given.tokenizer, block_size=given.block_size,
                               eval_every=given.eval_every, eval_batches=given.eval_batches,
                               input_key=given.input_key))
    model = LMModelConfig(**_set(name=named(LM_MODELS, given.model, also=YOURS), layers=given.layers,
                                 heads=given.heads, embed=given.embed, hidden=given.hidden, dropout=given.dropout))
    loss = LMLossConfig(**_set(name=named(LOSSES, given.loss, also=YOURS), label_smoothing=given.label_smoothing,
                               gamma=given.gamma, z_loss=given.z_loss), check=not given.no_check_loss)
    sample = SampleConfig(**_set(tokens=given.sample, temperature=given.temperature, top_k=given.top_k,
                                 prompt=given.prompt))
    return LMConfig(data=data, model=model, loss=loss, optim=optim_config(given, LM_DEFAULTS["optim"]),
                    train=train_config(given, epochs=LM_DEFAULTS["epochs"], batch_size=LM_DEFAULTS["batch_size"]),
                    sample=sample, gates=gate_config(given) if with_gates else GateConfig(),
                    patience=given.patience, save=expand(given.save), resume=expand(given.resume),
                    out=expand(given.out),
                    tensorboard=expand(given.tensorboard), plot=given.plot).resolved()


def named_choice(option: str, name: str, names: tuple[str, ...]) -> str:
    return choice(option, name, names, "text")


def run_config(given: Given) -> Union[RegressConfig, ClassifyConfig, LMConfig]:
    """The one-run settings a many-run command repeats, for its --task; options of the other task refused."""
    from losslab.commands.table import BY_NAME

    task = tasks.task(given.task)
    refuse_other_task(given, task.name)
    return globals()[BY_NAME[task.flag].config or ""](given, with_gates=False)  # (its single-run command's builder)


def _target(given: Given, task: str) -> Any:
    """The threshold whose first epoch is reported: a loss for regression, a validation accuracy for
    classification (--target-loss there is a gate on the loss, not this threshold)."""
    if task != "classification" and given.target_accuracy is not None:
        raise ConfigError("--target-accuracy", f"applies to --task classify only ({tasks.task(task).flag} uses "
                          "--target-loss)")
    return given.target_accuracy if task == "classification" else given.target_loss


def compare_config(given: Given) -> CompareConfig:
    run = run_config(given)
    task = run.task
    if given.tune and given.lr is not None:
        raise ConfigError("--lr", "does not apply with --tune: tuning chooses each optimizer's rate")
    if given.tune and given.lr_for:
        raise ConfigError("--lr-for", "does not apply with --tune: tuning chooses each optimizer's rate")
    if given.tune_grid is not None and not given.tune:
        raise ConfigError("--tune-grid", "applies with --tune only")
    if task == "classification" and given.target_loss is not None:
        raise ConfigError("--target-loss", "compare-optimizers --task classify reports epochs to "
                          "--target-accuracy; it has no loss target")
    optims = optim_names(given.optims, "--optims")
    target = _target(given, task)
    return CompareConfig(run=run, optims=optims, lr=given.lr, lr_for=parse_lr_for(given.lr_for), seeds=given.seeds,
                         optim_args=tuple(optim_args(given, optims).items()), tune=given.tune,
                         halving=given.halving, min_epochs=given.min_epochs,
                         halving_rate=given.halving_rate,
                         tune_grid=parse_grid("--tune-grid", given.tune_grid) if given.tune_grid else None,
                         target=target, vectorize=not given.no_vectorize, executor=executor_config(given),
                         gates=gate_config(given, with_target_loss=False), out=expand(given.out),
                         tensorboard=expand(given.tensorboard), plot=given.plot,
                         budget=choice("--budget", given.budget, BUDGETS, "budget"),
                         **_set(rank_by=given.rank_by)).resolved()


def compare_losses_config(given: Given) -> CompareLossesConfig:
    task = task_of(given)
    if given.loss is not None:
        raise ConfigError("--loss", "compare-losses trains every loss of --losses")
    if task == "classification":
        for name in ("outliers", "outlier_shift"):
            if given.set(name):
                raise ConfigError(flag(name), "applies to --task regress only")
    run = run_config(given)
    if given.losses is not None and not given.losses.replace(",", "").strip():
        raise ConfigError("--losses", "is empty; give a comma list of losses, e.g. mse,l1")
    asked = given.losses or ",".join(tasks.task(task).default_losses)
    losses = tuple(named(LOSSES, n.strip(), "--losses") or "" for n in asked.split(",") if n.strip())
    return CompareLossesConfig(run=run, losses=losses, seeds=given.seeds, outliers=given.outliers,
                               outlier_shift=given.outlier_shift, rank_by=given.rank_by, halving=given.halving,
                               min_epochs=given.min_epochs, halving_rate=given.halving_rate,
                               vectorize=not given.no_vectorize, executor=executor_config(given),
                               gates=gate_config(given, with_target_loss=False),
                               out=expand(given.out), tensorboard=expand(given.tensorboard), plot=given.plot).resolved()


def sweep_config(given: Given) -> SweepConfig:
    run = run_config(given)
    task = run.task
    if given.lr is not None:
        raise ConfigError("--lr", "lr-sweep chooses the rates: use --min-lr/--max-lr/--num or --lrs")
    grid_only = ("num", "batch_sizes", "epochs", "no_vectorize", "target_loss", "target_accuracy", *SCHEDULE)
    range_only = ("mode", "steps")
    if given.batch_sizes is not None and given.set("batch_size"):
        raise ConfigError("--batch-sizes", "sweeps the batch size: drop --batch-size")
    for name in grid_only if given.range_test else range_only:
        if given.set(name):
            kind = "a grid (without --range-test)" if given.range_test else "--range-test"
            raise ConfigError(flag(name), f"applies to {kind} only")
    return SweepConfig(run=run, range_test=given.range_test, min_lr=given.min_lr, max_lr=given.max_lr,
                       num=given.num, lrs=parse_floats("--lrs", given.lrs),
                       batch_sizes=parse_ints("--batch-sizes", given.batch_sizes), seeds=given.seeds, mode=given.mode,
                       steps=given.steps, halving=given.halving, min_epochs=given.min_epochs,
                       halving_rate=given.halving_rate, target=_target(given, task), vectorize=not given.no_vectorize,
                       executor=executor_config(given), gates=gate_config(given), out=expand(given.out),
                       tensorboard=expand(given.tensorboard), plot=given.plot).resolved()



def landscape_config(given: Given) -> LandscapeConfig:
    run = run_config(given)
    if given.line and given.plane:
        raise ConfigError("--line", "and --plane are two views: choose one")
    optims = optim_names(given.path_optims or "", "--optims")
    if given.path_optims is not None and not optims:
        raise ConfigError("--optims", "names no optimizer")
    if len(optims) > 1 and given.lr is not None:
        raise ConfigError("--lr", "with several --optims each takes its own default rate (one --lr cannot suit "
                          "them all)")
    between = tuple(str(expand(p)) for p in given.between) if given.between else None
    per_optim = tuple(optim_args(given, optims or (run.optim.name,)).items())
    return LandscapeConfig(run=run, optims=optims, optim_args=per_optim,
                           mode="plane" if given.plane else "line" if given.line or between
                           else "auto", grid=given.grid, span=given.span, directions=given.directions,
                           between=between, out=expand(given.out), plot=given.plot).resolved()  # type: ignore[arg-type]


def option_values(command: str, given: dict[str, Any]) -> dict[str, Any]:
    """Option values by Python name as the command line gives them: lists (and a dict, lr_for) to comma text,
    numbers to text where the option takes text; unknown names and non-booleans for flags refused."""
    from losslab.cli.options import OPTS, SIGNATURES, flag

    names, _ = SIGNATURES[command]
    out: dict[str, Any] = {}
    for name, value in given.items():
        if name not in names:
            import difflib

            near = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {near[0]}=?" if near else f" (its options: {', '.join(sorted(names))})"
            raise ConfigError(f"{name}=", f"is not an option of losslab {command}{hint}")
        if isinstance(value, dict):  # lr_for={"adam": 0.01}
            value = [f"{k}={v}" for k, v in value.items()]
        if isinstance(value, (list, tuple)) and OPTS[name].type in (str, Optional[str]):
            value = ",".join(str(v) for v in value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and OPTS[name].type in (
                str, Optional[str]):
            value = str(value)
        if value is not None and isinstance(value, bool) != (OPTS[name].type is bool):
            if OPTS[name].type is bool:
                raise ConfigError(flag(name), f"takes True or False (got {value!r})")
        out[name] = value
    return out


def config_from_options(command: str, options: dict[str, Any]) -> Any:
    """A training command's config from option values by Python name (the command line's, a recorded
    invocation's), the rest at their defaults."""
    from losslab.cli.options import SIGNATURES
    from losslab.commands.table import BY_NAME

    _, defaults = SIGNATURES[command]
    values = {**defaults, **option_values(command, options)}
    if command == "benchmark":  # (not a table command: it runs the others)
        return benchmark_config(Given(values, defaults))
    return build_config(BY_NAME[command], Given(values, defaults))


def build_config(row: Command, given: Given) -> Any:
    """A table command's config from its option values: its own builder here, or (a command without one) its
    config class given `run` (the one-run settings of the options), the executor, gates and outputs, and every
    other field by option name."""
    if row.config is not None:
        return globals()[row.config](given)
    import dataclasses
    import importlib

    module, _, name = (row.config_class or "").partition(":")
    cls = getattr(importlib.import_module(module), name)
    shared = {"run": run_config(given), "executor": executor_config(given), "gates": gate_config(given),
              "out": expand(given.out), "tensorboard": expand(given.tensorboard), "plot": given.plot,
              "vectorize": not given.no_vectorize}
    values = {f.name: shared[f.name] if f.name in shared else getattr(given, f.name)
              for f in dataclasses.fields(cls) if f.name in shared or given.has(f.name)}
    return cls(**values).resolved()


def benchmark_config(given: Given) -> Any:
    """`losslab benchmark`'s config: its own options, and the ones every problem's runs share (where they train)."""
    from losslab.commands.benchmark import SHARED, BenchmarkConfig

    shared = tuple((name, getattr(given, name)) for name in SHARED if given.set(name))
    optims = optim_names(given.optims, "--optims")
    reference = optimizer_named(given.reference, "--reference") if given.reference is not None else None
    return BenchmarkConfig(optims, expand(given.suite) or given.suite, given.seeds, given.ruleset, given.studies,
                           given.trials, given.method, reference, given.measure, shared, expand(given.out),
                           expand(given.markdown), expand(given.tensorboard), given.plot,
                           gate_config(given, with_target_loss=False))


def gate_options(given: Given) -> Any:
    from losslab.commands.gate import GateOptions, parse_sets, parse_tolerances

    return GateOptions(given.baseline, given.candidate, given.seeds, given.first_seed, given.alpha,
                      parse_tolerances(given.tolerance or []), given.fail_on_improvement, given.rerun_baseline,
                      given.markdown, expand(given.out), given.min_seeds, parse_sets(given.sets or []))
