"""compare-losses and check-loss: robust losses against outliers, class weights against imbalance, and custom
losses' gradients against finite differences — each checked against an independent reference."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from losslab.commands import compare_losses
from losslab.config import (
    ClassifyConfig,
    ClassifyDataConfig,
    CompareLossesConfig,
    OptimConfig,
    RegressConfig,
    TrainConfig,
)
from losslab.engine.loss_check import SCALES, check_loss, sample_inputs


def _regress(epochs=1000, **kw):
    return CompareLossesConfig(run=RegressConfig(train=TrainConfig(epochs=epochs, device="cpu")), **kw).resolved()


@pytest.mark.slow
def test_l1_and_huber_resist_outliers_where_mse_follows_least_squares():
    cfg = _regress(seeds=2)
    problem, heldout, rows, _ = compare_losses.prepare(cfg)
    result = compare_losses.compare(cfg, problem, heldout, rows)
    by = {s.name: s.measures for s in result.summaries}
    # independent reference: the least-squares fit of the contaminated training data, by numpy
    x, y = problem.data.x.astype(np.float64), problem.data.y[:, 0].astype(np.float64)
    (w_ls, b_ls), *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    assert len(rows) == 10 and by["mse"]["w"] == pytest.approx(w_ls, abs=1e-3)
    assert by["mse"]["b"] == pytest.approx(b_ls, abs=1e-3) and abs(by["mse"]["b"] - 3) > 1
    assert by["l1"]["truth_distance"] < 0.1 and by["huber"]["truth_distance"] < 0.2
    assert result.winner == "l1" and result.summaries[-1].name == "mse"
    assert by["l1"]["heldout_mse"] < by["mse"]["heldout_mse"] / 10


@pytest.mark.slow
def test_outliers_are_reproducible_and_stacked_runs_match_sequential():
    cfg = _regress(epochs=200, seeds=2)
    problem, heldout, rows, _ = compare_losses.prepare(cfg)
    again = compare_losses.prepare(cfg)[2]
    assert list(rows) == list(again)
    stacked = compare_losses.compare(cfg, problem, heldout, rows)
    seq = compare_losses.compare(dataclasses.replace(cfg, vectorize=False), problem, heldout, rows)
    assert all(r.stacked_with == 8 for rs in stacked.runs.values() for r in rs)
    assert all(r.stacked_with == 1 for rs in seq.runs.values() for r in rs)
    for name in cfg.losses:
        for a, b in zip(stacked.measures[name], seq.measures[name]):
            for k in ("w", "b"):
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6)


def test_class_weights_help_the_rare_classes_of_an_imbalanced_set():
    # at a small rate and few epochs the rare classes are learned late, which is where weighting shows
    cfg = CompareLossesConfig(run=ClassifyConfig(data=ClassifyDataConfig(imbalance=10.0), optim=OptimConfig(
        "adam", lr=0.001), train=TrainConfig(epochs=10, batch_size=64, device="cpu")),
        losses=("cross-entropy", "weighted-cross-entropy"),
        seeds=2).resolved()
    problem, _, _, _ = compare_losses.prepare(cfg)
    counts = torch.bincount(problem.data.y_train, minlength=10)
    assert counts[5:].max() * 5 < counts[:5].min()  # the upper half of the classes is rare in training only
    result = compare_losses.compare(cfg, problem)
    by = {s.name: s.measures for s in result.summaries}
    assert by["weighted-cross-entropy"]["minority_recall"] > by["cross-entropy"]["minority_recall"] + 0.1
    assert result.rank_by == "macro_f1"


def test_classification_measures_match_scikit_learn():
    from sklearn.metrics import f1_score, log_loss

    from losslab.engine.problems import ClassificationProblem
    from losslab.engine.runs import RunResult, RunSpec

    cfg = ClassifyConfig(data=ClassifyDataConfig(subset=400), train=TrainConfig(epochs=3, batch_size=64,
                                                                                device="cpu")).resolved()
    problem = ClassificationProblem(cfg)
    model = problem.new_model(0)
    metrics = problem.final_metrics(model)
    run = RunResult(RunSpec("x", cfg.optim, 0), "ok", metrics=metrics)
    measures = compare_losses.classification_measures(problem, run)
    with torch.no_grad():
        probs = torch.softmax(model(problem.x_val).double(), dim=1).numpy()
    y = problem.y_val.numpy()
    assert measures["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro", zero_division=0))
    assert measures["nll"] == pytest.approx(log_loss(y, probs, labels=list(range(10))), rel=1e-6)
    assert 0 <= measures["ece"] <= 1


@pytest.mark.slow
def test_cli_compare_losses_json_files_and_gates(cli, tmp_path):
    out = tmp_path / "o"
    run = cli("compare-losses", "--seeds", "2", "--epochs", "300", "--json", "--quiet", "--out", str(out),
              "--expect", "winner=l1", "--expect", "l1.w_error<=0.05")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["command"] == "compare-losses" and doc["ranking"][0] == "l1" and doc["rank_by"] == "truth_distance"
    assert doc["reference"]["outliers"] == 10 and doc["reference"]["truth"] == {"w": 2.0, "b": 3.0}
    assert {"fits.png", "curves.png", "result.json", "history.csv"} <= {p.name for p in out.iterdir()}
    assert cli("compare-losses", "--seeds", "1", "--epochs", "50", "--quiet", "--expect",
               "winner=mse").exit_code == 1


@pytest.mark.parametrize("args, option", [
    (["--losses", "mse,nope"], "--losses"), (["--losses", "mse,mse"], "--losses"),
    (["--losses", "cross-entropy"], "--losses"), (["--outliers", "0.7"], "--outliers"),
    (["--rank-by", "macro_f1"], "--rank-by"), (["--task", "classify", "--outliers", "0.2"], "--outliers"),
    (["--loss", "l1"], "--loss"), (["--expect", "huber.nope<=1"], "--expect"), (["--seeds", "0"], "--seeds"),
])
def test_cli_compare_losses_bad_input(cli, args, option):
    cli("compare-losses", *args).assert_usage_error(option)


# --- check-loss ------------------------------------------------------------------------------------------

def _mse_with_backward(mask_grad):
    """MSE whose backward is right except where `mask_grad(residual, grad)` changes it."""
    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, p, t):
            ctx.save_for_backward(p, t)
            return ((p - t) ** 2).mean()

        @staticmethod
        def backward(ctx, g):
            p, t = ctx.saved_tensors
            r = p - t
            return mask_grad(r, 2 * r / r.numel()) * g, None
    return Loss.apply


def test_check_loss_passes_torch_losses_and_a_right_backward_and_names_the_first_wrong_element():
    for fn in (torch.nn.functional.mse_loss, torch.nn.functional.l1_loss, torch.nn.HuberLoss(),
               _mse_with_backward(lambda r, grad: grad)):
        report = check_loss(fn, "x", "regression", second_order=True)
        assert report.passed, [c for c in report.checks if not c.passed]
        assert report.max_abs_error < 1e-6
    assert check_loss(torch.nn.functional.cross_entropy, "ce", "classification", second_order=True).passed
    bad = check_loss(_mse_with_backward(lambda r, grad: 1.5 * grad), "w", "regression")  # 3(p - t)/n
    failed = [c for c in bad.checks if not c.passed]
    assert [c.name for c in failed] == ["gradcheck"] and "element [0, 0]" in failed[0].detail
    assert bad.max_rel_error == pytest.approx(0.5, rel=1e-3)  # 3/2 of the true gradient


def _hard_coded_eight():
    """MSE whose backward divides by a hard-coded 8 rows: right at a batch of 8 only."""
    return _mse_with_backward(lambda r, grad: grad * r.numel() / 8)


def test_check_loss_cannot_be_fooled_by_a_backward_tuned_to_one_batch_size():
    fn = _hard_coded_eight()
    p8, t8 = torch.randn(8, 1, dtype=torch.float64, requires_grad=True), torch.randn(8, 1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q: fn(q, t8), (p8,))  # the reference: right at 8 rows ...
    p1, t1 = torch.randn(1, 1, dtype=torch.float64, requires_grad=True), torch.randn(1, 1, dtype=torch.float64)
    with pytest.raises(GradcheckError):  # ... and wrong at 1
        torch.autograd.gradcheck(lambda q: fn(q, t1), (p1,))
    report = check_loss(fn, "eight", "regression", quick=True)
    assert not report.passed and "batch of 1" in report.checks[-1].detail


def test_check_loss_reports_the_worst_error_over_every_point_not_the_first_mismatch():
    """A backward right at small residuals but 100x off at large ones: the first mismatch is at 'around 1'
    residuals; the maximum error reported must be the large range's (which the loop reaches after it)."""
    bad = check_loss(_mse_with_backward(lambda r, grad: torch.where(r.abs() > 0.45, 100 * grad, grad)), "w",
                     "regression", points=1)
    detail = bad.checks[-1].detail
    assert not bad.passed and "first mismatch at around 1 residuals" in detail
    p, t = sample_inputs("regression", 0, rows=37, scale=SCALES[2])
    true_grad = 2 * (p - t).detach() / p.numel()
    assert bad.max_abs_error >= float((99 * true_grad).abs().max()) * (1 - 1e-6)  # the large range's error


