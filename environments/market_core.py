"""The task market that the environments step: batched, array-held, one call per trading period.

``B`` independent markets, each with ``n`` negotiators (sellers of contracts) and ``n`` requesters
(buyers). Every period each negotiator draws a private cost for a task (0.5–1.5 times the task's
posted price, which is one credit), each requester a value (1–2 times), and the market clears as a
call market (a k = ½ double auction): bids sorted high to low against asks low to high, the ``k``
crossing pairs trade at the midpoint of the k-th pair, one price for all. Requesters bid as
zero-intelligence-constrained traders (uniform up to their value). A negotiator's action is its
shade ``a ∈ [0, 1]``: it asks ``cost + a·(CEILING − cost)``; scripted negotiators (ZI-C) draw
``a`` uniformly. Profit is integer micro-credits; every live negotiator pays ``fee`` micro-credits
per period, and one that cannot pay the next period's fee is bankrupt and leaves its market.

Clearing is one numba kernel over all markets; randomness comes from one generator per market, so
each market's episode depends only on its own seed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

CEILING = 2.0  # highest ask, in units of the task's posted price
UNIT = 1_000_000  # micro-credits per credit: a task's posted price is one credit
OBS_DIM = 4


@njit(cache=True)
def clear(asks, bids, alive, cost, value, price_out, traded_out, surplus_out, best_out):
    """Clear every market: per market the uniform price, which sellers traded, realised and best surplus.

    ``asks, cost, alive: [B, n]``, ``bids, value: [B, n]``. Dead sellers do not ask. Writes
    ``price_out[B]`` (NaN when nothing trades), ``traded_out[B, n]``, ``surplus_out[B]`` (value minus
    cost of the trades made) and ``best_out[B]`` (the most surplus any set of trades could make).
    """
    B, n = asks.shape
    for b in range(B):
        live = np.flatnonzero(alive[b])
        traded_out[b, :] = False
        price_out[b] = np.nan
        surplus_out[b] = 0.0
        best_out[b] = 0.0
        if live.size == 0:
            continue
        sa = live[np.argsort(asks[b, live])]
        sb = np.argsort(-bids[b])
        k = 0
        while k < sa.size and k < n and bids[b, sb[k]] >= asks[b, sa[k]]:
            k += 1
        if k > 0:
            price_out[b] = 0.5 * (bids[b, sb[k - 1]] + asks[b, sa[k - 1]])
            for j in range(k):
                traded_out[b, sa[j]] = True
                surplus_out[b] += value[b, sb[j]] - cost[b, sa[j]]
        vs = np.sort(value[b])[::-1]
        cs = np.sort(cost[b, live])
        for j in range(min(vs.size, cs.size)):
            if vs[j] <= cs[j]:
                break
            best_out[b] += vs[j] - cs[j]


class MarketBatch:
    """``B`` markets of ``n`` negotiators each, stepped together."""

    def __init__(self, n_markets: int, n_agents: int, periods: int, fee: int, initial: int) -> None:
        if n_agents < 1 or n_markets < 1 or periods < 1:
            raise ValueError(f"need at least one market, agent and period; got {n_markets}, {n_agents}, {periods}")
        self.B, self.n, self.periods, self.fee, self.initial = n_markets, n_agents, periods, fee, initial
        self.rngs = [np.random.default_rng(i) for i in range(n_markets)]
        self.credits = np.zeros((n_markets, n_agents), dtype=np.int64)
        self.alive = np.zeros((n_markets, n_agents), dtype=np.bool_)
        self.cost = np.zeros((n_markets, n_agents))
        self.t = np.zeros(n_markets, dtype=np.int64)
        self.last_price = np.zeros(n_markets)
        self.surplus = np.zeros(n_markets)
        self.best = np.zeros(n_markets)
        self._price = np.zeros(n_markets)
        self._traded = np.zeros((n_markets, n_agents), dtype=np.bool_)
        self._s = np.zeros(n_markets)
        self._b = np.zeros(n_markets)

    def reset(self, b: int, seed: int | None) -> None:
        """Start market ``b`` afresh (seeded when ``seed`` is given, else from its own stream)."""
        if seed is not None:
            self.rngs[b] = np.random.default_rng(seed)
        self.credits[b] = self.initial
        self.alive[b] = True
        self.t[b] = 0
        self.last_price[b] = 0.0
        self.surplus[b] = self.best[b] = 0.0
        self.cost[b] = self.rngs[b].uniform(0.5, 1.5, self.n)

    def observe(self) -> npt.NDArray[np.float32]:
        """Every negotiator's observation ``[B, n, OBS_DIM]``: cost, last clearing price, credits
        relative to the start, share of the episode left."""
        obs = np.empty((self.B, self.n, OBS_DIM), dtype=np.float32)
        obs[:, :, 0] = self.cost
        obs[:, :, 1] = self.last_price[:, None]
        obs[:, :, 2] = np.minimum(self.credits / self.initial, 10.0)
        obs[:, :, 3] = (1.0 - self.t / self.periods)[:, None]
        return obs

    def step(self, shade: npt.NDArray[np.float64], scripted: npt.NDArray[np.bool_]
             ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """One period in every market. ``shade[B, n]`` for the learners; ``scripted[n]`` marks ZI-C seats.

        Returns each negotiator's net gain this period (micro-credits, ``[B, n]``; 0 for the
        departed), who went bankrupt this period, and which markets reached their last period.
        """
        B, n = self.B, self.n
        value = np.empty((B, n))
        bids = np.empty((B, n))
        a = np.array(shade, dtype=np.float64, copy=True)
        for b in range(B):
            rng = self.rngs[b]
            value[b] = rng.uniform(1.0, 2.0, n)
            bids[b] = rng.random(n) * value[b]
            zic = rng.random(n)
            a[b, scripted] = zic[scripted]
        asks = self.cost + a * (CEILING - self.cost)
        clear(asks, bids, self.alive, self.cost, value, self._price, self._traded, self._s, self._b)
        price = np.nan_to_num(self._price, nan=0.0)
        profit = np.where(self._traded, np.floor((price[:, None] - self.cost) * UNIT), 0).astype(np.int64)
        gain = np.where(self.alive, profit - self.fee, 0)
        self.credits += gain
        bankrupt = self.alive & (self.credits < self.fee)
        self.alive &= ~bankrupt
        self.surplus += self._s
        self.best += self._b
        self.last_price = price
        self.t += 1
        for b in range(B):
            self.cost[b] = self.rngs[b].uniform(0.5, 1.5, n)
        return gain, bankrupt, self.t >= self.periods
