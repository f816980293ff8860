"""`losslab benchmark`: optimizers judged across a suite of problems (issue 35). Every problem of the suite is
prepared as `compare-optimizers` prepares one (checked before anything trains), then trained under a ruleset —
`defaults` (each optimizer at its own default hyper-parameters, one study per seed) or `external` (AlgoPerf's:
the same T quasi-random trials per study in each optimizer family's search space, the fastest trial per study) —
with every run stopping at the problem's target or its budget. Per problem and optimizer: steps, gradient
evaluations and seconds to the target (the median over studies; a miss is ∞), paired statistics against the
reference optimizer; over the suite: AlgoPerf's performance profiles and score B per measure, and a verdict."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from losslab.commands.benchmark.runs import SHARED, Build, prepare, runs_per_problem, spaces, train_problem
from losslab.commands.benchmark.summary import shown, summarise
from losslab.config.parts import GateConfig
from losslab.config.suite import SUITES, Suite, read_suite
from losslab.errors import ConfigError
from losslab.profiles import MEASURES

COMMAND = "benchmark"
RULESETS = ("defaults", "external")
PROFILE_PLOT = "profile.png"
METHODS = ("sobol", "halton")


@dataclass(frozen=True)
class BenchmarkConfig:
    optims: tuple[str, ...]
    suite: str = "tiny"  # a built-in suite's name or a suite file
    seeds: int = 3  # defaults: the studies
    ruleset: str = "defaults"
    studies: int = 5  # external: AlgoPerf's 5 studies of 5 trials
    trials: int = 5
    method: str = "sobol"  # external: the quasi-random sequence
    reference: Optional[str] = None  # what the others are compared with (None: the first)
    measure: str = "steps"  # what the profiles and B count; seconds are always a second view
    shared: tuple[tuple[str, Any], ...] = ()  # options every problem's runs take (executor, threads, device…)
    out: Optional[str] = None
    markdown: Optional[str] = None  # a Markdown summary file
    tensorboard: Optional[str] = None  # every run's curves: DIR/benchmark/PROBLEM-OPTIMIZER-seedN
    plot: Optional[bool] = None
    gates: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        if len(self.optims) < 2:
            raise ConfigError("--optims", "a benchmark compares at least two optimizers")
        if len(set(self.optims)) != len(self.optims):
            raise ConfigError("--optims", f"lists an optimizer twice: {','.join(self.optims)}")
        if not 1 <= self.seeds <= 100:
            raise ConfigError("--seeds", f"must be from 1 to 100 (got {self.seeds})")
        if self.ruleset not in RULESETS:
            raise ConfigError("--ruleset", f"unknown ruleset {self.ruleset!r}; choose from: {', '.join(RULESETS)}")
        for option, value, high in (("--studies", self.studies, 100), ("--trials", self.trials, 1000)):
            if not 1 <= value <= high:
                raise ConfigError(option, f"must be from 1 to {high} (got {value})")
        if self.method not in METHODS:
            raise ConfigError("--method", f"unknown sequence {self.method!r}; choose from: {', '.join(METHODS)}")
        if self.reference is not None and self.reference not in self.optims:
            raise ConfigError("--reference", f"{self.reference!r} is not among --optims {','.join(self.optims)}")
        if self.measure not in MEASURES[:2]:
            raise ConfigError("--measure", f"unknown measure {self.measure!r}; choose from: steps, grad_evals "
                              "(seconds are reported beside either)")
        from losslab.config.files import check_file_target

        check_file_target("--markdown", self.markdown)

    @property
    def reference_optim(self) -> str:
        return self.reference or self.optims[0]

    def load(self) -> Suite:
        if self.suite in SUITES:
            return SUITES[self.suite]
        if not self.suite.endswith(".toml"):
            raise ConfigError("--suite", f"unknown suite {self.suite!r}; choose from: {', '.join(SUITES)}, or a "
                              "suite file FILE.toml")
        return read_suite(self.suite)


@dataclass
class BenchmarkResult:
    """What the Python API's Result holds: the document, and the metrics --expect tests."""

    document: dict[str, Any]

    def metrics(self) -> dict[str, Any]:
        return metrics(self.document) if self.document["problems"] else {}


