"""Human display of training: a Rich live table in a terminal, plain progress lines elsewhere, final reports.

Everything here consumes per-epoch records and result objects; nothing here trains.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence, cast

from losslab.engine.events import Consumer, RunInfo
from losslab.outputs import pulse

if TYPE_CHECKING:  # rich is imported where a terminal needs it: off a terminal output is plain text
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table


class PlainConsole:
    """What output off a terminal needs of a console: its stream, and that it is not a terminal."""

    is_terminal = False

    def __init__(self, file: Any):
        self.file = file


def make_console(stderr: bool = False) -> "Console | PlainConsole":
    """A Rich console on a terminal (it honours NO_COLOR); plain text elsewhere, without importing Rich."""
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()) and not os.environ.get("FORCE_COLOR") and not os.environ.get("TTY_COMPATIBLE"):
        return PlainConsole(stream)
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def say(console: "Console | PlainConsole", text: str) -> None:
    """One line to the user; on a terminal through Rich, so that it lands above a live display, not inside it."""
    pulse.clear()
    if isinstance(console, PlainConsole):
        print(text, file=console.file, flush=True)
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    pulse.touch()


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
    wide_only: bool = False  # shown in the live table only where the terminal has room (WIDE columns)

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
        if self.key in ("layer_min", "layer_max"):
            return layer_extreme(record, smallest=self.key == "layer_min")
        if self.key.startswith("norm:"):  # the norm of collapsed parameters (named after the colon)
            values = [record.get(name) for name in self.key[len("norm:"):].split(",")]
            numbers = [v for v in values if isinstance(v, (int, float))]
            return fmt(math.hypot(*numbers), self.spec) if numbers else "—"
        text = fmt(record.get(self.key), self.spec)
        if record.get(f"{self.key}_best"):
            text += "*"  # best so far (skorch marks it the same way)
        return text


def layer_extreme(record: dict[str, Any], smallest: bool) -> str:
    """The smallest (or largest) per-layer gradient norm of a record, with the layer's name."""
    layers = [(v, k[len("grad_norm/"):]) for k, v in record.items() if k.startswith("grad_norm/")]
    if not layers:
        return "—"
    value, name = min(layers) if smallest else max(layers)
    return f"{value:.2g} {name}"


LAYER_COLUMNS = (Column("layer_min", "min layer grad", wide_only=True),
                 Column("layer_max", "max layer grad", wide_only=True))
WIDE = 120  # terminal columns from which the live table shows the wide_only columns


def epoch_columns(extra: Sequence[Column]) -> list[Column]:
    """epoch, loss, <extra>, grad norm, smallest and largest layer norm, lr, elapsed, it/s."""
    return [Column("epoch", "epoch", "d"), Column("train_loss", "loss"), *extra,
            Column("grad_norm", "grad norm", ".3g"), *LAYER_COLUMNS, Column("lr", "lr", ".3g"),
            Column("elapsed_s", "elapsed"), Column("it_s", "it/s")]


def classify_columns() -> list[Column]:
    """epoch, train loss, val loss (* best), val acc, smallest and largest layer norm, lr, elapsed, samples/s."""
    return [Column("epoch", "epoch", "d"), Column("train_loss", "train loss"), Column("valid_loss", "val loss"),
            Column("valid_acc", "val acc", ".4f"), *LAYER_COLUMNS, Column("lr", "lr", ".3g"),
            Column("elapsed_s", "elapsed"), Column("samples_s", "samples/s")]


CELL = 10  # the width a number cell is given in the live table ("8.3481e-05*")
OPTIONAL = ("it_s", "samples_s", "elapsed_s", "lr", "grad_norm")  # what a narrow live table leaves out, first first
STANDARD = ("epoch", "train_loss", "valid_loss", "valid_acc", "grad_norm", "layer_min", "layer_max", "lr",
            "elapsed_s", "it_s", "samples_s")


