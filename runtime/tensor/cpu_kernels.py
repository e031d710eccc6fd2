"""The gpu engine's CPU form: numba kernels for the parts of a tick where torch's operator-at-a-time
form moves most of its bytes for nothing.

On a GPU the tick keeps fixed shapes (a payment that moved nothing is an entry of 0, a pair that
did not trade an edge of weight 0), so it can be captured once as a CUDA graph. On a CPU nothing is
captured, and those zeros are most of the work: at 10^6 agents about seven in eight of a tick's
ledger entries and four in five of its coupling edges. Here the zeros are dropped first and the
rest is one fused loop. Every operation is on integers, so the results are the same bits as the
torch form's (``tests/runtime/test_gpu_engine_cpu_kernels.py`` checks the two forms against each
other):

* :func:`oscillate` is :meth:`runtime.tensor.world.TensorWorld._oscillate`'s Euler steps over the
  edges of nonzero weight (an edge of weight 0 adds 0 to its node's pull and degree; sums of
  integers do not depend on their order), a node with no edge moved by all its steps at once;
* :func:`auction_rounds` is :func:`runtime.tensor.world.auction_rounds_torch`, a round a loop over
  the untraded traders in price order;
* :func:`group_sort` and :func:`ranks` are the ledger's and the workers' stable sorts by a small
  key, as counting sorts (stable by construction).

The entries of a payment of 0 are dropped before they are staged
(:class:`runtime.tensor.ledger.Ledger` with ``compact``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit, prange

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@njit(cache=True)
def oscillate(
    phase: Ints,
    omega: Ints,
    alive: Bools,
    a: Ints,
    b: Ints,
    w: Ints,
    sin_table: Ints,
    kq: int,
    sin_one: int,
    steps: int,
) -> None:
    """``steps`` Euler steps of the 16-bit phases in place, coupled along the directed edges
    ``a[k] <- b[k]`` of weight ``w[k]``: each node's pull is the weighted sum of the table's
    sines of its neighbours' phase differences, and a live node moves by its frequency plus
    ``floor(kq·pull / (max(degree, 1)·sin_one))``; ``sin_one`` is a power of two below 2^15
    (the table's values fit 16 bits)."""
    n = phase.shape[0]
    # The nodes on an edge, numbered 0..m-1 in order, and their edges as rows (a counting sort
    # by node): a step then reads each row's neighbours from m phases instead of n, and adds a
    # row's pull in a register. Integer sums do not depend on the order of their terms.
    local = np.full(n, -1, dtype=np.int32)
    for k in range(a.shape[0]):
        local[a[k]] = 0
        local[b[k]] = 0  # read by a step (its row may be empty)
    m = 0
    for i in range(n):
        if local[i] == 0:
            local[i] = m
            m += 1
        elif alive[i]:
            # No edge, no pull: each step adds the frequency, and steps of integers mod 2^16
            # add up, so the phase moves by steps·omega at once.
            phase[i] = (phase[i] + steps * omega[i]) & 0xFFFF
    nodes = np.empty(m, dtype=np.int64)
    for i in range(n):
        if local[i] >= 0:
            nodes[local[i]] = i
    indptr = np.zeros(m + 1, dtype=np.int64)
    for k in range(a.shape[0]):
        indptr[local[a[k]] + 1] += 1
    for j in range(m):
        indptr[j + 1] += indptr[j]
    fill = indptr[:-1].copy()
    nb = np.empty(a.shape[0], dtype=np.int32)
    nw = np.empty(a.shape[0], dtype=np.int64)
    deg = np.zeros(m, dtype=np.int64)
    for k in range(a.shape[0]):
        j = local[a[k]]
        nb[fill[j]] = local[b[k]]
        nw[fill[j]] = w[k]
        fill[j] += 1
        deg[j] += w[k]
    # The divisor max(d, 1)·sin_one, as shifts where d is a power of two (most nodes: 1 or 2)
    # and -1 (a division) elsewhere; floor(x / (d·2^s)) = floor(floor(x / 2^s) / d).
    shift = 0
    while (1 << shift) < sin_one:
        shift += 1
    shifts = np.full(m, -1, dtype=np.int64)
    live = np.empty(m, dtype=np.bool_)
    freq = np.empty(m, dtype=np.int64)
    old = np.empty(m, dtype=np.int32)
    for j in range(m):
        d = deg[j]
        if d <= 1:
            shifts[j] = 0
        elif d & (d - 1) == 0:
            e = 0
            while (1 << e) < d:
                e += 1
            shifts[j] = e
        i = nodes[j]
        live[j] = alive[i]
        freq[j] = omega[i]
        old[j] = phase[i]
    table = sin_table.astype(np.int16)  # 128 KiB: stays in a core's cache
    new = np.empty(m, dtype=np.int32)
    for _ in range(steps):
        if m >= PARALLEL_NODES:
            _coupled_parallel(old, new, indptr, nb, nw, deg, shifts, live, freq, table, kq, shift)
        else:
            _coupled_serial(old, new, indptr, nb, nw, deg, shifts, live, freq, table, kq, shift)
        old, new = new, old
    for j in range(m):
        phase[nodes[j]] = old[j]


@njit(inline="always")
def _coupled_body(old, new, indptr, nb, nw, deg, shifts, live, freq, table, kq, shift):  # type: ignore[no-untyped-def]
    # One Euler step of the coupled nodes, from ``old`` phases into ``new``; each node's value
    # depends on ``old`` only, so the nodes can be split over threads with the same result.
    for j in prange(old.shape[0]):
        mine = old[j]
        if not live[j]:
            new[j] = mine
            continue
        pull = 0
        for k in range(indptr[j], indptr[j + 1]):
            pull += np.int64(table[(old[nb[k]] - mine) & 0xFFFF]) * nw[k]
        step = freq[j]
        if pull != 0:
            q = (kq * pull) >> shift
            if shifts[j] >= 0:
                q >>= shifts[j]
            else:
                q //= deg[j]
            step += q
        new[j] = (mine + step) & 0xFFFF


# Two functions, not one compiled twice: numba's disk cache keys a function by name and signature,
# not by its options (see runtime.coordination.kuramoto).
@njit(cache=True, parallel=True)
def _coupled_parallel(old, new, indptr, nb, nw, deg, shifts, live, freq, table, kq, shift):  # type: ignore[no-untyped-def]
    _coupled_body(old, new, indptr, nb, nw, deg, shifts, live, freq, table, kq, shift)


@njit(cache=True)
def _coupled_serial(old, new, indptr, nb, nw, deg, shifts, live, freq, table, kq, shift):  # type: ignore[no-untyped-def]
    _coupled_body(old, new, indptr, nb, nw, deg, shifts, live, freq, table, kq, shift)


PARALLEL_NODES = 50_000  # coupled nodes from which a step is split over threads


@njit(cache=True)
def region_sums(phase: Ints, alive: Bools, sin_table: Ints, regions: int) -> Ints:
    """Per region ``r`` (agents ``i`` with ``i mod regions == r``), over its live agents: the sum of
    the cosines, the sum of the sines and the count; a ``(3, regions)`` array."""
    out = np.zeros((3, regions), dtype=np.int64)
    for i in range(phase.shape[0]):
        if alive[i]:
            r = i % regions
            out[0, r] += sin_table[(phase[i] + 0x4000) & 0xFFFF]
            out[1, r] += sin_table[phase[i]]
            out[2, r] += 1
    return out


@njit(cache=True)
def group_sort(code: Ints, groups: int) -> tuple[Ints, Ints]:
    """A stable counting sort of keys in ``0..groups-1``: the permutation that sorts ``code``
    (equal keys keep their order) and the count of each key."""
    counts = np.zeros(groups, dtype=np.int64)
    for k in range(code.shape[0]):
        counts[code[k]] += 1
    start = np.zeros(groups, dtype=np.int64)
    for g in range(1, groups):
        start[g] = start[g - 1] + counts[g - 1]
    order = np.empty(code.shape[0], dtype=np.int64)
    for k in range(code.shape[0]):
        g = code[k]
        order[start[g]] = k
        start[g] += 1
    return order, counts


@njit(cache=True)
def _stable_order(keys: Ints) -> Ints:
    # The permutation that sorts ``keys`` ascending, equal keys in index order: a counting sort
    # where the keys span at most 2^16 values, else a merge sort.
    n = keys.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    lo = keys.min()
    span = keys.max() - lo + 1
    if span > 1 << 16:
        return np.argsort(keys, kind="mergesort").astype(np.int64)
    start = np.zeros(span + 1, dtype=np.int64)
    for i in range(n):
        start[keys[i] - lo + 1] += 1
    for v in range(span):
        start[v + 1] += start[v]
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        v = keys[i] - lo
        order[start[v]] = i
        start[v] += 1
    return order


@njit(cache=True)
def _pack(order: Ints, posts: Ints, present: Bools, traded: Bools, value: Ints, who: Ints) -> int:
    # The traders present and not yet traded, in ``order``: their posts into ``value`` and their
    # indices into ``who`` from the front; returns how many.
    count = 0
    for i in order:
        if present[i] and not traded[i]:
            value[count] = posts[i]
            who[count] = i
            count += 1
    return count


@njit(cache=True)
def auction_rounds(
    bids: Ints, asks: Ints, active_b: Bools, alive_s: Bools
) -> tuple[Bools, Bools, Ints, Ints]:
    """:func:`runtime.tensor.world.auction_rounds_torch` as one loop per round over the untraded
    traders in price order (bids high to low, asks low to high, ties in index order): the same
    pairs at the same prices. ``bids[r]`` and ``asks[r]`` are round ``r``'s posts."""
    rounds, mb = bids.shape
    ns = asks.shape[1]
    big = np.int64(1) << 40
    traded_b = np.zeros(mb, dtype=np.bool_)
    traded_s = np.zeros(ns, dtype=np.bool_)
    partner = np.zeros(mb, dtype=np.int64)
    price_b = np.zeros(mb, dtype=np.int64)
    cb = np.empty(mb + 1, dtype=np.int64)
    cbi = np.empty(mb + 1, dtype=np.int64)
    ca = np.empty(ns + 1, dtype=np.int64)
    cai = np.empty(ns + 1, dtype=np.int64)
    n = min(mb, ns)
    for r in range(rounds):
        bo = _stable_order(-bids[r])
        ao = _stable_order(asks[r].copy())
        nb = _pack(bo, bids[r], active_b, traded_b, cb, cbi)
        na = _pack(ao, asks[r], alive_s, traded_s, ca, cai)
        # Past the eligible: a bid of -1 and an ask of 2^40, which never cross.
        cb[nb:] = -1
        ca[na:] = big
        k = 0
        for j in range(n):
            if cb[j] >= ca[j]:
                k += 1
        km1 = k - 1 if k > 0 else 0
        p = (max(ca[km1], cb[k]) + min(cb[km1], ca[k])) // 2
        for j in range(k):
            traded_b[cbi[j]] = True
            traded_s[cai[j]] = True
            partner[cbi[j]] = cai[j]
            price_b[cbi[j]] = p
    return traded_b, traded_s, partner, price_b


@njit(cache=True)
def ranks(keys: Ints, n: int) -> tuple[Ints, Ints]:
    """Each key's rank among the equal keys before it (keys in ``0..n-1``), and how many of each
    key there are: what a stable sort by key gives as position minus the key's start."""
    counts = np.zeros(n, dtype=np.int64)
    rank = np.empty(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        rank[i] = counts[keys[i]]
        counts[keys[i]] += 1
    return rank, counts
