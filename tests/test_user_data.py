"""A user's own table with real-world scales: standardised for training, reported in the data's own units and
checked against numpy's least squares on the raw columns; diagnosis suggestions that help when followed;
compare-losses that leaves a user's data as it is."""

from __future__ import annotations

import re

import numpy as np
import pytest


def write_houses(path, n=200, seed=0):
    """Areas in the thousands, prices in the hundreds of thousands: the scales the tutorial defaults never met."""
    rng = np.random.default_rng(seed)
    area, rooms, age = rng.uniform(500, 4000, n), rng.integers(1, 7, n), rng.uniform(0, 80, n)
    price = 50000 + 150 * area + 10000 * rooms - 800 * age + rng.normal(0, 20000, n)
    rows = np.c_[area, rooms, age, price]
    with open(path, "w") as fh:
        fh.write("area,rooms,age,price\n")
        fh.writelines(",".join(f"{v:.2f}" for v in row) + "\n" for row in rows)
    # the reference: numpy's least squares on the raw columns as written, in float32 as training reads them
    table = np.loadtxt(path, delimiter=",", skiprows=1).astype(np.float32).astype(np.float64)
    x, y = table[:, :3], table[:, 3]
    theta, *_ = np.linalg.lstsq(np.c_[x, np.ones(n)], y, rcond=None)
    return dict(zip(["w_area", "w_rooms", "w_age", "b"], theta))


@pytest.fixture
def houses(tmp_path):
    path = tmp_path / "houses.csv"
    return str(path), write_houses(path)


@pytest.mark.parametrize("optim", [pytest.param(o, marks=() if o == "adam" else pytest.mark.slow)
                                   for o in ("sgd", "adam", "rmsprop", "momentum")])
