"""`losslab benchmark`: optimizers judged across a suite of problems (issue 35; this is its first form: the
`defaults` ruleset). Each problem of the suite runs as `compare-optimizers` runs it — the same initial weights and
data order per seed for every optimizer, each at its own default rate — for the problem's budget; a run's time to
the problem's target is read from its records (steps, gradient evaluations, seconds; a miss is inf); the median
over seeds is the figure; then AlgoPerf's performance profiles and score B over the problems (`losslab.profiles`).
Still to come (see issue 35): the external ruleset's quasi-random trials and studies (`losslab.search_spaces`),
the analytic problems (`components.benchmark_problems`), paired statistics, plots, --out and --markdown."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

from losslab.config.suite import SUITES, Suite, SuiteProblem, read_suite
from losslab.errors import ConfigError, ExitCode

COMMAND = "benchmark"
RULESETS = ("defaults",)


@dataclass(frozen=True)
class BenchmarkConfig:
    optims: tuple[str, ...]
    suite: str = "tiny"  # a built-in suite's name or a suite file
    seeds: int = 1
    ruleset: str = "defaults"

    def __post_init__(self) -> None:
        if len(self.optims) < 2:
            raise ConfigError("--optims", "a benchmark compares at least two optimizers")
        if not 1 <= self.seeds <= 100:
            raise ConfigError("--seeds", f"must be from 1 to 100 (got {self.seeds})")
        if self.ruleset not in RULESETS:
            raise ConfigError("--ruleset", f"unknown ruleset {self.ruleset!r}; choose from: {', '.join(RULESETS)} "
                              "(external: to come)")

    def load(self) -> Suite:
        if self.suite in SUITES:
            return SUITES[self.suite]
        if not self.suite.endswith(".toml"):
            raise ConfigError("--suite", f"unknown suite {self.suite!r}; choose from: {', '.join(SUITES)}, or a "
                              "suite file FILE.toml")
        return read_suite(self.suite)


def resolved_target(sp: SuiteProblem, problem: Any) -> float:
    """The problem's target as a number: its own, or a reference the prepared problem computes."""
    t = sp.target
    if t.reference == "optimum":
        return t.factor * float(problem.optimum["loss"])
    if t.reference == "trigram":
        return t.factor * float(problem.baselines["trigram"])
    assert t.value is not None
    return t.value


def run_problem(sp: SuiteProblem, cfg: BenchmarkConfig, build: Callable[[str, dict[str, Any]], Any]) -> dict[str, Any]:
    """One problem: every optimizer on every seed (compare-optimizers' runs), each run's arrival at the target."""
    from losslab.commands.compare_optimizers import compare
    from losslab.engine.problems import build_problem
    from losslab.engine.skeleton import Plan
    from losslab.profiles import arrival, median

    flag = {"regress": "regress", "classify": "classify", "lm": "lm"}[sp.command]
    options = {**sp.option_dict(), "task": flag, "optims": list(cfg.optims), "seeds": cfg.seeds,
               "epochs": sp.budget}
    compare_cfg = build("compare-optimizers", options).resolved()
    problem = build_problem(compare_cfg.run)
    target = resolved_target(sp, problem)
    result = compare(compare_cfg, problem)
    batches = Plan.of(problem).batches
    out: dict[str, Any] = {"target": target, "target_text": sp.target.text(), "status": result.status,
                           "optimizers": {}}
    for name, runs in result.runs.items():
        arrivals = []
        for r in runs:
            per_step = (r.grad_evals / r.optimizer_steps) if r.optimizer_steps else 1.0
            arrivals.append(arrival(r.records, sp.target.metric, sp.target.bound, target, batches, per_step))
        out["optimizers"][name] = {
            **{m: median([a[m] for a in arrivals]) for m in ("epochs", "steps", "grad_evals", "seconds")},
            "reached": sum(math.isfinite(a["steps"]) for a in arrivals), "runs": len(runs),
            "final": median([r.metrics.get("final_loss", math.inf) for r in runs])}
    return out


def run(cfg: BenchmarkConfig, build: Callable[[str, dict[str, Any]], Any]) -> dict[str, Any]:
    from losslab.profiles import profile, score

    suite = cfg.load()
    problems: dict[str, Any] = {}
    status = "ok"
    for sp in suite.problems:  # Ctrl-C stops the suite: the problems it finished count, the one it stopped not
        done = run_problem(sp, cfg, build)
        if done["status"] == "interrupted":
            status = "interrupted"
            break
        problems[sp.name] = done
    if not problems:
        return {"command": COMMAND, "status": status, "suite": suite.name, "problems": {}, "optims": list(cfg.optims)}
    times = {o: {p: problems[p]["optimizers"][o]["steps"] for p in problems} for o in cfg.optims}
    return {"command": COMMAND, "status": status, "suite": suite.name, "ruleset": cfg.ruleset, "seeds": cfg.seeds,
            "optims": list(cfg.optims), "measure": "steps", "problems": problems,
            "profile": {"taus": [1.0, 1.5, 2.0, 3.0, 4.0], **profile(times, [1.0, 1.5, 2.0, 3.0, 4.0])},
            "score": score(times)}


def report_lines(doc: dict[str, Any]) -> list[str]:
    def steps(v: float) -> str:
        return "∞" if math.isinf(v) else f"{v:,.0f}"

    lines = [f"losslab benchmark: {doc['suite']} suite, ruleset {doc['ruleset']}, {doc['seeds']} seed(s); "
             "median steps to each problem's target (∞: missed)"]
    width = max(len(o) for o in doc["optims"])
    lines.append(f"{'problem':<18}" + "".join(f"{o:>{max(width, 9) + 2}}" for o in doc["optims"]))
    for name, p in doc["problems"].items():
        lines.append(f"{name:<18}" + "".join(f"{steps(p['optimizers'][o]['steps']):>{max(width, 9) + 2}}"
                                            for o in doc["optims"]))
    lines.append("score B (AlgoPerf, r_max 4; 1 = best on every problem): " + ", ".join(
        f"{o} {doc['score'][o]:.3f}" for o in doc["optims"]))
    lines += [f"  {name}: target {p['target_text']} = {p['target']:.4g}" for name, p in doc["problems"].items()]
    return lines


def main(cfg: BenchmarkConfig, build: Callable[[str, dict[str, Any]], Any], *, json_out: bool) -> int:
    """Run the suite; print the report (or the --json document: a miss is null there)."""
    from dataclasses import asdict

    from losslab.commands.common import context, emit, end_command
    from losslab.outputs.files import versions
    from losslab.outputs.sinks import dispatcher

    events = dispatcher(context(COMMAND, cfg, json_out))
    doc = {**run(cfg, build), "config": asdict(cfg), "versions": versions()}
    interrupted = doc["status"] == "interrupted"
    if not json_out:
        lines = report_lines(doc) if doc["problems"] else []
        stopped = f"interrupted: {len(doc['problems'])} problem(s) finished; the one Ctrl-C stopped is left out"
        emit("\n".join(lines + [stopped] * interrupted) + "\n", sys.stdout)
    end_command(events, COMMAND, doc["status"], finite(doc), json_out)
    return int(ExitCode.INTERRUPTED if interrupted else ExitCode.OK)


def finite(value: Any) -> Any:
    """The document with every non-finite number as None (JSON has no infinity: a miss is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
