"""Any optimizer (issue 33): a class by import path, a name pytorch-optimizer knows, a class or partial given in
Python, `--optim-arg`, and the protocols found from the class — each run checked against a hand-written PyTorch
loop with the same optimizer, initial weights and batch order, and every bad input one line naming the option."""

from __future__ import annotations

import functools
import json
import sys
import textwrap

import pytest
import torch

from conftest import classify_run, regress_run, tutorial_tensors
from losslab.config import ClassifyConfig, OptimConfig, RegressConfig, TrainConfig

LION = '''
import torch


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023), written out: the sign of an interpolated momentum."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(m.lerp(p.grad, 1 - beta1).sign_(), alpha=-group["lr"])
                m.lerp_(p.grad, 1 - beta2)


class NeedsClosure(torch.optim.SGD):
    def step(self, closure=None):
        if closure is None:
            raise RuntimeError("this optimizer requires a closure")
        return super().step(closure)


class Raises(torch.optim.SGD):
    def __init__(self, params, lr=0.1):
        raise ValueError("cannot set up")


class FailsLater(torch.optim.SGD):
    def __init__(self, params, lr=0.1, fail_at=20):
        super().__init__(params, lr=lr)
        self.fail_at, self.taken = fail_at, 0

    def step(self, closure=None):
        self.taken += 1
        if self.taken == self.fail_at:
            raise RuntimeError(f"step {self.taken} failed")
        return super().step(closure)


class NotAnOptimizer:
    pass


class ClearsGrad(torch.optim.SGD):
    """SGD that sets every gradient to None inside its step (as some memory-saving optimizers do)."""

    def step(self, closure=None):
        out = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return out
'''


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    """The test's own optimizer module, importable from the current folder as a user's would be."""
    (tmp_path / "myopt.py").write_text(textwrap.dedent(LION))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("myopt", None)
    yield tmp_path
    sys.modules.pop("myopt", None)


def _regress(name: str, epochs: int = 60, lr: float | None = None, args=()) -> dict:
    cfg = RegressConfig(optim=OptimConfig(name, lr=lr, args=tuple(args)), train=TrainConfig(epochs=epochs,
                                                                                          device="cpu"))
    return regress_run(cfg)


def _hand_regression(make, epochs: int, step) -> torch.nn.Linear:
    """The tutorial's loop: the model from seed 0, full batch; `step(opt, model, x, y)` one update."""
    x, y = tutorial_tensors()
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = make(model.parameters())
    for _ in range(epochs):
        step(opt, model, x, y)
    return model


def _plain(opt, model, x, y):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()


def _params(model):
    return {"w": model.weight.item(), "b": model.bias.item()}


def test_a_users_class_by_import_path_trains_as_a_hand_written_loop(user_file):
    import myopt

    result = _regress("myopt:Lion", epochs=80, lr=0.01)
    model = _hand_regression(lambda p: myopt.Lion(p, lr=0.01), 80, _plain)
    assert result.status == "ok" and result.params == _params(model)
    assert result.optimizer["class"] == "Lion (yours)" and result.optimizer["grad_evals"] == 80


def test_torch_classes_by_import_path_equal_their_registered_names():
    by_path, by_name = _regress("torch.optim:NAdam", lr=0.01), _regress("nadam", lr=0.01)
    assert by_path.params == by_name.params and by_path.status == "ok"


def test_a_library_name_and_optim_arg_reach_the_class():
    from pytorch_optimizer import Lion

    result = _regress("lion", lr=0.01, args=[("betas", (0.95, 0.98))])
    model = _hand_regression(lambda p: Lion(p, lr=0.01, betas=(0.95, 0.98)), 60, _plain)
    assert result.params == _params(model)
    assert result.optimizer["arguments"] == {"betas": (0.95, 0.98)}


