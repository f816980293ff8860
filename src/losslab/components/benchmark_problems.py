"""The analytic problems of the benchmark suite (issue 35): DeepOBS's noisy quadratic `quadratic_deep` and the
Rosenbrock valley. Numpy only: their constants are fixed properties of the problems, computed the same on every
machine.

`quadratic_deep` (Schneider et al. 2019): a 100-dimensional loss 0.5 (θ − x)ᵀ Q (θ − x) with x ~ N(0, 0.6²) per
sample and θ₀ = 1; Q = Rᵀ D R with 90 eigenvalues drawn U(0, 1) and 10 drawn U(30, 60) — the spectrum reported
for deep networks, a few large directions over a bulk of small ones — and R a rotation drawn from the Haar measure
on SO(100) by Diaconis & Shahshahani's subgroup algorithm, every draw from one RandomState(42) in that order.
"""

from __future__ import annotations

from typing import Any

DIMENSION = 100
NOISE = 0.6  # the data's standard deviation
SEED = 42


def haar_rotation(d: int, rng: Any) -> Any:
    """A rotation in SO(d) uniform under the Haar measure, built up one dimension at a time (the subgroup
    algorithm): a uniform angle in SO(2), then for each k = 2 … d−1 a Householder reflection that maps the first
    basis vector of R^(k+1) to a uniform point of the sphere, applied to the rotation of one dimension less; the
    sign is flipped at the end so that the determinant is +1 (DeepOBS's construction, hence its draws)."""
    import numpy as np

    if d < 2:
        raise ValueError(f"a rotation needs at least 2 dimensions (got {d})")
    angle = 2 * np.pi * rng.uniform()
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    for k in range(2, d):
        v = rng.normal(size=(k + 1, 1))
        v /= np.sqrt((v.T @ v).item())
        e = np.zeros((k + 1, 1))
        e[0, 0] = 1.0
        x = (e - v) / np.sqrt(((e - v).T @ (e - v)).item())
        bordered = np.zeros((k + 1, k + 1))
        bordered[0, 0] = 1.0
        bordered[1:, 1:] = rotation
        rotation = bordered - 2 * np.outer(x, x.T @ bordered)
    return -rotation


def quadratic_deep() -> tuple[Any, Any]:
    """(eigenvalues (100,), Hessian Q (100, 100)) of DeepOBS's quadratic_deep, in float64."""
    import numpy as np

    rng = np.random.RandomState(SEED)
    eigenvalues = np.concatenate([rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)])
    rotation = haar_rotation(DIMENSION, rng)
    return eigenvalues, rotation.T @ np.diag(eigenvalues) @ rotation


def quadratic_loss(theta: Any, x: Any, hessian: Any) -> Any:
    """The mean over the rows of x of 0.5 (θ − x)ᵀ Q (θ − x) (numpy or torch: whatever θ and x are)."""
    d = theta - x
    return 0.5 * ((d @ hessian) * d).sum(-1).mean()


ROSENBROCK_START = (-1.2, 1.0)  # the classic start, on the far side of the valley's bend


def rosenbrock(theta: Any, a: float = 1.0, b: float = 100.0) -> Any:
    """(a − x)² + b (y − x²)²: a narrow curved valley; its minimum 0 is at (a, a²)."""
    x, y = theta[..., 0], theta[..., 1]
    return (a - x) ** 2 + b * (y - x ** 2) ** 2


# The two problems as a training command trains them (`losslab regress` with import paths: the suite's
# `quadratic` and `rosenbrock`): the model holds θ and outputs each row's objective, the loss is its mean.
TRAIN_ROWS = 1000  # DeepOBS's quadratic: 1,000 training samples, batches of 128
DATA_SEED = 43  # the data's draws (the problem's constants use SEED)


def quadratic_data() -> tuple[Any, Any]:
    """The quadratic's training data: 1,000 rows x ~ N(0, 0.6²) in 100 dimensions, and a zero target per row
    (unused: the model's output is the objective)."""
    import numpy as np

    x = np.random.RandomState(DATA_SEED).normal(0.0, NOISE, size=(TRAIN_ROWS, DIMENSION))
    return x.astype(np.float32), np.zeros((TRAIN_ROWS, 1), dtype=np.float32)


def quadratic_minimum() -> float:
    """The least mean loss over the training data (at θ = the rows' mean), in float64: what a target is set from."""
    x, _ = quadratic_data()
    x = x.astype("float64")
    return float(quadratic_loss(x.mean(0), x, quadratic_deep()[1]))


def quadratic_model() -> Any:
    """θ ∈ R¹⁰⁰ from θ₀ = 1; each row's output is 0.5 (θ − x)ᵀ Q (θ − x)."""
    import torch
    from torch import nn

    hessian = torch.as_tensor(quadratic_deep()[1], dtype=torch.float32)

    class Quadratic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.theta = nn.Parameter(torch.ones(DIMENSION))
            self.register_buffer("hessian", hessian)

        def forward(self, x: Any) -> Any:
            d = self.theta - x
            return 0.5 * ((d @ self.hessian) * d).sum(-1, keepdim=True)

    return Quadratic()


def rosenbrock_data() -> tuple[Any, Any]:
    """Two rows (the least a data set has here; the problem has no data: every step's gradient is the exact one)."""
    import numpy as np

    return np.zeros((2, 1), dtype=np.float32), np.zeros((2, 1), dtype=np.float32)


def rosenbrock_model() -> Any:
    """θ = (x, y) from (−1.2, 1); each row's output is the Rosenbrock function at θ."""
    import torch
    from torch import nn

    class Rosenbrock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.theta = nn.Parameter(torch.tensor(ROSENBROCK_START))

        def forward(self, x: Any) -> Any:
            return rosenbrock(self.theta).expand(x.shape[0], 1)

    return Rosenbrock()


def objective(output: Any, target: Any) -> Any:
    """The loss of these problems: the mean of the model's outputs (each row's objective; the target is unused)."""
    return output.mean() + 0.0 * target.sum()
