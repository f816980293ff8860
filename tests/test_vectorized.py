"""Stacked trials against sequential torch.optim runs: same final parameters within 1e-5 relative."""

import math

import pytest
import torch

from losslab.components.datasets import load_classification
from losslab.components.optimizers import stacked_update
from losslab.components.regression_data import synthetic
from losslab.config import (
    ClassifyConfig,
    ClassifyDataConfig,
    ClassifyLossConfig,
    ModelConfig,
    OptimConfig,
    RegressConfig,
    TrainConfig,
)
from losslab.engine.problems import ClassificationProblem, RegressionProblem
from losslab.engine.runs import RunSpec as Trial
from losslab.engine.stacked import stackable_optimizers, unsupported
from losslab.engine.trials import run_trials

OPTIONS = {"momentum": {"weight_decay": 0.01}, "adam": {"weight_decay": 0.01}, "rmsprop": {"momentum": 0.5},
           "sgd": {"momentum": 0.3}}
LRS = {"sgd": (0.01, 0.1), "momentum": (0.01, 0.05), "nesterov": (0.01, 0.05), "adam": (0.003, 0.03),
       "adamw": (0.003, 0.03), "rmsprop": (0.001, 0.01), "adagrad": (0.05, 0.3),
       # torch.optim's other classes: stacked through their own step() (one parameter group per run)
       "nadam": (0.003, 0.01), "radam": (0.003, 0.01), "adamax": (0.003, 0.01), "adadelta": (0.5, 1.0),
       "rprop": (0.001, 0.01), "asgd": (0.01, 0.05), "adafactor": (0.003, 0.01)}


# the optimizers with a batched update of losslab's own, then torch's others (stacked through their own step(): in
# the full suite only, `make test-fast` keeps to a minute)
BY_HAND_THEN_OWN_STEP = [name if stacked_update(name) else pytest.param(name, marks=pytest.mark.slow)
                         for name in stackable_optimizers()]


def _compare(problem, trials, rel=1e-5):
    seq, _ = run_trials(problem, trials, vectorize=False)
    vec, _ = run_trials(problem, trials, vectorize=True)
    assert all(r.stacked_with == 1 for r in seq) and all(r.stacked_with == len(trials) for r in vec)
    for s, v in zip(seq, vec):
        assert s.status == v.status == "ok"
        assert len(s.records) == len(v.records)
        for key in ("final_loss",):
            assert v.metrics[key] == pytest.approx(s.metrics[key], rel=rel, abs=1e-7)
    return seq, vec


def _trials(name, seeds=(0, 1)):
    extra = OPTIONS.get(name, {})
    return [Trial(f"{name}@{lr}", OptimConfig(name, lr=lr, **extra), seed) for lr in LRS[name] for seed in seeds]


@pytest.mark.parametrize("name", stackable_optimizers())
def test_regression_trials_match_torch_optim(name):
    cfg = RegressConfig(train=TrainConfig(epochs=200, device="cpu"))
    problem = RegressionProblem(cfg, synthetic(samples=60, features=3, true_w=(1.0, -2.0, 0.5), seed=3))
    seq, vec = _compare(problem, _trials(name))
    for s, v in zip(seq, vec):
        for p in s.metrics["params"]:
            assert v.metrics["params"][p] == pytest.approx(s.metrics["params"][p], rel=1e-5, abs=1e-6)
        assert v.records[-1]["grad_norm"] == pytest.approx(s.records[-1]["grad_norm"], rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("name", BY_HAND_THEN_OWN_STEP)
@pytest.mark.parametrize("model", ["logistic", "mlp"])
def test_classifier_trials_match_torch_optim(name, model):
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=200), model=ModelConfig(model, hidden=16),
                         train=TrainConfig(epochs=3, batch_size=50, device="cpu"))
    problem = ClassificationProblem(cfg, load_classification(cfg.data))
    trials = _trials(name)
    seq, vec = _compare(problem, trials, rel=1e-4)
    for s, v in zip(seq, vec):
        assert v.records[-1]["valid_loss"] == pytest.approx(s.records[-1]["valid_loss"], rel=1e-4)
        assert v.records[-1]["valid_acc"] == pytest.approx(s.records[-1]["valid_acc"], abs=1e-6)


