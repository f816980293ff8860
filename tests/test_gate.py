"""`losslab gate` and `losslab diff`: intervals equal scipy's, planted regressions are caught with 5 seeds, an
unchanged invocation raises few false alarms, diff names exactly what changed, bad input is one line."""

from __future__ import annotations

import json
import math
import sys

import pytest

PLANT = '''
import torch
from sklearn.datasets import load_digits, make_circles

_d = load_digits()
X = torch.tensor(_d.data, dtype=torch.float32)
Y = torch.tensor(_d.target)


def full():
    return (X[:1200], Y[:1200]), (X[1200:], Y[1200:])


def fewer():  # 10 % of the training rows lost, the same validation rows
    return (X[:1080], Y[:1080]), (X[1200:], Y[1200:])


def scaled(pred, target):  # the loss scaled by 0.2
    return 0.2 * torch.nn.functional.cross_entropy(pred, target)


def circles():
    x, y = make_circles(n_samples=600, noise=0.1, factor=0.4, random_state=0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


class Deep(torch.nn.Sequential):
    def __init__(self, in_features, classes):
        super().__init__(torch.nn.Linear(in_features, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                         torch.nn.ReLU(), torch.nn.Linear(32, classes))


class Shallow(torch.nn.Sequential):  # Deep with its hidden layers lost
    def __init__(self, in_features, classes):
        super().__init__(torch.nn.Linear(in_features, classes))
'''


@pytest.fixture
def plant(tmp_path, monkeypatch):
    (tmp_path / "plant.py").write_text(PLANT)
    monkeypatch.delitem(sys.modules, "plant", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def side(options: dict, seeds: list[int], cwd) -> object:
    from losslab.api import _config
    from losslab.commands.gate.samples import run_seeds

    invocation = {"command": "classify", "options": {k.replace("_", "-"): v for k, v in options.items()},
                  "cwd": str(cwd)}
    return run_seeds(invocation, seeds, _config, "now")


# --- the statistics --------------------------------------------------------------------------------------------

def test_intervals_equal_scipys_paired_and_welch():
    from scipy import stats

    from losslab.verdicts import compare

    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 5.5}
    b = {0: 1.1, 1: 2.3, 2: 2.9, 3: 4.4, 4: 5.9}
    paired = compare(a, b, lower_is_better=True, alpha=0.05, tolerance=0.0)
    ref = stats.ttest_rel(list(b.values()), list(a.values())).confidence_interval(0.95)
    assert paired.paired and paired.low == pytest.approx(ref.low) and paired.high == pytest.approx(ref.high)
    shifted = {s + 10: v for s, v in b.items()}  # no seed in common: independent samples
    welch = compare(a, shifted, lower_is_better=True, alpha=0.1, tolerance=0.0)
    ref = stats.ttest_ind(list(b.values()), list(a.values()), equal_var=False).confidence_interval(0.9)
    assert not welch.paired and welch.low == pytest.approx(ref.low) and welch.high == pytest.approx(ref.high)


def test_verdicts_follow_the_interval_and_the_tolerance():
    from losslab.verdicts import compare

    a = {s: 1.0 + 0.01 * s for s in range(5)}
    worse = {s: v + 0.5 + 0.001 * s for s, v in a.items()}
    assert compare(a, worse, lower_is_better=True, alpha=0.05, tolerance=0.0).verdict == "regressed"
    assert compare(a, worse, lower_is_better=False, alpha=0.05, tolerance=0.0).verdict == "improved"
    assert compare(a, worse, lower_is_better=True, alpha=0.05, tolerance=1.0).verdict == "unchanged"
    assert compare(a, worse, lower_is_better=None, alpha=0.05, tolerance=0.0).verdict == "changed"
    noisy = {s: v + (0.3 if s % 2 else -0.3) for s, v in a.items()}
    assert compare(a, noisy, lower_is_better=True, alpha=0.05, tolerance=0.01).verdict == "inconclusive"
    assert compare(a, dict(a), lower_is_better=True, alpha=0.05, tolerance=0.0).verdict == "unchanged"
    one = compare({0: 1.0}, {0: 1.2}, lower_is_better=True, alpha=0.05, tolerance=0.0)
    assert one.verdict == "inconclusive" and one.low is None and one.detectable is None