def test_check_loss_words_match_its_verdict_for_torch_cross_entropy():
    report = check_loss(torch.nn.functional.cross_entropy, "ce", "classification")
    assert report.passed
    assert report.max_tolerance_share <= 1 and report.max_rel_error <= 1e-3
    assert "≤ 1 passes" in report.checks[-1].detail


def test_pre_training_check_refuses_a_backward_tuned_to_one_batch_size(tmp_path, monkeypatch):
    (tmp_path / "eightloss.py").write_text(
        "import torch\n"
        "class Eight(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, p, t):\n        ctx.save_for_backward(p, t)\n"
        "        return ((p - t) ** 2).mean()\n"
        "    @staticmethod\n    def backward(ctx, g):\n        p, t = ctx.saved_tensors\n"
        "        return 2 * (p - t) / 8 * g, None\n"
        "def eight(p, t):\n    return Eight.apply(p, t)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from losslab.config import LossConfig, RegressConfig, TrainConfig
    from losslab.engine.problems import build_problem
    from losslab.errors import ConfigError

    cfg = RegressConfig(loss=LossConfig("eightloss:eight"), train=TrainConfig(epochs=3, device="cpu")).resolved()
    with pytest.raises(ConfigError) as err:
        build_problem(cfg)
    assert err.value.option == "--loss" and "gradcheck" in str(err.value)


def test_cli_check_loss_exit_codes_and_json(cli, tmp_path, monkeypatch):
    (tmp_path / "myl.py").write_text(
        "import torch\n"
        "def ok(p, t):\n    return ((p - t) ** 2).mean()\n"
        "class Bad(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, p, t):\n        ctx.save_for_backward(p, t)\n"
        "        return ((p - t) ** 2).mean()\n"
        "    @staticmethod\n    def backward(ctx, g):\n        p, t = ctx.saved_tensors\n"
        "        return (p - t)[:1] * g, None\n")
    monkeypatch.chdir(tmp_path)
    good = cli("check-loss", "myl:ok", "--json")
    assert good.exit_code == 0 and json.loads(good.stdout)["status"] == "passed"
    bad = cli("check-loss", "myl:Bad", "--json")
    doc = json.loads(bad.stdout)
    assert bad.exit_code == 1 and doc["status"] == "failed"
    assert [c["name"] for c in doc["checks"] if not c["passed"]] == ["backward"]
    cli("check-loss", "myl:ok", "--task", "nope").assert_usage_error("--task")
    train = cli("regress", "--loss", "myl:Bad", "--epochs", "3")
    train.assert_usage_error("--loss")
    assert math.isfinite(cli("regress", "--loss", "myl:ok", "--epochs", "3", "--json", "--quiet").json()["final_loss"])


@pytest.mark.parametrize("name, wrong, scale", [
    ("zeroed beyond |r| > 2", lambda r, grad: torch.where(r.abs() > 2, torch.zeros_like(grad), grad), "large"),
    ("3x below |r| < 0.4", lambda r, grad: torch.where(r.abs() < 0.4, 3 * grad, grad), "small"),
    ("wrong for negative residuals", lambda r, grad: torch.where(r < 0, -grad, grad), None)])
def test_check_loss_finds_backwards_wrong_only_in_one_range_of_residuals(name, wrong, scale):
    """Independent reference: torch.autograd.gradcheck by hand at a residual inside the faulty range fails; the
    default check-loss (3 points) fails too and says at which residual scale."""
    fn = _mse_with_backward(wrong)
    r = torch.tensor([[3.0], [-0.1], [0.2], [-5.0]], dtype=torch.float64)
    t = torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda q: fn(q, t), (r.clone().requires_grad_(True),), eps=1e-6, atol=1e-5,
                                 rtol=1e-3)
    report = check_loss(fn, name, "regression")
    (failed,) = [c for c in report.checks if not c.passed]
    assert failed.name == "gradcheck"
    if scale is not None:
        assert f"{scale} residuals" in failed.detail


