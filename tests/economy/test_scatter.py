"""economy.scatter.add_at: np.add.at's result bit for bit, and its refusals."""

import numpy as np
import pytest

from economy.scatter import add_at


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_add_at_equals_numpy_with_repeated_indices(dtype: type) -> None:
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 50, 5000)  # every index repeats about 100 times: order matters for floats
    vals: np.ndarray = (rng.normal(size=5000) * 1e6).astype(dtype)
    start: np.ndarray = (rng.normal(size=50) * 1e3).astype(dtype)
    want, got = start.copy(), start.copy()
    np.add.at(want, idx, vals)
    add_at(got, idx, vals)
    assert want.tobytes() == got.tobytes()


def test_add_at_scalar_and_boolean_values() -> None:
    idx = np.array([3, 1, 3, 0])
    flags = np.array([True, False, True, True])
    for out, values in (
        (np.zeros(5, np.int64), flags),
        (np.zeros(5), flags),
        (np.zeros(5), 1.0),
        (np.zeros(5, np.int64), 1),
    ):
        want = out.copy()
        np.add.at(want, idx, values)
        add_at(out, idx, values)
        assert want.tolist() == out.tolist()
    out = np.zeros(3)
    add_at(out, np.empty(0, np.int64), np.empty(0))
    assert out.tolist() == [0.0, 0.0, 0.0]


def test_add_at_refuses_bad_indices_and_changes_nothing() -> None:
    out = np.arange(4, dtype=np.float64)
    for idx in ([0, 4], [-1, 2]):
        with pytest.raises(IndexError, match=r"outside \[0, 4\)"):
            add_at(out, np.array(idx), np.ones(2))
        assert out.tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="3 indices but values of shape"):
        add_at(out, np.array([0, 1, 2]), np.ones(2))
    with pytest.raises(ValueError, match="integer indices"):
        add_at(out, np.array([0.5]), np.ones(1))
    assert out.tolist() == [0.0, 1.0, 2.0, 3.0]