def test_curves_separate_where_the_medians_leave_the_seed_spread():
    from losslab.verdicts import separation

    base = {0: [5.0, 3.0, 2.0, 1.0], 1: [5.2, 3.1, 2.1, 1.05]}
    same_start = {0: [5.1, 3.05, 3.0, 3.0], 1: [5.1, 3.05, 3.1, 3.1]}
    area, first = separation(base, same_start)
    assert first == 3 and area == pytest.approx((0 + 0 + 1.0 + 2.025) / 4, rel=1e-6)  # medians 2.05, 1.025
    assert separation(base, base) == (0.0, None)


# --- planted regressions, false alarms -------------------------------------------------------------------------

DIGITS = {"dataset": "plant:full", "epochs": 2, "optim": "sgd", "lr": 0.02, "batch_size": 32}
CIRCLES = {"dataset": "plant:circles", "model": "plant:Deep", "epochs": 20, "optim": "adam", "lr": 0.01}


@pytest.mark.slow
@pytest.mark.parametrize("base, change, hurt", [
    (DIGITS, {"lr": 0.01}, "accuracy"),  # the learning rate halved
    (DIGITS, {"loss": "plant:scaled"}, "accuracy"),  # the loss scaled by 0.2 (its own value looks better)
    (DIGITS, {"dataset": "plant:fewer"}, "accuracy"),  # 10 % of the training rows lost
    (CIRCLES, {"model": "plant:Shallow"}, "accuracy"),  # the model lost its hidden layers
])
def test_a_planted_regression_is_caught_with_five_seeds(plant, base, change, hurt):
    from losslab.commands.gate import GateOptions, judge

    seeds = list(range(5))
    rows = judge(GateOptions("x"), side(base, seeds, plant), side({**base, **change}, seeds, plant))
    verdict = {r.metric: r for r in rows}
    assert verdict[hurt].comparison.verdict == "regressed" and verdict[hurt].fails
    assert verdict[hurt].comparison.paired and verdict[hurt].comparison.n_candidate == 5


@pytest.mark.slow
def test_an_unchanged_invocation_raises_few_false_alarms(plant):
    """20 independent pairs of seed sets (5 seeds each, no seed shared: Welch's interval) of one invocation whose
    seeds really differ (mini-batch SGD). A false alarm is a `regressed` verdict. At alpha 0.05 a two-sided interval
    lies wholly on the worse side in at most 2.5 % of pairs for each metric; we allow 3 of 20 per metric (for a true
    rate of 5 %, P(more than 3 of 20) = 1.6 %), and at most 4 in all for the two metrics of the report's headline."""
    from losslab.commands.gate import GateOptions, judge

    alarms = {"accuracy": 0, "final_loss": 0, "best_loss": 0, "epochs_to_target": 0}
    for i in range(20):
        base = side(DIGITS, list(range(10 * i, 10 * i + 5)), plant)
        cand = side(DIGITS, list(range(10 * i + 5, 10 * i + 10)), plant)
        for r in judge(GateOptions("x"), base, cand):
            assert not r.comparison.paired
            alarms[r.metric] += r.comparison.verdict == "regressed"
    assert max(alarms.values()) <= 3 and alarms["accuracy"] + alarms["final_loss"] <= 4, alarms


