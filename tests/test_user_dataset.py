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


class Bad(Items):  # a label out of range deep in the data, found by the streamed pass
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, (-1 if i == 100 else y)


class Raises(Items):
    def __getitem__(self, i):
        if i == 90:
            raise KeyError("no such file")
        return super().__getitem__(i)


class Ragged(Items):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return (x[:, :5] if i == 70 else x), y


HX = rng.normal(size=(120, 2)) * [1000.0, 5.0] + [2000.0, 10.0]
HY = HX @ [0.5, 2.0] + 100 + rng.normal(size=120)


def houses():
    return HX.astype(np.float32), HY.astype(np.float32)


def two_targets():
    return HX, np.stack([HY, HY], axis=1)


class Lies(torch.utils.data.Dataset):
    """Says 40 items, has 20."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        if i >= 20:
            raise IndexError(i)
        return torch.zeros(2), i % 2


class LenRaises(torch.utils.data.Dataset):
    def __len__(self):
        raise RuntimeError("no length today")

    def __getitem__(self, i):
        return torch.zeros(2), 0


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        for i in range(20):
            yield torch.zeros(2), i % 2


class Endless(torch.utils.data.Dataset):
    def __len__(self):
        return 10 ** 12

    def __getitem__(self, i):
        return torch.zeros(2), i % 2


class TensorFractions(torch.utils.data.Dataset):
    """Labels 0.5 as 0-d tensors: once truncated to 0 without a word."""

    def __len__(self):
        return 20

    def __getitem__(self, i):
        return torch.zeros(2) + i, torch.tensor(0.5 + i % 2)


class Scalars(torch.utils.data.Dataset):
    """One Python float per item: one feature."""

    def __len__(self):
        return 60

    def __getitem__(self, i):
        return float(i % 3) + 0.1 * (i % 7), i % 3


def huge_label():
    y = np.zeros(40, dtype=np.int64)
    y[0] = 10 ** 9
    return np.zeros((40, 2), dtype=np.float32), y


def beyond_float32():
    y = HY.astype(np.float64).copy()
    y[3] = 1e39
    return HX, y


def requires_grad():
    return torch.tensor(HX, requires_grad=True), torch.tensor(HY)
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
    ("LenRaises", "len() of its training part failed: RuntimeError: no length today"),
    ("Stream", "IterableDataset"),
    ("Endless", "1,000,000,000,000 items"),
    ("TensorFractions", "class indices 0, 1, ... (got values like 0.5)"),
    ("huge_label", "1,000,000,001 classes (2 distinct labels occur)"),
    ("Lies", "reading its training items failed: IndexError"),
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


@pytest.mark.parametrize("name, args", [("Items", ["--model", "mlp", "--batch-size", "16"]),
                                        ("pair", ["--model", "cnn", "--subset", "80"])])
def test_a_dataset_over_the_memory_budget_is_streamed_with_the_same_numbers(cli, folder, name, args):
    """Streamed through a DataLoader (statistics from one ordered pass in float64) instead of decoded: the same
    split, batches and training; the normalisation agrees to float rounding."""
    common = ["classify", "--dataset", f"userdata:{name}", "--epochs", "3", "--json", "--device", "cpu", *args]
    memory, streamed = cli(*common), cli(*common, "--memory-budget", "1KB", "--workers", "0")
    assert memory.exit_code == streamed.exit_code == 0, streamed.stderr
    assert "streamed" in streamed.json()["data"] and "streamed" not in memory.json()["data"]
    assert streamed.json()["split"] == memory.json()["split"]
    assert streamed.json()["confusion_matrix"] == memory.json()["confusion_matrix"]
    assert streamed.json()["valid_loss"] == pytest.approx(memory.json()["valid_loss"], rel=1e-5)


@pytest.mark.parametrize("name, workers, needle", [
    ("Bad", "0", "label -1"), ("Raises", "0", "reading item 90 of its training split failed: KeyError"),
    ("Raises", "2", "reading item 90 of its training split failed: KeyError"),
    ("Ragged", "0", "do not make batches"), ("Ragged", "2", "do not make batches")])
def test_a_bad_streamed_dataset_is_one_line_naming_dataset(cli, folder, name, workers, needle):
    run = cli("classify", "--dataset", f"userdata:{name}", "--epochs", "1", "--memory-budget", "1KB",
              "--workers", workers)
    run.assert_usage_error("--dataset")
    assert needle in run.stderr and "--dataset: --dataset" not in run.stderr


@pytest.mark.slow
def test_the_streaming_options_are_refused_for_built_in_data(cli):
    cli("classify", "--dataset", "digits", "--memory-budget", "1KB").assert_usage_error("--memory-budget")
    cli("classify", "--dataset", "blobs", "--workers", "1").assert_usage_error("--workers")


def test_bad_regression_data_is_one_line_naming_dataset_and_grad_tensors_train(cli, folder):
    """1e39 (beyond float32) once hung numpy's lstsq for ever; a tensor that requires grad was an internal error."""
    run = cli("regress", "--dataset", "userdata:beyond_float32", "--epochs", "1")
    run.assert_usage_error("--dataset")
    assert "beyond float32's range" in run.stderr
    cli("regress", "--dataset", "userdata:Stream", "--epochs", "1").assert_usage_error("--dataset")
    assert cli("regress", "--dataset", "userdata:requires_grad", "--epochs", "2", "--quiet").exit_code == 0


def test_one_number_per_item_is_one_feature(cli, folder):
    run = cli("classify", "--dataset", "userdata:Scalars", "--epochs", "2", "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    assert run.json()["classes"] == ["0", "1", "2"]


@pytest.mark.slow
def test_streaming_many_items_through_workers_does_not_run_out_of_file_descriptors(tmp_path):
    """Each batch a DataLoader worker sends lives in shared memory behind a file descriptor; the statistics pass
    once kept every batch's labels, and 10^7 items ran out of descriptors ("Too many open files", blamed on the
    data). Here 200 batches under a limit of 128 open files."""
    import subprocess

    script = (
        "import resource, torch\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from losslab.components.streams import UserSplit, sample_stats\n"
        "class Items(torch.utils.data.Dataset):\n"
        "    def __len__(self):\n        return 256 * 200\n"
        "    def __getitem__(self, i):\n        return torch.zeros(2), i % 3\n"
        "if __name__ == '__main__':\n"
        "    split = UserSplit(Items(), list(range(256 * 200)), 'm:Items', 'training')\n"
        "    mean, std, y, shape = sample_stats(split, 2)\n"
        "    print(len(y), int(y.max()))\n")
    (tmp_path / "fds.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "fds.py")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(256 * 200), "2"]
