"""The gpu engine's world: every population of the built-in roles stepped as integer tensor steps.

``TensorWorld(scenario)`` runs a scenario whose ``[world] engine = "gpu"`` on one torch device (a
CUDA GPU, or the CPU: the engine's CPU form, which gives the same integers and runs its heaviest
parts as numba loops, :mod:`runtime.tensor.cpu_kernels`). State stays on the device between
ticks; the host keeps only the batches' bookkeeping, the fault schedule and the messages in
flight.

The model choices that make the tick data-parallel, against the exact engine:

* **Market**: the negotiators' auction clears each of its 30 rounds as a call market (every post of
  the round, one price); scenarios on this engine set ``market.mechanism = "call"``, which the exact
  engine runs too, so the two engines can be compared on the same mechanism.
* **Routing**: the tasks of a skill go to its willing workers ranked by reputation, ``capacity``
  tasks each, all at once, instead of one task after another.
* **Verification**: the critics check a share of the tick's paid results as the exact engine does,
  but the z3 proofs are replaced by the ledger's construction (every debit is made at the payer's
  home against the balance it holds there, which cannot overdraw): see :mod:`runtime.tensor.ledger`.
  The refund of a caught result comes out of the cheat's stake.
* **Ledger**: one base plus the batches each replica has not shared, per-batch tags
  (:mod:`runtime.tensor.ledger`).
* **Cores** are integer learners: a negotiator's learned core is a per-agent markup that rises when
  it trades and falls when it does not; the world model forecasts each skill's price from a
  fixed-point trend; a refactor agent's core is an integer Q-table over its three actions; the
  healers' detector is an integer EWMA z-score.
* **Coordination**: phases are 16-bit fractions of a turn and the sine is a table, so the Kuramoto
  steps are integer; the coupling graph is the tick's trades. Tension (the minimum cut) is not read.

Not in this engine (refused with the reason): governance, byzantine faults, roles other than the
built-in seven, seats and policy files as cores, a region graph file, sharding.
"""

from __future__ import annotations

import gc
import hashlib
import math
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from economy.contribution import contribution_multiplier
from economy.portable_math import sin_cos
from economy.rates import MICRO
from runtime.kernel.roles import resolve
from runtime.kernel.scenario import PopulationConfig, Scenario, ScenarioError
from runtime.tensor import cpu_kernels
from runtime.tensor.counts import count_keys
from runtime.tensor.draws import below, below_wide, host_u32, stream_key, threshold, u32
from runtime.tensor.ledger import Ledger
from runtime.tensor.verify import BUDGET, prove

ROLES = ("requester", "worker", "negotiator", "critic", "healer", "world_model", "refactor")
FAULTS = ("crash", "restart", "degrade", "partition", "heal", "loss_burst")
ROUNDS = 30  # auction rounds per tick, as in the exact engine
CEILING = 2000  # highest ask, per mille of the task's posted price
Q16 = 1 << 16
SIN_ONE = 1 << 14  # the sine table's 1.0
SMALL_WORLD = 200_000  # agents below which the CPU form runs torch on one thread


def problems(scenario: Scenario, base: Path | None = None) -> list[str]:
    """What the gpu engine cannot run in this scenario, each naming the key."""
    out = []
    if scenario.governance is not None or scenario.proposal or scenario.vote:
        out.append(
            "governance: the gpu engine has no governance; remove [governance] or use "
            'engine = "exact"'
        )
    if scenario.distributed is not None:
        out.append("distributed: a sharded world runs the exact engine; remove [distributed]")
    if scenario.market.mechanism != "call":
        out.append(
            "market.mechanism: the gpu engine clears the auction as a call market; set "
            'mechanism = "call" (the exact engine runs it too, for comparison)'
        )
    if scenario.record.outside_inputs is not None:
        out.append("record.outside_inputs: recorded outside inputs need the exact engine")
    if scenario.bus.jitter:
        out.append(
            "bus.jitter: the gpu engine's latency is whole ticks, without jitter; set it to 0"
        )
    if scenario.network.graph_file is not None:
        out.append("network.graph_file: the gpu engine takes regions and links, not a graph file")
    roles = {p.name: _role(p, base) for p in scenario.population}
    for i, f in enumerate(scenario.fault):
        if f.kind not in FAULTS:
            out.append(f"fault[{i}].kind: {f.kind!r} faults are not modelled by the gpu engine")
        elif f.kind == "degrade" and roles.get(f.population or "") not in (None, "worker"):
            out.append(
                f"fault[{i}].population: the gpu engine degrades workers (their quality); "
                f"{f.population!r} is a {roles[f.population or '']} population"
            )
    seen: dict[str, int] = {}
    for i, p in enumerate(scenario.population):
        role = _role(p, base)
        if role in ("critic", "healer", "world_model") and role in seen:
            out.append(
                f"population[{i}].role: the gpu engine runs one {role} population "
                f"(population[{seen[role]}] is one)"
            )
        seen.setdefault(role, i)
        if role not in ROLES:
            out.append(
                f"population[{i}].role: {p.role!r} does not run on the gpu engine (it runs the "
                f'built-in roles {", ".join(ROLES)}); use engine = "exact" for your own roles'
            )
        if p.seats:
            out.append(f"population[{i}].seats: seats need the exact engine")
        if p.core not in (None, "learned", "baseline"):
            out.append(f"population[{i}].core: the gpu engine's cores are 'learned' or 'baseline'")
        if p.params.get("inputs"):
            out.append(f"population[{i}].inputs: recorded inputs need the exact engine")
    return out


def auction_rounds(
    bids: Any,
    asks: Any,
    active_b: Any,
    alive_s: Any,
    post_max: int | None = None,
    fused: bool = False,
) -> tuple[Any, Any, Any, Any]:
    """The task auction's rounds (:func:`auction_rounds_torch`), on a CUDA device as Triton kernels
    (:mod:`runtime.tensor.auction_cuda`, the same integers in a ninth of the kernels) when Triton
    is installed and its kernels build for the GPU, with a warning the first time they do not;
    on a CPU with ``fused``, as a numba loop (:func:`runtime.tensor.cpu_kernels.auction_rounds`);
    otherwise as torch operations. The same integers in every form."""
    if fused and not _on_cuda(bids):
        import torch

        out = cpu_kernels.auction_rounds(
            bids.numpy(), asks.numpy(), active_b.numpy(), alive_s.numpy()
        )
        return tuple(torch.from_numpy(x) for x in out)  # type: ignore[return-value]
    if _on_cuda(bids) and _triton():
        from runtime.tensor.auction_cuda import auction_rounds_cuda

        if _TRITON.get("ran"):
            return auction_rounds_cuda(bids, asks, active_b, alive_s, post_max)
        try:  # the first call builds the kernels (a world's first tick, before any graph capture)
            out = auction_rounds_cuda(bids, asks, active_b, alive_s, post_max)
        except Exception as err:  # noqa: BLE001 - any failure to build or launch: fall back
            _TRITON["failed"] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"the auction's Triton kernels do not run here ({_TRITON['failed']}); the auction "
                "runs as torch operations, which give the same integers",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            _TRITON["ran"] = True
            return out
    return auction_rounds_torch(bids, asks, active_b, alive_s, post_max)


_TRITON: dict[str, object] = {}  # "ran" once the kernels ran; "failed": why they could not


def _on_cuda(tensor: Any) -> bool:
    return bool(tensor.is_cuda)