def metric_names(cfg: BenchmarkConfig, suite: Suite) -> list[str]:
    """What --expect can check: B.OPT (the measure's), B_seconds.OPT, steps.PROBLEM.OPT, grad_evals.…,
    seconds.…, reached.PROBLEM.OPT."""
    names = [f"{b}.{o}" for b in ("B", "B_seconds") for o in cfg.optims]
    return names + [f"{m}.{p.name}.{o}" for m in (*MEASURES, "reached") for p in suite.problems for o in cfg.optims]


def metrics(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in doc["optims"]:
        out[f"B.{o}"] = doc["score"][o]
        out[f"B_seconds.{o}"] = doc["scores"]["seconds"]["score"][o]
        for name, p in doc["problems"].items():
            for m in (*MEASURES, "reached"):
                out[f"{m}.{name}.{o}"] = p["optimizers"][o][m]
    return out


def run(cfg: BenchmarkConfig, build: Build, events: Any, suite: Suite,
        display: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Prepare every problem, train them in turn (`display.context`: the problem training), summarise: (the
    document, the runs' epoch rows)."""
    shared = dict(cfg.shared)
    where = f"--suite {cfg.suite}"
    prepared = [prepare(sp, cfg.optims, shared, build, where) for sp in suite.problems]
    per_problem = runs_per_problem(cfg)
    problems: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    status = "ok"
    for i, prep in enumerate(prepared):  # Ctrl-C stops the suite: the problems finished count, the stopped one not
        if display is not None:  # (the time left is the problem's: problems differ in cost by 100×)
            display.begin_part(prep.spec.name, i * per_problem, per_problem)
        runs, status = train_problem(prep, cfg, events, i * per_problem, per_problem * len(prepared))
        if status == "interrupted":
            break
        sp = prep.spec
        problems[sp.name] = {"command": sp.command, "target": prep.target, "target_text": sp.target.text(),
                             "budget": sp.budget, "note": sp.note, "runs_raw": runs,
                             **({"search_spaces": spaces(prep)} if cfg.ruleset == "external" else {}),
                             "runs": [{k: v for k, v in r.items() if k != "records"} for r in runs]}
        rows += [{"problem": sp.name, "optimizer": r["optimizer"], "study": r["study"], "trial": r["trial"],
                  "seed": r["seed"], **rec} for r in runs for rec in r.pop("records", [])]
    doc: dict[str, Any] = {"command": COMMAND, "status": status, "suite": suite.name, "ruleset": cfg.ruleset,
                           "optims": list(cfg.optims), "studies": cfg.seeds if cfg.ruleset == "defaults" else
                           cfg.studies, "trials": 1 if cfg.ruleset == "defaults" else cfg.trials}
    if cfg.ruleset == "external":
        from losslab.search_spaces import unit_points

        doc["search"] = {"method": cfg.method, "points": {s: unit_points(cfg.trials, s, cfg.method)
                                                          for s in range(cfg.studies)}}
    if problems:
        doc.update(summarise(problems, cfg.optims, cfg.reference_optim, cfg.measure))
    else:
        doc["problems"] = {}
    return doc, rows


def experiment(cfg: BenchmarkConfig, build: Build, *, json_out: bool = False, quiet: bool = False) -> tuple[Any, Any]:
    """The checks, the runs and the results, up to the outputs (what the CLI and the Python API share)."""
    from losslab.commands.common import DATA_FILES, Output, Where, check_gates, context
    from losslab.config.files import check_out_dir
    from losslab.expect import check_names
    from losslab.outputs.display import TrialsDisplay, make_console
    from losslab.outputs.files import clean, versions
    from losslab.outputs.sinks import dispatcher

    suite = cfg.load()
    check_out_dir(cfg.out, DATA_FILES + (PROFILE_PLOT,))
    check_out_dir(cfg.tensorboard, option="--tensorboard")
    check_names(cfg.gates.expect, metric_names(cfg, suite))
    console = make_console(stderr=json_out)
    display = TrialsDisplay(console, quiet=quiet)
    display.plan(list(cfg.optims), runs_per_problem(cfg) // len(cfg.optims) * len(suite.problems))
    events = dispatcher(context(COMMAND, cfg, json_out, quiet), [display])
    with display:
        doc, rows = run(cfg, build, events, suite, display)
    doc = {**doc, "config": asdict(cfg), "versions": versions()}
    outcomes = check_gates(cfg.gates, doc["status"], metrics(doc)) if doc["problems"] else []
    if cfg.markdown is not None and doc["problems"]:
        from pathlib import Path

        from losslab.outputs.files import write_text

        write_text(Path(cfg.markdown).expanduser(), markdown(doc))
    plots = [(PROFILE_PLOT, lambda path: profile_plot(doc, path))] if doc["problems"] else []
    return (Output(clean(doc), report(doc), rows, outcomes, doc["status"], plots, result=BenchmarkResult(doc)),
            Where(console, json_out, quiet, cfg.out, cfg.plot, events))


def main(cfg: BenchmarkConfig, build: Build, *, json_out: bool, quiet: bool = False) -> int:
    from losslab.commands.common import finish

    return finish(*experiment(cfg, build, json_out=json_out, quiet=quiet))


def profile_plot(doc: dict[str, Any], path: Any) -> None:
    from losslab.outputs.plots import performance_profiles

    views = {m: doc["scores"][m]["profile"] for m in (doc["measure"], "seconds")}
    performance_profiles(doc["taus"], views, path, title=f"performance profiles: {doc['suite']} suite, "
                         f"{doc['ruleset']} ruleset")


def report(doc: dict[str, Any]) -> Any:
    """The table of times to target (problem × optimizer), the scores, the targets, the statistics, the verdict."""
    from losslab.outputs.display import Report, counted

    if not doc["problems"]:
        return Report(f"losslab benchmark: {doc['suite']} suite", [], [],
                      ["interrupted: no problem finished (the one Ctrl-C stopped is left out)"])
    optims, measure = doc["optims"], doc["measure"]
    unit = "steps" if measure == "steps" else "gradient evaluations"
    studies = (counted(doc['studies'], 'seed') if doc["ruleset"] == "defaults"
               else f"{counted(doc['studies'], 'study', 'studies')} × {counted(doc['trials'], 'trial')}, the "
               "fastest trial per study")
    title = (f"losslab benchmark: {doc['suite']} suite, {doc['ruleset']} ruleset, {studies}; median {unit} to "
             "each problem's target (∞: missed)")
    rows = [[name] + [shown(p["optimizers"][o][measure], p["optimizers"][o]["reached"],
                            p["optimizers"][o]["studies"], p["optimizers"][o]["failed"]) for o in optims]
            for name, p in doc["problems"].items()]
    rows.append([f"B ({unit})"] + [f"{doc['score'][o]:.3f}" for o in optims])
    rows.append(["B (seconds)"] + [f"{doc['scores']['seconds']['score'][o]:.3f}" for o in optims])
    notes = ["B: AlgoPerf's score, the area under the performance profile up to 4× the best (1: best on every "
             "problem)"]
    notes += [f"{name}: target {p['target_text']}" + (f" = {p['target']:.4g}" if p["target_text"].split()[-1]
                                                          .isalpha() else "") + f", budget {p['budget']} epochs"
              for name, p in doc["problems"].items()]
    notes += [f"{name}: {o} failed: {p['optimizers'][o]['failed']}" for name, p in doc["problems"].items()
              for o in optims if p["optimizers"][o]["failed"]]
    notes += lm_notes(doc)
    notes += ["verdict (against " + doc["reference"] + "):"] + [f"  {line}" for line in doc["verdict"]]
    if doc["status"] == "interrupted":
        notes.append(f"interrupted: {len(doc['problems'])} problem(s) finished; the one Ctrl-C stopped is left out")
    return [details(doc), Report(title, ["problem", *optims], rows, notes)]


def details(doc: dict[str, Any]) -> Any:
    """Per problem and optimizer: the medians of steps, gradient evaluations and seconds to the target, the last
    value of the target's metric, the studies that reached it, and the paired ratio to the reference."""
    from losslab.outputs.display import Report, fmt

    figures = [(name, o, p["optimizers"][o], p["statistics"].get(o)) for name, p in doc["problems"].items()
               for o in doc["optims"]]
    evals = any(f["grad_evals"] != f["steps"] for _, _, f, _ in figures)  # (a column only where they differ)
    rows = []
    for name, o, f, s in figures:
        versus = "reference" if s is None else "—" if s["ratio"] is None else f"{s['ratio']:.2f}×" + (
            f" ({s['low']:.2f}–{s['high']:.2f})" if s["low"] is not None and s["high"] is not None else "")
        seconds = "failed" if f["failed"] else "∞" if not math.isfinite(f["seconds"]) else f"{f['seconds']:.2f}"
        rows.append([name, o, shown(f["steps"], failed=f["failed"])]
                    + [shown(f["grad_evals"], failed=f["failed"])] * evals
                    + [seconds, fmt(f["final"], ".4g"), f"{f['reached']}/{f['studies']}", versus])
    unit = "steps" if doc["measure"] == "steps" else "gradient evaluations"
    headers = ["problem", "optimizer", "steps"] + ["grad evals"] * evals + ["seconds", "final", "reached",
                                                                             "× reference"]
    return Report(f"per problem and optimizer: medians over studies to the target, the last value of its metric; "
                  f"{unit} against {doc['reference']}'s (paired by study, 95% interval)", headers, rows, [],
                  text=frozenset({1}))


def lm_notes(doc: dict[str, Any]) -> list[str]:
    lines = []
    for name, p in doc["problems"].items():
        for o, s in p.get("lm", {}).items():
            test = f"one-sided t-test p = {s['p']:.3g}" if s["p"] is not None else "no test below two runs"
            lines.append(f"{name}: {o}'s mean validation loss {s['mean']:.4f} {'<' if s['below'] else '>='} "
                         f"{p['target']:.4f} ({test}, {s['runs']} runs)")
    return lines


def markdown(doc: dict[str, Any]) -> str:
    """The summary for a pull request or a paper's appendix: the verdict, the table, the scores, the setting."""
    from losslab.outputs.display import counted

    optims, measure = doc["optims"], doc["measure"]
    studies = (counted(doc['studies'], 'seed') if doc["ruleset"] == "defaults"
               else f"{counted(doc['studies'], 'study', 'studies')} × "
               f"{counted(doc['trials'], 'quasi-random trial')} ({doc['search']['method']})")
    lines = [f"## Benchmark: {doc['suite']} suite, {doc['ruleset']} ruleset, {studies}", "",
             f"**Verdict** (against {doc['reference']}):", ""]
    lines += [f"- {line}" for line in doc["verdict"]] + [""]
    lines.append(f"Median {measure.replace('_', ' ')} to each problem's target (∞: missed; (k/n): studies that "
                 "reached it).")
    lines += ["", "| problem | target | " + " | ".join(optims) + " |", "|---|---|" + "---:|" * len(optims)]
    for name, p in doc["problems"].items():
        lines.append(f"| {name} | `{p['target_text']}` | " + " | ".join(
            shown(p["optimizers"][o][measure], p["optimizers"][o]["reached"], p["optimizers"][o]["studies"],
                  p["optimizers"][o]["failed"]) for o in optims) + " |")
    lines.append(f"| **B ({measure.replace('_', ' ')})** | | " + " | ".join(f"**{doc['score'][o]:.3f}**"
                                                                          for o in optims) + " |")
    lines.append("| B (seconds) | | " + " | ".join(f"{doc['scores']['seconds']['score'][o]:.3f}" for o in optims)
                 + " |")
    versions = ", ".join(f"{k} {v}" for k, v in doc.get("versions", {}).items())
    lines += ["", "B is AlgoPerf's score: (1/3)∫₁⁴ ρ(τ) dτ over the performance profile ρ.", "",
              f"Measured with {versions}." if versions else ""]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["SHARED", "BenchmarkConfig", "experiment", "main"]
