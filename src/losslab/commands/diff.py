"""`losslab diff A.json B.json`: what differs between two results — the options they were run with (one by one),
the versions, every metric both hold side by side with its change, and their loss curves overlaid."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from losslab.commands.gate.samples import DIRECTION, Side, of_result, read, settings
from losslab.outputs.display import Report, counted, fmt

COMMAND = "diff"
@dataclass(frozen=True)
class DiffConfig:
    a: str
    b: str
    out: Optional[str] = None


@dataclass
class DiffResult:
    config: DiffConfig
    a: Side
    b: Side
    options: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    only: dict[str, list[str]]  # metrics only one side has


def _median(by_seed: dict[int, float]) -> float:
    finite = [v for v in by_seed.values() if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _entries(a: Side, b: Side) -> list[tuple[str, str, str]]:
    """(shown name, entry of A, entry of B): the same entries; a single run (regress, classify) against each
    entry of a many-run result, whose runs are the same kind of run."""
    if list(a.values) == ["run"] and list(b.values) != ["run"]:
        return [(e, "run", e) for e in b.values]
    if list(b.values) == ["run"] and list(a.values) != ["run"]:
        return [(e, e, "run") for e in a.values]
    return [(e, e, e) for e in sorted(set(a.values) | set(b.values))]


def diff(cfg: DiffConfig) -> DiffResult:
    (da, ra), (db, rb) = read(cfg.a, "A"), read(cfg.b, "B")
    a, b = of_result(da, ra, cfg.a, "A"), of_result(db, rb, cfg.b, "B")
    oa, ob = settings(a), settings(b)
    options = [{"option": k, "a": oa.get(k), "b": ob.get(k)} for k in sorted(set(oa) | set(ob))
               if oa.get(k) != ob.get(k)]
    if a.command != b.command:
        options.insert(0, {"option": "(command)", "a": a.command, "b": b.command})
    va, vb = (da.get("versions") or {}), (db.get("versions") or {})
    versions = [{"package": k, "a": va.get(k), "b": vb.get(k)} for k in sorted(set(va) | set(vb))
                if va.get(k) != vb.get(k)]
    metrics, only_a, only_b = [], [], []
    for entry, ea, eb in _entries(a, b):
        for metric in DIRECTION:
            in_a, in_b = metric in a.values.get(ea, {}), metric in b.values.get(eb, {})
            name = metric if entry == "run" else f"{entry} {metric}"
            if in_a and in_b:
                x, y = _median(a.values[ea][metric]), _median(b.values[eb][metric])
                metrics.append({"entry": entry, "metric": metric, "a": x, "b": y, "change": y - x,
                                "relative": (y - x) / abs(x) if x and math.isfinite(x) and math.isfinite(y) else None})
            elif in_a:
                only_a.append(name)
            elif in_b:
                only_b.append(name)
    for fact in sorted(set(a.facts) | set(b.facts)):
        if fact in a.facts and fact in b.facts:
            metrics.append({"entry": "", "metric": fact, "a": a.facts[fact], "b": b.facts[fact], "change": None,
                            "relative": None})
    return DiffResult(cfg, a, b, options, versions, metrics, {"a": only_a, "b": only_b})


def document(result: DiffResult) -> dict[str, Any]:
    return {"command": COMMAND, "a": result.config.a, "b": result.config.b,
            "commands": [result.a.command, result.b.command], "options": result.options,
            "versions": result.versions, "metrics": result.metrics, "only_in": result.only,
            "seeds": [result.a.seeds, result.b.seeds]}


def report(result: DiffResult) -> list[Report]:
    cfg = result.config
    opts = [[o["option"], _text(o["a"]), _text(o["b"])] for o in result.options]
    rows = []
    for m in result.metrics:
        name = m["metric"] if m["entry"] in ("run", "") else f"{m['entry']} {m['metric']}"
        change = "" if m["change"] is None else f"{m['change']:+.3g}" + (
            f" ({m['relative']:+.1%})" if m["relative"] is not None and abs(m["relative"]) < 100 else "")
        rows.append([name, _text(m["a"]), _text(m["b"]), change])
    notes = [f"A: {cfg.a} ({result.a.command}, {counted(len(result.a.seeds), 'seed')}); B: {cfg.b} "
             f"({result.b.command}, {counted(len(result.b.seeds), 'seed')}); metrics are medians over seeds"]
    if result.a.command != result.b.command:
        shared = sorted({m["metric"] for m in result.metrics})
        notes.append(f"different commands: compared where the metrics share names ({', '.join(shared) or 'none'})")
    for side, names in result.only.items():
        if names:
            notes.append(f"only in {side.upper()}: {', '.join(names)}")
    for v in result.versions:
        notes.append(f"version of {v['package']}: {v['a']} → {v['b']}")
    if not result.versions:
        notes.append("versions: the same")
    title = "losslab diff: " + (f"{len(result.options)} option(s) differ" if result.options else "the same options")
    parts = [Report(title, ["option", "A", "B"], opts, [])] if opts else []
    parts.append(Report("metrics" if opts else title, ["metric", "A", "B", "change"], rows, notes))
    return parts


def _text(value: Any, width: int = 40) -> str:
    if isinstance(value, float):
        return fmt(value, ".6g")
    if value is None:
        return "—"
    text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def curves_text(result: DiffResult) -> str:
    """The median loss curves of both results, overlaid, as a terminal plot ('' when a side has none)."""
    from losslab.outputs.terminal_plot import curves

    series = []
    for label, side in (("A", result.a), ("B", result.b)):
        for entry, by_seed in side.curves.items():
            runs = [c for c in by_seed.values() if c]
            if not runs:
                continue
            length = min(len(c) for c in runs)
            median = [statistics.median(c[e] for c in runs) for e in range(length)]
            name = label if entry == "run" else f"{label} {entry}"
            series.append((name, list(range(1, length + 1)), median))
    if not series or not all(any(s[0].startswith(x) for s in series) for x in ("A", "B")):
        return ""
    return curves(series, title="median loss curves", xlabel="epoch")


def main(cfg: DiffConfig, *, json_out: bool) -> int:
    import json

    from losslab.commands.common import context, end_command
    from losslab.config import check_out_dir
    from losslab.outputs.display import make_console
    from losslab.outputs.files import dumps, write_plots, write_text
    from losslab.outputs.sinks import dispatcher

    check_out_dir(cfg.out, ("diff.json", "curves.png"))
    events = dispatcher(context(COMMAND, cfg, json_out))
    result = diff(cfg)
    doc = document(result)
    if cfg.out is not None:
        Path(cfg.out).expanduser().mkdir(parents=True, exist_ok=True)
        write_text(Path(cfg.out).expanduser() / "diff.json", dumps(doc))
        if result.a.curves and result.b.curves:
            write_plots(cfg.out, [("curves.png", _plot(result))])
    end_command(events, COMMAND, "ok", doc, json_out, json.dumps(json.loads(dumps(doc)), indent=2) + "\n")
    console = make_console(stderr=json_out)
    for part in report(result):
        part.render(console)
    text = curves_text(result) if not json_out else ""
    if text:
        print(text, file=console.file)
    return 0


def _plot(result: DiffResult) -> Any:
    def draw(path: Path) -> None:
        from losslab.outputs.plots import median_curves

        curves = {}
        for label, side in (("A", result.a), ("B", result.b)):
            for entry, by_seed in side.curves.items():
                curves[label if entry == "run" else f"{label} {entry}"] = list(by_seed.values())
        median_curves(curves, path, title="losslab diff: A and B")
    return draw
