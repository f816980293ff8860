"""`--save` then `losslab predict`: a saved model (built-in or the user's own, regress or classify) predicts a
table's rows with its inputs prepared as in training, and reproduces what the training run measured."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

NET = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):
        return self.body(x)


def make_net(in_features, classes):
    """A factory: what a checkpoint names is not called, the command line may name it (--model)."""
    return Net(in_features, classes)


class Reg(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.body(x)
'''


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "predmodels.py").write_text(NET)
    monkeypatch.delitem(sys.modules, "predmodels", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=240)
    x = np.array([[0, 0], [3, 3], [0, 4]])[labels] + rng.normal(size=(240, 2))
    lines = ["height,weight,kind"] + [f"{a:.4f},{b:.4f},{['cat', 'dog', 'eel'][k]}" for (a, b), k in zip(x, labels)]
    (tmp_path / "pets.csv").write_text("\n".join(lines) + "\n")
    xr = rng.normal(size=(200, 2)) * [1000, 5] + [2000, 10]
    y = xr @ [0.5, 2.0] + 100 + rng.normal(size=200)
    lines = ["area,age,price"] + [f"{a:.4f},{b:.4f},{t:.4f}" for (a, b), t in zip(xr, y)]
    (tmp_path / "houses.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def validation_rows(path, fraction=0.2, seed=42):
    """The rows classify holds out for validation from a table: the seeded split, written out independently."""
    rows = path.read_text().splitlines()
    header, body = rows[0], rows[1:]
    perm = torch.randperm(len(body), generator=torch.Generator().manual_seed(seed))
    held = perm[:max(1, round(fraction * len(body)))].tolist()
    return header + "\n" + "\n".join(body[i] for i in held) + "\n"


@pytest.mark.parametrize("model", ["mlp", "predmodels:Net"])
def test_predict_reproduces_the_validation_accuracy_of_training(cli, folder, model):
    train = cli("classify", "--data", "pets.csv", "--model", model, "--epochs", "15", "--save", "m.pt", "--json",
                "--device", "cpu")
    assert train.exit_code == 0, train.stderr
    (folder / "val.csv").write_text(validation_rows(folder / "pets.csv"))
    run = cli("predict", "--checkpoint", "m.pt", "--data", "val.csv", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["metrics"]["accuracy"] == train.json()["accuracy"]
    assert doc["classes"] == ["cat", "dog", "eel"] and set(doc["predictions"]) <= {"cat", "dog", "eel"}
    assert all(abs(sum(p) - 1) < 1e-9 for p in doc["probabilities"])
    csv_run = cli("predict", "--checkpoint", "m.pt", "--data", "val.csv")
    lines = csv_run.stdout.splitlines()
    assert lines[0] == "row,prediction,p_cat,p_dog,p_eel" and len(lines) == 1 + doc["rows"]
    assert [line.split(",")[1] for line in lines[1:]] == doc["predictions"]


def test_a_saved_regression_predicts_in_the_datas_units(cli, folder):
    train = cli("regress", "--data", "houses.csv", "--target", "price", "--epochs", "300", "--save", "lin.pt",
                "--json", "--device", "cpu")
    assert train.exit_code == 0, train.stderr
    params = train.json()["params"]
    run = cli("predict", "--checkpoint", "lin.pt", "--data", "houses.csv", "--json")
    assert run.exit_code == 0, run.stderr
    table = np.loadtxt(folder / "houses.csv", delimiter=",", skiprows=1)
    expected = table[:, 0] * params["w_area"] + table[:, 1] * params["w_age"] + params["b"]
    assert run.json()["predictions"] == pytest.approx(expected.tolist(), rel=1e-5)
    assert run.json()["metrics"]["mse"] == pytest.approx(float(np.mean((expected - table[:, 2]) ** 2)), rel=1e-4)


def test_a_saved_user_regression_model_predicts_what_it_learned(cli, folder):
    train = cli("regress", "--data", "houses.csv", "--model", "predmodels:Reg", "--epochs", "200", "--save",
                "u.pt", "--quiet", "--device", "cpu")
    assert train.exit_code == 0, train.stderr
    from losslab.config import RegressConfig, RegressDataConfig, TrainConfig
    from losslab.engine.checkpoints import read, rebuild
    from losslab.engine.problems import RegressionProblem

    cfg = RegressConfig(data=RegressDataConfig(csv="houses.csv"), model="predmodels:Reg",
                        train=TrainConfig(epochs=1, device="cpu")).resolved()
    problem = RegressionProblem(cfg)
    model = rebuild(read("u.pt"))
    table = np.loadtxt(folder / "houses.csv", delimiter=",", skiprows=1)
    run = cli("predict", "--checkpoint", "u.pt", "--data", "houses.csv", "--json")
    assert run.exit_code == 0, run.stderr
    # (the table read as training reads it: float32 cells)
    expected = problem.predict(model, table[:, :2].astype(np.float32))
    assert run.json()["predictions"] == pytest.approx(expected.tolist(), rel=1e-5)  # (float32 forward passes)


def test_bad_checkpoints_and_tables_are_one_line(cli, folder):
    assert cli("classify", "--data", "pets.csv", "--model", "predmodels:Net", "--epochs", "2", "--save", "m.pt",
               "--quiet").exit_code == 0
    (folder / "other.csv").write_text("a,b,kind\n1,2,cat\n")
    cli("predict", "--checkpoint", "m.pt", "--data", "other.csv").assert_usage_error("--data")
    cli("predict", "--checkpoint", "nothere.pt", "--data", "pets.csv").assert_usage_error("--checkpoint")
    (folder / "junk.pt").write_bytes(b"not a checkpoint")
    cli("predict", "--checkpoint", "junk.pt", "--data", "pets.csv").assert_usage_error("--checkpoint")
    torch.save({"format": "something else"}, folder / "foreign.pt")
    cli("predict", "--checkpoint", "foreign.pt", "--data", "pets.csv").assert_usage_error("--checkpoint")
    # the user's class changed since the checkpoint was written: its weights no longer fit
    (folder / "predmodels.py").write_text(NET.replace("nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16,",
                                                      "nn.Linear(in_features, 32), nn.ReLU(), nn.Linear(32,"))
    sys.modules.pop("predmodels", None)
    run = cli("predict", "--checkpoint", "m.pt", "--data", "pets.csv")
    run.assert_usage_error("--checkpoint")
    assert "predmodels:Net" in run.stderr and "size mismatch" in run.stderr
    cli("predict", "--checkpoint", "m.pt", "--data", "pets.csv", "--out", str(folder)).assert_usage_error("--out")


def test_an_image_model_predicts_rows_of_pixels_with_its_validation_accuracy(cli, folder):
    """digits (8x8 images) saved from classify; its validation images written as rows of 64 pixels and a label."""
    from sklearn.datasets import load_digits

    train = cli("classify", "--epochs", "3", "--save", "digits.pt", "--json", "--device", "cpu")
    assert train.exit_code == 0, train.stderr
    digits = load_digits()
    lines = [",".join(f"p{i}" for i in range(64)) + ",label"]
    lines += [",".join(str(int(v)) for v in x) + f",{y}" for x, y in zip(digits.data, digits.target)]
    (folder / "digits.csv").write_text("\n".join(lines) + "\n")
    (folder / "val.csv").write_text(validation_rows(folder / "digits.csv"))
    run = cli("predict", "--checkpoint", "digits.pt", "--data", "val.csv", "--json")
    assert run.exit_code == 0, run.stderr
    assert run.json()["rows"] == 359 and run.json()["metrics"]["accuracy"] == train.json()["accuracy"]


@pytest.mark.slow
def test_an_image_folder_model_predicts_a_folder_with_its_validation_accuracy(cli, tmp_path):
    """Trained with --val-dir; predict on that folder (class subfolders give the labels) reproduces the
    validation accuracy; a flat folder of the same images gives the same predictions without labels."""
    import shutil

    from test_imagefolder import make_folder

    train = make_folder(tmp_path / "train", per_class=12)
    val = make_folder(tmp_path / "val", per_class=6, seed=1, size=(20, 20))
    run = cli("classify", "--dataset", "imagefolder", "--data-dir", train, "--val-dir", val, "--image-size", "8,6",
              "--model", "cnn", "--epochs", "3", "--save", str(tmp_path / "img.pt"), "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    predicted = cli("predict", "--checkpoint", str(tmp_path / "img.pt"), "--data", val, "--json")
    assert predicted.exit_code == 0, predicted.stderr
    assert predicted.json()["rows"] == 18
    assert predicted.json()["metrics"]["accuracy"] == pytest.approx(run.json()["accuracy"], abs=1e-12)
    flat = tmp_path / "flat"
    flat.mkdir()
    for c in ("cat", "dog", "owl"):
        for f in sorted((tmp_path / "val" / c).iterdir()):
            shutil.copy(f, flat / f"{c}-{f.name}")
    unlabelled = cli("predict", "--checkpoint", str(tmp_path / "img.pt"), "--data", str(flat), "--json")
    assert unlabelled.exit_code == 0 and unlabelled.json()["metrics"] == {}
    assert sorted(unlabelled.json()["predictions"]) == sorted(predicted.json()["predictions"])
    cli("predict", "--checkpoint", str(tmp_path / "img.pt"), "--data", str(tmp_path / "val" / "cat" / "0.png")
        ).assert_usage_error("--data")


@pytest.mark.parametrize("entry, needle", [("sys:exit", "standard library"), ("tempfile:mkdtemp", "standard library"),
                                           ("predmodels:side_effect", "not an nn.Module class")])
def test_a_tampered_checkpoint_never_calls_what_its_model_entry_names(cli, folder, entry, needle):
    """The README: nothing in a checkpoint runs. A model entry rewritten to a function is refused before it is
    called (the function here would write a file)."""
    (folder / "predmodels.py").write_text(NET + "\n\ndef side_effect(*args, **kwargs):\n"
                                          "    open('called.txt', 'w').write('called')\n")
    sys.modules.pop("predmodels", None)
    assert cli("classify", "--data", "pets.csv", "--model", "predmodels:Net", "--epochs", "1", "--save", "m.pt",
               "--quiet").exit_code == 0
    ckpt = torch.load(folder / "m.pt", weights_only=True)
    ckpt["model"] = entry
    torch.save(ckpt, folder / "tampered.pt")
    before = set(folder.iterdir())
    run = cli("predict", "--checkpoint", "tampered.pt", "--data", "pets.csv")
    run.assert_usage_error("--checkpoint")
    assert needle in run.stderr
    assert set(folder.iterdir()) == before  # nothing was created (mkdtemp would make a folder in the temp dir)


def test_a_model_built_by_a_factory_predicts_when_the_command_line_names_the_factory(cli, folder):
    assert cli("classify", "--data", "pets.csv", "--model", "predmodels:make_net", "--epochs", "2", "--save",
               "f.pt", "--quiet", "--device", "cpu").exit_code == 0
    refused = cli("predict", "--checkpoint", "f.pt", "--data", "pets.csv")
    refused.assert_usage_error("--checkpoint")
    assert "--model predmodels:make_net" in refused.stderr
    named = cli("predict", "--checkpoint", "f.pt", "--data", "pets.csv", "--model", "predmodels:make_net", "--json")
    assert named.exit_code == 0, named.stderr
    assert named.json()["rows"] == 240
