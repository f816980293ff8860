"""`losslab gate BASELINE.json [CANDIDATE.json]`: did a change make training worse? Per metric, per-seed
samples of the baseline and the candidate (rerun now when no candidate file is given), a Student-t interval of
the change, a verdict and the smallest change the seeds can detect; the loss curves compared too.
Exit 1 when a metric regressed beyond its tolerance (or improved, with --fail-on-improvement)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from losslab.commands.gate.samples import DIRECTION, Configure, Side, of_result, read, run_seeds
from losslab.errors import ConfigError
from losslab.outputs.display import Report, counted, fmt
from losslab.verdicts import Comparison, compare, separation

COMMAND = "gate"
DEFAULT_TOLERANCE = "1%"  # what a change must exceed to count (relative to the baseline's median)
# where a relative default means nothing: a distance from the optimum below this is at the optimum
DEFAULTS = {"optimum_distance": "1e-4"}


@dataclass(frozen=True)
class GateOptions:
    baseline: str
    candidate: Optional[str] = None
    seeds: int = 5
    first_seed: Optional[int] = None  # default: the baseline's first seed (paired)
    alpha: float = 0.05
    tolerances: tuple[tuple[str, str], ...] = ()  # (metric, "5%" or "0.01")
    fail_on_improvement: bool = False
    rerun_baseline: bool = False
    markdown: Optional[str] = None
    out: Optional[str] = None
    min_seeds: Optional[int] = None  # fewer seeds than this on a side: status "too few seeds", exit 1
    sets: tuple[tuple[str, Any], ...] = ()  # --set OPTION=VALUE: the candidate is the baseline's run so changed

    def __post_init__(self) -> None:
        if not 1 <= self.seeds <= 1000:
            raise ConfigError("--seeds", f"must be from 1 to 1000 (got {self.seeds})")
        if self.min_seeds is not None and not 2 <= self.min_seeds <= 1000:
            raise ConfigError("--min-seeds", f"must be from 2 to 1000 (got {self.min_seeds})")
        if self.sets and self.candidate is not None:
            raise ConfigError("--set", "changes the baseline's run to make the candidate: give no CANDIDATE with it")
        if not (math.isfinite(self.alpha) and 0 < self.alpha < 0.5):
            raise ConfigError("--alpha", f"must be between 0 and 0.5 (got {self.alpha})")
        for metric, value in self.tolerances:
            if metric not in DIRECTION:
                raise ConfigError("--tolerance", f"unknown metric {metric!r}; choose from: {', '.join(DIRECTION)}")
            tolerance_value(value, 1.0)

    def tolerance(self, metric: str) -> str:
        return dict(self.tolerances).get(metric, DEFAULTS.get(metric, DEFAULT_TOLERANCE))


def parse_sets(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """--set OPTION=VALUE items: the option by its command-line name (lr, --lr, batch-size) or its place in a
    result's config (optim.lr, train.epochs, loss.name); the value a number, true/false, or text."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip().lstrip("-"), text.strip()
        if not sep or not key or not text:
            raise ConfigError("--set", f"expects OPTION=VALUE such as lr=0.001 or optim.lr=0.001 (got {item!r})")
        parts = key.split(".")
        name = parts[-2] if len(parts) > 1 and parts[-1] == "name" else parts[-1]
        value: Any = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(text)
                    break
                except ValueError:
                    continue
        out.append((name.replace("_", "-"), value))
    return tuple(out)