@pytest.mark.parametrize("name", BY_HAND_THEN_OWN_STEP)
@pytest.mark.parametrize("model, loss", [("logistic", "cross-entropy"), ("mlp", "nll")])
def test_final_parameters_of_classifiers_match(name, model, loss):
    """Compare the weights themselves, not only the losses, with mini-batches and two seeds."""
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=200), model=ModelConfig(model, hidden=8),
                         loss=ClassifyLossConfig(loss), train=TrainConfig(epochs=2, batch_size=40, device="cpu"))
    problem = ClassificationProblem(cfg, load_classification(cfg.data))
    captured = {}
    original = problem.final_metrics

    def capture(tag):
        def final(model, loss_fn=None):
            captured.setdefault(tag, []).append([p.detach().clone() for p in model.parameters()])
            return original(model, loss_fn)
        return final

    trials = _trials(name, seeds=(0, 5))
    problem.final_metrics = capture("seq")
    run_trials(problem, trials, vectorize=False)
    problem.final_metrics = capture("vec")
    run_trials(problem, trials, vectorize=True)
    # Adagrad's first step is lr * g / (|g| + 1e-10): where a pixel's gradient is at float-noise level (~1e-9),
    # the last-bit differences between batched and unbatched matmuls can flip its sign. Those weights move by
    # ~1e-5..1e-4 either way; every other optimizer's eps (1e-8) damps this and agrees to 1e-5 relative.
    atol = 1e-4 if name == "adagrad" else 1e-6
    for ps, pv in zip(captured["seq"], captured["vec"]):
        for a, b in zip(ps, pv):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=atol)


def test_divergence_is_per_trial_and_clipping_is_per_trial():
    cfg = RegressConfig(train=TrainConfig(epochs=100, device="cpu", clip_grad_norm=0.5))
    problem = RegressionProblem(cfg, synthetic())
    trials = [Trial(str(lr), OptimConfig("sgd", lr=lr), 0) for lr in (0.05, 0.5)]
    _compare(problem, trials)
    cfg = RegressConfig(train=TrainConfig(epochs=200, device="cpu"))
    problem = RegressionProblem(cfg, synthetic())
    trials = [Trial(str(lr), OptimConfig("sgd", lr=lr), 0) for lr in (0.1, 30.0)]
    seq, _ = run_trials(problem, trials, vectorize=False)
    vec, _ = run_trials(problem, trials, vectorize=True)
    assert [r.status for r in vec] == [r.status for r in seq] == ["ok", "diverged"]
    assert len(vec[1].records) == len(seq[1].records)  # stopped at the same epoch
    assert vec[0].metrics["final_loss"] == pytest.approx(seq[0].metrics["final_loss"], rel=1e-5)


def test_unsupported_cases_fall_back():
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=100), model=ModelConfig("cnn"),
                         train=TrainConfig(epochs=1, device="cpu"))
    problem = ClassificationProblem(cfg, load_classification(cfg.data))
    trials = [Trial("a", OptimConfig("adam", lr=0.01), 0), Trial("b", OptimConfig("adam", lr=0.02), 0)]
    assert "convolutions" in unsupported(problem, trials)
    results, _ = run_trials(problem, trials)
    assert [r.stacked_with for r in results] == [1, 1] and all(r.status == "ok" for r in results)
    reg = RegressionProblem(RegressConfig(train=TrainConfig(epochs=5, device="cpu")), synthetic())
    assert "lbfgs" in unsupported(reg, [Trial("x", OptimConfig("lbfgs", lr=1.0), 0)] * 2)
    mixed = [Trial("x", OptimConfig("sgd", lr=0.1), 0), Trial("y", OptimConfig("lbfgs", lr=1.0), 0),
             Trial("z", OptimConfig("adam", lr=0.01), 1)]
    results, _ = run_trials(reg, mixed)
    assert [r.stacked_with for r in results] == [2, 1, 2]  # lbfgs runs on its own, the others stacked


@pytest.mark.slow
def test_mixed_optimizers_in_one_stack_match_sequential():
    cfg = RegressConfig(train=TrainConfig(epochs=150, batch_size=32, device="cpu"))
    problem = RegressionProblem(cfg, synthetic())
    trials = [Trial(n, OptimConfig(n).for_task("regression"), seed)
              for seed in (0, 1) for n in stackable_optimizers()]
    assert unsupported(problem, trials) is None
    seq, vec = _compare(problem, trials)
    for s, v in zip(seq, vec):
        assert v.spec == s.spec
        for p in s.metrics["params"]:
            assert v.metrics["params"][p] == pytest.approx(s.metrics["params"][p], rel=1e-5, abs=1e-6)


