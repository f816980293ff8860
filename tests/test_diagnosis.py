"""The diagnosis: every rule provoked by a real run that has the problem, and silent on one that does not.

Runs are real losslab runs (in process); the evidence is checked against the run's own records.
"""

import math

import pytest

from conftest import classify_run, regress_run
from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig, OptimConfig, RegressConfig, TrainConfig
from losslab.engine import diagnosis
from losslab.engine.diagnosis import Context, diagnose


def codes(result):
    return [f.code for f in result.diagnosis]


def regress(optim="adam", lr=0.01, epochs=1000, **train):
    return regress_run(RegressConfig(optim=OptimConfig(optim, lr=lr), train=TrainConfig(epochs=epochs, device="cpu",
                                                                                          **train)))


def blobs(epochs=10, **model):
    cfg = ClassifyConfig(data=ClassifyDataConfig(dataset="blobs"), model=ModelConfig(name="mlp", **model),
                         train=TrainConfig(epochs=epochs, batch_size=64, device="cpu"))
    return classify_run(cfg)


@pytest.fixture(scope="module")
def healthy():
    """The README's main job: adam at 0.01 on the tutorial data reaches the least-squares optimum."""
    return regress()


def test_a_healthy_run_gets_no_finding(healthy):
    assert healthy.status == "ok" and healthy.diagnosis == []
    assert abs(healthy.final_loss - healthy.optimum["loss"]) < 1e-6


def test_diverged_names_the_epoch_rate_and_gradient_norm_before_it(healthy):
    result = regress("sgd", lr=10, epochs=50)
    assert result.status == "diverged"
    found = {f.code: f for f in result.diagnosis}
    d = found["diverged"]
    before = [r for r in result.records if math.isfinite(r["train_loss"])][-1]
    assert d.evidence["epoch"] == result.diverged_epoch
    assert d.evidence["lr"] == 10 and d.evidence["grad_norm"] == before["grad_norm"]
    # the rate it suggests is below gradient descent's stability limit 2/λmax, λmax the top eigenvalue of MSE's
    # Hessian 2·E[[x 1][x 1]ᵀ] on the tutorial data (numpy), not merely a tenth of the rate that failed
    import re

    import numpy as np

    from conftest import tutorial_tensors

    x, _ = tutorial_tensors()
    design = np.hstack([x.numpy().astype(np.float64), np.ones((len(x), 1))])
    top = np.linalg.eigvalsh(2 * design.T @ design / len(design))[-1]
    suggested = float(re.search(r"--lr ([0-9.e+-]+)", d.suggestion).group(1))
    assert suggested < 2 / top and suggested > 2 / top / 10
    assert "diverged" not in codes(healthy)


def test_a_loss_growing_without_overflowing_yet_is_reported_as_diverging():
    result = regress("sgd", lr=1.05, epochs=40)  # just past the stable limit: the loss grows ~1.4x per epoch
    assert result.status == "ok" and "diverged" in codes(result)
    assert "growing" in result.diagnosis[0].message
    assert "plateau" not in codes(result) and "slow-convergence" not in codes(result)


def test_oscillating_loss_from_a_too_large_rate_with_momentum(healthy):
    result = regress("momentum", lr=0.5, epochs=60)
    found = {f.code: f for f in result.diagnosis}
    assert "oscillating" in found
    losses = [r["train_loss"] for r in result.records][-diagnosis.WINDOW:]
    steps = [b - a for a, b in zip(losses, losses[1:])]
    changes = sum((a > 0) != (b > 0) for a, b in zip(steps, steps[1:]))
    assert found["oscillating"].evidence["sign_changes"] == pytest.approx(changes / (len(steps) - 1), abs=1e-3)
    assert "oscillating" not in codes(healthy)
    # mini-batch noise near the optimum is not an oscillation
    assert "oscillating" not in codes(regress("sgd", lr=0.1, epochs=100, batch_size=10))


def test_plateau_far_from_the_least_squares_optimum(healthy):
    result = regress("sgd", lr=1e-9, epochs=50)
    found = {f.code: f for f in result.diagnosis}
    assert "plateau" in found and "slow-convergence" not in found
    assert found["plateau"].evidence["optimum_loss"] == result.optimum["loss"]
    assert "plateau" not in codes(healthy)


def test_slow_convergence_measures_the_distance_to_least_squares(healthy):
    result = regress("sgd", lr=0.001, epochs=100)
    found = {f.code: f for f in result.diagnosis}
    assert set(found) == {"slow-convergence"}
    gap = math.dist(list(result.params.values()), list(result.optimum["params"].values()))
    assert found["slow-convergence"].evidence["distance"] == pytest.approx(gap)
    assert "slow-convergence" not in codes(healthy)
    # another loss's optimum is not least squares': no claim about the distance
    assert "slow-convergence" not in codes(regress_run(RegressConfig(
        optim=OptimConfig("sgd", lr=0.001), train=TrainConfig(epochs=100, device="cpu"),
        loss=type(RegressConfig().loss)(name="huber"))))


def test_exploding_gradients_by_growth_and_by_clipping(healthy):
    grown = regress("sgd", lr=10, epochs=50)
    found = {f.code: f for f in grown.diagnosis}
    a, b, c = found["exploding-gradients"].evidence["grad_norms"]
    assert b >= 10 * a and c >= 10 * b
    clipped = regress("adam", lr=0.01, epochs=50, clip_grad_norm=1e-3)
    found = {f.code: f for f in clipped.diagnosis}
    assert found["exploding-gradients"].evidence["clipped_share"] == 1.0
    assert "--clip-grad-norm 0.001" in found["exploding-gradients"].message
    assert "exploding-gradients" not in codes(healthy)
    # clipping that rarely acts is not a finding
    rare = regress("adam", lr=0.01, epochs=200, clip_grad_norm=5.0)
    assert 0 < sum(r["clipped"] for r in rare.records) < 0.5 * len(rare.records)
    assert "exploding-gradients" not in codes(rare)