def test_sam_takes_two_passes_per_step_through_a_closure():
    """pytorch-optimizer's SAM: backward, then step(closure) re-evaluates at the perturbed point."""
    from pytorch_optimizer import SAM

    result = _regress("pytorch_optimizer:SAM", epochs=40, lr=0.1, args=[("base_optimizer", "torch.optim:SGD")])

    def sam_step(opt, model, x, y):
        def closure():
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step(closure)

    model = _hand_regression(lambda p: SAM(p, base_optimizer=torch.optim.SGD, lr=0.1), 40, sam_step)
    assert result.params == pytest.approx(_params(model), rel=1e-6)
    assert result.optimizer["steps"] == 40 and result.optimizer["grad_evals"] == 80
    assert any("two forward-backward passes" in w for w in result.optimizer["protocol"])


def test_adahessian_gets_the_graph_of_the_gradient():
    from pytorch_optimizer import AdaHessian

    result = _regress("adahessian", epochs=30, lr=0.1)

    def step(opt, model, x, y):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward(create_graph=True)
        opt.step()
        opt.zero_grad()

    model = _hand_regression(lambda p: AdaHessian(p, lr=0.1), 30, step)
    assert result.status == "ok" and result.params == pytest.approx(_params(model), rel=1e-6)
    assert any("create_graph" in w for w in result.optimizer["protocol"])


def _digits(name: str, epochs: int = 2, lr: float = 0.003, **optim) -> ClassifyConfig:
    return ClassifyConfig(optim=OptimConfig(name, lr=lr, **optim), train=TrainConfig(epochs=epochs, batch_size=64,
                                                                                    device="cpu"))


def _hand_digits(cfg: ClassifyConfig, make, before_eval=None, after_eval=None):
    """Digits with the run's own model, data and batch order, trained by a written-out loop; the validation loss
    of each epoch."""
    from losslab.engine.loop import batch_generator
    from losslab.engine.problems import ClassificationProblem

    problem = ClassificationProblem(cfg.resolved())
    model = problem.new_model(cfg.train.seed)
    opt = make(model)
    generator = batch_generator(cfg.train.seed)
    losses = []
    for _ in range(cfg.train.epochs):
        model.train()
        if after_eval:
            after_eval(opt)
        for xb, yb in problem.source.epoch(64, generator):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        if before_eval:
            before_eval(opt)
        model.eval()
        with torch.no_grad():
            losses.append(torch.nn.functional.cross_entropy(model(problem.x_val), problem.y_val).item())
    return losses


def test_schedule_free_validates_at_its_evaluation_point():
    """schedulefree's AdamW: train() before training steps, eval() before every validation (AlgoPerf's
    prepare_for_eval); the validation losses equal a hand loop that does the same, and differ from one that
    forgets eval()."""
    import schedulefree

    cfg = _digits("schedulefree:AdamWScheduleFree", lr=0.003)
    result = classify_run(cfg)
    make = lambda m: schedulefree.AdamWScheduleFree(m.parameters(), lr=0.003)  # noqa: E731
    hand = _hand_digits(cfg, make, before_eval=lambda o: o.eval(), after_eval=lambda o: o.train())
    assert [r["valid_loss"] for r in result.records] == pytest.approx(hand, rel=1e-5)
    forgot = _hand_digits(cfg, make, after_eval=lambda o: o.train())  # (never eval(): validates at the wrong point)
    assert result.records[-1]["valid_loss"] != pytest.approx(forgot[-1], rel=1e-3)


def test_muon_routes_hidden_matrices_and_lists_the_routes():
    """torch's Muon on the 2-D hidden weights, AdamW on the rest (biases, the output layer): equal to a hand loop
    that builds the same two optimizers."""
    cfg = _digits("muon", lr=0.002)
    result = classify_run(cfg)
    routes = result.optimizer["routes"]
    assert routes["1.weight"] == "muon" and routes["3.weight"] == "adamw" and routes["1.bias"] == "adamw"

    class Both:
        def __init__(self, model):
            named = dict(model.named_parameters())
            self.parts = [torch.optim.Muon([named["1.weight"]], lr=0.002, adjust_lr_fn="match_rms_adamw"),
                          torch.optim.AdamW([p for n, p in named.items() if n != "1.weight"], lr=0.002)]

        def zero_grad(self):
            for o in self.parts:
                o.zero_grad()

        def step(self):
            for o in self.parts:
                o.step()

    hand = _hand_digits(cfg, Both)
    assert [r["valid_loss"] for r in result.records] == pytest.approx(hand, rel=1e-5)
    sgd_rest = classify_run(_digits("muon", lr=0.002, args=(("rest", "sgd"),)))
    assert sgd_rest.optimizer["routes"]["1.bias"] == "sgd" and sgd_rest.records != result.records


