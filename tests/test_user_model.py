"""--model package.module:NAME: a user's own nn.Module on every command, checked before training, stacked with
torch.func, on worker processes, and equal to independent references (a built-in model of the same layers, a
hand-written PyTorch loop)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

from conftest import tutorial_tensors

MODELS = '''
import torch
from torch import nn


class MLP(nn.Module):
    """The built-in mlp's layers, in a user's class (parameter names differ: net.1.weight)."""

    def __init__(self, in_features, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, x):
        return self.net(x)


class Reg(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.hidden = nn.Linear(in_features, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


def small_cnn(input_shape, num_classes):
    """A factory asking for the input shape and the class count."""
    channels = input_shape[0]
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * input_shape[1] * input_shape[2], num_classes))


class WithDropout(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.Dropout(0.3), nn.Linear(16, classes))

    def forward(self, x):
        return self.net(x)


class WithBatchNorm(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                 nn.Linear(16, classes))

    def forward(self, x):
        return self.net(x)


class WrongShape(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes + 1))

    def forward(self, x):
        return self.fc(x)


class ReturnsNaN(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))

    def forward(self, x):
        return self.fc(x) * float("nan")


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise ValueError("this forward always fails")


class NoParameters(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


class Unused(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))
        self.spare = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x)


class NeedsDepth(nn.Module):
    def __init__(self, in_features, depth):
        super().__init__()


class FrozenBias(nn.Module):
    """A regression model whose bias the user froze: it must stay at its initial value in every engine."""

    def __init__(self, in_features):
        super().__init__()
        self.lin = nn.Linear(in_features, 1)
        self.lin.bias.requires_grad_(False)

    def forward(self, x):
        return self.lin(x)


class FrozenFirst(nn.Module):
    """A classifier with a frozen first layer (a fixed random feature map)."""

    def __init__(self, in_features, classes):
        super().__init__()
        self.first = nn.Linear(in_features, 16)
        self.head = nn.Linear(16, classes)
        self.first.requires_grad_(False)

    def forward(self, x):
        return self.head(torch.relu(self.first(x.flatten(1))))


class Lazy(nn.Module):
    """Lazy layers: the shapes come from the first batch."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.LazyLinear(8), nn.Tanh(), nn.LazyLinear(1))

    def forward(self, x):
        return self.net(x)


class EvalShape(nn.Module):
    """One row more in eval mode than in training mode."""

    def __init__(self, in_features):
        super().__init__()
        self.lin = nn.Linear(in_features, 1)

    def forward(self, x):
        out = self.lin(x)
        return out if self.training else torch.cat([out, out[:1]])


