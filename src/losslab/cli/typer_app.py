"""The Typer app: each command reads options -> config (`cli.configs`) -> its module in `losslab.commands`.

No torch at module level: `losslab --help` must stay fast.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Annotated, Any, Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from losslab import interrupt
from losslab.cli.options import Given, options, task_helps
from losslab.commands.table import COMMANDS, EXIT_CODES_HELP, Command
from losslab.errors import ConfigError, ExitCode, Interrupted, OutputClosed, RunFailed, describe
from losslab.stack import on_fresh_stack

# click's UsageError, whether typer vendors click (new releases) or depends on it (older ones)
UsageError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


_ASCII = {"—": "-", "–": "-", "±": "+-", "·": "*", "×": "x", "θ": "theta", "←": "<-", "→": "->", "…": "...",
          "│": "|", "─": "-", "≤": "<=", "≥": ">=", "−": "-"}


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    """An encoder error handler: characters the stream cannot encode become their ASCII spelling."""
    text = exc.object[exc.start:exc.end]  # type: ignore[attr-defined]
    return "".join(_ASCII.get(c, "?") for c in text), exc.end  # type: ignore[attr-defined]


def _degrade_streams() -> None:
    """A CI runner with an ASCII locale (PYTHONIOENCODING=ascii) gets ASCII output instead of a crash."""
    import codecs

    codecs.register_error("losslab-ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (stream.encoding or "").lower().replace("-", "") not in ("utf8", "utf16"):
            try:
                reconfigure(errors="losslab-ascii")
            except (ValueError, OSError):
                pass


def _debug() -> bool:
    return os.environ.get("LOSSLAB_DEBUG", "") not in ("", "0")


class _FlagHelp:
    """The --help flag is unset (None) unless given, and typer coerces that None through pydantic, whose import
    costs ~0.13 s of `losslab regress --help` and ~70 ms of every run. A flag needs no coercion."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        try:
            from typer._coercion import PassThroughRuntimeParam

            if option is not None and getattr(option, "_runtime_param", "absent") is None:
                option._runtime_param = PassThroughRuntimeParam(
                    annotation=bool, parameter_info=option.type_descriptor.parameter_info)
        except (ImportError, AttributeError, TypeError):  # other typer versions: keep their behaviour
            pass
        return option


# each command's --help ends with real invocations (tests/test_cli.py parses every one against the command)
EXAMPLES = {
    "regress": ["losslab regress --optim adam --lr 0.01",
                "losslab regress --schedule cosine --warmup 5 --epochs 200",
                "losslab regress --data houses.csv --target price --out runs/houses",
                "losslab regress --model mymodels.py:Net --loss huber --expect final_loss<=0.05"],
    "classify": ["losslab classify --dataset digits --model cnn --epochs 10",
                 "losslab classify --dataset mnist --data-dir ~/data --batch-size 128",
                 "losslab classify --model nets.py:Net --dataset data.py:train --save net.pt"],
    "lm": ["losslab lm", "losslab lm --model gru --layers 2 --epochs 10 --sample 500 --prompt 'ROMEO:'",
           "losslab lm --data mybook.txt --tokenizer byte --save lm.pt"],
    "lr-sweep": ["losslab lr-sweep --min-lr 1e-4 --max-lr 1 --num 13", "losslab lr-sweep --range-test --optim adam",
                 "losslab lr-sweep --task classify --dataset digits --batch-sizes 16,64,256"],
    "compare-optimizers": ["losslab compare-optimizers --optims sgd,adam,adamw --seeds 5",
                           "losslab compare-optimizers --task classify --tune --halving",
                           "losslab compare-optimizers --optims sgd,sam:SAM --budget gradient-evaluations"],
    "compare-losses": ["losslab compare-losses --losses mse,huber,l1 --outliers 0.1",
                       "losslab compare-losses --task classify --losses cross-entropy,focal"],
    "landscape": ["losslab landscape --line", "losslab landscape --plane --optims sgd,adam"],
    "benchmark": ["losslab benchmark --optims adamw,nadam",
                  "losslab benchmark --optims adamw,lion --suite small --seeds 3 --out bench",
                  "losslab benchmark --optims adamw,myopt.py:MyOpt --ruleset external --trials 5",
                  "losslab benchmark --optims adamw,nadam --suite mine.toml --markdown bench.md"],
    "check-loss": ["losslab check-loss mylosses.py:smooth_l1",
                   "losslab check-loss mylosses.py:focal --task classify --second-order"],
    "optimizers": ["losslab optimizers", "losslab optimizers --all"],
    "predict": ["losslab predict --checkpoint net.pt --data new.csv"],
    "generate": ["losslab generate --checkpoint lm.pt --prompt 'ROMEO:' --tokens 200"],
    "gate": ["losslab gate baseline.json", "losslab gate baseline.json candidate.json --markdown gate.md",
             "losslab gate baseline.json --set lr=0.001 --min-seeds 5"],
    "diff": ["losslab diff a.json b.json"],
    "replay": ["losslab replay runs/houses/result.json", "losslab replay result.json --rtol 1e-5"],
}


