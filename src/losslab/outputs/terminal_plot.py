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
COLOURS = (("blue", 34), ("red", 31), ("green", 32), ("magenta", 35), ("cyan", 36), ("yellow", 33))  # (name, ANSI)
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
    `mark` (x, label) draws a vertical line (e.g. the suggested rate)."""
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
    if mark is not None and math.isfinite(mark[0]) and (mark[0] > 0 or not logx):
        plt.vertical_line(mark[0])
        top = max(ys) if not logy else max(ys) * 0.95
        xs_all = [x for _, s_x, _ in series for x in s_x]
        where = (lambda v: math.log10(v)) if logx else (lambda v: v)
        span = where(max(xs_all)) - where(min(xs_all))
        right = span > 0 and (where(mark[0]) - where(min(xs_all))) / span > 0.5
        # labelled where it is drawn, on the side with room
        plt.text(f"{mark[1]} →" if right else f"← {mark[1]}", x=mark[0], y=top,
                 alignment="right" if right else "left")
    if logx:
        plt.xscale("log")
        xs = [x for _, s_x, _ in series for x in s_x]
        lo, hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        step = max(1, (hi - lo) // 6)
        ticks = [10.0 ** e for e in range(lo, hi + 1, step)]
        plt.xticks(ticks, [f"{t:g}" for t in ticks])
    if logy:
        plt.yscale("log")
    plt.title(title + (" (log scale)" if logy else ""))
    plt.xlabel(xlabel)
    text = plt.build() if colour else _ANSI.sub("", plt.build())
    plt.clear_figure()
    plot = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")
    if len(series) == 1:
        return plot
    legend = "   ".join((f"\x1b[{code}m{marker}\x1b[0m" if colour else marker) + f" {label}"
                       for (label, _, _), marker, (_, code) in zip(series, markers, colours))
    return f"{plot}\n{legend}"


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
