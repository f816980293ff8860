"""Successive halving goes on from where a rung stopped: a run paused at a rung's end and continued in the next
one has the numbers of the same run trained without stopping (records, final metrics, bit for bit) — with
schedules, mini-batches, dropout and momentum — and a sweep counts only the epochs it trained."""

from __future__ import annotations

import math

import pytest

from losslab.config import (
    ClassifyConfig,
    ClassifyDataConfig,
    CompareLossesConfig,
    ModelConfig,
    OptimConfig,
    RegressConfig,
    ScheduleConfig,
    TrainConfig,
)
from losslab.engine.problems import build_problem
from losslab.engine.runs import RunSpec
from losslab.engine.trials import budget, go_on, run_trials


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


@pytest.mark.parametrize("schedule", [None, ScheduleConfig("cosine", warmup=1), ScheduleConfig("onecycle"),
                                      ScheduleConfig("plateau", lr_patience=0)])
def test_a_run_paused_at_each_rung_and_continued_equals_the_run_never_stopped(schedule):
    train = TrainConfig(epochs=6, batch_size=64, device="cpu", **({"schedule": schedule} if schedule else {}))
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=300), train=train, optim=OptimConfig("adam"),
                         model=ModelConfig("mlp", hidden=16, dropout=0.2))
    problem = build_problem(cfg.resolved())
    specs = [RunSpec("adam", OptimConfig("adam", lr=0.01), 0),
             RunSpec("sgd", OptimConfig("sgd", lr=0.1, momentum=0.9), 1)]
    whole, _ = run_trials(problem, specs, vectorize=False)
    done = []
    for rung in (2, 4, 6):
        resumed = go_on(specs, done)
        assert [s.resume is not None for s in resumed] == [rung > 2] * 2
        with budget(problem, rung):
            done, _ = run_trials(problem, resumed, vectorize=False)
        assert [r.epochs_run for r in done] == [rung, rung]
        assert all((r.paused is not None) == (rung < 6) for r in done)
    for a, b in zip(whole, done):
        assert _without_time(b.records) == _without_time(a.records)
        assert b.metrics == a.metrics and b.status == a.status == "ok"


def test_a_rungs_stop_keeps_the_whole_budgets_schedule():
    """A run stopped at a rung is the beginning of the whole run: its cosine schedule spans --epochs, so its rates
    are the whole run's first ones (not a schedule squeezed into the rung)."""
    cfg = RegressConfig(train=TrainConfig(epochs=30, device="cpu", schedule=ScheduleConfig("cosine")))
    problem = build_problem(cfg.resolved())
    spec = RunSpec("sgd", OptimConfig("sgd", lr=0.1), 0)
    (whole,), _ = run_trials(problem, [spec], vectorize=False)
    with budget(problem, 10):
        (short,), _ = run_trials(problem, [spec], vectorize=False)
    assert [r["lr"] for r in short.records] == [r["lr"] for r in whole.records][:10]
    assert short.records[-1]["lr"] > 0.07  # at epoch 10 of 30 the cosine rate is still 0.075


def test_a_sweep_one_by_one_continues_and_counts_only_new_epochs(cli):
    common = ["lr-sweep", "--num", "9", "--min-lr", "1e-3", "--epochs", "90", "--halving", "--min-epochs", "10",
              "--json", "--quiet", "--device", "cpu"]
    stacked = cli(*common).json()  # stacked runs keep no state: each rung trains from the start again
    one_by_one = cli(*common, "--no-vectorize").json()
    rungs = [r["epochs"] for r in one_by_one["halving"]["rungs"]]
    assert rungs == [10, 30, 90]
    sizes = [len(r["candidates"]) for r in one_by_one["halving"]["rungs"]]
    assert sizes == [9, 3, 1]
    starts = [0, 10, 30]
    # the margin rule's rates train the whole budget from their start (in both engines)
    margin = sum(len(r["rates"]) * r["epochs"] for r in one_by_one["halving"]["margin_rungs"])
    assert one_by_one["halving"]["margin_rungs"] == stacked["halving"]["margin_rungs"]
    assert one_by_one["halving"]["epochs_trained"] == sum(n * (e - s) for n, e, s in zip(sizes, rungs, starts)) + margin
    assert stacked["halving"]["epochs_trained"] == sum(n * e for n, e in zip(sizes, rungs)) + margin
    assert [r["continued"] for r in one_by_one["halving"]["rungs"]] == \
        [r["continued"] for r in stacked["halving"]["rungs"]]
    assert one_by_one["suggested_lr"] == stacked["suggested_lr"]
    mine = {r["lr"]: r["final_loss"] for r in one_by_one["results"]}
    theirs = {r["lr"]: r["final_loss"] for r in stacked["results"]}
    assert mine == pytest.approx(theirs, rel=1e-5)


def _losses(epochs, **kw):
    return CompareLossesConfig(run=RegressConfig(train=TrainConfig(epochs=epochs, device="cpu")), seeds=3,
                               **kw).resolved()


