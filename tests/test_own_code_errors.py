"""A user's first own-model errors teach the fix (issue 36): a file path is an import path, a misspelt class gets a
did-you-mean and the module's nn.Module classes, `mod.Class` is answered with `mod:Class`, and a classifier given to
the regression task (the many-run commands' default) is told about --task classify."""

from __future__ import annotations

import pytest

MODELS = '''
import torch


class TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.head = torch.nn.LazyLinear(10)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


class Line(torch.nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.layer = torch.nn.Linear(in_features, 1)

    def forward(self, x):
        return self.layer(x)


def helper():
    return 1
'''


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "netmod.py").write_text(MODELS)
    (tmp_path / "mymodels.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("spec", ["sub/netmod.py:Line", "./mymodels.py:Line"])
def test_a_file_path_is_an_import_path(cli, folder, spec):
    run = cli("regress", "--model", spec, "--epochs", "2", "--quiet")
    assert run.exit_code == 0, run.stderr


@pytest.mark.parametrize("spec, words", [
    ("mymodels.Line", "did you mean mymodels:Line?"),
    ("mymodels:line", "did you mean Line? (its nn.Module classes: TinyCNN, Line)"),
    ("mymodels:Nothing", "has no attribute 'Nothing' (its nn.Module classes: TinyCNN, Line)"),
    ("sub/netmod:Line", "name the file, sub/netmod.py:Line, or sub.netmod:Line as a module"),
    ("nosuch.py:Line", "no file nosuch.py"),
    ("mymodels:TinyCNN", "trains with --task classify"),
])
def test_the_error_says_what_was_meant(cli, folder, spec, words):
    run = cli("compare-optimizers", "--model", spec, "--epochs", "1", "--seeds", "1", "--optims", "sgd")
    run.assert_usage_error("--model")
    assert words in run.stderr, run.stderr
