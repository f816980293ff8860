"""Model options (--depth, --activation, --init, --dropout, --batch-norm), train/eval mode, clipping by value and
its count, and per-layer update ratios — each against torch itself."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import classify_run, regress_run, tutorial_tensors
from losslab.components.models import build_classifier
from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig, OptimConfig, RegressConfig, TrainConfig
from losslab.engine.loop import Clipper, FitOptions, fit
from losslab.engine.problems import ClassificationProblem
from losslab.errors import ConfigError


def test_the_default_mlp_is_the_one_hidden_layer_relu_network_with_torchs_init():
    torch.manual_seed(3)
    ours = build_classifier(ModelConfig(name="mlp", hidden=16), (1, 8, 8), 10)
    torch.manual_seed(3)
    ref = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    assert [type(m) for m in ours] == [type(m) for m in ref]
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_depth_activation_batch_norm_and_dropout_build_the_layers_asked_for():
    cfg = ModelConfig(name="mlp", hidden=32, depth=3, activation="tanh", batch_norm=True, dropout=0.25)
    model = build_classifier(cfg, (20,), 4)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten"] + ["Linear", "BatchNorm1d", "Tanh", "Dropout"] * 3 + ["Linear"]
    assert model[4].p == 0.25 and model[-1].in_features == 32 and model[-1].out_features == 4
    for name in ("relu", "sigmoid", "gelu"):
        act = build_classifier(ModelConfig(name="mlp", depth=2, activation=name), (5,), 3)
        assert type(act[2]).__name__.lower() == name


@pytest.mark.parametrize("init, activation", [("kaiming", "relu"), ("xavier", "tanh"), ("kaiming", "sigmoid")])
def test_init_schemes_give_the_variances_torch_nn_init_defines(init, activation):
    torch.manual_seed(0)
    model = build_classifier(ModelConfig(name="mlp", hidden=512, depth=2, activation=activation, init=init), (512,), 3)
    hidden = model[3]  # Linear(512, 512)
    gain = nn.init.calculate_gain(activation)
    fan_in = fan_out = 512
    want = gain / math.sqrt(fan_in) if init == "kaiming" else gain * math.sqrt(2 / (fan_in + fan_out))
    assert hidden.weight.std().item() == pytest.approx(want, rel=0.02)
    assert torch.count_nonzero(hidden.bias) == 0


def test_the_cnn_has_no_activation_unless_asked():
    plain = build_classifier(ModelConfig(name="cnn"), (1, 8, 8), 10)
    assert not any(isinstance(m, (nn.ReLU, nn.Tanh)) for m in plain.modules())
    relu = build_classifier(ModelConfig(name="cnn", activation="relu"), (1, 8, 8), 10)
    assert sum(isinstance(m, nn.ReLU) for m in relu.modules()) == 4  # after each conv and the hidden Linear


def test_options_a_model_does_not_have_are_refused():
    with pytest.raises(ConfigError, match="--depth"):
        ModelConfig(name="logistic", depth=2)
    with pytest.raises(ConfigError, match="--dropout"):
        ModelConfig(name="cnn", dropout=0.1)
    ModelConfig(name="logistic", init="xavier")  # init applies to every classifier


def test_dropout_and_batch_norm_make_train_and_eval_mode_differ():
    cfg = ClassifyConfig(data=ClassifyDataConfig(dataset="blobs"),
                         model=ModelConfig(name="mlp", depth=2, dropout=0.5, batch_norm=True),
                         train=TrainConfig(epochs=3, batch_size=64, device="cpu")).resolved()
    problem = ClassificationProblem(cfg)
    model = problem.new_model(0)
    result = classify_run(cfg)
    assert result.status == "ok"
    # validation runs in eval mode: two evaluations agree exactly
    model.eval()
    with torch.no_grad():
        first, second = problem.evaluate(model), problem.evaluate(model)
    assert first == second
    # training mode: dropout draws a new mask each forward
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(problem.x[:32]), model(problem.x[:32]))
    # and the loop leaves the model in eval mode with the recorded validation metrics reproducible
    records = result.records
    assert all(math.isfinite(r["valid_loss"]) for r in records)


@pytest.mark.slow
def test_stacked_trials_match_sequential_for_tanh_and_sigmoid_mlps(cli):
    for activation in ("tanh", "sigmoid", "gelu"):
        args = ["lr-sweep", "--task", "classify", "--dataset", "blobs", "--model", "mlp", "--depth", "2",
                "--activation", activation, "--lrs", "0.001,0.01", "--epochs", "3", "--json"]
        stacked, sequential = cli(*args), cli(*args, "--no-vectorize")
        assert stacked.exit_code == sequential.exit_code == 0, stacked.stderr
        a, b = stacked.json(), sequential.json()
        assert a["vectorized"] and not b["vectorized"]
        key = lambda r: (r["lr"], r["seed"])  # noqa: E731
        for ra, rb in zip(sorted(a["results"], key=key), sorted(b["results"], key=key)):
            assert key(ra) == key(rb) and ra["final_loss"] == pytest.approx(rb["final_loss"], rel=1e-5)


def _clip_run(**clip):
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, fit(model, nn.MSELoss(), opt, (x, y), epochs=20,
                      options=FitOptions(batch_size=10, generator=torch.Generator().manual_seed(0), **clip))


def test_clip_grad_value_matches_torch_and_counts_active_steps():
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    ref = nn.Linear(1, 1)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(0))
    active = []
    for _ in range(20):
        epoch_active = 0
        for xb, yb in loader:
            loss = nn.MSELoss()(ref(xb), yb)
            opt.zero_grad()
            loss.backward()
            epoch_active += max(p.grad.abs().max().item() for p in ref.parameters()) > 0.5
            nn.utils.clip_grad_value_(ref.parameters(), 0.5)
            opt.step()
        active.append(epoch_active / 10)
    model, fitted = _clip_run(clip_grad_value=0.5)
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)
    assert [r["clipped"] for r in fitted.records] == active
    assert active[0] > 0 and active[-1] == 0  # large gradients at first, none once fitted
    _, unclipped = _clip_run()
    assert "clipped" not in unclipped.records[0]


def test_clipper_counts_a_norm_clip_only_when_it_changes_the_gradient():
    p = nn.Parameter(torch.zeros(3))
    clip = Clipper([p], norm=1.0, value=None)
    for grad in ([3.0, 4.0, 0.0], [0.3, 0.4, 0.0]):
        p.grad = torch.tensor(grad)
        clip()
    assert clip.epoch_fraction() == 0.5 and torch.linalg.vector_norm(p.grad).item() == pytest.approx(0.5)
    assert clip.epoch_fraction() == 0.0  # reset each epoch


def test_update_ratio_is_the_size_of_the_epochs_last_step_per_layer():
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    ref = nn.Linear(1, 1)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    ratios = []
    for _ in range(5):
        loss = nn.MSELoss()(ref(x), y)
        opt.zero_grad()
        loss.backward()
        before = [p.detach().clone() for p in ref.parameters()]
        opt.step()
        ratios.append([(torch.linalg.vector_norm(p.detach() - b) / torch.linalg.vector_norm(b)).item()
                       for p, b in zip(ref.parameters(), before)])
    result = regress_run(RegressConfig(optim=OptimConfig("adam", lr=0.01), train=TrainConfig(epochs=5, device="cpu")))
    got = [[r["update_ratio/weight"], r["update_ratio/bias"]] for r in result.records]
    assert got == [pytest.approx(r, rel=1e-5) for r in ratios]


@pytest.mark.slow
def test_deep_models_keep_per_layer_figures_in_json_not_in_the_csv(cli, tmp_path):
    run = cli("classify", "--dataset", "blobs", "--depth", "20", "--epochs", "2", "--out", str(tmp_path / "o"),
              "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert len(doc["layers"]) == 42 and doc["layers"][0]["name"] == "1.weight"
    assert all(layer["update_ratio"] is not None for layer in doc["layers"])
    header = (tmp_path / "o" / "history.csv").read_text().splitlines()[0]
    assert "grad_norm/" not in header and "grad_norm" in header