def test_python_takes_the_class_a_partial_and_a_list_of_them(user_file):
    import myopt

    import losslab

    whole = losslab.regress(optim=myopt.Lion, lr=0.01, epochs=40, progress=False)
    assert whole.document()["config"]["optim"]["name"] == "myopt:Lion"
    partial = losslab.regress(optim=functools.partial(myopt.Lion, betas=(0.5, 0.9)), lr=0.01, epochs=40,
                              progress=False)
    model = _hand_regression(lambda p: myopt.Lion(p, lr=0.01, betas=(0.5, 0.9)), 40, _plain)
    assert partial.document()["params"] == _params(model)
    compared = losslab.compare_optimizers(optims=["adam", functools.partial(myopt.Lion, betas=(0.5, 0.9))],
                                          lr=0.01, epochs=40, seeds=1, progress=False)
    assert compared.metrics["myopt:Lion.final_loss"] == partial.document()["final_loss"]


def test_compare_optimizers_takes_per_optimizer_arguments(cli, user_file):
    run = cli("compare-optimizers", "--optims", "adam,myopt:Lion", "--optim-arg", "Lion.betas=0.5,0.9",
              "--lr", "0.01", "--epochs", "40", "--seeds", "1", "--json")
    assert run.exit_code == 0, run.stderr
    single = cli("regress", "--optim", "myopt:Lion", "--optim-arg", "betas=0.5,0.9", "--lr", "0.01", "--epochs",
                 "40", "--json")
    lion = run.json()["entries"]["myopt:Lion"]["runs"][0]
    assert lion["final_loss"] == single.json()["final_loss"]
    assert lion["steps"] == lion["grad_evals"] == 40


@pytest.mark.parametrize("args, option, words", [
    (["--optim", "nosuchmodule:Lion"], "--optim", "nosuchmodule"),
    (["--optim", "myopt:NotAnOptimizer"], "--optim", "not an optimizer class"),
    (["--optim", "myopt:Lion", "--optim-arg", "beta=0.9,0.99"], "--optim-arg", "did you mean betas"),
    (["--optim", "myopt:Lion", "--optim-arg", "betas=0.9"], "--optim-arg", "does not fit"),
    (["--optim", "myopt:Lion", "--optim-arg", "betas"], "--optim-arg", "KEY=VALUE"),
    (["--optim", "myopt:Raises"], "--optim", "cannot set up"),
    (["--optim", "myopt:NeedsClosure"], "--optim", "requires a closure"),
    (["--optim", "lion", "--optim-arg", "foo=1"], "--optim-arg", "takes no argument 'foo'"),
    (["--optim", "lionn"], "--optim", "did you mean lion"),
    (["--optim", "torch.optim:SparseAdam"], "--optim", "sparse"),
    (["--optim", "adam", "--optim-arg", "sgd.momentum=0.9"], "--optim-arg", "not among the optimizers"),
    (["--optim", "adam", "--muon-rest", "sgd"], "--muon-rest", "applies to muon only"),
    (["--optim", "muon", "--muon-rest", "lion"], "--muon-rest", "adamw, sgd"),
])
def test_bad_optimizers_are_one_line_before_training(cli, user_file, args, option, words):
    run = cli("regress", *args, "--epochs", "5")
    run.assert_usage_error(option)
    assert words in run.stderr


