import numpy as np
import pytest

from losslab.components.regression_data import least_squares, param_names, read_csv, synthetic
from losslab.errors import ConfigError


def test_default_data_is_the_five_line_tutorial_set():
    np.random.seed(42)
    x = np.random.randn(100, 1)
    noise = np.random.randn(100, 1)
    y = 2 * x + 3 + 0.1 * noise
    data = synthetic()
    assert data.x.dtype == np.float32 and data.x.shape == (100, 1)
    np.testing.assert_array_equal(data.x, x.astype(np.float32))
    np.testing.assert_array_equal(data.y, y.astype(np.float32))
    assert data.true_w == (2.0,) and data.true_b == 3.0


def test_synthetic_many_features_and_options():
    data = synthetic(samples=50, features=3, true_w=(1.0, -2.0, 0.5), true_b=-1.0, noise=0.0, seed=7)
    assert data.x.shape == (50, 3) and data.y.shape == (50, 1)
    np.testing.assert_allclose(data.y[:, 0], data.x @ np.array([1.0, -2.0, 0.5]) - 1.0, rtol=1e-5, atol=1e-5)
    assert data.param_names == ["w1", "w2", "w3", "b"]
    assert not np.array_equal(synthetic(seed=1).x, synthetic(seed=2).x)


def test_param_names():
    assert param_names(1) == ["w", "b"]
    assert param_names(2) == ["w1", "w2", "b"]


def test_least_squares_matches_polyfit_and_recovers_exact_data():
    data = synthetic()
    w, b = least_squares(data.x, data.y)
    slope, intercept = np.polyfit(data.x[:, 0].astype(np.float64), data.y[:, 0].astype(np.float64), 1)
    assert w[0] == pytest.approx(slope, rel=1e-10) and b == pytest.approx(intercept, rel=1e-10)
    exact = synthetic(samples=20, features=2, true_w=(1.5, -0.5), true_b=0.25, noise=0.0)
    w, b = least_squares(exact.x, exact.y)
    np.testing.assert_allclose(w, [1.5, -0.5], atol=1e-5)
    assert b == pytest.approx(0.25, abs=1e-5)


def test_read_csv_with_and_without_header(tmp_path):
    body = "1,2,5\n2,0,3\n3,1,6\n"
    (tmp_path / "h.csv").write_text("a,b,target\n" + body)
    (tmp_path / "n.csv").write_text(body)
    for name in ("h.csv", "n.csv"):
        data = read_csv(str(tmp_path / name))
        np.testing.assert_array_equal(data.x, [[1, 2], [2, 0], [3, 1]])
        np.testing.assert_array_equal(data.y, [[5], [3], [6]])
        assert data.true_w is None and data.features == 2


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("x,y\n", "no data rows"),
    ("1\n2\n3\n", "one column"),
    ("1,2\n3,abc\n", "line 2, column 2: 'abc' is not a number"),
    ("1,2\n3,nan\n", "not finite"),
    ("1,2\n3,4,5\n", "3 cells, expected 2"),
])
def test_read_csv_errors_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        read_csv(str(path))
    assert err.value.option == "--data"
    assert message in err.value.message


def test_read_csv_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_csv(str(tmp_path / "absent.csv"))


@pytest.mark.parametrize("n, batch", [(100, 10), (103, 16), (1438, 64)])
def test_the_in_memory_batch_order_is_the_textbook_dataloaders(n, batch):
    """`DataLoader(..., shuffle=True, generator=torch.Generator().manual_seed(seed))`, epoch after epoch."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from losslab.engine.batches import epoch_order

    loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(5))
    ours = torch.Generator().manual_seed(5)
    for _ in range(4):
        assert torch.equal(torch.cat([b for (b,) in loader]), epoch_order(n, ours))
