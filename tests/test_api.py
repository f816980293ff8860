"""losslab from Python: the functions take the CLI's options as keyword arguments and give the same result
document as `--json`, take objects where the CLI takes import paths, and raise ConfigError naming the option."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Optional

import numpy as np
import pytest
import torch
from torch import nn

import losslab
from losslab.commands.replay import compare

CASES = {
    "regress": ("regress", {"optim": "adam", "lr": 0.01, "epochs": 50}, ["--optim", "adam", "--lr", "0.01",
                                                                         "--epochs", "50"]),
    "classify": ("classify", {"epochs": 2, "subset": 300}, ["--epochs", "2", "--subset", "300"]),
    "compare_optimizers": ("compare-optimizers", {"optims": ["sgd", "adam"], "seeds": 2, "epochs": 30},
                           ["--optims", "sgd,adam", "--seeds", "2", "--epochs", "30"]),
    "compare_losses": ("compare-losses", {"losses": "mse,l1", "seeds": 1, "epochs": 30},
                       ["--losses", "mse,l1", "--seeds", "1", "--epochs", "30"]),
    "lr_sweep": ("lr-sweep", {"lrs": [0.01, 0.1], "epochs": 20}, ["--lrs", "0.01,0.1", "--epochs", "20"]),
    "lr_find": ("lr-sweep", {"steps": 30}, ["--range-test", "--steps", "30"]),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n == "classify" else ()) for n in CASES])
def test_the_document_equals_the_clis_json(cli, name):
    command, kwargs, args = CASES[name]
    result = getattr(losslab, name)(**kwargs, device="cpu", progress=False)
    run = cli(command, *args, "--device", "cpu", "--json")
    assert run.exit_code == 0, run.stderr
    expected = run.json()
    expected.pop("invocation", None)  # (the command line the CLI records)
    compared, difference = compare(expected, result.document(), rtol=0.0)
    assert difference is None, difference
    assert compared > 10 and result.status == expected["status"]


def test_results_give_numbers_history_and_the_model():
    result = losslab.regress(optim="adam", lr=0.01, epochs=100, device="cpu", progress=False)
    assert result.status == "ok" and set(result.params) == {"w", "b"}
    assert result.history["train_loss"][-1] == result.history[-1]["train_loss"] and len(result.history) == 100
    x = torch.tensor([[1.0], [2.0]])
    with torch.no_grad():
        expected = x * result.params["w"] + result.params["b"]
        assert torch.allclose(result.model(x), expected)
    assert not result.model.training
    many = losslab.compare_optimizers(optims=["sgd", "adam"], seeds=2, epochs=30, device="cpu", progress=False)
    assert many.ranking == many.document()["ranking"] and set(many.runs) == {"sgd", "adam"}
    assert {r["optimizer"] for r in many.history} == {"sgd", "adam"} and len(many.history) == 2 * 2 * 30


@pytest.mark.slow
def test_objects_in_where_the_cli_takes_import_paths():
    class Net(nn.Module):
        def __init__(self, in_features, classes):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, classes))

        def forward(self, x):
            return self.body(x)

    by_class = losslab.classify(model=Net, epochs=2, device="cpu", progress=False)
    assert by_class.status == "ok" and by_class.document()["config"]["model"]["name"].startswith("losslab._objects:")
    # an instance is a template: every seed's run starts from a copy re-initialised from that seed
    template = Net(64, 10)
    first = losslab.classify(model=template, epochs=2, device="cpu", progress=False)
    again = losslab.classify(model=template, epochs=2, device="cpu", progress=False)
    assert first.metrics["accuracy"] == again.metrics["accuracy"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    y = (x @ np.array([[2.0], [-1.0]]) + 0.5).astype(np.float32)
    fitted = losslab.regress(data=(torch.from_numpy(x), torch.from_numpy(y)), epochs=300, device="cpu",
                             progress=False)
    assert fitted.params["w1"] == pytest.approx(2.0, abs=1e-3) and fitted.params["b"] == pytest.approx(0.5, abs=1e-3)
    mae = losslab.regress(loss=lambda pred, target: (pred - target).abs().mean(), epochs=50, device="cpu",
                          progress=False, no_check_loss=True)
    assert mae.status == "ok"


def test_a_dataframe_with_its_target_column():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    frame["y"] = 3 * frame["a"] - frame["b"] + 1
    result = losslab.regress(data=frame, target="y", epochs=300, device="cpu", progress=False)
    assert result.params["w1"] == pytest.approx(3.0, abs=1e-3)
    assert list(result.history.to_pandas().columns)[:2] == ["epoch", "train_loss"]
    with pytest.raises(losslab.ConfigError) as err:
        losslab.regress(data=frame, target="nope", progress=False)
    assert err.value.option == "--target"


@pytest.mark.parametrize("kwargs, option", [
    ({"lr": -1}, "--lr"),
    ({"optim": "adamx"}, "--optim"),
    ({"epochs": 0}, "--epochs"),
    ({"lrr": 0.1}, "lrr="),
    ({"model": 42}, "--model"),
    ({"quiet": "yes"}, "--quiet"),
])
def test_wrong_values_raise_configerror_naming_the_option(kwargs, option):
    with pytest.raises(losslab.ConfigError) as err:
        losslab.regress(**kwargs, progress=False)
    assert err.value.option == option


@pytest.mark.slow
def test_nothing_on_stdout_without_progress_and_the_files_on_save(capsys, tmp_path):
    result = losslab.compare_losses(losses=["mse", "l1"], seeds=1, epochs=20, device="cpu", progress=False)
    assert capsys.readouterr().out == ""
    result.save(str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == result.status
    assert (tmp_path / "out" / "history.csv").exists()
    assert "<table" in result._repr_html_() or "<pre" in result._repr_html_()
    assert "compare-losses" in result.report()


def test_import_losslab_loads_no_torch():
    code = "import sys, losslab; assert callable(losslab.regress); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_load_predict_and_check_loss(tmp_path):
    result = losslab.regress(epochs=50, device="cpu", progress=False, save=str(tmp_path / "m.pt"))
    result.save(str(tmp_path / "out"))
    loaded = losslab.load(str(tmp_path / "out" / "result.json"))
    assert loaded.status == result.status and loaded.params == result.params
    assert loaded.history["train_loss"] == pytest.approx(result.history["train_loss"], rel=1e-12)
    (tmp_path / "x.csv").write_text("x\n1.0\n2.0\n")
    prediction = losslab.predict(str(tmp_path / "m.pt"), str(tmp_path / "x.csv"))
    assert prediction.predictions == pytest.approx([result.params["w"] * v + result.params["b"] for v in (1, 2)],
                                                   rel=1e-6)
    good = losslab.check_loss(lambda pred, target: ((pred - target) ** 2).mean())
    bad = losslab.check_loss(lambda pred, target: ((pred - target) ** 2).mean().detach())
    assert good.passed and not bad.passed
    with pytest.raises(losslab.ConfigError):
        losslab.load(str(tmp_path / "x.csv"))


@pytest.mark.slow
def test_plot_returns_the_figure_out_draws():
    result = losslab.classify(epochs=2, subset=300, device="cpu", progress=False)
    curves, confusion = result.plot(), result.plot("confusion.png")
    assert len(curves.axes) == 2 and confusion.axes[0].get_title().startswith("digits: accuracy")
    with pytest.raises(ValueError):
        result.plot("nope.png")


def test_an_interrupt_returns_the_result_so_far():
    """A notebook's interrupt is a KeyboardInterrupt in the training loop: the call returns what was trained."""
    calls = {"n": 0}

    class Stops(nn.Module):
        def __init__(self, in_features):
            super().__init__()
            self.fc = nn.Linear(in_features, 1)

        def forward(self, x):
            if self.training:
                calls["n"] += 1
                if calls["n"] == 200:
                    raise KeyboardInterrupt
            return self.fc(x)

    result = losslab.regress(model=Stops, epochs=1000, device="cpu", progress=False)
    assert result.status == "interrupted" and 0 < len(result.history) < 200
    assert result.document()["status"] == "interrupted"