# --- the command ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gate_reruns_a_baseline_and_its_document_is_the_next_baseline(cli, tmp_path):
    base = cli("regress", "--json", "--quiet", "--device", "cpu")
    (tmp_path / "base.json").write_text(base.stdout)
    first = cli("gate", str(tmp_path / "base.json"), "--json")
    assert first.exit_code == 0, first.stderr
    doc = first.json()
    assert doc["candidate"]["seeds"] == [0, 1, 2, 3, 4] and doc["baseline"]["seeds"] == [0]
    assert "the baseline has 1 seed of the 5 asked" in " ".join(doc["notes"])
    (tmp_path / "g.json").write_text(first.stdout)
    md, out = tmp_path / "gate.md", tmp_path / "o"
    again = cli("gate", str(tmp_path / "g.json"), "--json", "--markdown", str(md), "--out", str(out))
    assert again.exit_code == 0, again.stderr
    rows = {m["metric"]: m for m in again.json()["metrics"]}
    assert rows["final_loss"]["verdict"] == "unchanged" and rows["final_loss"]["paired"]
    assert rows["final_loss"]["seeds"] == [5, 5]
    assert again.json()["curves"][0]["separates_at_epoch"] is None
    assert "| final_loss |" in md.read_text() and "![loss curves](o/gate.png)" in md.read_text()
    assert (out / "gate.png").stat().st_size > 0 and json.loads((out / "result.json").read_text())["status"] == "ok"
    slow = cli("regress", "--lr", "0.05", "--json", "--quiet", "--device", "cpu")
    (tmp_path / "slow.json").write_text(slow.stdout)
    (tmp_path / "gs.json").write_text(cli("gate", str(tmp_path / "slow.json"), "--json").stdout)
    caught = cli("gate", str(tmp_path / "g.json"), str(tmp_path / "gs.json"))
    assert caught.exit_code == 1 and "epochs_to_target" in caught.stdout and "regressed ✗" in caught.stdout
    forgiven = cli("gate", str(tmp_path / "g.json"), str(tmp_path / "gs.json"), "--tolerance", "epochs_to_target=50")
    assert forgiven.exit_code == 0, forgiven.stdout
    stale = cli("gate", str(tmp_path / "gs.json"), str(tmp_path / "g.json"), "--fail-on-improvement",
                "--tolerance", "optimum_distance=1")
    assert stale.exit_code == 1 and "improved ✗" in stale.stdout


