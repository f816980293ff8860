"""Machine-readable results: JSON documents (NaN as null), history CSV, atomic file writes and the versions
every result records. Commands build their documents; this module writes them."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from losslab.expect import Outcome


def versions() -> dict[str, str]:
    """What produced a result: Python, torch and losslab versions."""
    import torch

    from losslab.version import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "losslab": __version__}


def clean(value: Any) -> Any:
    """JSON has no NaN or infinity: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(clean(document), indent=2, allow_nan=False) + "\n"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # the mode any new file gets, not mkstemp's private 0600
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not exc.filename:  # say which file could not be written
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: None if tmp.write_text(text, encoding="utf-8") else None)


PER_LAYER = ("grad_norm/", "update_ratio/")  # record keys with one column per parameter tensor


def history_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """One row per record. Per-layer columns only for models with at most MAX_LAYER_NORMS parameter tensors;
    deeper models' per-layer figures are in result.json's `layers`."""
    from losslab.engine.loop import MAX_LAYER_NORMS

    records = list(records)
    columns: list[str] = []
    seen: set[str] = set()
    for rec in records:
        for k in rec:
            if k not in seen:
                seen.add(k)
                columns.append(k)
    if sum(k.startswith(PER_LAYER[0]) for k in columns) > MAX_LAYER_NORMS:
        columns = [k for k in columns if not k.startswith(PER_LAYER)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in rec.items()})
    return buf.getvalue()


def outcomes_document(outcomes: Iterable[Outcome]) -> list[dict[str, Any]]:
    return [{"spec": o.spec, "name": o.name, "passed": o.passed, "actual": o.actual} for o in outcomes]


def write_data_files(out_dir: str, document: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[Path]:
    """history.csv and result.json, each written atomically into `out_dir`: the machine-readable results come
    first, before anything slow (plots) that a Ctrl-C may cut short."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "history.csv", history_csv(records))
    write_text(out / "result.json", dumps(document))
    return [out / "history.csv", out / "result.json"]


def write_plots(out_dir: str, plots: Iterable[tuple[str, Callable[[Path], None]]],
                keep_going: Callable[[], bool] = lambda: True) -> list[Path]:
    """Each plot written atomically into `out_dir` while `keep_going()` says so."""
    written = []
    for name, draw in plots:
        if not keep_going():
            break
        atomic_write(Path(out_dir) / name, draw)
        written.append(Path(out_dir) / name)
    return written
