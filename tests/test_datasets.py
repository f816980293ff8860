"""Classification data: embedded sets, torchvision loaders on small files in the real formats, errors."""

import numpy as np
import pytest
import torch

from fakedata import write_cifar10, write_mnist
from losslab.components.datasets import load_classification
from losslab.config import ClassifyDataConfig
from losslab.errors import ConfigError


def test_digits_is_scikit_learns_set_split_and_normalised():
    from sklearn.datasets import load_digits

    data = load_classification(ClassifyDataConfig(dataset="digits"))
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.y_train) + len(data.y_val) == 1797 and len(data.y_val) == round(0.2 * 1797)
    # standardised per pixel with training statistics, as scikit-learn's StandardScaler does (constant pixels
    # stay 0); the validation split is transformed with the training split's statistics
    from sklearn.preprocessing import StandardScaler

    raw = torch.as_tensor(load_digits().images, dtype=torch.float32).reshape(-1, 64)
    g = torch.Generator().manual_seed(42)
    perm = torch.randperm(1797, generator=g)
    train = raw[perm[round(0.2 * 1797):]]
    scaler = StandardScaler().fit(train.numpy())
    ours = data.x_train.reshape(-1, 64).numpy()
    assert np.allclose(ours, scaler.transform(train.numpy()), atol=1e-4)
    # the split is a permutation of the real data: label counts match scikit-learn's
    counts = torch.bincount(torch.cat([data.y_train, data.y_val]), minlength=10)
    assert counts.tolist() == np.bincount(load_digits().target).tolist()
    again = load_classification(ClassifyDataConfig(dataset="digits"))
    assert torch.equal(again.y_val, data.y_val)  # seeded split


def test_blobs_counts_imbalance_and_seed():
    cfg = ClassifyDataConfig(dataset="blobs", classes=3, samples=700, features=5, imbalance=4.0, val_fraction=0.1)
    data = load_classification(cfg)
    counts = torch.bincount(torch.cat([data.y_train, data.y_val]), minlength=3).tolist()
    assert sum(counts) == 700 and counts[0] / counts[2] == pytest.approx(4.0, rel=0.02)
    assert data.input_shape == (5,)
    other = load_classification(ClassifyDataConfig(dataset="blobs", data_seed=1))
    assert not torch.equal(other.x_train[:5], load_classification(ClassifyDataConfig(dataset="blobs")).x_train[:5])


def test_subset_limits_training_samples():
    data = load_classification(ClassifyDataConfig(dataset="digits", subset=300))
    assert len(data.y_train) + len(data.y_val) == 300


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_format_files_load_through_torchvision(tmp_path, dataset, folder):
    write_mnist(tmp_path, folder, train=50, test=16)
    data = load_classification(ClassifyDataConfig(dataset=dataset, data_dir=str(tmp_path)))
    assert data.input_shape == (1, 28, 28) and len(data.y_train) == 50 and len(data.y_val) == 16
    assert data.split == "official test split" and data.num_classes == 10
    assert abs(data.x_train.mean().item()) < 1e-4


def test_cifar10_pickle_batches_load_through_torchvision(tmp_path):
    write_cifar10(tmp_path, per_batch=8, test=12)
    data = load_classification(ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert data.input_shape == (3, 32, 32) and len(data.y_train) == 40 and len(data.y_val) == 12
    assert data.classes[0] == "airplane"
    # per-channel normalisation from the training split
    assert data.x_train.mean(dim=(0, 2, 3)).abs().max().item() < 1e-4


def test_cifar10_pixels_keep_their_layout(tmp_path):
    import pickle

    folder = write_cifar10(tmp_path, per_batch=4, test=4)
    with open(folder / "data_batch_1", "rb") as fh:
        entry = pickle.load(fh)
    from losslab.components.datasets import DATASETS

    raw = DATASETS.lookup("cifar10").factory(ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    expected = torch.from_numpy(entry["data"][0].reshape(3, 32, 32)).float()
    assert torch.equal(raw.x_train[0], expected) and raw.y_train[0].item() == entry["labels"][0]


@pytest.mark.parametrize("dataset, expected", [
    ("mnist", "train-images-idx3-ubyte"), ("fashion-mnist", "FashionMNIST"), ("cifar10", "data_batch_1"),
])
def test_missing_files_say_what_is_expected_where(tmp_path, dataset, expected):
    with pytest.raises(ConfigError) as err:
        load_classification(ClassifyDataConfig(dataset=dataset, data_dir=str(tmp_path)))
    assert err.value.option == "--data-dir"
    assert expected in err.value.message and "--download" in err.value.message and str(tmp_path) in err.value.message


def test_corrupt_files_are_reported(tmp_path):
    raw = write_mnist(tmp_path, train=10, test=5)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(ConfigError, match="cannot read MNIST|corrupt"):
        load_classification(ClassifyDataConfig(dataset="mnist", data_dir=str(tmp_path)))
    folder = write_cifar10(tmp_path / "c", per_batch=4, test=4)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="cannot read CIFAR-10"):
        load_classification(ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path / "c")))


def test_data_dir_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LOSSLAB_DATA", str(tmp_path))
    assert ClassifyDataConfig(dataset="mnist").resolved().data_dir == str(tmp_path)


@pytest.mark.parametrize("resave", ["protocol-5", "bytes-keys"])
def test_cifar10_batches_re_saved_by_python_3_load_the_same(tmp_path, resave):
    """A re-save with pickle.HIGHEST_PROTOCOL (arrays rebuilt from buffers) or with bytes keys, as torchvision's
    latin1 loading tolerates: the same tensors as the original layout."""
    import pickle

    folder = write_cifar10(tmp_path / "a", per_batch=4, test=4)
    original = load_classification(ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path / "a")))
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            entry = pickle.load(fh)
        if resave == "bytes-keys":
            entry = {k.encode(): v for k, v in entry.items()}
        with open(f, "wb") as fh:
            pickle.dump(entry, fh, protocol=5 if resave == "protocol-5" else 2)
    again = load_classification(ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path / "a")))
    assert torch.equal(again.x_train, original.x_train) and torch.equal(again.y_val, original.y_val)
    assert again.classes == original.classes


def test_cifar10_files_that_are_not_the_official_release_are_named_so(tmp_path, monkeypatch):
    """Structure is checked either way; the MD5 sums (torchvision's list) say whether it is the real set."""
    import hashlib

    from torchvision import datasets

    folder = write_cifar10(tmp_path, per_batch=8, test=12)
    data = load_classification(ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert "not the official CIFAR-10 release: the MD5 of data_batch_1, data_batch_2 and 5 more" in data.source
    md5 = lambda name: hashlib.md5((folder / name).read_bytes()).hexdigest()  # noqa: E731
    cls = datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})
    data = load_classification(ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert "official" not in data.source
