"""Curves drawn in the terminal under the final report, with plotext: the same records the PNG plots draw, 78
columns wide. Each series has its own marker (one series: braille dots) and, on a colour terminal (`COLOUR`, set by
the command's output for a Rich console with colours; NO_COLOR and pipes get none), its own colour; a legend line
under the plot names them, so nothing sits on the curves."""

from __future__ import annotations

import contextvars
import math
import re
from typing import Optional, Sequence

Series = tuple[str, Sequence[float], Sequence[Optional[float]]]  # label, x, y (None: not measured)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDTH, HEIGHT = 78, 16
MARKERS = ("•", "+", "x", "o", "*", "#", "@", "%")  # one per series, in order
# (plotext's name, its 256-colour code): bright blue, not blue (dark on a dark terminal); no yellow (faint on light)
COLOURS = (("blue+", "38;5;12"), ("red", "38;5;1"), ("green", "38;5;2"), ("magenta", "38;5;5"), ("cyan", "38;5;6"),
           ("gray", "38;5;8"))
COLOUR: contextvars.ContextVar[bool] = contextvars.ContextVar("losslab_plot_colour", default=False)


def _finite(series: Sequence[Series], logx: bool) -> list[Series]:
    out: list[Series] = []
    for label, xs, ys in series:
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None and x is not None and math.isfinite(y)
               and math.isfinite(x) and (x > 0 or not logx)]
        if pts:
            out.append((label, [float(p[0]) for p in pts], [float(p[1]) for p in pts]))
    return out


def curves(series: Sequence[Series], *, title: str, xlabel: str, logx: bool = False,
           mark: Optional[tuple[float, str]] = None, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The series as one plot; y log-scaled when the values are positive and span more than two decades;
    `mark` (x, label) draws a vertical line (e.g. the suggested rate), named in the legend under the plot. Epochs
    get whole-number ticks, log axes powers of ten in scientific notation."""
    import plotext as plt

    series = _finite(series, logx)
    if not series:
        return ""
    ys = [y for _, _, s in series for y in s if y is not None]  # (_finite kept finite numbers only)
    logy = min(ys) > 0 and max(ys) / min(ys) > 100
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    markers = ["braille"] if len(series) == 1 else [MARKERS[i % len(MARKERS)] for i in range(len(series))]
    colour = COLOUR.get()
    colours = [COLOURS[i % len(COLOURS)] for i in range(len(series))]
    for (_, xs, s), marker, (name, _) in zip(series, markers, colours):
        plt.plot(list(xs), list(s), marker=marker,  # (no label: the legend goes under the plot)
                 **({"color": name} if colour else {}))
    marked = mark is not None and math.isfinite(mark[0]) and (mark[0] > 0 or not logx)
    if mark is not None and marked:
        plt.vertical_line(mark[0])  # (its label goes in the legend: text inside the plot lands on the curves)
    xs_all = [x for _, s_x, _ in series for x in s_x]
    if logx:
        plt.xscale("log")
        ticks = _decades(min(xs_all), max(xs_all))
        if len(ticks) >= 2:
            plt.xticks(ticks, [_number(t) for t in ticks])
    elif all(float(x).is_integer() for x in xs_all):  # epochs: whole numbers on the axis
        ticks = _nice(min(xs_all), max(xs_all))
        plt.xticks(ticks, [f"{t:g}" for t in ticks])
    if logy:
        plt.yscale("log")
        ticks = _decades(min(ys), max(ys))
        if len(ticks) >= 2:
            plt.yticks(ticks, [_number(t) for t in ticks])
    plt.title(title + (" (log scale)" if logy else ""))
    plt.xlabel(xlabel)
    text = plt.build() if colour else _ANSI.sub("", plt.build())
    plt.clear_figure()
    plot = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
    entries = [] if len(series) == 1 else [
        (f"\x1b[{code}m{marker}\x1b[0m" if colour else marker) + f" {label}"
        for (label, _, _), marker, (_, code) in zip(series, markers, colours)]
    if mark is not None and marked:
        entries.append(f"│ {mark[1]}")
    return f"{plot}\n{'   '.join(entries)}" if entries else plot


def _number(value: float) -> str:
    """An axis label: 0.01, 1, 100 as they are; 1e-05 and 2e+06 (not 0.00001) beyond."""
    return f"{value:g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _decades(lo: float, hi: float) -> list[float]:
    """The powers of ten within [lo, hi] (every k-th: at most 7)."""
    first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    step = max(1, math.ceil((last - first + 1) / 7))
    return [10.0 ** e for e in range(first, last + 1, step)]


def _nice(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round ticks (steps of 1, 2 or 5 × 10^k) from lo to hi: 1, 250, 500, 750, 1000 for epochs 1…1000."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / (most - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    step = max(1.0, step)
    ticks = [lo] + [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1) if lo < k * step <= hi]
    if ticks[-1] != hi and (hi - ticks[-1]) > step * 0.6:
        ticks.append(hi)
    elif ticks[-1] != hi:
        ticks[-1] = hi
    if len(ticks) > 2 and ticks[1] - ticks[0] < step / 2:  # (1 and 2 would crowd: keep the first epoch)
        del ticks[1]
    return ticks


def median_by_epoch(runs: Sequence[Sequence[dict]], key: str) -> tuple[list[float], list[float]]:
    """Per epoch, the median of `key` over the runs that recorded it (one curve per compared entry)."""
    import statistics

    by_epoch: dict[int, list[float]] = {}
    for records in runs:
        for r in records:
            v = r.get(key)
            if isinstance(v, float) and math.isfinite(v):
                by_epoch.setdefault(r["epoch"], []).append(v)
    epochs = sorted(by_epoch)
    return [float(e) for e in epochs], [statistics.median(by_epoch[e]) for e in epochs]
