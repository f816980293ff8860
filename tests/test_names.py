"""Names that forgive: choices ignore case (and `_` for `-`), are stored as registered, and a misspelling gets
"did you mean"."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args, key, expected", [
    (["regress", "--optim", "Adam"], ("optim", "name"), "adam"),
    (["regress", "--loss", "SMOOTH_L1"], ("loss", "name"), "smooth-l1"),
    (["regress", "--schedule", "Cosine"], ("train", "schedule", "name"), "cosine"),
    (["regress", "--device", "CPU"], ("train", "device"), "cpu"),
    (["classify", "--model", "MLP"], ("model", "name"), "mlp"),
    (["classify", "--dataset", "Blobs"], ("data", "dataset"), "blobs"),
])
def test_choices_ignore_case_and_are_stored_as_registered(cli, args, key, expected):
    run = cli(*args, "--epochs", "2", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    value = run.json()["config"]
    for part in key:
        value = value[part]
    assert value == expected


def test_lists_ignore_case_too(cli):
    run = cli("compare-optimizers", "--optims", "SGD,Adam", "--seeds", "1", "--epochs", "3", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert run.json()["config"]["optims"] == ["sgd", "adam"]
    run = cli("compare-losses", "--losses", "MSE,Huber", "--seeds", "1", "--epochs", "3", "--json", "--quiet")
    assert run.exit_code == 0 and sorted(run.json()["losses"]) == ["huber", "mse"]


@pytest.mark.parametrize("args, option, hint", [
    (["regress", "--optim", "adma"], "--optim", "did you mean adam"),
    (["compare-optimizers", "--optims", "sgd,rmsprp"], "--optims", "did you mean rmsprop"),
    (["regress", "--loss", "hubber"], "--loss", "did you mean huber"),
    (["regress", "--schedule", "cosin"], "--schedule", "did you mean cosine"),
    (["classify", "--model", "mpl"], "--model", "did you mean mlp"),
    (["regress", "--device", "cpuu"], "--device", "did you mean cpu"),
    (["compare-optimizers", "--task", "clasify"], "--task", "did you mean classify"),
])
def test_a_misspelling_gets_did_you_mean(cli, args, option, hint):
    run = cli(*args)
    run.assert_usage_error(option)
    assert hint in run.stderr
