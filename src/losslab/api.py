"""losslab from Python: one function per command, taking the CLI's options as keyword arguments (snake_case,
the same defaults) and returning a `Result`, with the command's own code doing the work — the same configs,
the same training, the same result document as `--json`.

    import losslab
    result = losslab.regress(optim="adam", lr=0.01, epochs=500)
    result.status, result.metrics["final_loss"], result.history["train_loss"][-1]
    result.model(x)                                   # the trained model, in eval mode
    losslab.compare_optimizers(optims=["sgd", "adam"], seeds=3).ranking

Where the CLI takes an import path, Python takes the object itself: `model=` an `nn.Module` class, a function
returning one, or an instance (a template: each run starts from a copy re-initialised for its seed); `data=`
tensors or arrays `(X, y)`, a `Dataset`, or a pandas DataFrame with `target=`; `loss=` a callable. Wrong values
raise `losslab.ConfigError` naming the option as the CLI does (`--lr: must be > 0`).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, TypedDict

from typing_extensions import Unpack

from losslab.api_types import (
    ClassifyOptions,
    CompareLossesOptions,
    CompareOptimizersOptions,
    LandscapeOptions,
    LmOptions,
    LrSweepOptions,
    RegressOptions,
)
from losslab.errors import ConfigError


def _register(value: Any, kind: str, given: Any = None) -> str:
    """An object's import path for the commands' code (`losslab.objects`); reports name it by what `given` is."""
    from losslab.objects import describe, register

    return register(value, kind, describe(value if given is None else given))


def _model_factory(model: Any) -> Any:
    """A class or function as given; an instance becomes a factory of copies re-initialised for each seed (the
    global RNG is seeded before the factory is called)."""
    import copy
    import inspect

    from torch import nn

    if isinstance(model, nn.Module):
        template = model

        def fresh() -> nn.Module:
            out = copy.deepcopy(template)
            for module in out.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
            return out

        return fresh
    if inspect.isclass(model) or callable(model):
        return model
    raise ConfigError("--model", f"expected an nn.Module class, a function returning one, an instance or a name "
                      f"(got {type(model).__name__})")


def _data_function(data: Any, target: Optional[str]) -> Callable[[], Any]:
    """`data=` as a function of no arguments giving what --dataset import paths give."""
    if hasattr(data, "columns") and hasattr(data, "drop"):  # a pandas DataFrame
        if target is None or target not in data.columns:
            raise ConfigError("--target", f"names the DataFrame's target column (its columns: "
                              f"{', '.join(map(str, data.columns))})")
        x, y = data.drop(columns=[target]).to_numpy(dtype="float32"), data[target].to_numpy()
        return lambda: (x, y)
    return lambda: data


def _options(command: str, given: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments as the CLI's option values: lists to comma text, objects to import paths."""
    from losslab.cli.configs import option_values

    given = dict(given)
    if "json" in given:  # the option's Python name is json_out
        given["json_out"] = given.pop("json")
    if "model" in given and given["model"] is not None and not isinstance(given["model"], str):
        given["model"] = _register(_model_factory(given["model"]), "model", given["model"])
    if "data" in given and given["data"] is not None and not isinstance(given["data"], str):
        data = given.pop("data")
        given["dataset"] = _register(_data_function(data, given.get("target")), "data", data)
        given.pop("target", None)
    if "loss" in given and given["loss"] is not None and not isinstance(given["loss"], str):
        given["loss"] = _register(given["loss"], "loss")
    for key in ("optim", "optims", "path_optims"):  # optimizer classes (or partials of them) given as objects
        value, arguments = given.get(key), list(given.get("optim_arg") or [])
        if isinstance(value, (list, tuple)):
            paths = [v if isinstance(v, str) else _optimizer_path(v, arguments, True) for v in value]
            given[key] = paths
        elif value is not None and not isinstance(value, str):
            given[key] = _optimizer_path(value, arguments, False)
        if arguments:
            given["optim_arg"] = arguments
    return option_values(command, given)


