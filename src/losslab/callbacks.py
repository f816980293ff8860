"""Training events: the Callback base (no-op hooks) and History, the per-epoch record store.

A record is a flat dict: `epoch`, `train_loss`, optional `valid_*` metrics and tracked parameter
values, `grad_norm`, `lr`, `elapsed_s`. Display, JSON, CSV and plots all consume these records.
"""

from __future__ import annotations

from typing import Any, Optional


class Callback:
    """Override only the hooks you need."""

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """Called once before the first epoch with {'epochs': total, ...}."""

    def on_batch_end(self, batch: int, batches: int, loss: float) -> None:
        """Called after each mini-batch step (batch of batches); fit skips callbacks that do not override it."""

    def on_epoch_end(self, record: dict[str, Any]) -> Optional[bool]:
        """Called after every epoch; return True to stop training early."""
        return None

    def on_train_end(self, status: str, records: list[dict[str, Any]]) -> None:
        """Called once after the loop, whatever the status (ok, diverged, interrupted)."""


class History(Callback):
    """Keeps every epoch record in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.records.append(record)


class BestEpoch(Callback):
    """Marks each record's `valid_loss_best`, keeps a copy of the best weights, and stops training
    after `patience` epochs without improvement (when patience is set)."""

    def __init__(self, model: Any, patience: Optional[int] = None, monitor: str = "valid_loss"):
        self.model = model
        self.patience = patience
        self.monitor = monitor
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.best_state: Optional[dict[str, Any]] = None
        self.stale = 0

    def on_epoch_end(self, record: dict[str, Any]) -> Optional[bool]:
        value = record.get(self.monitor)
        improved = value is not None and value == value and (self.best is None or value < self.best)
        record[f"{self.monitor}_best"] = improved
        if improved:
            self.best, self.best_epoch, self.stale = value, record["epoch"], 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience
