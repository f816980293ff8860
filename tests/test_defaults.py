"""One default per setting: every command called with no options builds exactly the config its dataclasses give
by default (so a default changed in one place and not the other fails here), and help text that depends on a
registry is generated from it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from losslab import config as C
from losslab.cli import configs as B
from losslab.cli import typer_app as T
from losslab.cli.options import OPTS, Given
from losslab.components.optimizers import OPTIMIZERS


def called_with_defaults(command, **given):
    """The `Given` a command receives when only `given` options are typed (the rest at their declared defaults)."""
    defaults = {name: p.default for name, p in inspect.signature(command).parameters.items()}
    return Given({**defaults, **given}, defaults)


def differences(a, b, path=""):
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and type(a) is type(b):
        return [d for f in dataclasses.fields(a) for d in differences(getattr(a, f.name), getattr(b, f.name),
                                                                      f"{path}.{f.name}")]
    return [] if a == b else [f"{path}: CLI {a!r}, config {b!r}"]


CASES = {
    "regress": (lambda: B.regress_config(called_with_defaults(T.regress)), lambda: C.RegressConfig()),
    "classify": (lambda: B.classify_config(called_with_defaults(T.classify)), lambda: C.ClassifyConfig()),
    "compare-optimizers": (lambda: B.compare_config(called_with_defaults(T.compare_optimizers)),
                           lambda: C.CompareConfig(run=C.RegressConfig())),
    "compare-optimizers classify": (
        lambda: B.compare_config(called_with_defaults(T.compare_optimizers, task="classify")),
        lambda: C.CompareConfig(run=C.ClassifyConfig())),
    "compare-losses": (lambda: B.compare_losses_config(called_with_defaults(T.compare_losses)),
                       lambda: C.CompareLossesConfig(run=C.RegressConfig())),
    "lr-sweep": (lambda: B.sweep_config(called_with_defaults(T.lr_sweep)),
                 lambda: C.SweepConfig(run=C.RegressConfig())),
    "lr-sweep range test": (lambda: B.sweep_config(called_with_defaults(T.lr_sweep, range_test=True)),
                            lambda: C.SweepConfig(run=C.RegressConfig(), range_test=True)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_defaults_build_the_config_defaults(case):
    from_cli, from_config = CASES[case]
    assert differences(from_cli(), from_config().resolved()) == []


def test_optimizer_option_help_lists_the_optimizers_that_accept_it():
    for option in ("momentum", "weight_decay", "betas", "eps"):
        takers = [e.name for e in OPTIMIZERS if option in e.meta["accepts"]]
        assert takers and f"({', '.join(takers)})" in OPTS[option].help


def test_a_config_resolves_once():
    """`resolved()` says it is resolved and returns itself when asked again; a changed copy is resolved anew."""
    cfg = C.RegressConfig()
    assert not cfg.is_resolved
    once = cfg.resolved()
    assert once.is_resolved and once.resolved() is once and once.optim.lr == 0.1
    changed = dataclasses.replace(once, optim=C.OptimConfig("adam"))
    assert not changed.is_resolved and changed.resolved().optim.lr == 0.01
    assert "_resolved" not in once.to_dict()
    many = C.CompareConfig(run=C.RegressConfig()).resolved()
    assert many.is_resolved and many.run.is_resolved and many.resolved() is many
