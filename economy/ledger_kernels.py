"""Numba kernels over a replica's arrays. Plain functions over arrays; ``ledger.py`` wraps them.

A replica's state (R = number of replicas, all values int64 micro-credits) is split by how often
it is written:

Dense, ``cells: int64[n_accounts, 2 * R + 2]`` -- written by almost every op:

==========  =============  ========================================================
block       columns        written (owned) by
==========  =============  ========================================================
earned      ``0*R + r``    replica r (mint, transfer-in, unstake) -- G-Counter
spent_p     ``1*R + r``    replica r (spend, transfer-out, stake, burn) -- PN positive
stake_in    ``2*R``        the account's home replica stake_out   ``2*R + 1``    the account's home
replica (unstake and slash)
==========  =============  ========================================================

Side table, sorted ``keys: int64[m]`` (accounts) with ``vals: int64[m, 3 * R]`` -- written only
by refunds and escrow moves, so it holds just the accounts that ever had one:

==========  =============  ========================================================
spent_n     ``0*R + r``    replica r (refunds of its own spends) -- PN negative
lent        ``1*R + s``    the account's home replica (rights lent to replica s)
returned    ``2*R + s``    replica s (rights it gave back to the home replica)
==========  =============  ========================================================

Totals ``int64[R, 3]`` (minted, burned, refunded) row r is owned by replica r. Every cell has
exactly one writer, its owner, so element-wise max of what the owner sent is a correct merge
(:func:`merge_owned`, :func:`merge_side`). The home replica of account ``a`` is ``a % R``.

Every counter is a sum of positive amounts, so it only grows; :func:`apply_entries` refuses an
entry that would take any counter it writes past ``counter_max`` (``ledger.counter_max``), which
keeps every sum the kernels form inside int64 (the bound's proof is in ``ledger.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

EARNED, SPENT_P = 0, 1  # dense blocks
SPENT_N, LENT, RETURNED = 0, 1, 2  # side blocks

# Kind codes mirror economy.ops.OpKind.
MINT, SPEND, TRANSFER, REFUND, STAKE, UNSTAKE, SLASH, BURN, LEND, RETURN = range(10)

# Per-entry outcome codes.
OK, NO_RIGHTS, NO_STAKE, OVER_BOUND = 0, 1, 2, 3
REASONS = {
    NO_RIGHTS: "spending rights held at this replica are short",
    NO_STAKE: "stake is short",
    OVER_BOUND: "a counter it writes would pass the ledger's bound",
}

INT64_MAX = 9_223_372_036_854_775_807
INT64_MIN = -INT64_MAX - 1


@njit(cache=True, inline="always")
def row_rights(
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    a: int,
    own_replica: int,
    n_replicas: int,
) -> int:
    """Spending rights for account ``a`` that replica ``own_replica`` holds, in its own view.

    ``pos: int32[n_accounts]`` (int64 past 2³¹ accounts) is each account's row in the side
    table, -1 when it has none.
    """
    v: int = (
        cells[a, EARNED * n_replicas + own_replica] - cells[a, SPENT_P * n_replicas + own_replica]
    )
    i = pos[a]
    if i >= 0:
        v += vals[i, SPENT_N * n_replicas + own_replica]
        if a % n_replicas == own_replica:
            for s in range(n_replicas):
                v += vals[i, RETURNED * n_replicas + s] - vals[i, LENT * n_replicas + s]
        else:
            v += (
                vals[i, LENT * n_replicas + own_replica]
                - vals[i, RETURNED * n_replicas + own_replica]
            )
    return v


@njit(cache=True, inline="always")
def row_balance(
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    a: int,
    n_replicas: int,
) -> int:
    """Liquid balance of account ``a``: earned - spent_p + spent_n over all replicas."""
    v = 0
    for r in range(n_replicas):
        v += cells[a, EARNED * n_replicas + r] - cells[a, SPENT_P * n_replicas + r]
    i = pos[a]
    if i >= 0:
        for r in range(n_replicas):
            v += vals[i, SPENT_N * n_replicas + r]
    return v


# Structural faults of a batch, in the order ``Replica`` reports them (0 = none).
BAD_ACCOUNT, BAD_AMOUNT, BAD_DESTINATION, NOT_HOME, BAD_TARGET, AT_HOME, BAD_SEQ = range(1, 8)


@njit(cache=True)
def check_entries(
    kind: int,
    origin: int,
    n_replicas: int,
    n_accounts: int,
    max_amount: int,
    accounts: npt.NDArray[np.int64],
    others: npt.NDArray[np.int64],
    amounts: npt.NDArray[np.int64],
) -> tuple[int, int]:
    """First structural fault of a batch as ``(code, entry)``, ``(0, -1)`` when there is none.

    One pass per rule, rules in a fixed order, so the fault reported is the same whatever else is
    wrong: an account outside ``[0, N)``, an amount outside ``[1, max_amount]``, a transfer's
    destination outside ``[0, N)``, a home-only kind (stake, unstake, slash, lend) away from the
    account's home, a lend to no other replica, a return at the home replica, a refund naming no
    spend (seq < 1).
    """
    k = accounts.shape[0]
    for i in range(k):
        if accounts[i] < 0 or accounts[i] >= n_accounts:
            return BAD_ACCOUNT, i
    for i in range(k):
        if amounts[i] <= 0 or amounts[i] > max_amount:
            return BAD_AMOUNT, i
    if kind == TRANSFER:
        for i in range(k):
            if others[i] < 0 or others[i] >= n_accounts:
                return BAD_DESTINATION, i
    if kind == STAKE or kind == UNSTAKE or kind == SLASH or kind == LEND:
        for i in range(k):
            if accounts[i] % n_replicas != origin:
                return NOT_HOME, i
    if kind == LEND:
        for i in range(k):
            if others[i] < 0 or others[i] >= n_replicas or others[i] == origin:
                return BAD_TARGET, i
    if kind == RETURN:
        for i in range(k):
            if accounts[i] % n_replicas == origin:
                return AT_HOME, i
    if kind == REFUND:
        for i in range(k):
            if others[i] <= 0:
                return BAD_SEQ, i
    return 0, -1


def apply_entries(
    kind: int,
    origin: int,
    own_replica: int,
    n_replicas: int,
    accounts: npt.NDArray[np.int64],
    others: npt.NDArray[np.int64],
    amounts: npt.NDArray[np.int64],
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    totals: npt.NDArray[np.int64],
    check: bool,
    counter_max: int,
) -> npt.NDArray[np.int8]:
    """Apply entries of a dense-table kind in order; return int8 outcome codes (0 = applied).

    ``check`` is True for ops created here: rights and stake are checked against this replica's
    own view, entry by entry, each seeing the entries before it, and a refused entry is skipped.
    It is False for authenticated ops from their origin (checked there); such an op applies whole
    or not at all: if an entry fails, the entries before it are undone and the codes returned
    (the failing entry's code set) describe an op of which nothing was applied.

    Whatever ``check``, an entry that would take a counter it writes (cell or totals) past
    ``counter_max`` fails with ``OVER_BOUND``: one compare per written counter, against
    ``counter_max - amount`` (amounts are in ``[1, counter_max]``, so that difference cannot
    overflow). ``totals: int64[R, 3]`` holds minted, burned, refunded per origin. Side-table
    kinds (refund, lend, return) are applied by ``ledger.py``.
    """
    # Asserted here, not in the kernels: a kernel that can raise compiles to a slower loop.
    assert (
        0 <= origin < n_replicas
        and 0 <= own_replica < n_replicas
        and totals.shape == (n_replicas, 3)
    )
    assert counter_max >= 1 and kind not in (REFUND, LEND, RETURN)
    if kind == TRANSFER:  # nearly every entry: a loop of its own, with nothing else in it
        out = _apply_transfers(
            origin,
            own_replica,
            n_replicas,
            accounts,
            others,
            amounts,
            cells,
            pos,
            vals,
            check,
            counter_max,
        )
    else:
        out = _apply_others(
            kind,
            origin,
            own_replica,
            n_replicas,
            accounts,
            amounts,
            cells,
            pos,
            vals,
            totals,
            check,
            counter_max,
        )
    assert out.shape == accounts.shape
    return out


@njit(cache=True)
def _apply_transfers(
    origin: int,
    own_replica: int,
    n_replicas: int,
    accounts: npt.NDArray[np.int64],
    others: npt.NDArray[np.int64],
    amounts: npt.NDArray[np.int64],
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    check: bool,
    counter_max: int,
) -> npt.NDArray[np.int8]:
    """:func:`apply_entries` for transfers: spent_p of the payer and earned of the payee, both at
    ``origin``."""
    k = accounts.shape[0]
    out = np.zeros(k, dtype=np.int8)
    earned, spent = EARNED * n_replicas + origin, SPENT_P * n_replicas + origin
    failed = -1
    for i in range(k):
        a = accounts[i]
        b = others[i]
        x = amounts[i]
        if check and row_rights(cells, pos, vals, a, own_replica, n_replicas) < x:
            out[i] = NO_RIGHTS
            continue
        if cells[a, spent] > counter_max - x or cells[b, earned] > counter_max - x:
            out[i] = OVER_BOUND
            if not check:
                failed = i
                break
            continue
        cells[a, spent] += x
        cells[b, earned] += x
    for j in range(failed - 1, -1, -1):  # an unchecked op applies whole or not at all
        cells[accounts[j], spent] -= amounts[j]
        cells[others[j], earned] -= amounts[j]
    return out


@njit(cache=True)
def _apply_others(
    kind: int,
    origin: int,
    own_replica: int,
    n_replicas: int,
    accounts: npt.NDArray[np.int64],
    amounts: npt.NDArray[np.int64],
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    totals: npt.NDArray[np.int64],
    check: bool,
    counter_max: int,
) -> npt.NDArray[np.int8]:
    """:func:`apply_entries` for mints, spends, burns, stakes, unstakes and slashes. Each writes
    two counters of one kind's choosing: ``first`` (a cell of the account) and ``second`` (a cell
    of the account, column ``col``, or the origin's minted or burned total, column ``t``)."""
    k = accounts.shape[0]
    out = np.zeros(k, dtype=np.int8)
    earned, spent, stake_in, stake_out = (
        EARNED * n_replicas + origin,
        SPENT_P * n_replicas + origin,
        2 * n_replicas,
        2 * n_replicas + 1,
    )
    if kind == UNSTAKE or kind == SLASH:
        first, col = stake_out, earned if kind == UNSTAKE else -1
    elif kind == MINT:
        first, col = earned, -1
    else:  # spend, burn, stake
        first, col = spent, stake_in if kind == STAKE else -1
    t = 0 if kind == MINT else 1
    room = counter_max - totals[origin, t]  # what the origin's total may still grow by
    failed = -1
    for i in range(k):
        a = accounts[i]
        x = amounts[i]
        if check and (kind == UNSTAKE or kind == SLASH):
            if cells[a, stake_in] - cells[a, stake_out] < x:
                out[i] = NO_STAKE
                continue
        elif (
            check and kind != MINT and row_rights(cells, pos, vals, a, own_replica, n_replicas) < x
        ):
            out[i] = NO_RIGHTS
            continue
        over = cells[a, first] > counter_max - x
        if col >= 0:
            over = over or cells[a, col] > counter_max - x
        else:
            over = over or x > room
        if over:
            out[i] = OVER_BOUND
            if not check:
                failed = i
                break
            continue
        cells[a, first] += x
        if col >= 0:
            cells[a, col] += x
        else:
            room -= x  # kept in a register through the loop, written once below
    totals[origin, t] = counter_max - room
    for j in range(failed - 1, -1, -1):  # an unchecked op applies whole or not at all
        cells[accounts[j], first] -= amounts[j]
        if col >= 0:
            cells[accounts[j], col] -= amounts[j]
        else:
            totals[origin, t] -= amounts[j]
    return out


@njit(cache=True)
def gather_home_rights(
    accounts: npt.NDArray[np.int64],
    cells: tuple[npt.NDArray[np.int64], ...],
    pos: tuple[npt.NDArray[np.signedinteger[Any]], ...],
    vals: tuple[npt.NDArray[np.int64], ...],
) -> npt.NDArray[np.int64]:
    """The rights each account's home replica (``a % R``) holds for it, in that replica's view.

    ``cells``, ``pos`` and ``vals`` are tuples of the R replicas' arrays, in replica order;
    accounts must be in range (the caller checks).
    """
    n_replicas = len(cells)
    out = np.empty(accounts.shape[0], dtype=np.int64)
    for i in range(accounts.shape[0]):
        a = accounts[i]
        h = a % n_replicas
        out[i] = _home_rights(cells[h], pos[h], vals[h], a, h, n_replicas)
    return out


@njit(cache=True, inline="always")
def _home_rights(
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    a: int,
    h: int,
    n_replicas: int,
) -> int:
    # row_rights where replica h is account a's home (h == a % n_replicas): the same sum without
    # the test for it. Over 7·10^5 accounts of one replica, without side rows, row_rights took
    # 12.7 ms and this 5.2.
    v: int = cells[a, EARNED * n_replicas + h] - cells[a, SPENT_P * n_replicas + h]
    i = pos[a]
    if i >= 0:
        v += vals[i, SPENT_N * n_replicas + h]
        for s in range(n_replicas):
            v += vals[i, RETURNED * n_replicas + s] - vals[i, LENT * n_replicas + s]
    return v


@njit(cache=True)
def rights_of(
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    accounts: npt.NDArray[np.int64] | None,
    own_replica: int,
    n_replicas: int,
) -> npt.NDArray[np.int64]:
    """Rights replica ``own_replica`` holds for each of ``accounts`` (all accounts when
    ``accounts`` is None)."""
    n = cells.shape[0] if accounts is None else accounts.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        a = i if accounts is None else accounts[i]
        out[i] = row_rights(cells, pos, vals, a, own_replica, n_replicas)
    return out


@njit(cache=True)
def balances_of(
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    n_replicas: int,
) -> npt.NDArray[np.int64]:
    """Every account's liquid balance: int64[n_accounts]."""
    out = np.empty(cells.shape[0], dtype=np.int64)
    for a in range(cells.shape[0]):
        out[a] = row_balance(cells, pos, vals, a, n_replicas)
    return out


@njit(cache=True)
def held(
    cells: npt.NDArray[np.int64],
    pos: npt.NDArray[np.signedinteger[Any]],
    vals: npt.NDArray[np.int64],
    n_replicas: int,
) -> tuple[int, bool]:
    """Sum over accounts of balance and stake, in one pass, as ``(total, exact)``.

    ``exact`` is False (and ``total`` the sum so far) when an addition would leave int64. It
    cannot in a view the ledger keeps: there every balance and stake is >= 0, so the running sum
    never exceeds the final one, which is the issued supply (see the bound in ``ledger.py``).
    """
    total = 0
    for a in range(cells.shape[0]):
        v = (
            row_balance(cells, pos, vals, a, n_replicas)
            + cells[a, 2 * n_replicas]
            - cells[a, 2 * n_replicas + 1]
        )
        if (v > 0 and total > INT64_MAX - v) or (v < 0 and total < INT64_MIN - v):
            return total, False
        total += v
    return total, True


def gather_owned(
    cells: npt.NDArray[np.int64], spans: npt.NDArray[np.int64], source: int, n_replicas: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The dense cells replica ``source`` owns in the accounts of ``spans: int64[k, 2]``.

    Returns ``(own, stake)``: ``own: int64[n, 2]`` earned and spent_p at ``source`` of every
    account of the spans in order, ``stake: int64[n_home, 2]`` stake_in and stake_out of those
    whose home is ``source``.
    """
    assert 0 <= source < n_replicas and spans.ndim == 2 and spans.shape[1] == 2
    own, stake, n, n_home = _gather_owned(cells, spans, source, n_replicas)
    assert own.shape[0] == n and stake.shape[0] == n_home, "every span was gathered whole"
    return own, stake


@njit(cache=True)
def _gather_owned(
    cells: npt.NDArray[np.int64], spans: npt.NDArray[np.int64], source: int, n_replicas: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int, int]:
    n = 0
    n_home = 0
    for t in range(spans.shape[0]):
        n += spans[t, 1] - spans[t, 0]
        n_home += (spans[t, 1] - 1 - source) // n_replicas - (
            spans[t, 0] - 1 - source
        ) // n_replicas
    own = np.empty((n, 2), dtype=np.int64)
    stake = np.empty((n_home, 2), dtype=np.int64)
    j = 0
    h = 0
    for t in range(spans.shape[0]):
        lo, hi = spans[t, 0], spans[t, 1]
        for a in range(lo, hi):
            own[j, 0] = cells[a, EARNED * n_replicas + source]
            own[j, 1] = cells[a, SPENT_P * n_replicas + source]
            j += 1
        for a in range(lo + (source - lo) % n_replicas, hi, n_replicas):
            stake[h, 0] = cells[a, 2 * n_replicas]
            stake[h, 1] = cells[a, 2 * n_replicas + 1]
            h += 1
    return own[:j], stake[:h], n, n_home


def merge_owned(
    cells: npt.NDArray[np.int64],
    spans: npt.NDArray[np.int64],
    own: npt.NDArray[np.int64],
    stake: npt.NDArray[np.int64],
    source: int,
    n_replicas: int,
    leaf_size: int,
    leaf_dirty: npt.NDArray[np.bool_],
) -> int:
    """Element-wise max of what :func:`gather_owned` returned at ``source`` into ``cells``.

    Writes only the cells ``source`` owns; flags the Merkle leaf of each account that changed
    in ``leaf_dirty``; returns how many accounts changed. The caller has checked the shapes and
    that the spans are increasing, disjoint and in range.
    """
    assert 0 <= source < n_replicas and own.shape[1] == 2 and stake.shape[1] == 2
    changed, rows, homes = _merge_owned(
        cells, spans, own, stake, source, n_replicas, leaf_size, leaf_dirty
    )
    assert rows == own.shape[0] and homes == stake.shape[0], "the spans cover the delta's rows"
    return changed


@njit(cache=True)
def _merge_owned(
    cells: npt.NDArray[np.int64],
    spans: npt.NDArray[np.int64],
    own: npt.NDArray[np.int64],
    stake: npt.NDArray[np.int64],
    source: int,
    n_replicas: int,
    leaf_size: int,
    leaf_dirty: npt.NDArray[np.bool_],
) -> tuple[int, int, int]:
    ce = EARNED * n_replicas + source
    cp = SPENT_P * n_replicas + source
    j = 0
    h = 0
    changed = 0
    for t in range(spans.shape[0]):
        lo, hi = spans[t, 0], spans[t, 1]
        home = lo + (source - lo) % n_replicas  # the next account of the span whose home is source
        for a in range(lo, hi):
            grew = False
            if own[j, 0] > cells[a, ce]:
                cells[a, ce] = own[j, 0]
                grew = True
            if own[j, 1] > cells[a, cp]:
                cells[a, cp] = own[j, 1]
                grew = True
            if a == home:
                for c in range(2):
                    if stake[h, c] > cells[a, 2 * n_replicas + c]:
                        cells[a, 2 * n_replicas + c] = stake[h, c]
                        grew = True
                h += 1
                home += n_replicas
            j += 1
            if grew:
                changed += 1
                leaf_dirty[a // leaf_size] = True
    return changed, j, h


@njit(cache=True)
def merge_side(
    keys: npt.NDArray[np.int64],
    vals: npt.NDArray[np.int64],
    in_keys: npt.NDArray[np.int64],
    in_vals: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Max-merge side table ``in_*`` into ``keys, vals`` (both sorted by key).

    Returns ``(keys, vals, changed)``: the merged table (the same arrays, updated in place, when
    ``in_keys`` holds no new account) and the accounts whose side row changed.
    """
    m, k, S = keys.shape[0], in_keys.shape[0], vals.shape[1]
    changed = np.empty(k, dtype=np.int64)
    n_changed = 0
    new_keys = 0
    i = 0
    for j in range(k):  # pass 1: in-place max for known accounts, count new ones
        while i < m and keys[i] < in_keys[j]:
            i += 1
        if i < m and keys[i] == in_keys[j]:
            diff = 0
            for c in range(S):
                old = vals[i, c]
                new = max(old, in_vals[j, c])
                diff |= old ^ new
                vals[i, c] = new
            if diff != 0:
                changed[n_changed] = in_keys[j]
                n_changed += 1
        else:
            new_keys += 1
    if new_keys == 0:
        return keys, vals, changed[:n_changed]
    out_keys = np.empty(m + new_keys, dtype=np.int64)
    out_vals = np.zeros((m + new_keys, S), dtype=np.int64)
    i = 0
    j = 0
    o = 0
    while i < m or j < k:  # pass 2: interleave, taking the new accounts' rows
        if j >= k or (i < m and keys[i] < in_keys[j]):
            out_keys[o] = keys[i]
            out_vals[o] = vals[i]
            i += 1
        elif i < m and keys[i] == in_keys[j]:
            out_keys[o] = keys[i]
            out_vals[o] = vals[i]  # already merged in pass 1
            i += 1
            j += 1
        else:
            out_keys[o] = in_keys[j]
            out_vals[o] = in_vals[j]
            changed[n_changed] = in_keys[j]
            n_changed += 1
            j += 1
        o += 1
    return out_keys, out_vals, np.sort(changed[:n_changed])


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def mix64(h: np.uint64, v: np.uint64) -> np.uint64:
    """Fold the 64-bit word ``v`` into the running hash ``h`` (splitmix64 finaliser)."""
    z = (h ^ v) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _hash_side(
    h0: np.uint64,
    h1: np.uint64,
    keys: npt.NDArray[np.int64],
    vals: npt.NDArray[np.int64],
    lo: int,
    hi: int,
    n_columns: int,
) -> tuple[np.uint64, np.uint64]:
    """Fold the side rows of accounts ``lo..hi`` into a leaf's two lanes."""
    S = vals.shape[1]
    for i in range(np.searchsorted(keys, lo), np.searchsorted(keys, hi)):
        h0 = mix64(h0, np.uint64(keys[i]) ^ np.uint64(0xA5A5A5A5A5A5A5A5))
        h1 = mix64(h1, np.uint64(keys[i]))
        for c in range(S):
            v = np.uint64(vals[i, c])
            h0 = mix64(h0, v)
            h1 = mix64(h1 ^ np.uint64(n_columns + c), v)
    return h0, h1


@njit(cache=True, inline="always")
def _hash_one_leaf(
    cells: npt.NDArray[np.int64],
    keys: npt.NDArray[np.int64],
    vals: npt.NDArray[np.int64],
    leaf_size: int,
    leaf: int,
    out: npt.NDArray[np.uint64],
) -> None:
    n = cells.shape[0]
    n_columns = cells.shape[1]
    h0 = np.uint64(0x243F6A8885A308D3) ^ np.uint64(leaf)
    h1 = np.uint64(0x13198A2E03707344) ^ np.uint64(leaf)
    lo = leaf * leaf_size
    hi = min(n, lo + leaf_size)
    for a in range(lo, hi):
        for c in range(n_columns):
            v = np.uint64(cells[a, c])
            h0 = mix64(h0, v)
            h1 = mix64(h1 ^ np.uint64(c), v)
    h0, h1 = _hash_side(h0, h1, keys, vals, lo, hi, n_columns)
    out[leaf, 0] = h0
    out[leaf, 1] = h1


@njit(cache=True, nogil=True)
def hash_leaves(
    cells: npt.NDArray[np.int64],
    keys: npt.NDArray[np.int64],
    vals: npt.NDArray[np.int64],
    leaf_size: int,
    leaves: npt.NDArray[np.int64],
    out: npt.NDArray[np.uint64],
) -> None:
    """Two-lane (128-bit) hash of each listed leaf's dense rows and side rows into
    ``out: uint64[n_leaves, 2]``.

    Each lane is one serial chain of :func:`mix64` over the leaf's words, so one leaf at a time
    leaves the CPU waiting on each multiply. Full leaves are therefore hashed four at a time, their
    eight chains interleaved word by word: the same chains, so the same hashes
    (:func:`hash_leaves_reference` is the one-leaf-at-a-time form), in about a third of the time.
    """
    n = cells.shape[0]
    n_columns = cells.shape[1]
    m = leaves.shape[0]
    t = 0
    while t < m:
        if (
            t + 4 <= m
            and (leaves[t + 3] + 1) * leaf_size <= n
            and (leaves[t] + 1) * leaf_size <= n
            and (leaves[t + 1] + 1) * leaf_size <= n
            and (leaves[t + 2] + 1) * leaf_size <= n
        ):
            l0, l1, l2, l3 = leaves[t], leaves[t + 1], leaves[t + 2], leaves[t + 3]
            a0, a1, a2, a3 = l0 * leaf_size, l1 * leaf_size, l2 * leaf_size, l3 * leaf_size
            g0 = np.uint64(0x243F6A8885A308D3)
            g1 = np.uint64(0x13198A2E03707344)
            p0, q0 = g0 ^ np.uint64(l0), g1 ^ np.uint64(l0)
            p1, q1 = g0 ^ np.uint64(l1), g1 ^ np.uint64(l1)
            p2, q2 = g0 ^ np.uint64(l2), g1 ^ np.uint64(l2)
            p3, q3 = g0 ^ np.uint64(l3), g1 ^ np.uint64(l3)
            for r in range(leaf_size):
                for c in range(n_columns):
                    cc = np.uint64(c)
                    v0 = np.uint64(cells[a0 + r, c])
                    v1 = np.uint64(cells[a1 + r, c])
                    v2 = np.uint64(cells[a2 + r, c])
                    v3 = np.uint64(cells[a3 + r, c])
                    p0 = mix64(p0, v0)
                    q0 = mix64(q0 ^ cc, v0)
                    p1 = mix64(p1, v1)
                    q1 = mix64(q1 ^ cc, v1)
                    p2 = mix64(p2, v2)
                    q2 = mix64(q2 ^ cc, v2)
                    p3 = mix64(p3, v3)
                    q3 = mix64(q3 ^ cc, v3)
            p0, q0 = _hash_side(p0, q0, keys, vals, a0, a0 + leaf_size, n_columns)
            p1, q1 = _hash_side(p1, q1, keys, vals, a1, a1 + leaf_size, n_columns)
            p2, q2 = _hash_side(p2, q2, keys, vals, a2, a2 + leaf_size, n_columns)
            p3, q3 = _hash_side(p3, q3, keys, vals, a3, a3 + leaf_size, n_columns)
            out[l0, 0], out[l0, 1] = p0, q0
            out[l1, 0], out[l1, 1] = p1, q1
            out[l2, 0], out[l2, 1] = p2, q2
            out[l3, 0], out[l3, 1] = p3, q3
            t += 4
        else:
            _hash_one_leaf(cells, keys, vals, leaf_size, leaves[t], out)
            t += 1


@njit(cache=True)
def hash_leaves_reference(
    cells: npt.NDArray[np.int64],
    keys: npt.NDArray[np.int64],
    vals: npt.NDArray[np.int64],
    leaf_size: int,
    leaves: npt.NDArray[np.int64],
    out: npt.NDArray[np.uint64],
) -> None:
    """:func:`hash_leaves` one leaf at a time: the definition the fast form is tested against."""
    for t in range(leaves.shape[0]):
        _hash_one_leaf(cells, keys, vals, leaf_size, leaves[t], out)


@njit(cache=True, nogil=True)
def hash_level(children: npt.NDArray[np.uint64], parents: npt.NDArray[np.uint64]) -> None:
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
