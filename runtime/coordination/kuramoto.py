"""Kuramoto oscillators: each agent carries a phase and a natural frequency, coupled along a graph.

``dθ_i/dt = ω_i + (K / d_i) Σ_j w_ij sin(θ_j − θ_i)``, integrated with explicit Euler steps of
``dt``, where ``d_i = Σ_j w_ij`` (so all-to-all coupling with unit weights is the classical mean
field ``K r sin(ψ − θ_i)`` up to the 1/(N−1) vs 1/N normalisation). The graph step is one O(E)
numba kernel over CSR arrays (a sine and a cosine per node from ``economy.portable_math``, then
multiply-adds per edge, using ``sin(θj − θi) = sin θj cos θi − cos θj sin θi``), parallel over nodes
with a fixed summation order per node, so the result does not depend on the thread count or the
machine; ``runtime.coordination.kuramoto_torch`` is the same step in torch, bit for bit; all-to-all
coupling has an O(N) mean-field path.

The order parameter ``r e^{iψ} = mean(e^{iθ})`` says how synchronised a group is (1 = in phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
import numpy.typing as npt
from numba import njit, prange

from economy.portable_math import sin_cos, sincos

TWO_PI = 2 * np.pi


@dataclass(frozen=True)
class CSR:
    """Compressed sparse rows of a weighted graph: ``indptr: int64[N+1]``, ``indices[E]`` and
    ``weights[E]`` (each undirected edge appears in both rows).

    Built by :meth:`from_edges`, the arrays are as narrow as holds them exactly: ``indices`` int32
    (int64 for graphs of 2³¹ nodes or more), ``weights`` float32 when every weight is a float32
    value (counts below 2²⁴, say), float64 otherwise. The kernels widen each value as they read it,
    so the steps are the same bits as over int64 and float64 arrays; :meth:`wide` gives those.
    """

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int32] | npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32] | npt.NDArray[np.float64]

    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(self.indptr.shape[0] - 1)

    @classmethod
    def from_edges(
        cls,
        n: int,
        src: npt.NDArray[np.int64],
        dst: npt.NDArray[np.int64],
        weights: npt.NDArray[np.float64] | None = None,
        undirected: bool = True,
    ) -> CSR:
        """Build from edge lists (nodes ``0..n-1``); undirected edges are stored both ways."""
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        w = np.ones(src.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != src.shape or dst.shape != src.shape:
            raise ValueError(
                f"src, dst and weights need one length, got {src.shape[0]}, {dst.shape[0]}, "
                f"{w.shape[0]}"
            )
        if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
            raise ValueError(f"edge endpoints must be in [0, {n})")
        if undirected:
            src, dst, w = (
                np.concatenate([src, dst]),
                np.concatenate([dst, src]),
                np.concatenate([w, w]),
            )
        indices: npt.NDArray[np.int32] | npt.NDArray[np.int64] = (
            np.empty(src.shape[0], dtype=np.int32)
            if n < 2**31
            else np.empty(src.shape[0], dtype=np.int64)
        )
        narrow = w.astype(np.float32)
        weights = np.empty(
            src.shape[0], dtype=np.float32 if np.array_equal(narrow, w) else np.float64
        )
        del narrow
        indptr = _csr_sorted(n, src, dst, w, indices, weights)
        return cls(indptr, indices, weights)

    def wide(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """``indices`` as int64 and ``weights`` as float64 (the same values)."""
        return self.indices.astype(np.int64), self.weights.astype(np.float64)

    @classmethod
    def from_networkx(cls, graph: nx.Graph, weight: str = "weight") -> CSR:
        """Build from a networkx graph whose nodes are ``0..n-1`` (edge attribute ``weight``,
        default 1)."""
        n = graph.number_of_nodes()
        if set(graph.nodes) != set(range(n)):
            raise ValueError(
                "graph nodes must be the integers 0..n-1 (use nx.convert_node_labels_to_integers)"
            )
        edges = np.array(
            [(u, v, d.get(weight, 1.0)) for u, v, d in graph.edges(data=True)], dtype=np.float64
        ).reshape(-1, 3)
        return cls.from_edges(
            n,
            edges[:, 0].astype(np.int64),
            edges[:, 1].astype(np.int64),
            edges[:, 2],
            undirected=not graph.is_directed(),
        )


@njit(cache=True)
def _csr_sorted(n, src, dst, w, indices, weights):
    # Rows by a counting sort on the source (stable: equal pairs keep their input order), then each
    # row by destination, stably: what np.lexsort((dst, src)) gives, in O(E) for short rows. Fills
    # ``indices`` and ``weights`` (of whatever width holds the values), returns ``indptr``.
    indptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(src.shape[0]):
        indptr[src[e] + 1] += 1
    for i in range(n):
        indptr[i + 1] += indptr[i]
    fill = indptr[:-1].copy()
    for e in range(src.shape[0]):
        p = fill[src[e]]
        indices[p] = dst[e]
        weights[p] = w[e]
        fill[src[e]] = p + 1
    for i in range(n):
        lo = indptr[i]
        hi = indptr[i + 1]
        if hi - lo > 32:  # a long row: a stable merge sort
            order = np.argsort(indices[lo:hi], kind="mergesort")
            indices[lo:hi] = indices[lo:hi][order]
            weights[lo:hi] = weights[lo:hi][order]
        else:  # a short one: insertion sort, stable
            for a in range(lo + 1, hi):
                key = indices[a]
                kw = weights[a]
                b = a - 1
                while b >= lo and indices[b] > key:
                    indices[b + 1] = indices[b]
                    weights[b + 1] = weights[b]
                    b -= 1
                indices[b + 1] = key
                weights[b + 1] = kw
    return indptr


@njit(inline="always")
def _graph_steps_body(theta, omega, indptr, indices, weights, coupling, dt, steps, sin_t, cos_t):
    # sin(θj − θi) = sin θj cos θi − cos θj sin θi: a sine and a cosine per node
    # (economy.portable_math: the
    # same bits on every machine, vectorised), then only multiply-adds per edge. Sines and cosines
    # live in two arrays, not one of pairs: the pair layout stops the vectoriser and, measured on
    # the
    # marketplace's graph at 10^6 nodes, gathers no faster. Each node's sum runs over its row in CSR
    # order, so the result does not depend on the thread count. A node's new phase is written in
    # place: its neighbours are read through the sines and cosines taken before the pass, so no
    # second phase array is needed. After the last step phases are taken modulo 2π (as np.mod does),
    # in a pass of its own: inside the last step's loop the modulo slowed every step's loop (a sixth
    # of the steps' time at 10^4 nodes), though the values are the same.
    n = theta.shape[0]
    for _ in range(steps):
        for i in prange(n):
            sin_t[i], cos_t[i] = sincos(theta[i])
        for i in prange(n):
            drift = omega[i]
            lo = indptr[i]
            hi = indptr[i + 1]
            if hi > lo:
                ss = 0.0
                scs = 0.0
                d = 0.0
                for k in range(lo, hi):
                    w = weights[k]
                    j = indices[k]
                    ss += w * sin_t[j]
                    scs += w * cos_t[j]
                    d += w
                if d > 0.0:
                    drift += coupling * (ss * cos_t[i] - scs * sin_t[i]) / d
            theta[i] = theta[i] + dt * drift
    if steps > 0:
        for i in prange(n):
            theta[i] = theta[i] % TWO_PI


# Threads pay off on large graphs only; the result is the same either way (per-node sums in a fixed
# order). Two functions of their own, not two compilations of one: numba's on-disk cache keys a
# function by its name and signature, not by its options, so two cached forms of one function would
# load each other's code (the parallel one then ran on one thread).
@njit(cache=True, parallel=True)
def _graph_steps_parallel(
    theta, omega, indptr, indices, weights, coupling, dt, steps, sin_t, cos_t
):
    _graph_steps_body(theta, omega, indptr, indices, weights, coupling, dt, steps, sin_t, cos_t)


@njit(
    cache=True, nogil=True
)  # without the GIL: runtime.coordination.service steps it beside the populations
def _graph_steps_serial(theta, omega, indptr, indices, weights, coupling, dt, steps, sin_t, cos_t):
    _graph_steps_body(theta, omega, indptr, indices, weights, coupling, dt, steps, sin_t, cos_t)


PARALLEL_NODES = 1 << 15


def _modulus(c: npt.ArrayLike, s: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``sqrt(c² + s²)``: correctly rounded operations only (``hypot`` comes from the C library,
    whose variants may differ in the last bit between processors)."""
    c, s = np.asarray(c, dtype=np.float64), np.asarray(s, dtype=np.float64)
    return np.sqrt(c * c + s * s)


