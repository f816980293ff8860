"""LR schedules: losslab's runs against hand-written torch.optim + torch.optim.lr_scheduler loops, and the
stacked engine against sequential runs (rates within 1e-6 relative, weights within 1e-5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import regress_run, tutorial_tensors
from losslab.components.regression_data import synthetic
from losslab.config import (
    ClassifyConfig,
    ClassifyDataConfig,
    ModelConfig,
    OptimConfig,
    RegressConfig,
    ScheduleConfig,
    TrainConfig,
)
from losslab.engine.problems import ClassificationProblem, RegressionProblem
from losslab.engine.runs import RunSpec
from losslab.engine.trials import run_trials
from losslab.errors import ConfigError


def test_full_batch_step_schedule_is_bit_identical_to_the_hand_written_loop():
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    rates = []
    for _ in range(100):
        loss = nn.MSELoss()(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rates.append(opt.param_groups[0]["lr"])
        sched.step()
    cfg = RegressConfig(optim=OptimConfig("adam", lr=0.05), train=TrainConfig(
        epochs=100, device="cpu", schedule=ScheduleConfig("step", step_size=20, lr_gamma=0.5)))
    result = regress_run(cfg)
    assert [r["lr"] for r in result.records] == rates
    assert result.params == {"w": model.weight.item(), "b": model.bias.item()}


def test_onecycle_with_mini_batches_steps_per_batch_like_torch():
    x, y = tutorial_tensors()
    torch.manual_seed(3)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=10 * 4, cycle_momentum=False)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))
    for _ in range(10):
        for xb, yb in loader:
            loss = nn.MSELoss()(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    cfg = RegressConfig(optim=OptimConfig("sgd", lr=0.01), train=TrainConfig(
        epochs=10, batch_size=32, seed=3, device="cpu", schedule=ScheduleConfig("onecycle", peak_lr=0.2)))
    assert regress_run(cfg).params == {"w": model.weight.item(), "b": model.bias.item()}


@pytest.mark.parametrize("schedule", [ScheduleConfig("onecycle", peak_lr=0.2), ScheduleConfig("none", warmup=3),
                                      ScheduleConfig("cosine", warmup=2)], ids=lambda s: f"{s.name}-warmup{s.warmup}")
@pytest.mark.parametrize("batch_size", [32, None], ids=["mini-batch", "full-batch"])
def test_per_batch_schedules_record_the_rate_of_each_epochs_first_batch(schedule, batch_size):
    """The README: an epoch's `lr` is the rate its first batch trained with. Reference: torch's own schedulers
    stepped by hand after every optimizer step (LinearLR for the warm-up, as torch documents it)."""
    epochs, batches = 10, 4 if batch_size else 1
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = torch.optim.lr_scheduler
    steps = schedule.warmup * batches
    warm = sched.LinearLR(opt, start_factor=1 / (steps + 1), total_iters=steps) if steps else None
    main = (sched.OneCycleLR(opt, max_lr=0.2, total_steps=epochs * batches, cycle_momentum=False)
            if schedule.name == "onecycle" else
            sched.CosineAnnealingLR(opt, T_max=epochs - schedule.warmup) if schedule.name == "cosine" else None)
    first_rates, done = [], 0
    for _ in range(epochs):
        first_rates.append(opt.param_groups[0]["lr"])
        for _ in range(batches):
            opt.step()
            if done < steps:
                warm.step()
            elif schedule.name == "onecycle":
                main.step()
            done += 1
        if schedule.name == "cosine" and done > steps:  # the epoch after warm-up is the main schedule's first
            main.step()
    cfg = RegressConfig(optim=OptimConfig("sgd", lr=0.01), train=TrainConfig(
        epochs=epochs, batch_size=batch_size, device="cpu", schedule=schedule))
    problem = RegressionProblem(cfg, synthetic())
    specs = [RunSpec("a", OptimConfig("sgd", lr=0.01), 0), RunSpec("b", OptimConfig("sgd", lr=0.01), 1)]
    for vectorize in (False, True):
        runs, _ = run_trials(problem, specs, vectorize=vectorize)
        for run in runs:
            assert [r["lr"] for r in run.records] == pytest.approx(first_rates, rel=1e-9)


def _first_batch_rates(schedule, epochs=20, lr=0.1, batch_size=None):
    cfg = RegressConfig(optim=OptimConfig("sgd", lr=lr), train=TrainConfig(
        epochs=epochs, batch_size=batch_size, device="cpu", schedule=schedule))
    return [r["lr"] for r in regress_run(cfg).records]


@pytest.mark.parametrize("batch_size", [None, 25], ids=["full-batch", "mini-batch"])
def test_warmup_hands_over_to_cosine_at_the_full_rate_by_hand_computation(batch_size):
    """Warm-up of W epochs, then cosine over the E - W epochs left: the first epoch after warm-up trains at the
    full rate, the last at the cosine's second-to-last point (not 0). Closed forms, no torch scheduler."""
    import math

    E, W, lr, B = 20, 5, 0.1, 4 if batch_size else 1
    steps = W * B
    start = 1 / (steps + 1)
    expected = [lr * (start + (1 - start) * min(e * B, steps) / steps) for e in range(W)]
    expected += [lr * (1 + math.cos(math.pi * k / (E - W))) / 2 for k in range(E - W)]
    rates = _first_batch_rates(ScheduleConfig("cosine", warmup=W), E, lr, batch_size)
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[W] == pytest.approx(lr, rel=1e-12) and rates[-1] > 0