def test_many_run_commands_name_their_own_option(cli, user_file):
    cli("compare-optimizers", "--optims", "sgd,myopt:Nope", "--epochs", "5").assert_usage_error("--optims")
    cli("compare-optimizers", "--optims", "sgd,adam", "--optim-arg", "lion.betas=0.9,0.9",
        "--epochs", "5").assert_usage_error("--optim-arg")


def test_a_step_that_fails_mid_training_keeps_the_records(cli, user_file):
    run = cli("regress", "--optim", "myopt:FailsLater", "--optim-arg", "fail_at=20", "--epochs", "50", "--json")
    assert run.exit_code == 4
    doc = run.json()
    assert doc["status"] == "error" and "step 20 failed" in doc["error"]
    assert doc["epochs_run"] == 19 and len(doc["layers"]) > 0  # the 19 epochs before the failing step are kept
    last = run.stderr.strip().splitlines()[-1]
    assert last == "losslab: error: training failed at epoch 20: RuntimeError: step 20 failed"
    assert "Traceback" not in run.stderr


def test_resumed_lion_equals_an_uninterrupted_run(tmp_path):
    """--save then --resume with a library optimizer: its state dict goes on, the records equal one run's."""
    whole = classify_run(_digits("lion", epochs=4, lr=0.0003))
    first = classify_run(_digits("lion", epochs=2, lr=0.0003).__class__(
        **{**_digits("lion", epochs=2, lr=0.0003).__dict__, "save": str(tmp_path / "c.pt")}))
    assert first.status == "ok"
    rest = classify_run(_digits("lion", epochs=4, lr=0.0003).__class__(
        **{**_digits("lion", epochs=4, lr=0.0003).__dict__, "resume": str(tmp_path / "c.pt")}))
    assert [r["valid_loss"] for r in rest.records] == pytest.approx([r["valid_loss"] for r in whole.records[2:]],
                                                                    rel=1e-6)


def test_the_json_says_what_trained(cli):
    doc = cli("regress", "--optim", "lbfgs", "--epochs", "3", "--json").json()
    assert doc["optimizer"]["class"] == "LBFGS (torch.optim)"
    assert doc["optimizer"]["steps"] == 3 and doc["optimizer"]["grad_evals"] > 3
    assert json.dumps(doc["optimizer"])


@pytest.mark.parametrize("name", ["nadam", "myopt:Lion", "prodigy", "schedulefree:SGDScheduleFree"])
def test_any_plain_step_optimizer_stacks_and_equals_its_runs_one_by_one(user_file, name):
    """Trials of a class losslab did not write train stacked through its own step() (one parameter group per run
    over views of the stacked parameters) and end where the same runs end one by one."""
    from losslab.engine.problems import ClassificationProblem, RegressionProblem
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials

    for problem in (RegressionProblem(RegressConfig(train=TrainConfig(epochs=30, device="cpu")).resolved()),
                    ClassificationProblem(ClassifyConfig(train=TrainConfig(epochs=2, batch_size=64,
                                                                           device="cpu")).resolved())):
        specs = [RunSpec(f"{lr}", OptimConfig(name, lr=lr), seed) for lr in (1e-3, 3e-3) for seed in (0, 1)]
        stacked, _ = run_trials(problem, specs, vectorize=True)
        alone, _ = run_trials(problem, specs, vectorize=False)
        if name.startswith("schedulefree"):  # (train/eval switches its parameters: it runs one by one, and says so)
            assert stacked[0].stacked_with == 1 and "train and eval" in problem.unstacked
            continue
        assert stacked[0].stacked_with == 4, problem.unstacked
        for a, b in zip(stacked, alone):
            assert a.metrics["final_loss"] == pytest.approx(b.metrics["final_loss"], rel=1e-5)


