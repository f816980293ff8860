"""Regression data: the classic seeded synthetic set, a user's CSV, and the closed-form least-squares optimum."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from losslab.errors import FLOAT32_MAX, USER_ERRORS, ConfigError
from losslab.objects import shown


@dataclass(frozen=True)
class RegressionData:
    x: np.ndarray  # (n, features) float32
    y: np.ndarray  # (n, 1) float32
    true_w: Optional[tuple[float, ...]]  # None for user data
    true_b: Optional[float]
    source: str
    feature_names: Optional[tuple[str, ...]] = None  # a table's header, a bundled dataset's names
    target_name: Optional[str] = None  # a table's target column, by its header

    @property
    def features(self) -> int:
        return self.x.shape[1]

    @property
    def param_names(self) -> list[str]:
        return param_names(self.features, self.feature_names)


def param_names(features: int, names: Optional[Sequence[str]] = None) -> list[str]:
    """`w` and `b` for one feature, `w1..wn` and `b` for several; `w_<name>` for named features."""
    if names is not None:
        ws = ["w_" + re.sub(r"\W", "_", n.strip()) for n in names]
        if len(set(ws)) == len(ws):
            return ws + ["b"]
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


def read_csv(path: str, target: Optional[str] = None, features: Optional[Sequence[str]] = None) -> RegressionData:
    """A table's feature columns and target column: by default the last column is the target and every other
    column a feature; `target` and `features` pick columns by header name. Delimiter, byte-order mark,
    quoting, line endings and header row are handled by components.tables."""
    from losslab.components.tables import read_table

    table = read_table(path, "--data")
    if table.width < 2 and features is None:
        raise ConfigError("--data", f"{path} has one column; need feature column(s) then a target column")
    t = table.column(target, "--target") if target is not None else table.width - 1
    cols = ([table.column(name, "--features") for name in features] if features is not None
            else [c for c in range(table.width) if c != t])
    if t in cols:
        raise ConfigError("--features", f"column {table.name(t)!r} is the target; it cannot also be a feature")
    if not cols:
        raise ConfigError("--features", "no feature columns")
    x = np.asarray(table.numbers(cols, "--data"), dtype=np.float64)
    y = np.asarray(table.numbers([t], "--data"), dtype=np.float64)
    if len(y) < 2:
        raise ConfigError("--data", f"{path} has {len(y)} data row; need at least 2")
    names = tuple(table.name(c) for c in cols) if table.header is not None else None
    what = f"target {table.name(t)!r}, " if table.header is not None else ""
    return RegressionData(x.astype(np.float32), y.astype(np.float32), None, None,
                          f"{path}: {len(y)} rows, {what}{len(cols)} feature(s)", names,
                          table.name(t) if table.header is not None else None)


def diabetes() -> RegressionData:
    """scikit-learn's diabetes data (442 patients, 10 features, shipped inside the package), each feature
    standardised to mean 0 and standard deviation 1; the target (disease progression after a year) as is."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    x = np.asarray(bunch.data, dtype=np.float64)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = np.asarray(bunch.target, dtype=np.float64).reshape(-1, 1)
    return RegressionData(x.astype(np.float32), y.astype(np.float32), None, None,
                          "diabetes (scikit-learn): 442 samples, 10 standardised features", tuple(bunch.feature_names))


def with_outliers(data: RegressionData, fraction: float, shift: float, seed: int) -> tuple[RegressionData, np.ndarray]:
    """A copy whose targets at round(fraction · n) rows, chosen reproducibly from `seed`, are shifted by `shift`;
    also returns those rows' indices."""
    n = len(data.y)
    k = int(round(fraction * n))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=int)
    y = data.y.copy()
    y[rows, 0] += np.float32(shift)
    source = data.source + (f"; {k} outliers (targets shifted by {shift:+g}, rows chosen by seed {seed})" if k else "")
    return RegressionData(data.x, y, data.true_w, data.true_b, source, data.feature_names), rows


