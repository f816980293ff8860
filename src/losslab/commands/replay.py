"""`losslab replay RESULT.json`: rerun the experiment a result.json records (its `invocation`: command and every
option) and compare every number the two results hold — final metrics, parameters, per-run results — but not
times. Identical: exit 0 and one line. Different: exit 1 with the first differing key and both values.

The rerun is a fresh `python -m losslab` process (its own RNG and thread state, as the original had), with
the recorded options written to a temporary --config file; options that only say where output goes (--out,
--tensorboard, --save, --json, --quiet) are left out, so the original's files are never touched.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from losslab import interrupt, toml_text
from losslab.commands.table import replayable
from losslab.errors import ConfigError, ExitCode, RunFailed

COMMAND = "replay"
OUTPUT_ONLY = ("out", "tensorboard", "save", "json", "quiet", "print-config", "config")  # option keys as in files
SKIP_KEYS = ("elapsed_s", "time_per_epoch_s", "versions", "invocation", "device", "expectations", "out",
             "tensorboard", "save", "seconds", "markdown")  # times, where output went, what the gates said


@dataclass(frozen=True)
class ReplayConfig:
    path: str
    rtol: float = 0.0


@dataclass
class Difference:
    key: str
    recorded: Any
    replayed: Any


REPLAYABLE = (*replayable(), "benchmark")  # (a benchmark reruns every run of its suite)


def load(path: str) -> dict[str, Any]:
    from losslab.config.checks import RESULT_BYTES, read_text_file
    from losslab.outputs.documents import check_document

    text = read_text_file(path, "RESULT", RESULT_BYTES, "a losslab result.json")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError("RESULT", f"{path} is not a readable result.json: {type(exc).__name__}") from None
    check_document(doc, path, "RESULT")
    if not isinstance(doc.get("invocation"), dict):
        raise ConfigError("RESULT", f"{path} has no 'invocation' (written by losslab before replay existed, or "
                          "not a losslab result.json); rerun the command to record one")
    check_invocation(doc["invocation"], path)
    return doc


def check_invocation(called: dict[str, Any], path: str) -> None:
    """The recorded command and options have the shapes losslab writes: a known command, a table of option
    values (numbers, strings, booleans or lists of strings), optional cwd and paths."""
    command, options = called.get("command"), called.get("options")
    if command not in REPLAYABLE:
        raise ConfigError("RESULT", f"{path}: invocation.command is {command!r}; replay reruns "
                          f"{', '.join(REPLAYABLE)}")
    if not isinstance(options, dict):
        raise ConfigError("RESULT", f"{path}: invocation.options must be a table of option values")
    for key, value in options.items():
        flat = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float, bool)) for v in flat) or (isinstance(value, list) and not
                                                                              all(isinstance(v, str) for v in flat)):
            raise ConfigError("RESULT", f"{path}: invocation option {key!r} has a value of the wrong type")
    for name in ("cwd",):
        if name in called and not isinstance(called[name], str):
            raise ConfigError("RESULT", f"{path}: invocation.{name} must be a string")
    paths = called.get("paths", {})
    if not isinstance(paths, dict) or not all(isinstance(v, str) for v in paths.values()):
        raise ConfigError("RESULT", f"{path}: invocation.paths must be a table of strings")


def leaves(doc: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every number, string, boolean and null, skipping times and versions."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in SKIP_KEYS:
                continue
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, doc


def same(a: Any, b: Any, rtol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if a == b:
        return True
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def compare(recorded: dict[str, Any], replayed: dict[str, Any], rtol: float) -> tuple[int, Optional[Difference]]:
    a, b = dict(leaves(recorded)), dict(leaves(replayed))
    for key in list(a) + [k for k in b if k not in a]:
        if key not in a or key not in b:
            return len(a), Difference(key, a.get(key, "(absent)"), b.get(key, "(absent)"))
        if not same(a[key], b[key], rtol):
            return len(a), Difference(key, a[key], b[key])
    return len(a), None


def rerun(doc: dict[str, Any]) -> dict[str, Any]:
    """The replayed command's JSON document, from a fresh process."""
    called = doc["invocation"]
    command, options = called["command"], called["options"]
    keys = {k: v for k, v in options.items() if k not in OUTPUT_ONLY and v is not None}
    # in the run's own folder, so relative paths and user modules (--loss mymod:fn) are found as they were and
    # the result names them as typed; if that folder is gone, the input paths as they were resolved then
    cwd = called.get("cwd")
    cwd = cwd if isinstance(cwd, str) and os.path.isdir(cwd) else None
    if cwd is None:
        keys.update({k: v for k, v in called.get("paths", {}).items() if k in keys})
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "replay.toml"
        lines = [f"[{command}]"] + [f"{toml_text.key(key)} = {toml_text.value(value)}" for key, value in keys.items()]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
        proc = subprocess.run([sys.executable, "-m", "losslab", command, "--config", str(config), "--json",
                               "--quiet"], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode == ExitCode.INTERRUPTED or interrupt.requested():
        raise KeyboardInterrupt
    if proc.returncode == 2:
        raise ConfigError("RESULT", "the recorded options are refused by this losslab: "
                          + unprefixed((proc.stderr.strip().splitlines() or ["(no message)"])[-1]))
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = unprefixed((proc.stderr.strip().splitlines() or ["(no output)"])[-1])
        raise RunFailed(f"the replayed run produced no result (exit {proc.returncode}): {tail}") from None


def unprefixed(line: str) -> str:
    """A child's message without its own 'losslab: error: ' prefix (the parent adds one)."""
    for prefix in ("losslab: error: ", "losslab: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def replay(cfg: ReplayConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rerun what a result document records and compare: (the recorded document, the replay's document)."""
    from losslab.version import __version__

    doc = load(cfg.path)
    recorded_version = (doc.get("versions") or {}).get("losslab")
    warning = None
    if recorded_version and recorded_version != __version__:
        warning = (f"{cfg.path} was written by losslab {recorded_version}; replaying with losslab {__version__} "
                   "(numbers may differ between versions)")
        print(f"losslab: warning: {warning}", file=sys.stderr)
    replayed = rerun(doc)
    compared, diff = compare(doc, replayed, cfg.rtol)
    return doc, {"command": COMMAND, "replayed": doc["invocation"]["command"], "identical": diff is None,
                 "compared": compared, "rtol": cfg.rtol, "warning": warning,
                 "first_difference": None if diff is None else {"key": diff.key, "recorded": diff.recorded,
                                                                "replayed": diff.replayed}}


def main(cfg: ReplayConfig, *, json_out: bool) -> int:
    from losslab.commands.common import context, end_command
    from losslab.outputs.sinks import dispatcher

    events = dispatcher(context(COMMAND, cfg, json_out))
    doc, out = replay(cfg)
    diff, compared = out["first_difference"], out["compared"]
    end_command(events, COMMAND, "identical" if diff is None else "differs", out, json_out,
                json.dumps(out, indent=2) + "\n")
    if json_out:
        return 0 if diff is None else 1
    if diff is None:
        tol = f" within rtol {cfg.rtol:g}" if cfg.rtol else ""
        print(f"replay: identical — {compared} values of {cfg.path} reproduced{tol} by losslab "
              f"{doc['invocation']['command']}")
    else:
        print(f"replay: differs at {diff['key']}: recorded {diff['recorded']!r}, replayed {diff['replayed']!r}")
    return 0 if diff is None else 1
