"""The tail every command shares: gates, result files, report, JSON and the exit code, in that order."""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from losslab import interrupt, invocation
from losslab.config import GateConfig
from losslab.engine.diagnosis import CODES
from losslab.engine.events import Consumer
from losslab.errors import ExitCode
from losslab.expect import Outcome, evaluate
from losslab.outputs.display import fmt, print_failures
from losslab.outputs.files import dumps, write_data_files, write_plots
from losslab.stats import SAME_SEEDS, WIN_MARGIN, distinct_seeds

Plot = tuple[str, Callable[[Any], None]]
DATA_FILES = ("result.json", "history.csv")  # what every command writes into --out besides its plots
DIAGNOSIS_CHOICES = {"diagnosis": (*CODES, "none")}  # what `--expect diagnosis=...` / `!=` may name


def exit_code(status: str, outcomes: Sequence[Outcome]) -> int:
    if status == "interrupted":
        return interrupt.exit_code() if interrupt.requested() else ExitCode.INTERRUPTED
    if status == "diverged":
        return ExitCode.DIVERGED
    if status in ("failed", "error"):  # every run failed / the single run's training raised
        return ExitCode.FAILED
    if any(not o.passed for o in outcomes):
        return ExitCode.EXPECTATION_FAILED
    return ExitCode.OK


def check_gates(gates: GateConfig, status: str, metrics: Mapping[str, Any],
                loss_key: str = "final_loss") -> list[Outcome]:
    """`--expect` and `--target-loss` outcomes; none for an interrupted run (its numbers are partial)."""
    if status == "interrupted":
        return []
    return evaluate(gates.expect, metrics, gates.target_loss, loss_key)


_json_stream: Optional[Any] = None  # the real stdout while a --json command runs (see keep_stdout_for_json)