def _optimizer_path(value: Any, arguments: list[str], prefixed: bool) -> str:
    """An optimizer class's import path: its own module's (`myopt:Lion`, replayable and importable by workers)
    when the module gives back the same class, else a generated one (a class defined in a notebook). A partial's
    keywords become --optim-arg arguments (`Lion.betas=(0.95, 0.98)` with several optimizers)."""
    import functools
    import importlib

    cls = value.func if isinstance(value, functools.partial) else value
    module, qualname = getattr(cls, "__module__", None), getattr(cls, "__qualname__", "")
    path = None
    if isinstance(module, str) and module != "__main__" and "<" not in qualname and module.split(".")[0] in sys.modules:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        path = f"{module}:{qualname}" if found is cls else None
    path = path or _register(cls, "optim")
    if isinstance(value, functools.partial):
        head = f"{qualname.rpartition('.')[2]}." if prefixed else ""
        arguments += [f"{head}{key}={v!r}" for key, v in value.keywords.items()]
    return path


def _config(command: str, options: dict[str, Any]) -> Any:
    from losslab.cli.configs import config_from_options

    return config_from_options(command, _options(command, options))


class Result:
    """What a command gives back: its status and numbers, its per-epoch history, its result document (exactly
    what --json prints), its files (`save`), and a table in a notebook."""

    def __init__(self, command: str, output: Any, where: Any):
        self.command, self._output, self._where = command, output, where
        self.raw = output.result  # the command's own result object
        self.status: str = output.status

    def document(self) -> dict[str, Any]:
        """Exactly the --json document of this run (without the command line the CLI records)."""
        import json

        from losslab.outputs.files import dumps

        return dict(json.loads(dumps(self._output.document)))

    @property
    def metrics(self) -> dict[str, Any]:
        """The flat names `--expect` tests (final_loss, accuracy, winner, ...)."""
        return dict(self.raw.metrics())

    @property
    def history(self) -> "History":
        """Every epoch's record (of every run, for a many-run command: with `run`, `seed` and `lr` keys)."""
        return History(self._output.records)

    @property
    def model(self) -> Any:
        """The trained model (single-run commands), in eval mode."""
        model = getattr(self.raw, "model", None)
        if model is None:
            raise AttributeError(f"losslab {self.command} trains many runs: see .runs")
        return model.eval()

    @property
    def runs(self) -> Any:
        """A many-run command's runs, by optimizer, loss or learning rate."""
        runs = getattr(self.raw, "runs", None)
        if runs is None:
            raise AttributeError(f"losslab {self.command} trains one run: see .model and .history")
        return runs

    @property
    def diagnosis(self) -> list[dict[str, Any]]:
        """What went wrong, in words: each finding's code, message and suggestion (pooled over the runs of a
        many-run command, with the runs it concerns)."""
        return list(self.document().get("diagnosis") or [])

    @property
    def ranking(self) -> list[str]:
        return list(self.document().get("ranking") or [])

    @property
    def params(self) -> dict[str, float]:
        return dict(self.document().get("params") or {})

    @property
    def suggestions(self) -> dict[str, Any]:
        doc = self.document()
        return dict(doc.get("suggestions") or {}) or {"suggested_lr": doc.get("suggested_lr")}

    def save(self, folder: str) -> None:
        """The files --out writes: result.json, history.csv and the plots."""
        from losslab.config import check_out_dir
        from losslab.outputs.files import write_data_files, write_plots

        check_out_dir(folder, option="folder")
        write_data_files(folder, self._output.document, self._output.records)
        write_plots(folder, self._output.plots, keep_going=lambda: True)

    def plot(self, name: Optional[str] = None) -> Any:
        """One of the plots --out writes (the first, or the one named, e.g. "confusion.png"), as a matplotlib
        Figure."""
        from losslab.outputs.plots import captured

        plots = dict(self._output.plots)
        if not plots:
            raise ValueError(f"this {self.command} result has nothing to plot")
        if name is not None and name not in plots:
            raise ValueError(f"no plot {name!r}; this result has: {', '.join(plots)}")
        with captured() as figures:
            plots[name or next(iter(plots))](None)
        return figures[0]

    def _parts(self) -> list[Any]:
        report = self._output.report
        return list(report) if isinstance(report, (list, tuple)) else [report]

    def report(self) -> str:
        """The report the CLI prints, as plain text."""
        return "\n".join(part.plain() for part in self._parts())

    def _repr_html_(self) -> str:
        """A notebook cell's view: the report as HTML tables, its notes (diagnosis, verdicts), and the main plot."""
        from losslab.outputs.html import result_html

        png, name = None, ""
        if self._output.plots:
            from losslab.outputs.plots import png_bytes

            name = next(iter(dict(self._output.plots)))
            png = png_bytes(self.plot(name))
        return result_html(self._parts(), png, alt=name)

    def __repr__(self) -> str:
        """The report as plain text (a console's view)."""
        return self.report()


