"""Matplotlib figures from per-epoch records; imported only when a plot is asked for."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from matplotlib.figure import Figure

_captured: Optional[list[Any]] = None  # while `captured()` runs: the figures drawn, kept instead of saved


@contextmanager
def captured() -> Iterator[list[Any]]:
    """Draw without saving: every figure a plot function finishes is kept open in the list (the Python API's
    `Result.plot()` returns it)."""
    global _captured
    _captured = []
    try:
        yield _captured
    finally:
        _captured = None


class ShownFigure(Figure):
    """A matplotlib Figure that a notebook shows as its PNG once, whatever the backend: pyplot never holds it (no
    second copy when a cell ends, no switch of the user's backend), and without a figure formatter of IPython's
    (pyplot never imported) it shows itself."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def png_bytes(fig: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], dpi: int = 100,
              **kwargs: Any) -> tuple[Any, Any]:
    """pyplot.subplots without pyplot: the figure belongs to the caller alone (the worker threads and processes
    that draw need no backend)."""
    fig = ShownFigure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig: Any, path: Any) -> None:
    if _captured is not None:
        _captured.append(fig)
        return
    fig.savefig(path, format="png")


def loss_curve(records: Sequence[Mapping[str, Any]], path: Path, title: str = "training loss",
               reference: float | None = None, reference_label: str = "least-squares optimum") -> None:
    """Log-scale training loss per epoch, with an optional horizontal reference line."""
    pts = [(r["epoch"], r["train_loss"]) for r in records if _positive(r.get("train_loss"))]
    fig, ax = _subplots(figsize=(7, 4.2), dpi=100)
    if pts:
        ax.plot(*zip(*pts), lw=1.6, label="train loss")
    if reference is not None and _positive(reference):
        ax.axhline(reference, color="tab:green", ls="--", lw=1, label=f"{reference_label} ({reference:.4g})")
    _finish(ax, path, xlabel="epoch", ylabel="loss", title=title)


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _finish(ax: Any, path: Path, *, xlabel: str, ylabel: str, title: str = "", logx: bool = False,
            logy: bool = True, legend_size: Any = None) -> None:
    """Axis labels, scales, grid and legend, then save as PNG and free the figure."""
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig = ax.figure
    fig.tight_layout()
    _save(fig, path)