@contextlib.contextmanager
def keep_stdout_for_json(json_out: bool) -> Iterator[None]:
    """With --json, stdout carries the JSON document alone: anything else printed there while the command
    runs (a user's loss that prints, a library's message) goes to stderr."""
    global _json_stream
    if not json_out:
        yield
        return
    import io
    import os

    try:  # a real stdout: file descriptor 1 itself points at stderr meanwhile (a model that writes to it with
        fd = sys.stdout.fileno()  # os.write or from C would otherwise put text into the document's stream)
        sys.stdout.flush()
        saved = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # a notebook's or a test's stream
        saved = None
    _json_stream = (open(saved, "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors, closefd=False)
                    if saved is not None else sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            _json_stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
        _json_stream = None


def json_stream() -> Any:
    """Where a command writes its JSON document: the real stdout, even while stdout is redirected to stderr."""
    return _json_stream or sys.stdout


def end_command(events: Any, command: str, status: str, document: Mapping[str, Any], json_out: bool,
                text: Optional[str] = None) -> None:
    """The shared ending of a command that trains nothing (check-loss, predict, replay, gate, diff): its JSON
    document on stdout whole (`text`, default the document's own form), then the command's end event to every
    consumer. (Training commands end in `finish`.)"""
    if json_out:
        with interrupt.critical():
            emit(text if text is not None else dumps(document))
    events.on_command_end(command, status, document)


def emit(text: str, stream: Any = None) -> None:
    """Write `text` whole to `stream` (default: the JSON stream) or fail with OSError: on a file descriptor every
    byte goes through os.write, whose short writes are retried until the rest raises (a file-size limit, `ulimit
    -f`, once left an 8 KiB document behind an exit code 0: buffered I/O took the short write as done)."""
    import io
    import os

    from losslab.outputs import pulse

    pulse.clear()  # (a terminal's "starting…" frame never prefixes the document)
    stream = stream if stream is not None else json_stream()
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a notebook's or a test runner's stream
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    data = memoryview(text.encode(getattr(stream, "encoding", None) or "utf-8",
                                  getattr(stream, "errors", None) or "strict"))
    while data:
        data = data[os.write(fd, data):]


def wants_curves(plot: Optional[bool], console: Any, json_out: bool, quiet: bool) -> bool:
    """--plot/--no-plot, or by default: in a terminal, without --json and --quiet."""
    if plot is not None:
        return plot
    return bool(getattr(console, "is_terminal", False)) and not json_out and not quiet


@dataclass
class Output:
    """What a command produced: its --json document, its report (Rich renderables), its epoch records
    (history.csv), its --expect outcomes and status, its plots and its terminal curves."""

    document: Mapping[str, Any]
    report: Any
    records: list[dict[str, Any]]
    outcomes: Sequence[Outcome]
    status: str
    plots: Sequence[Plot] = ()
    curves: Optional[Callable[[], str]] = None
    result: Any = None  # the command's result object (what the Python API returns)


@dataclass
class Where:
    """Where a command's output goes: the console, JSON on stdout, quiet, the --out folder, --plot, the consumers."""

    console: Any
    json_out: bool = False
    quiet: bool = False
    out: Optional[str] = None
    plot: Optional[bool] = None
    events: Consumer = field(default_factory=Consumer)


def coloured(curves: Callable[[], str], console: Any) -> str:
    """The terminal curves, in colour where the console has colours (a Rich console; NO_COLOR and pipes not)."""
    from losslab.outputs.terminal_plot import COLOUR

    token = COLOUR.set(getattr(console, "color_system", None) is not None and not getattr(console, "no_color", True))
    try:
        return curves()
    finally:
        COLOUR.reset(token)


def finish(output: Output, where: Where) -> int:
    """Result files, report, JSON and exit code: the common tail of every command.

    The machine-readable results come first (history.csv and result.json, then the JSON document on stdout,
    which a second Ctrl-C cannot cut in half); a Ctrl-C after training skips what is left (plots, report)
    and exits 130 without losing them; a second Ctrl-C stops whatever is being drawn."""
    document, status, out, console = output.document, output.status, where.out, where.console
    curves = output.curves if wants_curves(where.plot, console, where.json_out, where.quiet) else None
    called = invocation.current()
    if called is not None and called["command"] == document.get("command"):
        document = {**document, "invocation": called}  # what `losslab replay` reruns
    if out is not None:  # files first: a closed pipe on stdout must not lose what the user asked to keep
        with interrupt.critical():
            write_data_files(out, document, output.records)
    if where.json_out:
        text = dumps(document)
        with interrupt.critical():
            emit(text)
    where.events.on_command_end(str(document.get("command", "")), status, document)
    # a Ctrl-C during training was answered by status "interrupted" and the report shows where it stopped;
    # one after training skips what is left
    late = lambda: interrupt.requested() and status != "interrupted"  # noqa: E731
    if out is not None:
        write_plots(out, output.plots, keep_going=lambda: not late())
    if not late():
        report = output.report
        for part in report if isinstance(report, (list, tuple)) else [report]:
            part.render(console)
        text = coloured(curves, console) if curves is not None else ""
        if text:
            print(text, file=console.file, flush=True)
    if out is not None:
        print(f"results written to {out}/", file=console.file, flush=True)
    print_failures(output.outcomes)
    if status == "error" and document.get("error"):  # a single run whose training raised: one line says why
        print(f"losslab: error: {document['error']}", file=sys.stderr)
    if late():
        kept = f"; {out}/result.json and history.csv are complete" if out is not None else ""
        print(f"losslab: interrupted after training: the rest of the output was skipped{kept}", file=sys.stderr)
    if interrupt.requested():
        return interrupt.exit_code()
    return int(exit_code(status, output.outcomes))


def model_notes(problem: Any) -> list[str]:
    """What the report says of a user's own model: the parameters its loss's gradient never reaches."""
    frozen = getattr(problem, "no_gradient", [])
    if not frozen:
        return []
    shown = ", ".join(frozen[:8]) + (f" and {len(frozen) - 8} more" if len(frozen) > 8 else "")
    return [f"model {problem.user_model}: {len(frozen)} parameter tensor{'s' if len(frozen) > 1 else ''} get no "
            f"gradient from the loss and never train: {shown}"]


def optimizer_document(optim: Any, model: Any, result: Any) -> dict[str, Any]:
    """What trained: the optimizer's class and where it came from, its --optim-arg arguments, its protocol, the
    steps and forward-backward passes it spent and, for a routed optimizer (Muon), which parameter went where."""
    from losslab.components.optimizers import kind

    k = kind(optim.name)
    from losslab.objects import shown

    doc: dict[str, Any] = {"name": shown(optim.name), "class": k.label, "arguments": dict(optim.args),
                           "protocol": k.protocol.words(), "steps": result.optimizer_steps,
                           "grad_evals": result.grad_evals}
    if k.protocol.routed and model is not None:
        from losslab.components.routing import route

        rest = str(dict(optim.args).get("rest", "adamw"))
        doc["routes"] = {name: "muon" if where == "muon" else rest for name, where in route(model).items()}
    return doc


def optimizer_notes(doc: dict[str, Any]) -> list[str]:
    """The report's lines on an optimizer with a protocol, arguments or routing of its own (none for a plain one)."""
    notes = []
    if doc["protocol"] or doc["arguments"]:
        arguments = ", ".join(f"{key}={value!r}" for key, value in doc["arguments"].items())
        notes.append(f"optimizer: {doc['class']}" + (f", {arguments}" if arguments else "")
                     + "".join(f"; {w}" for w in doc["protocol"]))
    if doc["grad_evals"] != doc["steps"]:
        notes.append(f"gradient evaluations: {doc['grad_evals']:,} forward-backward passes in {doc['steps']:,} "
                     "steps")
    routes = doc.get("routes")
    if routes:
        by: dict[str, list[str]] = {}
        for name, where in routes.items():
            by.setdefault(where, []).append(name)
        notes.append("routing: " + "; ".join(f"{where} ← {', '.join(names)}" for where, names in by.items())
                     + ("" if "muon" in by else " (no hidden 2-D weight: Muon trains nothing here)"))
    return notes


# --- many-run commands ---------------------------------------------------------------------------

def default_target(problem: Any) -> float:
    """Regression: 1.05x the least-squares optimum's loss; classification: 0.9 validation accuracy; a language
    model: the trigram baseline's validation loss (below it, the model uses more than two tokens of context)."""
    if problem.task == "language-model":
        return float(problem.baselines.get("trigram", problem.baselines["uniform"]))
    return 1.05 * problem.optimum["loss"] if problem.task == "regression" else 0.9


def settle(interrupted: bool, runs: Sequence[Any]) -> str:
    """A many-run command's status: interrupted; failed (every run raised); diverged (every run diverged or
    raised, at least one diverged); else ok — one run diverging or failing is a result, not a failure."""
    if interrupted:
        return "interrupted"
    if runs and all(r.status == "error" for r in runs):
        return "failed"
    if runs and all(r.status in ("diverged", "error") for r in runs):
        return "diverged"
    return "ok"


def unfinished_note(status: str, runs: Sequence[Any]) -> str:
    """Why no run finished, in words that keep interrupted, diverged and failed apart."""
    if status == "interrupted":
        return "interrupted before any entry finished all its runs"
    diverged = sum(r.status == "diverged" for r in runs)
    failed = sum(r.status == "error" for r in runs)
    if failed and not diverged:
        return f"every run failed with an error ({failed})"
    if diverged and not failed:
        return f"every run diverged ({diverged})"
    return f"no run finished: {diverged} diverged, {failed} failed with an error"


def sooner(summaries: Sequence[Any]) -> str:
    """What a tie on the final number hides: which reached the target first (median epochs), and by how much."""
    reached = sorted((s for s in summaries if getattr(s, "epochs_to_target", None) is not None),
                     key=lambda s: s.epochs_to_target)
    if len(reached) < 2 or reached[0].epochs_to_target == reached[1].epochs_to_target:
        return ""
    first, next_ = reached[0], reached[1]
    return (f"; {first.name} reached the target first, in {first.epochs_to_target:g} epochs (median) against "
            f"{next_.epochs_to_target:g} for {next_.name}")


def verdict(result: Any, seeds: int, better: str, best: str) -> list[str]:
    """The paired-seed verdict of a ranked comparison (`summaries`, `winner`, `wins`, `status`, `runs`):
    winner, tie, or why nothing finished. `better`/`best` say what was compared ("lower final loss")."""
    if len(result.summaries) < 2:
        return []
    top, second = result.summaries[0], result.summaries[1]
    if result.winner and result.wins is None:  # successive halving left it the only one to train every epoch
        return [f"winner: {result.winner} — the only one left at the last rung of successive halving (the others "
                "stopped earlier, so no paired-seed comparison at the full budget)"]
    if result.winner and not math.isfinite(second.median):  # nothing to pair it with
        return [f"winner: {result.winner} — the only one with a finished run ({second.name} and any below it did "
                "not finish: no paired-seed comparison)"]
    values = [getattr(s, "values", None) or getattr(s, "finals", None) or [] for s in (top, second)]
    if seeds > 1 and all(values) and distinct_seeds(*values) == 1:
        same = (f"; every one of the {seeds} seeds gave the same results (to {SAME_SEEDS:g} relative: deterministic "
                "training reaches the same end from every start), so this is one comparison, not "
                f"{seeds} paired ones")
        if result.winner:
            return [f"winner: {result.winner} — {better} than {second.name}{same}"]
        return [f"tie: {top.name} and {second.name} end within {WIN_MARGIN:g} of each other{same}"]
    if result.winner:
        return [f"winner: {result.winner} — {better} than {second.name} on {result.wins} of {seeds} paired seeds"]
    if math.isfinite(top.median):
        return [f"tie: {top.name} has {best} but beats {second.name} on only {result.wins} of {seeds} paired seeds "
                "(a winner needs a majority)" + sooner(result.summaries)]
    return ["no winner: " + unfinished_note(result.status, [r for rs in result.runs.values() for r in rs])]


def columns_note(task: str, target: Optional[float]) -> str:
    """What a many-run table's loss columns mean."""
    regress = task == "regression"
    reaching = {"regression": "loss", "classification": "accuracy"}.get(task, "validation loss")
    return (f"median loss and IQR: final {'training' if regress else 'validation'} loss over seeds; to target: "
            f"median first epoch reaching {reaching} {fmt(target, '.4g')} (runs that "
            "reached it); best loss: the lowest of the epochs' losses (each taken before its epoch's steps) and the "
            "final one")


def one_by_one_notes(reason: Optional[str]) -> list[str]:
    """Why a many-run command's runs trained one after another although stacking was asked for."""
    return [f"trained one after another, not stacked: {reason}"] if reason else []


SHARPNESS_PLOT = "sharpness.png"  # with --track-sharpness: the sharpness against 2/lr


def check_outputs(cfg: Any, plots: Sequence[str], sharpness: bool = True) -> None:
    """Before anything trains: --out can take the result files, the command's `plots` (and, with
    --track-sharpness and `sharpness`, the sharpness plot) and every epoch record; --tensorboard every record."""
    from losslab.config import check_out_dir

    run = getattr(cfg, "run", cfg)  # a many-run command's one-run settings
    tracked = sharpness and bool(run.train.track_sharpness)
    check_out_dir(cfg.out, DATA_FILES + tuple(plots) + (SHARPNESS_PLOT,) * tracked, records=cfg.records)
    check_out_dir(cfg.tensorboard, option="--tensorboard", records=cfg.records)


def sharpness_plots(records: Sequence[Mapping[str, Any]], title: str) -> list[Plot]:
    """The sharpness plot of a run whose records measured it (none otherwise)."""
    if not any("sharpness" in r for r in records):
        return []

    def draw(path: Any) -> None:
        from losslab.outputs.plots import sharpness_plot

        sharpness_plot(records, path, title=title)
    return [(SHARPNESS_PLOT, draw)]


def group_sharpness_plots(runs: Mapping[str, Sequence[Any]], title: str) -> list[Plot]:
    """A many-run command's sharpness plot (median per group against its 2/lr) when its runs measured it."""
    groups = {name: [r.records for r in rs] for name, rs in runs.items()}
    if not any("sharpness" in rec for records in groups.values() for rs in records for rec in rs):
        return []

    def draw(path: Any) -> None:
        from losslab.outputs.plots import sharpness_groups_plot

        sharpness_groups_plot(groups, path, title=title)
    return [(SHARPNESS_PLOT, draw)]


def run_document(r: Any, task: str, target: Optional[float]) -> dict[str, Any]:
    """One run of a many-run command in its JSON document: identity, status, final metrics, convergence."""
    from losslab.stats import epochs_to_target, run_best_loss

    doc = {"seed": r.spec.seed, "lr": r.spec.optim.lr, **r.spec.changed(), "status": r.status,
           "epochs_run": r.epochs_run, "steps": r.optimizer_steps, "grad_evals": r.grad_evals,
           "elapsed_s": r.elapsed_s, **{k: v for k, v in r.metrics.items() if k != "confusion"}}
    if r.error:
        doc["error"] = r.error
    if r.node is not None:
        doc["node"] = r.node
    doc["diagnosis"] = [f.code for f in getattr(r, "diagnosis", [])]
    doc["best_loss"] = run_best_loss(r, task)
    doc["epochs_to_target"] = epochs_to_target(r.records, task, target)
    return doc


def context(command: str, cfg: Any, json_out: bool, quiet: bool = False) -> Any:
    """The output context of a command's run: its options, task and kind read from its config and the table."""
    from losslab.commands.table import is_many
    from losslab.outputs.sinks import OutputContext

    task = getattr(cfg, "task", None)  # (a command that trains nothing has none)
    return OutputContext(command, cfg, json_out, quiet, getattr(cfg, "out", None), getattr(cfg, "tensorboard", None),
                         task, is_many(command))


def entry_name(values: dict[str, Any], columns: Sequence[str]) -> str:
    """The name of a many-run document's entry from what tells its runs apart: a group's own name (an optimizer,
    a loss), or `lr=0.01,batch_size=32` for numbers."""
    if len(columns) == 1 and isinstance(values.get(columns[0]), str):
        return str(values[columns[0]])
    return ",".join(f"{c}={float(values[c]):g}" if isinstance(values[c], (int, float)) else f"{c}={values[c]}"
                    for c in columns)


def entries_document(entries: dict[str, dict[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    """The one shape every many-run document shares (what gate, diff and replay read): `entries` {name: {its
    summary…, "runs": [one document per run, by seed]}} and `entry_columns`, the history.csv columns whose values
    name an entry (`entry_name`)."""
    return {"entries": entries, "entry_columns": list(columns)}


def run_records(results: Sequence[Any], group_key: Optional[str]) -> list[dict[str, Any]]:
    """Per-epoch rows of many runs for history.csv, prefixed with what tells them apart (group, seed, lr)."""
    rows = []
    for r in results:
        head = {group_key: r.spec.group} if group_key else {}
        for rec in r.records:
            rows.append({**head, "seed": r.spec.seed, "lr": r.spec.optim.lr, **r.spec.changed(), **rec})
    return rows


# --- diagnosis -----------------------------------------------------------------------------------

def diagnosis_notes(findings: Sequence[Any]) -> list[str]:
    """The report's last lines: each finding with its suggestion, or that none was found."""
    if not findings:
        return ["diagnosis: nothing wrong found"]
    return ["diagnosis:"] + [f"  {f.line()}" for f in findings]


def layers_document(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each parameter tensor's gradient norm and update ratio at the last epoch (every model, however deep:
    history.csv has per-layer columns only for models with at most 32 tensors)."""
    last = records[-1] if records else {}
    return [{"name": key[len("grad_norm/"):], "grad_norm": value,
             "update_ratio": last.get("update_ratio/" + key[len("grad_norm/"):])}
            for key, value in last.items() if key.startswith("grad_norm/")]


def clipping_note(records: Sequence[Mapping[str, Any]], train: Any) -> list[str]:
    """How often gradient clipping changed the gradients (only when it was on)."""
    shares = [r["clipped"] for r in records if "clipped" in r]
    if not shares:
        return []
    options = [f"--clip-grad-norm {train.clip_grad_norm:g}"] if train.clip_grad_norm is not None else []
    options += [f"--clip-grad-value {train.clip_grad_value:g}"] if train.clip_grad_value is not None else []
    share = sum(shares) / len(shares)
    return [f"gradient clipping ({' and '.join(options)}) was active on {share:.0%} of the steps"]


def run_label(spec: Any, loss_name: Optional[str] = None) -> str:
    from losslab.engine.events import RunInfo

    return RunInfo("run", key=spec.key(loss_name)).label


def pooled_diagnosis(runs: Sequence[Any], loss_name: Optional[str] = None,
                     keep: Optional[Callable[[Any, Any], bool]] = None) -> list[dict[str, Any]]:
    """A many-run command's diagnosis: one entry per finding code, naming every run it was found in and giving
    the first such run's message and evidence; `keep(run, finding)` leaves out what is expected."""
    pooled: dict[str, dict[str, Any]] = {}
    for r in runs:
        for f in getattr(r, "diagnosis", []):
            if keep is not None and not keep(r, f):
                continue
            entry = pooled.setdefault(f.code, {**f.to_dict(), "runs": []})
            entry["runs"].append(run_label(r.spec, loss_name))
    return list(pooled.values())


def all_runs(runs: Mapping[str, Sequence[Any]]) -> list[Any]:
    return [r for rs in runs.values() for r in rs]


def pooled_notes(pooled: Sequence[Mapping[str, Any]]) -> list[str]:
    if not pooled:
        return ["diagnosis: nothing wrong found in any run"]
    lines = ["diagnosis:"]
    for entry in pooled:
        runs = entry["runs"]
        which = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        lines.append(f"  {entry['code']} in {len(runs)} run{'s' if len(runs) > 1 else ''} ({which}): "
                     f"{entry['message']}" + (f" — {entry['suggestion']}" if entry["suggestion"] else ""))
    return lines
