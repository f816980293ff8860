"""`losslab benchmark` (issue 35, its first form: the defaults ruleset on a suite): steps to target equal what a
single run's records give, the score is profiles.score of the table, misses are null, bad input is one line."""

from __future__ import annotations

import pytest

import losslab
from losslab.profiles import score

pytestmark = pytest.mark.slow  # (a suite trains two problems per optimizer)


def test_the_tiny_suite_counts_steps_to_target_as_single_runs_do(cli):
    run = cli("benchmark", "--optims", "sgd,adam", "--suite", "tiny", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    regression = doc["problems"]["regression"]
    single = losslab.regress(optim="sgd", epochs=300, progress=False)
    target = 1.01 * single.document()["optimum"]["loss"]
    assert regression["target"] == pytest.approx(target, rel=1e-12)
    first = next(i for i, v in enumerate(single.history["train_loss"], start=1) if v <= target)
    assert regression["optimizers"]["sgd"]["steps"] == first  # full batch: one step per epoch
    digits = losslab.classify(optim="adam", epochs=10, model="mlp", progress=False)
    reached = next((i for i, v in enumerate(digits.history["valid_acc"], start=1) if v >= 0.95), None)
    steps = doc["problems"]["digits-mlp"]["optimizers"]["adam"]["steps"]
    assert steps == (None if reached is None else reached * 23)  # 1,437 training rows / 64 per batch
    inf = float("inf")
    times = {o: {p: doc["problems"][p]["optimizers"][o]["steps"] or inf for p in doc["problems"]}
             for o in ("sgd", "adam")}
    assert doc["score"] == pytest.approx(score(times))
    text = cli("benchmark", "--optims", "sgd,adam").stdout
    assert "score B" in text and "regression" in text


def test_bad_input_is_one_line(cli, tmp_path):
    cli("benchmark", "--optims", "adam").assert_usage_error("--optims")
    cli("benchmark", "--optims", "adam,sgd", "--suite", "huge").assert_usage_error("--suite")
    cli("benchmark", "--optims", "adam,sgd", "--ruleset", "external").assert_usage_error("--ruleset")
    cli("benchmark", "--optims", "adam,nosuch").assert_usage_error("--optims")
    bad = tmp_path / "s.toml"
    bad.write_text('[[problem]]\nname = "a"\ncommand = "regress"\ntarget = "valid_acc >= 0.9"\nbudget = 3\n')
    cli("benchmark", "--optims", "adam,sgd", "--suite", str(bad)).assert_usage_error("--suite")


def test_ctrl_c_keeps_the_problems_finished_and_exits_130(cli, monkeypatch):
    """A problem Ctrl-C stopped is neither a miss nor a result: it is left out, and the command says so."""
    from losslab.commands import benchmark

    real = benchmark.run_problem

    def stopped_on_digits(sp, cfg, build):
        return {"status": "interrupted"} if sp.name == "digits-mlp" else real(sp, cfg, build)

    monkeypatch.setattr(benchmark, "run_problem", stopped_on_digits)
    run = cli("benchmark", "--optims", "sgd,adam")
    assert run.exit_code == 130
    assert "interrupted: 1 problem(s) finished" in run.stdout and "digits-mlp" not in run.stdout
    doc = cli("benchmark", "--optims", "sgd,adam", "--json").json()
    assert doc["status"] == "interrupted" and list(doc["problems"]) == ["regression"]
