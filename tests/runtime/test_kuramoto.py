"""Kuramoto oscillators against the exact mean-field result, and the graph kernel against the mean field."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from runtime.kuramoto import CSR, Oscillators, coherence_gain, group_order, lorentzian_frequencies, order_parameter

N, GAMMA = 10_000, 0.5


def steady_r(coupling: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    osc = Oscillators(lorentzian_frequencies(N, GAMMA), coupling, 0.05, rng.uniform(0, 2 * np.pi, N))
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

    from runtime.kuramoto import group_order, order_parameter, strided_order

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