@dataclass(frozen=True)
class Scaling:
    """Columns standardised for training, as scikit-learn's StandardScaler does (a constant column is only
    centred): x' = (x − x_mean) / x_std per feature, y' = (y − y_mean) / y_std. A linear model trained on the
    standardised columns, y' = x'·v + c, is in the data's own units

        w_j = y_std · v_j / x_std_j,   b = y_mean + y_std · c − Σ_j w_j · x_mean_j

    so every reported weight and intercept means what the data means (w_area: target units per unit of area)."""

    x_mean: np.ndarray  # (features,) float64
    x_std: np.ndarray
    y_mean: float
    y_std: float

    @classmethod
    def of(cls, data: "RegressionData") -> "Scaling":
        x, y = data.x.astype(np.float64), data.y.astype(np.float64)[:, 0]
        x_std = x.std(axis=0)
        y_std = float(y.std())
        return cls(x.mean(axis=0), np.where(x_std > 0, x_std, 1.0), float(y.mean()), y_std if y_std > 0 else 1.0)

    def apply(self, data: "RegressionData") -> tuple[np.ndarray, np.ndarray]:
        """(x', y') as float32, computed in float64."""
        x = (data.x.astype(np.float64) - self.x_mean) / self.x_std
        y = (data.y.astype(np.float64) - self.y_mean) / self.y_std
        return x.astype(np.float32), y.astype(np.float32)

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Feature rows as the model was trained on them (float32, computed in float64)."""
        return ((x.astype(np.float64) - self.x_mean) / self.x_std).astype(np.float32)

    def targets(self, pred: np.ndarray) -> np.ndarray:
        """A model's standardised predictions in the target's units (float64)."""
        return pred.astype(np.float64) * self.y_std + self.y_mean

    def to_data_units(self, theta: Any) -> Any:
        """[v..., c] in training units → [w..., b] in the data's units, along the last axis of a float64 tensor."""
        import torch

        ratio = torch.as_tensor(self.y_std / self.x_std, dtype=theta.dtype, device=theta.device)
        mean = torch.as_tensor(self.x_mean, dtype=theta.dtype, device=theta.device)
        w = theta[..., :-1] * ratio
        b = self.y_mean + self.y_std * theta[..., -1:] - (w * mean).sum(-1, keepdim=True)
        return torch.cat([w, b], -1)

    def to_dict(self) -> dict[str, Any]:
        return {"x_mean": self.x_mean.tolist(), "x_std": self.x_std.tolist(), "y_mean": self.y_mean,
                "y_std": self.y_std}

    def describe(self) -> str:
        return (f"trained on standardised columns (each feature and the target to mean 0, standard deviation 1; "
                f"target mean {self.y_mean:.6g}, std {self.y_std:.6g}): weights and the least-squares optimum are "
                "in the data's units, losses in standardised target units (--no-standardize trains on the raw "
                "columns)")


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact minimiser of mean squared error over (w, b), in float64: argmin ||[x 1]·θ − y||²."""
    design = np.hstack([x.astype(np.float64), np.ones((x.shape[0], 1))])
    theta, *_ = np.linalg.lstsq(design, y.astype(np.float64).reshape(-1), rcond=None)
    return theta[:-1], float(theta[-1])


def read_user_data(spec: str) -> RegressionData:
    """A user's own regression data, `--dataset package.module:NAME`: tensors or arrays (X, y), or a map-style
    Dataset of (input, target) pairs (a function returning one is called); real-valued targets, one per row."""
    import torch

    from losslab.components.datasets import dataset_length
    from losslab.components.losses import user_data
    from losslab.limits import check_memory

    obj = user_data(spec, "--dataset")
    if isinstance(obj, torch.utils.data.Dataset):
        n = dataset_length(obj, spec, "data")
        check_memory("--dataset", n * 64, f"{spec}: {n:,} items in memory")  # (the smallest item, as objects)
        try:
            pairs = [obj[i] for i in range(n)]
            obj = ([np.asarray(p[0], dtype=np.float64) for p in pairs], [np.asarray(p[1], dtype=np.float64)
                                                                        for p in pairs])
        except USER_ERRORS as exc:
            raise ConfigError("--dataset", f"{spec}: reading its items failed: {type(exc).__name__}: {exc}") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ConfigError("--dataset", f"{spec} gave {type(obj).__name__}: expected tensors or arrays (X, y), or a "
                          "Dataset of (input, target) pairs")
    try:
        x = np.asarray([np.asarray(v, dtype=np.float64) for v in obj[0]] if isinstance(obj[0], list) else
                       (obj[0].detach().cpu().numpy() if isinstance(obj[0], torch.Tensor) else obj[0]),
                       dtype=np.float64)
        y = np.asarray(obj[1].detach().cpu().numpy() if isinstance(obj[1], torch.Tensor) else obj[1],
                       dtype=np.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError("--dataset", f"{spec}: its inputs or targets are not numbers: {exc}") from None
    x = x.reshape(len(x), -1) if x.ndim != 2 else x
    if len(x) < 2:
        raise ConfigError("--dataset", f"{spec}: {len(x)} rows; need at least 2")
    if y.reshape(len(y), -1).shape != (len(x), 1):
        raise ConfigError("--dataset", f"{spec}: {len(x)} inputs but targets of shape {y.shape}; regress needs one "
                          "real-valued target per row")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError("--dataset", f"{spec}: its inputs or targets hold NaN or infinite values")
    for name, values in (("inputs", x), ("targets", y)):  # float32 would make them inf (and lstsq would hang)
        if values.size and np.abs(values).max() > FLOAT32_MAX:
            raise ConfigError("--dataset", f"{spec}: its {name} hold {np.abs(values).max():.3g}, beyond float32's "
                              f"range ({FLOAT32_MAX:.3g}); rescale them")
    return RegressionData(x.astype(np.float32), y.reshape(-1, 1).astype(np.float32), None, None,
                          f"{shown(spec)}: {len(x)} rows, {x.shape[1]} feature(s)")
