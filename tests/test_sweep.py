"""lr-sweep: grid suggestions, the LR range test against a hand-written one, suggestion rules, CLI."""

import math

import pytest
import torch
from torch import nn

from conftest import tutorial_tensors, written
from losslab.commands.lr_sweep import grid_sweep, lightning, min_loss_tenth, range_test, steepest, valley
from losslab.components.regression_data import synthetic
from losslab.config import OptimConfig, RegressConfig, SweepConfig, TrainConfig
from losslab.engine.problems import RegressionProblem
from losslab.engine.range_test import range_test_run, schedule, state_hash


def _problem(epochs=300, optim="sgd"):
    cfg = RegressConfig(optim=OptimConfig(optim), train=TrainConfig(epochs=epochs, device="cpu"))
    return cfg, RegressionProblem(cfg, synthetic())


def test_schedules_hit_both_ends():
    exp = schedule(1e-7, 10, 100, "exp")
    assert exp[0] == pytest.approx(1e-7) and exp[-1] == pytest.approx(10) and len(exp) == 100
    assert exp[50] / exp[49] == pytest.approx(exp[1] / exp[0])  # constant ratio
    lin = schedule(0.1, 1.0, 10, "linear")
    assert lin[1] - lin[0] == pytest.approx(0.1) and lin[-1] == pytest.approx(1.0)


def test_the_range_tests_smoothing_is_a_bias_corrected_ema():
    """The curve the suggestions read: avg_i / (1 - beta^(i+1)) over the raw losses, computed here by hand."""
    cfg, problem = _problem()
    curve = range_test_run(problem, SweepConfig(run=cfg, range_test=True, steps=40), seed=0)
    avg, expected = 0.0, []
    for i, loss in enumerate(curve.losses):
        avg = 0.98 * avg + 0.02 * loss
        expected.append(avg / (1 - 0.98 ** (i + 1)))
    assert curve.smoothed == pytest.approx(expected[:len(curve.smoothed)], rel=1e-12)
    assert curve.smoothed[0] == pytest.approx(curve.losses[0])  # no drift towards 0 at the start


def test_suggestion_rules_on_known_curves():
    lrs = [10 ** (-6 + 6 * i / 59) for i in range(60)]
    # a sigmoid-shaped drop centred at lr = 1e-3, then a blow-up
    losses = [1 + 2 / (1 + math.exp(3 * (math.log10(lr) + 3))) for lr in lrs[:50]] + [1.2 + i for i in range(10)]
    s = steepest(lrs, losses)
    assert math.log10(lrs[s]) == pytest.approx(-3, abs=0.15)
    v = valley(losses)
    assert 10 < v < 50 and losses[v] < losses[0]  # inside the falling part, before the minimum
    assert min_loss_tenth(lrs, losses) == pytest.approx(lrs[losses.index(min(losses))] / 10)
    # fastai's arithmetic: run ends at 5 with length 6, start = 5 - 6 = -1, third = 2, index -1 + 2 + 1 = 2
    assert valley([5.0, 4.0, 3.0, 2.0, 1.0, 0.5]) == 2


def test_range_test_matches_a_hand_written_one_and_restores_state():
    cfg, problem = _problem()
    sweep = SweepConfig(run=cfg, range_test=True, steps=60)
    run = range_test_run(problem, sweep, seed=0)
    # hand-written: same initial weights, full batch, rate set before each step
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    losses = []
    for lr in schedule(1e-7, 10, 60, "exp"):
        for g in opt.param_groups:
            g["lr"] = lr
        loss = nn.MSELoss()(model(x), y)
        if not math.isfinite(loss.item()):
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert run.losses == losses[:len(run.losses)]
    assert run.stopped == "diverged"  # SGD blows up at large rates
    assert run.hash_before == run.hash_after


def test_state_hash_sees_any_change():
    model = nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    h0 = state_hash(model, opt)
    assert state_hash(model, opt) == h0
    opt.param_groups[0]["lr"] = 0.2
    assert state_hash(model, opt) != h0
    opt.param_groups[0]["lr"] = 0.1
    with torch.no_grad():
        model.bias.add_(1e-6)
    assert state_hash(model, opt) != h0


def test_range_test_seeds_report_spread_and_recommendation():
    cfg, problem = _problem()
    result = range_test(SweepConfig(run=cfg, range_test=True, steps=50, seeds=3), problem)
    assert len(result.runs) == 3 and result.state_unchanged
    v = result.suggestions["valley"]
    assert v["min"] <= v["median"] <= v["max"] and result.recommended == v["median"]
    assert len(result.median_curve["lr"]) == len(result.median_curve["smoothed_loss"])


