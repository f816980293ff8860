"""Option text to values: number lists, learning-rate grids, OPTIMIZER=RATE pairs."""

from __future__ import annotations

import math
from typing import Optional

from losslab.config.checks import check_finite
from losslab.errors import ConfigError


def parse_floats(option: str, text: Optional[str]) -> Optional[tuple[float, ...]]:
    """Parse a comma list such as '0.9,0.999' into finite floats."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(option, f"expected comma-separated numbers (got {text!r})") from None
    for v in values:
        check_finite(option, v)
    return values


def parse_ints(option: str, text: Optional[str]) -> Optional[tuple[int, ...]]:
    """Parse a comma list such as '32,128,512' into integers."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(option, f"expected comma-separated whole numbers, e.g. 32,128,512 (got {text!r})") from None


def log_grid(low: float, high: float, per_decade: int) -> tuple[float, ...]:
    """Log-spaced points from low to high inclusive, `per_decade` per factor of ten (rounded to 3 digits)."""
    n = int(round(math.log10(high / low) * per_decade)) + 1
    return tuple(float(f"{low * (high / low) ** (i / (n - 1)):.3g}") for i in range(n)) if n > 1 else (low,)


def parse_grid(option: str, text: str) -> tuple[float, ...]:
    """'MIN:MAX:PER_DECADE' (log-spaced) or a comma list of positive rates."""
    if ":" in text:
        parts = text.split(":")
        try:
            low, high, per = float(parts[0]), float(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise ConfigError(option, f"expected MIN:MAX:PER_DECADE, e.g. 1e-4:1:3 (got {text!r})") from None
        if len(parts) != 3 or not (0 < low < high) or per < 1 or not math.isfinite(high):
            raise ConfigError(option, f"needs 0 < MIN < MAX and PER_DECADE >= 1 (got {text!r})")
        return log_grid(low, high, per)
    values = parse_floats(option, text) or ()
    if not values or any(v <= 0 for v in values):
        raise ConfigError(option, f"learning rates must be > 0 (got {text!r})")
    return tuple(sorted(set(values)))


def parse_lr_for(values: Optional[list[str]]) -> tuple[tuple[str, float], ...]:
    """'adam=0.01' items, repeatable or comma-separated."""
    pairs: list[tuple[str, float]] = []
    for value in values or []:
        for item in value.split(","):
            name, sep, rate = item.partition("=")
            try:
                lr = float(rate)
            except ValueError:
                lr = math.nan
            if not sep or not name.strip() or not math.isfinite(lr):
                raise ConfigError("--lr-for", f"expected OPTIMIZER=RATE, e.g. adam=0.01 (got {item!r})")
            if any(name.strip() == seen for seen, _ in pairs):
                raise ConfigError("--lr-for", f"gives {name.strip()!r} twice; give each optimizer one rate")
            pairs.append((name.strip(), lr))
    return tuple(pairs)