def test_warmup_hands_over_to_a_step_schedule_that_counts_its_own_epochs():
    """--warmup 5 --schedule step --step-size 10: 10 epochs at the full rate after warm-up, then the decay."""
    rates = _first_batch_rates(ScheduleConfig("step", warmup=5, step_size=10, lr_gamma=0.5), 30, 0.1)
    assert rates[5:15] == pytest.approx([0.1] * 10, rel=1e-12)
    assert rates[15:25] == pytest.approx([0.05] * 10, rel=1e-12)
    assert rates[25:] == pytest.approx([0.025] * 5, rel=1e-12)


SCHEDULES = [ScheduleConfig("step", step_size=7, lr_gamma=0.5), ScheduleConfig("multistep", milestones=(5, 12)),
             ScheduleConfig("exponential", lr_gamma=0.9), ScheduleConfig("cosine", eta_min=1e-4),
             ScheduleConfig("onecycle"), ScheduleConfig("plateau", lr_patience=1, lr_factor=0.5),
             ScheduleConfig("cosine", warmup=3), ScheduleConfig("none", warmup=2)]


# the fast subset keeps cosine with warmup (two schedules chained); `make test` runs every one
@pytest.mark.parametrize("schedule", [pytest.param(s, marks=() if s.name == "cosine" and s.warmup else pytest.mark.slow)
                                      for s in SCHEDULES], ids=lambda s: f"{s.name}-warmup{s.warmup}")
def test_stacked_runs_follow_the_same_schedules_as_sequential_torch_runs(schedule):
    cfg = RegressConfig(train=TrainConfig(epochs=40, batch_size=32, device="cpu", schedule=schedule))
    problem = RegressionProblem(cfg, synthetic())
    specs = [RunSpec(f"{n}{lr}", OptimConfig(n, lr=lr), seed) for n in ("sgd", "adam") for lr in (0.01, 0.05)
             for seed in (0, 1)]
    seq, _ = run_trials(problem, specs, vectorize=False)
    vec, _ = run_trials(problem, specs, vectorize=True)
    assert all(r.stacked_with == len(specs) for r in vec)
    assert any(len({r["lr"] for r in s.records}) > 1 for s in seq)  # the schedule did change the rates
    for s, v in zip(seq, vec):
        assert [r["lr"] for r in v.records] == pytest.approx([r["lr"] for r in s.records], rel=1e-6)
        for name, value in s.metrics["params"].items():
            assert v.metrics["params"][name] == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_plateau_watches_the_validation_loss_in_both_engines():
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=200), model=ModelConfig("mlp", hidden=8),
                         train=TrainConfig(epochs=8, batch_size=40, device="cpu",
                                           schedule=ScheduleConfig("plateau", lr_patience=0, lr_factor=0.5))).resolved()
    problem = ClassificationProblem(cfg)
    specs = [RunSpec(str(lr), OptimConfig("adam", lr=lr), 0) for lr in (0.05, 0.2)]
    seq, _ = run_trials(problem, specs, vectorize=False)
    vec, _ = run_trials(problem, specs, vectorize=True)
    for s, v in zip(seq, vec):
        assert [r["lr"] for r in v.records] == pytest.approx([r["lr"] for r in s.records], rel=1e-6)


@pytest.mark.parametrize("kwargs, option", [
    (dict(name="cosine", step_size=3), "--step-size"), (dict(name="multistep"), "--milestones"),
    (dict(name="multistep", milestones=(5, 3)), "--milestones"), (dict(name="onecycle", warmup=2), "--warmup"),
    (dict(name="plateau", lr_factor=1.5), "--lr-factor"), (dict(name="spiral"), "--schedule"),
    (dict(name="none", warmup=-1), "--warmup"),
])
def test_bad_schedule_options_name_the_option(kwargs, option):
    with pytest.raises(ConfigError) as err:
        ScheduleConfig(**kwargs)
    assert err.value.option == option


def test_cli_schedule_options(cli):
    run = cli("regress", "--schedule", "exponential", "--lr-gamma", "0.99", "--epochs", "50", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["config"]["train"]["schedule"]["name"] == "exponential"
    cli("regress", "--warmup", "10", "--epochs", "5").assert_usage_error("--warmup")
    cli("lr-sweep", "--range-test", "--schedule", "step").assert_usage_error("--schedule")
    cli("regress", "--milestones", "a,b", "--schedule", "multistep").assert_usage_error("--milestones")
