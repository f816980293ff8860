"""Human display of training: a Rich live table in a terminal, plain progress lines elsewhere, final reports.

Everything here consumes per-epoch records and result objects; nothing here trains.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

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
        return epoch_table(self.columns, self._rows(), self.total, self.ctx)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.current = record
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

    def render(self, console: Console) -> None:
        if console.is_terminal:
            console.print(self.title, style="bold", markup=False, highlight=False)
            table = Table(header_style="bold")
            for i, h in enumerate(self.headers):
                table.add_column(h, justify="left" if i == 0 else "right")
            for row in self.rows:
                table.add_row(*row)
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
    if result.status == "diverged":
        notes.append(f"training diverged at epoch {result.diverged_epoch}: the loss became non-finite "
                     "(try a smaller --lr or --clip-grad-norm).")
    elif result.status == "interrupted":
        notes.append(f"interrupted after {result.epochs_run} epochs: the numbers above are from that point.")
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
    if result.status == "diverged":
        notes.append(f"training diverged at epoch {result.diverged_epoch}: the loss became non-finite "
                     "(try a smaller --lr or --clip-grad-norm).")
    elif result.status == "interrupted":
        notes.append(f"interrupted after {result.epochs_run} epochs: the numbers above are from that point.")
    notes += [o.describe() for o in outcomes]
    summary = Report(title, ["metric", "value"], summary_rows, [])
    support = [sum(row) for row in result.confusion]
    per_class = Report("per-class accuracy", ["class", "accuracy", "support"],
                       [[c, fmt(result.per_class_accuracy[c], ".4f"), str(n)]
                        for c, n in zip(result.classes, support)], [])
    confusion = Report("confusion matrix (rows: true class, columns: predicted)", ["true \\ pred", *result.classes],
                       [[c, *(str(v) for v in row)] for c, row in zip(result.classes, result.confusion)], notes)
    return [summary, per_class, confusion]
