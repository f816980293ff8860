"""Benchmark suites (issue 35): targets, the built-in suites and a user's suite file, with one-line errors."""

from __future__ import annotations

import pytest

from losslab.config.suite import SUITES, Target, parse_target, read_suite
from losslab.errors import ConfigError


def test_targets_read_numbers_and_references():
    assert parse_target("valid_acc >= 0.97", "classify") == Target("valid_acc", ">=", 0.97)
    assert parse_target("train_loss<=1.01*optimum", "regress") == Target("train_loss", "<=", None, "optimum", 1.01)
    assert parse_target("valid_loss <= trigram", "lm").text() == "valid_loss <= trigram"
    assert parse_target("train_loss <= 1.01 * optimum", "regress").text() == "train_loss <= 1.01 * optimum"


@pytest.mark.parametrize("text, command, words", [
    ("accuracy >= 0.9", "classify", "unknown metric"), ("valid_acc >= 0.9", "regress", "records no valid_acc"),
    ("valid_acc <= 0.9", "classify", "reached from below"), ("valid_acc >= 97", "classify", "(0, 1]"),
    ("valid_loss <= optimum", "lm", "not a number or a reference of lm"), ("valid_acc 0.9", "classify", "expected"),
    ("train_loss <= -1 * optimum", "regress", "factor must be positive")])
def test_bad_targets_are_one_line(text, command, words):
    with pytest.raises(ConfigError) as err:
        parse_target(text, command)
    assert err.value.option == "--suite" and words in err.value.message and "\n" not in err.value.message


def test_the_built_in_suites():
    small = SUITES["small"]
    assert [p.name for p in small.problems] == ["quadratic", "rosenbrock", "regression", "digits-mlp", "digits-cnn",
                                                "shakespeare-char"]
    assert {p.command for p in small.problems} == {"regress", "classify", "lm"}
    assert all(p.budget > 0 and p.note for p in small.problems)
    assert {p.name for p in SUITES["tiny"].problems} < {p.name for p in small.problems}


def test_a_users_suite_file(tmp_path):
    good = tmp_path / "suite.toml"
    good.write_text('[[problem]]\nname = "mine"\ncommand = "classify"\ntarget = "valid_acc >= 0.9"\nbudget = 12\n'
                    'options = { dataset = "mydata:train", model = "mymodel:Net", batch-size = 32 }\n')
    suite = read_suite(str(good))
    (p,) = suite.problems
    assert (suite.name, p.name, p.budget) == ("suite", "mine", 12)
    assert p.option_dict() == {"dataset": "mydata:train", "model": "mymodel:Net", "batch_size": 32}


@pytest.mark.parametrize("text, words", [
    ("", "no [[problem]]"), ("[[problem]]\nname = 1\n", "name must be a str"),
    ('[[problem]]\nname = "a"\ncommand = "regress"\ntarget = "train_loss <= 0.1"\n', "no budget"),
    ('[[problem]]\nname = "a"\ncommand = "sweep"\ntarget = "train_loss <= 0.1"\nbudget = 3\n', "choose from"),
    ('[[problem]]\nname = "a"\ncommand = "regress"\ntarget = "train_loss <= 0.1"\nbudget = 0\n', "from 1"),
    ('[[problem]]\nname = "a"\ncommand = "regress"\ntarget = "train_loss <= 0.1"\nbudget = true\n', "must be a int"),
    ('[[problem]]\nname = "a"\ncommand = "regress"\ntarget = "valid_acc >= 0.9"\nbudget = 3\n', "records no"),
    ('[[problem]]\nname = "a"\ncommand = "regress"\ntarget = "train_loss <= 1"\nbudget = 3\nepochs = 3\n',
     "unknown key 'epochs'"),
    ('[[problem]]\nname = "a"\ncommand = "regress"\ntarget = "train_loss <= 1"\nbudget = 3\n' * 2, "used twice"),
    ("[[problem]\n", "is not TOML")])
def test_bad_suite_files_are_one_line(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_suite(str(path))
    assert err.value.option == "--suite" and words in err.value.message, err.value.message
    with pytest.raises(ConfigError, match="cannot read"):
        read_suite(str(tmp_path / "missing.toml"))