@pytest.mark.slow
def test_replay_from_python(cli, tmp_path):
    assert cli("regress", "--epochs", "20", "--out", str(tmp_path / "o"), "--quiet", "--no-plot").exit_code == 0
    replayed = losslab.replay(str(tmp_path / "o" / "result.json"))
    assert replayed["identical"] and replayed["compared"] > 10 and replayed["replayed"] == "regress"


def test_the_diagnosis_in_words():
    diverged = losslab.regress(lr=5.0, epochs=50, device="cpu", progress=False)
    assert diverged.status == "diverged"
    [finding] = [f for f in diverged.diagnosis if f["code"] == "diverged"]
    assert "lower the learning rate" in finding["suggestion"] and finding["message"]
    assert losslab.regress(epochs=200, device="cpu", progress=False).diagnosis == []


def test_predict_and_check_loss_documents_equal_the_clis_json(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("regress", "--epochs", "20", "--save", "m.pt", "--quiet", "--device", "cpu").exit_code == 0
    (tmp_path / "x.csv").write_text("x,y\n1.0,5.0\n2.0,7.0\n")
    expected = cli("predict", "--checkpoint", "m.pt", "--data", "x.csv", "--json").json()
    assert compare(expected, losslab.predict("m.pt", "x.csv").document(), rtol=0.0)[1] is None
    expected = cli("check-loss", "torch.nn.functional:l1_loss", "--json").json()
    got = losslab.check_loss("torch.nn.functional:l1_loss").document()
    assert compare(expected, got, rtol=0.0)[1] is None and got["status"] == "passed"


def test_every_function_shows_every_option_with_its_type_and_default():
    """Tab completion, Shift-Tab and help() read the signature: every option of the command, typed, with the
    CLI's default; the typed keyword arguments a type checker sees are generated from the same options."""
    import inspect
    from pathlib import Path

    import losslab
    from losslab.cli.options import SIGNATURES
    from losslab.cli.stubs import SKIPPED, source

    sig = inspect.signature(losslab.classify)
    names, defaults = SIGNATURES["classify"]
    assert [p for p in sig.parameters if p != "progress"] == [n for n in names if n not in SKIPPED]
    assert sig.parameters["batch_size"].default == 64 and sig.parameters["epochs"].default is None
    assert sig.parameters["lr"].annotation == Optional[float] and sig.parameters["grayscale"].annotation is bool
    assert "batch_sizes" in inspect.signature(losslab.lr_sweep).parameters
    assert {"regress", "classify", "compare_optimizers", "lr_sweep", "landscape"} <= set(dir(losslab))
    generated = Path(losslab.__file__).with_name("api_types.py").read_text()
    assert generated == source(), "run: python -m losslab.cli.stubs > src/losslab/api_types.py"


def test_a_wrong_keyword_names_the_nearest_option():
    import losslab

    with pytest.raises(losslab.ConfigError, match="epoch=.*did you mean epochs="):
        losslab.classify(epoch=3)  # type: ignore[call-arg]


def test_objects_given_in_python_are_reported_by_what_they_are():
    import losslab

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 1)

        def forward(self, x):
            return self.layer(x)

    x = torch.randn(256, 4)
    result = losslab.regress(model=Net(), data=(x, x.sum(1, keepdim=True)), epochs=2, progress=False)
    report = result.report()
    assert "model: Net (yours)" in report and "data: tensors (X 256×4, y 256×1): 256 rows" in report
    assert "_objects" not in report


@pytest.mark.slow
def test_a_type_checker_sees_the_options_types(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text('import losslab\n\nlosslab.regress(lr="fast")\nlosslab.lr_sweep(batch_sizes=[32, 128])\n'
                      'losslab.classify(epoch=3)\n')
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", str(script)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert 'Argument "lr" to "regress" has incompatible type "str"' in out.stdout, out.stdout
    assert 'Unexpected keyword argument "epoch" for "classify"; did you mean "epochs"?' in out.stdout
    assert "script.py:4" not in out.stdout  # batch_sizes=[32, 128] is what lr_sweep takes
