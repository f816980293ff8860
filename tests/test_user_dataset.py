"""--dataset package.module:NAME: a user's own data — tensors (X, y), numpy arrays, a Dataset of (input, label)
pairs or a (train, valid) pair — trained as the built-in data is, with the same one-line errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

DATA = '''
import numpy as np
import torch

rng = np.random.default_rng(0)
LABELS = rng.integers(0, 3, size=150)
X = (np.array([[0.0, 0.0], [4.0, 4.0], [0.0, 5.0]])[LABELS] + rng.normal(size=(150, 2))).astype(np.float32)


def arrays():
    return X, LABELS


def tensors():
    return torch.from_numpy(X), torch.from_numpy(LABELS)


def validation():
    """The rows classify holds out of `arrays` (the seeded split, written out here)."""
    held = torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(42))[:round(0.2 * len(LABELS))]
    return X[held.numpy()], LABELS[held.numpy()]


class Items(torch.utils.data.Dataset):
    def __init__(self, n=120, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 6, 6, generator=g)
        self.y = (self.x.mean(dim=(1, 2, 3)) > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def pair():
    return Items(120, 0), Items(40, 1)


def negative_label():
    return X[:4], np.array([0, 1, -1, 2])


def fractional_label():
    return X[:4], np.array([0.0, 1.5, 1.0, 2.0])


def mismatched():
    return X[:4], LABELS[:3]


def empty():
    return X[:0], LABELS[:0]


def text_labels():
    return X[:3], ["a", "b", "c"]


def wrong_type():
    return 42


HX = rng.normal(size=(120, 2)) * [1000.0, 5.0] + [2000.0, 10.0]
HY = HX @ [0.5, 2.0] + 100 + rng.normal(size=120)


def houses():
    return HX.astype(np.float32), HY.astype(np.float32)


def two_targets():
    return HX, np.stack([HY, HY], axis=1)
'''


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "userdata.py").write_text(DATA)
    monkeypatch.delitem(sys.modules, "userdata", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_arrays_train_exactly_as_the_same_table_does(cli, folder):
    """The same numbers through --data FILE.csv and through --dataset module:function: identical results."""
    sys.path.insert(0, str(folder))
    import userdata

    lines = ["a,b,label"] + [f"{a!r},{b!r},{k}" for (a, b), k in zip(userdata.X.tolist(), userdata.LABELS.tolist())]
    (folder / "same.csv").write_text("\n".join(lines) + "\n")
    common = ["classify", "--epochs", "5", "--json", "--device", "cpu", "--model", "mlp"]
    table = cli(*common, "--data", "same.csv")
    for name in ("arrays", "tensors"):
        mine = cli(*common, "--dataset", f"userdata:{name}")
        assert table.exit_code == mine.exit_code == 0, mine.stderr
        assert mine.json()["accuracy"] == table.json()["accuracy"]
        assert mine.json()["valid_loss"] == table.json()["valid_loss"]


def test_a_dataset_pair_is_trained_and_validated_on_its_own_splits(cli, folder):
    run = cli("classify", "--dataset", "userdata:pair", "--model", "cnn", "--epochs", "2", "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert "the validation split it gives" in doc["split"]
    assert sum(sum(row) for row in doc["confusion_matrix"]) == 40 and doc["classes"] == ["0", "1"]


def test_a_user_dataset_on_a_many_run_command(cli, folder):
    run = cli("compare-optimizers", "--task", "classify", "--dataset", "userdata:Items", "--optims", "sgd,adam",
              "--seeds", "1", "--epochs", "2", "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    assert {r["status"] for v in run.json()["optimizers"].values() for r in v["runs"]} == {"ok"}


@pytest.mark.parametrize("name, needle", [
    ("negative_label", "label -1"),
    ("fractional_label", "class indices"),
    ("mismatched", "4 inputs but 3 labels"),
    ("empty", "empty"),
    ("text_labels", "not numbers"),
    ("wrong_type", "expected tensors"),
    ("missing", "no attribute"),
])
def test_bad_user_data_is_one_line_naming_dataset(cli, folder, name, needle):
    run = cli("classify", "--dataset", f"userdata:{name}", "--epochs", "1")
    run.assert_usage_error("--dataset")
    assert needle in run.stderr


def test_numbers_equal_numpy_arrays(folder):
    from losslab.components.datasets import load_user_dataset

    sys.path.insert(0, str(folder))
    import userdata

    raw = load_user_dataset("userdata:arrays")
    assert np.array_equal(raw.x_train.numpy(), userdata.X) and raw.classes == ["0", "1", "2"]


def test_regression_arrays_train_exactly_as_the_same_table_does(cli, folder):
    sys.path.insert(0, str(folder))
    import userdata

    x, y = userdata.houses()
    lines = ["x1,x2,y"] + [f"{a!r},{b!r},{t!r}" for (a, b), t in zip(x.tolist(), y.tolist())]
    (folder / "houses.csv").write_text("\n".join(lines) + "\n")
    common = ["regress", "--epochs", "200", "--json", "--device", "cpu"]
    table, mine = cli(*common, "--data", "houses.csv"), cli(*common, "--dataset", "userdata:houses")
    assert table.exit_code == mine.exit_code == 0, mine.stderr
    assert list(mine.json()["params"].values()) == list(table.json()["params"].values())
    assert mine.json()["final_loss"] == table.json()["final_loss"] and mine.json()["standardization"] is not None
    cli("regress", "--dataset", "userdata:two_targets").assert_usage_error("--dataset")
    cli("regress", "--dataset", "userdata:wrong_type").assert_usage_error("--dataset")


def test_predict_takes_an_import_path_too(cli, folder):
    train = cli("classify", "--dataset", "userdata:arrays", "--epochs", "5", "--save", "m.pt", "--json",
                "--device", "cpu")
    assert train.exit_code == 0, train.stderr
    run = cli("predict", "--checkpoint", "m.pt", "--data", "userdata:validation", "--json")
    assert run.exit_code == 0, run.stderr
    assert run.json()["rows"] == 30 and run.json()["metrics"]["accuracy"] == train.json()["accuracy"]
    cli("predict", "--checkpoint", "m.pt", "--data", "userdata:wrong_type").assert_usage_error("--data")
