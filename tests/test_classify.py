"""Classifiers, classification losses, and the classify experiment against hand-written references."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import classify_run as classify
from conftest import written
from losslab.components.datasets import load_classification
from losslab.components.losses import build_loss
from losslab.components.models import build_classifier
from losslab.config import ClassifyConfig, ClassifyDataConfig, ClassifyLossConfig, ModelConfig, OptimConfig, TrainConfig
from losslab.engine.problems import class_weights
from losslab.errors import ConfigError


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (1, 8, 8), (1, 3, 3)])
def test_cnn_fits_every_image_shape(shape):
    model = build_classifier(ModelConfig(name="cnn"), shape, 10)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (shape[0], 32, (5, 5), (2, 2)), (32, 32, (5, 5), (2, 2)), (32, 64, (5, 5), (2, 2))]


def test_tutorial_cnn_on_cifar_has_the_classic_layout():
    model = build_classifier(ModelConfig(name="cnn"), (3, 32, 32), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 4 * 4, 64), (64, 10)]


def test_cnn_refuses_tabular_input_and_mlp_logistic_shapes():
    with pytest.raises(ConfigError, match="needs image input"):
        build_classifier(ModelConfig(name="cnn"), (2,), 3)
    assert build_classifier(ModelConfig(name="mlp", hidden=16), (1, 8, 8), 10)(torch.zeros(4, 1, 8, 8)).shape == (4, 10)
    assert build_classifier(ModelConfig(name="logistic"), (5,), 3)(torch.zeros(4, 5)).shape == (4, 3)
    with pytest.raises(ConfigError, match="not a classifier"):
        build_classifier(ModelConfig(name="linear"), (5,), 3)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits, target = torch.randn(16, 4), torch.randint(0, 4, (16,))
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    focal = build_loss(ClassifyLossConfig("focal", gamma=0.0), classes=4)
    assert focal(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    focal_w = build_loss(ClassifyLossConfig("focal", gamma=0.0), weight, classes=4)
    weighted = F.cross_entropy(logits, target, weight=weight).item()
    assert focal_w(logits, target).item() == pytest.approx(weighted, rel=1e-6)
    # gamma > 0 down-weights easy examples: the loss can only shrink
    assert build_loss(ClassifyLossConfig("focal", gamma=2.0), classes=4)(logits, target) < focal(logits, target)


def test_classification_losses_match_torch():
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    ce = build_loss(ClassifyLossConfig("cross-entropy", label_smoothing=0.1), classes=3)
    assert ce(logits, target) == F.cross_entropy(logits, target, label_smoothing=0.1)
    mse = build_loss(ClassifyLossConfig("mse"), classes=3)
    assert mse(logits, target) == F.mse_loss(logits.softmax(1), F.one_hot(target, 3).float())


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    ours = class_weights("balanced", y, 3)
    ref = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    assert ours.tolist() == pytest.approx(ref.tolist())
    assert class_weights("1,2,3", y, 3).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError):
        class_weights("1,2", y, 3)


def _cfg(**kw):
    base = dict(data=ClassifyDataConfig(dataset="digits", subset=400), model=ModelConfig("mlp", hidden=32),
                optim=OptimConfig("adam", lr=0.001), train=TrainConfig(epochs=4, batch_size=32, device="cpu"))
    base.update(kw)
    return ClassifyConfig(**base)


def test_classify_matches_a_hand_written_loop_bit_for_bit():
    cfg = _cfg()
    data = load_classification(cfg.data)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    # the textbook loop: a DataLoader shuffling with a generator seeded like the weights
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    epoch_losses = []
    for _ in range(4):
        model.train()
        total = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        epoch_losses.append(total / len(data.y_train))
    model.eval()
    with torch.no_grad():
        acc = (model(data.x_val).argmax(1) == data.y_val).float().mean().item()
    result = classify(cfg, data=data)
    assert [r["train_loss"] for r in result.records] == epoch_losses
    assert result.accuracy == pytest.approx(acc, abs=1e-6)
    assert result.records[-1]["valid_acc"] == pytest.approx(acc, abs=1e-6)
    cm = torch.tensor(result.confusion)
    assert cm.sum().item() == len(data.y_val) and cm.diag().sum().item() / cm.sum().item() == pytest.approx(acc)


def test_default_classify_reaches_095_on_digits():
    result = classify(ClassifyConfig(train=TrainConfig(epochs=None, batch_size=64, device="cpu")))
    assert result.config.model.name == "mlp" and result.config.train.epochs == 30
    assert result.accuracy >= 0.95 and result.status == "ok"


def test_patience_stops_and_restores_the_best_weights():
    # a large learning rate makes validation loss bounce: patience must stop and restore the best epoch
    cfg = _cfg(optim=OptimConfig("sgd", lr=0.5), train=TrainConfig(epochs=40, batch_size=32, device="cpu"), patience=2)
    result = classify(cfg)
    best = min(r["valid_loss"] for r in result.records)
    assert result.epochs_run < 40
    assert result.records[result.best_epoch - 1]["valid_loss"] == best
    assert result.valid_loss == pytest.approx(best, rel=1e-5)  # the final weights are the best ones


def test_save_then_resume_equals_one_uninterrupted_run(tmp_path):
    straight = classify(_cfg(train=TrainConfig(epochs=6, batch_size=32, device="cpu")))
    ckpt = tmp_path / "ckpt.pt"
    first = classify(_cfg(train=TrainConfig(epochs=3, batch_size=32, device="cpu"), save=str(ckpt)))
    assert first.epochs_run == 3 and ckpt.is_file()
    resumed = classify(_cfg(train=TrainConfig(epochs=6, batch_size=32, device="cpu"), resume=str(ckpt)))
    assert resumed.resumed_from == 3 and [r["epoch"] for r in resumed.records] == [4, 5, 6]
    assert [r["train_loss"] for r in resumed.records] == [r["train_loss"] for r in straight.records[3:]]
    assert resumed.accuracy == straight.accuracy


def test_resume_refuses_a_mismatched_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    classify(_cfg(train=TrainConfig(epochs=1, batch_size=32, device="cpu"), save=str(ckpt)))
    with pytest.raises(ConfigError, match="hidden"):
        classify(_cfg(model=ModelConfig("mlp", hidden=16), resume=str(ckpt)))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        classify(_cfg(resume=str(tmp_path / "bad.pt")))


def test_nll_with_log_softmax_model_follows_cross_entropy_and_mse_is_explained():
    ce = classify(_cfg())
    nll = classify(_cfg(loss=ClassifyLossConfig("nll")))
    for a, b in zip(ce.records, nll.records):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert nll.accuracy == ce.accuracy
    mse = classify(_cfg(loss=ClassifyLossConfig("mse")))
    assert any("cross-entropy" in n for n in mse.notes)


def test_cnn_trains_on_cifar_format_files(tmp_path):
    from fakedata import write_cifar10

    write_cifar10(tmp_path, per_batch=20, test=20)
    cfg = ClassifyConfig(data=ClassifyDataConfig(dataset="cifar10", data_dir=str(tmp_path)),
                         train=TrainConfig(epochs=2, batch_size=50, device="cpu"))
    result = classify(cfg)
    assert result.config.model.name == "cnn" and result.status == "ok" and len(result.confusion) == 10


# --- CLI ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_classify_json_gates_and_files(cli, tmp_path):
    out = tmp_path / "o"
    run = cli("classify", "--subset", "500", "--epochs", "5", "--json", "--quiet", "--out", str(out),
              "--expect", "accuracy>=0.5", "--expect", "accuracy>=0.9999")
    assert run.exit_code == 1, run.stderr
    doc = run.json()
    assert doc["command"] == "classify" and len(doc["confusion_matrix"]) == 10
    assert set(doc["per_class_accuracy"]) == {str(i) for i in range(10)}
    assert [e["passed"] for e in doc["expectations"]] == [True, False]
    assert written(out) == ["confusion.png", "curves.png", "history.csv", "result.json"]
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == ("epoch,train_loss,grad_norm,grad_norm/1.weight,grad_norm/1.bias,grad_norm/3.weight,"
                      "grad_norm/3.bias,update_ratio/1.weight,update_ratio/1.bias,update_ratio/3.weight,"
                      "update_ratio/3.bias,lr,valid_loss,valid_acc,elapsed_s,valid_loss_best")
    assert json.loads((out / "result.json").read_text())["accuracy"] == doc["accuracy"]


def test_cli_classify_blobs_mlp_matches_scikit_learns_logistic_regression(cli):
    from sklearn.linear_model import LogisticRegression

    data = load_classification(ClassifyDataConfig(dataset="blobs", classes=4, imbalance=3))
    reference = LogisticRegression(max_iter=1000).fit(data.x_train.numpy(), data.y_train.numpy())
    ref_acc = reference.score(data.x_val.numpy(), data.y_val.numpy())
    run = cli("classify", "--dataset", "blobs", "--classes", "4", "--imbalance", "3", "--epochs", "50", "--lr", "0.01",
              "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert run.json()["accuracy"] >= ref_acc - 0.03


@pytest.mark.parametrize("args, option", [
    (["--dataset", "imagenet"], "--dataset"),
    (["--dataset", "blobs", "--model", "cnn"], "--model"),
    (["--model", "resnet"], "--model"),
    (["--subset", "0"], "--subset"),
    (["--loss", "huber"], "--loss"),
    (["--loss", "l1"], "--loss"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--label-smoothing", "0.1", "--loss", "nll"], "--label-smoothing"),
    (["--class-weights", "1,2"], "--class-weights"),
    (["--patience", "0"], "--patience"),
    (["--resume", "/no/such.pt"], "--resume"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent-losslab"], "--data-dir"),
    (["--epochs", "-3"], "--epochs"),
    (["--expect", "acc>=0.9"], "--expect"),
])
def test_cli_classify_bad_input_is_one_line_exit_2(cli, args, option):
    cli("classify", *args).assert_usage_error(option)


def test_resume_honours_the_options_given(tmp_path):
    """A resumed run trains at the --lr it was given, not the checkpoint's: the record's lr shows it."""
    ckpt = tmp_path / "ck.pt"
    classify(_cfg(train=TrainConfig(epochs=2, batch_size=32, device="cpu"), save=str(ckpt)))
    resumed = classify(_cfg(optim=OptimConfig("adam", lr=0.05), train=TrainConfig(epochs=4, batch_size=32,
                                                                                 device="cpu"), resume=str(ckpt)))
    assert [r["lr"] for r in resumed.records] == [0.05, 0.05]
    assert resumed.resumed_from == 2