@pytest.mark.slow
def test_gate_on_a_many_run_result_compares_each_entry_and_the_winner(cli, tmp_path):
    args = ["compare-optimizers", "--optims", "sgd,adam", "--seeds", "3", "--epochs", "100", "--json", "--quiet"]
    (tmp_path / "c.json").write_text(cli(*args).stdout)
    run = cli("gate", str(tmp_path / "c.json"), "--seeds", "3", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert {(m["entry"], m["metric"]) for m in doc["metrics"]} >= {("sgd", "final_loss"), ("adam", "final_loss")}
    facts = {f["name"]: f for f in doc["facts"]}
    assert all(m["verdict"] == "unchanged" for m in doc["metrics"]) and facts["winner"]["same"]


@pytest.mark.slow
def test_diff_lists_exactly_the_changed_options_and_the_shared_metrics(cli, tmp_path):
    a = cli("regress", "--epochs", "200", "--json", "--quiet", "--device", "cpu")
    b = cli("regress", "--epochs", "300", "--lr", "0.05", "--json", "--quiet", "--device", "cpu")
    (tmp_path / "a.json").write_text(a.stdout)
    (tmp_path / "b.json").write_text(b.stdout)
    run = cli("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert [o["option"] for o in doc["options"]] == ["optim.lr", "train.epochs"]
    assert [(o["a"], o["b"]) for o in doc["options"]] == [(0.1, 0.05), (200, 300)]
    [loss] = [m for m in doc["metrics"] if m["metric"] == "final_loss"]
    assert loss["a"] == a.json()["final_loss"] and loss["b"] == b.json()["final_loss"]
    many = cli("compare-losses", "--losses", "mse,l1", "--seeds", "1", "--epochs", "50", "--json", "--quiet")
    (tmp_path / "m.json").write_text(many.stdout)
    across = cli("diff", str(tmp_path / "a.json"), str(tmp_path / "m.json"))
    assert across.exit_code == 0
    assert "different commands: compared where the metrics share names (final_loss)" in across.stdout
    assert "(command)" in across.stdout and "mse final_loss" in across.stdout


@pytest.mark.slow
def test_bad_results_are_one_line_and_exit_2(cli, tmp_path):
    good = cli("regress", "--epochs", "20", "--json", "--quiet", "--device", "cpu").stdout
    cases = {
        "not_losslab.json": ("{\"a\": 1}", "is not a losslab result"),
        "truncated.json": (good[: len(good) // 2], "truncated or not JSON"),
        "newer.json": (good.replace('"losslab": "', '"losslab": "99.'), "newer than this"),
    }
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        for args in (["gate", str(tmp_path / name)], ["diff", str(tmp_path / name), str(tmp_path / name)]):
            run = cli(*args)
            run.assert_usage_error("BASELINE" if args[0] == "gate" else "A")
            assert needle in run.stderr
    (tmp_path / "r.json").write_text(good)
    (tmp_path / "c.json").write_text(cli("classify", "--epochs", "1", "--json", "--quiet").stdout)
    other = cli("gate", str(tmp_path / "r.json"), str(tmp_path / "c.json"))
    other.assert_usage_error("CANDIDATE")
    assert "a classify result, the baseline a regress result" in other.stderr
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(20)))
    data = cli("regress", "--data", str(tmp_path / "d.csv"), "--epochs", "20", "--json", "--quiet")
    (tmp_path / "d.json").write_text(data.stdout)
    (tmp_path / "d.csv").unlink()
    gone = cli("gate", str(tmp_path / "d.json"))
    gone.assert_usage_error("--data")
    for args, option in ((["--alpha", "0.7"], "--alpha"), (["--seeds", "0"], "--seeds"),
                         (["--tolerance", "loss"], "--tolerance"), (["--tolerance", "nosuch=1"], "--tolerance"),
                         (["--tolerance", "final_loss=-1"], "--tolerance"), (["--markdown", str(tmp_path)],
                                                                             "--markdown"),
                         (["--out", str(tmp_path / "r.json")], "--out")):
        cli("gate", str(tmp_path / "r.json"), *args).assert_usage_error(option)


def test_gate_and_diff_from_python(cli, tmp_path):
    import losslab

    (tmp_path / "r.json").write_text(cli("regress", "--epochs", "300", "--json", "--quiet", "--device", "cpu").stdout)
    answer = losslab.gate(str(tmp_path / "r.json"), seeds=2, tolerance={"final_loss": "5%"})
    assert answer.status == "ok" and answer.document()["command"] == "gate"
    assert {r.metric for r in answer.rows} == {"final_loss"} and answer.rows[0].comparison.n_candidate == 2
    assert losslab.diff(str(tmp_path / "r.json"), str(tmp_path / "r.json")).options == []
    with pytest.raises(losslab.ConfigError, match="--alpha"):
        losslab.gate(str(tmp_path / "r.json"), alpha=2)


def test_a_rerun_whose_runs_all_fail_exits_4(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "flaky.py").write_text("import torch\n\ndef loss(pred, target):\n"
                                       "    return torch.nn.functional.mse_loss(pred, target)\n")
    monkeypatch.delitem(sys.modules, "flaky", raising=False)
    base = cli("regress", "--loss", "flaky:loss", "--epochs", "20", "--json", "--quiet", "--device", "cpu")
    assert base.exit_code == 0, base.stderr
    (tmp_path / "base.json").write_text(base.stdout)
    (tmp_path / "flaky.py").write_text(  # passes the checks before training, fails from the 10th epoch on
        "import torch\nCALLS = [0]\n\ndef loss(pred, target):\n"
        "    CALLS[0] += len(pred) == 100 and pred.dtype == torch.float32  # (the gradient check is float64)\n"
        "    if CALLS[0] >= 10:\n        raise RuntimeError('broken by the change')\n"
        "    return torch.nn.functional.mse_loss(pred, target)\n")
    monkeypatch.delitem(sys.modules, "flaky", raising=False)
    run = cli("gate", str(tmp_path / "base.json"), "--seeds", "2")
    assert run.exit_code == 4, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "every run of the rerun" in lines[0] and "Traceback" not in run.stderr


@pytest.mark.slow
def test_ctrl_c_during_a_rerun_is_one_line_and_exit_130(cli, tmp_path):
    """(typer turns a KeyboardInterrupt into a silent exit 130: the command must still say it stopped.)"""
    import os
    import shutil
    import signal
    import subprocess
    import time
    from pathlib import Path

    assert cli("regress", "--epochs", "20", "--out", str(tmp_path / "b"), "--quiet", "--no-plot").exit_code == 0
    doc = json.loads((tmp_path / "b" / "result.json").read_text())
    doc["invocation"]["options"]["epochs"] = 3_000_000  # a rerun of minutes
    (tmp_path / "long.json").write_text(json.dumps(doc))
    exe = shutil.which("losslab", path=str(Path(sys.executable).parent)) or "losslab"
    proc = subprocess.Popen([exe, "gate", str(tmp_path / "long.json"), "--rerun-baseline"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=tmp_path)
    time.sleep(6)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["losslab: interrupted"], err


@pytest.mark.parametrize("args", [
    ("regress", "--epochs", "5"), ("classify", "--epochs", "1", "--subset", "200"),
    ("compare-optimizers", "--epochs", "5", "--seeds", "2"), ("lr-sweep", "--epochs", "5", "--num", "3"),
    ("lr-sweep", "--range-test", "--steps", "20"), ("compare-losses", "--epochs", "5", "--seeds", "2"),
], ids=lambda a: " ".join(a[:2]))
def test_every_commands_document_passes_the_field_checks(cli, args):
    from losslab.outputs.documents import check_document

    run = cli(*args, "--json", "--quiet", "--device", "cpu")
    assert run.exit_code in (0, 1), run.stderr
    check_document(run.json(), "r.json", "RESULT")


@pytest.mark.parametrize("change, needle", [
    (dict(versions="0.1.0"), "field 'versions' must be a table (got str)"),
    (dict(final_loss=float("nan")), "status 'ok' with final_loss nan"),
    (dict(params=[1, 2]), "field 'params' must be a table (got list)"),
    (dict(config="abc"), "field 'config' must be a table"),
    (dict(epochs_run="20"), "field 'epochs_run' must be a number"),
    (dict(versions={"losslab": "99.0"}), "newer than this"),
])
@pytest.mark.parametrize("command", ["gate", "diff", "replay"])
def test_a_damaged_result_is_one_line_naming_the_file_and_field(cli, tmp_path, change, needle, command):
    base = cli("regress", "--epochs", "5", "--json", "--quiet", "--device", "cpu")
    (tmp_path / "a.json").write_text(base.stdout)
    (tmp_path / "b.json").write_text(json.dumps({**base.json(), **change}))
    b = str(tmp_path / "b.json")
    args = {"gate": (b, "--seeds", "2"), "diff": (str(tmp_path / "a.json"), b), "replay": (b,)}[command]
    run = cli(command, *args)
    run.assert_usage_error("b.json")
    assert needle in run.stderr


def test_a_candidate_that_lost_seeds_the_baseline_finished_has_regressed():
    """NaN or missing where the baseline is finite is the worst change; it once read as inconclusive (exit 0)."""
    from losslab.verdicts import compare

    base = {0: 0.5, 1: 0.51, 2: 0.49}
    for cand, lost in (({0: math.nan, 1: math.nan, 2: math.nan}, 3), ({}, 3), ({0: 0.5, 1: 0.51, 2: math.inf}, 1),
                       ({5: 0.5, 6: math.nan}, 1)):  # the last: unpaired seeds, one of the candidate's diverged
        c = compare(base, cand, lower_is_better=True, alpha=0.05, tolerance=0.0)
        assert c.verdict == "regressed" and c.lost == lost
    unpaired = compare(base, {5: 0.5, 6: 0.51, 7: 0.49}, lower_is_better=True, alpha=0.05, tolerance=0.0)
    assert unpaired.lost == 0 and unpaired.verdict != "regressed"
    assert compare(base, {0: math.nan}, lower_is_better=None, alpha=0.05, tolerance=0.0).verdict == "inconclusive"


def test_gate_fails_a_diverged_candidate(cli, tmp_path):
    base = cli("regress", "--epochs", "30", "--json", "--quiet", "--device", "cpu")
    cand = cli("regress", "--epochs", "30", "--lr", "5", "--json", "--quiet", "--device", "cpu")
    assert base.exit_code == 0 and cand.exit_code == 3
    (tmp_path / "b.json").write_text(base.stdout)
    (tmp_path / "c.json").write_text(cand.stdout)
    run = cli("gate", str(tmp_path / "b.json"), str(tmp_path / "c.json"))
    assert run.exit_code == 1, (run.stdout, run.stderr)
    assert "regressed without an interval" in run.stdout + run.stderr


def test_no_none_reaches_the_report_a_missing_winner_is_no_clear_winner(cli, tmp_path):
    run = cli("compare-optimizers", "--optims", "sgd,adam", "--seeds", "1", "--epochs", "5", "--json", "--quiet")
    doc = run.json()
    (tmp_path / "a.json").write_text(json.dumps(doc))
    (tmp_path / "b.json").write_text(json.dumps({**doc, "winner": None}))
    text = cli("gate", str(tmp_path / "a.json"), str(tmp_path / "b.json")).stdout
    assert f"winner: {doc['winner']} → no clear winner  (changed)" in text and "None" not in text


def test_values_of_two_different_losses_are_not_comparable(cli, tmp_path):
    for name, loss in (("a", "cross-entropy"), ("b", "focal")):
        run = cli("classify", "--epochs", "2", "--loss", loss, "--json", "--quiet")
        (tmp_path / f"{name}.json").write_text(run.stdout)
    gated = cli("gate", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json")
    assert gated.exit_code == 0
    verdicts = {r["metric"]: r["verdict"] for r in gated.json()["metrics"]}
    assert verdicts["final_loss"] == verdicts["valid_loss"] == "not comparable"
    assert verdicts["accuracy"] != "not comparable"  # (a fraction of the same validation rows)
    assert "not comparable: final_loss, valid_loss — the loss changed (cross-entropy → focal)" in gated.json()["notes"]


def test_a_one_seed_candidate_says_how_to_get_seeds_and_min_seeds_fails_it(cli, tmp_path):
    run = cli("classify", "--epochs", "2", "--json", "--quiet")
    (tmp_path / "a.json").write_text(run.stdout)
    plain = cli("gate", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--json")
    assert plain.exit_code == 0
    assert any(n.startswith("the candidate has 1 seed:") and f"losslab gate {tmp_path / 'a.json'}" in n
               for n in plain.json()["notes"])
    strict = cli("gate", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--min-seeds", "3", "--json")
    assert strict.exit_code == 1 and strict.json()["status"] == "too few seeds"
    cli("gate", str(tmp_path / "a.json"), "--min-seeds", "1").assert_usage_error("--min-seeds")


def test_the_markdown_says_what_changed_and_the_seeds(cli, tmp_path):
    for name, lr in (("a", "0.1"), ("b", "0.05")):
        (tmp_path / f"{name}.json").write_text(cli("regress", "--epochs", "30", "--lr", lr, "--json", "--quiet").stdout)
    cli("gate", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--markdown", str(tmp_path / "g.md"))
    text = (tmp_path / "g.md").read_text()
    assert text.startswith("### losslab gate: **") and "**What changed:** `optim.lr` 0.1 → 0.05." in text
    assert "**Seeds:** baseline 0; candidate 0." in text


def test_an_option_change_is_gated_in_one_command(cli, tmp_path):
    (tmp_path / "base.json").write_text(cli("regress", "--epochs", "100", "--json", "--quiet").stdout)
    run = cli("gate", str(tmp_path / "base.json"), "--set", "optim.lr=0.01", "--seeds", "3", "--json",
              "--markdown", str(tmp_path / "g.md"))
    assert run.exit_code == 1, run.stderr  # a tenth of the rate does not converge in 100 epochs: regressed
    doc = run.json()
    assert doc["candidate"]["seeds"] == doc["baseline"]["seeds"] == [0, 1, 2]  # the baseline's missing seeds rerun
    assert {m["metric"]: m["verdict"] for m in doc["metrics"]}["final_loss"] == "regressed"
    assert "**What changed:** `optim.lr` 0.1 → 0.01." in (tmp_path / "g.md").read_text()
    same = cli("gate", str(tmp_path / "base.json"), "--set", "lr=0.1", "--seeds", "2", "--json")
    assert same.exit_code == 0 and {m["verdict"] for m in same.json()["metrics"]} == {"unchanged"}
    cli("gate", str(tmp_path / "base.json"), "--set", "lrr=0.01").assert_usage_error("--set")
    cli("gate", str(tmp_path / "base.json"), "--set", "lr").assert_usage_error("--set")
    cli("gate", str(tmp_path / "base.json"), str(tmp_path / "base.json"), "--set", "lr=1").assert_usage_error("--set")
