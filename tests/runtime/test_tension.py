"""Tension: the spectral min-cut approximation against exact Stoer–Wagner."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from runtime.coordination.tension import tension


def planted(n: int, p_in: float, bridges: int, seed: int) -> nx.Graph:
    """Two dense random halves joined by ``bridges`` unit edges."""
    rng = np.random.default_rng(seed)
    g = nx.Graph()
    half = n // 2
    for lo, hi in ((0, half), (half, n)):
        for i in range(lo, hi):
            for j in range(i + 1, hi):
                if rng.random() < p_in:
                    g.add_edge(i, j, weight=1.0)
    for k in range(bridges):
        g.add_edge(k, half + k, weight=1.0)
    return g


@pytest.mark.parametrize("seed", range(5))
def test_spectral_is_exact_on_a_planted_bottleneck(seed):
    g = planted(120, 0.5, bridges=1 + seed % 3, seed=seed)
    exact = tension(g, method="exact")
    approx = tension(g, method="spectral")
    assert exact.cut == approx.cut == 1 + seed % 3
    assert approx.side in (frozenset(range(60)), frozenset(range(60, 120)))
    assert approx.value == pytest.approx(exact.value) and approx.value > 0.8


def test_spectral_error_on_random_graphs_is_bounded_and_reported():
    errors = []
    for seed in range(30):
        # Block models whose sparse bridges sometimes beat the weakest node and sometimes do not.
        sizes = [20 + (seed * 7) % 40, 30 + (seed * 11) % 50, 10 + (seed * 5) % 30]
        g = nx.stochastic_block_model(
            sizes, [[0.4, 0.02, 0.01], [0.02, 0.3, 0.03], [0.01, 0.03, 0.5]], seed=seed
        )
        if not nx.is_connected(g):
            continue
        for u, v in g.edges:
            g[u][v]["weight"] = 1.0 + (u * 7 + v * 3) % 5
        exact = tension(g, method="exact").cut
        approx = tension(g, method="spectral").cut
        assert approx >= exact - 1e-9  # any cut found is at least the minimum
        errors.append((approx - exact) / exact)
    assert len(errors) >= 10
    print(
        f"spectral min-cut relative error, {len(errors)} block-model graphs: mean "
        f"{np.mean(errors):.3f}, max {np.max(errors):.3f}"
    )
    assert np.mean(errors) < 0.05
    geo = []
    for seed in range(20):  # random geometric graphs: no planted structure, the sweep can miss
        g = nx.random_geometric_graph(150, 0.16, seed=seed)
        if nx.is_connected(g):
            exact = tension(g, method="exact").cut
            approx = tension(g, method="spectral").cut
            assert approx >= exact - 1e-9
            geo.append((approx - exact) / exact)
    print(
        f"spectral min-cut relative error, {len(geo)} random geometric graphs: mean "
        f"{np.mean(geo):.3f}, max {np.max(geo):.3f}"
    )
    assert len(geo) >= 10 and np.mean(geo) < 0.25


def test_split_graph_has_tension_one_and_a_clique_zero():
    g = nx.disjoint_union(nx.complete_graph(5), nx.complete_graph(5))
    assert tension(g).value == 1.0 and tension(g).method == "disconnected"
    assert tension(nx.complete_graph(8)).value == pytest.approx(0.0)
    with pytest.raises(ValueError, match="undirected"):
        tension(nx.DiGraph([(0, 1)]))
    with pytest.raises(ValueError, match="method"):
        tension(nx.complete_graph(3), method="magic")


def test_edge_arrays_give_the_graph_reading_and_bad_arrays_are_refused():
    from runtime.coordination.tension import tension_of_edges

    g = planted(120, 0.5, bridges=2, seed=1)
    u, v = np.array([e[0] for e in g.edges]), np.array([e[1] for e in g.edges])
    reading = tension_of_edges(
        u + 1000, v + 1000, np.ones(u.size), method="spectral"
    )  # any node ids
    assert reading.cut == 2 and reading.side in (
        frozenset(range(1000, 1060)),
        frozenset(range(1060, 1120)),
    )
    assert reading.value == pytest.approx(tension(g).value)
    with pytest.raises(ValueError, match="one length"):
        tension_of_edges(u, v, np.ones(u.size - 1))
    with pytest.raises(ValueError, match="self-loops"):
        tension_of_edges(np.array([0, 1]), np.array([0, 2]), np.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        tension_of_edges(np.array([0, 1]), np.array([1, 2]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="at least two nodes"):
        tension_of_edges(np.array([], np.int64), np.array([], np.int64), np.array([]))


@pytest.mark.parametrize("ids", ["dense", "offset", "negative", "sparse", "int32", "float"])
def test_node_relabelling_is_np_unique(ids):
    from runtime.coordination.tension import relabel

    rng = np.random.default_rng(7)
    nodes = rng.integers(0, 5_000, 20_000)
    nodes = {
        "dense": nodes,
        "offset": nodes + 10**6,
        "negative": nodes - 2_500,
        "sparse": nodes * 10**9,
        "int32": nodes.astype(np.int32),
        "float": nodes / 2,
    }[ids]
    labels, inverse = relabel(nodes)
    want_labels, want_inverse = np.unique(nodes, return_inverse=True)
    assert labels.tolist() == want_labels.tolist() and inverse.tolist() == want_inverse.tolist()
    assert (labels[inverse] == nodes).all()
