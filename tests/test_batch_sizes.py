"""lr-sweep --batch-sizes: the rate × batch-size grid in one sweep equals the sweeps made one batch size at a time
(test_executors and test_ray: the same on every executor); its scaling fit, its files (plots, history,
TensorBoard) and its refusals."""

import json
import math

import numpy as np
import pytest

from conftest import written
from losslab.engine.runs import RunSpec

CLASSIFY = ("--task", "classify", "--subset", "300", "--epochs", "3", "--model", "mlp", "--hidden", "16")


def _finals(doc):
    return {(r["lr"], r.get("batch_size"), r["seed"]): (r["status"], r["final_loss"]) for r in doc["results"]}


def test_the_batch_size_grid_equals_each_batch_size_swept_alone(cli):
    """`--batch-sizes 32,128 --num 8 --task classify`: 16 runs in one call, bit for bit the runs of two sweeps at
    --batch-size 32 and 128 (the same stacked engine), with the same suggestion for each batch size."""
    run = cli("lr-sweep", *CLASSIFY, "--batch-sizes", "32,128", "--num", "8", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["mode"] == "batch-sizes" and len(doc["results"]) == 16 and doc["vectorized"]
    together = _finals(doc)
    for size, entry in zip((32, 128), doc["batch_sizes"]):
        alone = cli("lr-sweep", *CLASSIFY, "--batch-size", str(size), "--num", "8", "--json", "--quiet").json()
        assert {(lr, size, seed): v for (lr, _, seed), v in _finals(alone).items()} == \
            {k: v for k, v in together.items() if k[1] == size}
        assert entry["batch_size"] == size and entry["suggested_lr"] == alone["suggested_lr"]
        assert entry["largest_stable_lr"] == alone["largest_stable_lr"]
        assert entry["steps_per_epoch"] == math.ceil(240 / size)  # 300 rows, a fifth held out


def test_one_by_one_the_grid_equals_single_runs_at_each_batch_size(cli):
    """Sequentially (--no-vectorize) every run goes through the single-run path: each equals `regress` at that
    rate and batch size."""
    doc = cli("lr-sweep", "--lrs", "0.01,0.1", "--batch-sizes", "8,50", "--epochs", "4", "--no-vectorize",
              "--json", "--quiet").json()
    assert not doc["vectorized"]
    for (lr, size, _), (status, final) in _finals(doc).items():
        single = cli("regress", "--lr", str(lr), "--batch-size", str(size), "--epochs", "4", "--json",
                     "--quiet").json()
        assert status == "ok" and final == single["final_loss"], (lr, size)


def test_the_scaling_fit_is_least_squares_on_log_log(cli):
    doc = cli("lr-sweep", "--batch-sizes", "4,16,64", "--num", "9", "--epochs", "10", "--json", "--quiet").json()
    points = [(p["batch_size"], p["best_lr"]) for p in doc["scaling"]["points"]]
    assert [b for b, _ in points] == [4, 16, 64]
    assert [lr for _, lr in points] == [e["suggested_lr"] for e in doc["batch_sizes"]]
    slope = np.polyfit(np.log([b for b, _ in points]), np.log([lr for _, lr in points]), 1)[0]
    assert doc["scaling_exponent"] == pytest.approx(slope, abs=1e-12)
    b0, lr0 = points[0]
    assert doc["scaling"]["rules"]["linear"]["predicted"] == pytest.approx([lr0 * b / b0 for b, _ in points])
    assert doc["scaling"]["rules"]["square root"]["predicted"] == pytest.approx(
        [lr0 * math.sqrt(b / b0) for b, _ in points])
    best = min((e for e in doc["batch_sizes"]), key=lambda e: e["best_final_loss"])
    assert (doc["suggested_batch_size"], doc["suggested_lr"]) == (best["batch_size"], best["suggested_lr"])


def test_one_tensorboard_run_per_rate_batch_size_and_seed(cli, tmp_path):
    out, board = tmp_path / "out", tmp_path / "tb"
    run = cli("lr-sweep", "--lrs", "0.01,0.1", "--batch-sizes", "10,40", "--epochs", "2", "--seeds", "2",
              "--out", str(out), "--tensorboard", str(board), "--quiet")
    assert run.exit_code == 0, run.stderr
    folders = sorted(p.name for p in (board / "lr-sweep").iterdir())
    assert len(folders) == 8 and not any("version" in f for f in folders)
    assert "sgd-lr0.1-batch_size40-seed1" in folders
    assert written(out) == ["batch_sizes.png", "history.csv", "result.json", "sweep.png"]
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["seed", "lr", "batch_size", "epoch"]
    assert "batch 10" in run.stdout and "best rate per batch size" in run.stdout
    assert "scaling: best rate ∝" in run.stdout


@pytest.mark.parametrize("args, option", [
    (("--batch-sizes", "32,abc"), "--batch-sizes"),
    (("--batch-sizes", "32"), "--batch-sizes"),
    (("--batch-sizes", "0,32"), "--batch-sizes"),
    (("--batch-sizes", "32,64", "--batch-size", "16"), "--batch-sizes"),
    (("--batch-sizes", "32,64", "--halving"), "--batch-sizes"),
    (("--batch-sizes", "32,64", "--range-test"), "--batch-sizes"),
    (("--batch-sizes", "200,500"), "--batch-sizes"),  # both cover the 100 rows: one full batch each
])
def test_bad_batch_sizes_are_refused_before_training(cli, args, option):
    cli("lr-sweep", *args, "--epochs", "2").assert_usage_error(option)


def test_the_batch_size_grid_round_trips_through_its_config_and_replays(cli, tmp_path):
    printed = cli("lr-sweep", "--lrs", "0.01,0.1", "--batch-sizes", "10,40", "--epochs", "3", "--print-config")
    assert printed.exit_code == 0 and 'batch-sizes = "10,40"' in printed.stdout
    config = tmp_path / "sweep.toml"
    config.write_text(printed.stdout)
    first = cli("lr-sweep", "--config", str(config), "--json", "--quiet").json()
    direct = cli("lr-sweep", "--lrs", "0.01,0.1", "--batch-sizes", "10,40", "--epochs", "3", "--json",
                 "--quiet").json()
    assert _finals(first) == _finals(direct) and len(_finals(first)) == 4
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(direct))
    replayed = cli("replay", str(saved), "--json")
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.json()["first_difference"] is None and replayed.json()["compared"] > 40


