"""`losslab benchmark`: times to target equal what single runs give (runs stop at the target), the external
ruleset's trials are the same quasi-random points for every optimizer and replay to the bit, a planted better
optimizer wins, a user's suite with a user's model and a failing optimizer, the outputs, bad input."""

from __future__ import annotations

import json
import math
import statistics

import pytest

import losslab
from losslab.profiles import score

pytestmark = pytest.mark.slow  # (a suite trains every problem for every optimizer)

ANALYTIC = "losslab.components.benchmark_problems"
ROSENBROCK = dict(model=f"{ANALYTIC}:rosenbrock_model", dataset=f"{ANALYTIC}:rosenbrock_data",
                  loss=f"{ANALYTIC}:objective", standardize=False)


def test_the_tiny_suite_counts_steps_to_target_as_single_runs_do(cli):
    run = cli("benchmark", "--optims", "sgd,adam", "--suite", "tiny", "--seeds", "1", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    regression = doc["problems"]["regression"]
    single = losslab.regress(optim="sgd", epochs=300, progress=False)
    target = 1.01 * single.document()["optimum"]["loss"]
    assert regression["target"] == pytest.approx(target, rel=1e-12)
    first = next(i for i, v in enumerate(single.history["train_loss"], start=1) if v <= target)
    assert regression["optimizers"]["sgd"]["steps"] == first  # full batch: one step per epoch
    sgd_run = next(r for r in regression["runs"] if r["optimizer"] == "sgd")
    assert sgd_run["epochs_run"] == first  # the run stopped at the target
    digits = losslab.classify(optim="adam", epochs=10, model="mlp", progress=False)
    reached = next((i for i, v in enumerate(digits.history["valid_acc"], start=1) if v >= 0.95), None)
    steps = doc["problems"]["digits-mlp"]["optimizers"]["adam"]["steps"]
    assert steps == (None if reached is None else reached * 23)  # 1,437 training rows / 64 per batch
    inf = float("inf")
    times = {o: {p: doc["problems"][p]["optimizers"][o]["steps"] or inf for p in doc["problems"]}
             for o in ("sgd", "adam")}
    assert doc["score"] == pytest.approx(score(times))


@pytest.mark.parametrize("vectorize", [[], ["--no-vectorize"]])
def test_rosenbrock_stops_where_a_single_run_first_reaches_the_target(cli, vectorize):
    """Stacked and one by one: each run stops at the epoch its unstopped twin first reaches train_loss <= 0.01."""
    doc = cli("benchmark", "--optims", "nadam,sgd", "--suite", "analytic", "--seeds", "2", "--json",
              *vectorize).json()
    single = losslab.regress(optim="nadam", epochs=3000, progress=False, **ROSENBROCK)
    first = next(i for i, v in enumerate(single.history["train_loss"], start=1) if v <= 0.01)
    figures = doc["problems"]["rosenbrock"]["optimizers"]["nadam"]
    assert figures["steps"] == first and figures["reached"] == 2
    assert {r["epochs_run"] for r in doc["problems"]["rosenbrock"]["runs"] if r["optimizer"] == "nadam"} == {first}
    assert single.model.theta.tolist() == pytest.approx([1.0, 1.0], abs=0.1)  # down the valley to its minimum


PLANTED = '''
import torch


class Good(torch.optim.SGD):
    """SGD at a rate that suits the noisy quadratic (2 / lambda_max = 0.0376)."""

    def __init__(self, params, lr=0.02):
        super().__init__(params, lr=lr)


class Poor(torch.optim.SGD):
    def __init__(self, params, lr=0.0005):
        super().__init__(params, lr=lr)


class Picky(torch.optim.SGD):
    """Fails on any matrix parameter: a model with a weight matrix breaks it, Rosenbrock's vector does not."""

    def __init__(self, params, lr=0.001):
        super().__init__(params, lr=lr)

    def step(self, closure=None):
        if any(p.dim() > 1 for g in self.param_groups for p in g["params"]):
            raise RuntimeError("Picky takes vectors only")
        return super().step(closure)


class Net(torch.nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.layer = torch.nn.Linear(in_features, 1)

    def forward(self, x):
        return self.layer(x)
'''


def test_a_planted_better_optimizer_wins_and_the_outputs_say_so(cli, tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run = cli("benchmark", "--optims", "planted:Poor,planted:Good", "--suite", "analytic", "--seeds", "3",
              "--out", "res", "--markdown", "summary.md", "--expect", "B.planted:Good>=0.5")
    assert run.exit_code == 0, run.stderr
    doc = json.loads((tmp_path / "res" / "result.json").read_text())
    assert doc["score"]["planted:Good"] > doc["score"]["planted:Poor"]
    quadratic = doc["problems"]["quadratic"]
    assert quadratic["optimizers"]["planted:Good"]["reached"] == 3
    assert quadratic["statistics"]["planted:Good"]["verdict"] in ("faster", "reaches more often")
    assert doc["verdict"][0].startswith("planted:Good:") and "B = " in doc["verdict"][0]
    assert (tmp_path / "res" / "profile.png").stat().st_size > 10_000
    history = (tmp_path / "res" / "history.csv").read_text().splitlines()
    assert history[0].startswith("problem,optimizer,study,trial,seed") and len(history) > 100
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.startswith("## Benchmark: analytic suite") and "| quadratic |" in markdown
    assert "score B" not in run.stdout and "B (steps)" in run.stdout and "verdict (against planted:Poor)" in run.stdout
    failing = cli("benchmark", "--optims", "planted:Poor,planted:Good", "--suite", "analytic", "--seeds", "1",
                  "--expect", "steps.quadratic.planted:Poor<=10")
    assert failing.exit_code == 1 and "steps.quadratic.planted:Poor" in failing.stderr


def test_tensorboard_gets_a_folder_per_problem_and_run(cli, tmp_path):
    run = cli("benchmark", "--optims", "sgd,adam", "--suite", "analytic", "--seeds", "1", "--tensorboard",
              str(tmp_path), "--quiet")
    assert run.exit_code == 0, run.stderr
    folders = sorted(p.name for p in (tmp_path / "benchmark").iterdir())
    assert folders == ["quadratic-adam-lr0.01-seed0", "quadratic-sgd-lr0.1-seed0", "rosenbrock-adam-lr0.01-seed0",
                       "rosenbrock-sgd-lr0.1-seed0"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "benchmark" / "rosenbrock-adam-lr0.01-seed0"))
    events.Reload()
    losses = events.Scalars("loss/train")
    assert len(losses) == 2466 and losses[-1].value <= 0.01  # up to the epoch it reached the target


def test_external_trials_are_the_same_points_for_every_optimizer_and_replay(cli, tmp_path):
    from losslab.commands.benchmark.runs import accepts
    from losslab.config.parts import rate_for
    from losslab.search_spaces import trials

    run = cli("benchmark", "--optims", "sgd,adam", "--suite", "analytic", "--ruleset", "external", "--studies", "2",
              "--trials", "3", "--out", str(tmp_path), "--quiet")
    assert run.exit_code == 0, run.stderr
    doc = json.loads((tmp_path / "result.json").read_text())
    points = doc["search"]["points"]
    assert len(points) == 2 and all(len(p) == 3 for p in points.values()) and points["0"] != points["1"]
    for r in doc["problems"]["quadratic"]["runs"]:
        default = rate_for(r["optimizer"], "regression")[0]
        drawn = trials(default, accepts(r["optimizer"]), 3, r["study"], points=[points[str(r["study"])][r["trial"]]])
        assert r["lr"] == drawn[0]["lr"] and r.get("betas") == (list(drawn[0]["betas"]) if "betas" in drawn[0]
                                                                else None)
        assert default / 10 <= r["lr"] <= default * 10
        space = doc["problems"]["quadratic"]["search_spaces"][r["optimizer"]]
        assert space[0] == {"name": "lr", "low": default / 10, "high": default * 10, "log": True, "one_minus": False}
    for p in doc["problems"].values():  # the study's figure is its fastest trial
        for optim, figures in p["optimizers"].items():
            for s in figures["per_study"]:
                mine = [r["steps"] or math.inf for r in p["runs"] if r["optimizer"] == optim and r["study"] ==
                        s["study"]]
                assert (s["steps"] or math.inf) == min(mine)
    replayed = cli("replay", str(tmp_path / "result.json"))
    assert replayed.exit_code == 0 and "identical" in replayed.stdout, replayed.stdout + replayed.stderr


def test_a_user_suite_with_a_user_model_and_an_optimizer_failing_on_one_problem(cli, tmp_path, monkeypatch):
    (tmp_path / "planted.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = tmp_path / "mine.toml"
    suite.write_text(f'''
[[problem]]
name = "my-net"
command = "regress"
options = {{ model = "planted:Net", samples = 64 }}
target = "train_loss <= 1.05 * optimum"
budget = 3000

[[problem]]
name = "valley"
command = "regress"
options = {{ model = "{ANALYTIC}:rosenbrock_model", dataset = "{ANALYTIC}:rosenbrock_data", \
loss = "{ANALYTIC}:objective", standardize = false }}
target = "train_loss <= 0.5"
budget = 200
''')
    run = cli("benchmark", "--optims", "adam,planted:Picky", "--suite", str(suite), "--seeds", "2", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    mine = doc["problems"]["my-net"]["optimizers"]
    assert mine["adam"]["reached"] == 2 and mine["planted:Picky"]["failed"].endswith("Picky takes vectors only")
    assert mine["planted:Picky"]["steps"] is None
    assert doc["problems"]["valley"]["optimizers"]["planted:Picky"]["failed"] is None
    text = cli("benchmark", "--optims", "adam,planted:Picky", "--suite", str(suite), "--seeds", "1").stdout
    assert "failed" in text and "my-net: planted:Picky failed:" in text


def test_the_verdict_statistics_against_hand_computation():
    """Paired by study on the logarithms of the times: the geometric mean ratio and its Student-t interval."""
    from scipy import stats

    from losslab.commands.benchmark.summary import figures, lm_statement, versus

    def runs(times, finals=None):
        return [{"optimizer": "x", "study": s, "trial": 0, "seed": s, "epochs": t, "steps": t, "grad_evals": t,
                 "seconds": t / 100, "final": (finals or [0.0] * len(times))[s], "status": "ok", "error": None}
                for s, t in enumerate(times)]

    ref, other = figures(runs([100, 120, 90, 110]), "steps"), figures(runs([80, 90, 75, 85]), "steps")
    out = versus(ref, other, "steps")
    logs = [math.log(b / a) for a, b in zip([100, 120, 90, 110], [80, 90, 75, 85])]
    half = stats.t.ppf(0.975, 3) * statistics.stdev(logs) / 2
    assert out["ratio"] == pytest.approx(math.exp(statistics.fmean(logs)), rel=1e-12)
    assert out["low"] == pytest.approx(math.exp(statistics.fmean(logs) - half), rel=1e-9)
    assert out["verdict"] == "faster" and out["paired"] == 4
    missing = figures(runs([math.inf, 90, math.inf, 85]), "steps")
    assert missing["reached"] == 2 and missing["steps"] == math.inf  # the median of 2 misses in 4 is a miss
    assert versus(ref, missing, "steps")["verdict"] == "reaches less often"
    trials = [dict(r, trial=t, study=0) for t, r in enumerate(runs([50, 30, 40]))]
    assert figures(trials, "steps")["per_study"][0]["trial"] == 1  # a study's figure is its fastest trial
    finals = [2.01, 2.03, 2.00]
    statement = lm_statement([{"final": v} for v in finals], 2.046)
    assert statement["p"] == pytest.approx(stats.ttest_1samp(finals, 2.046, alternative="less").pvalue)
    assert statement["below"] and statement["runs"] == 3


def test_ctrl_c_keeps_the_problems_finished_and_exits_130(cli, monkeypatch):
    """A problem Ctrl-C stopped is neither a miss nor a result: it is left out, and the command says so."""
    import losslab.commands.benchmark as benchmark

    real = benchmark.train_problem

    def stopped_on_rosenbrock(prep, *args):
        return ([], "interrupted") if prep.spec.name == "rosenbrock" else real(prep, *args)

    monkeypatch.setattr(benchmark, "train_problem", stopped_on_rosenbrock)
    run = cli("benchmark", "--optims", "sgd,adam", "--suite", "analytic", "--seeds", "1")
    assert run.exit_code == 130
    assert "interrupted: 1 problem(s) finished" in run.stdout and "rosenbrock" not in run.stdout
    doc = cli("benchmark", "--optims", "sgd,adam", "--suite", "analytic", "--seeds", "1", "--json").json()
    assert doc["status"] == "interrupted" and list(doc["problems"]) == ["quadratic"]


def test_bad_input_is_one_line(cli, tmp_path):
    for args, option in ((["--optims", "adam"], "--optims"), (["--optims", "adam,adam"], "--optims"),
                         (["--suite", "huge"], "--suite"), (["--ruleset", "nosuch"], "--ruleset"),
                         (["--optims", "adam,nosuch"], "--optims"), (["--trials", "0"], "--trials"),
                         (["--studies", "0"], "--studies"), (["--seeds", "0"], "--seeds"),
                         (["--method", "random"], "--method"), (["--reference", "lion"], "--reference"),
                         (["--measure", "seconds"], "--measure"), (["--expect", "B.nosuch>=1"], "--expect"),
                         (["--markdown", str(tmp_path)], "--markdown")):
        cli("benchmark", *(args if args[0] == "--optims" else ["--optims", "adam,sgd", *args])).assert_usage_error(
            option)
    for body in ('name = "a"\ncommand = "regress"\ntarget = "valid_acc >= 0.9"\nbudget = 3\n',  # no such metric
                 'name = "a"\ncommand = "regress"\ntarget = "train_loss <= 1"\nbudget = "x"\n',  # a wrong type
                 'name = "a"\ncommand = "regress"\ntarget = "train_loss <= 1"\nbudget = 3\n'
                 'options = { model = "nosuch:Net" }\n'):  # a model that cannot load: before any training
        bad = tmp_path / "s.toml"
        bad.write_text("[[problem]]\n" + body)
        run = cli("benchmark", "--optims", "adam,sgd", "--suite", str(bad))
        assert run.exit_code == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "--suite" in run.stderr or "--model" in run.stderr


def test_gate_on_a_benchmark_reruns_it_and_calls_a_newly_missed_target_a_regression(cli, tmp_path):
    run = cli("benchmark", "--optims", "sgd,adam", "--suite", "analytic", "--seeds", "2", "--out", str(tmp_path),
              "--quiet")
    assert run.exit_code == 0, run.stderr
    again = cli("gate", str(tmp_path / "result.json"), "--seeds", "2", "--json")
    assert again.exit_code == 0, again.stderr
    rows = {(r["entry"], r["metric"]): r["verdict"] for r in again.json()["metrics"]}
    assert rows[("quadratic/adam", "steps_to_target")] == "unchanged"  # the same code: the same steps
    assert rows[("rosenbrock/sgd", "steps_to_target")] == "unchanged"  # missed on both sides
    doc = json.loads((tmp_path / "result.json").read_text())
    for study in doc["problems"]["quadratic"]["optimizers"]["adam"]["per_study"]:
        study["steps"] = None  # the candidate no longer reaches the quadratic's target
    (tmp_path / "worse.json").write_text(json.dumps(doc))
    worse = cli("gate", str(tmp_path / "result.json"), str(tmp_path / "worse.json"))
    assert worse.exit_code == 1 and "quadratic/adam steps_to_target" in worse.stdout and "regressed" in worse.stdout


def test_from_python(tmp_path):
    result = losslab.benchmark(["adam", "sgd"], suite="analytic", seeds=1, progress=False,
                               markdown=str(tmp_path / "b.md"))
    assert result.status == "ok" and result.metrics["B.adam"] == 1.0 and result.metrics["reached.quadratic.sgd"] == 0
    assert result.document()["problems"]["quadratic"]["optimizers"]["sgd"]["steps"] is None  # a miss: null
    assert (tmp_path / "b.md").read_text().startswith("## Benchmark")
    with pytest.raises(losslab.ConfigError) as err:
        losslab.benchmark("adam,sgd", sute="tiny")  # type: ignore[call-arg]
    assert err.value.option == "sute"
