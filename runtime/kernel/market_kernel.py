"""The task market as one synchronous tensor step: the market's GPU path (torch, any device).

The World's market (agents/requester.py, agents/worker.py, economy/routing.py) routes tasks one
after another -- a greedy pass in which each task takes the best worker with room -- and pays
through the replicated ledger. That order is what makes it sequential. This module states the same
market as a *synchronous* rule, every agent at once, so it runs as a few dozen tensor operations
per tick on a GPU (or the CPU), and keeps every quantity an integer so the CPU and the GPU give the
same bits:

1. Each requester draws (Philox-4x32-10, counter ``(agent, tick, 0, 0)``) whether it wants to post
   (``post_rate``), a skill and 1..``task_units`` units, and posts when its credits cover
   ``price[skill] × units`` -- one task per requester per tick, checked against its own credits, so
   no payment can overdraw it.
2. A worker is willing when its skill's price covers its cost. Capacity per worker:
   ``ceil(capacity_factor × tasks / workers)``.
3. Routing: the tasks of skill ``s`` (in requester order) go to the willing workers of skill ``s``
   ranked by reputation score (2 × successes − tasks, ties to the lower id): the task of rank ``j``
   to the worker of rank ``j // capacity``; tasks past the last willing worker's room are unserved.
4. A served task succeeds when the fourth word of the requester's draw falls below the worker's
   quality (a 32-bit threshold); a success moves ``price × units`` from the requester to the worker.
5. Each worker's successes and tasks count up (its reputation).
6. Each skill's price moves by ``clamp(500 × (demand − supply) // (demand + supply), −50, 50)`` per
   mille (the World's elasticity 0.5 and 5% step), supply being tasks served plus idle willing
   workers; never below the floor.
7. Every worker earns the uptime reward (minted).

Credits live in this kernel's own int64 array, not in the CRDT ledger (like the exchange benchmark's
wealth): it is the market's arithmetic at scale, without replication, roles or the event log.
Total credits always equal the initial credits plus the uptime minted
(:meth:`MarketKernel.credits_issued`).
:func:`reference_tick` is the same rule written plainly in numpy and Python loops; the tests hold
the kernel to it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from economy.rates import MICRO
from runtime.kernel.exchange import philox_torch

K1 = 0xA60A  # the key's second word; the seed is the first


def _draws(ids: Any, tick: int, stream: int, seed: int) -> tuple[Any, Any, Any, Any]:
    import torch

    zeros = torch.zeros_like(ids)
    key0 = seed & 0xFFFFFFFF
    draws: tuple[Any, Any, Any, Any] = philox_torch(
        ids, zeros + tick, zeros + stream, zeros, key0, K1
    )
    return draws


def market_tick(
    credits: Any,
    prices: Any,
    successes: Any,
    tasks: Any,
    skill_w: Any,
    quality: Any,
    cost_w: Any,
    tick: Any,
    nr: int,
    nw: int,
    S: int,
    post_threshold: int,
    task_units: int,
    capacity_num: int,
    uptime: int,
    floor: int,
    seed: int,
) -> tuple[Any, Any, Any, Any]:
    """One tick as a pure function of the state tensors (every shape fixed by the sizes: no
    data-dependent shapes, so it compiles to a few fused kernels); returns the new credits, prices,
    successes, tasks."""
    import torch

    dev = credits.device
    req = torch.arange(nr, dtype=torch.int64, device=dev)
    zeros = torch.zeros_like(req)
    r0, r1, r2, r3 = philox_torch(req, zeros + tick, zeros, zeros, seed, K1)
    skill = (r1 * S) >> 32
    units = 1 + ((r2 * task_units) >> 32)
    price = prices[skill] * units
    posts = (r0 < post_threshold) & (credits[:nr] >= price)

    # How many keys fall on each skill (key S: none).
    def count(keys: Any) -> Any:
        return torch.zeros(S + 1, dtype=torch.int64, device=dev).index_add_(
            0, keys, torch.ones_like(keys)
        )[:S]

    # Tasks ranked within their skill, in requester order (requesters that do not post sort last).
    tkey = torch.where(posts, skill, S)
    order = torch.sort(tkey, stable=True).indices
    demand = count(tkey)
    start = torch.cat([torch.cumsum(demand, 0) - demand, demand.sum().reshape(1)])
    rank = torch.empty_like(req)
    rank[order] = req - start[tkey[order]]
    n_tasks = demand.sum()
    capacity = torch.clamp((capacity_num * n_tasks + 1000 * nw - 1) // (1000 * nw), min=1)
    # Willing workers ranked within their skill by score, then id.
    willing = prices[skill_w] >= cost_w
    score = torch.clamp(2 * successes - tasks, -(1 << 20), 1 << 20)
    wkey = torch.where(
        willing, skill_w * (1 << 22) + ((1 << 21) - score), torch.full_like(score, S << 22)
    )
    ranked = torch.sort(wkey, stable=True).indices
    n_willing = count(torch.where(willing, skill_w, S))
    w_start = torch.cumsum(n_willing, 0) - n_willing
    slot = rank // capacity
    served = posts & (slot < n_willing[skill])
    w_local = ranked[torch.where(served, w_start[skill] + slot, zeros)]
    # Outcomes (word 3 of the requester's draw) and payments.
    success = served & (r3 < quality[w_local])
    paid = torch.where(success, price, zeros)
    credits = credits.clone()
    credits[:nr] -= paid
    credits.index_add_(0, nr + w_local, paid)
    served_i = served.to(torch.int64)
    tasks = tasks.clone().index_add_(0, w_local, served_i)
    successes = successes.clone().index_add_(0, w_local, success.to(torch.int64))
    # Prices: demand against tasks served plus idle willing workers, in integer per mille.
    served_n = count(torch.where(served, skill, S))
    busy = torch.zeros(nw, dtype=torch.int64, device=dev).index_add_(0, w_local, served_i) > 0
    idle = count(torch.where(willing & ~busy, skill_w, S))
    supply = served_n + idle
    delta = torch.clamp(
        torch.div(
            500 * (demand - supply), torch.clamp(demand + supply, min=1), rounding_mode="floor"
        ),
        -50,
        50,
    )
    prices = torch.clamp(prices + torch.div(prices * delta, 1000, rounding_mode="floor"), min=floor)
    credits[nr:] += uptime
    return credits, prices, successes, tasks


class MarketKernel:
    """``n_requesters`` requesters (ids 0..) and ``n_workers`` workers (ids after them) on
    ``device``."""

    def __init__(
        self,
        n_requesters: int,
        n_workers: int,
        *,
        seed: int = 0,
        device: str = "cpu",
        n_skills: int = 8,
        post_rate: float = 0.2,
        task_units: int = 3,
        initial_credits: int = 50,
        capacity_factor: float = 1.25,
        uptime_micro: int = 100_000,
        price: int = MICRO,
        price_floor: int = 1_000,
    ) -> None:
        import torch

        if n_requesters < 1 or n_workers < 1 or not 1 <= n_skills <= 1 << 10:
            raise ValueError(
                "need n_requesters, n_workers >= 1 and 1 <= n_skills <= 1024; got "
                f"{n_requesters}, {n_workers}, {n_skills}"
            )
        self.torch = torch
        self.device = torch.device(device)
        self.nr, self.nw, self.n_skills = n_requesters, n_workers, n_skills
        self.seed = seed
        self.post_threshold = int(post_rate * (1 << 32))
        self.task_units = task_units
        self.capacity_num = round(
            capacity_factor * 1000
        )  # capacity = ceil(num × tasks / (1000 × workers))
        self.uptime = uptime_micro
        self.floor = price_floor
        self.tick = 0
        self.minted = 0
        self.initial = initial_credits * MICRO * n_requesters
        i64, on = torch.int64, self.device
        self.credits = torch.zeros(n_requesters + n_workers, dtype=i64, device=on)
        self.credits[:n_requesters] = initial_credits * MICRO
        self.prices = torch.full((n_skills,), price, dtype=i64, device=on)
        workers = torch.arange(n_requesters, n_requesters + n_workers, dtype=i64, device=on)
        r0, r1, r2, _ = _draws(workers, 0, 9, seed)  # each worker's skill, quality and cost, once
        self.skill = (r0 * n_skills) >> 32
        self.quality = (1 << 32) * 8 // 10 + (
            (r1 * ((1 << 32) * 2 // 10)) >> 32
        )  # 0.8..1.0 of 2^32
        self.cost = price // 5 + ((r2 * (price * 13 // 10)) >> 32)  # 0.2..1.5 of the first price
        self.successes = torch.zeros(n_workers, dtype=i64, device=on)
        self.tasks = torch.zeros(n_workers, dtype=i64, device=on)
        self._tick_fn = market_tick

    # ------------------------------------------------------------------ one tick
    def step(self) -> None:
        """One synchronous tick (see the module docstring); no host synchronisation."""
        tick = self.torch.full((), self.tick, dtype=self.torch.int64, device=self.device)
        self.credits, self.prices, self.successes, self.tasks = self._tick_fn(
            self.credits,
            self.prices,
            self.successes,
            self.tasks,
            self.skill,
            self.quality,
            self.cost,
            tick,
            self.nr,
            self.nw,
            self.n_skills,
            self.post_threshold,
            self.task_units,
            self.capacity_num,
            self.uptime,
            self.floor,
            self.seed & 0xFFFFFFFF,
        )
        self.minted += self.uptime * self.nw
        self.tick += 1

    def compile(self) -> None:
        """Use ``torch.compile`` of the tick (fused kernels on a GPU; the same integers)."""
        self._tick_fn = self.torch.compile(market_tick, dynamic=False)

    def run(self, ticks: int) -> None:
        """``ticks`` ticks."""
        for _ in range(ticks):
            self.step()

    # ------------------------------------------------------------------ observation
    @property
    def credits_issued(self) -> int:
        """Initial credits plus uptime minted: what the agents must hold in all."""
        return self.initial + self.minted

    def arrays(self) -> dict[str, np.ndarray]:
        """The integer state, on the host."""
        return {
            k: getattr(self, k).cpu().numpy() for k in ("credits", "successes", "tasks", "prices")
        }

    def state_hash(self) -> str:
        """SHA-256 over the integer state (the same on every device for the same seed and ticks)."""
        h = hashlib.sha256()
        for name, a in self.arrays().items():
            h.update(name.encode() + np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


def reference_tick(k: MarketKernel) -> None:
    """The same tick as :meth:`MarketKernel.step`, written plainly (numpy draws, Python loops); for
    tests."""
    from numpy import uint32

    from runtime.kernel.exchange import philox

    t, nr, S = k.tick, k.nr, k.n_skills
    credits = k.credits.cpu().numpy().copy()
    prices = k.prices.cpu().numpy().copy()
    skill_w = k.skill.cpu().numpy()
    quality = k.quality.cpu().numpy()
    cost_w = k.cost.cpu().numpy()
    successes = k.successes.cpu().numpy().copy()
    tasks_w = k.tasks.cpu().numpy().copy()
    posted: list[
        tuple[int, int, int, int, int]
    ] = []  # requester, skill, units, price, its fourth word
    for r in range(nr):
        w0, w1, w2, w3 = philox(
            uint32(r), uint32(t), uint32(0), uint32(0), uint32(k.seed & 0xFFFFFFFF), uint32(K1)
        )
        s = (int(w1) * S) >> 32
        u = 1 + ((int(w2) * k.task_units) >> 32)
        price = int(prices[s]) * u
        if int(w0) < k.post_threshold and credits[r] >= price:
            posted.append((r, s, u, price, int(w3)))
    capacity = max(1, -(-k.capacity_num * len(posted) // (1000 * k.nw)))
    queues = {}
    for s in range(S):
        willing = [w for w in range(k.nw) if skill_w[w] == s and prices[s] >= cost_w[w]]
        queues[s] = sorted(
            willing,
            key=lambda w: (
                -max(-(1 << 20), min(1 << 20, 2 * int(successes[w]) - int(tasks_w[w]))),
                w,
            ),
        )
    seen = dict.fromkeys(range(S), 0)
    load = np.zeros(k.nw, dtype=np.int64)
    demand = np.zeros(S, dtype=np.int64)
    served_n = np.zeros(S, dtype=np.int64)
    for r, s, _u, price, w3 in posted:
        demand[s] += 1
        j = seen[s]
        seen[s] += 1
        if j // capacity >= len(queues[s]):
            continue
        w = queues[s][j // capacity]
        load[w] += 1
        served_n[s] += 1
        tasks_w[w] += 1
        if int(w3) < int(quality[w]):
            successes[w] += 1
            credits[r] -= price
            credits[nr + w] += price
    for s in range(S):
        idle = sum(1 for w in queues[s] if load[w] == 0)
        d, sup = int(demand[s]), int(served_n[s]) + idle
        delta = max(-50, min(50, (500 * (d - sup)) // max(d + sup, 1)))
        prices[s] = max(k.floor, int(prices[s]) + (int(prices[s]) * delta) // 1000)
    credits[nr:] += k.uptime
    torch = k.torch
    k.credits = torch.as_tensor(credits, device=k.device)
    k.prices = torch.as_tensor(prices, device=k.device)
    k.successes = torch.as_tensor(successes, device=k.device)
    k.tasks = torch.as_tensor(tasks_w, device=k.device)
    k.minted += k.uptime * k.nw
    k.tick += 1
