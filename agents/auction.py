"""The task auction's kernels: a continuous double auction (Gode & Sunder's rules), a call market
that clears each round at one price, and their scores.

:func:`double_auction` is the direct form (each post scans the standing orders: O(n) per post);
:func:`double_auction_fast` keeps the standing orders in two heaps (O(log n) per post) and gives the
same result, ties included -- the tests compare them on random markets. The negotiator role clears
with the fast one or with :func:`call_auction`, as the scenario's ``market.mechanism`` says; the
Market environments with the fast one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

ROUNDS = 30  # rounds of the task auction per tick (the environments: per trading period)
# Highest ask, in units of the task's posted price: costs are 0.5-1.5 of it and values 1-2 of it.
CEILING = 2.0


def arrival_orders(keys: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Each row's arrival order from random ``keys: float64[rounds, n]``: the indices by rising key,
    equal keys by index -- what ``np.argsort(keys, axis=1, kind="stable")`` gives, on every machine.

    Plain ``np.argsort`` (quicksort) may order equal keys differently on CPUs with and without
    AVX-512, and uniforms of 53 bits do tie now and then in rows of 10^5 and more. It is still the
    fast path: rows whose sorted keys have no equal neighbours have one order only, and the few rows
    with a tie are sorted again, stably.
    """
    keys = np.asarray(keys, dtype=np.float64)
    order = np.argsort(keys, axis=1)
    if keys.shape[1] > 1:
        ranked = np.take_along_axis(keys, order, axis=1)
        for r in np.flatnonzero((ranked[:, 1:] == ranked[:, :-1]).any(axis=1)).tolist():
            order[r] = np.argsort(keys[r], kind="stable")
    return order.astype(np.int64, copy=False)


@njit(cache=True)
def double_auction(is_buyer, limit, posts, order):
    """Run one continuous double auction; return (partner, price) per agent (-1 / 0 if untraded).

    ``posts: float64[rounds, n]`` is each agent's post in each round, ``order: int64[rounds, n]``
    the arrival order of each round. A post crossing the best standing opposite order trades at that
    order's price; otherwise it replaces the agent's standing order. Among equal prices the lowest
    index is best.
    """
    n = limit.shape[0]
    partner = np.full(n, -1, dtype=np.int64)
    price = np.zeros(n)
    standing = np.full(n, np.nan)
    for r in range(posts.shape[0]):
        for k in range(n):
            i = order[r, k]
            if partner[i] >= 0:
                continue
            p = posts[r, i]
            best = -1
            for j in range(n):  # best standing order on the other side
                if partner[j] >= 0 or is_buyer[j] == is_buyer[i] or np.isnan(standing[j]):
                    continue
                if best < 0 or (
                    standing[j] < standing[best] if is_buyer[i] else standing[j] > standing[best]
                ):
                    best = j
            if best >= 0 and (
                (is_buyer[i] and p >= standing[best]) or (not is_buyer[i] and p <= standing[best])
            ):
                partner[i], partner[best] = best, i
                price[i] = price[best] = standing[best]
                standing[i] = standing[best] = np.nan
            else:
                standing[i] = p
    return partner, price


@njit(cache=True)
def _push(key, idx, ver, size, k, i, v):
    """Push (k, i, v) on the min-heap (ordered by key, then index) in ``key/idx/ver[:size]``."""
    j = size
    key[j], idx[j], ver[j] = k, i, v
    while j > 0:
        up = (j - 1) // 2
        if key[up] < key[j] or (key[up] == key[j] and idx[up] <= idx[j]):
            break
        key[up], key[j] = key[j], key[up]
        idx[up], idx[j] = idx[j], idx[up]
        ver[up], ver[j] = ver[j], ver[up]
        j = up
    return size + 1


@njit(cache=True)
def _pop(key, idx, ver, size):
    """Remove the heap's top; return the new size."""
    size -= 1
    key[0], idx[0], ver[0] = key[size], idx[size], ver[size]
    j = 0
    while True:
        a = 2 * j + 1
        b = a + 1
        m = j
        if a < size and (key[a] < key[m] or (key[a] == key[m] and idx[a] < idx[m])):
            m = a
        if b < size and (key[b] < key[m] or (key[b] == key[m] and idx[b] < idx[m])):
            m = b
        if m == j:
            return size
        key[m], key[j] = key[j], key[m]
        idx[m], idx[j] = idx[j], idx[m]
        ver[m], ver[j] = ver[j], ver[m]
        j = m