@pytest.mark.slow
def test_vanishing_gradients_in_a_deep_sigmoid_mlp_not_with_relu_and_kaiming():
    sigmoid = blobs(depth=12, activation="sigmoid")
    found = {f.code: f for f in sigmoid.diagnosis}
    v = found["vanishing-gradients"]
    first, last = v.evidence["first_layer"], v.evidence["last_layer"]
    ratios = [r[f"grad_norm/{first}"] / r[f"grad_norm/{last}"] for r in sigmoid.records]
    assert first == "1.weight" and last == "25.weight"
    assert v.evidence["median_ratio"] == pytest.approx(sorted(ratios)[len(ratios) // 2], rel=1e-6) or \
        v.evidence["median_ratio"] < diagnosis.VANISHING_RATIO
    assert all(ratio < diagnosis.VANISHING_RATIO for ratio in ratios)
    relu = blobs(depth=12, activation="relu", init="kaiming")
    assert relu.diagnosis == [] and relu.accuracy > sigmoid.accuracy


def test_overfitting_on_a_small_digits_subset_suggests_patience():
    cfg = ClassifyConfig(data=ClassifyDataConfig(subset=400), model=ModelConfig(name="mlp", hidden=256),
                         optim=OptimConfig("adam", lr=0.01), train=TrainConfig(epochs=80, batch_size=64, device="cpu"))
    result = classify_run(cfg)
    found = {f.code: f for f in result.diagnosis}
    o = found["overfitting"]
    best = min(result.records, key=lambda r: r["valid_loss"])
    assert o.evidence["best_epoch"] == best["epoch"] == result.best_epoch
    assert o.evidence["final_valid_loss"] > o.evidence["best_valid_loss"]
    assert o.evidence["final_train_loss"] < o.evidence["train_loss_at_best"]
    assert "--patience" in o.suggestion
    # the same run stopped by --patience keeps its best weights: nothing to report
    stopped = classify_run(ClassifyConfig(data=cfg.data, model=cfg.model, optim=cfg.optim, train=cfg.train, patience=5))
    assert "overfitting" not in codes(stopped)


@pytest.mark.slow
def test_the_default_classify_run_gets_no_finding():
    result = classify_run(ClassifyConfig(train=TrainConfig(epochs=None, batch_size=64, device="cpu")))
    assert result.diagnosis == [] and result.accuracy > 0.95


def test_interrupted_and_failed_runs_are_not_diagnosed():
    records = [{"epoch": e, "train_loss": 1.0, "grad_norm": 1.0, "lr": 0.1} for e in range(1, 30)]
    assert diagnose(records, Context(status="ok", optimum_loss=0.1))  # a plateau...
    assert diagnose(records, Context(status="interrupted", optimum_loss=0.1)) == []  # ...unless cut short


def test_stacked_and_sequential_trials_get_the_same_diagnosis(cli):
    args = ["compare-optimizers", "--optims", "sgd,momentum,adam", "--lr-for", "sgd=0.001", "--lr-for", "momentum=0.5",
            "--lr-for", "adam=0.1", "--seeds", "2", "--epochs", "60", "--json"]
    stacked, sequential = cli(*args), cli(*args, "--no-vectorize")
    assert stacked.exit_code == sequential.exit_code == 0, stacked.stderr
    a, b = stacked.json(), sequential.json()
    assert a["diagnosis"] == b["diagnosis"]
    assert {d["code"] for d in a["diagnosis"]} >= {"slow-convergence", "oscillating"}
    per_run = {name: [r["diagnosis"] for r in entry["runs"]] for name, entry in a["optimizers"].items()}
    assert per_run["sgd"] == [["slow-convergence"]] * 2 and all("oscillating" in d for d in per_run["momentum"])


def test_expect_gates_on_the_diagnosis(cli):
    slow = ["regress", "--optim", "sgd", "--lr", "0.001", "--epochs", "100", "--json"]
    assert cli(*slow, "--expect", "diagnosis=slow-convergence", "--expect", "diagnosis!=diverged").exit_code == 0
    failed = cli(*slow, "--expect", "diagnosis=none")
    assert failed.exit_code == 1 and failed.json()["expectations"][0]["actual"] == ["slow-convergence"]
    assert cli(*slow, "--expect", "diagnosis!=slow-convergence").exit_code == 1
    assert cli("regress", "--epochs", "300", "--json", "--expect", "diagnosis=none").exit_code == 0
    cli(*slow, "--expect", "diagnosis!=vanishing").assert_usage_error("--expect")


def test_report_and_json_carry_findings_with_evidence_and_layers(cli, tmp_path):
    run = cli("regress", "--optim", "sgd", "--lr", "10", "--epochs", "30", "--out", str(tmp_path / "o"))
    assert run.exit_code == 3
    assert "diagnosis:" in run.stdout and "diverged: the loss became NaN or infinite at epoch" in run.stdout
    clipped = cli("regress", "--epochs", "20", "--clip-grad-value", "0.5", "--quiet")
    assert "gradient clipping (--clip-grad-value 0.5) was active on 100% of the steps" in clipped.stdout
    import json

    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert [d["code"] for d in doc["diagnosis"]][0] == "diverged"
    assert set(doc["diagnosis"][0]) == {"code", "message", "evidence", "suggestion"}
    assert [layer["name"] for layer in doc["layers"]] == ["weight", "bias"]
