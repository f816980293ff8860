"""Epoch records of stacked runs, read back in chunks.

Each epoch of K stacked runs leaves a few tensors: the training loss, the last step's gradients and the
parameters before and after it, the clipped share and the validation figures. Turning them into K records
every epoch costs two dozen small tensor operations and a read back to Python per epoch, more than the
epoch's own training on small problems. `History` copies them into preallocated (chunk, K, ...) buffers
(one copy per tensor) and computes every record's figures for a whole chunk of epochs at once: the live
table sees the epochs a moment later (at most `FLUSH_SECONDS`), with exactly the same records.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

import torch

MAX_CHUNK = 64  # epochs per read back
CHUNK_BYTES = 16 << 20  # at most this much memory for the per-epoch copies of gradients and parameters
FLUSH_SECONDS = 0.25  # a chunk is read back when it is full or this long after the last read back


class History:
    """Per-epoch tensors of K stacked runs with P parameters in L parameter tensors (`bounds` are each tensor's
    columns in the (K, P) layout), kept on their device until `rows` reads a chunk back."""

    def __init__(self, k: int, bounds: Sequence[tuple[int, int]], device: torch.device, *, with_params: bool,
                 clipping: bool, validation: bool, every_epoch: bool = False,
                 units: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        loss_dtype = torch.float32 if device.type == "mps" else torch.float64  # (MPS has no float64)
        p = bounds[-1][1]
        self.units = units  # the recorded parameters in the data's units (a standardised regression), or as trained
        self.k, self.with_params, self.clipping, self.validation = k, with_params, clipping, validation
        self.size = 1 if every_epoch else max(1, min(MAX_CHUNK, CHUNK_BYTES // max(1, 12 * k * p)))
        layer_of_column = [torch.full((b - a,), i, dtype=torch.long) for i, (a, b) in enumerate(bounds)]
        self.layer = torch.cat(layer_of_column).to(device)
        self.layers = len(bounds)
        self.grad = torch.zeros(self.size, k, p, device=device)
        self.before = torch.zeros(self.size, k, p, device=device)
        self.after = torch.zeros(self.size, k, p, device=device)
        self.loss = torch.zeros(self.size, k, dtype=loss_dtype, device=device)
        self.clipped = torch.zeros(self.size, k, dtype=torch.float64)
        self.valid = torch.zeros(self.size, 2, k, dtype=torch.float64)
        # each slot's (loss, last step's gradients, parameters before it, after it): made once, not per epoch
        self.views = [(self.loss[i], self.grad[i], self.before[i], self.after[i]) for i in range(self.size)]
        self.epochs: list[tuple[int, list[float], float]] = []  # (epoch, rates, elapsed) of the filled slots
        self.last_read = time.perf_counter()

    @property
    def slot(self) -> int:
        """The buffer index the epoch being trained fills."""
        return len(self.epochs)

    def close(self, epoch: int, rates: list[float], elapsed: float) -> bool:
        """The current slot is filled; True when the chunk should be read back now."""
        self.epochs.append((epoch, rates, elapsed))
        return len(self.epochs) == self.size or time.perf_counter() - self.last_read >= FLUSH_SECONDS

    def rows(self) -> list[tuple[int, list[float], float, list[list[float]], Optional[list[list[float]]]]]:
        """For each filled epoch: (epoch, rates, elapsed, per-run figures in a record's order after `epoch` and
        before `lr` — loss, [parameters,] global gradient norm, per-layer norms, per-layer update ratios
        [, clipped share] — and per-run (valid_loss, valid_acc) or None). Empties the chunk."""
        c = len(self.epochs)
        if not c:
            return []
        grad, before, after = self.grad[:c], self.before[:c], self.after[:c]
        squares = torch.stack([grad, after - before, before]).pow(2)
        sums = torch.zeros(3, c, self.k, self.layers, dtype=squares.dtype, device=squares.device)
        sums.index_add_(3, self.layer, squares)
        layer_sq, steps, sizes = sums
        ratios = torch.where(sizes > 0, (steps / sizes).sqrt(), torch.where(steps > 0, math.inf, 0.0))
        params = after if self.units is None else self.units(after.cpu().double())
        columns = [self.loss[:c].unsqueeze(2), *([params] if self.with_params else []),
                   layer_sq.sum(dim=2, keepdim=True).sqrt(), layer_sq.sqrt(), ratios]
        if self.clipping:
            columns.append(self.clipped[:c].unsqueeze(2))
        figures = torch.cat([column.cpu().double() for column in columns], dim=2).tolist()  # (MPS has no float64)
        valid = self.valid[:c].transpose(1, 2).tolist() if self.validation else None
        out = [(epoch, rates, elapsed, figures[e], valid[e] if valid is not None else None)
               for e, (epoch, rates, elapsed) in enumerate(self.epochs)]
        self.epochs = []
        self.last_read = time.perf_counter()
        return out