def test_default_options_fit_a_raw_scale_table_in_its_own_units(cli, houses, optim):
    path, lstsq = houses
    run = cli("regress", "--data", path, "--target", "price", "--optim", optim, "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["status"] == "ok"
    for name, value in lstsq.items():  # numpy on the raw columns: w_area is price per unit of area
        assert doc["optimum"]["params"][name] == pytest.approx(value, rel=1e-6)
        if optim != "rmsprop":
            assert doc["params"][name] == pytest.approx(value, rel=1e-4)
    # rmsprop's fixed-size steps (lr 0.01 in standardised units) hover around the optimum instead of settling
    assert doc["final_loss"] <= doc["optimum"]["loss"] * (1.1 if optim == "rmsprop" else 1.0001)
    assert doc["standardization"]["y_std"] > 1e5


@pytest.mark.slow
def test_expect_names_and_every_epoch_record_are_in_data_units(cli, houses, tmp_path):
    path, lstsq = houses
    run = cli("regress", "--data", path, "--json", "--quiet", "--out", str(tmp_path / "o"), "--no-plot",
              "--expect", f"w_area={lstsq['w_area']:.4f}±0.5")
    assert run.exit_code == 0, run.stderr
    import csv

    with open(tmp_path / "o" / "history.csv", newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    assert float(last["w_area"]) == pytest.approx(lstsq["w_area"], rel=1e-3)


def test_stacked_trials_record_the_same_data_unit_parameters_as_sequential_ones(cli, houses):
    path, lstsq = houses
    docs = [cli("lr-sweep", "--data", path, "--lrs", "0.01,0.1", "--epochs", "60", "--json", "--quiet", *extra).json()
            for extra in ([], ["--no-vectorize"])]
    assert docs[0]["vectorized"] and not docs[1]["vectorized"]
    for a, b in zip(docs[0]["results"], docs[1]["results"]):
        for name in lstsq:
            assert a["params"][name] == pytest.approx(b["params"][name], rel=1e-4)


@pytest.mark.slow
def test_no_standardize_trains_on_the_raw_columns_and_the_diagnosis_says_what_helps(cli, houses):
    path, lstsq = houses
    raw = cli("regress", "--data", path, "--no-standardize", "--json", "--quiet")
    assert raw.exit_code == 3 and raw.json()["standardization"] is None
    (diverged,) = [f for f in raw.json()["diagnosis"] if f["code"] == "diverged"]
    lr = re.search(r"--lr ([0-9.e+-]+)", diverged["suggestion"]).group(1)
    followed = cli("regress", "--data", path, "--no-standardize", "--lr", lr, "--json", "--quiet").json()
    assert followed["status"] == "ok"  # the suggested rate does not diverge...
    codes = {f["code"]: f for f in followed["diagnosis"]}
    stuck = codes.get("plateau") or codes.get("slow-convergence")
    assert stuck is not None and "--standardize" in stuck["suggestion"]  # ...and says why it cannot converge
    fixed = cli("regress", "--data", path, "--standardize", "--json", "--quiet").json()
    assert fixed["status"] == "ok" and fixed["diagnosis"] == []
    assert fixed["params"]["w_area"] == pytest.approx(lstsq["w_area"], rel=1e-3)


@pytest.mark.parametrize("args", [["--lr", "1.5"], ["--lr", "5", "--epochs", "50"], ["--optim", "momentum",
                                                                                        "--lr", "2"]])
@pytest.mark.slow
def test_following_a_diverged_runs_suggested_rate_stops_the_divergence(cli, args):
    run = cli("regress", *args, "--json", "--quiet")
    assert run.exit_code == 3
    (finding,) = [f for f in run.json()["diagnosis"] if f["code"] == "diverged"]
    lr = re.search(r"--lr ([0-9.e+-]+)", finding["suggestion"]).group(1)
    again = cli("regress", *[a if a != args[args.index("--lr") + 1] else lr for a in args], "--json", "--quiet")
    assert again.exit_code == 0 and "diverged" not in [f["code"] for f in again.json()["diagnosis"]]


SLOW = {"overshooting": ["--lr", "0.95", "--epochs", "30"], "too-small": ["--lr", "0.01", "--epochs", "100"],
        "adam-too-small": ["--optim", "adam", "--lr", "0.001", "--epochs", "300"],
        "adam-circling": ["--optim", "adam", "--lr", "0.5", "--epochs", "60"],
        "momentum-circling": ["--optim", "momentum", "--lr", "0.3", "--epochs", "60"]}


def _followed(cli, args, code):
    """The run's finding `code`, the factor its suggested --lr applies (1 when it suggests more epochs), and the
    same run with the suggestion followed."""
    run = cli("regress", *args, "--json", "--quiet").json()
    (finding,) = [f for f in run["diagnosis"] if f["code"] == code]
    epochs = re.search(r"try --epochs (\d+)", finding["suggestion"])
    if epochs:
        given = args[args.index("--epochs") + 1]
        return finding, 1.0, cli("regress", *[epochs.group(1) if a == given else a for a in args], "--json",
                                 "--quiet").json()
    lr = re.search(r"--lr ([0-9.e+-]+)", finding["suggestion"]).group(1)
    given = args[args.index("--lr") + 1]
    again = cli("regress", *[lr if a == given else a for a in args], "--json", "--quiet").json()
    return finding, float(lr) / float(given), again


@pytest.mark.parametrize("name", list(SLOW))
def test_following_the_slow_convergence_suggestion_helps(cli, name):
    """Near 2/λ gradient descent jumps across the optimum, momentum and adam circle it (lower the rate); far below
    it every step crawls (raise it). Following the suggestion at least halves the distance to the optimum."""
    finding, factor, again = _followed(cli, SLOW[name], "slow-convergence")
    assert {"crossing": factor < 1, "circling": factor == 1, None: factor > 1}[finding["evidence"].get("overshooting")]
    after = [f for f in again["diagnosis"] if f["code"] == "slow-convergence"]
    assert again["status"] == "ok" and "diverged" not in [f["code"] for f in again["diagnosis"]]
    assert not after or after[0]["evidence"]["distance"] <= finding["evidence"]["distance"] / 2


def test_following_the_oscillating_suggestion_stops_the_oscillation(cli):
    finding, factor, again = _followed(cli, ["--batch-size", "10", "--lr", "0.5", "--epochs", "60"], "oscillating")
    assert factor < 1 and "oscillating" not in [f["code"] for f in again["diagnosis"]]


@pytest.mark.slow
def test_compare_losses_leaves_a_users_data_as_it_is_and_ranks_by_a_neutral_measure(cli, houses):
    path, _ = houses
    run = cli("compare-losses", "--data", path, "--seeds", "2", "--epochs", "200", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["config"]["outliers"] == 0.0 and doc["reference"]["outliers"] == 0
    assert doc["rank_by"] == "heldout_medae"
    held = doc["reference"]["heldout_rows"]
    assert len(held) == 40 and len(set(held)) == 40 and min(held) >= 1 and max(held) <= 200
    for loss in doc["losses"].values():
        assert {"heldout_mse", "heldout_mae", "heldout_medae"} <= set(loss)
    planted = cli("compare-losses", "--data", path, "--outliers", "0.1", "--seeds", "1", "--epochs", "50", "--json",
                  "--quiet").json()
    assert planted["reference"]["outliers"] == 16  # asked for explicitly: 10% of the 160 training rows


def test_compare_losses_plants_outliers_in_the_synthetic_data_by_default(cli):
    doc = cli("compare-losses", "--seeds", "1", "--epochs", "100", "--json", "--quiet").json()
    assert doc["config"]["outliers"] == 0.1 and doc["reference"]["outliers"] == 10
    assert doc["rank_by"] == "truth_distance"


@pytest.mark.slow
def test_following_the_vanishing_gradients_suggestion_restores_the_first_layers_gradient(cli):
    args = ["classify", "--depth", "10", "--hidden", "32", "--epochs", "5", "--json", "--quiet"]
    run = cli(*args, "--activation", "sigmoid").json()
    (finding,) = [f for f in run["diagnosis"] if f["code"] == "vanishing-gradients"]
    assert "--activation relu with --init kaiming" in finding["suggestion"]
    again = cli(*args, "--activation", "relu", "--init", "kaiming").json()
    assert "vanishing-gradients" not in [f["code"] for f in again["diagnosis"]]
    assert again["accuracy"] > run["accuracy"]


def test_following_the_overfitting_suggestion_returns_the_best_weights(cli):
    args = ["classify", "--dataset", "blobs", "--samples", "60", "--features", "20", "--class-sep", "0.5",
            "--hidden", "256", "--epochs", "200", "--json", "--quiet"]
    run = cli(*args).json()
    (finding,) = [f for f in run["diagnosis"] if f["code"] == "overfitting"]
    patience = re.search(r"--patience (\d+)", finding["suggestion"]).group(1)
    again = cli(*args, "--patience", patience).json()
    assert "overfitting" not in [f["code"] for f in again["diagnosis"]]
    assert again["valid_loss"] < run["valid_loss"]
    assert again["valid_loss"] <= finding["evidence"]["best_valid_loss"] * 1.02
