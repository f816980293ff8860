"""compare-optimizers: statistics, fairness, robustness to failing trials, tuning, CLI."""

import math

import numpy as np
import pytest

from conftest import regress_run as regress
from conftest import written
from losslab.commands.compare_optimizers import compare as compare_optimizers
from losslab.components.regression_data import synthetic
from losslab.config import CompareConfig, OptimConfig, RegressConfig, TrainConfig
from losslab.engine.events import Consumer
from losslab.engine.problems import RegressionProblem
from losslab.engine.runs import RunSpec as Trial
from losslab.engine.trials import run_trials
from losslab.stats import Summary, paired_wins, quantile, rank, summarise


def _problem(epochs=100, **train):
    cfg = RegressConfig(train=TrainConfig(epochs=epochs, device="cpu", **train))
    return cfg, RegressionProblem(cfg, synthetic())


def test_quantile_matches_numpy():
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert quantile(xs, q) == pytest.approx(np.percentile(xs, q * 100))
    assert quantile([1.0, math.inf, math.inf], 0.5) == math.inf


def _summary(name, finals):
    return Summary(name, 0.1, "default", finals, quantile(finals, 0.5), 0, 0, 0, 0, 0, None, 0, 0, 0, 0)


def test_paired_wins_need_a_real_difference_and_a_majority():
    a = _summary("a", [1.0, 1.0, 1.0, 2.0, 2.0])
    b = _summary("b", [2.0, 2.0, 1.0 + 1e-9, 1.0, math.inf])
    assert paired_wins(a, b) == 3  # seed 3 is float noise, not a win
    assert paired_wins(b, a) == 1
    assert [s.name for s in rank([_summary("x", [math.inf] * 3), _summary("y", [5.0] * 3)])] == ["y", "x"]


@pytest.mark.slow
def test_trials_of_a_seed_share_initial_weights_and_match_single_runs():
    cfg, problem = _problem(epochs=50, batch_size=16)
    trials = [Trial(name, OptimConfig(name).for_task("regression"), seed)
              for seed in (0, 1) for name in ("sgd", "adam")]
    results, interrupted = run_trials(problem, trials, vectorize=False)
    assert not interrupted and all(r.status == "ok" for r in results)
    first = {(r.spec.group, r.spec.seed): r.records[0] for r in results}
    # the loss at epoch 1 is computed from the initial weights (before any step) on the same first batch
    assert first[("sgd", 0)]["train_loss"] != first[("sgd", 1)]["train_loss"]
    for r in results:  # a trial is exactly the single run with the same seed and optimizer
        single = regress(RegressConfig(optim=OptimConfig(r.spec.optim.name),
                                       train=TrainConfig(epochs=50, batch_size=16, seed=r.spec.seed, device="cpu")))
        assert single.params == r.metrics["params"]


@pytest.mark.parametrize("vectorize", [False, True])
def test_one_optimizer_diverging_or_raising_does_not_stop_the_others(monkeypatch, vectorize):
    from losslab.components import optimizers

    cfg, problem = _problem(epochs=200)
    entry = optimizers.OPTIMIZERS.lookup("rmsprop")
    broken = type(entry)(entry.name, entry.description, lambda params, c: 1 / 0, entry.meta)
    monkeypatch.setitem(optimizers.OPTIMIZERS._entries, "rmsprop", broken)
    result = compare_optimizers(CompareConfig(run=cfg, optims=("sgd", "adam", "rmsprop"), lr_for=(("sgd", 100.0),),
                                              seeds=3, vectorize=vectorize), problem)
    by = {s.name: s for s in result.summaries}
    assert by["sgd"].diverged == 3 and by["rmsprop"].errors == 3 and by["adam"].diverged == 0
    assert [s.name for s in result.summaries][0] == "adam" and result.winner == "adam"
    assert result.status == "ok"
    assert all("ZeroDivisionError" in r.error for r in result.runs["rmsprop"])