def classification_curves(records: Sequence[Mapping[str, Any]], path: Path, title: str = "",
                          best_epoch: int | None = None) -> None:
    """Train and validation loss (log scale) beside validation accuracy, the best epoch marked."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = _subplots(1, 2, figsize=(10, 4), dpi=100)
    for key, label in (("train_loss", "train loss"), ("valid_loss", "validation loss")):
        pts = [(e, r[key]) for e, r in zip(epochs, records) if _positive(r.get(key))]
        if pts:
            ax_loss.plot(*zip(*pts), lw=1.6, label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    acc = [(e, r["valid_acc"]) for e, r in zip(epochs, records) if r.get("valid_acc") is not None]
    if acc:
        ax_acc.plot(*zip(*acc), lw=1.6, color="tab:green", label="validation accuracy")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", ls=":", lw=1, label=f"best epoch {best_epoch}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig = ax.figure
    fig.tight_layout()
    _save(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> None:
    """Counts with rows = true class and columns = predicted class."""
    k = len(classes)
    fig, ax = _subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.55 * k), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if peak and v > 0.6 * peak else "black")
    ax.set_xticks(range(k), classes, rotation=45 if max(map(len, classes)) > 3 else 0)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig = ax.figure
    fig.tight_layout()
    _save(fig, path)


def median_curves(curves: Mapping[str, Sequence[Sequence[float]]], path: Path, title: str = "",
                  ylabel: str = "loss") -> None:
    """Per group, the median over seeds of a per-epoch curve with an interquartile band (log scale).
    Runs that stopped early (divergence) count as +inf afterwards, so they pull the band up, not out."""
    import numpy as np

    fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
    for name, runs in curves.items():
        runs = [list(r) for r in runs if len(r)]
        if not runs:
            continue
        length = max(len(r) for r in runs)
        grid = np.full((len(runs), length), np.inf)
        for i, r in enumerate(runs):
            grid[i, :len(r)] = [v if math.isfinite(v) else np.inf for v in r]
        with np.errstate(invalid="ignore"):  # inf (unfinished runs) minus inf is nan there: not drawn
            q1, med, q3 = np.percentile(grid, [25, 50, 75], axis=0)
        epochs = np.arange(1, length + 1)
        shown = np.isfinite(med) & (med > 0)
        if shown.any():
            (line,) = ax.plot(epochs[shown], med[shown], lw=1.6, label=name)
            band = shown & np.isfinite(q3) & (q1 > 0)
            ax.fill_between(epochs[band], q1[band], q3[band], color=line.get_color(), alpha=0.2, lw=0)
    _finish(ax, path, xlabel="epoch", ylabel=f"{ylabel} (median, IQR band)", title=title)


def loss_vs_lr(points: Mapping[str, Sequence[tuple[float, float]]], path: Path, title: str = "",
               marks: Mapping[str, float] | None = None, ylabel: str = "final loss") -> None:
    """Final loss against learning rate (log-log) per group; non-finite losses drawn as x at the top."""
    fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
    finite_all = [v for pts in points.values() for _, v in pts if _positive(v)]
    top = max(finite_all) * 3 if finite_all else 1.0
    for name, pts in points.items():
        ok = [(lr, v) for lr, v in pts if _positive(v)]
        bad = [lr for lr, v in pts if not _positive(v)]
        (line,) = ax.plot(*zip(*ok), marker="o", ms=4, lw=1.2, label=name) if ok else ax.plot([], [], label=name)
        if bad:
            ax.scatter(bad, [top] * len(bad), marker="x", color=line.get_color(), label=f"{name} diverged")
        if marks and marks.get(name) is not None:
            ax.axvline(marks[name], color=line.get_color(), ls=":", lw=1)
    _finish(ax, path, xlabel="learning rate", ylabel=ylabel, title=title, logx=True, legend_size=8)


def sweep_plot(points: Sequence[tuple[Optional[float], float, str]], path: Path, suggested: float | None,
               title: str = "", ylabel: str = "final loss") -> None:
    """Final loss against learning rate (log x): one dot per seed, diverged runs as red x, suggestion marked."""
    fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
    ok = [(lr, v) for lr, v, status in points if status == "ok" and _positive(v)]
    bad = [lr for lr, v, status in points if not (status == "ok" and _positive(v))]
    top = max((v for _, v in ok), default=1.0) * 3
    if ok:
        ax.scatter(*zip(*ok), s=18, label="run (one per seed)")
    if bad:
        ax.scatter(bad, [top] * len(bad), marker="x", color="tab:red", label="diverged / failed")
    if suggested is not None:
        ax.axvline(suggested, color="tab:green", ls="--", lw=1.2, label=f"suggested {suggested:.3g}")
    _finish(ax, path, xlabel="learning rate", ylabel=ylabel, title=title, logx=True)


def heat_map(values: Sequence[Sequence[float]], rates: Sequence[float], rows: Sequence[str], path: Path,
             marks: Sequence[Optional[int]], title: str = "", ylabel: str = "") -> None:
    """A grid of values (one row per `rows` label, one column per rate; log colour scale, non-finite cells blank
    and hatched), the cell `marks[i]` of each row circled."""
    import numpy as np
    from matplotlib.colors import LogNorm

    data = np.array([[v if _positive(v) else np.nan for v in row] for row in values], dtype=float)
    fig, ax = _subplots(figsize=(8, 2.4 + 0.45 * len(rows)), dpi=100)
    finite = data[np.isfinite(data)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size and finite.min() < finite.max() else None
    ax.set_facecolor("0.85")  # (cells without a finite loss: diverged or failed)
    image = ax.imshow(data, aspect="auto", cmap="viridis_r", norm=norm, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="loss (grey: none)")
    for i, j in enumerate(marks):
        if j is not None:
            ax.scatter([j], [i], s=140, facecolors="none", edgecolors="tab:red", linewidths=2)
    ax.set_xticks(range(len(rates)), [f"{lr:.2g}" for lr in rates], rotation=60, fontsize=7)
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def range_test_plot(curves: Sequence[tuple[Sequence[float], Sequence[float]]], path: Path,
                    marks: Mapping[str, float | None], title: str = "",
                    raw: Sequence[tuple[Sequence[float], Sequence[float]]] = ()) -> None:
    """Smoothed loss against learning rate (log x) per seed, the raw loss faint beneath it (the live table's
    figures are raw: both are on the picture, labelled), each suggestion marked."""
    fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
    for i, (lrs, losses) in enumerate(raw):
        ax.plot(lrs, losses, lw=0.8, color="gray", alpha=0.35, label="loss (raw)" if i == 0 else None)
    for i, (lrs, losses) in enumerate(curves):
        ax.plot(lrs, losses, lw=1.4, alpha=0.9 if len(curves) == 1 else 0.6,
                label="smoothed loss (EMA)" if i == 0 else None)
    styles = {"valley": ("tab:green", "--"), "steepest": ("tab:orange", ":"), "min_loss/10": ("tab:purple", "-.")}
    for name, lr in marks.items():
        if lr is not None:
            color, ls = styles.get(name, ("gray", ":"))
            ax.axvline(lr, color=color, ls=ls, lw=1.2, label=f"{name} {lr:.3g}")
    _finish(ax, path, xlabel="learning rate", ylabel="loss", title=title, logx=True, logy=False)


def regression_fits(x: Any, y: Any, outliers: Any, lines: Mapping[str, tuple[Any, Any]], truth: Any, path: Path,
                    title: str = "") -> None:
    """The training data (outliers marked) with each loss's fitted line and the true line."""
    import numpy as np

    fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
    mask = np.zeros(len(x), dtype=bool)
    if outliers is not None and len(outliers):
        mask[np.asarray(outliers)] = True
    ax.scatter(x[~mask], y[~mask], s=10, color="gray", alpha=0.6, label="data")
    if mask.any():
        ax.scatter(x[mask], y[mask], s=18, color="tab:red", marker="x", label="outliers")
    grid = np.linspace(float(np.min(x)), float(np.max(x)), 50)
    if truth:
        ax.plot(grid, truth["w"] * grid + truth["b"], color="black", ls="--", lw=1.2, label="truth")
    for name, (w, b) in lines.items():
        if w is not None and b is not None and math.isfinite(w) and math.isfinite(b):
            ax.plot(grid, w * grid + b, lw=1.6, label=f"{name}: w={w:.3g}, b={b:.3g}")
    _finish(ax, path, xlabel="x", ylabel="y", title=title, logy=False, legend_size=8)