def fitted(columns: Sequence[Column], width: int, total: int) -> list[Column]:
    """The columns of a live table that fit `width`: the epoch counter and the losses always, in full; when the
    parameters do not fit, the first two of them and one `‖rest‖` column (the norm of the others)."""
    def needed(cols: Sequence[Column]) -> int:
        return sum(max(len(c.header), len(f"{total}/{total}") if c.key == "epoch" else CELL) + 3 for c in cols) + 1

    if needed(columns) <= width:
        return list(columns)
    out = list(columns)
    params = [c for c in columns if c.key not in STANDARD and not c.key.startswith("norm:")]
    if len(params) > 2:
        rest = params[2:]
        out = []
        for c in columns:
            if c in rest:
                if c is rest[0]:
                    out.append(Column("norm:" + ",".join(r.key for r in rest), f"‖{len(rest)} more‖"))
                continue
            out.append(c)
    for key in OPTIONAL:  # then the rates and times, last of all the gradient norm
        if needed(out) <= width:
            break
        out = [c for c in out if c.key != key]
    return out


def epoch_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]], total: int,
                ctx: Optional[dict[str, Any]] = None) -> "Table":
    """A pure function of the rows: the Live block only swaps it in. Every column keeps the width of its header
    and of a full number from the first frame (no cut values, no header on two lines, no width jumping)."""
    from rich.table import Table

    table = Table(title=None, header_style="bold", show_edge=True)
    for c in columns:
        full = len(f"{total}/{total}") if c.key == "epoch" else CELL
        table.add_column(c.header, justify="right", no_wrap=True, min_width=max(len(c.header), full))
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


def duration(seconds: float) -> str:
    """A time left as a person reads it: 8 s, 2 min 05 s, 1 h 04 min."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else "<1 s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def counted(n: int, word: str, plural: Optional[str] = None) -> str:
    """'1 seed', '3 seeds', '1 study', '5 studies': a count with its word in the right number."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def time_left(elapsed: float, done: float, total: float) -> str:
    """', about 12 s left' at the pace so far ('' before any progress or when nothing is left)."""
    left = total - done
    if done <= 0 or left <= 0 or not elapsed:
        return ""
    seconds = elapsed / done * left
    return f", about {duration(seconds)} left" if seconds >= 1 else ", less than a second left"