def parse_tolerances(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        metric, sep, value = item.partition("=")
        if not sep or not metric.strip() or not value.strip():
            raise ConfigError("--tolerance", f"expects METRIC=VALUE such as final_loss=5% or accuracy=0.01 "
                              f"(got {item!r})")
        out.append((metric.strip(), value.strip()))
    return tuple(out)


def tolerance_value(text: str, baseline: float) -> float:
    """'5%' of the baseline's magnitude, or an absolute number; one line naming --tolerance otherwise."""
    try:
        value = float(text[:-1]) / 100 * abs(baseline) if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError("--tolerance", f"{text!r} is not a number or a percentage") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError("--tolerance", f"must be a finite number >= 0 (got {text!r})")
    return value


@dataclass
class Row:
    entry: str
    metric: str
    comparison: Comparison
    tolerance: float
    fails: bool


@dataclass
class GateResult:
    config: GateOptions
    baseline: Side
    candidate: Side
    rows: list[Row]
    curves: list[dict[str, Any]]
    facts: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        verdicts = {r.comparison.verdict for r in self.rows}
        if any(r.fails for r in self.rows):
            return "regressed" if "regressed" in verdicts else "improved"
        least = self.config.min_seeds
        if least is not None and min(len(self.baseline.seeds), len(self.candidate.seeds)) < least:
            return "too few seeds"
        return "ok"


def sides(cfg: GateOptions, configure: Configure) -> tuple[Side, Side, list[str]]:
    """The baseline's samples (from its file; missing seeds rerun with --rerun-baseline) and the candidate's
    (its file, or the baseline's invocation run now)."""
    doc, rows = read(cfg.baseline, "BASELINE")
    baseline = of_result(doc, rows, cfg.baseline, "BASELINE")
    notes: list[str] = []
    first = cfg.first_seed if cfg.first_seed is not None else (baseline.seeds[0] if baseline.seeds else 0)
    seeds = list(range(first, first + cfg.seeds))
    if cfg.candidate is not None:
        cdoc, crows = read(cfg.candidate, "CANDIDATE")
        candidate = of_result(cdoc, crows, cfg.candidate, "CANDIDATE")
        if len(candidate.seeds) < 2:
            notes.append(f"the candidate has {counted(len(candidate.seeds), 'seed')}: no interval can say it "
                         f"regressed; `losslab gate {cfg.baseline}` (no CANDIDATE) runs this code for --seeds "
                         f"{cfg.seeds}, or write the candidate with a many-run command's --seeds 5")
        if candidate.command != baseline.command:
            raise ConfigError("CANDIDATE", f"{cfg.candidate} is a {candidate.command} result, the baseline a "
                              f"{baseline.command} result: gate compares results of one command (losslab diff "
                              "shows what two results of different commands share)")
    else:
        if not baseline.invocation:
            raise ConfigError("BASELINE", f"{cfg.baseline} records no invocation to rerun; give a CANDIDATE.json")
        invocation = baseline.invocation
        if cfg.sets:  # the baseline's run with options changed: both sides are this code (the baseline rerun too)
            invocation = {**invocation, "options": {**(invocation.get("options") or {}), **dict(cfg.sets)}}
        try:
            candidate = run_seeds(invocation, seeds, configure, "this code, now" + (
                " with " + ", ".join(f"{k}={v}" for k, v in cfg.sets) if cfg.sets else ""))
        except ConfigError as exc:
            if not cfg.sets:
                raise
            raise ConfigError("--set", f"{exc.option} {exc.message}".strip()) from None
        if not any(candidate.values.values()):
            from losslab.errors import RunFailed

            raise RunFailed(f"every run of the rerun of {cfg.baseline} failed: nothing to compare")
    missing = [s for s in seeds if s not in baseline.seeds]
    if missing and (cfg.rerun_baseline or cfg.sets):
        baseline.merge(run_seeds(baseline.invocation, missing, configure, "this code"))
        why = ("--set: both sides are this code, the options aside" if cfg.sets else
               "--rerun-baseline: they hold only if the code they measure is the baseline's")
        notes.append(f"baseline seeds {_span(missing)} were rerun now with the baseline's invocation ({why})")
    elif len(baseline.seeds) < cfg.seeds:
        notes.append(f"the baseline has {counted(len(baseline.seeds), 'seed')} of the {cfg.seeds} asked: intervals "
                     "need 2 or more on each side; a gate's --json (or --out's result.json) is a baseline with all its "
                     "seeds, or give --rerun-baseline")
    return baseline, candidate, notes


def _span(seeds: Sequence[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])


LOSS_VALUED = ("final_loss", "best_loss", "valid_loss")  # values of the training loss: of one loss only


def incomparable(baseline: Side, candidate: Side) -> dict[str, str]:
    """The metrics whose values mean different things on the two sides, and why: the training loss's when the data
    set differs (a validation accuracy on the same rows still compares), the loss-valued ones when the loss does."""
    def part(side: Side, key: str) -> Any:
        config = side.config.get("run", side.config) if isinstance(side.config, dict) else {}
        return config.get(key) if isinstance(config, dict) else None

    def data(side: Side) -> Any:
        d = part(side, "data")
        return {k: d.get(k) for k in ("dataset", "csv", "data_dir", "samples", "features", "subset")} \
            if isinstance(d, dict) else None

    def loss(side: Side) -> Any:
        value = part(side, "loss")
        return value.get("name") if isinstance(value, dict) else None

    if data(baseline) != data(candidate) and None not in (data(baseline), data(candidate)):
        return {m: "the data changed: a training loss over other rows" for m in ("final_loss", "best_loss")}
    a, b = loss(baseline), loss(candidate)
    if a != b and None not in (a, b):
        return {m: f"the loss changed ({a} → {b})" for m in LOSS_VALUED}
    return {}


def judge(cfg: GateOptions, baseline: Side, candidate: Side) -> list[Row]:
    rows = []
    apart = incomparable(baseline, candidate)
    for entry in baseline.values:  # an entry or metric the candidate lost (it diverged, failed) compares as all-NaN
        for metric in [m for m in DIRECTION if m in baseline.values[entry]]:
            a, b = baseline.values[entry][metric], candidate.values.get(entry, {}).get(metric, {})
            finite = [v for v in a.values() if math.isfinite(v)]
            scale = sorted(finite)[len(finite) // 2] if finite else 0.0
            tol = tolerance_value(cfg.tolerance(metric), scale)
            c = compare(a, b, lower_is_better=DIRECTION[metric], alpha=cfg.alpha, tolerance=tol)
            if metric in apart:  # (never green or red: two different quantities)
                c.verdict, c.worse = "not comparable", None
            fails = c.verdict == "regressed" or (cfg.fail_on_improvement and c.verdict == "improved")
            rows.append(Row(entry, metric, c, tol, fails))
    return rows


def gate(cfg: GateOptions, configure: Configure) -> GateResult:
    baseline, candidate, notes = sides(cfg, configure)
    shared = any(m in candidate.values.get(e, {}) for e in baseline.values for m in baseline.values[e])
    rows = judge(cfg, baseline, candidate) if shared or not any(candidate.values.values()) else []
    if not rows:
        raise ConfigError("CANDIDATE" if cfg.candidate else "BASELINE", "the two results share no metric to compare")
    apart, judged = incomparable(baseline, candidate), {r.metric for r in rows}
    for reason in sorted(set(apart.values())):
        names = [m for m in apart if apart[m] == reason and m in judged]
        notes.append(f"not comparable: {', '.join(names)} — {reason}")
    curves = []
    for entry in [e for e in baseline.curves if e in candidate.curves]:
        area, first = separation(baseline.curves[entry], candidate.curves[entry])
        curves.append({"entry": entry, "area": area, "separates_at_epoch": first})
    facts = [{"name": k, "baseline": baseline.facts.get(k), "candidate": candidate.facts.get(k),
              "same": baseline.facts.get(k) == candidate.facts.get(k)}
             for k in sorted(set(baseline.facts) & set(candidate.facts))]
    return GateResult(cfg, baseline, candidate, rows, curves, facts, notes)


def document(result: GateResult) -> dict[str, Any]:
    cfg = result.config
    return {
        "command": COMMAND, "status": result.status, "alpha": cfg.alpha,
        "method": "Student-t interval of the paired per-seed differences (Welch's for unpaired seeds)",
        "metrics": [{"entry": r.entry, "metric": r.metric, "verdict": r.comparison.verdict,
                     "baseline_median": r.comparison.baseline, "candidate_median": r.comparison.candidate,
                     "difference": r.comparison.difference, "interval": [r.comparison.low, r.comparison.high],
                     "detectable_change": r.comparison.detectable, "paired": r.comparison.paired,
                     "seeds": [r.comparison.n_baseline, r.comparison.n_candidate], "tolerance": r.tolerance,
                     "fails": r.fails} for r in result.rows],
        "curves": result.curves, "facts": result.facts, "notes": result.notes,
        "baseline": result.baseline.document(), "candidate": result.candidate.document(),
    }


def _change(c: Comparison) -> str:
    if c.difference is None:
        return "—"
    rel = c.relative()
    return f"{c.difference:+.3g}" + (f" ({rel:+.1%})" if rel is not None and abs(rel) < 100 else "")


def report(result: GateResult) -> Report:
    cfg = result.config
    level = f"{1 - cfg.alpha:.0%}"
    rows = []
    for r in result.rows:
        c = r.comparison
        interval = "—" if c.low is None or c.high is None else f"{c.low:+.3g}…{c.high:+.3g}"
        name = r.metric if r.entry == "run" else f"{r.entry} {r.metric}"
        # the verdict second: what a reviewer reads first, on any width (an 80-column terminal cut it off last)
        rows.append([name, c.verdict + (" ✗" if r.fails else ""), _change(c), fmt(c.baseline, ".5g"),
                     fmt(c.candidate, ".5g"), interval, fmt(c.detectable, ".2g")])
    base, cand = result.baseline, result.candidate
    title = (f"losslab gate: {result.status} — {base.command}: baseline {counted(len(base.seeds), 'seed')} from "
             f"{base.source}, candidate {counted(len(cand.seeds), 'seed')} from {cand.source}")
    pairing = "paired by seed" if any(r.comparison.paired for r in result.rows) else "independent samples"
    notes = [f"change: candidate − baseline ({pairing}); interval: {level} Student-t; "
             f"detectable: the smallest change these seeds find with 80% power at alpha {cfg.alpha:g}",
             f"verdicts: regressed/improved when the interval excludes no change and the change exceeds the "
             f"tolerance (default {DEFAULT_TOLERANCE} of the baseline, optimum_distance 1e-4; --tolerance "
             "METRIC=VALUE); unchanged when "
             "the whole interval is within it; inconclusive otherwise (more seeds narrow it)"]
    for curve in result.curves:
        name = "" if curve["entry"] == "run" else f" ({curve['entry']})"
        where = ("never separate beyond the seeds' spread" if curve["separates_at_epoch"] is None else
                 f"separate beyond the seeds' spread from epoch {curve['separates_at_epoch']}")
        notes.append(f"loss curves{name}: mean |Δ median| per epoch {fmt(curve['area'], '.3g')}; they {where}")
    if base.command == "benchmark":
        notes.append("benchmark: PROBLEM/OPTIMIZER steps_to_target and grad_evals_to_target per study (inf: missed; "
                     "a target missed now that was reached before is a regression)")
    elif not result.curves:
        notes.append("loss curves: not compared (a side has no per-epoch records: give the result.json of --out, "
                     "whose history.csv holds them, or a gate's document)")
    for fact in result.facts:  # (no None reaches the report: a winner of None is a tie, no clear winner)
        shown = {None: "no clear winner" if fact["name"] == "winner" else "—"}
        notes.append(f"{fact['name']}: {shown.get(fact['baseline'], fact['baseline'])} → "
                     f"{shown.get(fact['candidate'], fact['candidate'])}" + ("" if fact["same"] else "  (changed)"))
    if any(r.metric == "epochs_to_target" for r in result.rows):
        notes.append("epochs_to_target: a run that never reached the target counts as one epoch past its budget")
    lost = [r for r in result.rows if r.comparison.lost]
    if lost:
        notes.append("regressed without an interval: " + "; ".join(
            f"{r.entry} {r.metric}: seeds the baseline finished that are non-finite or missing in the candidate "
            f"(diverged or failed): {r.comparison.lost}" for r in lost))
    notes += result.notes
    return Report(title, ["metric", "verdict", "change", "baseline", "candidate", f"{level} interval",
                          "detectable"], rows, notes, text=frozenset({1}))


def markdown(result: GateResult, image: Optional[str]) -> str:
    """A short table for a pull-request comment or a CI job summary."""
    icon = {"regressed": "🔴", "improved": "🟢", "unchanged": "⚪", "inconclusive": "🟡", "changed": "🔵"}
    base, cand = result.baseline, result.candidate
    lines = [f"### losslab gate: **{result.status}** ({base.command}, {len(base.seeds)} vs {len(cand.seeds)} "
             "seeds)", "", *_what_changed(result), "",
             "| metric | baseline | candidate | change | interval | verdict |", "|---|---:|---:|---:|---:|---|"]
    for r in result.rows:
        c = r.comparison
        interval = "—" if c.low is None or c.high is None else f"{c.low:+.3g} … {c.high:+.3g}"
        name = r.metric if r.entry == "run" else f"{r.entry} {r.metric}"
        lines.append(f"| {name} | {fmt(c.baseline, '.5g')} | {fmt(c.candidate, '.5g')} | {_change(c)} | {interval} | "
                     f"{icon.get(c.verdict, '')} {c.verdict} |")
    lines.append("")
    lines.append(f"{1 - result.config.alpha:.0%} Student-t intervals of candidate − baseline; tolerance "
                 f"{DEFAULT_TOLERANCE} unless set.")
    if any(r.metric == "epochs_to_target" for r in result.rows):
        target = next((f["baseline"] for f in result.facts if f["name"] == "target"), None)
        lines.append(f"epochs_to_target: epochs until the run reached {TARGETS.get(base.task, 'its target')}"
                     + (f" ({fmt(target, '.4g')})" if isinstance(target, (int, float)) else "")
                     + "; one that never did counts as one epoch past its budget.")
    lines += [f"_{note}_" for note in result.notes if note.startswith("not comparable")]
    if image:
        lines += ["", f"![loss curves]({image})"]
    return "\n".join(lines) + "\n"


TARGETS = {"regression": "a training loss within 5 % of the least-squares optimum's (or --target-loss)",
           "classification": "validation accuracy 0.9 (or --target-accuracy)",
           "language-model": "a validation loss below the trigram baseline's"}


def _what_changed(result: GateResult) -> list[str]:
    """What differs between the two sides (settings, losslab versions), and the seeds each used."""
    from losslab.commands.gate.samples import changed

    base, cand = result.baseline, result.candidate
    diffs = [f"`{k}` {a!r} → {b!r}" for k, a, b in changed(base, cand) if k not in ("train.seed", "seeds")]
    if base.version != cand.version and None not in (base.version, cand.version):
        diffs.append(f"losslab {base.version} → {cand.version}")
    what = "; ".join(diffs[:12]) + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else "") if diffs else \
        "no setting: the code (or what it runs on)"
    return [f"**What changed:** {what}.", "",
            f"**Seeds:** baseline {_span(base.seeds) if base.seeds else 'none'}; candidate "
            f"{_span(cand.seeds) if cand.seeds else 'none'}."]


def curve_plot(result: GateResult) -> Any:
    """The median loss curves of both sides (per entry), with their seed bands, drawn into a PNG."""
    def draw(path: Path) -> None:
        from losslab.outputs.plots import median_curves

        curves = {}
        for entry in [e for e in result.baseline.curves if e in result.candidate.curves]:
            name = "" if entry == "run" else f" {entry}"
            curves[f"baseline{name}"] = list(result.baseline.curves[entry].values())
            curves[f"candidate{name}"] = list(result.candidate.curves[entry].values())
        median_curves(curves, path, title=f"gate: {result.baseline.command}")
    return draw


def main(cfg: GateOptions, configure: Configure, *, json_out: bool) -> int:
    from losslab import interrupt
    from losslab.commands.common import context, end_command
    from losslab.config import check_out_dir
    from losslab.config.files import check_file_target
    from losslab.outputs.display import make_console
    from losslab.outputs.files import dumps, write_plots, write_text
    from losslab.outputs.sinks import dispatcher

    check_out_dir(cfg.out, ("result.json", "gate.png"))  # before anything runs
    check_file_target("--markdown", cfg.markdown)
    events = dispatcher(context(COMMAND, cfg, json_out))
    result = gate(cfg, configure)
    doc = document(result)
    if cfg.out is not None:
        with interrupt.critical():
            Path(cfg.out).expanduser().mkdir(parents=True, exist_ok=True)
            write_text(Path(cfg.out).expanduser() / "result.json", dumps(doc))
        if result.curves:
            write_plots(cfg.out, [("gate.png", curve_plot(result))])
    if cfg.markdown is not None:
        image = None
        if cfg.out is not None and result.curves:
            md = Path(cfg.markdown).expanduser().resolve().parent
            png = (Path(cfg.out).expanduser() / "gate.png").resolve()
            image = str(png.relative_to(md)) if png.is_relative_to(md) else str(png)
        write_text(Path(cfg.markdown).expanduser(), markdown(result, image))
    end_command(events, COMMAND, result.status, doc, json_out)
    console = make_console(stderr=json_out)
    report(result).render(console)
    return 1 if result.status != "ok" else 0
