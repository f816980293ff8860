"""The shared loop against hand-written PyTorch loops and closed-form least squares."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import Recorder, tutorial_tensors
from conftest import regress_run as regress
from losslab.components.regression_data import least_squares, synthetic
from losslab.config import LossConfig, OptimConfig, RegressConfig, TrainConfig
from losslab.engine.events import Consumer, Dispatcher
from losslab.engine.loop import FitOptions, fit, layer_grad_norms


def _model(seed=0, features=1):
    torch.manual_seed(seed)
    return nn.Linear(features, 1)


def test_full_batch_adam_is_bit_identical_to_the_tutorial_loop():
    x, y = tutorial_tensors()
    ref = _model()
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    losses = []
    for _ in range(300):
        loss = nn.MSELoss()(ref(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    cfg = RegressConfig(optim=OptimConfig("adam", lr=0.01), train=TrainConfig(epochs=300, device="cpu"))
    result = regress(cfg)
    assert result.params == {"w": ref.weight.item(), "b": ref.bias.item()}
    assert [r["train_loss"] for r in result.records] == losses


def test_minibatch_sgd_matches_hand_written_shuffled_loop():
    x, y = tutorial_tensors()
    ref = _model(seed=3)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
    for _ in range(20):
        for xb, yb in loader:
            loss = nn.MSELoss()(ref(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    cfg = RegressConfig(optim=OptimConfig("sgd", lr=0.05),
                        train=TrainConfig(epochs=20, batch_size=16, seed=3, device="cpu"))
    result = regress(cfg)
    assert result.params == {"w": ref.weight.item(), "b": ref.bias.item()}


def test_lbfgs_closure_matches_hand_written_and_reaches_least_squares():
    x, y = tutorial_tensors()
    ref = _model()
    opt = torch.optim.LBFGS(ref.parameters(), lr=1.0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.MSELoss()(ref(x), y)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    result = regress(RegressConfig(optim=OptimConfig("lbfgs"), train=TrainConfig(epochs=5, device="cpu")))
    assert result.params == {"w": ref.weight.item(), "b": ref.bias.item()}
    w, b = least_squares(x.numpy(), y.numpy())
    assert result.params["w"] == pytest.approx(w[0], abs=1e-4) and result.params["b"] == pytest.approx(b, abs=1e-4)


def test_gradient_clipping_matches_clip_grad_norm():
    x, y = tutorial_tensors()
    ref = _model()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(10):
        loss = nn.MSELoss()(ref(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
    result = regress(RegressConfig(optim=OptimConfig("sgd", lr=0.1),
                                   train=TrainConfig(epochs=10, clip_grad_norm=0.5, device="cpu")))
    assert result.params == {"w": ref.weight.item(), "b": ref.bias.item()}


@pytest.mark.parametrize("name, lr, epochs", [
    ("sgd", 0.1, 300), ("momentum", 0.05, 300), ("nesterov", 0.05, 300), ("adam", 0.05, 1000),
    ("adamw", 0.05, 1000), ("rmsprop", 0.01, 1000), ("adagrad", 0.5, 1000), ("lbfgs", 1.0, 10),
])
def test_every_optimizer_converges_to_the_least_squares_optimum(name, lr, epochs):
    data = synthetic(samples=64, features=2, true_w=(2.0, -1.0), true_b=3.0, noise=0.1, seed=5)
    w, b = least_squares(data.x, data.y)
    optim = OptimConfig(name, lr=lr, weight_decay=0.0 if name == "adamw" else None)
    result = regress(RegressConfig(optim=optim, train=TrainConfig(epochs=epochs, device="cpu")), data=data)
    assert result.status == "ok"
    tol = 2e-2 if name in ("rmsprop", "adagrad") else 2e-3  # fixed-step adaptive methods hover near the optimum
    assert result.params["w1"] == pytest.approx(w[0], abs=tol)
    assert result.params["w2"] == pytest.approx(w[1], abs=tol)
    assert result.params["b"] == pytest.approx(b, abs=tol)
    assert result.optimum["loss"] <= result.final_loss + 1e-7  # nothing beats the closed form under MSE


def test_records_have_loss_params_grad_norm_lr():
    x, y = tutorial_tensors()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    class Spy(Consumer):
        def on_epoch_end(self, run, record):
            seen.append(dict(record))

    def track():
        return {"w": model.weight.item(), "b": model.bias.item()}

    result = fit(model, nn.MSELoss(), opt, (x, y), epochs=3, options=FitOptions(track=track), events=Spy())
    assert [r["epoch"] for r in seen] == [1, 2, 3] == [r["epoch"] for r in result.records]
    assert set(seen[0]) == {"epoch", "train_loss", "w", "b", "grad_norm", "grad_norm/weight", "grad_norm/bias",
                            "update_ratio/weight", "update_ratio/bias", "lr", "elapsed_s"}
    assert seen[-1]["w"] == model.weight.item() and seen[0]["lr"] == 0.1
    assert seen[0]["elapsed_s"] <= seen[-1]["elapsed_s"]
    # the last step's gradients, per layer, as torch computes them
    assert seen[-1]["grad_norm/weight"] == pytest.approx(model.weight.grad.norm().item(), rel=1e-6)
    assert seen[-1]["grad_norm/bias"] == pytest.approx(model.bias.grad.norm().item(), rel=1e-6)
    assert seen[-1]["grad_norm"] == pytest.approx(math.hypot(seen[-1]["grad_norm/weight"], seen[-1]["grad_norm/bias"]))


def test_layer_norms_are_recorded_for_every_model_and_match_in_both_engines():
    from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig
    from losslab.engine.loop import layer_grad_norms
    from losslab.engine.problems import ClassificationProblem
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials

    deep = nn.Sequential(*[nn.Linear(2, 2) for _ in range(20)])  # 40 parameter tensors
    deep(torch.randn(3, 2)).sum().backward()
    total, layers = layer_grad_norms(list(deep.named_parameters()), small=False)
    assert len(layers) == 40 and total == pytest.approx(math.hypot(*layers.values()))
    cfg = ClassifyConfig(data=ClassifyDataConfig("digits", subset=200), model=ModelConfig("mlp", hidden=8),
                         train=TrainConfig(epochs=2, batch_size=40, device="cpu")).resolved()
    problem = ClassificationProblem(cfg)
    specs = [RunSpec(str(lr), OptimConfig("adam", lr=lr), 0) for lr in (0.01, 0.1)]
    seq, _ = run_trials(problem, specs, vectorize=False)
    vec, _ = run_trials(problem, specs, vectorize=True)
    keys = ["grad_norm/1.weight", "grad_norm/1.bias", "grad_norm/3.weight", "grad_norm/3.bias"]
    keys += [k.replace("grad_norm", "update_ratio") for k in keys]
    for s, v in zip(seq, vec):
        for key in keys:
            assert v.records[-1][key] == pytest.approx(s.records[-1][key], rel=1e-4)


def test_grad_norm_matches_torch_for_small_and_large_models():
    for model in (nn.Linear(3, 1), nn.Linear(50, 20)):
        model(torch.randn(4, model.in_features)).pow(2).sum().backward()
        named = list(model.named_parameters())
        expected = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for _, p in named])).item()
        for small in (True, False):
            total, layers = layer_grad_norms(named, small=small)
            assert total == pytest.approx(expected, rel=1e-5)
            assert layers["grad_norm/weight"] == pytest.approx(model.weight.grad.norm().item(), rel=1e-5)


def test_divergence_stops_at_once_and_is_reported():
    result = regress(RegressConfig(optim=OptimConfig("sgd", lr=50.0), train=TrainConfig(epochs=1000, device="cpu")))
    assert result.status == "diverged"
    assert result.diverged_epoch == result.epochs_run < 1000
    assert not math.isfinite(result.records[-1]["train_loss"])
    assert all(math.isfinite(r["train_loss"]) for r in result.records[:-1])


def test_ctrl_c_stops_cleanly_with_what_was_recorded():
    class Interrupt(Consumer):
        def on_epoch_end(self, run, record):
            if record["epoch"] == 7:
                raise KeyboardInterrupt

    history = Recorder()
    result = regress(RegressConfig(train=TrainConfig(epochs=100, device="cpu")), consumers=[history, Interrupt()])
    assert result.status == "interrupted" and result.epochs_run == 7
    assert [r["epoch"] for r in history.records["sgd-lr0.1-seed0"]] == list(range(1, 8))


def test_callback_can_stop_early():
    class StopAt(Consumer):
        def on_epoch_end(self, run, record):
            return record["epoch"] == 4

    x, y = tutorial_tensors()
    model = _model()
    result = fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), (x, y), epochs=50,
                 events=Dispatcher([StopAt()]))
    assert result.status == "ok" and result.stopped_early and result.epochs_run == 4


def test_seed_reproduces_and_changes_initial_weights():
    def run(seed):
        cfg = RegressConfig(optim=OptimConfig("adam", lr=0.01),
                            train=TrainConfig(epochs=30, batch_size=10, seed=seed, device="cpu"))
        return regress(cfg).params

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.slow
def test_l1_loss_moves_towards_the_median_fit():
    # with an outlier, L1 ignores it where MSE is pulled: the learned bias stays near the true one
    data = synthetic(samples=50, noise=0.0)
    y = data.y.copy()
    y[0, 0] += 1000.0
    from dataclasses import replace

    noisy = replace(data, y=y)
    cfg = RegressConfig(loss=LossConfig("l1"), optim=OptimConfig("adam", lr=0.05),
                        train=TrainConfig(epochs=1500, device="cpu"))
    result = regress(cfg, data=noisy)
    assert result.params["b"] == pytest.approx(3.0, abs=0.05)
    assert abs(result.optimum["params"]["b"] - 3.0) > 10  # least squares is dragged by the outlier
    assert np.isfinite(result.final_loss)


def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from losslab.engine.loop import resolve_device
    from losslab.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="cuda"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="mps"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_threads_sets_torchs_thread_count_and_is_recorded(cli):
    import losslab

    before = torch.get_num_threads()
    try:  # (through the Python API: the cli fixture puts the count back after each command)
        result = losslab.regress(threads=1, epochs=3, device="cpu", progress=False)
        assert torch.get_num_threads() == 1 and result.document()["config"]["train"]["threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert cli("regress", "--threads", "1", "--epochs", "3", "--json", "--quiet").json()["config"]["train"][
        "threads"] == 1