def test_a_run_spec_overriding_the_batch_size_is_told_apart_by_its_key():
    from losslab.config import OptimConfig

    plain = RunSpec("g", OptimConfig("sgd", lr=0.1), 0)
    small = RunSpec("g", OptimConfig("sgd", lr=0.1), 0, changes=(("train.batch_size", 8),))
    assert plain.key() != small.key() and ("batch_size", 8) in small.key()


def test_a_run_may_change_any_field_of_its_config_the_model_width_or_the_data_seed():
    """A change outside the training settings gives the run a problem prepared from the changed config: the same
    numbers as a problem built from that config directly."""
    from dataclasses import replace

    from losslab.config import ClassifyConfig, ClassifyDataConfig, ModelConfig, TrainConfig
    from losslab.engine.problems import build_problem
    from losslab.engine.trials import run_trials

    cfg = ClassifyConfig(data=ClassifyDataConfig(dataset="blobs"), model=ModelConfig("mlp", hidden=16),
                         train=TrainConfig(epochs=3, device="cpu")).resolved()
    changes = [(("model.hidden", 32),), (("data.data_seed", 7),), (("train.batch_size", 16), ("model.depth", 2))]
    specs = [RunSpec(str(c), cfg.optim, 0, changes=c) for c in changes] + [RunSpec("as is", cfg.optim, 0)]
    together, _ = run_trials(build_problem(cfg), specs)
    references = [replace(cfg, model=replace(cfg.model, hidden=32)),
                  replace(cfg, data=replace(cfg.data, data_seed=7)),
                  replace(cfg, train=replace(cfg.train, batch_size=16), model=replace(cfg.model, depth=2))]
    for got, ref in zip(together, references):
        alone, _ = run_trials(build_problem(ref.resolved()), [RunSpec("ref", cfg.optim, 0)])
        assert got.status == "ok" and got.metrics["final_loss"] == alone[0].metrics["final_loss"]
        assert got.records[-1]["train_loss"] == alone[0].records[-1]["train_loss"]
    finals = {r.metrics["final_loss"] for r in together}
    assert len(finals) == 4  # each change changed the run
    assert together[2].spec.changed() == {"batch_size": 16, "depth": 2}