class Bar:
    """Rich's progress bar under a live table: how much of the work is done, and a line saying what (with the
    time left). Rendered inside the display's own Live block."""

    def __init__(self, width: int):
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(BarColumn(bar_width=max(10, min(30, width // 4))), TextColumn("{task.description}"),
                                 auto_refresh=False)
        self.task = self.progress.add_task("", total=1.0)

    def show(self, done: float, total: float, text: str) -> "Bar":
        self.progress.update(self.task, completed=done, total=max(total, 1e-9), description=text)
        return self

    def __rich__(self) -> Any:
        return self.progress.get_renderable()


SETTLE_S = 0.3  # seconds of steps after the first before the time left is shown (no flicker)


class Pace:
    """The time left at the pace since the first step: the first step carries the warm-up (torch's first forward
    and backward, the data's first pass) that would make the first estimates wild; '' until SETTLE_S of steps."""

    def __init__(self) -> None:
        self.first: Optional[tuple[float, float]] = None  # (time, work done) at the first step

    def step(self, done: float) -> None:
        if self.first is None:
            self.first = (time.perf_counter(), done)

    def left(self, done: float, total: float) -> str:
        if self.first is None:
            return ""
        since, at = self.first
        elapsed = time.perf_counter() - since
        return time_left(elapsed, done - at, total - at) if elapsed >= SETTLE_S else ""


class ProgressDisplay(Consumer):
    """Live table (at most ~10 refreshes a second) on a terminal; one plain line per interval otherwise."""

    def __init__(self, console: "Console | PlainConsole", columns: Sequence[Column], *, quiet: bool = False,
                 live: Optional[bool] = None, max_rows: int = 10):
        self.console = console
        self.quiet = quiet
        self.use_live = console.is_terminal if live is None else live
        width = getattr(console, "width", WIDE)
        narrow = self.use_live and width < WIDE  # an 80-column table stays readable
        self.columns = [c for c in columns if not (narrow and c.wide_only)]
        self.width = width
        self.max_rows = max_rows
        self.total = 0
        self.interval = 1
        self.milestones: list[dict[str, Any]] = []
        self.current: Optional[dict[str, Any]] = None
        self._live: Optional["Live"] = None
        self.ctx: dict[str, Any] = {}
        self.batch: Optional[tuple[int, int, float]] = None  # progress inside the running epoch
        self.plain_every = pulse.EVERY  # seconds between in-epoch lines off a terminal (slow epochs only)
        self._last_line = time.perf_counter()
        self.bar: Optional[Bar] = None
        # what the terminal had no room for (by identity: comparing columns as values is quadratic in the features)
        kept = {id(c) for c in self.columns}
        self.left_out = [c.header for c in columns if id(c) not in kept]

    def on_run_begin(self, run: RunInfo) -> None:
        self.total = run.epochs
        if self.use_live:  # the parameters that do not fit the terminal collapse into one column
            shown = fitted(self.columns, self.width, self.total)
            kept = {id(c) for c in shown}
            self.left_out += [c.header for c in self.columns if id(c) not in kept]
            self.columns = shown
        self.ctx = {"samples": run.samples, "first_epoch": run.first_epoch}
        self.milestones, self.current, self.batch = [], None, None
        self.pace = Pace()  # (in epochs)
        self.finished: Optional[str] = None  # how the run ended, for the bar's last frame
        self.interval = max(1, (self.total - self.ctx["first_epoch"] + 1) // self.max_rows)
        if self.quiet:
            return
        if not self.use_live:
            pulse.provide(self._says, self.console.file)
        else:
            from rich.live import Live

            pulse.clear()
            self._live = Live(get_renderable=self._render, console=cast("Console", self.console), refresh_per_second=10,
                              transient=False, auto_refresh=True)
            self._live.start(refresh=True)  # (the first frame now: "starting…" is seen)

    def _rows(self) -> list[dict[str, Any]]:
        rows = list(self.milestones)
        cur = self.current
        if cur is not None and (not rows or rows[-1] is not cur):
            rows.append(cur)
        return rows

    def _render(self) -> Any:
        from rich.console import Group

        table = epoch_table(self.columns, self._rows(), self.total, self.ctx)
        first = self.ctx.get("first_epoch", 1)
        done = self._done()
        if self.finished is not None:  # the bar ends where the run ended
            text = self.finished
        elif self.batch is not None:
            b, batches, loss = self.batch
            text = f"epoch {self._running_epoch()}/{self.total}: batch {b}/{batches}, loss {fmt(loss, '.4g')}" \
                   f"{self._eta()}"
        elif self.current is None:  # torch's first forward and backward take a moment: say so
            text = "starting: building the model, first step…"
        else:
            text = f"epoch {self.current['epoch']}/{self.total}{self._eta()}"
        if self.bar is None:
            self.bar = Bar(self.width)
        return Group(table, self.bar.show(done, self.total - first + 1, text))

    def _done(self) -> float:
        """Epochs done, the running epoch's batches as a fraction."""
        done = float(self.current["epoch"] - self.ctx.get("first_epoch", 1) + 1) if self.current else 0.0
        if self.batch is not None:
            done += self.batch[0] / self.batch[1]
        return done

    def _eta(self) -> str:
        """', about 12 s left' (`Pace`: since the first step, once settled; '' after the last epoch)."""
        return self.pace.left(self._done(), self.total - self.ctx.get("first_epoch", 1) + 1)

    def _says(self) -> str:
        """The heartbeat's words while this run trains (a line came from no epoch or batch for a while)."""
        if self.current is None and self.batch is None:
            return "starting: building the model, first step…"
        batch = f", batch {self.batch[0]}/{self.batch[1]}" if self.batch is not None else ""
        return f"epoch {self._running_epoch()}/{self.total}{batch}"

    def _running_epoch(self) -> int:
        return self.current["epoch"] + 1 if self.current else self.ctx.get("first_epoch", 1)

    def on_batch_end(self, run: RunInfo, epoch: int, batch: int, batches: int, loss: float) -> None:
        self.batch = (batch, batches, loss) if batch < batches else None
        self.pace.step(self._done())
        if self.quiet or self.use_live or self.batch is None:
            return
        now = time.perf_counter()
        if now - self._last_line >= self.plain_every:  # a slow epoch still shows life in CI logs
            self._last_line = now
            self._print(f"epoch {self._running_epoch()}/{self.total}  batch {batch}/{batches}  loss {fmt(loss, '.4g')}")

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> None:
        self.current = record
        self.batch = None
        self.pace.step(self._done())
        self._last_line = time.perf_counter()
        epoch = record["epoch"]
        finite = math.isfinite(record.get("train_loss", 0.0))
        if epoch % self.interval == 0 or epoch == self.ctx["first_epoch"] or not finite:
            self.milestones.append(record)
            if not self.quiet and not self.use_live:
                self._print(plain_line(self.columns, record, self.total, self.ctx) + self._eta().replace(",", " ", 1))

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        status = result.status
        pulse.provide(None)
        if self.quiet:
            return
        epoch = self.current["epoch"] if self.current else 0
        self.finished = {"ok": f"done: {epoch} epochs"}.get(status, f"{status} at epoch {epoch}/{self.total}")
        if getattr(result, "stopped_early", False):
            self.finished = f"stopped early at epoch {epoch}/{self.total} (no better validation loss)"
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
            if self.left_out:
                cast("Console", self.console).print(
                    f"(no room at {self.width} columns for: {', '.join(dict.fromkeys(self.left_out))}; every figure "
                    "is in --json and --out's history.csv)", style="dim")
                self.left_out = []
        elif self.current is not None and (not self.milestones or self.milestones[-1] is not self.current):
            self._print(plain_line(self.columns, self.current, self.total, self.ctx))
        if status != "ok":
            self._print(f"training {status} at epoch {self.current['epoch'] if self.current else 0}")

    def _print(self, text: str) -> None:
        print(text, file=self.console.file, flush=True)
        pulse.touch()


# --- final reports -------------------------------------------------------------------------------

@dataclass
class Report:
    """A titled grid of strings plus notes: rendered as a Rich table or as aligned plain text."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str]
    best: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to highlight
    text: frozenset[int] = frozenset()  # columns of words, aligned left (the first always is; numbers right)

    def render(self, stream: "Console | PlainConsole") -> None:
        pulse.clear()
        if stream.is_terminal:
            console = cast("Console", stream)
            console.print(self.title, style="bold", markup=False, highlight=False)
            from rich.table import Table
            from rich.text import Text

            # light rules and no_wrap numbers: the tables stay readable in an 80-column terminal
            table = Table(header_style="bold underline", box=None, pad_edge=False)
            for i, h in enumerate(self.headers):
                widest = max((len(row[i]) for row in self.rows), default=0)
                # headers wrap, numbers do not
                table.add_column(h, justify="left" if i == 0 or i in self.text else "right", min_width=widest)
            for i, row in enumerate(self.rows):
                table.add_row(*(Text(c, style="bold green") if (i, j) in self.best else c
                                for j, c in enumerate(row)))
            if self.headers and self._fits(console.width):  # (a report of lines only: a sample of text)
                console.print(table)
            elif self.headers:
                self._blocks(console)
            for note in self.notes:
                for line in note.split("\n"):
                    console.print(styled_note(line))
        else:
            print(self.plain(), file=stream.file, flush=True)

    def _fits(self, width: int) -> bool:
        """Whether every cell fits whole at this width (headers may wrap; a number must never be cut)."""
        widest = [max((len(row[i]) for row in self.rows), default=0) for i in range(len(self.headers))]
        return sum(widest) + 2 * (len(widest) - 1) <= width

    def _blocks(self, console: "Console") -> None:
        """Too wide for the terminal: one block per row, its first two cells (name and verdict, or name and the
        main number) on the first line, the other columns as `header value` pairs wrapped beneath it."""
        from rich.text import Text

        first = max(len(row[0]) for row in self.rows)
        for i, row in enumerate(self.rows):
            head = Text(row[0].ljust(first), style="bold")
            if len(row) > 1:
                head.append("  ")
                head.append(row[1], style="bold green" if (i, 1) in self.best else "")
            console.print(head)
            line = Text("    ")
            for j, (header, cell) in enumerate(zip(self.headers[2:], row[2:]), start=2):
                if not cell.strip():
                    continue
                pair = Text(f"{header} ", style="dim")
                pair.append(cell, style="bold green" if (i, j) in self.best else "")
                if len(line) > 4 and len(line) + 2 + len(pair) > console.width:
                    console.print(line)
                    line = Text("    ")
                line.append_text(Text("  ") if len(line) > 4 else Text(""))
                line.append_text(pair)
            if len(line) > 4:
                console.print(line)

    def plain(self) -> str:
        grid = [self.headers] + self.rows if self.headers else []
        widths = [max(len(r[i]) for r in grid) for i in range(len(self.headers))]
        lines = [self.title]
        for r in grid:
            cells = [c.ljust(w) if i == 0 or i in self.text else c.rjust(w)
                     for i, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join(cells).rstrip())
        lines += self.notes
        return "\n".join(lines)


# a note's opening words and their colour in a terminal (the words say it too: colour only helps the eye)
NOTE_STYLES = (("winner:", "bold green"), ("diagnosis: nothing wrong", "green"), ("diagnosis:", "bold yellow"),
               ("tie:", "yellow"), ("no clear winner", "yellow"), ("verdict:", "bold"), ("regressed", "bold red"))


def styled_note(line: str) -> Any:
    """A report note for a terminal: its opening words coloured (a winner green, a diagnosis yellow, a
    diagnosis's finding in bold), indented lines kept indented when they wrap."""
    from rich.padding import Padding
    from rich.text import Text

    body = line.lstrip(" ")
    indent = len(line) - len(body)
    text = Text(body)
    head = next(((words, style) for words, style in NOTE_STYLES if body.startswith(words)), None)
    if head is not None:
        end = body.find(" — ") if head[0] == "winner:" and " — " in body else len(head[0])
        text.stylize(head[1], 0, end)
    elif indent and body:  # a finding under "diagnosis:": its name stands out
        text.stylize("bold yellow", 0, len(body.split(" ", 1)[0]))
    return Padding(text, (0, 0, 0, indent)) if indent else text


def status_notes(result: Any) -> list[str]:
    """What a single run's report says when it did not finish cleanly."""
    if result.status == "diverged":
        return [f"training diverged at epoch {result.diverged_epoch}: the loss became non-finite "
                "(try a smaller --lr or --clip-grad-norm)."]
    if result.status == "interrupted":
        return [f"interrupted after {result.epochs_run} epochs: the numbers above are from that point."]
    if result.status == "error":
        return [f"failed: {getattr(result, 'error', None) or 'training raised'}; the epochs before it are kept."]
    return []




def print_failures(outcomes: Sequence[Any], stream: Any = None) -> None:
    for o in outcomes:
        if not o.passed:
            print(f"losslab: expectation {o.describe()}", file=stream or sys.stderr, flush=True)




# --- many trials ---------------------------------------------------------------------------------

class LiveBlock:
    """A display drawn in one Rich Live block (its `render()`) while its `with` lasts — on a terminal and unless
    quiet; the first frame at once, so "starting…" is seen."""

    console: Any
    quiet: bool
    use_live: bool
    _live: Optional["Live"]

    def render(self) -> Any:
        raise NotImplementedError

    def _says(self) -> Optional[str]:
        """What the heartbeat says off a terminal while this display works (`pulse`)."""
        return None

    def __enter__(self) -> Any:
        if not self.quiet and not self.use_live:
            pulse.provide(self._says, self.console.file)
        if not self.quiet and self.use_live:
            from rich.live import Live

            pulse.clear()
            self._live = Live(get_renderable=self.render, console=cast("Console", self.console), refresh_per_second=10)
            self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        pulse.provide(None)
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None


class TrialsDisplay(LiveBlock, Consumer):
    """One live row per group (optimizer, loss or learning rate): runs done of N, the running run's epoch, its
    current loss, the best so far; under it a progress bar over every run with the time left. Off a terminal,
    one plain line per finished run, with the time left, and a line at least every `pulse.EVERY` seconds while
    runs train (stacked runs can take minutes without finishing one: `pulse`)."""

    def __init__(self, console: "Console | PlainConsole", *, quiet: bool = False, live: Optional[bool] = None,
                 loss_key: str = "train_loss", label: str = "optimizer"):
        self.console = console
        self.quiet = quiet
        self.use_live = console.is_terminal if live is None else live
        self.loss_key = loss_key
        self.label = label
        self.rows: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.share: dict[int, float] = {}  # each run's part done (epochs run / epochs), by run index
        self.runs = 0
        self.started: Optional[float] = None
        self.bar: Optional[Bar] = None
        self._live: Optional["Live"] = None
        self.context = ""  # what the runs now belong to, shown with the progress (a benchmark's problem)
        self.part: Optional[tuple[int, int, float]] = None  # (first run, runs, start): the time left is of this part
        self.pace = Pace()  # (in runs)

    def plan(self, groups: Sequence[str], per_group: int) -> None:
        for g in groups:
            self.rows.setdefault(g, {"epoch": 0, "epochs": 0, "loss": None, "best": None, "status": "waiting",
                                     "done": 0})
            self.totals[g] = per_group
            self.counts[g] = 0
        self.runs = len(groups) * per_group

    def table(self) -> "Table":
        from rich.table import Table

        table = Table(header_style="bold")
        loss = "val loss" if self.loss_key == "valid_loss" else "train loss"
        for h in (self.label, "runs done", "epoch", f"{loss} (latest)", "best so far", "status"):
            table.add_column(h, justify="left" if h == self.label else "right")
        for g, row in list(self.rows.items()):
            epoch = f"{row['epoch']}/{row['epochs']}" if row.get("epochs") else str(row["epoch"])
            table.add_row(g, f"{row.get('done', 0)}/{self.totals.get(g, 0)}", epoch, fmt(row["loss"]),
                          fmt(row["best"]), row["status"])
        return table

    def _says(self) -> str:
        """The heartbeat's words off a terminal (a CI log that speaks while stacked runs finish none for
        minutes): runs done, the time left, and the epoch each running group is at."""
        if self.started is None:
            return "starting: building the models, first step…"
        running = [f"{g} epoch {r['epoch']}/{r['epochs']}" if r.get("epochs") else f"{g} epoch {r['epoch']}"
                   for g, r in list(self.rows.items()) if r.get("status") == "running"]
        where = f"{self.context}: " if self.context else ""
        return f"{where}{self.progress()}" + (f"; training {', '.join(running)}" if running else "")

    def begin_part(self, name: str, first: int, runs: int) -> None:
        """Runs `first`… (`runs` of them) are one part of unlike cost (a benchmark's problem): the time left is
        then this part's, at its own pace."""
        self.context, self.part = name, (first, runs, time.perf_counter())

    def progress(self) -> str:
        """'3 of 13 runs done, about 12 s left' (the time left at the pace of the epochs run so far; of the part
        running, when the runs come in parts)."""
        finished = sum(1 for v in self.share.values() if v >= 1.0)
        if self.part is not None:
            first, runs, start = self.part
            done = sum(v for i, v in self.share.items() if first <= i < first + runs)
            left = time_left(time.perf_counter() - start, done, runs).replace(" left", f" left in {self.context}")
            return f"{finished} of {self.runs} runs done{left or ', ' + self.context}"
        return f"{finished} of {self.runs} runs done{self.pace.left(sum(self.share.values()), self.runs)}"

    def render(self) -> Any:
        from rich.console import Group

        if self.bar is None:
            self.bar = Bar(getattr(self.console, "width", WIDE))
        text = self.progress() if self.started is not None else "starting: building the models, first step…"
        return Group(self.table(), self.bar.show(sum(self.share.values()), self.runs, text))

    def on_run_begin(self, run: RunInfo) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        self.runs = max(self.runs, run.total)
        row = self.rows.setdefault(run.group, {"epoch": 0, "loss": None, "best": None, "status": "", "done": 0})
        self.totals.setdefault(run.group, 1)
        self.counts[run.group] = self.counts.get(run.group, 0) + 1
        self.share[run.index] = 0.0
        row.update(epoch=0, epochs=run.epochs, loss=None, status="running")

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> None:
        row = self.rows[run.group]
        loss = record.get(self.loss_key)
        row["epoch"], row["loss"] = record["epoch"], loss
        if run.epochs:
            self.share[run.index] = min(1.0, record["epoch"] / run.epochs)
        self.pace.step(sum(self.share.values()))
        if not math.isfinite(record.get("train_loss", 0.0)):
            row["status"] = "diverged"  # stacked runs end together: say it now, not at the end
        if loss is not None and math.isfinite(loss) and (row["best"] is None or loss < row["best"]):
            row["best"] = loss

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        g = run.group
        row = self.rows.setdefault(g, {"epoch": 0, "loss": None, "best": None, "status": "", "done": 0})
        row["done"] = row.get("done", 0) + 1
        self.share[run.index] = 1.0  # (a run that stopped early or diverged is done too)
        if self.started is None:
            self.started = time.perf_counter()
        still = self.counts.get(g, 0) > row["done"] or row["done"] < self.totals.get(g, 0)
        row["status"] = result.status if result.status != "ok" else ("running" if still else "done")
        if self.quiet or self.use_live:
            return
        final = result.metrics.get("final_loss")
        detail = f"  {result.error}" if result.error else ""
        progress = self.progress().split(", ", 1)
        where = f"{self.context}: " if self.context else ""
        left = progress[1] if len(progress) > 1 and progress[1] != self.context else ""
        print(f"[{run.index + 1}/{run.total}] {where}{self.label} {g}  seed {run.seed}  {result.status}  "
              f"final loss {fmt(final)}  epochs {result.epochs_run}  {result.elapsed_s:.2f}s{detail}"
              f"{'  (' + left + ')' if left else ''}", file=self.console.file, flush=True)
        pulse.touch()


class RangeDisplay(LiveBlock, Consumer):
    """The range test's progress: one live row per seed (step k of N, its rate and loss), a progress bar over
    every seed's steps with the time left. A step is a mini-batch (batch events) or, full-batch, an epoch."""

    def __init__(self, console: "Console | PlainConsole", lrs: Sequence[float], seeds: int, *, quiet: bool = False,
                 live: Optional[bool] = None):
        self.console, self.lrs, self.seeds, self.quiet = console, list(lrs), seeds, quiet
        self.use_live = console.is_terminal if live is None else live
        self.rows: dict[int, dict[str, Any]] = {}
        self.batched: set[int] = set()  # runs whose steps come as batch events
        self.started: Optional[float] = None
        self.bar: Optional[Bar] = None
        self._live: Optional["Live"] = None
        self._last_line = time.perf_counter()
        self.plain_every = pulse.EVERY

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        table = Table(header_style="bold")
        steps = len(self.lrs)
        for h in ("seed", "step", "lr", "loss (latest)", "lowest (raw)", "status"):
            table.add_column(h, justify="right", no_wrap=True,
                             min_width=len(f"{steps}/{steps}") if h == "step" else CELL if h != "seed" else 4)
        for seed, row in self.rows.items():
            table.add_row(str(seed), f"{row['step']}/{steps}", fmt(row["lr"], ".3g"), fmt(row["loss"], ".6g"),
                          fmt(row["best"], ".6g"), row["status"])
        if self.bar is None:
            self.bar = Bar(getattr(self.console, "width", WIDE))
        return Group(table, self.bar.show(self.done(), self.seeds * steps, self.progress()))

    def _says(self) -> str:
        return f"range test: {self.progress()}"

    def done(self) -> float:
        return sum(len(self.lrs) if row["status"] != "running" else row["step"] for row in self.rows.values())

    def progress(self) -> str:
        if self.started is None:
            return "starting: building the model, first step…"
        steps = self.seeds * len(self.lrs)
        return (f"step {int(self.done())} of {steps} ({self.seeds} seed{'s' if self.seeds > 1 else ''})"
                f"{time_left(time.perf_counter() - self.started, self.done(), steps)}")

    def on_run_begin(self, run: RunInfo) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        self.rows[run.seed] = {"step": 0, "lr": None, "loss": None, "best": None, "status": "running"}

    def _step(self, run: RunInfo, loss: float) -> None:
        row = self.rows[run.seed]
        row["step"] += 1
        row["lr"] = self.lrs[min(row["step"], len(self.lrs)) - 1]
        row["loss"] = loss
        if math.isfinite(loss) and (row["best"] is None or loss < row["best"]):
            row["best"] = loss
        now = time.perf_counter()
        if not self.quiet and not self.use_live and now - self._last_line >= self.plain_every:
            self._last_line = now
            print(f"range test seed {run.seed}: step {row['step']}/{len(self.lrs)}  lr {fmt(row['lr'], '.3g')}  "
                  f"loss {fmt(loss, '.4g')}  {self.progress().split(', ', 1)[-1]}", file=self.console.file, flush=True)
            pulse.touch()

    def on_batch_end(self, run: RunInfo, epoch: int, batch: int, batches: int, loss: float) -> None:
        self.batched.add(run.index)
        self._step(run, loss)

    def on_epoch_end(self, run: RunInfo, record: dict[str, Any]) -> None:
        if run.index not in self.batched:
            self._step(run, record.get("train_loss", math.nan))

    def on_run_end(self, run: RunInfo, result: Any) -> None:
        row = self.rows.get(run.seed)
        if row is not None:
            row["status"] = "interrupted" if result.status == "interrupted" else "done"


def best_cells(summaries: Sequence[Any], columns: Sequence[tuple[int, Any, Any]]) -> set[tuple[int, int]]:
    """(row, column) of the best finite value in each given column; ties are all marked."""
    best: set[tuple[int, int]] = set()
    for col, value, pick in columns:
        values = [value(s) for s in summaries]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if finite:
            best.update((i, col) for i, v in enumerate(values) if v == pick(finite))
    return best


def median_cell(summary: Any) -> str:
    """A summary's median final loss as a table shows it: where interrupted runs stood, marked, rather than inf."""
    if not math.isfinite(summary.median) and getattr(summary, "stood", None) is not None:
        return f"{fmt(summary.stood, '.5g')} (stopped)"
    return fmt(summary.median, ".5g")


def iqr_cell(summary: Any) -> str:
    """A summary's interquartile range as a table shows it: '—' for one seed (a range of one value says
    nothing)."""
    if len(getattr(summary, "finals", ())) < 2:
        return "—"
    return f"{fmt(summary.q1, '.3g')}–{fmt(summary.q3, '.3g')}"


def epochs_text(n: int) -> str:
    """"1 epoch", "3 epochs"."""
    return counted(n, "epoch")