class Complex(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.w = nn.Parameter(torch.randn(in_features, classes, dtype=torch.complex64))

    def forward(self, x):
        return (x.flatten(1).to(torch.complex64) @ self.w).real


class SetsDefault(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        torch.set_default_dtype(torch.float64)
        self.fc = nn.Linear(in_features, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Double(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.fc = nn.Linear(in_features, classes).double()

    def forward(self, x):
        return self.fc(x.flatten(1))


class MovesFolder(nn.Module):
    """Changes the working folder while it is built (to its parent)."""

    def __init__(self, in_features):
        super().__init__()
        import os
        os.chdir("..")
        self.lin = nn.Linear(in_features, 1)

    def forward(self, x):
        return self.lin(x)


BUILT = [0]


class CallsItem(nn.Module):
    """Its constructor calls .item() (common: a scale from the initial weights); counts how often it is built."""

    def __init__(self, in_features, classes):
        super().__init__()
        BUILT[0] += 1
        self.fc = nn.Linear(in_features, classes)
        self.scale = float(self.fc.weight.abs().sum().item())

    def forward(self, x):
        return self.fc(x.flatten(1))


class Float64(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.lin = nn.Linear(in_features, 1).double()

    def forward(self, x):
        return self.lin(x.double()).float()


CALLS = {"n": 0}


class BreaksLater(nn.Module):
    """Fails on its 31st training forward pass (during the second epoch of digits with batches of 64)."""

    def __init__(self, in_features, classes):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))

    def forward(self, x):
        if self.training:
            CALLS["n"] += 1
            if CALLS["n"] > 30:
                raise RuntimeError("the model broke mid-training")
        return self.fc(x)
'''


@pytest.fixture
def models(tmp_path, monkeypatch):
    """usermodels.py in the current folder, importable as losslab imports a user's model."""
    (tmp_path / "usermodels.py").write_text(MODELS)
    (tmp_path / "broken.py").write_text("raise ImportError('a dependency is missing')\n")
    for name in ("usermodels", "broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path


def curves(doc):
    return [(r["train_loss"], r["valid_loss"], r["valid_acc"]) for r in doc]


@pytest.mark.slow
def test_a_user_mlp_equal_to_the_builtin_gives_the_builtins_numbers(cli, models, tmp_path):
    common = ["classify", "--epochs", "3", "--quiet", "--device", "cpu"]
    builtin = cli(*common, "--model", "mlp", "--out", str(tmp_path / "a"))
    mine = cli(*common, "--model", "usermodels:MLP", "--out", str(tmp_path / "b"))
    assert builtin.exit_code == mine.exit_code == 0, mine.stderr
    a = json.loads((tmp_path / "a" / "result.json").read_text())
    b = json.loads((tmp_path / "b" / "result.json").read_text())
    assert b["accuracy"] == a["accuracy"] and b["valid_loss"] == a["valid_loss"]
    history = lambda d: (d / "history.csv").read_text().splitlines()  # noqa: E731
    key = lambda line: line.split(",")[:3]  # noqa: E731  (epoch, train_loss, ...)
    assert [key(x) for x in history(tmp_path / "a")[1:]] == [key(x) for x in history(tmp_path / "b")[1:]]


@pytest.mark.slow
def test_regress_with_a_user_model_equals_a_hand_written_loop(cli, models):
    run = cli("regress", "--model", "usermodels:Reg", "--epochs", "40", "--batch-size", "25", "--json",
              "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    sys.path.insert(0, str(models))
    from usermodels import Reg

    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = Reg(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=25, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    for _ in range(40):
        model.train()
        for xb, yb in loader:
            loss = nn.functional.mse_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        final = nn.functional.mse_loss(model(x), y).item()
    assert doc["final_loss"] == final
    assert doc["params"] == {} and doc["config"]["model"] == "usermodels:Reg"


@pytest.mark.slow
def test_stacked_trials_of_a_user_model_equal_sequential_ones(cli, models):
    args = ["compare-optimizers", "--task", "classify", "--model", "usermodels:small_cnn", "--optims", "sgd,adam",
            "--seeds", "2", "--epochs", "2", "--json", "--device", "cpu"]
    stacked, sequential = cli(*args), cli(*args, "--no-vectorize")
    assert stacked.exit_code == sequential.exit_code == 0, stacked.stderr
    assert "stacked in one batched computation: sgd, adam" in stacked.stderr
    for name in ("sgd", "adam"):
        for a, b in zip(stacked.json()["optimizers"][name]["runs"], sequential.json()["optimizers"][name]["runs"]):
            assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-4)
            assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1 / 359 + 1e-9)


@pytest.mark.parametrize("name, why", [("WithDropout", "dropout"), ("WithBatchNorm", "BatchNorm")])
def test_models_that_cannot_stack_train_one_after_another_and_say_why(models, name, why):
    from losslab.config import ClassifyConfig, ModelConfig, OptimConfig, TrainConfig
    from losslab.engine.problems import ClassificationProblem
    from losslab.engine.runs import RunSpec
    from losslab.engine.stacked import unsupported
    from losslab.engine.trials import run_trials

    cfg = ClassifyConfig(model=ModelConfig(name=f"usermodels:{name}"), train=TrainConfig(epochs=1, device="cpu"))
    problem = ClassificationProblem(cfg.resolved())
    specs = [RunSpec("adam", OptimConfig("adam", lr=0.01), seed) for seed in (0, 1)]
    assert why in unsupported(problem, specs)
    results, _ = run_trials(problem, specs)
    assert [r.status for r in results] == ["ok", "ok"] and {r.stacked_with for r in results} == {1}


@pytest.mark.parametrize("model, needle", [
    ("usermodels:WrongShape", "(64, 11)"),
    ("usermodels:ReturnsNaN", "non-finite"),
    ("usermodels:Raises", "this forward always fails"),
    ("usermodels:NoParameters", "no trainable parameters"),
    ("usermodels:NeedsDepth", "needs depth"),
    ("usermodels:Missing", "no attribute"),
    ("broken:Net", "a dependency is missing"),
    ("nosuchmodule:Net", "nosuchmodule"),
    ("usermodels", "import path"),
    ("usermodels:Complex", "complex64 parameters"),
    ("usermodels:SetsDefault", "sets torch's default dtype to float64"),
    ("usermodels:Double", "its parameters are float64 and its inputs float32"),
])
def test_a_bad_model_is_one_line_naming_model_before_training(cli, models, model, needle, tmp_path):
    run = cli("classify", "--model", model, "--epochs", "1", "--out", str(tmp_path / "out"))
    run.assert_usage_error("--model")
    assert needle in run.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # no file written


def test_builtin_architecture_options_are_refused_with_a_user_model(cli, models):
    cli("classify", "--model", "usermodels:MLP", "--hidden", "64").assert_usage_error("--hidden")
    cli("classify", "--model", "usermodels:MLP", "--depth", "2").assert_usage_error("--depth")
    cli("regress", "--model", "mlp").assert_usage_error("--model")


def test_parameters_without_gradient_are_named_in_the_report(cli, models):
    run = cli("classify", "--model", "usermodels:Unused", "--epochs", "1", "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    [note] = [n for n in run.json()["notes"] if "no gradient" in n]
    assert "spare.weight" in note and "spare.bias" in note


def test_a_model_failing_mid_training_keeps_its_records_and_exits_4(cli, models, tmp_path):
    run = cli("classify", "--model", "usermodels:BreaksLater", "--epochs", "5", "--out", str(tmp_path / "o"),
              "--quiet", "--device", "cpu")
    assert run.exit_code == 4
    assert run.stderr.strip().splitlines()[-1].startswith("losslab: error: training failed at epoch 2")
    assert "--model usermodels:BreaksLater" in run.stderr and "Traceback" not in run.stderr
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["status"] == "error" and doc["epochs_run"] == 1
    assert len((tmp_path / "o" / "history.csv").read_text().splitlines()) == 2  # the header and epoch 1


@pytest.mark.parametrize("args", [
    ["lr-sweep", "--task", "classify", "--num", "3", "--epochs", "2"],
    ["lr-sweep", "--task", "classify", "--range-test", "--steps", "20"],
    ["compare-losses", "--task", "classify", "--losses", "cross-entropy,focal", "--seeds", "1", "--epochs", "2"],
    ["compare-losses", "--losses", "mse,l1", "--seeds", "1", "--epochs", "30"],
    ["compare-optimizers", "--optims", "sgd,adam", "--seeds", "1", "--epochs", "30"],
])
def test_every_many_run_command_trains_a_user_model(cli, models, args):
    model = "usermodels:MLP" if "classify" in args else "usermodels:Reg"
    run = cli(*args, "--model", model, "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    given = run.json()["config"]["run"]["model"]
    assert (given["name"] if isinstance(given, dict) else given) == model


@pytest.mark.slow
def test_a_user_model_on_worker_processes_equals_local(cli, models):
    args = ["compare-optimizers", "--task", "classify", "--model", "usermodels:MLP", "--optims", "sgd,adam",
            "--seeds", "1", "--epochs", "2", "--json", "--device", "cpu", "--no-vectorize"]
    local, pooled = cli(*args), cli(*args, "--executor", "process", "--jobs", "2")
    assert local.exit_code == pooled.exit_code == 0, pooled.stderr
    for name in ("sgd", "adam"):
        assert pooled.json()["optimizers"][name]["runs"][0]["final_loss"] == \
            local.json()["optimizers"][name]["runs"][0]["final_loss"]


def _hand_loop_frozen_bias(models, lr, epochs):
    """Plain torch: SGD on FrozenBias, full batch, the seed-0 weights; the bias never moves."""
    sys.path.insert(0, str(models))
    from usermodels import FrozenBias

    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = FrozenBias(1)
    bias = model.lin.bias.item()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), y).item(), bias, model.lin.bias.item()


def test_frozen_parameters_stay_frozen_in_a_stacked_sweep(cli, models):
    """Stacked runs once trained the frozen bias (final loss 0.0091 where torch gives 6.0): such models now
    train one after another, say why, and equal plain torch and --no-vectorize."""
    args = ["lr-sweep", "--lrs", "0.1,0.05", "--epochs", "30", "--model", "usermodels:FrozenBias", "--json",
            "--device", "cpu"]
    stacked, sequential = cli(*args), cli(*args, "--no-vectorize")
    assert stacked.exit_code == sequential.exit_code == 0, stacked.stderr
    assert "freezes lin.bias" in stacked.json()["one_by_one"] and "not stacked" in stacked.stderr
    finals = lambda doc: {r["lr"]: r["final_loss"]["median"] for r in doc["rates"]}  # noqa: E731
    assert finals(stacked.json()) == finals(sequential.json())
    for lr in (0.1, 0.05):
        final, bias_before, bias_after = _hand_loop_frozen_bias(models, lr, 30)
        assert bias_after == bias_before
        assert finals(stacked.json())[lr] == pytest.approx(final, rel=1e-6)
        assert final > 1.0  # the frozen bias keeps the loss far from the tutorial's 0.009


@pytest.mark.parametrize("name, why", [("FrozenFirst", "freezes first.weight, first.bias"),
                                       ("Float64", "float64 parameters")])
def test_frozen_or_float64_models_train_one_by_one_with_the_numbers_of_single_runs(models, name, why):
    from losslab.config import ClassifyConfig, ModelConfig, OptimConfig, RegressConfig, TrainConfig
    from losslab.engine.problems import ClassificationProblem, RegressionProblem
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials

    train = TrainConfig(epochs=3, batch_size=64, device="cpu")
    problem = (ClassificationProblem(ClassifyConfig(model=ModelConfig(name=f"usermodels:{name}"), train=train,
                                                    ).resolved()) if name == "FrozenFirst" else
               RegressionProblem(RegressConfig(model=f"usermodels:{name}", train=train).resolved()))
    specs = [RunSpec(n, OptimConfig(n, lr=0.01), seed) for n in ("sgd", "adam") for seed in (0, 1)]
    stacked, _ = run_trials(problem, specs, vectorize=True)
    assert why in problem.unstacked
    alone, _ = run_trials(problem, specs, vectorize=False)
    assert [r.metrics["final_loss"] for r in stacked] == [r.metrics["final_loss"] for r in alone]
    assert all(r.status == "ok" for r in stacked)


EXITS = '''
import sys
import torch
from torch import nn

CALLS = {"n": 0}


def data():
    sys.exit(0)


class LateExit(nn.Module):
    """Calls sys.exit(3) (the code of "diverged") on its 6th training forward pass."""

    def __init__(self, in_features):
        super().__init__()
        self.lin = nn.Linear(in_features, 1)

    def forward(self, x):
        if self.training:
            CALLS["n"] += 1
            if CALLS["n"] > 5:
                sys.exit(3)
        return self.lin(x)


class InitExit(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        sys.exit(0)


def loss(p, t):
    sys.exit(0)
'''


@pytest.fixture
def exits(tmp_path, monkeypatch):
    (tmp_path / "exits.py").write_text(EXITS)
    monkeypatch.delitem(sys.modules, "exits", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("args, option", [
    (("classify", "--dataset", "exits:data"), "--dataset"),
    (("regress", "--model", "exits:InitExit"), "--model"),
    (("regress", "--loss", "exits:loss"), "--loss"),
])
def test_sys_exit_in_user_code_before_training_is_one_line_naming_the_option(cli, exits, args, option):
    """sys.exit(0) in a dataset, a model's __init__ or a loss once ended losslab with exit 0, nothing trained."""
    run = cli(*args, "--epochs", "1")
    run.assert_usage_error(option)
    assert "sys.exit" in run.stderr or "SystemExit" in run.stderr


def test_sys_exit_in_a_forward_mid_training_is_a_failed_run_not_its_exit_code(cli, exits, tmp_path):
    run = cli("regress", "--model", "exits:LateExit", "--epochs", "20", "--quiet", "--out", str(tmp_path / "o"))
    assert run.exit_code == 4, run.stderr  # not 3 ("diverged"), the code the model passed
    assert "called sys.exit(3)" in run.stderr
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["status"] == "error" and doc["epochs_run"] > 0  # the epochs before it are kept


def test_sys_exit_in_a_loss_fails_check_loss_with_exit_1(cli, exits):
    run = cli("check-loss", "exits:loss", "--json")
    assert run.exit_code == 1 and run.json()["status"] == "failed"
    assert "sys.exit(0)" in run.json()["checks"][0]["detail"]


def test_a_model_with_lazy_layers_trains_and_equals_a_hand_written_loop(cli, models):
    """nn.LazyLinear was an internal error ("Attempted to use an uninitialized parameter"): a real batch of two rows
    gives it its shapes right after it is built; the numbers are a hand loop's that does the same."""
    run = cli("regress", "--model", "usermodels:Lazy", "--epochs", "30", "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    sys.path.insert(0, str(models))
    from usermodels import Lazy

    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = Lazy()
    with torch.no_grad():
        model(x[:2])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(30):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert run.json()["final_loss"] == nn.functional.mse_loss(model(x), y).item()


def test_a_model_whose_eval_output_has_another_shape_is_one_line_naming_model(cli, models):
    run = cli("regress", "--model", "usermodels:EvalShape", "--epochs", "3")
    run.assert_usage_error("--model")
    assert "eval mode" in run.stderr and "(101, 1)" in run.stderr


def test_a_model_that_changes_the_working_folder_does_not_move_the_output(cli, models):
    import os

    start = os.getcwd()
    run = cli("regress", "--model", "usermodels:MovesFolder", "--epochs", "3", "--quiet", "--out", "rel_out",
              "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    assert os.getcwd() == start and (models / "rel_out" / "result.json").is_file()
    assert not (models.parent / "rel_out").exists()


def test_a_constructor_that_calls_item_trains_and_is_built_once_for_the_checks(models):
    """The memory estimate builds models on the meta device, where .item() fails: that was blamed on the model."""
    from losslab.commands import classify
    from losslab.config import ClassifyConfig, ModelConfig, TrainConfig

    sys.path.insert(0, str(models))
    import usermodels

    usermodels.BUILT[0] = 0
    result = classify.run(ClassifyConfig(model=ModelConfig(name="usermodels:CallsItem"),
                                         train=TrainConfig(epochs=1, device="cpu")).resolved())
    assert result.status == "ok"
    assert usermodels.BUILT[0] <= 3  # the meta estimate (fails there, skipped), both checks, the run
