"""Tension: how close the interaction graph is to splitting, from its minimum cut, in [0, 1].

``tension = 1 − mincut / min_weighted_degree``. The minimum cut is never above the smallest
weighted degree (cut one node off), so tension is 0 when the weakest point is a single node and 1
when the graph is already split. Small graphs use networkx's exact Stoer–Wagner; large ones a
spectral sweep cut (Fiedler vector of the normalised Laplacian), which is an upper bound on the
minimum cut -- so an approximate tension is never an over-estimate. Healing and governance read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

EXACT_LIMIT = 200  # nodes; Stoer–Wagner is O(n·m + n² log n)


@dataclass(frozen=True)
class Tension:
    """A minimum-cut reading: the cut weight, one side of it, the method, and the tension."""

    cut: float
    side: frozenset[object]
    min_degree: float
    method: str  # "stoer_wagner" | "spectral" | "disconnected"

    @property
    def value(self) -> float:
        """Tension in [0, 1]."""
        if self.min_degree <= 0:
            return 1.0
        return float(min(1.0, max(0.0, 1.0 - self.cut / self.min_degree)))


def _sweep_cut(graph: nx.Graph, weight: str) -> tuple[float, frozenset[object]]:
    nodes = list(graph.nodes)
    n = len(nodes)
    a = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight=weight, format="csr").astype(np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    d = sp.diags(1.0 / np.sqrt(deg))
    lap = sp.identity(n) - d @ a @ d
    if n <= 500:
        _, vecs = np.linalg.eigh(lap.toarray())
        fiedler = vecs[:, 1]
    else:
        _, vecs = spla.eigsh(lap, k=2, which="SA", tol=1e-8, v0=np.ones(n))
        fiedler = vecs[:, 1]
    order = np.argsort(fiedler / np.sqrt(deg), kind="stable")
    inside = np.zeros(n, dtype=bool)
    cut = 0.0
    best, best_k = np.inf, 1
    for k, v in enumerate(order[:-1], start=1):
        lo, hi = a.indptr[v], a.indptr[v + 1]
        w_in = a.data[lo:hi][inside[a.indices[lo:hi]]].sum()
        cut += deg[v] - 2 * w_in
        inside[v] = True
        if cut < best - 1e-12:
            best, best_k = cut, k
    side = frozenset(nodes[i] for i in order[:best_k])
    v_min = int(np.argmin(deg))
    if deg[v_min] < best:  # a single weakest node beats the sweep
        return float(deg[v_min]), frozenset([nodes[v_min]])
    return float(best), side


def tension(graph: nx.Graph, weight: str = "weight", method: str = "auto") -> Tension:
    """Minimum cut and tension of an undirected graph (``method``: auto, exact or spectral)."""
    if method not in ("auto", "exact", "spectral"):
        raise ValueError(f"method must be auto, exact or spectral, got {method!r}")
    if graph.is_directed():
        raise ValueError("tension needs an undirected graph")
    if graph.number_of_nodes() < 2:
        raise ValueError("tension needs at least two nodes")
    degrees = dict(graph.degree(weight=weight))
    min_degree = float(min(degrees.values()))
    if not nx.is_connected(graph):
        return Tension(0.0, frozenset(next(iter(nx.connected_components(graph)))), min_degree, "disconnected")
    if method == "exact" or (method == "auto" and graph.number_of_nodes() <= EXACT_LIMIT):
        cut, (side, _) = nx.stoer_wagner(graph, weight=weight)
        return Tension(float(cut), frozenset(side), min_degree, "stoer_wagner")
    cut, side = _sweep_cut(graph, weight)
    return Tension(cut, side, min_degree, "spectral")
