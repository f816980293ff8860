"""The `external` tuning ruleset's trials (issue 35): every optimizer gets the same number of quasi-random points
of the unit cube — one draw per study from `scipy.stats.qmc` (scrambled Sobol or Halton, seeded by the study),
the same points for every optimizer and every problem — mapped into the search space its family declares: the
learning rate log-uniform over two decades centred on the optimizer's default, and its other hyper-parameters
(1 − β₁ and 1 − β₂ log-uniform, weight decay log-uniform) where it has them. The points and what they map to are
plain numbers: a result records them and replays them to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

DIMENSIONS = 4  # every draw has this many coordinates: the widest space's; a smaller space uses the first ones
METHODS = ("sobol", "halton")


@dataclass(frozen=True)
class Dimension:
    """One hyper-parameter's range: `value = low · (high/low)^u` (log) or `low + (high − low) u` for u in [0, 1);
    `one_minus` maps u to 1 − value (β's: their distance from 1 is what is log-uniform)."""

    name: str
    low: float
    high: float
    log: bool = True
    one_minus: bool = False

    def value(self, u: float) -> float:
        v = self.low * (self.high / self.low) ** u if self.log else self.low + (self.high - self.low) * u
        return 1.0 - v if self.one_minus else v


def space(default_lr: float, accepts: Sequence[str] = ()) -> tuple[Dimension, ...]:
    """The search space of an optimizer with this default rate, taking these of the shared options (`betas`,
    `weight_decay`): the rate over default/10 … default·10; 1 − β₁ over 0.02 … 0.2, 1 − β₂ over 0.001 … 0.1;
    weight decay over 1e-5 … 1e-1."""
    dims = [Dimension("lr", default_lr / 10, default_lr * 10)]
    if "betas" in accepts:
        dims += [Dimension("beta1", 0.02, 0.2, one_minus=True), Dimension("beta2", 0.001, 0.1, one_minus=True)]
    if "weight_decay" in accepts:
        dims.append(Dimension("weight_decay", 1e-5, 1e-1))
    return tuple(dims)


def unit_points(trials: int, study: int, method: str = "sobol") -> list[list[float]]:
    """`trials` quasi-random points of [0, 1)^DIMENSIONS for study `study` (its seed): the same for every
    optimizer. Sobol's first 2^k points are balanced; other counts take its first `trials` (scipy warns of the
    balance, which is said here instead)."""
    import warnings

    from scipy.stats import qmc

    if trials < 1:
        raise ValueError(f"trials must be at least 1 (got {trials})")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from: {', '.join(METHODS)}")
    engine = (qmc.Sobol(DIMENSIONS, scramble=True, seed=study) if method == "sobol"
              else qmc.Halton(DIMENSIONS, scramble=True, seed=study))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The balance properties of Sobol")
        return [[float(u) for u in row] for row in engine.random(trials)]


def draw(dims: Sequence[Dimension], points: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
    """Each point mapped into the space: one dict of hyper-parameters per trial (β's as a `betas` pair)."""
    out = []
    for point in points:
        values: dict[str, Any] = {d.name: d.value(u) for d, u in zip(dims, point)}
        if "beta1" in values:
            values["betas"] = (values.pop("beta1"), values.pop("beta2"))
        out.append(values)
    return out


def trials(default_lr: float, accepts: Sequence[str], count: int, study: int, method: str = "sobol",
           points: Optional[Sequence[Sequence[float]]] = None) -> list[dict[str, Any]]:
    """An optimizer's `count` trials in study `study` (or at recorded `points`: a replay)."""
    if not (default_lr > 0 and math.isfinite(default_lr)):
        raise ValueError(f"a default rate must be positive (got {default_lr})")
    return draw(space(default_lr, accepts), points if points is not None else unit_points(count, study, method))
