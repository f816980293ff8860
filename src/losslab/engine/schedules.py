"""One run's learning-rate schedule, stepped the way torch.optim.lr_scheduler means it to be: per batch for
one-cycle and linear warm-up, per epoch for the others (plateau with the epoch's loss). `fit` drives it on the
run's real optimizer; the stacked engine drives one on a one-parameter carrier optimizer per run and copies
the rate, so both engines follow torch's own schedulers."""

from __future__ import annotations

from typing import Any, Optional

from losslab.components.schedules import SCHEDULES


class LRSchedule:
    def __init__(self, optimizer: Any, cfg: Any, epochs: int, batches: int):
        from torch.optim import lr_scheduler

        entry = SCHEDULES.lookup(cfg.name)
        self.optimizer = optimizer
        self.per_batch = bool(entry.meta.get("per_batch"))
        self.needs_metric = bool(entry.meta.get("needs_metric"))
        self.warmup_steps = cfg.warmup * batches
        self.warmup = (lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (self.warmup_steps + 1), end_factor=1.0,
                                             total_iters=self.warmup_steps) if self.warmup_steps else None)
        # the hand-over: the main schedule starts where warm-up ends and lasts the epochs after it, so the first
        # epoch after warm-up trains at the full rate and a step or cosine schedule counts only its own epochs
        self.main = entry.factory(optimizer, cfg, epochs - cfg.warmup, batches)
        self.batches, self.batches_done = batches, 0

    def in_warmup(self) -> bool:
        return self.batches_done < self.warmup_steps

    def after_batch(self) -> None:
        """After each optimizer step."""
        warming = self.in_warmup()
        self.batches_done += 1
        if warming and self.warmup is not None:
            self.warmup.step()
        elif self.per_batch and self.main is not None:
            self.main.step()

    def after_epoch(self, metric: Optional[float]) -> None:
        """After each epoch's record (the epoch's loss for plateau); nothing after a warm-up epoch, the last one
        included (the epoch after it is the main schedule's first)."""
        if self.main is None or self.per_batch or self.batches_done <= self.warmup_steps:
            return
        if self.needs_metric:
            self.main.step(metric)
        else:
            self.main.step()

    def replay(self, records: list[dict[str, Any]]) -> None:
        """Step through the epochs `records` describe as training stepped it (each epoch's batches, then the
        epoch with the loss the skeleton gave it): a resumed run's schedule stands where the saved run's stood.
        (No optimizer steps here: torch's warning that the schedule steps before the optimizer is silenced.)"""
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            for record in records:
                for _ in range(self.batches):
                    self.after_batch()
                self.after_epoch(record.get("valid_loss", record["train_loss"]))

    def state_dict(self) -> dict[str, Any]:
        """Where the schedule stands (a halving rung's paused run goes on from here)."""
        return {"batches_done": self.batches_done,
                "warmup": self.warmup.state_dict() if self.warmup is not None else None,
                "main": self.main.state_dict() if self.main is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches_done = state["batches_done"]
        if self.warmup is not None:
            self.warmup.load_state_dict(state["warmup"])
        if self.main is not None:
            self.main.load_state_dict(state["main"])


def build_schedule(optimizer: Any, cfg: Any, epochs: int, batches: int) -> Optional[LRSchedule]:
    if cfg is None or (cfg.name == "none" and not cfg.warmup):
        return None
    return LRSchedule(optimizer, cfg, epochs, batches)
