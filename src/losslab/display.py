"""Human display of training: a Rich live table in a terminal, plain progress lines elsewhere, final reports.

Everything here consumes per-epoch records and result objects; nothing here trains.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from losslab.callbacks import Callback


def make_console(stderr: bool = False) -> Console:
    """Rich honours NO_COLOR and emits no ANSI codes when the stream is not a terminal."""
    return Console(stderr=stderr, highlight=False)


def fmt(value: Any, spec: str = ".6g") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return format(value, spec)
    return str(value)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    spec: str = ".6g"

    def cell(self, record: dict[str, Any], ctx: Optional[dict[str, Any]] = None) -> str:
        """`ctx` carries the run's `samples` and `first_epoch` for the rate columns."""
        ctx = ctx or {}
        t = record.get("elapsed_s") or 0.0
        epochs_done = record["epoch"] - ctx.get("first_epoch", 1) + 1
        if self.key == "it_s":
            return f"{epochs_done / t:,.0f}" if t > 0 else "—"
        if self.key == "samples_s":
            return f"{epochs_done * ctx.get('samples', 0) / t:,.0f}" if t > 0 else "—"
        if self.key == "elapsed_s":
            return f"{t:.2f}s"
        text = fmt(record.get(self.key), self.spec)
        if record.get(f"{self.key}_best"):
            text += "*"  # best so far (skorch marks it the same way)
        return text


def epoch_columns(extra: Sequence[Column]) -> list[Column]:
    """epoch, loss, <extra>, grad norm, lr, elapsed, it/s."""
    return [Column("epoch", "epoch", "d"), Column("train_loss", "loss"), *extra,
            Column("grad_norm", "grad norm", ".3g"), Column("lr", "lr", ".3g"),
            Column("elapsed_s", "elapsed"), Column("it_s", "it/s")]


def classify_columns() -> list[Column]:
    """epoch, train loss, val loss (* best), val acc, lr, elapsed, samples/s."""
    return [Column("epoch", "epoch", "d"), Column("train_loss", "train loss"), Column("valid_loss", "val loss"),
            Column("valid_acc", "val acc", ".4f"), Column("lr", "lr", ".3g"), Column("elapsed_s", "elapsed"),
            Column("samples_s", "samples/s")]


def epoch_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]], total: int,
                ctx: Optional[dict[str, Any]] = None) -> Table:
    """A pure function of the rows: the Live block only swaps it in."""
    table = Table(title=None, header_style="bold", show_edge=True)
    for c in columns:
        table.add_column(c.header, justify="right")
    for i, rec in enumerate(rows):
        cells = [c.cell(rec, ctx) for c in columns]
        cells[0] = f"{rec['epoch']}/{total}"
        style = "bold" if i == len(rows) - 1 else None
        if not math.isfinite(rec.get("train_loss", 0.0)):
            style = "bold red"
        table.add_row(*cells, style=style)
    return table


def plain_line(columns: Sequence[Column], record: dict[str, Any], total: int,
               ctx: Optional[dict[str, Any]] = None) -> str:
    parts = [f"epoch {record['epoch']}/{total}"]
    parts += [f"{c.header} {c.cell(record, ctx)}" for c in columns[1:]]
    return "  ".join(parts)