def test_losslab_optimizers_lists_what_optim_takes(cli):
    doc = cli("optimizers", "--json").json()
    rows = {r["name"]: r for r in doc["optimizers"]}
    assert rows["adam"]["stacks"] == "batched update" and rows["nadam"]["stacks"] == "own step()"
    assert rows["lbfgs"]["stacks"].startswith("no:") and "closure" in rows["lbfgs"]["protocol"][0]
    assert rows["muon"]["default_lr"] == {"regression": 0.01, "classification": 0.001}
    assert "train" in rows["schedulefree:AdamWScheduleFree"]["protocol"][0]
    assert doc["libraries"]["pytorch_optimizer"] >= 100 and "SparseAdam" in doc["refused"]
    every = {r["name"]: r for r in cli("optimizers", "--all", "--json").json()["optimizers"]}
    assert every["lion"]["class"] == "Lion (pytorch_optimizer)" and every["sophiah"]["stacks"].startswith("no:")


def test_an_equal_budget_of_gradient_evaluations(cli):
    """--budget gradient-evaluations: SAM's two passes per step are not free — it trains half the steps, and ends
    where a run of half the epochs ends."""
    common = ["--optims", "sgd,pytorch_optimizer:SAM", "--optim-arg", "SAM.base_optimizer=torch.optim:SGD", "--lr",
              "0.1", "--epochs", "60", "--seeds", "1", "--json"]
    equal_epochs = cli("compare-optimizers", *common).json()["entries"]
    equal_passes = cli("compare-optimizers", *common, "--budget", "gradient-evaluations").json()["entries"]
    sam, sgd = equal_passes["pytorch_optimizer:SAM"]["runs"][0], equal_passes["sgd"]["runs"][0]
    assert (sam["steps"], sam["grad_evals"], sgd["steps"], sgd["grad_evals"]) == (30, 60, 60, 60)
    assert equal_epochs["pytorch_optimizer:SAM"]["runs"][0]["grad_evals"] == 120
    half = cli("regress", "--optim", "pytorch_optimizer:SAM", "--optim-arg", "base_optimizer=torch.optim:SGD",
               "--lr", "0.1", "--epochs", "30", "--json").json()
    assert sam["final_loss"] == half["final_loss"]
    cli("compare-optimizers", "--budget", "flops").assert_usage_error("--budget")


def test_tuning_centres_each_optimizers_grid_on_its_own_default():
    """--tune without --tune-grid: 13 rates over four decades around each optimizer's own default (Lion's family
    rate sits 3x below AdamW's), the same number for every optimizer; --tune-grid gives one grid to all."""
    from losslab.config import CompareConfig

    cfg = CompareConfig(run=RegressConfig(), optims=("sgd", "adam", "lion"), tune=True).resolved()
    grids = {name: cfg.grid_for(name) for name in cfg.optims}
    assert {len(g) for g in grids.values()} == {13}
    assert grids["sgd"][6] == 0.1 and grids["adam"][6] == 0.01 and grids["lion"][6] == 0.003
    for grid in grids.values():
        assert grid[-1] / grid[0] == pytest.approx(1e4, rel=0.01)
    given = CompareConfig(run=RegressConfig(), optims=("sgd", "lion"), tune=True, tune_grid=(0.01, 0.1)).resolved()
    assert given.grid_for("sgd") == given.grid_for("lion") == (0.01, 0.1)


def test_stacked_own_steps_follow_each_runs_own_schedule():
    """Runs stacked through NAdam's own step() at one rate share a parameter group, unless ReduceLROnPlateau can
    part their rates: each run's rates and final loss equal its run alone."""
    from losslab.config import ScheduleConfig
    from losslab.engine.problems import RegressionProblem
    from losslab.engine.runs import RunSpec
    from losslab.engine.trials import run_trials

    for schedule in (ScheduleConfig("plateau", lr_patience=2, lr_factor=0.5), ScheduleConfig("cosine")):
        cfg = RegressConfig(train=TrainConfig(epochs=40, batch_size=16, device="cpu", schedule=schedule)).resolved()
        problem = RegressionProblem(cfg)
        specs = [RunSpec("nadam", OptimConfig("nadam", lr=0.05), seed) for seed in range(4)]
        stacked, _ = run_trials(problem, specs, vectorize=True)
        alone, _ = run_trials(problem, specs, vectorize=False)
        assert stacked[0].stacked_with == 4
        for a, b in zip(stacked, alone):
            assert [r["lr"] for r in a.records] == [r["lr"] for r in b.records]
            assert a.metrics["final_loss"] == pytest.approx(b.metrics["final_loss"], rel=1e-6)
        if schedule.name == "plateau":
            assert len({r.records[-1]["lr"] for r in stacked}) > 1  # (the rates did part)


