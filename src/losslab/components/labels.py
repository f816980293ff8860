"""A user's class labels, checked once for every path that reads them (in memory or streamed)."""

from __future__ import annotations

from typing import Any

from losslab.errors import ConfigError

MAX_CLASSES = 10_000  # labels are class indices 0..k-1: a confusion matrix of k² counts must stay small


def class_indices(yt: Any, spec: str, part: str) -> Any:
    """A user's labels as int64 class indices 0..k-1 (k at most MAX_CLASSES), or one line naming --dataset: never
    truncated from fractions, never so large that the class count (and a k² confusion matrix) explodes."""
    import torch

    bad = yt.ndim != 1 or yt.is_complex() or not (yt.dtype == torch.bool or torch.all(yt == yt.round()))
    if bad:
        if yt.ndim != 1:
            got = f"shape {tuple(yt.shape)}"
        else:
            odd = yt if yt.is_complex() else yt[yt != yt.round()]  # the first label that is no integer
            got = f"values like {(odd if len(odd) else yt)[0].item()}"
        raise ConfigError("--dataset", f"{spec}: the labels of its {part} split must be class indices 0, 1, ... "
                          f"(got {got})")
    yt = yt.long()
    if yt.min() < 0:
        raise ConfigError("--dataset", f"{spec}: label {int(yt.min())} in its {part} split; labels are class "
                          "indices from 0")
    if int(yt.max()) >= MAX_CLASSES:
        distinct = len(torch.unique(yt))
        raise ConfigError("--dataset", f"{spec}: label {int(yt.max()):,} in its {part} split would mean "
                          f"{int(yt.max()) + 1:,} classes ({distinct:,} distinct labels occur); labels are class "
                          f"indices 0..k-1 with k up to {MAX_CLASSES:,}: number them from 0")
    return yt
