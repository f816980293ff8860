"""The benchmark suite's analytic problems (issue 35): quadratic_deep's constants and Rosenbrock's optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losslab.components.benchmark_problems import (
    NOISE,
    ROSENBROCK_START,
    haar_rotation,
    quadratic_deep,
    quadratic_loss,
    rosenbrock,
)


def test_quadratic_deep_has_the_published_spectrum_and_a_rotation():
    eigenvalues, hessian = quadratic_deep()
    assert eigenvalues.max() == pytest.approx(53.129, abs=5e-4)
    assert eigenvalues.sum() == pytest.approx(477.612, abs=5e-4)
    assert 2 / eigenvalues.max() == pytest.approx(0.03764, abs=5e-6)  # gradient descent is stable below this rate
    assert (eigenvalues[:90] < 1).all() and (eigenvalues[90:] > 30).all()
    assert np.allclose(hessian, hessian.T) and np.trace(hessian) == pytest.approx(eigenvalues.sum(), rel=1e-12)
    assert np.allclose(np.sort(np.linalg.eigvalsh(hessian)), np.sort(eigenvalues), atol=1e-10)
    rotation = haar_rotation(5, np.random.RandomState(0))
    assert np.allclose(rotation @ rotation.T, np.eye(5)) and np.linalg.det(rotation) == pytest.approx(1.0)
    again, _ = quadratic_deep()
    assert np.array_equal(eigenvalues, again)  # a fixed property of the problem, not a draw per run


def test_quadratic_loss_is_the_expected_half_quadratic_form():
    _, q = quadratic_deep()
    theta = torch.ones(100, dtype=torch.float64, requires_grad=True)
    x = torch.randn(8, 100, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * NOISE
    loss = quadratic_loss(theta, x, torch.from_numpy(q))
    hessian = torch.autograd.functional.hessian(lambda t: quadratic_loss(t, x, torch.from_numpy(q)), theta.detach())
    assert torch.allclose(hessian, torch.from_numpy(q), atol=1e-12)  # the loss's Hessian is Q
    manual = np.mean([0.5 * (1 - r) @ q @ (1 - r) for r in x.numpy()])
    assert float(loss.detach()) == pytest.approx(manual, rel=1e-12)


def test_rosenbrock_is_zero_with_zero_gradient_at_one_one():
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    value = rosenbrock(theta)
    (grad,) = torch.autograd.grad(value, theta)
    assert float(value.detach()) == 0 and torch.equal(grad, torch.zeros(2, dtype=torch.float64))
    assert float(rosenbrock(torch.tensor(ROSENBROCK_START))) == pytest.approx(24.2)  # 2.2² + 100·0.44²