@pytest.mark.parametrize("vectorize", [True, False])
def test_grid_suggests_the_lowest_median_and_the_largest_stable_rate(vectorize):
    cfg, problem = _problem(epochs=200)
    sweep = SweepConfig(run=cfg, lrs=(0.001, 0.01, 0.1, 0.5, 5.0), seeds=2, vectorize=vectorize)
    result = grid_sweep(sweep, problem)
    by_lr = {s.lr: s for s in result.summaries}
    assert by_lr[5.0].diverged == 2 and result.largest_stable_lr == 0.5
    finite = {lr: s.median for lr, s in by_lr.items() if math.isfinite(s.median)}
    best = min(float(f"{v:.4g}") for v in finite.values())
    assert float(f"{finite[result.suggested_lr]:.4g}") == best
    assert result.vectorized == vectorize


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_grid_json_and_gates(cli, tmp_path):
    run = cli("lr-sweep", "--num", "5", "--epochs", "200", "--json", "--quiet", "--out", str(tmp_path / "o"),
              "--expect", "suggested_lr>=0.001", "--expect", "largest_stable_lr<=1e-9")
    assert run.exit_code == 1, run.stderr
    doc = run.json()
    assert doc["mode"] == "grid" and len(doc["rates"]) == 5 and len(doc["results"]) == 5
    assert [e["passed"] for e in doc["expectations"]] == [True, False]
    assert written(tmp_path / "o") == ["history.csv", "result.json", "sweep.png"]


def test_cli_range_test_json(cli, tmp_path):
    run = cli("lr-sweep", "--range-test", "--steps", "40", "--json", "--quiet", "--out", str(tmp_path / "o"))
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["mode"] == "range-test" and doc["state_check"]["unchanged"] is True
    assert list(doc["suggestions"]) == ["valley", "steepest", "min_loss/10", "lightning"]
    assert doc["suggested_lr"] == doc["suggestions"]["valley"]["median"]
    assert (tmp_path / "o" / "range_test.png").is_file()


@pytest.mark.parametrize("args, option", [
    (["--min-lr", "1", "--max-lr", "0.1"], "--min-lr"),
    (["--min-lr", "-1"], "--min-lr"),
    (["--max-lr", "0"], "--max-lr"),
    (["--num", "1"], "--num"),
    (["--range-test", "--steps", "5"], "--steps"),
    (["--lrs", "0.1"], "--lrs"),
    (["--lrs", "0.1,-2"], "--lrs"),
    (["--range-test", "--mode", "cosine"], "--mode"),
    (["--expect", "best_lr>=1"], "--expect"),
    (["--lr", "0.1"], "--lr"),
])
def test_cli_sweep_bad_ranges_exit_2(cli, args, option):
    cli("lr-sweep", *args).assert_usage_error(option)


def test_the_lightning_suggester_is_lightning_2_6_s_rule():
    """Lightning 2.6.6's suggestion(): torch.gradient of the smoothed loss with the linear rates as spacing, on
    float32 tensors, first 10 and last point skipped, non-finite losses dropped — computed here with numpy's
    gradient (the same second-order rule) in float32 as the reference."""
    import numpy as np

    lrs = [1e-7 * (1e8 ** (i / 99)) for i in range(100)]
    losses = [2.0 - 1.5 / (1 + math.exp(-(math.log10(lr) + 2) * 3)) + 0.01 * math.sin(i) for i, lr in
              enumerate(lrs)]
    losses[50] = math.nan
    kept = [i for i in range(10, 99) if math.isfinite(losses[i])]
    g = np.gradient(np.array([losses[i] for i in kept], dtype=np.float32),
                    np.array([lrs[i] for i in kept], dtype=np.float32))
    assert lightning(lrs, losses) == kept[int(np.argmin(g))]
    assert lightning(lrs[:5], losses[:5]) is None  # too few points once the skips are applied


