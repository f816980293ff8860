"""The external ruleset's quasi-random trials (issue 35): the same unit points for every optimizer, mapped into
each one's space exactly, replayable, independent between studies."""

from __future__ import annotations

import math

import pytest
from scipy.stats import qmc

from losslab.search_spaces import DIMENSIONS, space, trials, unit_points


def test_every_optimizer_gets_the_same_points_mapped_into_its_own_space():
    adam = trials(1e-3, ("betas", "weight_decay"), 8, study=0)
    sgd = trials(0.1, ("momentum", "weight_decay"), 8, study=0)
    points = unit_points(8, study=0)
    reference = qmc.Sobol(DIMENSIONS, scramble=True, seed=0).random(8)  # scipy's own draw
    assert [[float(u) for u in row] for row in reference] == points
    for a, s, u in zip(adam, sgd, points):
        assert a["lr"] == pytest.approx(1e-4 * 100 ** u[0], rel=1e-12)  # log-uniform over default/10 … ·10
        assert s["lr"] == pytest.approx(0.01 * 100 ** u[0], rel=1e-12)  # (the same u for every optimizer)
        assert a["betas"][0] == pytest.approx(1 - 0.02 * 10 ** u[1], rel=1e-12)
        assert a["betas"][1] == pytest.approx(1 - 0.001 * 100 ** u[2], rel=1e-12)
        assert a["weight_decay"] == pytest.approx(1e-5 * 1e4 ** u[3], rel=1e-12)
        assert s["weight_decay"] == pytest.approx(1e-5 * 1e4 ** u[1], rel=1e-12)  # its second dimension
    lrs = [t["lr"] for t in adam]
    assert all(1e-4 <= lr < 1e-2 for lr in lrs) and len(set(lrs)) == 8


def test_trials_replay_to_the_bit_and_studies_differ():
    first = trials(1e-3, ("betas",), 16, study=3, method="halton")
    assert trials(1e-3, ("betas",), 16, study=3, method="halton") == first
    assert trials(1e-3, ("betas",), 16, study=4, method="halton") != first
    recorded = unit_points(16, study=3, method="halton")
    assert trials(1e-3, ("betas",), 16, study=99, points=recorded) == first  # what a result records replays
    assert [d.name for d in space(1e-3, ())] == ["lr"]


@pytest.mark.parametrize("call, message", [
    (lambda: unit_points(0, 0), "at least 1"), (lambda: unit_points(4, 0, "random"), "unknown method"),
    (lambda: trials(0.0, (), 4, 0), "positive"), (lambda: trials(math.nan, (), 4, 0), "positive")])
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