class History(list):
    """The per-epoch records, a list of dicts; `history["train_loss"]` is one column as a list, and
    `to_pandas()` a DataFrame (pandas installed)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return [record.get(key) for record in self]
        return super().__getitem__(key)

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self))


def _run(command: str, options: dict[str, Any], progress: bool) -> Result:
    """The command's experiment, from a frame chunk of its own (`losslab.stack`: a notebook calls from deep)."""
    from losslab.stack import on_fresh_stack

    return on_fresh_stack(_experiment, command, options, progress)


def _experiment(command: str, options: dict[str, Any], progress: bool) -> Result:
    import importlib

    from losslab.commands.table import BY_NAME
    from losslab.engine.events import _COMMAND
    from losslab.outputs.notebook import WANTED, in_notebook

    cfg = _config(command, options)
    module = importlib.import_module(BY_NAME[command].module)
    notebook = progress and in_notebook()  # one display redrawn in place, instead of the lines on stderr
    token, wanted = _COMMAND.set(command), WANTED.set(notebook)
    try:
        output, where = module.experiment(cfg, json_out=True, quiet=not progress or notebook)
    finally:
        _COMMAND.reset(token)
        WANTED.reset(wanted)
    where.events.on_command_end(command, output.status, output.document)
    return Result(command, output, where)


def regress(*, progress: bool = True, **options: Unpack[RegressOptions]) -> Result:
    """`losslab regress` (options as keyword arguments, e.g. optim="adam", lr=0.01, model=Net, data=(X, y))."""
    return _run("regress", dict(options), progress)


def classify(*, progress: bool = True, **options: Unpack[ClassifyOptions]) -> Result:
    """`losslab classify` (e.g. dataset="digits", model=Net, data=df, target="label", epochs=10)."""
    return _run("classify", dict(options), progress)


def lm(*, progress: bool = True, **options: Unpack[LmOptions]) -> Result:
    """`losslab lm` (e.g. model="gpt", epochs=20, prompt="ROMEO:"; `.model` is the trained model)."""
    return _run("lm", dict(options), progress)


def compare_optimizers(*, progress: bool = True, **options: Unpack[CompareOptimizersOptions]) -> Result:
    """`losslab compare-optimizers` (e.g. optims=["sgd", "adam"], seeds=3)."""
    return _run("compare-optimizers", dict(options), progress)


def compare_losses(*, progress: bool = True, **options: Unpack[CompareLossesOptions]) -> Result:
    """`losslab compare-losses` (e.g. losses=["mse", "l1"], outliers=0.1)."""
    return _run("compare-losses", dict(options), progress)


def lr_sweep(*, progress: bool = True, **options: Unpack[LrSweepOptions]) -> Result:
    """`losslab lr-sweep`: a grid of rates (e.g. lrs=[0.01, 0.1], batch_sizes=[32, 128]), or range_test=True."""
    return _run("lr-sweep", dict(options), progress)


def lr_find(*, progress: bool = True, **options: Unpack[LrSweepOptions]) -> Result:
    """The LR range test (`losslab lr-sweep --range-test`): `.suggestions` holds the named suggested rates."""
    return _run("lr-sweep", {**options, "range_test": True}, progress)


def landscape(*, progress: bool = True, **options: Unpack[LandscapeOptions]) -> Result:
    """`losslab landscape` (e.g. path_optims=["sgd", "adam"], or line=True for any model)."""
    return _run("landscape", dict(options), progress)