def sorted_posts(bids: Any, asks: Any, post_max: int | None) -> tuple[Any, Any, Any, Any]:
    """Each round's bids high to low and asks low to high, equal posts in index order: (bids
    sorted, their order, asks sorted, their order), int64. Posts known to lie in ``[0, post_max]``
    with ``post_max < 2**15`` are sorted as 16-bit keys: the same order (a stable sort of the same
    values) in a quarter of the radix passes."""
    import torch

    narrow = post_max is not None and post_max < 1 << 15
    keys_b, keys_a = -bids, asks
    if narrow:
        keys_b, keys_a = keys_b.to(torch.int16), keys_a.to(torch.int16)
    neg_sorted, b_order = torch.sort(keys_b, dim=1, stable=True)
    a_sorted, a_order = torch.sort(keys_a, dim=1, stable=True)
    return (-neg_sorted).to(torch.int64), b_order, a_sorted.to(torch.int64), a_order


def _triton() -> bool:
    if "failed" in _TRITON:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def auction_rounds_torch(
    bids: Any, asks: Any, active_b: Any, alive_s: Any, post_max: int | None = None
) -> tuple[Any, Any, Any, Any]:
    """The task auction's rounds as call markets: ``bids[r]`` and ``asks[r]`` are round ``r``'s
    posts (per mille of each task's posted price) of the buyers and sellers; a trader leaves once
    it trades. Each round takes the untraded bids high to low and asks low to high (equal posts in
    index order), trades the ``k`` crossing pairs, bid ``j`` with ask ``j``, at the middle of the
    range of prices that clears exactly them. Returns (buyer traded, seller traded, each buyer's
    seller, each buyer's price).

    Every round's posts are sorted at once, before the rounds; a round then keeps the untraded
    traders in that order with a running count (no sort per round). Shapes are fixed and nothing
    is read back to the host, so the rounds can be captured in a CUDA graph. ``post_max``: every
    post is known to lie in ``[0, post_max]`` (see :func:`sorted_posts`)."""
    import torch

    rounds, mb = bids.shape
    ns = asks.shape[1]
    on = bids.device
    big = 1 << 40
    b_sorted, b_order, a_sorted, a_order = sorted_posts(bids, asks, post_max)
    # One slot past the traders is scratch: updates of pairs that do not trade land there.
    traded_b = torch.zeros(mb + 1, dtype=torch.bool, device=on)
    traded_s = torch.zeros(ns + 1, dtype=torch.bool, device=on)
    partner = torch.zeros(mb + 1, dtype=torch.int64, device=on)
    price_b = torch.zeros(mb + 1, dtype=torch.int64, device=on)
    jb = torch.arange(mb, dtype=torch.int64, device=on)
    js = torch.arange(ns, dtype=torch.int64, device=on)
    n = min(mb, ns)
    jn = torch.arange(n, dtype=torch.int64, device=on)
    for r in range(rounds):
        bo, ao = b_order[r], a_order[r]
        eb = (active_b & ~traded_b[:mb])[bo]  # eligible buyers, in price order
        ea = (alive_s & ~traded_s[:ns])[ao]
        # The eligible, packed to the front in that order; the rest to scratch places of their own.
        pb = torch.where(eb, torch.cumsum(eb, 0) - 1, mb + 1 + jb)
        pa = torch.where(ea, torch.cumsum(ea, 0) - 1, ns + 1 + js)
        cb = torch.full((2 * mb + 1,), -1, dtype=torch.int64, device=on).index_put_(
            (pb,), b_sorted[r]
        )
        cbi = torch.full((2 * mb + 1,), mb, dtype=torch.int64, device=on).index_put_((pb,), bo)
        ca = torch.full((2 * ns + 1,), big, dtype=torch.int64, device=on).index_put_(
            (pa,), a_sorted[r]
        )
        cai = torch.full((2 * ns + 1,), ns, dtype=torch.int64, device=on).index_put_((pa,), ao)
        k = (cb[:n] >= ca[:n]).sum().reshape(1)
        km1 = torch.clamp(k - 1, min=0)
        # index_select with a one-element index: a tensor, never a number on the host.
        b_k, b_km1 = cb.index_select(0, k), cb.index_select(0, km1)
        a_k, a_km1 = ca.index_select(0, k), ca.index_select(0, km1)
        p = (torch.maximum(a_km1, b_k) + torch.minimum(b_km1, a_k)) // 2
        pair = jn < k
        buyers = torch.where(pair, cbi[:n], mb)
        sellers = torch.where(pair, cai[:n], ns)
        traded_b.index_put_((buyers,), pair)
        traded_s.index_put_((sellers,), pair)
        partner.index_put_((buyers,), sellers)
        price_b.index_put_((buyers,), p.expand(n))
    return traded_b[:mb], traded_s[:ns], partner[:mb], price_b[:mb]


def _role(p: PopulationConfig, base: Path | None) -> str:
    try:
        return str(resolve(p.role, base).cls.role)
    except Exception:  # an unknown role is reported by the scenario's own checks
        return p.role


@dataclass
class Pop:
    """A population's place in the engine's index space."""

    cfg: PopulationConfig
    role: str
    params: Any
    start: int
    stop: int
    key: int
    learned: bool

    @property
    def n(self) -> int:
        return self.stop - self.start


