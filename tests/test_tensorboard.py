"""`--tensorboard DIR`: event files read back with TensorBoard's own EventAccumulator and compared, scalar by
scalar, with the run's history."""

import csv
import math

import pytest

EventAccumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator").EventAccumulator


def load(path):
    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


def history(out):
    with open(out / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_every_scalar_of_a_regress_run_matches_its_history(cli, tmp_path):
    run = cli("regress", "--epochs", "30", "--tensorboard", str(tmp_path / "tb"), "--out", str(tmp_path / "o"),
              "--json")
    assert run.exit_code == 0, run.stderr
    acc = load(tmp_path / "tb" / "regress" / "sgd-lr0.1-seed0")
    rows = history(tmp_path / "o")
    tags = {"loss/train": "train_loss", "param/w": "w", "param/b": "b", "grad_norm": "grad_norm",
            "grad_norm/weight": "grad_norm/weight", "update_ratio/bias": "update_ratio/bias", "lr": "lr"}
    assert set(tags) <= set(acc.Tags()["scalars"])
    for tag, column in tags.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [int(r["epoch"]) for r in rows]
        assert [e.value for e in events] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)


def test_classify_writes_validation_curves(cli, tmp_path):
    run = cli("classify", "--dataset", "blobs", "--epochs", "4", "--tensorboard", str(tmp_path / "tb"), "--out",
              str(tmp_path / "o"), "--json")
    assert run.exit_code == 0, run.stderr
    (run_dir,) = (tmp_path / "tb" / "classify").iterdir()
    acc = load(run_dir)
    rows = history(tmp_path / "o")
    for tag, column in (("loss/valid", "valid_loss"), ("accuracy/valid", "valid_acc"), ("loss/train", "train_loss")):
        assert [e.value for e in acc.Scalars(tag)] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)


def test_trials_get_one_directory_each_with_hparams_in_the_same_directory(cli, tmp_path):
    run = cli("compare-optimizers", "--optims", "sgd,adam", "--seeds", "2", "--epochs", "10", "--tensorboard",
              str(tmp_path / "tb"), "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    root = tmp_path / "tb" / "compare-optimizers"
    assert sorted(p.name for p in root.iterdir()) == ["adam-lr0.01-seed0", "adam-lr0.01-seed1", "sgd-lr0.1-seed0",
                                                      "sgd-lr0.1-seed1"]
    for name, entry in doc["optimizers"].items():
        for r in entry["runs"]:
            run_dir = root / f"{name}-lr{entry['lr']:g}-seed{r['seed']}"
            assert [p.is_file() for p in run_dir.iterdir()] == [True]  # one event file, no timestamped subfolder
            acc = load(run_dir)
            assert acc.Scalars("hparam/final_loss")[0].value == pytest.approx(r["final_loss"], rel=1e-6)
            assert len(acc.Scalars("loss/train")) == 10
            plugin = acc.PluginTagToContent("hparams")
            assert "_hparams_/session_start_info" in plugin


def test_the_range_test_writes_loss_and_rate_against_the_step(cli, tmp_path):
    run = cli("lr-sweep", "--range-test", "--steps", "40", "--tensorboard", str(tmp_path / "tb"), "--json",
              "--out", str(tmp_path / "out"))
    assert run.exit_code == 0, run.stderr
    curve = run.json()["runs"][0]
    (run_dir,) = (tmp_path / "tb" / "lr-sweep").iterdir()
    acc = load(run_dir)
    assert [e.value for e in acc.Scalars("range_test/lr")][:len(curve["lr"])] == pytest.approx(curve["lr"], rel=1e-6)
    assert [e.value for e in acc.Scalars("range_test/loss")][:len(curve["loss"])] == pytest.approx(curve["loss"],
                                                                                                 rel=1e-6)
    # steps count as history.csv's `step` column does (from 1)
    with open(tmp_path / "out" / "history.csv", newline="") as fh:
        steps = [int(row["step"]) for row in csv.DictReader(fh)]
    assert [e.step for e in acc.Scalars("range_test/lr")][:len(steps)] == steps and steps[0] == 1


def test_a_diverged_run_is_flushed_and_a_bad_folder_refused(cli, tmp_path):
    run = cli("regress", "--optim", "sgd", "--lr", "50", "--tensorboard", str(tmp_path / "tb"))
    assert run.exit_code == 3
    acc = load(tmp_path / "tb" / "regress" / "sgd-lr50-seed0")
    losses = [e.value for e in acc.Scalars("loss/train")]
    assert losses and not math.isfinite(losses[-1])
    (tmp_path / "file").write_text("x")
    cli("regress", "--tensorboard", str(tmp_path / "file")).assert_usage_error("--tensorboard")