@njit(cache=True)
def double_auction_fast(is_buyer, limit, posts, order):
    """:func:`double_auction` with standing asks in a min-heap keyed (price, index) and standing
    bids
    in one keyed (−price, index); an order replaced by a newer one, or whose agent traded, is
    dropped
    when it reaches the top (lazy deletion)."""
    n = limit.shape[0]
    cap = posts.shape[0] * n + 1
    partner = np.full(n, -1, dtype=np.int64)
    price = np.zeros(n)
    version = np.zeros(n, dtype=np.int64)  # an agent's live order carries its current version
    ak = np.empty(cap)
    ai = np.empty(cap, dtype=np.int64)
    av = np.empty(cap, dtype=np.int64)
    bk = np.empty(cap)
    bi = np.empty(cap, dtype=np.int64)
    bv = np.empty(cap, dtype=np.int64)
    na = 0
    nb = 0
    for r in range(posts.shape[0]):
        for k in range(n):
            i = order[r, k]
            if partner[i] >= 0:
                continue
            p = posts[r, i]
            best = -1
            at = 0.0
            if is_buyer[i]:
                while na > 0 and (partner[ai[0]] >= 0 or av[0] != version[ai[0]]):
                    na = _pop(ak, ai, av, na)
                if na > 0 and p >= ak[0]:
                    best, at = ai[0], ak[0]
                    na = _pop(ak, ai, av, na)
            else:
                while nb > 0 and (partner[bi[0]] >= 0 or bv[0] != version[bi[0]]):
                    nb = _pop(bk, bi, bv, nb)
                if nb > 0 and p <= -bk[0]:
                    best, at = bi[0], -bk[0]
                    nb = _pop(bk, bi, bv, nb)
            if best >= 0:
                partner[i] = best
                partner[best] = i
                price[i] = at
                price[best] = at
            else:
                version[i] += 1
                if is_buyer[i]:
                    nb = _push(bk, bi, bv, nb, -p, i, version[i])
                else:
                    na = _push(ak, ai, av, na, p, i, version[i])
    return partner, price


@njit(cache=True)
def call_auction(is_buyer, limit, posts, order):
    """A call market in each round: every untraded agent's post of the round is collected, then the
    round clears at one price; return (partner, price) per agent, as :func:`double_auction` does.

    Bids are ranked high to low and asks low to high, equal posts by the round's arrival ``order``
    (price-time priority within the batch); the k best bids meet the k best asks while the bid is
    at least the ask, pair by pair. Every pair trades at the round's price, the middle of the range
    that clears exactly those k pairs: from the larger of the k-th ask and the (k+1)-th bid to the
    smaller of the k-th bid and the (k+1)-th ask. Posts that do not trade do not stand: each round
    is a new call. A sort per round (no order book walked post by post), so the rounds' work is
    parallel where the continuous auction's is sequential.
    """
    n = limit.shape[0]
    partner = np.full(n, -1, dtype=np.int64)
    price = np.zeros(n)
    for r in range(posts.shape[0]):
        buyers = np.empty(n, dtype=np.int64)
        sellers = np.empty(n, dtype=np.int64)
        nb = 0
        ns = 0
        for k in range(n):  # untraded agents in arrival order
            i = order[r, k]
            if partner[i] >= 0:
                continue
            if is_buyer[i]:
                buyers[nb] = i
                nb += 1
            else:
                sellers[ns] = i
                ns += 1
        if nb == 0 or ns == 0:
            continue
        buyers = buyers[:nb]
        sellers = sellers[:ns]
        bids = np.empty(nb)
        for a in range(nb):
            bids[a] = -posts[r, buyers[a]]
        asks = np.empty(ns)
        for a in range(ns):
            asks[a] = posts[r, sellers[a]]
        # A stable sort keeps arrival order among equal posts.
        buyers = buyers[np.argsort(bids, kind="mergesort")]
        sellers = sellers[np.argsort(asks, kind="mergesort")]
        k = 0
        while k < nb and k < ns and posts[r, buyers[k]] >= posts[r, sellers[k]]:
            k += 1
        if k == 0:
            continue
        low = posts[r, sellers[k - 1]]
        if k < nb and posts[r, buyers[k]] > low:
            low = posts[r, buyers[k]]
        high = posts[r, buyers[k - 1]]
        if k < ns and posts[r, sellers[k]] < high:
            high = posts[r, sellers[k]]
        at = (low + high) / 2.0
        for a in range(k):
            b, s = buyers[a], sellers[a]
            partner[b], partner[s] = s, b
            price[b] = at
            price[s] = at
    return partner, price


MECHANISMS = ("cda", "call")  # the task auction's clearing rules: market.mechanism


def clear(mechanism, is_buyer, limit, posts, order):  # type: ignore[no-untyped-def]
    """The task auction cleared by ``mechanism``: ``"cda"`` (:func:`double_auction_fast`) or
    ``"call"`` (:func:`call_auction`)."""
    if mechanism == "call":
        return call_auction(is_buyer, limit, posts, order)
    return double_auction_fast(is_buyer, limit, posts, order)


def max_surplus(is_buyer: npt.NDArray[np.bool_], limit: npt.NDArray[np.float64]) -> float:
    """Largest total surplus any set of trades could realise (values high to low against costs low
    to high)."""
    values = np.sort(limit[is_buyer])[::-1]
    costs = np.sort(limit[~is_buyer])
    k = min(values.size, costs.size)
    gaps = values[:k] - costs[:k]
    return float(gaps[gaps > 0].sum())


def realised_surplus(
    is_buyer: npt.NDArray[np.bool_], limit: npt.NDArray[np.float64], partner: npt.NDArray[np.int64]
) -> float:
    """Surplus of the trades made: value minus cost over traded pairs."""
    traded = np.flatnonzero(is_buyer & (partner >= 0))
    return float((limit[traded] - limit[partner[traded]]).sum())