class TensorWorld:
    """A scenario on the gpu engine, on ``device`` (``"cpu"`` or ``"cuda"``)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        device: str = "cpu",
        base: Path | None = None,
        key: bytes = b"agora-gpu-engine",
        graphed: bool = True,
        fused: bool | None = None,
    ) -> None:
        """``graphed``: on a CUDA device, capture the tick's kernels as one CUDA graph at the
        second tick and replay it after (the default); False launches them one by one every tick
        (the same integers; ``agora bench`` does so to count the bytes each kernel moves).

        ``fused``: drop the tick's payments of 0 and coupling edges of weight 0, and run the
        oscillators' steps, the auction's rounds and the sorts by a small key as numba loops
        (:mod:`runtime.tensor.cpu_kernels`); the default on a CPU. False keeps the torch form
        with the fixed shapes a GPU captures; both give the same integers."""
        import torch

        bad = problems(scenario, base)
        if bad:
            raise ScenarioError(bad)
        self.torch = torch
        self.device = torch.device(device)
        self.fused = self.device.type == "cpu" if fused is None else fused
        if self.fused and self.device.type != "cpu":
            raise ValueError("fused=True runs numba loops on host arrays: it needs device='cpu'")
        self.scenario = scenario
        self.seed = scenario.world.seed if seed is None else seed
        self.tick = 0
        self.S = scenario.economy.n_skills
        regions = list(scenario.network.regions)
        self.regions = regions
        self.R = len(regions)
        self._delays = self._region_delays()
        self.pops: list[Pop] = []
        start = 0
        for p in scenario.population:
            role = _role(p, base)
            params = resolve(p.role, base).cls.Params.model_validate(p.params)
            stream = stream_key(self.seed, f"population/{p.name}")
            self.pops.append(
                Pop(p, role, params, start, start + p.count, stream, p.core != "baseline")
            )
            start += p.count
        self.N = start
        i64, on = torch.int64, self.device
        self.ledger = Ledger(self.N, self.R, on, key, compact=self.fused)
        self.minted = torch.zeros((), dtype=i64, device=on)
        self.burned = torch.zeros((), dtype=i64, device=on)
        self.alive = torch.ones(self.N, dtype=torch.bool, device=on)
        self.stake = torch.zeros(self.N, dtype=i64, device=on)
        self.prices = torch.full(
            (self.S,), scenario.economy.task_unit_credits * MICRO, dtype=i64, device=on
        )
        self.floor = max(1, scenario.economy.task_unit_credits * MICRO // 1000)
        self.elasticity = round(scenario.economy.price_elasticity * 1000)
        self.max_step = round(scenario.economy.price_max_step * 1000)
        self.compute_units = 0  # task units done, the network's compute (CPU-hours)
        self.compute_start = scenario.economy.network_compute_start
        self.uptime = round(
            scenario.economy.uptime_millicredits_per_hour * 1000 * scenario.world.tick_length
        )
        for p in self.pops:
            ids = self._ids(p)
            if p.cfg.initial_credits:
                amount = torch.full((p.n,), p.cfg.initial_credits * MICRO, dtype=i64, device=on)
                self._mint(ids, amount)
        self._setup_workers()
        self._setup_negotiators()
        self._setup_oversight()
        self._setup_learners()
        self._setup_coordination()
        fingerprints, moving = self.ledger.stage()
        self.ledger.end_tick(-1, [int(v) for v in moving.tolist()])
        self.ledger.seal(-1, [int(v) for v in fingerprints.tolist()])
        self.sample_ids = torch.arange(BUDGET, dtype=i64, device=on)
        self.sample = torch.zeros((3, BUDGET), dtype=i64, device=on)
        self.verify_key = stream_key(self.seed, "verify")
        self._prover = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agora-z3")
        self._proofs: Future[tuple[int, int]] | None = None
        self.t_dev = torch.zeros((), dtype=i64, device=on)  # the tick, read by the phase
        self.reward_dev = torch.zeros((), dtype=i64, device=on)  # this tick's uptime reward
        self._graph: Any = None
        self.graphed = graphed
        # Faults and the bus.
        self.loss = scenario.bus.loss
        self.groups: list[list[int]] = [list(range(self.R))]
        self.partitioned = False
        self.in_flight: list[
            tuple[int, int, int, int]
        ] = []  # (arrives, tick made, origin, replica)
        self.bus_key = stream_key(self.seed, "bus")
        self.undo: dict[int, list[Any]] = {}
        self.counters: dict[str, int] = {}
        self.events: list[tuple[str, str, int, int, int, str]] = []

    # ------------------------------------------------------------------ set-up helpers
    def _ids(self, p: Pop) -> Any:
        return self.torch.arange(p.start, p.stop, dtype=self.torch.int64, device=self.device)

    def _of(self, role: str) -> list[Pop]:
        return [p for p in self.pops if p.role == role]

    def _cat(self, pops: list[Pop], make: Any, dtype: Any = None) -> Any:
        torch = self.torch
        parts = [make(p) for p in pops]
        if parts:
            return torch.cat(parts)
        return torch.zeros(0, dtype=dtype or torch.int64, device=self.device)

    def _mint(self, account: Any, amount: Any) -> None:
        self.ledger.credit(account, amount)
        self.minted = self.minted + amount.sum()

    def _burn(self, account: Any, amount: Any) -> None:
        self.ledger.debit(account, amount)
        self.burned = self.burned + amount.sum()

    def _region_delays(self) -> list[list[int]]:
        """Ticks a batch takes between two regions: the shortest path's latency, in whole ticks
        (0: it arrives before the tick ends)."""
        net = self.scenario.network
        g = nx.Graph()
        g.add_nodes_from(range(self.R))
        index = {r: i for i, r in enumerate(self.regions)}
        for link in net.links:
            g.add_edge(index[link.a], index[link.b], latency=link.latency)
        lengths = dict(nx.all_pairs_dijkstra_path_length(g, weight="latency"))
        tl = self.scenario.world.tick_length
        out = []
        for a in range(self.R):
            row = []
            for b in range(self.R):
                lat = lengths.get(a, {}).get(b, net.default_latency if a != b else 0.0)
                row.append(int(lat // tl))
            out.append(row)
        return out

    def _setup_workers(self) -> None:
        torch, on = self.torch, self.device
        pops = self._of("worker")
        self.workers = self._cat(pops, self._ids)
        nw = self.workers.shape[0]
        self.nw = nw

        def draw(p: Pop, stream: int, word: int) -> Any:
            return u32(self._ids(p), p.key, -1, stream)[word]

        self.w_skill = self._cat(pops, lambda p: below(draw(p, 0, 0), self.S))
        # A worker's cost: 0.2..1.5 of the first price (as the market kernel's workers).
        first = int(self.prices[0])
        # A worker's cost: 0.2..1.5 of the first price.
        self.w_cost = self._cat(
            pops, lambda p: first // 5 + below_wide(draw(p, 0, 1), first * 13 // 10)
        )
        self.w_quality = self._cat(
            pops,
            lambda p: torch.full((p.n,), threshold(p.params.quality), dtype=torch.int64, device=on),
        )
        self.w_cheater = self._cat(
            pops, lambda p: draw(p, 1, 0) < threshold(p.params.cheat_fraction), torch.bool
        )
        self.w_cheat_p = self._cat(
            pops,
            lambda p: torch.full(
                (p.n,), threshold(p.params.cheat_probability), dtype=torch.int64, device=on
            ),
        )
        self.capacity_num = round(pops[0].params.capacity_factor * 1000) if pops else 1000
        z = torch.zeros(nw, dtype=torch.int64, device=on)
        self.w_successes, self.w_tasks = z.clone(), z.clone()
        self.w_severity = z.clone()  # per mille of the quality lost while degraded
        self.w_quarantine = z.clone() - 1  # tick the quarantine ends (restart), -1: none
        self.w_ewma = z.clone()  # failure rate, Q16
        self.w_alarms = z.clone()
        self.w_caught = torch.zeros(nw, dtype=torch.bool, device=on)
        for p in pops:
            if p.params.stake > 0:
                ids = self._ids(p)
                amount = torch.full((p.n,), p.params.stake * MICRO, dtype=torch.int64, device=on)
                self.stake.index_add_(0, ids, amount)
                self.minted = self.minted + amount.sum()

    def _setup_negotiators(self) -> None:
        torch, on = self.torch, self.device
        pops = self._of("negotiator")
        self.negotiators = self._cat(pops, self._ids)
        self.n_learned = self._cat(
            pops, lambda p: torch.full((p.n,), p.learned, dtype=torch.bool, device=on), torch.bool
        )
        self.markup = torch.full((self.negotiators.shape[0],), 200, dtype=torch.int64, device=on)
        self.neg_key = stream_key(self.seed, "negotiators")

    def _setup_oversight(self) -> None:
        critics, healers = self._of("critic"), self._of("healer")
        self.critic = critics[0] if critics else None
        self.healer = healers[0] if healers else None
        gov = 0.1  # the slash fraction without governance, as the exact engine
        self.slash_pm = round(gov * 1000)

    def _setup_learners(self) -> None:
        torch, on = self.torch, self.device
        models = self._of("world_model")
        self.forecaster = models[0] if models and models[0].n > 0 else None
        self.trend = torch.zeros(self.S, dtype=torch.int64, device=on)  # Q16 micro per tick
        self.forecast = self.prices.clone()  # next tick's price, as forecast this tick
        self._last_prices = self.prices.clone()
        self.refactors = self._of("refactor")
        self.code: list[Any] = []
        self.qtable: list[Any] = []
        self.last_change: list[Any] = []
        for p in self.refactors:
            m = p.params.modules
            ids = self._ids(p)
            cells = (ids.reshape(-1, 1) * m + torch.arange(m, device=on).reshape(1, -1)).reshape(-1)
            quality = below(u32(cells, p.key, -1, 7)[0], 1001).reshape(p.n, m)
            self.code.append(quality)
            self.qtable.append(torch.zeros((p.n, 3), dtype=torch.int64, device=on))
            self.last_change.append(torch.zeros((p.n, 2), dtype=torch.int64, device=on) - 1)

    def _setup_coordination(self) -> None:
        torch, on = self.torch, self.device
        c = self.scenario.coordination
        self.coord = c
        self.order = [0] * self.R
        if c is None:
            return
        # The sine of each 16-bit phase, scaled by 2^14, computed once with the portable sine.
        turns = np.arange(Q16, dtype=np.float64) * (2 * math.pi / Q16)
        sin, _ = sin_cos(turns)
        self.sin_table = torch.as_tensor(
            np.rint(np.asarray(sin) * SIN_ONE).astype(np.int64), device=on
        )
        key = stream_key(self.seed, "coordination")
        ids = torch.arange(self.N, dtype=torch.int64, device=on)
        a, b = u32(ids, key, -1, 0)
        self.phase = (a >> 16) & 0xFFFF
        scale = c.dt * Q16 / (2 * math.pi)
        spread = int(c.frequency_spread * scale)
        self.omega = below(b, 2 * spread + 1) - spread
        self.kq = int(c.coupling * scale)
        self.sync_pm = round(c.sync_threshold * 1000)

    # ------------------------------------------------------------------ the tick
    def step(self) -> dict[str, int]:
        """One tick; returns its metrics row (host integers)."""
        torch = self.torch
        if self.device.type == "cpu" and self.N < SMALL_WORLD:
            # A small world's tensors are too short for torch's parallel regions to pay: run its
            # CPU kernels on one thread (the integers are the same at any thread count).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._step()
            finally:
                torch.set_num_threads(threads)
        return self._step()

    def _step(self) -> dict[str, int]:
        t = self.tick
        self.counters = {}
        self.events = []
        self._faults(t)
        self.t_dev.fill_(t)
        mult = float(contribution_multiplier(self.compute_start + self.compute_units))
        self.reward_dev.fill_(int(self.uptime * mult))
        if self.device.type == "cuda" and t >= 1 and self.graphed:
            values, keys = self._graphed_phase()
        else:
            values, keys = self._phase()
        out = values.tolist()  # the tick's one read from the device
        n, b = len(keys), self.sample.shape[1]
        row = dict(zip(keys, (int(v) for v in out[:n]), strict=True))
        sample = [list(map(int, out[n + i * b : n + (i + 1) * b])) for i in range(3)]
        fingerprints = [int(v) for v in out[n + 3 * b : n + 3 * b + self.R]]
        self.ledger.end_tick(t, [int(v) for v in out[n + 3 * b + self.R :]])
        self.ledger.seal(t, fingerprints)
        # Last tick's proofs (run on the host thread during this tick), then this tick's.
        row["proved"], row["refuted"] = self.collect_proofs()
        self._proofs = self._prover.submit(prove, *sample)
        if self.coord is not None:
            self._order_parameter(t, row)
        self._bus(t)
        every = self.scenario.economy.anti_entropy_every
        self.counters["anti_entropy_batches"] = 0
        if every and (t + 1) % every == 0:
            self.counters["anti_entropy_batches"] = self.ledger.anti_entropy(self.groups)
        row.update(self.counters)
        self.compute_units += row.get("units_done", 0)
        row["tick"] = t
        row["ledger_states"] = self.ledger.distinct_states()
        # The columns every run's metrics table has (agora analyze and query read them).
        row["distinct_roots"] = row["ledger_states"]
        row["mean_price_micro"] = sum(row[f"price_{s}_micro"] for s in range(self.S)) // self.S
        row["volume_micro"] = row.get("paid_micro", 0) + row.get("contract_credits_micro", 0)
        row["batches_pending"] = self.ledger.pending_batches()
        self.tick += 1
        return row

    def _phase(self) -> tuple[Any, list[str]]:
        """Every population's step, reputation, the oscillators and the tick's figures: a pure
        sequence of tensor operations on the device, with no read back to the host and every shape
        fixed by the scenario, so a CUDA graph can capture it (:meth:`_graphed_phase`). Returns the
        figures as one tensor and their names."""
        torch = self.torch
        t = self.t_dev
        z = torch.zeros((), dtype=torch.int64, device=self.device)
        m: dict[str, Any] = {"minted": -self.minted, "burned": -self.burned}
        board = self._requesters(t, m)
        contracted, edges_n = self._negotiators(t, board, m)
        served, edges_w = self._workers(t, board, contracted, m)
        self._critics(t, board, served, m)
        self._healers(t, served, m)
        self._world_model(t, m)
        self._refactor(t, m)
        # Reputation decays one step.
        self.w_successes -= self.w_successes >> 5
        self.w_tasks -= self.w_tasks >> 5
        m["minted"] = m["minted"] + self.minted
        m["burned"] = m["burned"] + self.burned
        m["alive"] = self.alive.sum()
        m["stake_micro"] = self.stake.sum()
        for s in range(self.S):
            m[f"price_{s}_micro"] = self.prices[s]
        if self.coord is not None:
            m.update(self._oscillate([edges_n, edges_w]))
        fingerprints, moving = self.ledger.stage()
        keys = list(m)
        figures = torch.stack([m[k] if torch.is_tensor(m[k]) else z + m[k] for k in keys])
        tail = [self.sample.reshape(-1), fingerprints, moving]
        return torch.cat([figures, *tail]), keys

    def _state(self) -> dict[str, Any]:
        """The tensors (and lists of tensors) the world keeps between ticks."""
        torch = self.torch
        return {
            k: (list(v) if isinstance(v, list) else v)
            for k, v in vars(self).items()
            if torch.is_tensor(v) or (isinstance(v, list) and v and torch.is_tensor(v[0]))
        }

    def _graphed_phase(self) -> tuple[Any, list[str]]:
        """:meth:`_phase` as one CUDA graph, captured at the second tick and replayed after: one
        launch instead of some thousand. The graph reads the tick and the uptime reward from
        device scalars and writes every state tensor back in place, so each replay is the next
        tick; the same kernels run, so the same integers come out."""
        torch = self.torch
        ledger = self.ledger
        if self._graph is None:
            before = self._state()
            graph = torch.cuda.CUDAGraph()
            # No garbage collection while capturing: an earlier world's graph freed by the
            # collector mid-capture would invalidate the capture.
            gc.collect()
            gc.disable()
            try:
                self._capture(graph, before)
            finally:
                gc.enable()
            self._graph = graph
            self._graph_staged = ledger._staged
        self._graph.replay()
        # The ledger entries the phase staged are the graph's outputs, refreshed by each replay.
        ledger._staged = self._graph_staged
        return self._graph_out

    def _capture(self, graph: Any, before: dict[str, Any]) -> None:
        """Record :meth:`_phase` into ``graph``; ``before`` holds the state tensors the graph
        reads, which its writes go back into."""
        torch = self.torch
        with torch.cuda.graph(graph):
            values, keys = self._phase()
            # Whatever the phase rebound is copied into the tensors the graph reads next time.
            for name, old in before.items():
                now = getattr(self, name)
                if isinstance(old, list):
                    for a, b in zip(old, now, strict=True):
                        if a is not b:
                            a.copy_(b)
                elif now is not old:
                    old.copy_(now)
                setattr(self, name, old)
        self._graph_out = (values, keys)

    # ------------------------------------------------------------------ faults
    def _faults(self, t: int) -> None:
        for undo in self.undo.pop(t, []):
            undo()
        for i, f in enumerate(self.scenario.fault):
            if f.at != t:
                continue
            self.events.append(("fault", "faults", i, -1, 0, f.kind))
            self._apply_fault(i, f, t)

    def _pop(self, name: str | None) -> Pop:
        for p in self.pops:
            if p.cfg.name == name:
                return p
        raise ScenarioError([f"fault: no population named {name!r}"])

    def _apply_fault(self, i: int, f: Any, t: int) -> None:
        torch = self.torch
        end = None if f.duration is None else t + f.duration

        def later(fn: Any) -> None:
            if end is not None:
                self.undo.setdefault(end, []).append(fn)

        if f.kind in ("crash", "restart"):
            # As the exact engine: the population's first ceil(fraction x n) agents go down (or
            # come back), and come back (or go down again) when the duration ends.
            p = self._pop(f.population)
            first = p.start + math.ceil(f.fraction * p.n)
            up = f.kind == "restart"
            self.alive[p.start : first] = up
            later(lambda a=p.start, b=first, v=not up: self.alive.__setitem__(slice(a, b), v))
            return
        if f.kind == "degrade":
            # Each worker of the population is degraded with probability ``fraction`` (a seeded
            # draw per worker): its quality falls by the severity until the duration ends.
            p = self._pop(f.population)
            ids = self._ids(p)
            hit = u32(ids, stream_key(self.seed, f"faults/{i}"), t, 0)[0] < threshold(f.fraction)
            local = torch.searchsorted(self.workers, ids)
            sev = torch.full_like(local, round(f.severity * 1000))
            self.w_severity[local] = torch.where(hit, sev, self.w_severity[local])
            later(
                lambda local=local, hit=hit: self.w_severity.index_put_(
                    (local,), torch.where(hit, torch.zeros_like(local), self.w_severity[local])
                )
            )
            return
        if f.kind in ("partition", "heal"):
            if f.kind == "partition":
                index = {r: k for k, r in enumerate(self.regions)}
                named = [sorted(index[r] for r in g) for g in f.groups]
                rest = sorted(set(range(self.R)) - {r for g in named for r in g})
                self.groups = named + ([rest] if rest else [])
                # A partition's end heals the network, as in the exact engine.
                later(lambda: setattr(self, "groups", [list(range(self.R))]))
            else:
                self.groups = [list(range(self.R))]
            return
        if f.kind == "loss_burst":
            self.loss = f.loss
            # A burst's end restores the scenario's loss, as in the exact engine.
            later(lambda: setattr(self, "loss", self.scenario.bus.loss))

    def _group_of(self, r: int) -> int:
        for k, g in enumerate(self.groups):
            if r in g:
                return k
        return -1

    # ------------------------------------------------------------------ the bus
    def _bus(self, t: int) -> None:
        loss, dup = threshold(self.loss), threshold(self.scenario.bus.duplication)
        sent = lost = blocked = duplicated = 0
        for o in range(self.R):
            for q in range(self.R):
                if o == q:
                    continue
                sent += 1
                if self._group_of(o) != self._group_of(q):
                    blocked += 1
                    continue
                index = o * self.R + q
                if host_u32(self.bus_key, t, 0, index) < loss:
                    lost += 1
                    continue
                if host_u32(self.bus_key, t, 1, index) < dup:
                    duplicated += 1  # applied once: a batch is idempotent
                self.in_flight.append((t + self._delays[o][q], t, o, q))
        due = sorted(m for m in self.in_flight if m[0] <= t)
        self.in_flight = [m for m in self.in_flight if m[0] > t]
        self.ledger.deliver_many(
            [(made, o, q) for _, made, o, q in due if self._group_of(o) == self._group_of(q)]
        )
        self.counters.update(
            messages_sent=sent,
            messages_lost=lost,
            messages_blocked=blocked,
            messages_duplicated=duplicated,
        )

    # ------------------------------------------------------------------ requesters
    def _requesters(self, t: Any, m: dict[str, Any]) -> dict[str, Any]:
        torch, on = self.torch, self.device
        parts: dict[str, list[Any]] = {
            k: [] for k in ("req", "skill", "price", "posted", "outcome", "units")
        }
        fee_paid = torch.zeros((), dtype=torch.int64, device=on)
        deferred = torch.zeros((), dtype=torch.int64, device=on)
        for p in self._of("requester"):
            ids = self._ids(p)
            alive = self.alive[ids]
            zero = torch.zeros_like(ids)
            income = round(p.params.income * MICRO)
            if income:
                self._mint(ids, torch.where(alive, zero + income, zero))
            u0, u1 = u32(ids, p.key, t, 0)
            u2, u3 = u32(ids, p.key, t, 1)
            skill = below(u1, self.S)
            units = 1 + below(u2, p.params.task_units)
            price = self.prices[skill] * units
            wants = alive & (u0 < threshold(p.params.post_rate))
            fc = self.forecaster
            if fc is not None and p.params.forecasts_from == fc.cfg.name:
                fee = round(p.params.forecast_fee * MICRO)
                reads = wants & (self.ledger.view[ids] >= fee)
                seller = torch.full_like(ids, fc.start)
                paid = torch.where(reads, zero + fee, zero)
                self.ledger.transfer(ids, seller, paid)
                fee_paid = fee_paid + paid.sum()
                defer = reads & (self.forecast[skill] < self.prices[skill])
                deferred = deferred + defer.sum()
                wants = wants & ~defer
            posted = wants & (self.ledger.view[ids] >= price)
            for k, v in (
                ("req", ids),
                ("skill", skill),
                ("price", price),
                ("posted", posted),
                ("outcome", u3),
                ("units", units),
            ):
                parts[k].append(v)
        board = {
            k: (torch.cat(v) if v else torch.zeros(0, dtype=torch.int64, device=on))
            for k, v in parts.items()
        }
        if not parts["posted"]:
            board["posted"] = torch.zeros(0, dtype=torch.bool, device=on)
        m["tasks_posted"] = board["posted"].sum()
        m["forecast_fees_micro"] = fee_paid
        m["deferred"] = deferred
        return board

    # ------------------------------------------------------------------ negotiators
    def _negotiators(self, t: Any, board: dict[str, Any], m: dict[str, Any]) -> tuple[Any, Any]:
        torch, on = self.torch, self.device
        nb = board["posted"].shape[0]
        contracted = torch.zeros(nb, dtype=torch.bool, device=on)
        empty = (torch.zeros(0, dtype=torch.int64, device=on),) * 3
        n_neg = self.negotiators.shape[0]
        if n_neg == 0 or nb == 0:
            m["contracts"] = 0
            return contracted, empty
        slots = torch.arange(nb, dtype=torch.int64, device=on)
        # The tasks auctioned: up to one per live negotiator, chosen at random among those posted.
        r_slot, _ = u32(slots, self.neg_key, t, 0)
        order = torch.sort(
            torch.where(board["posted"], r_slot, r_slot + (1 << 32)), stable=True
        ).indices
        mb = min(nb, n_neg)
        cand = order[:mb]
        alive_n = self.alive[self.negotiators]
        live = alive_n.sum()
        active_b = board["posted"][cand] & (torch.arange(mb, device=on) < live)
        ref = board["price"][cand]
        req = board["req"][cand]
        vb, _ = u32(req, self.neg_key, t, 1)
        # What the requester can pay, per mille of the posted price (at most 2000 is ever bid, so
        # a balance of 3 prices or more caps nothing, and the product stays small).
        held = self.ledger.view[req]
        ref1 = torch.clamp(ref, min=1)
        rich = held // ref1 >= 3
        budget = torch.where(rich, 3000, torch.where(rich, 0, held) * 1000 // ref1)
        value = torch.minimum(1000 + below(vb, 1001), budget)
        neg_ids = self.negotiators
        cs, _ = u32(neg_ids, self.neg_key, t, 2)
        cost = 500 + below(cs, 1001)
        start_ask = torch.clamp(cost + self.markup * cost // 1000, max=CEILING)
        rounds = torch.arange(ROUNDS, dtype=torch.int64, device=on).reshape(-1, 1)
        ub, _ = u32(req.reshape(1, -1) * 64 + rounds, self.neg_key, t, 3)
        us, _ = u32(neg_ids.reshape(1, -1) * 64 + rounds, self.neg_key, t, 4)
        bids = below(ub, value + 1)  # ZI-C bids, every round's at once: [ROUNDS, buyers]
        zi = cost + below(us, torch.clamp(CEILING - cost + 1, min=1))
        learned = torch.clamp(
            cost + (start_ask - cost) * (ROUNDS - rounds) // ROUNDS + below(us, 21), max=CEILING
        )
        asks = torch.where(self.n_learned, learned, zi)
        traded_b, traded_s, partner, price_b = auction_rounds(
            bids, asks, active_b, alive_n, post_max=CEILING, fused=self.fused
        )
        partner = torch.where(traded_b, partner, torch.zeros_like(partner))
        amount = torch.where(traded_b, price_b * ref // 1000, torch.zeros_like(ref))
        seller = torch.where(traded_b, neg_ids[partner], req)  # untraded: 0 to itself
        self.ledger.transfer(req, seller, amount)
        contracted[cand] = traded_b
        m["contracts"] = traded_b.sum()
        m["contract_credits_micro"] = amount.sum()
        # Surplus (per mille of the posted prices): realised, and the most the period allowed.
        L = min(mb, n_neg)
        m["surplus_pm"] = torch.where(
            traded_b, value - cost[partner], torch.zeros_like(value)
        ).sum()
        vs = torch.sort(
            torch.where(active_b, value, torch.full_like(value, -1)), descending=True
        ).values[:L]
        cs_sorted = torch.sort(torch.where(alive_n, cost, torch.full_like(cost, 1 << 40))).values[
            :L
        ]
        m["max_surplus_pm"] = torch.clamp(vs - cs_sorted, min=0).sum()
        # The learned markup: up when it traded, down when it did not.
        step = torch.where(
            traded_s, torch.full_like(self.markup, 20), torch.full_like(self.markup, -20)
        )
        self.markup = torch.where(
            self.n_learned & alive_n, torch.clamp(self.markup + step, 0, 1000), self.markup
        )
        edges = (req, seller, traded_b.to(torch.int64))
        return contracted, edges

    # ------------------------------------------------------------------ workers
    def _workers(
        self, t: Any, board: dict[str, Any], contracted: Any, m: dict[str, Any]
    ) -> tuple[Any, Any]:
        torch, on = self.torch, self.device
        nb, nw, S = board["posted"].shape[0], self.nw, self.S
        if nw == 0 or nb == 0:
            z = torch.zeros(nb, dtype=torch.bool, device=on)
            self.tick_served = {
                "paid": z,
                "cheat": z,
                "worker": torch.zeros(nb, dtype=torch.int64, device=on),
                "per_worker": lambda v: torch.zeros(nw, dtype=torch.int64, device=on),
            }
            self.w_failed = torch.zeros(nw, dtype=torch.int64, device=on)
            self.w_served = torch.zeros(nw, dtype=torch.int64, device=on)
            self._uptime()
            return z, (torch.zeros(0, dtype=torch.int64, device=on),) * 3
        posts = board["posted"] & ~contracted
        skill = board["skill"]
        slots = torch.arange(nb, dtype=torch.int64, device=on)
        zeros = torch.zeros_like(slots)

        tkey = torch.where(posts, skill, S)
        # Each slot's rank among the slots of its key, in slot order; the count of each skill.
        if self.fused:
            ranks, counts = cpu_kernels.ranks(tkey.numpy(), S + 1)
            rank, demand = torch.from_numpy(ranks), torch.from_numpy(counts[:S])
        else:
            order = torch.sort(tkey.to(torch.int32), stable=True).indices  # keys <= S <= 256
            demand = count_keys(tkey, S)
            start = torch.cat([torch.cumsum(demand, 0) - demand, demand.sum().reshape(1)])
            rank = torch.empty_like(slots)
            rank[order] = slots - start[tkey[order]]
        n_tasks = demand.sum()
        capacity = torch.clamp((self.capacity_num * n_tasks + 1000 * nw - 1) // (1000 * nw), min=1)
        ok = self.alive[self.workers] & (self.w_quarantine < 0)
        willing = ok & (self.prices[self.w_skill] >= self.w_cost)
        score = torch.clamp(2 * self.w_successes - self.w_tasks, -(1 << 20), 1 << 20)
        wkey = torch.where(
            willing, self.w_skill * (1 << 22) + ((1 << 21) - score), torch.full_like(score, S << 22)
        )
        ranked = torch.sort(wkey.to(torch.int32), stable=True).indices  # keys < 2**31 (S <= 256)
        n_willing = count_keys(torch.where(willing, self.w_skill, S), S)
        w_start = torch.cumsum(n_willing, 0) - n_willing
        slot = rank // capacity
        served = posts & (slot < n_willing[skill])
        w = ranked[torch.where(served, w_start[skill] + slot, zeros)]
        # Per-worker sums: a slot that no worker serves adds into a place of its own past the
        # workers (no two updates contend for one address).
        wx = torch.where(served, w, nw + slots)

        def per_worker(values: Any) -> Any:
            return torch.zeros(nw + nb, dtype=torch.int64, device=on).index_add_(0, wx, values)[:nw]

        quality = self.w_quality[w] * (1000 - self.w_severity[w]) // 1000
        uc, _ = u32(board["req"], stream_key(self.seed, "workers"), t, 0)
        cheat = served & self.w_cheater[w] & (uc < self.w_cheat_p[w])
        success = served & ~cheat & (board["outcome"] < quality)
        paid = success | cheat
        price = board["price"]
        # The verification sample: payer, amount and the payer's home balance before paying.
        pick = below(u32(self.sample_ids, self.verify_key, t, 0)[0], nb)
        payer = board["req"][pick]
        self.sample = torch.stack(
            [payer, torch.where(paid, price, zeros)[pick], self.ledger.view[payer]]
        )
        payee = torch.where(paid, self.workers[w], board["req"])  # unpaid: 0 to itself
        self.ledger.transfer(board["req"], payee, torch.where(paid, price, zeros))
        served_i = served.to(torch.int64)
        self.w_served = per_worker(served_i)
        self.w_tasks += self.w_served
        self.w_successes += per_worker(paid.to(torch.int64))
        self.w_failed = per_worker((served & ~paid).to(torch.int64))
        # Prices: demand against tasks served plus idle willing workers, in integer per mille.
        served_n = count_keys(torch.where(served, skill, S), S)
        idle = count_keys(torch.where(willing & (self.w_served == 0), self.w_skill, S), S)
        supply = served_n + idle
        e, cap = self.elasticity, self.max_step
        delta = torch.clamp(
            torch.div(
                e * (demand - supply), torch.clamp(demand + supply, min=1), rounding_mode="floor"
            ),
            -cap,
            cap,
        )
        self.prices = torch.clamp(
            self.prices + torch.div(self.prices * delta, 1000, rounding_mode="floor"),
            min=self.floor,
        )
        units_done = torch.where(success, board["units"], zeros).sum()
        # The uptime reward at the contribution multiplier of the network's compute so far.
        self._uptime()
        self.tick_served = {"paid": paid, "cheat": cheat, "worker": w, "per_worker": per_worker}
        m["tasks_served"] = served.sum()
        m["tasks_succeeded"] = success.sum()
        m["cheats"] = cheat.sum()
        m["units_done"] = units_done
        m["paid_micro"] = torch.where(paid, price, zeros).sum()
        m["tasks_expired"] = (posts & ~served).sum()
        return served, (board["req"], torch.where(served, self.workers[w], board["req"]), served_i)

    def _uptime(self) -> None:
        """Every live worker not in quarantine earns the uptime reward (minted), at the
        contribution multiplier of the network's compute so far."""
        ok = self.alive[self.workers] & (self.w_quarantine < 0)
        self._mint(self.workers, ok.to(self.torch.int64) * self.reward_dev)

    # ------------------------------------------------------------------ critics and healers
    def _critics(self, t: Any, board: dict[str, Any], served: Any, m: dict[str, Any]) -> None:
        torch = self.torch
        c = self.critic
        sv = self.tick_served
        if c is None or sv["paid"].shape[0] == 0 or self.nw == 0:
            m["checked"], m["caught"], m["refunded_micro"], m["slashed_micro"] = 0, 0, 0, 0
            m["slashes"] = 0
            return
        live = self.alive[self._ids(c)].any()
        paid, w = sv["paid"], sv["worker"]
        slots = torch.arange(paid.shape[0], dtype=torch.int64, device=self.device)
        u, ua = u32(slots, c.key, t, 0)
        b = threshold(c.params.check_budget)
        if c.learned:
            # Workers caught before are checked at four times the rate; the others' rate is lowered
            # so the expected number of checks stays the budget.
            sus = paid & self.w_caught[w]
            n_paid, n_sus = paid.sum(), sus.sum()
            hi = min(1 << 32, 4 * b)
            lo = torch.clamp((b * n_paid - hi * n_sus) // torch.clamp(n_paid - n_sus, min=1), min=0)
            thr = torch.where(self.w_caught[w], torch.full_like(u, hi), lo.expand(u.shape[0]))
        else:
            thr = torch.full_like(u, b)
        checked = paid & (u < thr) & live
        caught = checked & sv["cheat"] & (ua < threshold(c.params.check_accuracy))
        price = board["price"]
        zeros = torch.zeros_like(price)
        per_worker = sv["per_worker"]
        owed = per_worker(torch.where(caught, price, zeros))
        stake = self.stake[self.workers]
        covered = owed <= stake
        refund = torch.where(caught & covered[w], price, zeros)
        self.ledger.credit(board["req"], refund)  # released from the cheat's stake
        stake = stake - torch.where(covered, owed, torch.zeros_like(owed))
        hit = owed > 0
        slash = torch.where(hit, stake * self.slash_pm // 1000, torch.zeros_like(stake))
        self.stake[self.workers] = stake - slash
        self.burned = self.burned + slash.sum()
        n_caught = per_worker(caught.to(torch.int64))
        self.w_successes = torch.clamp(self.w_successes - n_caught, min=0)
        self.w_caught = self.w_caught | hit
        m["checked"], m["caught"] = checked.sum(), caught.sum()
        m["refunded_micro"], m["slashed_micro"] = refund.sum(), slash.sum()
        m["slashes"] = hit.sum()

    def _healers(self, t: Any, served: Any, m: dict[str, Any]) -> None:
        torch = self.torch
        h = self.healer
        restart = self.w_quarantine == t
        self.w_severity = torch.where(restart, torch.zeros_like(self.w_severity), self.w_severity)
        self.w_alarms = torch.where(restart, torch.zeros_like(self.w_alarms), self.w_alarms)
        self.w_ewma = torch.where(restart, torch.zeros_like(self.w_ewma), self.w_ewma)
        self.w_quarantine = torch.where(
            restart, torch.full_like(self.w_quarantine, -1), self.w_quarantine
        )
        m["restarts"] = restart.sum()
        if h is None or self.nw == 0:
            m["quarantined"], m["quarantined_degraded"] = 0, 0
            return
        live = self.alive[self._ids(h)].any()
        active = self.w_served > 0
        x = self.w_failed * Q16 // torch.clamp(self.w_served, min=1)
        alpha = round(h.params.ewma_alpha * Q16)
        self.w_ewma = torch.where(
            active, self.w_ewma + (alpha * (x - self.w_ewma) >> 16), self.w_ewma
        )
        pool = self.alive[self.workers] & (self.w_quarantine < 0)
        n = torch.clamp(pool.sum(), min=1)
        mean = torch.where(pool, self.w_ewma, torch.zeros_like(self.w_ewma)).sum() // n
        dev = self.w_ewma - mean
        var = torch.where(pool, dev * dev, torch.zeros_like(dev)).sum() // n
        # dev / sd > z, as integers: dev^2 > z^2 var, with z^2 scaled by 1000 (not 10^6) first so
        # the product stays in int64 (dev and sd are at most 2^16).
        zq = round(h.params.z_threshold * 1000)
        alarm = pool & (dev > 0) & (dev * dev > (zq * zq // 1000) * var // 1000) & live
        self.w_alarms = torch.where(alarm, self.w_alarms + 1, torch.zeros_like(self.w_alarms))
        start = alarm & (self.w_alarms >= h.params.confirm_ticks)
        self.w_quarantine = torch.where(
            start,
            torch.zeros_like(self.w_quarantine) + (t + h.params.restart_ticks),
            self.w_quarantine,
        )
        m["quarantined"] = start.sum()
        m["quarantined_degraded"] = (start & (self.w_severity > 0)).sum()

    # ------------------------------------------------------------------ learners
    def _world_model(self, t: Any, m: dict[str, Any]) -> None:
        if self.forecaster is None:
            return
        torch = self.torch
        # Last tick's one-step forecast against the price now, and persistence's error.
        err = (self.forecast - self.prices).abs().sum()
        persist = (self._last_prices - self.prices).abs().sum()
        change = (self.prices - self._last_prices) * Q16
        self.trend = self.trend + ((change - self.trend) >> 3)
        self.forecast = torch.clamp(self.prices + (self.trend >> 16), min=self.floor)
        self._last_prices = self.prices.clone()
        m["forecast_error_micro"], m["persistence_error_micro"] = err, persist

    def _refactor(self, t: Any, m: dict[str, Any]) -> None:
        torch, on = self.torch, self.device
        total = torch.zeros((), dtype=torch.int64, device=on)
        for k, p in enumerate(self.refactors):
            ids = self._ids(p)
            alive = self.alive[ids]
            code, q, last = self.code[k], self.qtable[k], self.last_change[k]
            n, mods = code.shape
            u0, u1 = u32(ids, p.key, t, 0)
            u2, u3 = u32(ids, p.key, t, 1)
            greedy = torch.argmax(q, dim=1)  # ties to the lowest action
            explore = (u0 < threshold(0.1)) if p.learned else torch.ones_like(alive)
            action = torch.where(explore, below(u1, 3), greedy)
            rows = torch.arange(n, dtype=torch.int64, device=on)
            module = below(u2, mods)
            has_last = last[:, 0] >= 0
            action = torch.where((action == 2) & ~has_last, torch.ones_like(action), action)
            cost = torch.where(
                action == 0, 5 * MICRO, torch.where(action == 1, MICRO, torch.zeros_like(action))
            )
            can = alive & (self.ledger.view[ids] >= cost)
            cost = torch.where(can, cost, torch.zeros_like(cost))
            target = torch.where(action == 2, torch.clamp(last[:, 0], min=0), module)
            old = code[rows, target]
            new = torch.where(
                action == 0,
                below(u3, 1001),
                torch.where(
                    action == 1,
                    torch.clamp(old + below(u3, 51), max=1000),
                    torch.clamp(last[:, 1], min=0),
                ),
            )
            new = torch.where(can, new, old)
            code[rows, target] = new
            self.last_change[k] = torch.where(
                (can & (action != 2)).reshape(-1, 1),
                torch.stack([target, old], dim=1),
                torch.where(
                    can.reshape(-1, 1) & (action == 2).reshape(-1, 1),
                    torch.full_like(last, -1),
                    last,
                ),
            )
            gain = new - old
            self._burn(ids, cost)
            earn = torch.clamp(gain, min=0) * (MICRO // 100)  # 0.01 credit per mille of quality
            self._mint(ids, earn)
            reward = gain * (MICRO // 100) - cost
            col = q[rows, action]
            q[rows, action] = torch.where(can, col + ((reward - col) >> 3), col)
            total = total + code.sum()
        if self.refactors:
            m["code_quality_sum"] = total

    # ------------------------------------------------------------------ coordination
    def _oscillate(self, edges: list[tuple[Any, Any, Any]]) -> dict[str, Any]:
        torch = self.torch
        c = self.coord
        assert c is not None
        src = torch.cat([e[0] for e in edges])
        dst = torch.cat([e[1] for e in edges])
        wgt = torch.cat([e[2] for e in edges])
        if self.fused:
            return self._oscillate_fused(src, dst, wgt)
        a, b = torch.cat([src, dst]), torch.cat([dst, src])
        w = torch.cat([wgt, wgt])
        deg = torch.zeros(self.N, dtype=torch.int64, device=self.device).index_add_(0, a, w)
        for _ in range(c.steps_per_tick):
            s = self.sin_table[(self.phase[b] - self.phase[a]) & 0xFFFF] * w
            pull = torch.zeros(self.N, dtype=torch.int64, device=self.device).index_add_(0, a, s)
            step = self.omega + torch.div(
                self.kq * pull, torch.clamp(deg, min=1) * SIN_ONE, rounding_mode="floor"
            )
            self.phase = (
                self.phase + torch.where(self.alive, step, torch.zeros_like(step))
            ) & 0xFFFF
        sin = self.sin_table[self.phase]
        cos = self.sin_table[(self.phase + (Q16 // 4)) & 0xFFFF]
        out: dict[str, Any] = {}
        home = self.ledger.home
        for r in range(self.R):
            mask = self.alive & (home == r)
            zero = torch.zeros_like(sin)
            out[f"coord_cos_{r}"] = torch.where(mask, cos, zero).sum()
            out[f"coord_sin_{r}"] = torch.where(mask, sin, zero).sum()
            out[f"coord_n_{r}"] = mask.sum()
        return out

    def _oscillate_fused(self, src: Any, dst: Any, wgt: Any) -> dict[str, Any]:
        """:meth:`_oscillate` as numba loops over the edges of nonzero weight (an edge of weight
        0 adds nothing to a pull or a degree): the same integers. The regions' sums take agent
        ``i``'s region as ``i mod R``, the ledger's home replica."""
        torch = self.torch
        c = self.coord
        assert c is not None
        keep = wgt != 0
        src, dst, wgt = src[keep], dst[keep], wgt[keep]
        a, b, w = torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([wgt, wgt])
        cpu_kernels.oscillate(
            self.phase.numpy(),
            self.omega.numpy(),
            self.alive.numpy(),
            a.numpy(),
            b.numpy(),
            w.numpy(),
            self.sin_table.numpy(),
            self.kq,
            SIN_ONE,
            c.steps_per_tick,
        )
        sums = cpu_kernels.region_sums(
            self.phase.numpy(), self.alive.numpy(), self.sin_table.numpy(), self.R
        ).tolist()
        out: dict[str, Any] = {}
        for r in range(self.R):
            out[f"coord_cos_{r}"] = sums[0][r]
            out[f"coord_sin_{r}"] = sums[1][r]
            out[f"coord_n_{r}"] = sums[2][r]
        return out

    def _order_parameter(self, t: int, row: dict[str, int]) -> None:
        sums = [sum(row[f"coord_{k}_{r}"] for r in range(self.R)) for k in ("cos", "sin", "n")]
        whole = math.isqrt((sums[0] ** 2 + sums[1] ** 2) * 1_000_000) // max(1, sums[2] * SIN_ONE)
        row["order_pm"] = whole
        for r in range(self.R):
            cs, sn, n = (
                row.pop(f"coord_cos_{r}"),
                row.pop(f"coord_sin_{r}"),
                row.pop(f"coord_n_{r}"),
            )
            order = math.isqrt((cs * cs + sn * sn) * 1_000_000) // max(1, n * SIN_ONE)
            row[f"order_{self.regions[r]}_pm"] = order
            if order >= self.sync_pm > self.order[r]:
                self.events.append(("sync_fired", "coordination", r, -1, order, self.regions[r]))
                self.ledger.anti_entropy([g for g in self.groups if r in g])
            self.order[r] = order

    def close(self) -> None:
        """Stop the proofs' host thread (after waiting for the last sample)."""
        self._prover.shutdown(wait=True)

    def collect_proofs(self) -> tuple[int, int]:
        """``(proved, refuted)`` of the last submitted sample (waiting for it); (0, 0) if none."""
        if self._proofs is None:
            return 0, 0
        result = self._proofs.result()
        self._proofs = None
        return result

    # ------------------------------------------------------------------ reading
    def total_credits(self) -> int:
        """Credits held in every balance, batch in flight and stake: must equal minted - burned."""
        return int(self.ledger.base.sum()) + self.ledger.pending_total() + int(self.stake.sum())

    def conserved(self) -> bool:
        """Whether the credits held equal those minted less those burned."""
        return self.total_credits() == int(self.minted) - int(self.burned)

    def subsystem_hashes(self) -> dict[str, str]:
        """SHA-256 of each subsystem's integer state."""

        def digest(*arrays: Any) -> str:
            h = hashlib.sha256()
            for a in arrays:
                h.update(np.ascontiguousarray(a.cpu().numpy().astype(np.int64)).tobytes())
            return h.hexdigest()

        out = dict(self.ledger.digests())
        out["ledger/views"] = digest(self.ledger.view)
        out["stake"] = digest(self.stake, self.minted, self.burned)
        out["alive"] = digest(self.alive)
        out["market"] = digest(self.prices)
        out["workers"] = digest(
            self.w_successes,
            self.w_tasks,
            self.w_severity,
            self.w_quarantine,
            self.w_ewma,
            self.w_alarms,
            self.w_caught,
        )
        out["negotiators"] = digest(self.markup)
        out["world_model"] = digest(self.trend, self.forecast)
        out["refactor"] = (
            digest(*self.code, *self.qtable, *self.last_change) if self.refactors else digest()
        )
        out["coordination"] = digest(self.phase) if self.coord is not None else digest()
        bus = repr((sorted(self.in_flight), self.groups, self.loss, self.order)).encode()
        out["bus"] = hashlib.sha256(bus).hexdigest()
        return out

    @staticmethod
    def combine(hashes: dict[str, str]) -> str:
        """One hash over the subsystems' hashes."""
        h = hashlib.sha256()
        for k in sorted(hashes):
            h.update(f"{k}={hashes[k]};".encode())
        return h.hexdigest()

    def synchronize(self) -> None:
        """Wait for the device's queued work (for timing)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
