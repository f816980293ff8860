"""Image folders (torchvision ImageFolder), streaming through a DataLoader, and the textbook batch order:
the same seed gives the same numbers in memory, streamed, and in a hand-written DataLoader loop."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def make_folder(root, classes=("cat", "dog", "owl"), per_class=24, size=(10, 12), seed=0, modes=True):
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        os.makedirs(root / c, exist_ok=True)
        for i in range(per_class):
            colour = np.array([200 if j == k % 3 else 40 for j in range(3)])
            arr = np.clip(rng.normal(colour, 50, size=(*size, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr)
            if modes and i % 5 == 0:
                img = img.convert("L")  # mixed modes are converted
            img.save(root / c / f"{i}.png")
    return str(root)


def records(out):
    lines = (out / "history.csv").read_text().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, line.split(","))) for line in lines[1:]]


@pytest.mark.slow
def test_in_memory_and_streamed_give_identical_numbers(cli, tmp_path):
    root = make_folder(tmp_path / "imgs")
    common = ["classify", "--dataset", "imagefolder", "--data-dir", root, "--epochs", "3", "--model", "mlp",
              "--dropout", "0.2", "--json"]
    memory = cli(*common, "--out", str(tmp_path / "m"))
    streamed = cli(*common, "--memory-budget", "1000", "--workers", "2", "--out", str(tmp_path / "s"))
    assert memory.exit_code == streamed.exit_code == 0, streamed.stderr
    assert "decoded into memory" in memory.json()["data"] and "streamed" in streamed.json()["data"]
    keys = ("train_loss", "valid_loss", "valid_acc", "grad_norm")
    a, b = records(tmp_path / "m"), records(tmp_path / "s")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert memory.json()["confusion_matrix"] == streamed.json()["confusion_matrix"]


def test_a_hand_written_dataloader_loop_over_imagefolder_gives_every_epochs_loss(tmp_path):
    """The textbook script: ImageFolder + Normalize with the training split's statistics + DataLoader(shuffle,
    seeded generator), torch.manual_seed for the weights — losslab's records, epoch by epoch, exactly."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    from conftest import classify_run
    from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig, OptimConfig, TrainConfig

    root = make_folder(tmp_path / "imgs", modes=False)
    cfg = ClassifyConfig(data=ClassifyDataConfig(dataset="imagefolder", data_dir=root, workers=0),
                         model=ModelConfig(name="logistic"), optim=OptimConfig("sgd", lr=0.05),
                         train=TrainConfig(epochs=4, batch_size=16, seed=3, device="cpu"))
    ours = classify_run(cfg)
    # the split losslab documents: a seeded permutation of the files, the first 20% for validation
    plain = ImageFolder(root, transform=transforms.ToTensor())
    g = torch.Generator().manual_seed(42)
    perm = torch.randperm(len(plain), generator=g).tolist()
    n_val = round(0.2 * len(plain))
    train_idx = sorted(perm[n_val:])
    x = torch.stack([plain[i][0] for i in train_idx]).double()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    normalised = ImageFolder(root, transform=transforms.Compose([
        transforms.ToTensor(), transforms.Normalize(mean.float().tolist(), std.float().tolist())]))
    train = torch.utils.data.Subset(normalised, train_idx)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 10 * 12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(train, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
    losses = []
    for _ in range(4):
        total = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        losses.append(total / len(train))
    assert [r["train_loss"] for r in ours.records] == pytest.approx(losses, rel=1e-5)


@pytest.mark.slow
def test_val_dir_grayscale_image_size_and_models(cli, tmp_path):
    train = make_folder(tmp_path / "train", per_class=12)
    val = make_folder(tmp_path / "val", per_class=6, seed=1, size=(20, 20))
    for model in ("cnn", "mlp", "logistic"):
        run = cli("classify", "--dataset", "imagefolder", "--data-dir", train, "--val-dir", val, "--grayscale",
                  "--image-size", "8,6", "--model", model, "--epochs", "2", "--json")
        assert run.exit_code == 0, run.stderr
        doc = run.json()
        assert "shape (1, 8, 6)" in doc["data"] and doc["classes"] == ["cat", "dog", "owl"]
        assert sum(map(sum, doc["confusion_matrix"])) == 18 and doc["split"] == f"--val-dir {val}"


@pytest.mark.slow
def test_bad_folders_and_images_get_one_line(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cli("classify", "--dataset", "imagefolder", "--data-dir", str(empty)).assert_usage_error("--data-dir")
    one = make_folder(tmp_path / "one", classes=("cat",), per_class=3)
    run = cli("classify", "--dataset", "imagefolder", "--data-dir", one)
    run.assert_usage_error("--data-dir")
    assert "one class" in run.stderr
    hollow = make_folder(tmp_path / "hollow", classes=("cat", "dog"), per_class=3)
    (tmp_path / "hollow" / "owl").mkdir()
    run = cli("classify", "--dataset", "imagefolder", "--data-dir", hollow)
    run.assert_usage_error("--data-dir")
    assert "owl" in run.stderr and "no image files" in run.stderr
    broken = make_folder(tmp_path / "broken", classes=("cat", "dog"), per_class=4)
    data = (tmp_path / "broken" / "dog" / "2.png").read_bytes()
    (tmp_path / "broken" / "dog" / "2.png").write_bytes(data[: len(data) // 2])  # truncated
    for workers in ("0", "2"):
        run = cli("classify", "--dataset", "imagefolder", "--data-dir", broken, "--workers", workers)
        run.assert_usage_error("--data-dir")
        assert "dog/2.png" in run.stderr
    cli("classify", "--dataset", "imagefolder").assert_usage_error("--data-dir")
    cli("classify", "--image-size", "8").assert_usage_error("--image-size")
    cli("classify", "--dataset", "imagefolder", "--data-dir", broken, "--image-size", "0").assert_usage_error(
        "--image-size")
    cli("classify", "--memory-budget", "lots").assert_usage_error("--memory-budget")
    mismatched = make_folder(tmp_path / "val2", classes=("cat", "emu"), per_class=2)
    cli("classify", "--dataset", "imagefolder", "--data-dir", hollow.replace("hollow", "broken"), "--val-dir",
        mismatched).assert_usage_error("--val-dir")


def test_hidden_folders_hidden_files_and_link_loops_are_left_out(cli, tmp_path):
    """A Jupyter checkpoint folder is not a class, hidden and unsupported files are not images, and a link back
    up the tree neither repeats images nor labels another class's images as this one: the run sees exactly the
    6 images torchvision's plain ImageFolder sees on the clean copy, with the same labels."""
    from torchvision.datasets import ImageFolder

    from losslab.components.images import Images

    clean = make_folder(tmp_path / "clean", classes=("cat", "dog"), per_class=3, modes=False)
    messy = make_folder(tmp_path / "messy", classes=("cat", "dog"), per_class=3, modes=False)
    (tmp_path / "messy" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "messy" / "cat" / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (12, 10)).save(tmp_path / "messy" / "cat" / ".ipynb_checkpoints" / "0-checkpoint.png")
    (tmp_path / "messy" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "messy" / "dog" / "notes.txt").write_text("not an image")
    os.symlink(tmp_path / "messy", tmp_path / "messy" / "cat" / "loop")  # up the tree: dog/ is inside it
    images = Images(messy, None, False)
    reference = ImageFolder(clean)
    assert images.classes == reference.classes == ["cat", "dog"]
    assert [(os.path.relpath(p, messy), t) for p, t in images.folder.samples] == \
        [(os.path.relpath(p, clean), t) for p, t in reference.samples]
    run = cli("classify", "--dataset", "imagefolder", "--data-dir", messy, "--epochs", "1", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    only_hidden = make_folder(tmp_path / "hidden", classes=("cat", "dog"), per_class=2, modes=False)
    for f in (tmp_path / "hidden" / "dog").iterdir():
        f.rename(f.with_name("." + f.name))
    run = cli("classify", "--dataset", "imagefolder", "--data-dir", only_hidden)
    run.assert_usage_error("--data-dir")
    assert "dog" in run.stderr and "no image files" in run.stderr
