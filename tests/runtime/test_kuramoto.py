"""Kuramoto oscillators against the exact mean-field result, and the graph kernel against the mean
field."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from runtime.coordination.kuramoto import (
    CSR,
    Oscillators,
    coherence_gain,
    group_order,
    lorentzian_frequencies,
    order_parameter,
)

N, GAMMA = 10_000, 0.5


def steady_r(coupling: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    osc = Oscillators(
        lorentzian_frequencies(N, GAMMA), coupling, 0.05, rng.uniform(0, 2 * np.pi, N)
    )
    osc.step(1500)
    samples = []
    for _ in range(100):
        osc.step(5)
        samples.append(osc.r())
    return float(np.mean(samples))


@pytest.mark.parametrize("coupling", [1.5, 2.0, 3.0])
def test_steady_state_matches_kuramotos_exact_result_above_kc(coupling):
    assert steady_r(coupling) == pytest.approx(np.sqrt(1 - 2 * GAMMA / coupling), abs=0.03)


def test_incoherent_below_kc():
    assert steady_r(0.5) <= 0.05 + 3 / np.sqrt(N)


def test_graph_kernel_on_a_complete_graph_follows_the_mean_field():
    n = 300
    rng = np.random.default_rng(1)
    omega = rng.normal(0, 0.2, n)
    theta0 = rng.uniform(0, 2 * np.pi, n)
    csr = CSR.from_networkx(nx.complete_graph(n))
    assert csr.indices.shape[0] == n * (n - 1)
    graph = Oscillators(omega, 1.0, 0.01, theta0, csr)
    # The graph path divides by the degree (n-1); give the mean field the same effective coupling.
    field = Oscillators(omega, 1.0 * n / (n - 1), 0.01, theta0)
    for _ in range(20):
        graph.step(10)
        field.step(10)
        d = np.angle(np.exp(1j * (graph.theta - field.theta)))
        assert np.abs(d).max() < 1e-9


def test_graph_step_is_deterministic_and_local():
    g = nx.path_graph(5)
    csr = CSR.from_networkx(g)
    theta = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    osc = Oscillators(np.zeros(5), 1.0, 0.1, theta, csr)
    osc.step()
    # Only the neighbours of node 2 and node 2 itself move.
    assert osc.theta[0] == 0.0 and osc.theta[4] == 0.0
    assert osc.theta[1] == pytest.approx(0.1 * np.sin(1.0) / 2)
    assert osc.theta[2] == pytest.approx(1.0 - 0.1 * np.sin(1.0))
    again = Oscillators(np.zeros(5), 1.0, 0.1, theta, csr)
    again.step()
    assert np.array_equal(again.theta, osc.theta)


def test_group_order_gain_and_bad_input():
    theta = np.array([0.0, 0.0, np.pi, 0.0])
    assert order_parameter(theta)[0] == pytest.approx(0.5)
    r = group_order(theta, np.array([0, 0, 1, 1]), 3)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(0.0, abs=1e-12) and r[2] == 0.0
    gain = coherence_gain(theta, np.array([0, 0]), np.array([1, 2]))
    assert gain == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="edge endpoints"):
        CSR.from_edges(3, np.array([0]), np.array([3]))
    with pytest.raises(ValueError, match="0..n-1"):
        CSR.from_networkx(nx.Graph([("a", "b")]))
    with pytest.raises(ValueError, match="dt > 0"):
        Oscillators(np.zeros(2), 1.0, 0.0, np.zeros(2))


def test_strided_order_matches_the_plain_order_parameters_and_ignores_threads():
    import numba

    from runtime.coordination.kuramoto import group_order, order_parameter, strided_order

    rng = np.random.default_rng(5)
    for n, groups in ((1, 3), (7, 3), (1000, 1), (100_003, 4)):
        theta = rng.uniform(0, 2 * np.pi, n)
        r, per_group = strided_order(theta, groups)
        assert np.isclose(r, order_parameter(theta)[0], atol=1e-12)
        assert np.allclose(per_group, group_order(theta, np.arange(n) % groups, groups), atol=1e-12)
    theta = rng.uniform(0, 2 * np.pi, 200_000)
    numba.set_num_threads(1)
    try:
        one = strided_order(theta, 3)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    two = strided_order(theta, 3)
    assert one[0] == two[0] and np.array_equal(one[1], two[1])


def _reference_steps(theta, omega, csr, coupling, dt, steps):
    """The graph step written out in Python, row by row in CSR order, with economy.portable_math's
    sine and cosine."""
    from economy.portable_math import sin_cos as sincos_array

    theta = theta.copy()
    for _ in range(steps):
        s, c = sincos_array(theta)
        nxt = theta.copy()
        for i in range(csr.n):
            drift = omega[i]
            lo, hi = csr.indptr[i], csr.indptr[i + 1]
            if hi > lo:
                ss = scs = d = 0.0
                for k in range(lo, hi):
                    w, j = csr.weights[k], csr.indices[k]
                    ss += w * s[j]
                    scs += w * c[j]
                    d += w
                if d > 0.0:
                    drift += coupling * (ss * c[i] - scs * s[i]) / d
            nxt[i] = theta[i] + dt * drift
        theta = nxt
    return np.mod(theta, 2 * np.pi)


def test_graph_kernel_is_the_reference_step_bit_for_bit_serial_and_parallel():
    from runtime.coordination.kuramoto import _graph_steps_parallel, _graph_steps_serial

    rng = np.random.default_rng(7)
    n = 300
    src, dst = (
        rng.integers(0, n, 900),
        rng.integers(0, n, 900),
    )  # duplicates and self-loops included
    csr = CSR.from_edges(n, src, dst, rng.integers(1, 4, 900).astype(np.float64))
    omega, theta = rng.normal(0, 0.3, n), rng.uniform(0, 2 * np.pi, n)
    expected = _reference_steps(theta, omega, csr, 2.0, 0.05, 7)
    for kernel in (_graph_steps_serial, _graph_steps_parallel):
        got = theta.copy()
        kernel(
            got, omega, csr.indptr, csr.indices, csr.weights, 2.0, 0.05, 7, np.empty(n), np.empty(n)
        )
        assert np.array_equal(got, expected)
    osc = Oscillators(omega, 2.0, 0.05, theta, csr)
    osc.step(7)
    assert np.array_equal(osc.theta, expected)
    osc.step(0)  # no steps: nothing moves
    assert np.array_equal(osc.theta, expected)


def test_csr_keeps_narrow_arrays_only_where_they_hold_the_values_and_steps_the_same_bits():
    from runtime.coordination.kuramoto import _graph_steps_serial

    rng = np.random.default_rng(11)
    n = 400
    src, dst = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    counts = CSR.from_edges(
        n, src, dst, rng.integers(1, 2**24, 1500).astype(np.float64)
    )  # float32 holds them
    assert counts.indices.dtype == np.int32 and counts.weights.dtype == np.float32
    odd = rng.integers(1, 2**24, 1500).astype(np.float64)
    odd[5] = 2**24 + 1  # one weight float32 cannot hold: every weight stays float64
    assert CSR.from_edges(n, src, dst, odd).weights.dtype == np.float64
    assert CSR.from_edges(n, src, dst, rng.normal(size=1500)).weights.dtype == np.float64
    indices, weights = counts.wide()
    assert indices.dtype == np.int64 and weights.dtype == np.float64
    assert np.array_equal(indices, counts.indices) and np.array_equal(weights, counts.weights)
    omega, theta = rng.normal(0, 0.3, n), rng.uniform(0, 2 * np.pi, n)
    narrow, wide = theta.copy(), theta.copy()
    _graph_steps_serial(
        narrow,
        omega,
        counts.indptr,
        counts.indices,
        counts.weights,
        1.5,
        0.05,
        9,
        np.empty(n),
        np.empty(n),
    )
    _graph_steps_serial(
        wide, omega, counts.indptr, indices, weights, 1.5, 0.05, 9, np.empty(n), np.empty(n)
    )
    assert np.array_equal(narrow, wide) and not np.array_equal(narrow, theta)


@pytest.mark.parametrize("undirected", [True, False])
def test_csr_rows_are_sorted_stably_as_lexsort_sorts_them(undirected):
    rng = np.random.default_rng(3)
    n = 50
    src, dst = (
        rng.integers(0, n, 4000),
        rng.integers(0, n, 4000),
    )  # long rows, repeated pairs with other weights
    src[:300] = 7  # one row past the insertion-sort length
    w = rng.normal(size=4000)
    csr = CSR.from_edges(n, src, dst, w, undirected=undirected)
    if undirected:
        src, dst, w = np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([w, w])
    order = np.lexsort((dst, src))
    assert np.array_equal(csr.indices, dst[order]) and np.array_equal(csr.weights, w[order])
    assert np.array_equal(
        csr.indptr, np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    )
    with pytest.raises(ValueError, match="one length"):
        CSR.from_edges(n, src[:3], dst[:3], w[:2])