def test_soap_from_the_library_trains_as_a_hand_written_loop():
    """pytorch-optimizer's SOAP (a preconditioner per weight matrix) on digits: the run's validation losses equal
    a hand loop's with the same class, rate, weights and batch order."""
    from pytorch_optimizer import SOAP

    cfg = _digits("soap", lr=0.003)
    result = classify_run(cfg)
    hand = _hand_digits(cfg, lambda m: SOAP(m.parameters(), lr=0.003))
    assert [r["valid_loss"] for r in result.records] == pytest.approx(hand, rel=1e-5)


def test_a_model_taking_optimizer_is_built_from_the_model():
    """pytorch-optimizer's LOMO takes the model itself: found from its constructor, given the model."""
    from losslab.components.optimizers import build_optimizer, kind

    assert kind("lomo").protocol.takes_model
    model = torch.nn.Linear(2, 1)
    optimizer = build_optimizer(model, OptimConfig("lomo", lr=0.01))
    assert optimizer.model is model


@pytest.mark.slow
def test_a_users_optimizer_file_trains_the_same_on_worker_processes(cli, user_file):
    args = ["compare-optimizers", "--optims", "adam,myopt:Lion", "--lr", "0.01", "--epochs", "30", "--seeds", "2",
            "--json", "--no-vectorize"]
    local, pooled = cli(*args), cli(*args, "--executor", "process", "--jobs", "2")
    assert local.exit_code == pooled.exit_code == 0, pooled.stderr
    for name in ("adam", "myopt:Lion"):
        assert [r["final_loss"] for r in local.json()["entries"][name]["runs"]] == \
            [r["final_loss"] for r in pooled.json()["entries"][name]["runs"]]


def test_stacked_runs_take_the_fewest_step_calls_that_keep_them_apart():
    """An elementwise class at one rate steps whole (runs, ...) tensors; a class that uses shapes or norms steps a
    group per run; one that keeps a statistic per group (Prodigy's d) steps an optimizer per run."""
    from losslab.engine.problems import ClassificationProblem
    from losslab.engine.stacked import OwnStep, stack_of

    problem = ClassificationProblem(ClassifyConfig(train=TrainConfig(epochs=1, device="cpu")).resolved())
    stack = stack_of([problem.new_model(seed) for seed in range(3)])
    layout = {name: (OwnStep(OptimConfig(name, lr=0.01), stack, [0.01] * 3, 0, 3).layout,
                     OwnStep(OptimConfig(name, lr=0.01), stack, [0.01, 0.02, 0.03], 0, 3).layout)
              for name in ("nadam", "lion", "adafactor", "lamb", "prodigy")}
    assert layout == {"nadam": ("whole", "groups"), "lion": ("whole", "groups"), "adafactor": ("groups", "groups"),
                      "lamb": ("groups", "groups"), "prodigy": ("each", "each")}


def test_gradient_figures_are_taken_before_a_step_that_clears_them(user_file):
    """An optimizer that sets p.grad to None inside step(): the records' gradient norms are the step's gradients
    (equal to plain SGD's, which follows the same path), not missing."""
    clears = _regress("myopt:ClearsGrad", epochs=20, lr=0.1)
    plain = _regress("sgd", epochs=20, lr=0.1)
    assert clears.params == plain.params
    for a, b in zip(clears.records, plain.records):
        assert a["grad_norm"] == b["grad_norm"] > 0 and a["grad_norm/weight"] == b["grad_norm/weight"]
