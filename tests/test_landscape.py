"""`losslab landscape` and its curvature against exact answers: the linear-regression surface is a closed-form
quadratic, its sharpness 2·λmax of the data's second-moment matrix (gradient descent diverging just above 2/λmax
and converging just below), an MLP's top eigenvalue and trace equal the exact Hessian's, a quadratic of known
spectrum gives it back, filter normalisation keeps each filter's norm, and batched grids equal point-by-point."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def tutorial_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(42)  # regress's default data (seed 42): x, then the noise
    x = rng.randn(100, 1)
    y = 2 * x + 3 + 0.1 * rng.randn(100, 1)
    return x[:, 0], y[:, 0]


def test_the_regression_surface_equals_the_closed_form_at_every_point(cli):
    doc = cli("landscape", "--json", "--quiet", "--device", "cpu", "--grid", "21").json()
    assert doc["mode"] == "surface" and doc["axes"] == ["weight", "bias"]
    x, y = tutorial_data()
    ws, bs = np.array(doc["x"]), np.array(doc["y"])
    exact = ((ws[None, :, None] * x + bs[:, None, None] - y) ** 2).mean(axis=2)  # rows over b, columns over w
    assert np.allclose(np.array(doc["train_loss"]), exact, rtol=1e-5, atol=0)
    xa = np.stack([x, np.ones_like(x)], axis=1)
    lam = 2 * np.linalg.eigvalsh(xa.T @ xa / len(x)).max()
    [path] = doc["paths"]
    assert path["sharpness"]["value"] == pytest.approx(lam, rel=1e-5) and path["sharpness"]["converged"]
    assert doc["trace"]["value"] == pytest.approx(2 * np.trace(xa.T @ xa / len(x)), rel=1e-5)
    assert doc["optimum"] == pytest.approx(list(np.linalg.lstsq(xa, y, rcond=None)[0]), rel=1e-5)
    assert path["coords"][0] != path["coords"][-1] and path["coords"][-1] == pytest.approx(doc["optimum"], abs=1e-4)


@pytest.mark.slow
def test_full_batch_gradient_descent_diverges_just_above_two_over_the_sharpness(cli):
    x, _ = tutorial_data()
    xa = np.stack([x, np.ones_like(x)], axis=1)
    edge = 2 / (2 * np.linalg.eigvalsh(xa.T @ xa / len(x)).max())
    below = cli("regress", "--lr", f"{0.98 * edge:.6f}", "--epochs", "5000", "--json", "--quiet", "--device", "cpu")
    above = cli("regress", "--lr", f"{1.02 * edge:.6f}", "--epochs", "5000", "--json", "--quiet", "--device", "cpu")
    assert below.json()["status"] == "ok" and below.json()["final_loss"] == pytest.approx(0.0088363, rel=1e-4)
    assert above.json()["status"] == "diverged"


def small_problem() -> tuple[torch.nn.Module, object, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    return model, torch.nn.functional.cross_entropy, x, y


def test_an_mlps_top_eigenvalue_and_trace_equal_the_exact_hessians():
    from losslab.engine.landscape import flat, hessian_trace, hvp_of, loss_at, top_eigenvalue

    model, loss_fn, x, y = small_problem()
    model = model.double()
    x = x.double()
    theta = flat(model)
    f = loss_at(model, loss_fn, x, y)
    exact = torch.autograd.functional.hessian(f, theta)
    eig = torch.linalg.eigvalsh(exact)
    top = top_eigenvalue(hvp_of(f, theta), len(theta), dtype=theta.dtype, tol=1e-10, max_iter=5000)
    assert top.converged and top.value == pytest.approx(float(eig.max()), rel=1e-4)
    trace = hessian_trace(hvp_of(f, theta), len(theta), dtype=theta.dtype)
    assert trace.exact and trace.value == pytest.approx(float(exact.trace()), rel=1e-6)


def test_a_quadratic_of_known_spectrum_gives_it_back():
    """A 100-D quadratic ½θᵀHθ with H = Q diag(λ) Qᵀ (as DeepOBS's quadratic_deep: 90 eigenvalues in [0, 1], 10 in
    [30, 60]), written here."""
    from losslab.engine.landscape import EXACT_TRACE_UP_TO, hessian_trace, hvp_of, top_eigenvalue

    g = torch.Generator().manual_seed(42)
    lam = torch.cat([torch.rand(90, generator=g, dtype=torch.float64),
                     30 + 30 * torch.rand(10, generator=g, dtype=torch.float64)])
    q, _ = torch.linalg.qr(torch.randn(100, 100, generator=g, dtype=torch.float64))
    h = q @ torch.diag(lam) @ q.T

    def f(theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * theta @ h @ theta

    theta = torch.randn(100, generator=g, dtype=torch.float64)
    top = top_eigenvalue(hvp_of(f, theta), 100, dtype=torch.float64, tol=1e-12, max_iter=20000)
    assert top.value == pytest.approx(float(lam.max()), rel=1e-6)
    assert hessian_trace(hvp_of(f, theta), 100, dtype=torch.float64).value == pytest.approx(float(lam.sum()),
                                                                                              rel=1e-9)
    assert EXACT_TRACE_UP_TO >= 100
    import losslab.engine.landscape as surface

    old, surface.EXACT_TRACE_UP_TO = surface.EXACT_TRACE_UP_TO, 10  # Hutchinson's estimate instead
    try:
        est = surface.hessian_trace(hvp_of(f, theta), 100, dtype=torch.float64, samples=400)
    finally:
        surface.EXACT_TRACE_UP_TO = old
    assert not est.exact and abs(est.value - float(lam.sum())) <= 4 * est.std_error


def test_filter_normalisation_gives_each_filter_its_weights_norm_and_leaves_biases_out():
    from losslab.engine.landscape import filter_normalised

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3))
    d = filter_normalised(model, torch.Generator().manual_seed(1))
    offset = 0
    for p in model.parameters():
        part = d[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.dim() <= 1:
            assert torch.count_nonzero(part) == 0
        else:
            assert torch.allclose(part.reshape(len(p), -1).norm(dim=1), p.detach().reshape(len(p), -1).norm(dim=1),
                                  rtol=1e-5)


def test_a_batched_grid_equals_the_model_evaluated_point_by_point():
    from losslab.engine.landscape import filter_normalised, flat, grid_points, losses, losses_one_by_one

    model, loss_fn, x, y = small_problem()
    g = torch.Generator().manual_seed(3)
    d1, d2 = filter_normalised(model, g), filter_normalised(model, g)
    points = grid_points(flat(model), d1, d2, [-1.0, 0.0, 0.5, 1.0], [-1.0, 0.0, 1.0])
    assert torch.allclose(losses(model, loss_fn, x, y, points, budget=10_000),
                          losses_one_by_one(model, loss_fn, x, y, points), rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        assert losses(model, loss_fn, x, y, points[4:5]) == pytest.approx(float(loss_fn(model(x), y)), rel=1e-6)


@pytest.mark.slow
def test_four_optimizers_start_from_one_point_on_one_surface(cli, tmp_path):
    run = cli("landscape", "--optims", "sgd,momentum,adam,rmsprop", "--json", "--quiet", "--device", "cpu",
              "--out", str(tmp_path / "o"))
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    starts = {tuple(p["coords"][0]) for p in doc["paths"]}
    assert len(doc["paths"]) == 4 and len(starts) == 1
    assert {p["optimizer"]: p["lr"] for p in doc["paths"]} == {"sgd": 0.1, "momentum": 0.05, "adam": 0.01,
                                                               "rmsprop": 0.01}
    assert (tmp_path / "o" / "landscape.png").stat().st_size > 0


@pytest.mark.slow
def test_the_line_and_the_plane_of_a_classifier(cli):
    common = ["landscape", "--task", "classify", "--dataset", "blobs", "--epochs", "15", "--json", "--quiet",
              "--device", "cpu", "--grid", "11"]
    line = cli(*common, "--line")
    assert line.exit_code == 0, line.stderr
    doc = line.json()
    ts = doc["x"]
    assert doc["mode"] == "line" and ts[0] == pytest.approx(-0.25) and ts[-1] == pytest.approx(1.25)
    assert len(doc["train_loss"]) == len(ts) == 13 and len(doc["valid_loss"]) == 13  # 11, and t = 0 and 1
    train = dict(zip([round(t, 6) for t in ts], doc["train_loss"]))
    assert train[1.0] < train[0.0]  # the final weights fit better than the initial ones
    plane = cli(*common, "--plane", "--directions", "pca")
    assert plane.exit_code == 0, plane.stderr
    doc = plane.json()
    [path] = doc["paths"]
    assert doc["mode"] == "plane" and doc["axes"][0].startswith("PC1")
    assert path["coords"][-1] == pytest.approx([0.0, 0.0], abs=1e-4)  # the plane goes through the final weights
    centre = doc["train_loss"][5][5]
    assert centre == pytest.approx(min(min(row) for row in doc["train_loss"]), rel=0.5)


def test_bad_landscape_options_are_one_line(cli, tmp_path):
    for args, option in ((["--grid", "2"], "--grid"), (["--range", "0"], "--range"), (["--line", "--plane"], "--line"),
                         (["--line", "--directions", "pca"], "--directions"), (["--optims", "sgd,sgd"], "--optims"),
                         (["--optims", "sgd,adam", "--lr", "0.1"], "--lr"), (["--directions", "up"], "--directions"),
                         (["--optims", "sgdd"], "--optims"), (["--out", "/dev/null"], "--out")):
        cli("landscape", *args).assert_usage_error(option)
    assert math.isfinite(1.0)


@pytest.mark.slow
def test_tracked_sharpness_is_recorded_every_k_epochs_and_equals_the_closed_form(cli, tmp_path):
    run = cli("regress", "--track-sharpness", "100", "--out", str(tmp_path / "o"), "--quiet", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    import csv

    rows = list(csv.DictReader((tmp_path / "o" / "history.csv").open()))
    measured = {int(r["epoch"]): float(r["sharpness"]) for r in rows if r["sharpness"]}
    assert sorted(measured) == list(range(100, 1001, 100))
    x, _ = tutorial_data()
    xa = np.stack([x, np.ones_like(x)], axis=1)
    lam = 2 * np.linalg.eigvalsh(xa.T @ xa / len(x)).max()
    assert all(v == pytest.approx(lam, rel=1e-3) for v in measured.values())
    assert (tmp_path / "o" / "sharpness.png").stat().st_size > 0
    for args, option in ((["--track-sharpness", "0"], "--track-sharpness"),
                         (["--sharpness-samples", "0"], "--sharpness-samples")):
        cli("regress", *args).assert_usage_error(option)


@pytest.mark.slow
def test_many_run_commands_track_sharpness_one_run_at_a_time(cli, tmp_path):
    run = cli("compare-optimizers", "--optims", "sgd,adam", "--seeds", "1", "--epochs", "20", "--track-sharpness",
              "10", "--json", "--quiet", "--device", "cpu", "--out", str(tmp_path / "o"))
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert all(r["status"] == "ok" for o in doc["optimizers"].values() for r in o["runs"])
    assert (tmp_path / "o" / "sharpness.png").stat().st_size > 0
    import csv

    rows = list(csv.DictReader((tmp_path / "o" / "history.csv").open()))
    assert sorted({(r["optimizer"], int(r["epoch"])) for r in rows if r["sharpness"]}) == [
        ("adam", 10), ("adam", 20), ("sgd", 10), ("sgd", 20)]


def test_the_edge_of_stability_is_named_before_a_divergence_and_while_training_at_it():
    from losslab.engine.diagnosis import Context, diagnose

    def records(sharp: list[float], losses: list[float], lr: float) -> list[dict]:
        return [{"epoch": i + 1, "train_loss": loss, "lr": lr, "grad_norm": 1.0, "sharpness": s}
                for i, (s, loss) in enumerate(zip(sharp, losses))]

    at_edge = records([1.0, 1.9, 1.98, 1.99, 2.0, 1.99], [1.0, 0.8, 0.85, 0.6, 0.62, 0.5], 1.0)
    [edge] = [f for f in diagnose(at_edge, Context()) if f.code == "edge-of-stability"]
    assert "reached 2 at epoch 5" in edge.message and "non-monotonically" in edge.message
    smooth = records([1.0, 1.1, 1.2], [1.0, 0.8, 0.6], 1.0)
    assert "edge-of-stability" not in [f.code for f in diagnose(smooth, Context())]
    blown = records([1.0, 2.5, math.nan], [1.0, 3.0, math.inf], 1.0)
    found = [f for f in diagnose(blown, Context(status="diverged", diverged_epoch=3)) if f.code == "edge-of-stability"]
    assert found and "passed 2 at epoch 2" in found[0].message and "2/λmax ≈ 0.8" in found[0].suggestion


@pytest.mark.slow
def test_the_line_between_two_saved_runs(cli, tmp_path):
    a, b, c = (str(tmp_path / n) for n in ("a.pt", "b.pt", "c.pt"))
    first = cli("regress", "--save", a, "--json", "--quiet", "--device", "cpu")
    second = cli("regress", "--save", b, "--epochs", "5", "--json", "--quiet", "--device", "cpu")
    assert first.exit_code == second.exit_code == 0, second.stderr
    run = cli("landscape", "--between", a, b, "--grid", "11", "--json", "--quiet", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    line = dict(zip([round(t, 6) for t in doc["x"]], doc["train_loss"]))
    assert doc["mode"] == "line" and [p["optimizer"] for p in doc["paths"]] == ["a.pt", "b.pt"]
    assert line[0.0] == pytest.approx(first.json()["final_loss"], rel=1e-6)
    assert line[1.0] == pytest.approx(second.json()["final_loss"], rel=1e-6)
    assert cli("classify", "--save", c, "--epochs", "1", "--quiet", "--device", "cpu").exit_code == 0
    cli("landscape", "--between", a, c).assert_usage_error("--between")
    cli("landscape", "--between", a, b, "--plane").assert_usage_error("--between")
    cli("landscape", "--between", a, str(tmp_path / "none.pt")).assert_usage_error("--between")