def order_parameter(theta: npt.NDArray[np.float64]) -> tuple[float, float]:
    """``(r, ψ)`` of the phases: r in [0, 1] (the same bits on every CPU); ψ in (−π, π] by the C
    library's ``atan2``, for inspection (nothing recorded reads it)."""
    sin_t, cos_t = sin_cos(theta)
    c, s = float(cos_t.sum()), float(sin_t.sum())
    n = max(int(np.asarray(theta).size), 1)
    return float(_modulus(c, s)) / n, math.atan2(s, c)


def group_order(
    theta: npt.NDArray[np.float64], groups: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.float64]:
    """Order parameter of each group: ``float64[n_groups]`` (0 for an empty group)."""
    sin_t, cos_t = sin_cos(theta)
    c = np.bincount(groups, weights=cos_t, minlength=n_groups)
    s = np.bincount(groups, weights=sin_t, minlength=n_groups)
    size = np.bincount(groups, minlength=n_groups)
    return _modulus(c, s) / np.maximum(size, 1)


@njit(cache=True, parallel=True)
def _strided_sums(theta, n_groups, chunks):
    # Cosine and sine sums of node i into group i % n_groups, over fixed index chunks (each summed
    # in
    # order, then the chunks in order): the same floats whatever the thread count.
    n = theta.shape[0]
    part = np.zeros((chunks, 2, n_groups))
    size = (n + chunks - 1) // chunks
    for c in prange(chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            g = i % n_groups
            sin_i, cos_i = sincos(theta[i])
            part[c, 0, g] += cos_i
            part[c, 1, g] += sin_i
    out = np.zeros((2, n_groups))
    for c in range(chunks):
        for g in range(n_groups):
            out[0, g] += part[c, 0, g]
            out[1, g] += part[c, 1, g]
    return out


def strided_order(
    theta: npt.NDArray[np.float64], n_groups: int
) -> tuple[float, npt.NDArray[np.float64]]:
    """Global order parameter and that of each group ``i % n_groups`` (regions by account id), in
    one pass: ``(r, float64[n_groups])``. Equal to :func:`order_parameter` and :func:`group_order`
    to rounding (a different summation order)."""
    n = theta.shape[0]
    if n == 0:
        return 0.0, np.zeros(n_groups)
    sums = _strided_sums(theta, n_groups, 64)
    size = n // n_groups + (np.arange(n_groups) < n % n_groups)
    r_groups = _modulus(sums[0], sums[1]) / np.maximum(size, 1)
    return float(_modulus(sums[0].sum(), sums[1].sum())) / n, r_groups


def lorentzian_frequencies(n: int, gamma: float, center: float = 0.0) -> npt.NDArray[np.float64]:
    """``n`` natural frequencies at the quantiles of a Lorentzian of half-width ``gamma`` (no
    sampling noise)."""
    q = (np.arange(1, n + 1) - 0.5) / n
    sin_q, cos_q = sin_cos(np.pi * (q - 0.5))
    return center + gamma * (sin_q / cos_q)


def coherence_gain(
    theta: npt.NDArray[np.float64], a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Message gain between agents ``a`` and ``b``: ``(1 + cos(θ_a − θ_b)) / 2`` in [0, 1]."""
    return 0.5 * (1.0 + sin_cos(theta[a] - theta[b])[1])


class Oscillators:
    """Phases ``float64[N]`` and natural frequencies, stepped on a graph (CSR) or all-to-all."""

    def __init__(
        self,
        omega: npt.NDArray[np.float64],
        coupling: float,
        dt: float,
        theta: npt.NDArray[np.float64],
        csr: CSR | None = None,
    ) -> None:
        if dt <= 0 or coupling < 0:
            raise ValueError(f"need dt > 0 and coupling >= 0, got dt={dt}, coupling={coupling}")
        if csr is not None and csr.n != omega.shape[0]:
            raise ValueError(f"graph has {csr.n} nodes, frequencies {omega.shape[0]}")
        self.omega = np.asarray(omega, dtype=np.float64)
        self.theta = np.asarray(theta, dtype=np.float64).copy()
        self.coupling = float(coupling)
        self.dt = float(dt)
        self.csr = csr
        # Scratch for the kernel, zeroed so that a world saved before its first step holds no
        # uninitialised memory.
        self._sin = np.zeros_like(self.theta)
        self._cos = np.zeros_like(self.theta)

    def step(self, n: int = 1, serial: bool = False) -> None:
        """Advance ``n`` Euler steps (graph kernel, or mean field when there is no graph).
        ``serial``:
        one thread even on a large graph (the same bits), leaving the other cores to other work."""
        if self.csr is None:
            size = max(self.theta.shape[0], 1)
            for _ in range(n):
                # K·r·sin(ψ − θ) = K·(S·cos θ − C·sin θ)/N with C, S the sums of cos θ and sin θ.
                sin_t, cos_t = sin_cos(self.theta)
                c, s = float(cos_t.sum()), float(sin_t.sum())
                drift = self.omega + self.coupling * (s * cos_t - c * sin_t) / size
                self.theta += self.dt * drift
        elif n > 0:  # the kernel takes the phases modulo 2π itself
            parallel = self.theta.shape[0] >= PARALLEL_NODES and not serial
            kernel = _graph_steps_parallel if parallel else _graph_steps_serial
            kernel(
                self.theta,
                self.omega,
                self.csr.indptr,
                self.csr.indices,
                self.csr.weights,
                self.coupling,
                self.dt,
                n,
                self._sin,
                self._cos,
            )
            return
        np.mod(self.theta, 2 * np.pi, out=self.theta)

    def r(self) -> float:
        """Global order parameter."""
        return order_parameter(self.theta)[0]