def _records_close(seq, vec, rel):
    for s, v in zip(seq, vec):
        assert len(s.records) == len(v.records)
        for a, b in zip(s.records, v.records):
            assert list(a) == list(b)  # the same keys, in the same order
            for key in a:
                if key == "elapsed_s":
                    continue
                if not math.isfinite(a["train_loss"]) and key.startswith("grad_norm"):
                    continue  # the diverging step's gradients: the previous step's in fit (it does not step)
                if isinstance(a[key], float) and math.isnan(a[key]):
                    assert math.isnan(b[key]), key
                else:
                    assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-6), (key, a["epoch"])


def test_every_epoch_record_matches_sequential_across_read_back_chunks():
    """150 epochs span three read-back chunks of the stacked engine; every record key of every epoch (loss,
    weights, per-layer gradient norms and update ratios, lr) agrees with torch.optim runs, and a run that diverges
    inside a chunk keeps its earlier epochs and ends on the same epoch with the same NaN record."""
    cfg = RegressConfig(train=TrainConfig(epochs=150, device="cpu"))
    problem = RegressionProblem(cfg, synthetic(samples=60, features=3, true_w=(1.0, -2.0, 0.5), seed=3))
    trials = [Trial(f"sgd@{lr}", OptimConfig("sgd", lr=lr), seed) for lr in (0.01, 0.1, 1.5) for seed in (0, 1)]
    seq, _ = run_trials(problem, trials, vectorize=False)
    vec, _ = run_trials(problem, trials, vectorize=True)
    assert [r.status for r in vec] == [r.status for r in seq] == ["ok"] * 4 + ["diverged"] * 2
    assert 1 < vec[-1].diverged_epoch < 64 and len(vec[0].records) == 150
    _records_close(seq, vec, rel=1e-4)


@pytest.mark.slow
def test_classifier_records_with_validation_match_sequential():
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=200), model=ModelConfig("mlp", hidden=16),
                         train=TrainConfig(epochs=70, batch_size=50, device="cpu"))
    problem = ClassificationProblem(cfg, load_classification(cfg.data))
    trials = [Trial(f"adam@{lr}", OptimConfig("adam", lr=lr), 0) for lr in (0.001, 0.01)]
    seq, _ = run_trials(problem, trials, vectorize=False)
    vec, _ = run_trials(problem, trials, vectorize=True)
    assert "valid_acc" in vec[0].records[-1]
    _records_close(seq, vec, rel=2e-3)


def test_read_back_chunk_size_does_not_change_a_record(monkeypatch):
    from losslab.engine import stacked_records

    cfg = RegressConfig(train=TrainConfig(epochs=40, device="cpu", clip_grad_norm=1.0))
    problem = RegressionProblem(cfg, synthetic())
    trials = [Trial(f"adam@{lr}", OptimConfig("adam", lr=lr), 0) for lr in (0.01, 0.1, 0.5)]
    whole, _ = run_trials(problem, trials)
    monkeypatch.setattr(stacked_records, "MAX_CHUNK", 3)
    chunked, _ = run_trials(problem, trials)
    for a, b in zip(whole, chunked):
        assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in a.records] == \
               [{k: v for k, v in r.items() if k != "elapsed_s"} for r in b.records]
        assert "clipped" in a.records[0]


def test_the_stacked_memory_estimate_is_a_hand_count_and_too_many_runs_go_one_by_one(monkeypatch):
    """Parameters with their gradient and two optimizer states, each layer's output and its gradient, per run."""
    from losslab.config import OptimConfig, RegressConfig, TrainConfig
    from losslab.engine import stacked
    from losslab.engine.problems import RegressionProblem
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    params, activations = 4 * 8 + 8 + 8 + 1, 10 * 8 + 10 * 8 + 10 * 1
    assert stacked.stacked_memory(model, torch.zeros(20, 4), 10, 3) == 4 * 3 * (4 * params + 2 * activations)
    problem = RegressionProblem(RegressConfig(train=TrainConfig(epochs=3, device="cpu")).resolved())
    specs = [RunSpec("sgd", OptimConfig("sgd", lr=0.1), seed) for seed in range(4)]
    monkeypatch.setattr(stacked, "memory_bytes", lambda: 2 * 2 * 4 * (4 * 2 + 2 * 100))  # half of it: 2 runs
    results, _ = run_trials(problem, specs)
    assert "4 stacked runs would need about" in problem.unstacked
    assert {r.stacked_with for r in results} == {1} and all(r.status == "ok" for r in results)
