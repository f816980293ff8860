"""Matplotlib figures from per-epoch records; imported only when a plot is asked for."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_curve(records: Sequence[Mapping[str, Any]], path: Path, title: str = "training loss",
               reference: float | None = None, reference_label: str = "least-squares optimum") -> None:
    """Log-scale training loss per epoch, with an optional horizontal reference line."""
    pts = [(r["epoch"], r["train_loss"]) for r in records if _positive(r.get("train_loss"))]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    if pts:
        ax.plot(*zip(*pts), lw=1.6, label="train loss")
    if reference is not None and _positive(reference):
        ax.axhline(reference, color="tab:green", ls="--", lw=1, label=f"{reference_label} ({reference:.4g})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def classification_curves(records: Sequence[Mapping[str, Any]], path: Path, title: str = "",
                          best_epoch: int | None = None) -> None:
    """Train and validation loss (log scale) beside validation accuracy, the best epoch marked."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
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
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> None:
    """Counts with rows = true class and columns = predicted class."""
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.55 * k), dpi=100)
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
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