def test_check_loss_checks_the_training_datas_own_predictions_and_targets():
    """A backward wrong only at residuals like the data's (around 3, from an untrained model on y = 2x + 3) is
    also checked on the data given: the report names it."""
    from losslab.engine.loss_check import probes

    data = (torch.full((4, 1), 0.1, dtype=torch.float64, requires_grad=True), torch.full((4, 1), 3.1,
                                                                                          dtype=torch.float64))
    assert probes("regression", 1, data)[-1][0].startswith("the training data")
    fn = _mse_with_backward(lambda r, grad: torch.where((r.abs() - 3).abs() < 0.01, -grad, grad))
    report = check_loss(fn, "x", "regression", points=1, data=data)
    (failed,) = [c for c in report.checks if not c.passed]
    assert "the training data" in failed.detail


def test_a_loss_winner_with_the_lowest_validation_accuracy_is_flagged():
    from types import SimpleNamespace

    from losslab.commands.compare_losses import LossSummary, accuracy_flag

    def summary(name, f1, acc):
        return LossSummary(name, [f1], f1, f1, f1, {"macro_f1": f1, "accuracy": acc}, 0, 0)

    result = SimpleNamespace(config=SimpleNamespace(task="classification"), winner="focal", rank_by="macro_f1",
                             summaries=[summary("focal", 0.90, 0.88), summary("cross-entropy", 0.89, 0.93)])
    [note] = accuracy_flag(result)
    assert "winner focal has the lowest validation accuracy (0.8800; cross-entropy 0.9300)" in note
    result.summaries[0].measures["accuracy"] = 0.95
    assert accuracy_flag(result) == []
