"""The task market that the environments step: batched, array-held, one call per trading period.

``B`` independent markets, each with ``n`` negotiators (sellers of contracts) and ``n`` requesters
(buyers) -- the negotiator role's task auction (:mod:`agents.negotiator`). Every period each
negotiator draws a private cost for a task (0.5–1.5 times the task's posted price, which is one
credit), each requester a value (1–2 times), and they trade in a continuous double auction of
``ROUNDS`` rounds (Gode & Sunder's rules, :func:`agents.auction.double_auction_fast`): in each
round everyone untraded posts in random order, a post crossing the best standing opposite order
trades at that order's price. Requesters bid as zero-intelligence-constrained traders (uniform up
to their value, each round). A learning negotiator's input is its shade ``s ∈ [0, 1]``: it asks
``cost + s·(CEILING − cost)`` in every round; scripted negotiators (ZI-C) draw a fresh ask
uniformly in ``[cost, CEILING]`` each round. Profit is integer micro-credits; every live
negotiator pays ``fee`` micro-credits per period, and one that cannot pay the next period's fee is
bankrupt and leaves.

Clearing is one numba call over all markets; randomness comes from one generator per market, so
each market's episode depends only on its own seed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from agents.auction import CEILING, ROUNDS, arrival_orders, double_auction_fast
from agents.shade_policy import OBS_DIM, market_observation
from economy import MICRO


@njit(cache=True)
def clear(asks, bids, alive, cost, value, order, price_out, traded_out, surplus_out, best_out):
    """Run every market's auction. ``asks: [B, R, n]``, ``bids: [B, R, n]``, ``order: [B, R, 2n]``.

    Agents ``0..n-1`` of a market are its negotiators (sellers), ``n..2n-1`` its requesters.
    Departed negotiators do not post. Writes each negotiator's trade price (``price_out[B, n]``, 0
    if none), whether it traded, the realised surplus and the largest possible surplus per market.
    """
    B, R, n = asks.shape
    is_buyer = np.zeros(2 * n, dtype=np.bool_)
    is_buyer[n:] = True
    for b in range(B):
        limit = np.concatenate((cost[b], value[b]))
        posts = np.empty((R, 2 * n))
        posts[:, :n] = asks[b]
        posts[:, n:] = bids[b]
        for i in range(n):
            if not alive[b, i]:
                posts[:, i] = np.inf  # never crosses a bid: a departed seat does not trade
        partner, price = double_auction_fast(is_buyer, limit, posts, order[b])
        surplus_out[b] = 0.0
        for i in range(n):
            traded_out[b, i] = partner[i] >= 0
            price_out[b, i] = price[i]
            if partner[i] >= 0:
                surplus_out[b] += value[b, partner[i] - n] - cost[b, i]
        vs = np.sort(value[b])[::-1]
        cs = np.sort(cost[b][alive[b]])
        best_out[b] = 0.0
        for j in range(min(vs.size, cs.size)):
            if vs[j] <= cs[j]:
                break
            best_out[b] += vs[j] - cs[j]


class MarketBatch:
    """``B`` markets of ``n`` negotiators each, stepped together."""

    def __init__(self, n_markets: int, n_agents: int, periods: int, fee: int, initial: int) -> None:
        if n_agents < 1 or n_markets < 1 or periods < 1:
            raise ValueError(
                f"need at least one market, agent and period; got {n_markets}, "
                f"{n_agents}, {periods}"
            )
        self.B, self.n, self.periods = n_markets, n_agents, periods
        self.fee, self.initial = fee, initial  # micro-credits
        # Fresh entropy until a reset seeds them.
        self.rngs = [np.random.default_rng() for _ in range(n_markets)]
        self.credits = np.zeros((n_markets, n_agents), dtype=np.int64)
        self.alive = np.zeros((n_markets, n_agents), dtype=np.bool_)
        self.cost = np.zeros((n_markets, n_agents))
        self.t = np.zeros(n_markets, dtype=np.int64)
        self.last_price = np.zeros(n_markets)
        self.surplus = np.zeros(n_markets)
        self.best = np.zeros(n_markets)
        self._price = np.zeros((n_markets, n_agents))
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
        """Every negotiator's observation ``float32[B, n, OBS_DIM]``, each feature in ``[-1, 1]``:
        cost, last clearing price, credits against the start, share of the episode left (scaled
        as :func:`agents.shade_policy.market_observation` says)."""
        obs = market_observation(
            self.cost,
            self.last_price[:, None],
            self.credits / self.initial,
            (1.0 - self.t / self.periods)[:, None],
        ).astype(np.float32)
        assert obs.shape == (self.B, self.n, OBS_DIM)
        return obs

    def step(
        self, shade: npt.NDArray[np.float64], scripted: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """One period in every market. ``shade[B, n]`` in [0, 1] for the learners; ``scripted[n]``
        marks ZI-C seats.

        Returns each negotiator's net gain this period (micro-credits, ``[B, n]``; 0 for the
        departed), who went bankrupt this period, and which markets reached their last period.
        """
        B, n = self.B, self.n
        value = np.empty((B, n))
        bids = np.empty((B, ROUNDS, n))
        asks = np.empty((B, ROUNDS, n))
        order = np.empty((B, ROUNDS, 2 * n), dtype=np.int64)
        a = np.asarray(shade, dtype=np.float64)
        for b in range(B):
            rng = self.rngs[b]
            value[b] = rng.uniform(1.0, 2.0, n)
            bids[b] = rng.random((ROUNDS, n)) * value[b]
            asks[b] = self.cost[b] + a[b] * (CEILING - self.cost[b])
            zic = self.cost[b] + rng.random((ROUNDS, n)) * (CEILING - self.cost[b])
            asks[b][:, scripted] = zic[:, scripted]
            order[b] = arrival_orders(rng.random((ROUNDS, 2 * n)))
        clear(
            asks,
            bids,
            self.alive,
            self.cost,
            value,
            order,
            self._price,
            self._traded,
            self._s,
            self._b,
        )
        traded = self._traded & self.alive
        profit = np.where(traded, np.floor((self._price - self.cost) * MICRO), 0).astype(np.int64)
        gain = np.where(self.alive, profit - self.fee, 0)
        count = traded.sum(axis=1)
        price = np.where(count > 0, (self._price * traded).sum(axis=1) / np.maximum(count, 1), 0.0)
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