@dataclass
class Surface:
    """A loss landscape to draw: the loss along a line, or on a grid (rows over ys, columns over xs)."""

    mode: str  # line, surface, plane
    axes: Sequence[str]
    xs: Sequence[float]
    ys: Sequence[float]
    train: Any
    valid: Any
    paths: Sequence[tuple[str, Sequence[Sequence[float]]]]  # (name, coordinates per snapshot)
    optimum: Optional[Sequence[float]]


def landscape_plot(view: Surface, path: Path) -> None:
    """A loss landscape: the loss along a line (training and validation), or filled contours of the training loss
    on a grid (log-spaced levels when it spans decades) with each optimizer's path and the optimum marked."""
    import numpy as np

    mode, axes, xs, ys, train, valid, paths, optimum = (view.mode, view.axes, view.xs, view.ys, view.train,
                                                        view.valid, view.paths, view.optimum)

    if mode == "line":
        fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
        ax.plot(xs, train, lw=1.6, label="training loss")
        if valid is not None:
            ax.plot(xs, valid, lw=1.6, label="validation loss")
        for t, name in ((0.0, "initial"), (1.0, "final")):
            ax.axvline(t, color="0.5", lw=0.8, ls="--")
            ax.annotate(name, (t, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
        positive = all(v > 0 for v in train if math.isfinite(v))
        _finish(ax, path, xlabel=axes[0], ylabel="loss", title="loss along the line", logy=positive)
        return
    z = np.array(train, dtype=float)
    z = np.where(np.isfinite(z), z, np.nan)
    fig, ax = _subplots(figsize=(7, 6), dpi=100)
    finite = z[np.isfinite(z)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        levels = np.geomspace(finite.min(), finite.max(), 25)
        from matplotlib.colors import LogNorm

        filled = ax.contourf(xs, ys, z, levels=levels, norm=LogNorm(), cmap="viridis")
    else:
        filled = ax.contourf(xs, ys, z, levels=25, cmap="viridis")
    ax.contour(xs, ys, z, levels=filled.levels, colors="white", linewidths=0.3, alpha=0.5)
    fig.colorbar(filled, ax=ax, label="training loss")
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    for i, (name, coords) in enumerate(paths):
        pts = np.array(coords, dtype=float)
        ax.plot(pts[:, 0], pts[:, 1], lw=1.4, marker=markers[i % len(markers)], markevery=max(1, len(pts) // 12),
                ms=4, label=name)
        ax.plot(pts[0, 0], pts[0, 1], "k.", ms=6)
    if optimum is not None:
        ax.plot([optimum[0]], [optimum[1]], marker="*", color="red", ms=14, ls="", label="least-squares optimum")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title("loss surface" + (" and optimizer paths (same start, same data order)" if paths else ""))
    if paths or optimum is not None:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, path)


def sharpness_plot(records: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> None:
    """The sharpness (top Hessian eigenvalue) where it was measured, against 2/lr: gradient descent on a quadratic
    is stable only below that line (log scale)."""
    points = [(r["epoch"], r["sharpness"]) for r in records
              if isinstance(r.get("sharpness"), (int, float)) and math.isfinite(r["sharpness"])]
    limit = [(r["epoch"], 2 / r["lr"]) for r in records if r.get("lr")]
    fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
    if points:
        ax.plot(*zip(*points), marker="o", ms=3, lw=1.6, label="sharpness λmax")
    if limit:
        ax.plot(*zip(*limit), ls="--", color="red", lw=1.2, label="2 / lr (stability limit of gradient descent)")
    _finish(ax, path, xlabel="epoch", ylabel="λmax", title=title or "sharpness against 2/lr")


def sharpness_groups_plot(groups: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], path: Path,
                          title: str = "") -> None:
    """Per group (optimizer, rate), the median sharpness over its runs where measured, and its 2/lr line dashed in
    the same colour (log scale)."""
    import statistics

    fig, ax = _subplots(figsize=(8, 4.5), dpi=100)
    for name, runs in groups.items():
        by_epoch: dict[int, list[float]] = {}
        lrs: list[float] = []
        for records in runs:
            for r in records:
                if isinstance(r.get("sharpness"), (int, float)) and math.isfinite(r["sharpness"]):
                    by_epoch.setdefault(r["epoch"], []).append(r["sharpness"])
                if r.get("lr"):
                    lrs.append(r["lr"])
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        (line,) = ax.plot(epochs, [statistics.median(by_epoch[e]) for e in epochs], marker="o", ms=3, lw=1.4,
                          label=f"{name}: λmax")
        if lrs:
            ax.axhline(2 / statistics.median(lrs), color=line.get_color(), ls="--", lw=1.0, label=f"{name}: 2/lr")
    _finish(ax, path, xlabel="epoch", ylabel="λmax", title=title or "sharpness against 2/lr", legend_size=7)


def performance_profiles(taus: Sequence[float], views: Mapping[str, Mapping[str, Sequence[float]]], path: Path,
                         title: str = "") -> None:
    """AlgoPerf's performance profiles, one panel per measure (`views[measure][optimizer]`: ρ at each τ): the
    fraction of problems on which the optimizer is within a factor τ of the best, a step function of τ."""
    fig, axes = _subplots(1, len(views), figsize=(5 * len(views), 4), dpi=100, squeeze=False)
    names = {"steps": "steps", "grad_evals": "gradient evaluations", "seconds": "seconds"}
    for ax, (measure, rhos) in zip(axes[0], views.items()):
        for name, rho in rhos.items():
            ax.step(taus, rho, where="post", lw=1.6, label=name)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(taus[0], taus[-1])
        ax.set_xlabel(f"τ (ratio to the best time, in {names.get(measure, measure)})")
        ax.set_ylabel("ρ(τ): fraction of problems")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