@pytest.mark.parametrize("vectorize", [False, True])
def test_ctrl_c_keeps_finished_trials_and_marks_the_rest(vectorize):
    class StopAfter(Consumer):
        def on_epoch_end(self, run, record):
            if run.seed == 1 and record["epoch"] == 10:
                raise KeyboardInterrupt

    cfg, problem = _problem(epochs=50)
    result = compare_optimizers(CompareConfig(run=cfg, optims=("sgd", "adam"), seeds=3, vectorize=vectorize),
                                problem, StopAfter())
    sgd = [(r.spec.seed, r.status) for r in result.runs["sgd"]]
    adam = [r.status for r in result.runs["adam"]]
    assert result.status == "interrupted"
    if vectorize:  # all six trials train stacked and stop together, every epoch they trained recorded (the
        # records of a chunk of epochs are appended before the consumers see them: a Ctrl-C in a consumer does not
        # leave some runs an epoch short, nor drop epochs the final weights already went through)
        assert sgd == [(0, "interrupted"), (1, "interrupted"), (2, "interrupted")] and adam == ["interrupted"] * 3
        lengths = {len(r.records) for runs in result.runs.values() for r in runs}
        assert len(lengths) == 1 and lengths.pop() >= 10
        epochs = [r["epoch"] for r in result.runs["adam"][2].records]
        assert epochs == list(range(1, len(epochs) + 1))
    else:
        assert sgd == [(0, "ok"), (1, "interrupted"), (2, "not run")]


def test_tuning_picks_the_best_rate_of_the_same_budget():
    cfg, problem = _problem(epochs=100)
    grid = (0.001, 0.01, 0.1, 1.0)
    result = compare_optimizers(CompareConfig(run=cfg, optims=("sgd", "adam"), seeds=2, tune=True, tune_grid=grid),
                                problem)
    for name in ("sgd", "adam"):
        rows = result.tuning["results"][name]
        assert [r["lr"] for r in rows] == list(grid)
        best = min(rows, key=lambda r: r["final_loss"])
        assert result.tuning["chosen"][name] == best["lr"]
        assert next(s for s in result.summaries if s.name == name).lr_source == "tuned"
    assert result.tuning["seed"] not in (0, 1)


def test_summary_counts_and_extras():
    cfg, problem = _problem(epochs=300)
    results, _ = run_trials(problem, [Trial("momentum", OptimConfig("momentum").for_task("regression"), s)
                                      for s in range(3)])
    s = summarise("momentum", 0.05, "default", results, "regression", 1.05 * problem.optimum["loss"])
    assert s.reached == 3 and s.epochs_to_target is not None and s.diverged == 0
    assert s.extra["w"] == pytest.approx(problem.optimum["params"]["w"], abs=1e-4)


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_compare_json_and_gates(cli, tmp_path):
    out = tmp_path / "o"
    run = cli("compare-optimizers", "--optims", "sgd,adam", "--seeds", "2", "--epochs", "300", "--json", "--quiet",
              "--lr-for", "adam=0.05", "--out", str(out), "--expect", "sgd.final_loss<=0.01", "--expect", "winner=adam")
    assert run.exit_code == 1, run.stderr
    doc = run.json()
    assert doc["ranking"][0] in ("sgd", "adam") and set(doc["optimizers"]) == {"sgd", "adam"}
    assert doc["optimizers"]["adam"]["lr"] == 0.05 and doc["optimizers"]["adam"]["lr_source"] == "--lr-for"
    assert len(doc["optimizers"]["sgd"]["runs"]) == 2
    assert [e["passed"] for e in doc["expectations"]] == [True, False]
    assert written(out) == ["curves.png", "history.csv", "result.json"]
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0].startswith("optimizer,seed,lr,epoch,train_loss") and len(lines) == 1 + 2 * 2 * 300