def _bold(text: str) -> str:
    """Bold in a terminal: click.echo strips the codes where the help is piped; NO_COLOR keeps it plain."""
    return text if os.environ.get("NO_COLOR") else f"\x1b[1m{text}\x1b[0m"


class _Command(_FlagHelp, TyperCommand):
    """A losslab command: its --help flag skips pydantic (see _FlagHelp), and lists its options in panels
    (optimizer, loss, data, model, training, ...: cli.options.PANELS) as plain text, without Rich's help, then
    examples of it."""

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        examples = EXAMPLES.get(self.name or "")
        if examples:
            with formatter.section("Examples"):
                for example in examples:  # (as typed: never wrapped)
                    formatter.write(f"{' ' * formatter.current_indent}{example}\n")
        super().format_epilog(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """`[OPTIONS] BASELINE [CANDIDATE]`: a required argument by its name (typer writes `{BASELINE}`)."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["losslab_args"] = list(args)  # (--help reads --task from them: it runs before --task is parsed)
        return super().parse_args(ctx, args)

    def _help_task(self, ctx: Any) -> Any:
        """The task whose options a many-run command's --help lists: --task's value on the command line (before
        or after --help), else the default task."""
        from losslab.components.tasks import TASKS, task

        args = ctx.meta.get("losslab_args") or []
        for i, arg in enumerate(args):
            value = args[i + 1] if arg == "--task" and i + 1 < len(args) else \
                arg.split("=", 1)[1] if arg.startswith("--task=") else None
            if value is not None:
                try:
                    return task(value)
                except ConfigError:
                    break
        return TASKS[0]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        from losslab.cli.options import PANELS, task_helps
        from losslab.components.tasks import TASKS

        params = self.get_params(ctx)
        many = any(p.name == "task" for p in params)  # (a many-run command: the options of one task)
        shown = self._help_task(ctx) if many else None
        groups: dict[str, list[Any]] = {}
        arguments = [(p.metavar or (p.name or "").upper(), p.help or "") for p in params  # type: ignore[attr-defined]
                     if p.param_type_name == "argument"]
        if arguments:  # (positional arguments under their own heading, by name: not among the options)
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        helps = task_helps(shown.name) if shown is not None else {}
        for param in params:
            owners = [t for t in TASKS if param.name in t.options] if shown is not None else []
            if param.param_type_name == "argument" or (owners and shown not in owners):
                continue  # (another task's option)
            if param.name in helps:
                # this task's words (the process ends after --help)
                param.help = helps[param.name]  # type: ignore[attr-defined]
            record = param.get_help_record(ctx)
            if record is not None:
                record = (_bold(record[0]), record[1])
                panel = "Output options" if param.name == "help" else \
                    (getattr(param, "rich_help_panel", None) or "Other") + " options"
                title = shown.section if owners and shown else panel
                groups.setdefault(title, []).append(record)
        order = [*(f"{p} options" for p in PANELS), *(t.section for t in TASKS), "Output options",
                 "Other options"]
        for title in sorted(groups, key=lambda t: order.index(t) if t in order else len(order)):
            heading = {"Other options": "Options"}.get(title, title[0].upper() + title[1:])
            with formatter.section(_bold(heading)):
                formatter.write_dl(groups[title])
        if shown is not None:
            others = ", ".join(f"--task {t.flag} --help" for t in TASKS if t is not shown)
            formatter.write_paragraph()
            formatter.write_text(f"Other tasks' options: {others}.")


# `losslab --help` lists the commands in the order of the work (one run, tuning, comparing, judging, checking,
# using, gating), each with a whole one-line summary
WORKFLOW = {
    "regress": "Fit a regression and watch it converge (one run).",
    "classify": "Train a classifier: MLP, CNN or your own (one run).",
    "lm": "Train a next-token language model on text (one run).",
    "lr-sweep": "Find a learning rate: a grid of runs, or a range test.",
    "compare-optimizers": "Optimizers from the same weights and data order, ranked.",
    "compare-losses": "What each loss does to the same fit.",
    "landscape": "The loss surface, and optimizers' paths across it.",
    "benchmark": "Judge optimizers across a suite of problems.",
    "check-loss": "Check a custom loss's gradient before training with it.",
    "optimizers": "What --optim takes: names, classes, protocols.",
    "predict": "Predict with a saved model (--save).",
    "generate": "Continue a text with a saved language model.",
    "gate": "Did a change make training worse? (for CI)",
    "diff": "What differs between two results.",
    "replay": "Rerun a result.json and compare every number.",
}


class _Group(_FlagHelp, TyperGroup):
    """Turns every usage error into one line on stderr and exit 2; maps Ctrl-C to 130. Lists the commands in the
    order of the work, each summary whole."""

    def list_commands(self, ctx: Any) -> list[str]:
        order = list(WORKFLOW)
        return sorted(super().list_commands(ctx), key=lambda n: order.index(n) if n in order else len(order))

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, WORKFLOW.get(name) or command.get_short_help_str(limit=200)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,  # type: ignore[override]
             standalone_mode: bool = True, **extra: Any) -> Any:
        _skip_pydantic_coercion(self)
        args = list(sys.argv[1:] if args is None else args)
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            if "--json" in args:
                print("losslab: error: --json: stdout is closed (>&-): the JSON document has nowhere to go",
                      file=sys.stderr)
                return self._exit(ExitCode.USAGE, standalone_mode)
            sys.stdout = open(os.devnull, "w")
        _degrade_streams()
        debug = "--debug" in args or _debug()
        args = [a for a in args if a != "--debug"]
        try:
            with interrupt.graceful():  # (on a frame chunk of its own: importing torch crosses no chunk end)
                rv = on_fresh_stack(super().main, args=args, prog_name=prog_name or "losslab",
                                    complete_var=complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `losslab`: show the help
                print(exc.format_message(), file=sys.stderr)
                return self._exit(ExitCode.USAGE, standalone_mode)
            where = exc.ctx.command_path if exc.ctx is not None else "losslab"
            print(f"{where}: error: {exc.format_message()}", file=sys.stderr)
            code = ExitCode.USAGE
        except ConfigError as exc:
            print("losslab: error: " + " ".join(line.strip() for line in str(exc).splitlines() if line.strip()),
                  file=sys.stderr)
            code = ExitCode.USAGE
        except RunFailed as exc:
            print(f"losslab: error: {exc}", file=sys.stderr)
            code = ExitCode.FAILED
        except (typer.Abort, KeyboardInterrupt, Interrupted):
            code = _interrupted()
        except (BrokenPipeError, OutputClosed):
            # the reader closed stdout (`losslab ... | head -1`): stop quietly, as shell tools do
            _silence_stdout()
            code = ExitCode.BROKEN_PIPE
        except OSError as exc:  # writing what the user asked for failed: a full disk, a closed or full stdout
            where = f" {exc.filename}" if exc.filename else (" to stdout" if _is_stdout_error(exc) else "")
            print(f"losslab: error: cannot write{where}: {exc.strerror or describe(exc)}", file=sys.stderr)
            code = ExitCode.FAILED
        except MemoryError:
            print("losslab: error: out of memory: the run needs more memory than this machine has "
                  "(use fewer --samples, --features, --hidden, --seeds, a smaller --batch-size or --subset)",
                  file=sys.stderr)
            code = ExitCode.FAILED
        except Exception as exc:  # the last line of defence: one line, the traceback only on request
            if _caused_by_ctrl_c(exc):  # e.g. a second Ctrl-C inside a pybind11 module's import: ImportError
                return self._exit(_interrupted(), standalone_mode)
            if debug:
                import traceback

                traceback.print_exc()
            print(f"losslab: internal error: {describe(exc)} (run again with --debug or "
                  "LOSSLAB_DEBUG=1 for the traceback)", file=sys.stderr)
            code = ExitCode.FAILED
        return self._exit(code, standalone_mode)

    @staticmethod
    def _exit(code: int, standalone_mode: bool) -> int:
        if standalone_mode:
            try:
                if sys.stdout is not None:
                    sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                _silence_stdout()
                code = ExitCode.BROKEN_PIPE if code == ExitCode.OK else code
            sys.exit(int(code))
        return int(code)


def _interrupted() -> int:
    """Ctrl-C (or SIGTERM/SIGHUP) stopped the command: one line, 130 (or 128 + the signal's number)."""
    code = interrupt.exit_code() if interrupt.requested() else ExitCode.INTERRUPTED
    name = "" if code == ExitCode.INTERRUPTED else f" ({interrupt.STATE.signum.name})"
    print(f"losslab: interrupted{name}", file=sys.stderr)
    return int(code)


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is behind `exc`: an extension module whose import a press interrupts raises
    ImportError("initialization failed") from it (pybind11's modules: matplotlib's)."""
    seen: set[int] = set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (KeyboardInterrupt, Interrupted)):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _is_stdout_error(exc: OSError) -> bool:
    import errno

    return exc.errno in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT, errno.EFBIG)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _scalar_type(annotation: Any) -> Any:
    """int, float, str or bool for those annotations (Optional too), list for list[str]; None for anything else."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation in (int, float, str, bool):
        return annotation
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        return _scalar_type(args[0])
    if typing.get_origin(annotation) is list and args == [str]:
        return list
    return None


_INVALID = {int: "Input should be a valid integer, unable to parse string as an integer",
            float: "Input should be a valid number, unable to parse string as a number"}


def _skip_pydantic_coercion(group: Any) -> None:
    """Typer converts every option through a pydantic TypeAdapter, whose import costs ~70 ms of every run
    (2-3% of `losslab regress`). Every losslab option is an int, float, str, bool or repeated str: convert
    those directly, with typer's own messages; other typer versions keep their behaviour."""
    try:
        from typer._coercion import PassThroughRuntimeParam
    except ImportError:
        return

    class Direct(PassThroughRuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = _scalar_type(self.annotation)
            if kind is list:
                return [str(v) for v in value]
            if kind is bool or isinstance(value, kind):
                return value
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise typer.BadParameter(_INVALID.get(kind, f"not a valid {kind.__name__}"), ctx=ctx,
                                         param=param) from None

    for command in getattr(group, "commands", {}).values():
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is None or getattr(param, "_runtime_param", "absent") is not None:
                continue
            if descriptor.file_annotation is None and _scalar_type(descriptor.annotation) is not None:
                param._runtime_param = Direct(annotation=descriptor.annotation,
                                              parameter_info=descriptor.parameter_info)


app = typer.Typer(
    cls=_Group,
    name="losslab",
    help="Experiments on PyTorch training: losses, optimizers, learning rates and the training loop, "
         "made visible and measurable. " + EXIT_CODES_HELP + " Shell completion: losslab --install-completion "
         "(bash, zsh, fish, PowerShell).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from losslab.version import __version__

        print(f"losslab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Print losslab's version and exit.",
                                                callback=_print_version, is_eager=True)] = False) -> None:
    """Experiments on PyTorch training."""




def command(name: str, *names: str, epilog: str = EXIT_CODES_HELP, helps: Optional[dict[str, str]] = None,
            **defaults: Any) -> Callable[[Callable[[Given], int]], Any]:
    """One registration per command: `losslab NAME` with these options (per-command `defaults`), whose values
    a `[NAME]` table of a --config file may give too."""

    def decorate(func: Callable[[Given], int]) -> Any:
        return app.command(name, cls=_Command, epilog=epilog)(options(*names, command=name, helps=helps,
                                                                       **defaults)(func))

    return decorate


def _training(row: Command) -> Callable[[Given], int]:
    """The CLI body of a training command of the table: its options -> its config -> its module's main."""

    def run(given: Given) -> int:
        import importlib

        from losslab.cli.configs import build_config
        from losslab.commands.common import keep_stdout_for_json
        from losslab.outputs.pulse import working

        cfg = build_config(row, given)
        with keep_stdout_for_json(given.json_out), working(row.name, given.quiet):
            return int(importlib.import_module(row.module).main(cfg, json_out=given.json_out, quiet=given.quiet))

    run.__name__, run.__doc__ = row.api, row.summary
    return run


for _row in COMMANDS:  # (each also by its Python name here: typer_app.regress, typer_app.lr_sweep, ...)
    globals()[_row.api] = command(_row.name, *_row.options, epilog=_row.epilog,
                                  helps={**(task_helps(_row.task) if _row.task else {}), **_row.helps},
                                  **_row.defaults)(_training(_row))


@app.command("optimizers", cls=_Command, epilog="Exit codes: 0 listed; 2 bad usage.")
def optimizers(
    every: Annotated[bool, typer.Option("--all", help="Also list every optimizer of pytorch-optimizer (when "
                                                      "installed), one row each.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> int:
    """What --optim takes: losslab's names (torch.optim's catalogue), the installed libraries' optimizers and any
    class by import path, with each one's protocol, default rates and whether its trials stack."""
    from losslab.commands import optimizers as command
    from losslab.commands.common import keep_stdout_for_json

    with keep_stdout_for_json(json_out):
        return command.main(command.OptimizersConfig(every), json_out=json_out)


@app.command("check-loss", cls=_Command, epilog="Exit codes: 0 every check passed; 1 a check failed; 2 bad usage.")
def check_loss(
    loss: Annotated[str, typer.Argument(help="The loss as an import path package.module:Name: a class (built with "
                                             "no arguments), a function, or a torch.autograd.Function subclass.")],
    task: Annotated[str, typer.Option("--task", help="regress (prediction and target (8, 1)) or classify (logits "
                                                     "(8, 4), integer targets (8,)).")] = "regress",
    second_order: Annotated[bool, typer.Option("--second-order", help="Also check second derivatives "
                                                                      "(gradgradcheck).")] = False,
    points: Annotated[int, typer.Option("--points", help="Random points the gradient is checked at.")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> int:
    """Check a custom loss before training with it: callable on the task's shapes, a scalar tensor connected to
    the prediction's graph, finite, and a gradient that matches finite differences (torch.autograd.gradcheck)."""
    from losslab.commands import check_loss as command
    from losslab.commands.common import keep_stdout_for_json
    from losslab.components.tasks import task as task_named

    cfg = command.CheckLossConfig(loss, task_named(task).name, second_order, points)
    with keep_stdout_for_json(json_out):
        return command.main(cfg, json_out=json_out)


@app.command("replay", cls=_Command, epilog="Exit codes: 0 identical; 1 a number differs; 2 bad usage; "
             "4 the rerun failed.")
def replay(
    result: Annotated[str, typer.Argument(help="A result.json written by any losslab command (--out DIR).")],
    rtol: Annotated[float, typer.Option("--rtol", help="Relative tolerance for numbers (e.g. 1e-5 for a run on "
                                                      "another device); default 0: bit-identical.")] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> int:
    """Rerun the experiment a result.json records and compare every number of the two results (not times)."""
    from losslab.commands import replay as command

    if not math.isfinite(rtol) or rtol < 0:
        raise ConfigError("--rtol", f"must be a finite number >= 0 (got {rtol})")
    return command.main(command.ReplayConfig(result, rtol), json_out=json_out)


@command("gate", "baseline", "candidate", "seeds", "first_seed", "alpha", "tolerance", "fail_on_improvement",
         "rerun_baseline", "min_seeds", "sets", "markdown", "out", "json_out", seeds=5,
         helps={"seeds": "Seeds the candidate runs (stacked where possible).",
                "out": "Write result.json (a baseline for later gates) and gate.png (the loss curves) here."},
         epilog="Exit codes: 0 nothing regressed beyond its tolerance; 1 a metric regressed (or improved, with "
         "--fail-on-improvement; or a side has fewer than --min-seeds seeds); 2 bad usage or a result it cannot "
         "read; 4 a rerun failed; 130 interrupted (Ctrl-C).")
def gate(given: Given) -> int:
    """Did a change make training worse? Compare a candidate with a baseline per metric and seed: a Student-t
    interval of the change, a verdict (regressed, improved, unchanged, inconclusive) and the smallest change the
    seeds can detect; the loss curves too."""
    from losslab.cli.configs import config_from_options, gate_options
    from losslab.commands import gate as command
    from losslab.commands.common import keep_stdout_for_json
    from losslab.outputs.pulse import working

    options = gate_options(given)
    with keep_stdout_for_json(given.json_out), working("gate"):
        return command.main(options, config_from_options, json_out=given.json_out)


@app.command("diff", cls=_Command, epilog="Exit codes: 0 shown; 2 bad usage or a result it cannot read.")
def diff(
    a: Annotated[str, typer.Argument(help="A result (result.json or --json document of any training command, "
                                          "or a gate's).")],
    b: Annotated[str, typer.Argument(help="Another result.")],
    out: Annotated[Optional[str], typer.Option("--out", help="Write diff.json and curves.png (both results' "
                                               "median loss curves) here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> int:
    """What differs between two results: the options they ran with, the versions, every metric side by side with
    its change, and their loss curves overlaid."""
    from losslab.commands import diff as command
    from losslab.commands.common import keep_stdout_for_json

    with keep_stdout_for_json(json_out):
        return command.main(command.DiffConfig(a, b, out), json_out=json_out)


@app.command("predict", cls=_Command, epilog="Exit codes: 0 ok; 2 bad usage (a file, a column, a checkpoint that "
             "no longer fits its model).")
def predict(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="A checkpoint written by --save (regress, "
                                                                 "classify or lm; built-in or your own model).")],
    data: Annotated[Optional[str], typer.Option("--data", help="regress, classify: a CSV table of inputs (the "
                                                     "feature columns the model was "
                                                     "trained on, by header name or the first ones; an image "
                                                     "model's rows of pixels), or a folder of images (class "
                                                     "subfolders give labels), or an import path "
                                                     "package.module:NAME giving X, (X, y) or a Dataset. Labels or a "
                                                     "target column there are "
                                                     "compared with the predictions.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Write the predictions to this CSV file (default: "
                                                             "stdout).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", help="The class or function (package.module:NAME) that "
                                                                 "builds the saved model, when the checkpoint names a "
                                                                 "function: a file's own entry is built only when "
                                                                 "it is an nn.Module class.")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="A language model (losslab lm --save): the text "
                                                                   "it continues, 200 tokens at temperature 0.8 "
                                                                   "(losslab generate sets them).")] = None,
) -> int:
    """Predict with a saved model: values (regress) or classes with their probabilities (classify), the inputs
    prepared as in training; or continue a text with a language model (lm)."""
    from losslab.cli.configs import expand
    from losslab.commands import predict as command
    from losslab.commands.common import keep_stdout_for_json

    cfg = command.PredictConfig(expand(checkpoint) or checkpoint, expand(data) or data, expand(out), model, prompt)
    with keep_stdout_for_json(json_out):
        return command.main(cfg, json_out=json_out)


@app.command("generate", cls=_Command, epilog="Exit codes: 0 ok; 2 bad usage (a checkpoint that is not a language "
             "model's, a prompt character outside its vocabulary).")
def generate(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="A language model's checkpoint (losslab lm "
                                                                 "--save FILE).")],
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="The text to continue (default: a new line).")]
    = None,
    tokens: Annotated[int, typer.Option("--tokens", help="Tokens to generate.")] = 200,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature (0: greedy, the most "
                                                                     "likely token).")] = 0.8,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample among the K most likely tokens only.")]
    = None,
    seed: Annotated[int, typer.Option("--seed", help="The sampling seed: the same seed gives the same text.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> int:
    """Continue a text with a saved language model (losslab lm --save FILE): the prompt and what follows it."""
    from losslab.cli.configs import expand
    from losslab.commands import generate as command
    from losslab.commands.common import keep_stdout_for_json

    cfg = command.GenerateConfig(expand(checkpoint) or checkpoint, prompt, tokens, temperature, top_k, seed)
    with keep_stdout_for_json(json_out):
        return command.main(cfg, json_out=json_out)


@command("benchmark", "optims", "suite", "ruleset", "seeds", "studies", "trials", "method", "reference", "measure",
         "executor", "jobs", "retries", "ray_address", "cpus_per_trial", "no_vectorize", "threads", "device",
         "expect", "markdown", "out", "tensorboard", "plot", "quiet", "json_out", "config", "print_config", seeds=3,
         helps={"optims": "Comma list of the optimizers to judge (at least two): registered names, pytorch-optimizer's "
                          "(lion, soap, …), import paths (myopt:Lion).",
                "seeds": "--ruleset defaults: seeds per optimizer and problem (the studies; the median counts).",
                "markdown": "Write a Markdown summary (verdict, table, scores) to this file: for a pull request or a "
                            "paper's appendix.",
                "out": "Write result.json, history.csv (every run's epochs) and profile.png here.",
                "expect": "Check a result (repeatable): B.OPT>=0.5, steps.PROBLEM.OPT<=700, reached.PROBLEM.OPT=3 "
                          "(also grad_evals., seconds., B_seconds.)."},
         epilog="Exit codes: 0 ok; 1 an --expect check failed; 2 bad usage (an unknown suite, optimizer or ruleset; a "
         "suite file with wrong fields; a problem whose model, data or loss fails its check); 130 interrupted "
         "(Ctrl-C).")
def benchmark(given: Given) -> int:
    """Judge optimizers across a suite of problems: steps, gradient evaluations and seconds to each problem's
    target, paired statistics, AlgoPerf's performance profiles and score B, and a verdict."""
    from losslab.cli.configs import benchmark_config, config_from_options
    from losslab.commands import benchmark as command
    from losslab.commands.common import keep_stdout_for_json
    from losslab.outputs.pulse import working

    cfg = benchmark_config(given)
    with keep_stdout_for_json(given.json_out), working("benchmark", given.quiet):
        return command.main(cfg, config_from_options, json_out=given.json_out, quiet=given.quiet)


COMPLETION_FLAGS = ("--install-completion", "--show-completion")


def main() -> None:
    """Console-script entry point. Shell completion (typer's `--install-completion` / `--show-completion`, and the
    completion requests the installed script makes) is switched on only when asked for: building it imports
    typer's pydantic adapters, ~90 ms that every `--help` would otherwise pay."""
    if set(sys.argv[1:2]) & set(COMPLETION_FLAGS) or "_LOSSLAB_COMPLETE" in os.environ:
        app._add_completion = True
    elif len(sys.argv) > 1:  # a command named exactly: typer builds only its click command (~16 ms less)
        named = [c for c in app.registered_commands if c.name == sys.argv[1]]
        if named:
            app.registered_commands = named
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    leave(code)


def leave(code: int) -> None:
    """End the process once the command has ended: every file is written and closed, the exit code is decided.
    Signals are ignored from here on (a second Ctrl-C during the interpreter's teardown once aborted it: "Fatal
    Python error: PyThreadState_Get … finalizing", SIGABRT instead of 130), the atexit handlers run (Ray's
    shutdown, multiprocessing's clean-up), the standard streams are flushed, and the process exits without the
    teardown: nothing of it is ours, and a thread a user's model started (not a daemon) cannot keep it alive."""
    import atexit
    import signal

    for signum in interrupt.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    try:
        atexit._run_exitfuncs()
    except BaseException:  # (an exit function's failure must not change a decided exit code)
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = ExitCode.BROKEN_PIPE if code == ExitCode.OK and stream is sys.stdout else code
    os._exit(int(code))


if __name__ == "__main__":
    main()
