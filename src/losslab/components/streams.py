"""A user's Dataset too large for memory (--memory-budget): the samples of one split, normalised as they are read
(`UserSplit`), and the statistics of one ordered pass over them (`sample_stats`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from losslab.errors import USER_ERRORS, ConfigError


@dataclass
class UserSplit:
    """Which items of a user's map-style Dataset a split holds; each read as (float32 input normalised with the
    training split's mean and std, int label)."""

    dataset: Any
    indices: list[int]
    spec: str
    part: str
    mean: Any = None
    std: Any = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        import numpy as np
        import torch

        try:
            x, y = self.dataset[self.indices[i]][:2]
            x = torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x)).float()
        except USER_ERRORS as exc:
            raise ConfigError("--dataset", f"{self.spec}: reading item {self.indices[i]} of its {self.part} split "
                              f"failed: {type(exc).__name__}: {exc}") from None
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x, int(y)


def _batches(split: UserSplit, workers: int) -> Any:
    import torch

    loader = torch.utils.data.DataLoader(split, batch_size=256, shuffle=False, num_workers=workers)
    try:
        yield from loader
    except ConfigError:
        raise
    except USER_ERRORS as exc:  # a worker's ConfigError arrives re-raised with the worker's traceback in its text
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        said = [line for line in lines if "ConfigError: " in line]
        if said:
            raise ConfigError("--dataset", said[-1].split("ConfigError: ", 1)[1].removeprefix("--dataset: ")) from None
        last = lines[-1][:160] if lines else type(exc).__name__
        raise ConfigError("--dataset", f"{split.spec}: its {split.part} items do not make batches (inputs of one "
                          f"shape and integer labels): {last}") from None


def sample_stats(split: UserSplit, workers: int) -> tuple[Any, Any, Any, tuple[int, ...]]:
    """Mean and std (per channel for (C, H, W) samples, per element otherwise, as the in-memory path; the sample
    std), accumulated in float64 in order; every label (checked as in-memory labels are) and one sample's shape.
    Inputs that are not finite are refused."""
    import torch

    total: Any = None
    squares: Any = None
    count = 0
    labels = []
    shape: tuple[int, ...] = ()
    for xb, yb in _batches(split, workers):
        if not torch.isfinite(xb).all():
            raise ConfigError("--dataset", f"{split.spec}: its {split.part} inputs hold NaN or infinite values")
        shape = tuple(xb.shape[1:])
        dims = (0, 2, 3) if xb.ndim == 4 else (0,)
        xd = xb.to(torch.float64)
        s, q = xd.sum(dim=dims), xd.pow(2).sum(dim=dims)
        total = s if total is None else total + s
        squares = q if squares is None else squares + q
        count += xd.numel() // s.numel()
        # a copy: a worker's batch lives in shared memory, one file descriptor each, and 10^7 items' worth of
        # them once ran out of descriptors ("Too many open files", blamed on the data)
        labels.append(torch.as_tensor(yb).clone())
        del xb, yb
    from losslab.components.labels import class_indices

    y = class_indices(torch.cat(labels), split.spec, split.part)
    mean = total / count
    var = (squares / count - mean.pow(2)) * count / max(1, count - 1)
    std = var.clamp_min(0).sqrt()
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    view = (-1, 1, 1) if len(shape) == 3 else shape
    return mean.to(torch.float32).view(view), std.to(torch.float32).view(view), y, shape