def test_cli_compare_classify_task(cli):
    run = cli("compare-optimizers", "--task", "classify", "--subset", "300", "--epochs", "2", "--seeds", "2",
              "--optims", "sgd,adam", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["task"] == "classification" and "accuracy" in doc["optimizers"]["adam"]


@pytest.mark.parametrize("args, option", [
    (["--optims", "sgd,foo"], "--optim"),
    (["--optims", ","], "--optims"),
    (["--seeds", "0"], "--seeds"),
    (["--lr-for", "adam"], "--lr-for"),
    (["--lr-for", "adam=x"], "--lr-for"),
    (["--lr-for", "nesterov=0.1"], "--lr-for"),
    (["--dataset", "mnist"], "--dataset"),
    (["--task", "cluster"], "--task"),
    (["--tune-grid", "1:0.1:3"], "--tune-grid"),
    (["--target-accuracy", "0.9"], "--target-accuracy"),
    (["--expect", "nadam.final_loss<=1"], "--expect"),
])
def test_cli_compare_bad_input_exit_2(cli, args, option):
    cli("compare-optimizers", *args).assert_usage_error(option)


@pytest.mark.slow
def test_rank_by_orders_and_judges_by_the_chosen_measure(cli):
    """All four optimizers reach the optimum (a tie on final loss); ranked by epochs to the target, sgd (30
    epochs) beats momentum (63) on every paired seed."""
    doc = cli("compare-optimizers", "--seeds", "3", "--rank-by", "epochs_to_target", "--json", "--quiet",
              "--device", "cpu").json()
    assert doc["ranking"][:2] == ["sgd", "momentum"] and doc["winner"] == "sgd" and doc["paired_wins"] == 3
    epochs = {name: entry["epochs_to_target"] for name, entry in doc["optimizers"].items()}
    assert [epochs[n] for n in doc["ranking"]] == sorted(epochs[n] for n in doc["ranking"])
    by_loss = cli("compare-optimizers", "--seeds", "3", "--json", "--quiet", "--device", "cpu").json()
    assert by_loss["winner"] is None  # the same runs tie on final loss
    cli("compare-optimizers", "--rank-by", "accuracy").assert_usage_error("--rank-by")


def test_a_winner_whose_runner_up_never_finished_is_not_said_to_beat_it():
    import math
    from types import SimpleNamespace

    from losslab.commands.common import verdict

    done = SimpleNamespace(name="l1", median=0.02)
    lost = SimpleNamespace(name="huber", median=math.inf)  # its runs failed (no node left, say)
    result = SimpleNamespace(summaries=[done, lost], winner="l1", wins=1, status="ok", runs={})
    (line,) = verdict(result, 1, "better truth_distance", "the best median truth_distance")
    assert line.startswith("winner: l1 — the only one with a finished run") and "paired seeds" not in line
    result.summaries = [done, SimpleNamespace(name="huber", median=0.12)]
    assert verdict(result, 1, "better x", "best x") == ["winner: l1 — better x than huber on 1 of 1 paired seeds"]


def test_seeds_that_give_identical_results_count_as_one_comparison():
    from losslab.stats import distinct_seeds

    assert distinct_seeds([0.5] * 5, [0.51] * 5) == 1
    assert distinct_seeds([0.5] * 5, [0.51, 0.52, 0.51, 0.51, 0.51]) == 5  # one entry varies: seeds carry evidence
    assert distinct_seeds([0.5, float("inf")], [0.5, 0.5]) == 2


def test_a_deterministic_comparison_is_not_reported_as_five_paired_seeds(cli):
    """Full-batch regression: every seed reaches the same optimum, so 5 seeds are one comparison repeated."""
    run = cli("compare-optimizers", "--optims", "sgd,momentum", "--seeds", "5", "--epochs", "300", "--json",
              "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    finals = {n: [r["final_loss"] for r in o["runs"]] for n, o in run.json()["optimizers"].items()}
    assert all(max(v) - min(v) < 1e-6 * max(v) for v in finals.values())  # the premise: the seeds are identical
    assert run.json()["paired_wins"] in (0, 1)
    assert "one comparison, not 5 paired ones" in run.stderr


def test_interrupted_runs_show_where_they_stood_not_inf():
    """After Ctrl-C the table once ranked runs that stood at 0.0088 as `median loss inf`."""
    from losslab.engine.runs import RunResult, RunSpec
    from losslab.stats import summarise

    runs = [RunResult(RunSpec("sgd", OptimConfig("sgd", lr=0.1), seed), "interrupted",
                      [{"epoch": 1, "train_loss": 8.3}, {"epoch": 2, "train_loss": loss}], epochs_run=2)
            for seed, loss in enumerate([0.0088, 0.0090, 0.0089])]
    s = summarise("sgd", 0.1, "default", runs, "regression", 0.01)
    assert s.median == math.inf and s.stood == 0.0089
    from losslab.outputs.display import median_cell

    assert median_cell(s) == "0.0089 (stopped)"


def test_a_comparison_at_unequal_default_rates_says_so(cli):
    run = cli("compare-optimizers", "--task", "classify", "--optims", "adam,rmsprop", "--epochs", "1", "--seeds", "1",
              "--subset", "200", "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    lrs = {n: o["lr"] for n, o in run.json()["optimizers"].items()}
    assert lrs == {"adam": 0.01, "rmsprop": 0.001}  # digits' own adam default beside rmsprop's task default
    assert "untuned: these rates are each optimizer's default (adam 0.01 (digits default)" in run.stderr
    tuned = cli("compare-optimizers", "--optims", "adam,rmsprop", "--epochs", "2", "--seeds", "1", "--lr", "0.01",
                "--device", "cpu")
    assert "untuned" not in tuned.stdout + tuned.stderr  # one rate given for all: nothing to say


def test_help_gives_the_rates_a_dataset_really_uses():
    """--help once gave adam's classification default as 0.001 while digits trains adam at 0.01."""
    from losslab.cli.options import _lr_help

    assert "adam 0.01/0.001" in _lr_help() and "digits" in _lr_help().split("own, used with them:")[1]
    assert "adam 0.001," in _lr_help("classification") and "digits" not in _lr_help("regression")