def lightning_lr_find(model, x, y, min_lr, max_lr, num_training, beta=0.98, threshold=4.0):
    """Lightning 2.6's `Tuner.lr_find` re-implemented from its documented steps (tuner/lr_finder.py): the rate is
    logged before each batch from `_ExponentialLR` (the first batch at min_lr, batch k >= 1 at
    min·(max/min)^((k+1)/N)); after each batch the loss is smoothed with the trainer's global step (already
    counting this batch) in the debiasing, the search stops once the smoothed loss passes 4x the best (from
    step 2 on), and `suggestion()` takes the most negative torch.gradient over the rates, skipping the first 10
    points and the last."""
    opt = torch.optim.SGD(model.parameters(), lr=min_lr)
    rates, smoothed, avg, best = [], [], 0.0, 0.0
    for k in range(num_training):
        lr = min_lr if k == 0 else min_lr * (max_lr / min_lr) ** ((k + 1) / num_training)
        for g in opt.param_groups:
            g["lr"] = lr
        rates.append(lr)
        loss = nn.MSELoss()(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step = k + 1  # trainer.global_step after the optimizer step
        avg = beta * avg + (1 - beta) * loss.item()
        value = avg / (1 - beta ** (step + 1))
        stop = step > 1 and value > threshold * best
        if value < best or step == 1:
            best = value
        smoothed.append(value)
        if stop:
            break
    losses, lrs = torch.tensor(smoothed[10:-1]), torch.tensor(rates[10:-1])
    keep = torch.isfinite(losses)
    gradients = torch.gradient(losses[keep], spacing=[lrs[keep]])[0]
    return rates[10:-1][int(torch.nonzero(keep)[int(torch.argmin(gradients))])]


@pytest.mark.parametrize("min_lr, max_lr, steps", [(1e-7, 10.0, 100), (1e-8, 1.0, 100), (1e-6, 10.0, 60)])
def test_the_lightning_suggestion_is_lightnings_own_lr_find_number(min_lr, max_lr, steps):
    """On the same model and data, losslab's `lightning` equals Lightning's lr_find (its curve construction
    included). Measured with Lightning 2.6.6 itself on the defaults: 6.31e-3 here, 6.92e-4 for the digits MLP."""
    cfg, problem = _problem()
    result = range_test(SweepConfig(run=cfg, range_test=True, min_lr=min_lr, max_lr=max_lr, steps=steps), problem)
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    expected = lightning_lr_find(nn.Linear(1, 1), x, y, min_lr, max_lr, steps)
    assert result.runs[0].suggestions["lightning"] == expected
    if (min_lr, max_lr, steps) == (1e-7, 10.0, 100):
        assert f"{expected:.3g}" == "0.00631"


def test_range_test_plots_leave_out_the_exploding_end():
    from losslab.commands.lr_sweep.range import SKIP_END, without_end

    lrs, losses = list(range(100)), [1.0] * 95 + [10.0, 100.0, 1e3, 1e4, 1e5]
    kept = without_end(lrs, losses)
    assert kept == (lrs[:100 - SKIP_END], losses[:100 - SKIP_END]) and max(kept[1]) == 1.0
    assert without_end([1, 2, 3, 4], [1, 2, 3, 4]) == ([1, 2, 3], [1, 2, 3])  # at most a quarter goes


def test_a_grid_does_not_report_the_slowness_of_its_small_rates_as_a_problem(cli):
    doc = cli("lr-sweep", "--json", "--quiet", "--device", "cpu").json()
    codes = {f["code"] for f in doc["diagnosis"]}
    assert "slow-convergence" not in codes and "diverged" in codes
    # each run's own document still has it
    small = [r for r in doc["results"] if r["lr"] < doc["suggested_lr"]]
    assert small and any("slow-convergence" in r["diagnosis"] for r in small)


def test_the_grid_keeps_a_margin_from_divergence_when_a_safer_rate_is_as_good(cli):
    """Default sweep: 0.464 and 0.215 both reach the optimum, 1 diverges — the suggestion keeps a factor 3 from
    the edge. With nothing as good below the edge, the best rate stays and the report says it has no margin."""
    doc = cli("lr-sweep", "--json", "--quiet", "--device", "cpu").json()
    rates = {r["lr"]: r for r in doc["rates"]}
    edge = min(lr for lr, r in rates.items() if r["diverged"])
    best = min(r["final_loss"]["median"] for r in rates.values() if r["final_loss"]["median"] is not None)
    assert doc["suggested_lr"] * 3 <= edge < doc["largest_stable_lr"] * 3
    assert rates[doc["suggested_lr"]]["final_loss"]["median"] <= best * 1.01
    run = cli("lr-sweep", "--lrs", "0.001,0.5,1", "--epochs", "100", "--no-plot", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    assert "suggested lr (←): 0.5 (" in run.stdout and "it has no margin" in run.stdout


# --- successive halving ---------------------------------------------------------------------------------------

def _rung_by_hand(full, rung, task):
    """The rates the full grid's own records say are the best ceil(n/3) after `rung.epochs` epochs: each run's
    final loss after r epochs (regression, full batch: the loss the (r+1)-th epoch starts from; classification:
    the validation loss after epoch r), ranked as the grid ranks."""
    from losslab.commands.lr_sweep.grid import lr_label
    from losslab.engine.runs import RunResult
    from losslab.stats import rank, summarise

    r = rung.epochs
    summaries = []
    for lr in rung.candidates:
        cut = []
        for run in full.runs[lr_label(lr)]:
            records = run.records[:r]
            loss = run.records[r]["train_loss"] if task == "regression" else records[-1]["valid_loss"]
            status = "ok" if math.isfinite(loss) and len(records) == r else "diverged"
            cut.append(RunResult(run.spec, status, records, {"final_loss": loss}, epochs_run=len(records)))
        summaries.append(summarise(lr_label(lr), lr, "grid", cut, task, full.target))
    return sorted(s.lr for s in rank(summaries)[:math.ceil(len(rung.candidates) / 3)] if math.isfinite(s.median))


@pytest.mark.parametrize("task", ["regression", pytest.param("classification", marks=pytest.mark.slow)])
def test_halving_keeps_what_the_full_grids_records_rank_best_and_finds_its_best_rate(task):
    from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig
    from losslab.engine.problems import build_problem

    if task == "regression":
        cfg, problem = _problem(epochs=270)
        grid = dict(min_lr=1e-3, max_lr=1.0, num=9)
    else:
        cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=400), model=ModelConfig("mlp", hidden=16),
                             optim=OptimConfig("sgd"), train=TrainConfig(epochs=27, batch_size=64, device="cpu"))
        problem = build_problem(cfg.resolved())
        grid = dict(min_lr=1e-3, max_lr=3.0, num=9)
    full = grid_sweep(SweepConfig(run=cfg, seeds=2, **grid), problem)
    halved = grid_sweep(SweepConfig(run=cfg, seeds=2, halving=True, min_epochs=3 if task != "regression" else 10,
                                    **grid), problem)
    assert [r.epochs for r in halved.halving] == ([10, 30, 90, 270] if task == "regression" else [3, 9, 27])
    for rung in halved.halving[:-1]:
        assert rung.continued == _rung_by_hand(full, rung, task), rung
    assert halved.suggestion.best == full.suggestion.best
    assert halved.suggested_lr == full.suggested_lr  # the margin rule included
    # it claims stability only where it saw the whole budget
    whole = set(halved.halving[-1].candidates) | {lr for r in halved.margin for lr in r.candidates}
    assert halved.largest_stable_lr in whole
    assert halved.halving[-1].candidates == halved.halving[-2].continued
    from losslab.commands.lr_sweep.grid import epochs_trained

    trained, whole = epochs_trained(halved)
    assert whole == 9 * 2 * cfg.train.epochs and trained <= whole / 2
    # the rates that trained the whole budget have exactly the full grid's numbers
    for lr in halved.halving[-1].candidates:
        mine = {s.lr: s for s in halved.summaries}[lr]
        theirs = {s.lr: s for s in full.summaries}[lr]
        assert mine.finals == pytest.approx(theirs.finals, rel=1e-6)


