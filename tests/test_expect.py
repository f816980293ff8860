import pytest

from losslab.errors import ConfigError
from losslab.expect import check_names, evaluate, parse_expectation


@pytest.mark.parametrize("spec, op, value, tol", [
    ("w=2±0.05", "approx", 2.0, 0.05),
    ("w=2+-0.05", "approx", 2.0, 0.05),
    ("b = 3 +/- 0.1", "approx", 3.0, 0.1),
    ("accuracy>=0.95", ">=", 0.95, 0.0),
    ("final_loss<=1e-2", "<=", 0.01, 0.0),
    ("epochs_run=1000", "approx", 1000.0, 0.0),
    ("winner=adam", "==", "adam", 0.0),
])
def test_parse_forms(spec, op, value, tol):
    exp = parse_expectation(spec)
    assert (exp.op, exp.value, exp.tol) == (op, value, tol)


@pytest.mark.parametrize("spec", ["w~2", "=2", "w=2±abc", "w>=", "w=2±-1", "w>=nan", "2w=1"])
def test_bad_specs_are_usage_errors(spec):
    with pytest.raises(ConfigError) as err:
        parse_expectation(spec)
    assert err.value.option == "--expect"


def test_evaluate_passes_and_fails():
    metrics = {"w": 1.98, "b": 3.2, "final_loss": 0.009, "winner": "adam"}
    outcomes = evaluate(["w=2±0.05", "b=3±0.05", "winner=adam", "final_loss<=0.01"], metrics, target_loss=0.001)
    assert [o.passed for o in outcomes] == [True, False, True, True, False]
    assert "FAILED: b=3±0.05 (got 3.2)" == outcomes[1].describe()


def test_non_finite_actual_never_passes():
    assert not evaluate(["final_loss<=1"], {"final_loss": float("nan")})[0].passed
    assert not evaluate(["w=2±100"], {"w": float("inf")})[0].passed


def test_unknown_names_are_caught_before_training():
    check_names(["w=2±1"], ["w", "b"])
    with pytest.raises(ConfigError, match="unknown name 'z'.*available: w, b"):
        check_names(["z=2±1"], ["w", "b"])


@pytest.mark.parametrize("spec, needle", [("w=abc", "w is a number"), ("w=>1.5", "did you mean w>=1.5"),
                                          ("w=1,97", "the decimal point is '.'"), ("b!=x", "b is a number")])
def test_text_where_the_metric_is_a_number_is_malformed_not_a_failed_expectation(cli, spec, needle):
    run = cli("regress", "--epochs", "3", "--quiet", "--expect", spec)
    run.assert_usage_error("--expect")
    assert needle in run.stderr


def test_text_metrics_still_take_words(cli):
    run = cli("compare-optimizers", "--optims", "sgd,adam", "--epochs", "3", "--seeds", "1", "--quiet",
              "--expect", "winner=sgd", "--device", "cpu")
    assert run.exit_code in (0, 1), run.stderr