class ProgressDisplay(Callback):
    """Live table (at most ~10 refreshes a second) on a terminal; one plain line per interval otherwise."""

    def __init__(self, console: Console, columns: Sequence[Column], *, quiet: bool = False,
                 live: Optional[bool] = None, max_rows: int = 10):
        self.console = console
        self.columns = list(columns)
        self.quiet = quiet
        self.use_live = console.is_terminal if live is None else live
        self.max_rows = max_rows
        self.total = 0
        self.interval = 1
        self.milestones: list[dict[str, Any]] = []
        self.current: Optional[dict[str, Any]] = None
        self._live: Optional[Live] = None
        self.ctx: dict[str, Any] = {}
        self.batch: Optional[tuple[int, int, float]] = None  # progress inside the running epoch
        self.plain_every = 10.0  # seconds between in-epoch lines off a terminal (slow epochs only)
        self._last_line = time.perf_counter()

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.total = info["epochs"]
        self.ctx = {"samples": info.get("samples", 0), "first_epoch": info.get("first_epoch", 1)}
        self.interval = max(1, (self.total - self.ctx["first_epoch"] + 1) // self.max_rows)
        if self.quiet:
            return
        if self.use_live:
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=10,
                              transient=False, auto_refresh=True)
            self._live.start()

    def _rows(self) -> list[dict[str, Any]]:
        rows = list(self.milestones)
        cur = self.current
        if cur is not None and (not rows or rows[-1] is not cur):
            rows.append(cur)
        return rows

    def _render(self) -> Table:
        table = epoch_table(self.columns, self._rows(), self.total, self.ctx)
        if self.batch is not None:
            b, batches, loss = self.batch
            table.caption = f"epoch {self._running_epoch()}: batch {b}/{batches}, loss {fmt(loss, '.4g')}"
        return table

    def _running_epoch(self) -> int:
        return self.current["epoch"] + 1 if self.current else self.ctx.get("first_epoch", 1)

    def on_batch_end(self, batch: int, batches: int, loss: float) -> None:
        self.batch = (batch, batches, loss) if batch < batches else None
        if self.quiet or self.use_live or self.batch is None:
            return
        now = time.perf_counter()
        if now - self._last_line >= self.plain_every:  # a slow epoch still shows life in CI logs
            self._last_line = now
            self._print(f"epoch {self._running_epoch()}/{self.total}  batch {batch}/{batches}  loss {fmt(loss, '.4g')}")

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.current = record
        self.batch = None
        self._last_line = time.perf_counter()
        epoch = record["epoch"]
        finite = math.isfinite(record.get("train_loss", 0.0))
        if epoch % self.interval == 0 or epoch == self.ctx["first_epoch"] or not finite:
            self.milestones.append(record)
            if not self.quiet and not self.use_live:
                self._print(plain_line(self.columns, record, self.total, self.ctx))

    def on_train_end(self, status: str, records: list[dict[str, Any]]) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        elif self.current is not None and (not self.milestones or self.milestones[-1] is not self.current):
            self._print(plain_line(self.columns, self.current, self.total, self.ctx))
        if status != "ok":
            self._print(f"training {status} at epoch {self.current['epoch'] if self.current else 0}")

    def _print(self, text: str) -> None:
        print(text, file=self.console.file, flush=True)


# --- final reports -------------------------------------------------------------------------------

@dataclass
class Report:
    """A titled grid of strings plus notes: rendered as a Rich table or as aligned plain text."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str]
    best: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to highlight

    def render(self, console: Console) -> None:
        if console.is_terminal:
            console.print(self.title, style="bold", markup=False, highlight=False)
            table = Table(header_style="bold")
            for i, h in enumerate(self.headers):
                table.add_column(h, justify="left" if i == 0 else "right")
            for i, row in enumerate(self.rows):
                table.add_row(*(Text(c, style="bold green") if (i, j) in self.best else c
                                for j, c in enumerate(row)))
            console.print(table)
            for note in self.notes:
                console.print(note, markup=False)
        else:
            print(self.plain(), file=console.file, flush=True)

    def plain(self) -> str:
        grid = [self.headers] + self.rows
        widths = [max(len(r[i]) for r in grid) for i in range(len(self.headers))]
        lines = [self.title]
        for r in grid:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
        lines += self.notes
        return "\n".join(lines)


def status_notes(result: Any) -> list[str]:
    """What a single run's report says when it did not finish cleanly."""
    if result.status == "diverged":
        return [f"training diverged at epoch {result.diverged_epoch}: the loss became non-finite "
                "(try a smaller --lr or --clip-grad-norm)."]
    if result.status == "interrupted":
        return [f"interrupted after {result.epochs_run} epochs: the numbers above are from that point."]
    return []


def regress_report(result: Any, outcomes: Sequence[Any] = ()) -> Report:
    cfg = result.config
    rows = []
    for name, value in result.params.items():
        true = result.true_params.get(name) if result.true_params else None
        opt = result.optimum["params"][name]
        rows.append([name, fmt(value), fmt(true), fmt(opt), fmt(abs(value - opt), ".2e")])
    rows.append(["loss", fmt(result.final_loss), "—", fmt(result.optimum["loss"]),
                 fmt(abs(result.final_loss - result.optimum["loss"]), ".2e")])
    lr = fmt(cfg.optim.lr, "g")
    title = (f"losslab regress: {result.status} — {result.epochs_run} epochs in {result.elapsed_s:.2f} s "
             f"({cfg.optim.name}, lr {lr}, {cfg.loss.name} loss, {result.device})")
    notes = [f"data: {result.data_source}"]
    if cfg.loss.name != "mse":
        notes.append(f"note: the least-squares optimum minimises MSE; its {cfg.loss.name} loss is shown for comparison.")
    notes += status_notes(result)
    notes += [o.describe() for o in outcomes]
    return Report(title, ["param", "learned", "true", "least-squares", "|learned − optimum|"], rows, notes)