def _signature(command: str) -> Any:
    """A training function's signature: every option of the command, with its type and default (what tab
    completion, a notebook's Shift-Tab and `help()` show), from the CLI's options: the same names and defaults."""
    import inspect
    import typing

    import losslab.cli.typer_app  # noqa: F401  (registers every command's options and their defaults)
    from losslab import api_types
    from losslab.cli.options import OPTS, SIGNATURES
    from losslab.cli.stubs import SKIPPED, class_name

    names, defaults = SIGNATURES[command]
    typed = getattr(api_types, class_name(command), None)
    kinds = typing.get_type_hints(typed) if typed is not None else {n: OPTS[n].type for n in names}
    params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name),
                                annotation=kinds[name]) for name in names if name in kinds and name not in SKIPPED]
    params.append(inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=True, annotation=bool))
    return inspect.Signature(params, return_annotation=Result)


def _signatures() -> None:
    for function, command in ((regress, "regress"), (classify, "classify"), (lm, "lm"),
                              (compare_optimizers, "compare-optimizers"),
                              (compare_losses, "compare-losses"), (lr_sweep, "lr-sweep"), (lr_find, "lr-sweep"),
                              (landscape, "landscape")):
        setattr(function, "__signature__", _signature(command))  # noqa: B010


def functions() -> list[str]:
    """The Python names of every training command of the table (each a function here)."""
    from losslab.commands.table import COMMANDS

    return [row.api for row in COMMANDS]


def __getattr__(name: str) -> Any:
    """A training command of the table without a function written here (a new one) gets one: `losslab.NAME(**options)`
    with its options' signature."""
    from losslab.commands.table import COMMANDS

    row = next((r for r in COMMANDS if r.api == name), None)
    if row is None:
        raise AttributeError(f"module 'losslab.api' has no attribute {name!r}")

    def function(*, progress: bool = True, **options: Any) -> Result:
        return _run(row.name, options, progress)

    function.__name__ = function.__qualname__ = row.api
    function.__doc__ = f"`losslab {row.name}`: {row.summary}"
    setattr(function, "__signature__", _signature(row.name))  # noqa: B010
    globals()[name] = function
    return function


class Loaded(Result):
    """A result read back from the files a command wrote (`--out` or `save`): its document, and its history when
    history.csv lies beside it; no model or runs (they were not written)."""

    def __init__(self, document: dict[str, Any], records: list[dict[str, Any]]):
        from losslab.commands.common import Output

        command = str(document.get("command", ""))
        super().__init__(command, Output(document, [], records, [], str(document.get("status", ""))), None)

    @property
    def metrics(self) -> dict[str, Any]:
        raise AttributeError("a loaded result has its document (.document()) and history, not the live metrics")


def load(path: str) -> Result:
    """The result a command wrote: `losslab.load("out/result.json")` (history.csv beside it is read too)."""
    import csv
    import json
    from pathlib import Path

    file = Path(path).expanduser()
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("path", f"cannot read a result document from {path}: {exc}") from None
    if not isinstance(document, dict) or "command" not in document:
        raise ConfigError("path", f"{path} is not a losslab result document")
    records: list[dict[str, Any]] = []
    history = file.with_name("history.csv")
    if history.is_file():
        with history.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                records.append({k: _number(v) for k, v in row.items()})
    return Loaded(document, records)


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def replay(path: str, rtol: float = 0.0) -> dict[str, Any]:
    """`losslab replay`: rerun what a result.json records and compare every number; the replay's document
    (`identical`, `compared`, `first_difference`)."""
    from losslab.commands import replay as command

    return command.replay(command.ReplayConfig(path, rtol))[1]


class Answer:
    """What a command without training gives (predict, check-loss): its own result's attributes, and
    `document()`, exactly its --json document."""

    def __init__(self, raw: Any, document: dict[str, Any]):
        self.raw, self._document = raw, document

    def document(self) -> dict[str, Any]:
        import json

        from losslab.outputs.files import dumps

        return dict(json.loads(dumps(self._document)))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "raw":
            raise AttributeError(name)
        return getattr(self.raw, name)


