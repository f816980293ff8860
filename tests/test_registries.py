import pytest
import torch

from losslab.components.losses import LOSSES, build_loss, check_task
from losslab.components.optimizers import OPTIMIZERS, build_optimizer
from losslab.config import LossConfig, OptimConfig
from losslab.errors import ConfigError

EXPECTED_CLASSES = {
    "sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD, "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad,
    "lbfgs": torch.optim.LBFGS, "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam, "adamax": torch.optim.Adamax,
    "adadelta": torch.optim.Adadelta, "rprop": torch.optim.Rprop, "asgd": torch.optim.ASGD,
    "adafactor": torch.optim.Adafactor, "muon": torch.optim.Muon,
}
CATALOGUE = ("nadam", "radam", "adamax", "adadelta", "rprop", "asgd", "adafactor")  # torch.optim's, by name


@pytest.mark.parametrize("name", CATALOGUE)
def test_torch_catalogue_optimizers_train_as_a_hand_written_loop(name):
    """The default regression with each of torch.optim's other classes, against the tutorial's loop written out
    with the same class, rate, initial weights and data: the same weights to the bit."""
    from conftest import tutorial_tensors
    from losslab.config import RegressConfig, TrainConfig
    from losslab.engine.problems import RegressionProblem
    from losslab.engine.runs import RunSpec, execute

    cfg = RegressConfig(optim=OptimConfig(name), train=TrainConfig(epochs=60, device="cpu")).resolved()
    result = execute(RegressionProblem(cfg), RunSpec("run", cfg.optim, 0))
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = EXPECTED_CLASSES[name](model.parameters(), lr=cfg.optim.lr)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert result.status == "ok"
    assert result.metrics["params"] == {"w": model.weight.item(), "b": model.bias.item()}


def test_unknown_name_lists_choices():
    with pytest.raises(ConfigError) as err:
        OPTIMIZERS.lookup("adamax2")
    assert err.value.option == "--optim"
    assert "adamax2" in err.value.message and "sgd, momentum" in err.value.message


def test_every_registered_optimizer_has_its_torch_class_here():
    """The reference below names torch's class for each optimizer: a new registry entry needs its own line."""
    assert sorted(OPTIMIZERS.names()) == sorted(EXPECTED_CLASSES)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_the_torch_class_with_its_default_lr(name):
    for task in ("regression", "classification"):
        cfg = OptimConfig(name=name).for_task(task)
        shape = (2, 2) if name == "muon" else (2,)  # (Muon takes matrices only)
        opt = build_optimizer([torch.nn.Parameter(torch.zeros(*shape))], cfg)
        assert type(opt) is EXPECTED_CLASSES[name]
        assert opt.param_groups[0]["lr"] == OPTIMIZERS.lookup(name).meta["default_lr"][task] == cfg.lr


def test_optimizer_variants_and_options():
    p = [torch.nn.Parameter(torch.zeros(1))]
    g = build_optimizer(p, OptimConfig(name="nesterov", lr=0.1)).param_groups[0]
    assert g["nesterov"] and g["momentum"] == 0.9
    g = build_optimizer(p, OptimConfig(name="momentum", lr=0.1, momentum=0.5)).param_groups[0]
    assert g["momentum"] == 0.5 and not g["nesterov"]
    adam = OptimConfig(name="adam", lr=0.1, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
    g = build_optimizer(p, adam).param_groups[0]
    assert g["betas"] == (0.8, 0.9) and g["eps"] == 1e-6 and g["weight_decay"] == 0.1


@pytest.mark.parametrize("kwargs, option", [
    ({"name": "adam", "momentum": 0.9}, "--momentum"),
    ({"name": "sgd", "betas": (0.9, 0.99)}, "--betas"),
    ({"name": "lbfgs", "weight_decay": 0.1}, "--weight-decay"),
    ({"name": "sgd", "lr": 0.0}, "--lr"),
    ({"name": "sgd", "lr": float("nan")}, "--lr"),
    ({"name": "adam", "betas": (0.9, 1.5)}, "--betas"),
    ({"name": "sgd", "momentum": 1.0}, "--momentum"),
])
def test_optimizer_config_refuses_bad_or_inapplicable_options(kwargs, option):
    with pytest.raises(ConfigError) as err:
        OptimConfig(**kwargs)
    assert err.value.option == option


def test_regression_losses_match_torch_functional():
    pred, target = torch.tensor([0.0, 1.0, 5.0]), torch.tensor([0.5, 1.0, 1.0])
    F = torch.nn.functional
    assert build_loss(LossConfig("mse"))(pred, target) == F.mse_loss(pred, target)
    assert build_loss(LossConfig("l1"))(pred, target) == F.l1_loss(pred, target)
    assert build_loss(LossConfig("huber", delta=2.0))(pred, target) == F.huber_loss(pred, target, delta=2.0)
    assert build_loss(LossConfig("smooth-l1", delta=0.5))(pred, target) == F.smooth_l1_loss(pred, target, beta=0.5)


def test_classification_loss_refused_for_regression_with_explanation():
    with pytest.raises(ConfigError) as err:
        check_task("cross-entropy", "regression")
    assert "class labels" in err.value.message and "mse" in err.value.message
    check_task("mse", "regression")
    check_task("mypkg.mod:Loss", "regression")  # import paths are the user's call


def test_import_path_loss_function_and_class(tmp_path, monkeypatch):
    (tmp_path / "userloss.py").write_text(
        "import torch\n"
        "def weighted_mse(pred, target):\n    return (3.0 * (pred - target) ** 2).mean()\n"
        "class Cubic(torch.nn.Module):\n"
        "    def forward(self, pred, target):\n        return (pred - target).abs().pow(3).mean()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    pred, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert build_loss(LossConfig("userloss:weighted_mse"))(pred, target).item() == pytest.approx(7.5)
    assert build_loss(LossConfig("userloss:Cubic"))(pred, target).item() == pytest.approx(4.5)
    for bad in ("userloss:nope", "no_such_module_xyz:f", "userloss:"):
        with pytest.raises(ConfigError) as err:
            build_loss(LossConfig(bad))
        assert err.value.option == "--loss"


def test_registry_descriptions_are_one_line():
    for reg in (OPTIMIZERS, LOSSES):
        for entry in reg:
            assert entry.description and "\n" not in entry.description