def print_failures(outcomes: Sequence[Any], stream: Any = None) -> None:
    for o in outcomes:
        if not o.passed:
            print(f"losslab: expectation {o.describe()}", file=stream or sys.stderr, flush=True)


def classify_report(result: Any, outcomes: Sequence[Any] = ()) -> list[Report]:
    """Summary, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    cfg = result.config
    restored = " (weights restored from it)" if result.restored_best else ""
    title = (f"losslab classify: {result.status} — {cfg.data.dataset}, {cfg.model.name}, {cfg.loss.name}, "
             f"{cfg.optim.name} lr {fmt(cfg.optim.lr, 'g')}: {result.epochs_run} epochs in {result.elapsed_s:.2f} s "
             f"on {result.device}")
    summary_rows = [["accuracy", f"{result.accuracy:.4f}"], ["validation loss", fmt(result.valid_loss)],
                    ["best epoch", f"{result.best_epoch}{restored}" if result.best_epoch else "—"]]
    notes = [f"data: {result.data_source}; validation: {result.split}"] + list(result.notes)
    if result.resumed_from is not None:
        notes.append(f"resumed from a checkpoint at epoch {result.resumed_from}")
    notes += status_notes(result)
    notes += [o.describe() for o in outcomes]
    summary = Report(title, ["metric", "value"], summary_rows, [])
    support = [sum(row) for row in result.confusion]
    per_class = Report("per-class accuracy", ["class", "accuracy", "support"],
                       [[c, fmt(result.per_class_accuracy[c], ".4f"), str(n)]
                        for c, n in zip(result.classes, support)], [])
    confusion = Report("confusion matrix (rows: true class, columns: predicted)", ["true \\ pred", *result.classes],
                       [[c, *(str(v) for v in row)] for c, row in zip(result.classes, result.confusion)], notes)
    return [summary, per_class, confusion]


# --- many trials ---------------------------------------------------------------------------------

class TrialsDisplay:
    """One live row per group (optimizer or learning rate): trial k of N, epoch, current loss, best so far.
    Off a terminal, one plain line per finished trial."""

    def __init__(self, console: Console, *, quiet: bool = False, live: Optional[bool] = None,
                 loss_key: str = "train_loss", label: str = "optimizer"):
        self.console = console
        self.quiet = quiet
        self.use_live = console.is_terminal if live is None else live
        self.loss_key = loss_key
        self.label = label
        self.rows: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self._live: Optional[Live] = None

    def plan(self, groups: Sequence[str], per_group: int) -> None:
        for g in groups:
            self.rows.setdefault(g, {"epoch": 0, "loss": None, "best": None, "status": "waiting"})
            self.totals[g] = per_group
            self.counts[g] = 0

    def __enter__(self) -> "TrialsDisplay":
        if not self.quiet and self.use_live:
            self._live = Live(get_renderable=self.table, console=self.console, refresh_per_second=10)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    def table(self) -> Table:
        table = Table(header_style="bold")
        for h in (self.label, "trial", "epoch", "loss", "best so far", "status"):
            table.add_column(h, justify="left" if h == self.label else "right")
        for g, row in list(self.rows.items()):
            table.add_row(g, f"{self.counts.get(g, 0)}/{self.totals.get(g, 0)}", str(row["epoch"]),
                          fmt(row["loss"]), fmt(row["best"]), row["status"])
        return table

    # TrialObserver hooks
    def on_trial_start(self, trial: Any, index: int, total: int) -> None:
        row = self.rows.setdefault(trial.group, {"epoch": 0, "loss": None, "best": None, "status": ""})
        self.totals.setdefault(trial.group, 1)
        self.counts[trial.group] = self.counts.get(trial.group, 0) + 1
        row.update(epoch=0, loss=None, status="running")

    def on_epoch(self, trial: Any, record: dict[str, Any]) -> None:
        row = self.rows[trial.group]
        loss = record.get(self.loss_key)
        row["epoch"], row["loss"] = record["epoch"], loss
        if loss is not None and math.isfinite(loss) and (row["best"] is None or loss < row["best"]):
            row["best"] = loss

    def on_trial_end(self, result: Any, index: int, total: int) -> None:
        g = result.trial.group
        self.rows[g]["status"] = result.status if result.status != "ok" else "done"
        if self.quiet or self.use_live:
            return
        final = result.metrics.get("final_loss")
        detail = f"  {result.error}" if result.error else ""
        print(f"[{index + 1}/{total}] {self.label} {g}  seed {result.trial.seed}  {result.status}  "
              f"final loss {fmt(final)}  epochs {result.epochs_run}  {result.elapsed_s:.2f}s{detail}",
              file=self.console.file, flush=True)


def _best_cells(summaries: Sequence[Any], columns: Sequence[tuple[int, Any, Any]]) -> set[tuple[int, int]]:
    """(row, column) of the best finite value in each given column; ties are all marked."""
    best: set[tuple[int, int]] = set()
    for col, value, pick in columns:
        values = [value(s) for s in summaries]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if finite:
            best.update((i, col) for i, v in enumerate(values) if v == pick(finite))
    return best


def compare_report(result: Any, outcomes: Sequence[Any] = ()) -> list[Report]:
    """Two tables so each fits a terminal: the ranking by final loss, then speed and what was learned."""
    cfg = result.config
    regress = cfg.task == "regression"
    param_names = [k for k in (result.summaries[0].extra if result.summaries else {}) if k not in
                   ("optimum_distance", "accuracy")]
    if len(param_names) > 3:
        param_names = []  # many weights: the distance from the optimum says it in one number
    ranking_headers = ["#", "optimizer", "lr", "final loss median", "IQR", "mean ± std", "best loss", "diverged"]
    ranking = []
    for i, s in enumerate(result.summaries, start=1):
        ranking.append([str(i), s.name, f"{s.lr:g}" + (" (tuned)" if s.lr_source == "tuned" else ""),
                        fmt(s.median, ".5g"), f"{fmt(s.q1, '.3g')}–{fmt(s.q3, '.3g')}",
                        f"{fmt(s.mean, '.4g')} ± {fmt(s.std, '.2g')}", fmt(s.best, ".5g"),
                        f"{s.diverged}/{len(s.finals)}" + (f" +{s.errors} errors" if s.errors else "")])
    target = f"epochs to {'loss' if regress else 'acc'} {fmt(result.target, '.4g')}"
    detail_headers = ["optimizer", target, "ms/epoch"] + (param_names + ["|θ − θ*|"] if regress else ["val acc"])
    detail = []
    for s in result.summaries:
        reach = "—" if s.epochs_to_target is None else f"{s.epochs_to_target:g} ({s.reached}/{len(s.finals)})"
        row = [s.name, reach, fmt(s.time_per_epoch * 1e3, ".3g") if math.isfinite(s.time_per_epoch) else "—"]
        if regress:
            row += [fmt(s.extra.get(p)) for p in param_names] + [fmt(s.extra.get("optimum_distance"), ".2e")]
        else:
            row += [fmt(s.extra.get("accuracy"), ".4f")]
        detail.append(row)
    task = "regression" if regress else f"classification ({cfg.run.data.dataset}, {cfg.run.model.name})"
    title = (f"losslab compare-optimizers: {result.status} — {task}, {cfg.seeds} seeds × "
             f"{cfg.run.train.epochs} epochs, ranked by median final loss ({result.elapsed_s:.1f} s)")
    notes = [f"data: {result.data_source}"]
    if regress and result.reference:
        ref = result.reference
        notes.append("least-squares optimum: " + ", ".join(f"{k}={v:.6g}" for k, v in ref["params"].items())
                     + f", loss {ref['loss']:.6g}")
    if len(result.summaries) > 1:
        top, second = result.summaries[0], result.summaries[1]
        if result.winner:
            notes.append(f"winner: {result.winner} — lower final loss than {second.name} on {result.wins} of "
                         f"{cfg.seeds} paired seeds")
        elif math.isfinite(top.median):
            notes.append(f"tie: {top.name} has the lowest median but beats {second.name} on only {result.wins} of "
                         f"{cfg.seeds} paired seeds (a winner needs a majority)")
        else:
            notes.append("no winner: every run diverged or failed")
    if result.tuning:
        t = result.tuning
        chosen = ", ".join(f"{k} {v:g}" if v is not None else f"{k} (all rates diverged; default kept)"
                           for k, v in t["chosen"].items())
        notes.append(f"tuning budget: {t['budget']}; chosen: {chosen}")
    for name, runs in result.runs.items():
        for r in runs:
            if r.status in ("error",):
                notes.append(f"{name} seed {r.trial.seed}: {r.error}")
    if result.status == "interrupted":
        notes.append("interrupted: trials that did not finish rank last and are marked in the JSON.")
    notes += [o.describe() for o in outcomes]
    last = len(detail_headers) - 1
    score = (lambda s: s.extra.get("optimum_distance", math.inf)) if regress else \
        (lambda s: s.extra.get("accuracy", -math.inf))
    ranking_best = _best_cells(result.summaries, [(3, lambda s: s.median, min), (6, lambda s: s.best, min)])
    detail_best = _best_cells(result.summaries, [(last, score, min if regress else max)])
    stacked = [name for name, runs in result.runs.items() if any(r.batch > 1 for r in runs)]
    if stacked:
        notes.append(f"stacked in one batched computation: {', '.join(stacked)} (ms/epoch is each run's share of it)")
    return [Report(title, ranking_headers, ranking, [], ranking_best),
            Report("convergence and result per optimizer (medians over seeds)", detail_headers, detail, notes,
                   detail_best)]


def grid_report(result: Any, outcomes: Sequence[Any] = ()) -> list[Report]:
    cfg = result.config
    regress = cfg.task == "regression"
    headers = ["lr", "final loss median", "IQR", "best loss", f"epochs to {'loss' if regress else 'acc'} "
               f"{fmt(result.target, '.4g')}", "diverged"] + ([] if regress else ["val acc"])
    rows, best = [], set()
    for i, s in enumerate(result.summaries):
        reach = "—" if s.epochs_to_target is None else f"{s.epochs_to_target:g} ({s.reached}/{len(s.finals)})"
        mark = " ← suggested" if s.lr == result.suggested_lr else ""
        row = [f"{s.lr:.3g}{mark}", fmt(s.median), f"{fmt(s.q1, '.3g')}–{fmt(s.q3, '.3g')}", fmt(s.best), reach,
               f"{s.diverged}/{len(s.finals)}" + (f" (+{s.errors} errors)" if s.errors else "")]
        if not regress:
            row.append(fmt(s.extra.get("accuracy"), ".4f"))
        rows.append(row)
        if s.lr == result.suggested_lr:
            best.update({(i, 0), (i, 1)})
    title = (f"losslab lr-sweep: {result.status} — {cfg.run.optim.name}, {len(result.summaries)} rates × "
             f"{cfg.seeds} seed(s) × {cfg.run.train.epochs} epochs in {result.elapsed_s:.1f} s "
             f"({'vectorized' if result.vectorized else 'sequential'})")
    notes = [f"data: {result.data_source}",
             f"suggested lr: {fmt(result.suggested_lr, '.3g')} (lowest median final loss; ties within 4 significant "
             "digits go to the rate that reaches the target sooner)",
             f"largest rate that did not diverge on any seed: {fmt(result.largest_stable_lr, '.3g')}"]
    if result.status == "interrupted":
        notes.append("interrupted: unfinished rates rank last and are marked in the JSON.")
    notes += [o.describe() for o in outcomes]
    return [Report(title, headers, rows, notes, best)]


def range_report(result: Any, outcomes: Sequence[Any] = ()) -> list[Report]:
    cfg = result.config
    rows = []
    for i, name in enumerate(("valley", "steepest", "min_loss/10")):
        s = result.suggestions[name]
        spread = "—" if s["median"] is None else (f"{s['min']:.3g}–{s['max']:.3g}" if len(result.runs) > 1 else "")
        label = name + (" (recommended)" if i == 0 and s["median"] is not None else "")
        rows.append([label, fmt(s["median"], ".3g"), spread])
    title = (f"losslab lr-sweep --range-test: {result.status} — {cfg.run.optim.name}, lr {cfg.min_lr:g} → "
             f"{cfg.max_lr:g} ({cfg.mode}) over {cfg.steps} steps, {len(result.runs)} seed(s), "
             f"{result.elapsed_s:.1f} s")
    stops = ", ".join(f"seed {r.seed}: {r.stopped} after {len(r.smoothed)} steps" for r in result.runs)
    notes = [f"data: {result.data_source}", f"stopped: {stops}",
             f"suggested lr: {fmt(result.recommended, '.3g')}",
             "model and optimizer state " + ("unchanged by the test (SHA-256 of parameters and optimizer state "
                                             "identical before and after)" if result.state_unchanged else
                                             "CHANGED by the test (hash mismatch)")]
    notes += [o.describe() for o in outcomes]
    return [Report(title, ["suggestion", "lr", "spread over seeds" if len(result.runs) > 1 else ""], rows, notes,
                   {(0, 1)} if rows and rows[0][1] != "—" else set())]
