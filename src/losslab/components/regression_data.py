"""Regression data: the classic seeded synthetic set, a user's CSV, and the closed-form least-squares optimum."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from losslab.errors import FLOAT32_MAX, ConfigError


@dataclass(frozen=True)
class RegressionData:
    x: np.ndarray  # (n, features) float32
    y: np.ndarray  # (n, 1) float32
    true_w: Optional[tuple[float, ...]]  # None for user data
    true_b: Optional[float]
    source: str

    @property
    def features(self) -> int:
        return self.x.shape[1]

    @property
    def param_names(self) -> list[str]:
        return param_names(self.features)


def param_names(features: int) -> list[str]:
    """`w` and `b` for one feature, `w1..wn` and `b` for several."""
    ws = ["w"] if features == 1 else [f"w{i}" for i in range(1, features + 1)]
    return ws + ["b"]


def synthetic(samples: int = 100, features: int = 1, true_w: tuple[float, ...] = (2.0,),
              true_b: float = 3.0, noise: float = 0.1, seed: int = 42) -> RegressionData:
    """y = x·w + b + noise·ε with x, ε ~ N(0, 1), drawn exactly as the tutorial does:

        np.random.seed(42); x = np.random.randn(100, 1); noise = np.random.randn(100, 1)
        y = 2 * x + 3 + 0.1 * noise
    """
    np.random.seed(seed)
    x = np.random.randn(samples, features)
    eps = np.random.randn(samples, 1)
    w = np.asarray(true_w, dtype=np.float64).reshape(features, 1)
    y = x @ w + true_b + noise * eps
    source = f"synthetic: y = x·{list(true_w)} + {true_b:g} + {noise:g}·N(0,1), {samples} samples, seed {seed}"
    return RegressionData(x.astype(np.float32), y.astype(np.float32), tuple(true_w), float(true_b), source)


def read_csv(path: str) -> RegressionData:
    """Feature columns then a target column; a header row is optional (detected as non-numeric)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("--data", f"no such file: {path}")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:  # a byte-order mark is not part of the first cell
            rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError("--data", f"cannot read {path}: {exc}") from None
    if not rows:
        raise ConfigError("--data", f"{path} is empty")
    first = 0
    if not all(_is_number(cell) for cell in rows[0]):
        first = 1  # header row
    body = rows[first:]
    if not body:
        raise ConfigError("--data", f"{path} has a header but no data rows")
    width = len(rows[0])
    if width < 2:
        raise ConfigError("--data", f"{path} has one column; need feature column(s) then a target column")
    values = []
    for lineno, row in enumerate(body, start=first + 1):
        if len(row) != width:
            raise ConfigError("--data", f"{path} line {lineno}: {len(row)} cells, expected {width}")
        parsed = []
        for col, cell in enumerate(row, start=1):
            try:
                v = float(cell)
            except ValueError:
                raise ConfigError("--data", f"{path} line {lineno}, column {col}: {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise ConfigError("--data", f"{path} line {lineno}, column {col}: {cell.strip()} is not finite")
            if abs(v) > FLOAT32_MAX:
                raise ConfigError("--data", f"{path} line {lineno}, column {col}: {cell.strip()} is beyond the "
                                  "float32 range (about ±3.4e38) that training uses")
            parsed.append(v)
        values.append(parsed)
    if len(values) < 2:
        raise ConfigError("--data", f"{path} has {len(values)} data row; need at least 2")
    arr = np.asarray(values, dtype=np.float64)
    return RegressionData(arr[:, :-1].astype(np.float32), arr[:, -1:].astype(np.float32), None, None,
                          f"{path}: {len(values)} rows, {width - 1} feature(s)")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def with_outliers(data: RegressionData, fraction: float, shift: float, seed: int) -> tuple[RegressionData, np.ndarray]:
    """A copy whose targets at round(fraction · n) rows, chosen reproducibly from `seed`, are shifted by `shift`;
    also returns those rows' indices."""
    n = len(data.y)
    k = int(round(fraction * n))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=int)
    y = data.y.copy()
    y[rows, 0] += np.float32(shift)
    source = data.source + (f"; {k} outliers (targets shifted by {shift:+g}, rows chosen by seed {seed})" if k else "")
    return RegressionData(data.x, y, data.true_w, data.true_b, source), rows


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact minimiser of mean squared error over (w, b), in float64: argmin ||[x 1]·θ − y||²."""
    design = np.hstack([x.astype(np.float64), np.ones((x.shape[0], 1))])
    theta, *_ = np.linalg.lstsq(design, y.astype(np.float64).reshape(-1), rcond=None)
    return theta[:-1], float(theta[-1])