@pytest.mark.slow
def test_halving_options_are_checked(cli):
    cli("lr-sweep", "--min-epochs", "5").assert_usage_error("--min-epochs")
    cli("lr-sweep", "--halving", "--halving-rate", "1").assert_usage_error("--halving-rate")
    cli("lr-sweep", "--halving", "--min-epochs", "1000").assert_usage_error("--min-epochs")
    cli("lr-sweep", "--halving", "--range-test").assert_usage_error("--halving")
    run = cli("lr-sweep", "--halving", "--json", "--quiet", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    doc = run.json()["halving"]
    assert [r["epochs"] for r in doc["rungs"]] == [37, 111, 333, 1000] and doc["epochs_full_grid"] == 13000
    margin = sum(len(r["rates"]) * r["epochs"] for r in doc["margin_rungs"])
    assert doc["epochs_trained"] == 37 * 13 + 111 * 5 + 333 * 2 + 1000 * 1 + margin


@pytest.mark.slow
def test_tuning_by_halving_chooses_rates_as_good_as_the_full_tuning_grid(cli):
    """compare-optimizers --tune --halving: each optimizer keeps its best third per rung (the same budget for
    every optimizer) and ends with a rate of its last rung. Halving ranks on early epochs, so it can keep a rate
    that is fast early and hovers later: measured here, rmsprop 0.215 ends 4 % above the full grid's best after
    270 epochs (the others within float noise); the bound below is 10 %."""
    common = ["compare-optimizers", "--tune", "--seeds", "1", "--epochs", "270", "--json", "--quiet", "--device", "cpu"]
    full = cli(*common).json()["tuning"]
    halved = cli(*common, "--halving", "--min-epochs", "10").json()["tuning"]
    assert [r["epochs"] for r in halved["halving"]] == [10, 30, 90, 270]
    for rung in halved["halving"][:-1]:
        assert all(len(v) == math.ceil(len(rung["candidates"][n]) / 3) for n, v in rung["continued"].items())
        for name, kept in rung["continued"].items():  # who continued: the best scores of the rung
            best = sorted(rung["scores"][name].items(), key=lambda kv: (kv[1], float(kv[0])))[:len(kept)]
            assert sorted(k for k, _ in best) == sorted(f"{lr:g}" for lr in kept)
    assert halved["epochs_full"] == 13 * 4 * 270  # default optimizers: sgd, momentum, rmsprop, adam
    assert halved["epochs_trained"] == sum(r["epochs_trained"] for r in halved["halving"]) < halved["epochs_full"] / 2
    for name, lr in halved["chosen"].items():
        assert lr in halved["halving"][-1]["candidates"][name]
        scores = {r["lr"]: r["final_loss"] for r in full["results"][name]}
        best = min(v for v in scores.values() if v is not None and math.isfinite(v))  # (JSON: a divergence is null)
        assert scores[lr] <= 1.1 * best, (name, lr)
    cli("compare-optimizers", "--halving").assert_usage_error("--halving")


@pytest.mark.parametrize("mode", ["linear", "exp"])
def test_the_range_tests_recommendation_is_below_the_closed_form_stability_limit(mode):
    """Gradient descent on MSE is stable below 2/λmax of the Hessian 2/n·XᵀX (with the bias column): 0.954 on the
    tutorial data. The linear test once recommended 1.01 ("well below where it blows up"); a constant rate there
    diverges."""
    import numpy as np

    cfg, problem = _problem()
    x, y = tutorial_tensors()
    design = np.hstack([x.double().numpy(), np.ones((len(x), 1))])
    limit = 2 / np.linalg.eigvalsh(2 / len(x) * design.T @ design).max()
    assert limit == pytest.approx(0.954, abs=1e-3)
    result = range_test(SweepConfig(run=cfg, range_test=True, mode=mode), problem)
    assert result.recommended < limit
    # the recommendation trains: a full run at that constant rate does not diverge
    from conftest import regress_run

    run = regress_run(RegressConfig(optim=OptimConfig("sgd", lr=result.recommended),
                                    train=TrainConfig(epochs=300, device="cpu")))
    assert run.status == "ok" and run.final_loss < 0.01


def test_a_run_that_ends_at_its_first_loss_to_float_rounding_did_not_break():
    """A rate stopped after one epoch measured its final loss again: 1.4507267475 against its record's
    1.4507266283 (float32 rounding) once read as "ended above its first epoch's loss", training broke."""
    from losslab.commands.lr_sweep.grid import SAME_LOSS, improved
    from losslab.engine.runs import RunResult, RunSpec

    spec = RunSpec("0.1", OptimConfig("sgd", lr=0.1), 0)
    first = 1.4507266283
    same = RunResult(spec, "ok", [{"epoch": 1, "train_loss": first}], {"final_loss": 1.4507267475})
    worse = RunResult(spec, "ok", [{"epoch": 1, "train_loss": first}], {"final_loss": first * (1 + 10 * SAME_LOSS)})
    assert improved(same, "regression") and not improved(worse, "regression")


@pytest.mark.slow
def test_a_sweeps_report_names_one_rate_to_use(cli):
    """A finding's own advice ("try --lr 0.155", from one run) once stood beside the sweep's suggestion 0.0215."""
    import re

    run = cli("lr-sweep", "--batch-size", "20", "--quiet", "--device", "cpu", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    advice = " ".join(d["suggestion"] or "" for d in doc["diagnosis"])
    assert "oscillating" in [d["code"] for d in doc["diagnosis"]]  # the premise: a run got advice
    assert "try --lr" not in advice
    assert set(re.findall(r"--lr ([0-9.e+-]+)", advice)) == {f"{doc['suggested_lr']:.3g}"}
