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
