"""Coordination in a world: Kuramoto phases on the interaction graph, order parameters, tension.

Every agent carries a phase and a natural frequency (Lorentzian quantiles, dealt out by a seeded
permutation). Agents that traded in the last ``graph_every`` ticks are coupled, with weight equal
to how often they traded: the interaction graph is rebuilt from those trades (as CSR arrays for the
O(E) kernel, as edge arrays for the minimum cut). Each tick the oscillators advance
``steps_per_tick`` steps (on the GPU with ``--device cuda``:
``runtime.coordination.kuramoto_torch``, the same
bits) and the order parameter is recorded globally and per region. A region
whose order parameter rises through ``sync_threshold`` fires an extra ledger anti-entropy round;
with ``close_votes_on_sync`` the members' synchronisation closes open votes early. Every
``tension_every`` ticks the tension of the interaction graph's 2-core (of its largest component)
is read (``runtime.coordination.tension``); in large worlds a reading whose graph is already final
runs on a thread of its own over the ticks before it is due.

In a shard of a sharded world the oscillators are the shard's own agents (kept by their place in
the sorted list of its agent ids). Agents trade only with agents of their own shard, so every
coupling edge lies inside one shard and no phase has to cross a tick barrier: each shard steps the
same dynamics the one-process code would step on its part of the graph. What crosses shards is
read from the metrics: each shard records the sums of cos and sin of its phases (``r_sum_cos``,
``r_sum_sin``, ``r_count``), from which the world's order parameter is the modulus of the sums
over the shards divided by the agents; each region's order parameter is its shard's (a region lies
in one shard). The tension of the world's graph is that of the 2-core of its largest component,
which lies in one shard: each shard records its own reading with the size of that component
(``tension_core_edges``) and its lowest agent id (``tension_core_first``), and the world's reading
is the one of the shard whose component the one-process code would pick (most edges, then lowest
id): the one-process reading over the merged graph, with no error.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from economy.portable_math import sin_cos
from runtime.coordination.kuramoto import (
    CSR,
    Oscillators,
    coherence_gain,
    lorentzian_frequencies,
    order_parameter,
    strided_order,
)
from runtime.coordination.tension import Tension, tension_of_edges
from runtime.kernel.scenario import CoordinationConfig

if TYPE_CHECKING:
    from runtime.coordination.kuramoto_torch import TorchOscillators
    from runtime.kernel.world import World

BACKGROUND_NODES = 1 << 15  # below this, a second thread costs more than the steps it would hide


class Coordination:
    """Oscillators for all ``world.n_agents`` agents and the signals read from them."""

    def __init__(self, world: World, cfg: CoordinationConfig) -> None:
        self.world = world
        self.cfg = cfg
        # A shard's own agents, sorted (oscillator i is agent local[i]); None: every agent, by id.
        self.local: npt.NDArray[np.int64] | None = None
        if world.shard is not None:
            self.local = np.sort(np.concatenate([p.ids for p in world.populations]))
        n = world.n_agents if self.local is None else int(self.local.size)
        rng = world.streams("coordination")
        omega = rng.permutation(lorentzian_frequencies(n, cfg.frequency_spread))
        theta = rng.uniform(0.0, 2 * np.pi, n)
        empty = CSR.from_edges(n, np.empty(0, np.int64), np.empty(0, np.int64))
        self.osc: Oscillators | TorchOscillators
        if world.device == "cuda":  # the same phases, bit for bit, stepped on the GPU
            from runtime.coordination.kuramoto_torch import TorchOscillators

            self.osc = TorchOscillators(omega, cfg.coupling, cfg.dt, theta, empty, device="cuda")
        else:
            self.osc = Oscillators(omega, cfg.coupling, cfg.dt, theta, empty)
        self._src: list[npt.NDArray[np.integer]] = []
        self._dst: list[npt.NDArray[np.integer]] = []
        self.n_regions = world.network.n_regions
        self.region_r = np.zeros(self.n_regions)
        self.member_r = 0.0
        self.tension = 0.0
        self._ahead: Future[None] | None = (
            None  # this tick's oscillator steps, running beside the populations
        )
        self._ahead_tick = -1  # the tick they belong to
        self._pool: ThreadPoolExecutor | None = None
        self._before: npt.NDArray[np.float64] | None = None  # the phases before the steps in flight
        self._reading: Future[Tension | None] | None = None  # the next tension reading, taken ahead
        self._reading_tick = -1  # the tick it is due
        self._reading_pool: ThreadPoolExecutor | None = None

    def reconfigure(self, cfg: CoordinationConfig) -> None:
        """Take up changed settings mid-run (a fork); the natural frequencies stay as drawn."""
        self._wait()
        if cfg.coupling != self.cfg.coupling:
            self.osc.coupling = float(cfg.coupling)
        if cfg.dt != self.cfg.dt:
            self.osc.dt = float(cfg.dt)
        self.cfg = cfg

    TRANSIENT = ("_ahead", "_pool", "_before", "_reading", "_reading_pool")

    def __getstate__(self) -> dict[str, object]:
        # Threads and their futures are not state: steps in flight are waited for before a
        # checkpoint, and a tension reading taken ahead is taken again when due (the same graph).
        self._wait()
        state = {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT}
        state["_ahead_tick"] = -1
        state["_reading_tick"] = -1
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        for name in self.TRANSIENT:
            setattr(self, name, None)

    def begin_tick(self, tick: int) -> None:
        """Start this tick's oscillator steps on a second thread, when their inputs are already
        fixed.

        They need only the phases and the coupling graph, and the graph changes only on the ticks
        that rebuild it (from the trades up to then): on the other ticks the steps cannot depend on
        what the populations do this tick, so they run beside them (the numba kernel releases the
        GIL) and
        :meth:`step` waits for them. The world starts them as soon as the previous tick is done
        (checkpoint included), so they also run beside the bus deliveries between ticks. Until
        :meth:`step` the phases read as they were before the steps -- a copy taken at the start --
        so :meth:`gain` and :meth:`digest` see what they would see in the plain order, and the
        phases are the same bits either way. Worlds below ``BACKGROUND_NODES`` agents, and
        oscillators on a GPU, step in :meth:`step` as before."""
        if (
            tick % self.cfg.graph_every == 0
            or self._ahead is not None
            or not isinstance(self.osc, Oscillators)
            or self.world.n_agents < BACKGROUND_NODES
        ):
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="agora-oscillators")
        self._before = self.osc.theta.copy()
        self._ahead = self._pool.submit(self.osc.step, self.cfg.steps_per_tick, True)
        self._ahead_tick = tick

    def _phases(self) -> npt.NDArray[np.float64]:
        """The phases as the plain order has them now: before this tick's steps until
        :meth:`step`."""
        return self._before if self._before is not None else self.osc.theta

    def _wait(self) -> None:
        """Wait for steps started by :meth:`begin_tick` (an error in them is raised here)."""
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            ahead.result()

    def _index(self, agents: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The oscillators of ``agents`` (in a shard, each must be one of its own)."""
        agents = np.asarray(agents, dtype=np.int64)
        if self.local is None:
            return agents
        at = np.searchsorted(self.local, agents)
        at = np.minimum(at, self.local.size - 1)
        if agents.size and not (self.local[at] == agents).all():
            stranger = int(agents[self.local[at] != agents][0])
            raise ValueError(
                f"agent {stranger} is not on this shard: agents of a sharded world interact "
                "with agents of their own shard only"
            )
        return at.astype(np.int64)

    def interact(self, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> None:
        """Record that agents ``a[i]`` and ``b[i]`` traded this tick (kept as int32 until the next
        rebuild: half the memory of up to ``graph_every`` ticks of trades; ids of worlds past 2³¹
        agents stay int64)."""
        width = np.int32 if self.world.n_agents < 2**31 else np.int64
        self._src.append(self._index(a).astype(width))
        self._dst.append(self._index(b).astype(width))

    def gain(self, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Message gain between agents: their phase coherence in [0, 1] (mid-tick: the phases
        before this tick's steps). In a shard, a pair with an agent of another shard has gain 1
        (its phase is not known here)."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        if self.local is None:
            return coherence_gain(self._phases(), a, b)
        out = np.ones(a.size)
        here = np.isin(a, self.local) & np.isin(b, self.local)
        if here.any():
            out[here] = coherence_gain(self._phases(), self._index(a[here]), self._index(b[here]))
        return out

    def _rebuild(self) -> None:
        n = self.osc.theta.size
        if self._src:
            src, dst = (
                np.concatenate(self._src).astype(np.int64),
                np.concatenate(self._dst).astype(np.int64),
            )
            lo, hi = np.minimum(src, dst), np.maximum(src, dst)
            keep = lo != hi
            pairs, counts = np.unique(lo[keep] * n + hi[keep], return_counts=True)
            u, v, w = pairs // n, pairs % n, counts.astype(np.float64)
        else:
            u = v = np.empty(0, np.int64)
            w = np.empty(0, np.float64)
        self.osc.csr = CSR.from_edges(n, u, v, w)
        self._src, self._dst = [], []

    def step(self, tick: int) -> None:
        """Advance one tick; record r, fire synchronisation actions, read tension when due."""
        w = self.world
        self._wait()
        self._before = None
        if self._ahead_tick != tick:  # not stepped beside the populations: step now
            if tick % self.cfg.graph_every == 0:
                self._rebuild()
            self.osc.step(self.cfg.steps_per_tick)
        theta = self.osc.theta
        if self.local is None:
            r_global, r = strided_order(theta, self.n_regions)  # regions are account id % regions
        else:
            r_global, r = self._shard_order(theta)
        w.gauge("r_global", r_global)
        for i, name in enumerate(w.network.names):
            if i not in w.local_regions:
                continue  # another shard's region: its agents' phases are there
            w.gauge(f"r_region/{name}", float(r[i]))
            if self.region_r[i] < self.cfg.sync_threshold <= r[i]:
                w.emit(
                    "sync_fired",
                    "coordination",
                    other=i,
                    value=float(r[i]),
                    detail=f"region {name}",
                )
                w.anti_entropy_from(i)
        self.region_r = r
        org = w.organisation
        if org is not None:
            members = org.ids if org.here is None else org.ids[org.here]  # a shard's: its own
            member_r = order_parameter(theta[self._index(members)])[0] if members.size else 0.0
            w.gauge("r_members", member_r)
            if self.cfg.close_votes_on_sync and self.member_r < self.cfg.sync_threshold <= member_r:
                closed = org.nao.close_open(tick)
                w.emit("votes_closed_on_sync", "coordination", amount=len(closed), value=member_r)
            self.member_r = member_r
        if tick % self.cfg.tension_every == 0:
            reading = self._tension_due(tick)
            if self.local is not None:  # what the world's reading is chosen by (module docstring)
                u, _, _ = self._core()
                w.gauge("tension_core_edges", float(u.size))
                w.gauge("tension_core_first", float(u.min()) if u.size else -1.0)
            if reading is not None:
                self.tension = reading.value
                w.emit(
                    "tension",
                    "coordination",
                    amount=int(reading.cut),
                    value=reading.value,
                    detail=reading.method,
                )
        w.gauge("tension", self.tension)
        self._read_ahead(tick)

    def _shard_order(self, theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        """A shard's order parameters: over its own agents, and of each region (those of other
        shards: 0); its sums of cos and sin recorded for the world's (module docstring). Sums in
        agent order (``np.bincount`` adds its weights one by one)."""
        assert self.local is not None
        sin_t, cos_t = sin_cos(theta)
        regions = self.local % self.n_regions
        c = np.bincount(regions, weights=cos_t, minlength=self.n_regions)
        s = np.bincount(regions, weights=sin_t, minlength=self.n_regions)
        size = np.bincount(regions, minlength=self.n_regions)
        c_all, s_all = float(c.sum()), float(s.sum())
        w = self.world
        w.gauge("r_sum_cos", c_all)
        w.gauge("r_sum_sin", s_all)
        w.gauge("r_count", float(theta.size))
        r_regions = np.sqrt(c * c + s * s) / np.maximum(size, 1)
        return float(np.sqrt(c_all * c_all + s_all * s_all)) / max(theta.size, 1), r_regions

    def _read_tension(self) -> Tension | None:
        """Tension of the current graph's 2-core (None when it has no edges)."""
        u, v, weights = self._core()
        return tension_of_edges(u, v, weights) if u.size else None

    def _tension_due(self, tick: int) -> Tension | None:
        """The reading due at ``tick``: the one taken ahead by :meth:`_read_ahead`, or one taken
        now."""
        if self._reading is not None and self._reading_tick <= tick:
            reading, self._reading = self._reading, None
            if self._reading_tick == tick:
                return reading.result()  # an error in it is raised here
        return self._read_tension()  # (a reading due at a tick this world did not step is dropped)

    def _read_ahead(self, tick: int) -> None:
        """Start the next tension reading now, on a thread of its own, when the graph it will read
        is final.

        A reading reads the graph of the last rebuild; when no rebuild comes between now and the
        tick it is due, that graph is the current one, so the reading (a few seconds at 10^6 agents:
        an eigenvector by Lanczos) runs beside the ticks in between and :meth:`step` takes its
        result when it is due -- the same reading, emitted at the same point of the same tick.
        Worlds below ``BACKGROUND_NODES`` agents read when due."""
        if self._reading is not None or self.world.n_agents < BACKGROUND_NODES:
            return
        due = (tick // self.cfg.tension_every + 1) * self.cfg.tension_every
        if due >= (tick // self.cfg.graph_every + 1) * self.cfg.graph_every:
            return  # a rebuild comes first: the reading must wait for it
        if self._reading_pool is None:
            self._reading_pool = ThreadPoolExecutor(1, thread_name_prefix="agora-tension")
        self._reading = self._reading_pool.submit(self._read_tension)
        self._reading_tick = due

    def graph(self) -> nx.Graph:
        """The current interaction graph as a networkx graph (edge attribute ``weight``)."""
        u, v, w = self._edges()
        g = nx.Graph()
        g.add_weighted_edges_from(zip(u.tolist(), v.tolist(), w.tolist(), strict=True))
        return g

    def _edges(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The coupling graph's edges ``u < v`` with their weights, ordered by (u, v): read back
        from the CSR arrays (each edge is stored there both ways), not kept a second time."""
        csr = self.osc.csr
        assert csr is not None, "the oscillators couple over a graph here"
        rows = np.repeat(np.arange(csr.n, dtype=np.int64), np.diff(csr.indptr))
        upper = csr.indices > rows
        u, v = rows[upper], csr.indices[upper].astype(np.int64)
        if self.local is not None:  # agent ids (the order is kept: local is sorted)
            u, v = self.local[u], self.local[v]
        return u, v, csr.weights[upper].astype(np.float64)

    def _core(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The 2-core of the interaction graph's largest connected component (:func:`core_of`)."""
        return core_of(*self._edges(), self.world.n_agents)

    def digest(self) -> bytes:
        """Hash of phases (as the plain order has them now) and the coupling graph."""
        h = hashlib.sha256(self._phases().tobytes())
        csr = self.osc.csr
        if csr is not None:
            indices, weights = (
                csr.wide()
            )  # hashed as int64 and float64, whatever width they are kept in
            h.update(csr.indptr.tobytes() + indices.tobytes() + weights.tobytes())
        return h.digest()


def core_of(
    u: npt.NDArray[np.int64], v: npt.NDArray[np.int64], w: npt.NDArray[np.float64], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The 2-core of the largest connected component (most edges; ties: the component with the
    lowest node id) of the graph with edges ``(u[i], v[i], w[i])`` over nodes ``0..n-1``, as edge
    arrays: one-off trades (leaves) would make every minimum cut a single edge."""
    while u.size:  # peel nodes of degree < 2 until none is left
        deg = np.bincount(u, minlength=n) + np.bincount(v, minlength=n)
        keep = (deg[u] >= 2) & (deg[v] >= 2)
        if keep.all():
            break
        u, v, w = u[keep], v[keep], w[keep]
    if u.size:
        adj = sp.coo_array((np.ones(u.size), (u, v)), shape=(n, n))
        _, label = connected_components(adj, directed=False)
        sizes = np.bincount(label[u], minlength=label.max() + 1)
        keep = label[u] == np.argmax(sizes)
        u, v, w = u[keep], v[keep], w[keep]
    return u, v, w