def predict(checkpoint: str, data: Optional[str] = None, *, prompt: Optional[str] = None) -> Answer:
    """`losslab predict`: the saved model's predictions for a table, an image folder or an import path
    (`.predictions`, `.probabilities`, `.metrics` against the data's own labels or targets); a language model's
    continuation of `prompt` (`.predictions[0]`)."""
    from losslab.commands import predict as command

    cfg = command.PredictConfig(checkpoint, data, prompt=prompt)
    result = command.predict(cfg)
    return Answer(result, command.document(cfg, result))


def check_loss(loss: Any, task: str = "regress", second_order: bool = False, points: int = 3) -> Answer:
    """`losslab check-loss`: a loss (a callable, or an import path) checked before training (`.passed`,
    `.checks`)."""
    from losslab.commands import check_loss as command
    from losslab.components.losses import load_import_path
    from losslab.engine.loss_check import check_loss as run_checks

    path = loss if isinstance(loss, str) else _register(loss, "loss")
    cfg = command.CheckLossConfig(path, "regression" if task == "regress" else "classification", second_order,
                                  points)
    fn = load_import_path(loss) if isinstance(loss, str) else loss
    result = run_checks(fn, path, cfg.task, points=cfg.points, second_order=cfg.second_order,
                        data=command.default_data(cfg.task))
    return Answer(result, command.document(cfg, result))


def gate(baseline: str, candidate: Optional[str] = None, *, seeds: int = 5, first_seed: Optional[int] = None,
         alpha: float = 0.05, tolerance: Optional[dict[str, Any]] = None, fail_on_improvement: bool = False,
         rerun_baseline: bool = False) -> Answer:
    """`losslab gate`: did the candidate (a result file, or the baseline's invocation rerun now) get worse than
    the baseline? `.status`, `.rows` (a verdict per metric), `.document()`; `tolerance={"final_loss": "5%"}`."""
    from losslab.commands import gate as command

    tolerances = tuple((k, str(v)) for k, v in (tolerance or {}).items())
    cfg = command.GateOptions(baseline, candidate, seeds, first_seed, alpha, tolerances, fail_on_improvement,
                             rerun_baseline)
    result = command.gate(cfg, _config)
    return Answer(result, command.document(result))


def diff(a: str, b: str) -> Answer:
    """`losslab diff`: what differs between two results (`.options`, `.metrics`, `.document()`)."""
    from losslab.commands import diff as command

    result = command.diff(command.DiffConfig(a, b))
    return Answer(result, command.document(result))


class BenchmarkOptions(TypedDict, total=False):
    """`losslab.benchmark`'s options: the command line's, by Python name."""

    suite: str
    ruleset: str
    seeds: int
    studies: int
    trials: int
    method: str
    reference: Optional[str]
    measure: str
    out: Optional[str]
    markdown: Optional[str]
    tensorboard: Optional[str]


def benchmark(optims: Any, *, progress: bool = True, **options: Unpack[BenchmarkOptions]) -> Result:
    """`losslab benchmark`: optimizers (a list or a comma list) judged across a suite; `options` by the command
    line's Python names: suite, ruleset, seeds, studies, trials, method, reference, measure, out, markdown.
    `.document()`: times to target per problem, the statistics, profiles, score B and the verdict; `.metrics`: the
    names --expect tests (B.adam, steps.quadratic.adam …)."""
    from dataclasses import fields

    from losslab.commands import benchmark as command

    known = [f.name for f in fields(command.BenchmarkConfig) if f.name not in ("optims", "shared", "gates", "plot")]
    for key in options:
        if key not in known:
            raise ConfigError(key, f"is not an option of benchmark; choose from: {', '.join(known)}")
    names = [o for o in optims.split(",") if o.strip()] if isinstance(optims, str) else list(optims)
    cfg = command.BenchmarkConfig(tuple(names), **options)
    output, where = command.experiment(cfg, _config, json_out=True, quiet=not progress)
    where.events.on_command_end(command.COMMAND, output.status, output.document)
    return Result(command.COMMAND, output, where)

_signatures()