@pytest.mark.slow
def test_compare_losses_by_halving_ranks_each_rung_as_a_comparison_of_that_many_epochs():
    """Rung 1's scores are those of a plain comparison trained for rung 1's epochs; the losses that go on end with
    the full comparison's numbers; the winner is the full comparison's."""
    from losslab.commands.compare_losses import compare, prepare

    def run(cfg):
        problem, heldout, rows, held = prepare(cfg)
        return compare(cfg, problem, heldout, rows, heldout_rows=held)

    halved = run(_losses(270, halving=True, min_epochs=10, vectorize=False))
    short = run(_losses(10))
    full = run(_losses(270))
    first = halved.halving[0]
    assert first.epochs == 10 and first.candidates == ["mse", "l1", "huber", "smooth-l1"]
    assert first.scores == pytest.approx({s.name: s.median for s in short.summaries}, rel=1e-5)
    best_two = sorted(first.scores, key=lambda n: (float(f"{first.scores[n]:.4g}"), n))[:2]
    assert sorted(first.continued) == sorted(best_two)
    assert halved.winner == full.winner == "l1"
    last = halved.halving[-1]
    assert last.epochs == 270 and last.candidates == [halved.winner]
    mine = {s.name: s.median for s in halved.summaries}
    assert mine[halved.winner] == pytest.approx({s.name: s.median for s in full.summaries}[halved.winner], rel=1e-5)
    assert [s.name for s in halved.summaries][0] == halved.winner
    assert sum(r.trained for r in halved.halving) == 3 * (4 * 10 + 2 * 20 + 1 * 60 + 1 * 180)
    from losslab.commands.compare_losses import report

    names = [row[1] for row in report(halved)[0].rows]  # a loss stopped at a rung is marked with its epochs
    assert names[0] == halved.winner and all(n.endswith(("(10)", "(30)", "(90)")) for n in names[1:])


def test_compare_losses_halving_in_the_json_and_its_options_checked(cli):
    run = cli("compare-losses", "--halving", "--seeds", "2", "--epochs", "90", "--min-epochs", "10", "--json",
              "--quiet", "--no-plot", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert [r["epochs"] for r in doc["halving"]["rungs"]] == [10, 30, 90]
    assert doc["halving"]["epochs_full"] == 4 * 2 * 90  # stacked: each rung trains its losses from the start
    assert doc["halving"]["epochs_trained"] == 2 * (4 * 10 + 2 * 30 + 1 * 90)
    assert doc["ranking"][0] == doc["halving"]["rungs"][-1]["candidates"][0]
    assert cli("compare-losses", "--seeds", "2", "--epochs", "90", "--json", "--quiet", "--no-plot",
               "--device", "cpu").json()["halving"] is None
    cli("compare-losses", "--min-epochs", "5").assert_usage_error("--min-epochs")
    cli("compare-losses", "--halving", "--halving-rate", "1").assert_usage_error("--halving-rate")
    cli("compare-losses", "--halving", "--epochs", "10", "--min-epochs", "10").assert_usage_error("--min-epochs")
    assert math.isfinite(doc["halving"]["rungs"][0]["scores"][doc["ranking"][0]])


@pytest.mark.slow
def test_halving_on_worker_processes_continues_runs_there_with_the_same_numbers(cli):
    common = ["lr-sweep", "--task", "classify", "--dataset", "digits", "--subset", "300", "--batch-size", "64",
              "--num", "6", "--epochs", "9", "--halving", "--min-epochs", "1", "--no-vectorize", "--json", "--quiet",
              "--device", "cpu"]
    local = cli(*common).json()
    pool = cli(*common, "--executor", "process", "--jobs", "2").json()
    # (a worker trains with one thread: sums in another order, so float rounding may differ)
    for mine, theirs in zip(pool["halving"]["rungs"], local["halving"]["rungs"]):
        assert (mine["candidates"], mine["continued"]) == (theirs["candidates"], theirs["continued"])
        assert [s["median_final_loss"] for s in mine["scores"]] == \
            pytest.approx([s["median_final_loss"] for s in theirs["scores"]], rel=1e-5)
    assert pool["halving"]["epochs_trained"] == local["halving"]["epochs_trained"] < 6 * 9 / 2
    assert [(r["lr"], r["epochs_run"]) for r in pool["results"]] == \
        [(r["lr"], r["epochs_run"]) for r in local["results"]]
    assert [r["final_loss"] for r in pool["results"]] == \
        pytest.approx([r["final_loss"] for r in local["results"]], rel=1e-5)


def test_a_first_rung_whose_leader_does_not_lead_the_next_is_called_too_short():
    from scipy.stats import kendalltau

    from losslab.stats import first_rung_check

    first, second = {0.1: 1.0, 0.3: 0.5, 1.0: 0.2}, {0.1: 0.30, 0.3: 0.25, 1.0: 0.4}
    note = first_rung_check(first, second, 1, "rates", 3)
    tau = kendalltau([1.0, 0.5, 0.2], [0.30, 0.25, 0.4]).statistic
    assert "leader 1 did not lead" in note and f"τ {tau:.2f}" in note and "--min-epochs 3" in note
    assert first_rung_check(first, {0.1: 0.3, 0.3: 0.2, 1.0: 0.1}, 1, "rates", 3) is None  # same leader
    assert first_rung_check(first, {1.0: 0.1}, 1, "rates", 3) is None  # nothing to compare


@pytest.mark.slow
def test_tuning_by_halving_with_a_one_epoch_first_rung_says_it_was_too_short(cli):
    """The issue's case: a 1-epoch first rung picked a different rate from the full tuning grid for every
    optimizer (adam ended 36 % worse); the report must say the first rung could not rank."""
    run = cli("compare-optimizers", "--true-w", "1,-2,0.5", "--samples", "200", "--noise", "0.5", "--batch-size",
              "20", "--optims", "sgd,adam", "--seeds", "2", "--tune", "--tune-grid", "1e-3:3:2", "--epochs", "27",
              "--halving", "--min-epochs", "1", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    assert "was too short to rank the rates of adam" in run.stdout + run.stderr
