"""TOML values as text, for the experiment files losslab writes (`--print-config`, `replay`): every string
escaped so that `tomllib` reads back exactly what was written (quotes, backslashes, newlines and every control
character). No imports beyond the standard library: any layer may use it."""

from __future__ import annotations

import math
from typing import Any

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def string(text: str) -> str:
    """A TOML basic string."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(item) for item in v) + "]"
    return string(str(v))


def key(k: str) -> str:
    """A bare key where TOML allows one, else a quoted key."""
    bare = k and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in k)
    return k if bare else string(k)
