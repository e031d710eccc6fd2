"""Numba kernels over a replica's cell array. Plain functions over arrays; ``ledger.py`` wraps them.

Cell layout, ``cells: int64[n_accounts, 5 * R + 2]`` (R = number of replicas), micro-credits:

==========  =================  ==========================================================
block       columns            written by
==========  =================  ==========================================================
earned      ``0*R + r``        replica r (mint, transfer-in, unstake) -- G-Counter
spent_p     ``1*R + r``        replica r (spend, transfer-out, stake, burn) -- PN positive
spent_n     ``2*R + r``        replica r (refunds of its own spends) -- PN negative
lent        ``3*R + s``        the account's home replica (rights lent to replica s)
returned    ``4*R + s``        replica s (rights it gave back to the home replica)
stake_in    ``5*R``            the account's home replica
stake_out   ``5*R + 1``        the account's home replica (unstake and slash)
==========  =================  ==========================================================

Every cell has exactly one writer, so element-wise max is a correct merge. The home replica of
account ``a`` is ``a % R``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

EARNED, SPENT_P, SPENT_N, LENT, RETURNED = 0, 1, 2, 3, 4

# Kind codes mirror economy.ops.OpKind.
MINT, SPEND, TRANSFER, REFUND, STAKE, UNSTAKE, SLASH, BURN, LEND, RETURN = range(10)

# Per-entry outcome codes of apply_entries.
OK, NO_RIGHTS, NO_STAKE = 0, 1, 2
REASONS = {NO_RIGHTS: "spending rights held at this replica are short", NO_STAKE: "stake is short"}


@njit(cache=True, inline="always")
def row_rights(cells, a, me, R):
    """Spending rights for account ``a`` that replica ``me`` holds, in its own view."""
    v = cells[a, EARNED * R + me] - cells[a, SPENT_P * R + me] + cells[a, SPENT_N * R + me]
    if a % R == me:
        for s in range(R):
            v += cells[a, RETURNED * R + s] - cells[a, LENT * R + s]
    else:
        v += cells[a, LENT * R + me] - cells[a, RETURNED * R + me]
    return v


@njit(cache=True, inline="always")
def row_balance(cells, a, R):
    """Liquid balance of account ``a``: earned - spent_p + spent_n over all replicas."""
    v = 0
    for r in range(R):
        v += cells[a, EARNED * R + r] - cells[a, SPENT_P * R + r] + cells[a, SPENT_N * R + r]
    return v


@njit(cache=True)
def apply_entries(kind, origin, me, R, accounts, others, amounts, cells, totals, balance, rights, check):
    """Apply entries in order; return int8 outcome codes (0 = applied).

    ``check`` is True for ops created here (rights and stake are checked against this replica's own
    view, entry by entry), False for authenticated ops from their origin (already checked there).
    ``totals: int64[R, 3]`` holds minted, burned, refunded per origin.
    """
    k = accounts.shape[0]
    out = np.zeros(k, dtype=np.int8)
    stake_in = 5 * R
    stake_out = 5 * R + 1
    for i in range(k):
        a = accounts[i]
        x = amounts[i]
        if kind == MINT:
            cells[a, EARNED * R + origin] += x
            totals[origin, 0] += x
            balance[a] += x
        elif kind == SPEND or kind == BURN or kind == STAKE or kind == TRANSFER:
            if check and rights[a] < x:
                out[i] = NO_RIGHTS
                continue
            cells[a, SPENT_P * R + origin] += x
            balance[a] -= x
            if kind == STAKE:
                cells[a, stake_in] += x
            elif kind == TRANSFER:
                b = others[i]
                cells[b, EARNED * R + origin] += x
                balance[b] += x
                rights[b] = row_rights(cells, b, me, R)
            else:
                totals[origin, 1] += x
        elif kind == REFUND:
            cells[a, SPENT_N * R + origin] += x
            totals[origin, 2] += x
            balance[a] += x
        elif kind == UNSTAKE or kind == SLASH:
            if check and cells[a, stake_in] - cells[a, stake_out] < x:
                out[i] = NO_STAKE
                continue
            cells[a, stake_out] += x
            if kind == UNSTAKE:
                cells[a, EARNED * R + origin] += x
                balance[a] += x
            else:
                totals[origin, 1] += x
        elif kind == LEND:
            if check and rights[a] < x:
                out[i] = NO_RIGHTS
                continue
            cells[a, LENT * R + others[i]] += x
        elif kind == RETURN:
            if check and rights[a] < x:
                out[i] = NO_RIGHTS
                continue
            cells[a, RETURNED * R + origin] += x
        rights[a] = row_rights(cells, a, me, R)
    return out


def _merge_flags_py(cells, rows, incoming, me, R, balance, rights):
    n = incoming.shape[0]
    K = incoming.shape[1]
    full = rows.shape[0] == 0
    flags = np.zeros(n, dtype=np.bool_)
    for j in prange(n):  # rows are distinct, so iterations touch disjoint memory
        a = np.int64(j)
        if not full:
            a = rows[j]
        changed = False
        for c in range(K):  # branch-free max keeps the loop at memory speed
            old = cells[a, c]
            new = max(old, incoming[j, c])
            changed |= new != old
            cells[a, c] = new
        if changed:
            flags[j] = True
            balance[a] = row_balance(cells, a, R)
            rights[a] = row_rights(cells, a, me, R)
    return flags


# Threads pay off only on large merges; small ones (most deltas) stay on one thread.
_merge_flags_parallel = njit(cache=True, parallel=True)(_merge_flags_py)
_merge_flags_serial = njit(cache=True)(_merge_flags_py)
PARALLEL_ROWS = 1 << 16


@njit(cache=True)
def _count_and_flag(flags, rows, leaf_size, leaf_dirty):
    full = rows.shape[0] == 0
    changed = 0
    for j in range(flags.shape[0]):
        if flags[j]:
            changed += 1
            a = j if full else rows[j]
            leaf_dirty[a // leaf_size] = True
    return changed


def merge_rows(cells, rows, incoming, me, R, balance, rights, leaf_size, leaf_dirty):
    """Element-wise max of ``incoming[j]`` into ``cells[rows[j]]``; return rows changed.

    An empty ``rows`` means "row j" (a full-state merge without an index array). Derived balance
    and own rights are recomputed, and the row's Merkle leaf flagged, only for rows that changed.
    The max runs in parallel over rows; the result does not depend on the thread count.
    """
    kernel = _merge_flags_parallel if incoming.shape[0] >= PARALLEL_ROWS else _merge_flags_serial
    flags = kernel(cells, rows, incoming, me, R, balance, rights)
    return _count_and_flag(flags, rows, leaf_size, leaf_dirty)


@njit(cache=True)
def recompute_derived(cells, me, R, balance, rights):
    """Rebuild balance and own rights for every account from the cells."""
    for a in range(cells.shape[0]):
        balance[a] = row_balance(cells, a, R)
        rights[a] = row_rights(cells, a, me, R)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def mix64(h, v):
    """Fold the 64-bit word ``v`` into the running hash ``h`` (splitmix64 finaliser)."""
    z = (h ^ v) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def hash_leaves(cells, leaf_size, leaves, out):
    """Two-lane (128-bit) hash of each listed leaf's rows into ``out: uint64[n_leaves, 2]``."""
    n = cells.shape[0]
    K = cells.shape[1]
    for t in range(leaves.shape[0]):
        leaf = leaves[t]
        h0 = np.uint64(0x243F6A8885A308D3) ^ np.uint64(leaf)
        h1 = np.uint64(0x13198A2E03707344) ^ np.uint64(leaf)
        lo = leaf * leaf_size
        hi = min(n, lo + leaf_size)
        for a in range(lo, hi):
            for c in range(K):
                v = np.uint64(cells[a, c])
                h0 = mix64(h0, v)
                h1 = mix64(h1 ^ np.uint64(c), v)
        out[leaf, 0] = h0
        out[leaf, 1] = h1


@njit(cache=True)
def hash_level(children, parents):
    """Hash pairs of ``children: uint64[m, 2]`` into ``parents: uint64[ceil(m/2), 2]``."""
    m = children.shape[0]
    for p in range(parents.shape[0]):
        left = 2 * p
        right = left + 1
        for lane in range(2):
            h = mix64(np.uint64(0x452821E638D01377 + lane), children[left, lane])
            if right < m:
                h = mix64(h, children[right, lane])
            parents[p, lane] = h
