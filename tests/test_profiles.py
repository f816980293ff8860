"""Performance profiles and AlgoPerf's score B (issue 35, first part) against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from losslab.profiles import profile, ratios, score

INF = math.inf
# best per problem: p1 10 (a), p2 20 (a and b tie), p3 30 (b; a missed it)
TIMES = {"a": {"p1": 10, "p2": 20, "p3": INF},
         "b": {"p1": 20, "p2": 20, "p3": 30},
         "c": {"p1": 50, "p2": INF, "p3": 60}}


def test_ratios_ties_and_misses():
    assert ratios(TIMES) == {"a": {"p1": 1.0, "p2": 1.0, "p3": INF},
                             "b": {"p1": 2.0, "p2": 1.0, "p3": 1.0},
                             "c": {"p1": 5.0, "p2": INF, "p3": 2.0}}


def test_profile_and_score_by_hand():
    taus = [1.0, 1.5, 2.0, 4.0, 5.0]
    assert profile(TIMES, taus) == {"a": [2 / 3] * 5, "b": [2 / 3, 2 / 3, 1, 1, 1], "c": [0, 0, 1 / 3, 1 / 3, 2 / 3]}
    # B = mean over problems of (4 − r) / 3 for r ≤ 4: a (1 + 1 + 0)/3, b (2/3 + 1 + 1)/3, c (0 + 0 + 2/3)/3
    assert score(TIMES) == pytest.approx({"a": 2 / 3, "b": 8 / 9, "c": 2 / 9}, rel=1e-15)
    # the same as integrating the step function numerically on a fine grid
    grid = np.linspace(1, 4, 300_001)
    for name, rho in profile(TIMES, list(grid)).items():
        assert np.trapezoid(rho, grid) / 3 == pytest.approx(score(TIMES)[name], abs=1e-5)


def test_best_everywhere_scores_one_and_missing_everything_zero():
    times = {"fast": {"p": 1.0, "q": 2.0}, "slow": {"p": 3.0, "q": 8.0}, "never": {"p": INF, "q": INF}}
    b = score(times)
    assert b["fast"] == 1.0 and b["never"] == 0.0 and b["slow"] == pytest.approx(((4 - 3) / 3 + 0) / 2)
    assert score({"x": {"p": INF}, "y": {"p": INF}}) == {"x": 0.0, "y": 0.0}  # nobody reached it


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="has times for"):
        score({"a": {"p": 1.0}, "b": {"q": 1.0}})
    with pytest.raises(ValueError, match=">= 0"):
        score({"a": {"p": -1.0}})
    with pytest.raises(ValueError, match="r_max"):
        score(TIMES, r_max=1.0)


def test_arrival_is_the_first_epoch_at_the_target_and_a_miss_is_inf():
    from losslab.profiles import arrival, median

    records = [{"epoch": 1, "valid_acc": 0.5, "elapsed_s": 0.1}, {"epoch": 2, "valid_acc": 0.96, "elapsed_s": 0.2},
               {"epoch": 3, "valid_acc": 0.97, "elapsed_s": 0.3}, {"epoch": 4, "valid_acc": 0.99, "elapsed_s": 0.4}]
    assert arrival(records, "valid_acc", ">=", 0.97, steps_per_epoch=23, evals_per_step=2) == {
        "epochs": 3.0, "steps": 69.0, "grad_evals": 138.0, "seconds": 0.3}
    assert arrival(records, "valid_acc", ">=", 0.995, 23)["steps"] == INF
    losses = [{"epoch": 1, "train_loss": float("nan")}, {"epoch": 2, "train_loss": 0.01}]
    assert arrival(losses, "train_loss", "<=", 0.02, 1)["epochs"] == 2.0  # (a NaN epoch never counts as reached)
    assert median([3.0, 1.0, INF]) == 3.0 and median([1.0, 3.0]) == 2.0 and median([1.0, INF]) == INF
