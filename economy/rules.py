"""The ledger's rules as a small symbolic model, for z3 to prove and for tests to compare with the
code.

The model holds two accounts over two replicas (account ``a`` has home replica ``a % 2``), every
counter of ``ledger_kernels``' layout, and the *view* a replica has of counters other replicas
write (any value between 0 and the truth: views lag, never lead). Each rule returns its guard
and the state after it. Written over plain ``+ - >=`` so the same functions run on Python ints
(to compare with :class:`economy.ledger.Replica`) and on z3 terms (to prove).

``escrow=False`` swaps the escrow guard for what a bare PN-Counter ledger would check -- the
replica's view of the balance -- which is the negative control: z3 finds the overdraft.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

N_REPLICAS = 2
ACCOUNTS = (0, 1)

Term = Any  # an int or a z3 arithmetic term
Bool = Any  # a bool or a z3 boolean term


@dataclass
class State:
    """Every counter of two accounts over two replicas, plus the stale views used by guards."""

    earned: list[list[Term]]  # earned[a][r]
    spent_p: list[list[Term]]  # spent_p[a][r]
    spent_n: list[list[Term]]  # spent_n[a][r]
    lent: list[list[Term]]  # lent[a][s]
    returned: list[list[Term]]  # returned[a][s]
    stake_in: list[Term]  # stake_in[a]
    stake_out: list[Term]  # stake_out[a]
    minted: Term
    burned: Term
    refunded: Term
    # Views of counters the replica does not write (lagging copies).
    view_lent: list[list[Term]] = field(default_factory=list)
    view_returned: list[list[Term]] = field(default_factory=list)
    view_spent_p: list[list[Term]] = field(default_factory=list)


def home(a: int) -> int:
    """Home replica of account ``a``."""
    return a % N_REPLICAS


def rights(s: State, a: int, r: int, view: bool) -> Term:
    """Spending rights of account ``a`` at replica ``r`` (``view``: as ``r`` itself sees them)."""
    lent = s.view_lent if view and r != home(a) else s.lent
    returned = s.view_returned if view and r == home(a) else s.returned
    v = s.earned[a][r] - s.spent_p[a][r] + s.spent_n[a][r]
    if r == home(a):
        for q in range(N_REPLICAS):
            v = v + returned[a][q] - s.lent[a][q]
    else:
        v = v + lent[a][r] - s.returned[a][r]
    return v


def balance(s: State, a: int, view_from: int | None = None) -> Term:
    """Liquid balance of ``a``; with ``view_from``, as that replica sees it (others' spends lag)."""
    v = 0
    for r in range(N_REPLICAS):
        spent_p = s.view_spent_p if view_from is not None and r != view_from else s.spent_p
        v = v + s.earned[a][r] - spent_p[a][r] + s.spent_n[a][r]
    return v


def staked(s: State, a: int) -> Term:
    """Stake of ``a``."""
    return s.stake_in[a] - s.stake_out[a]


def invariants(s: State, And: Callable[..., Bool]) -> Bool:
    """Non-negative counters, rights, balances and stakes; unused home cells zero; exact
    conservation."""
    parts: list[Bool] = []
    for a in ACCOUNTS:
        for r in range(N_REPLICAS):
            parts += [
                s.earned[a][r] >= 0,
                s.spent_p[a][r] >= 0,
                s.spent_n[a][r] >= 0,
                s.lent[a][r] >= 0,
                s.returned[a][r] >= 0,
            ]
            parts.append(rights(s, a, r, view=False) >= 0)
        # The home replica never lends to or takes back from itself: those cells stay 0.
        parts += [s.lent[a][home(a)] == 0, s.returned[a][home(a)] == 0]
        parts += [s.stake_out[a] >= 0, staked(s, a) >= 0, balance(s, a) >= 0]
    held = sum((balance(s, a) + staked(s, a) for a in ACCOUNTS), 0)
    parts.append(held == s.minted - s.burned + s.refunded)
    return And(*parts)


def views_lag(s: State, And: Callable[..., Bool]) -> Bool:
    """Views lie between 0 and the truth."""
    parts = []
    for a in ACCOUNTS:
        for r in range(N_REPLICAS):
            for view, true in (
                (s.view_lent, s.lent),
                (s.view_returned, s.returned),
                (s.view_spent_p, s.spent_p),
            ):
                parts += [view[a][r] >= 0, view[a][r] <= true[a][r]]
    return And(*parts)


def _spend_guard(s: State, a: int, r: int, x: Term, escrow: bool, And: Callable[..., Bool]) -> Bool:
    if escrow:
        return And(x > 0, rights(s, a, r, view=True) >= x)
    return And(x > 0, balance(s, a, view_from=r) >= x)


def transfer(
    s: State, a: int, b: int, r: int, x: Term, And: Callable[..., Bool], escrow: bool = True
) -> tuple[Bool, State]:
    """Replica ``r`` moves ``x`` from ``a`` to ``b``."""
    t = copy.deepcopy(s)
    t.spent_p[a][r] = s.spent_p[a][r] + x
    t.earned[b][r] = t.earned[b][r] + x
    return _spend_guard(s, a, r, x, escrow, And), t


def spend(
    s: State, a: int, r: int, x: Term, And: Callable[..., Bool], escrow: bool = True
) -> tuple[Bool, State]:
    """Replica ``r`` takes a fee ``x`` from ``a``."""
    t = copy.deepcopy(s)
    t.spent_p[a][r] = s.spent_p[a][r] + x
    t.burned = s.burned + x
    return _spend_guard(s, a, r, x, escrow, And), t


def stake(
    s: State, a: int, x: Term, And: Callable[..., Bool], escrow: bool = True
) -> tuple[Bool, State]:
    """The home replica locks ``x`` of ``a``'s credits as stake."""
    t = copy.deepcopy(s)
    h = home(a)
    t.spent_p[a][h] = s.spent_p[a][h] + x
    t.stake_in[a] = s.stake_in[a] + x
    return _spend_guard(s, a, h, x, escrow, And), t


def lend(s: State, a: int, to: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """The home replica of ``a`` moves ``x`` of its rights to replica ``to``."""
    t = copy.deepcopy(s)
    t.lent[a][to] = s.lent[a][to] + x
    return And(x > 0, to != home(a), rights(s, a, home(a), view=True) >= x), t


def give_back(s: State, a: int, r: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """Non-home replica ``r`` returns ``x`` of ``a``'s rights to the home replica."""
    t = copy.deepcopy(s)
    t.returned[a][r] = s.returned[a][r] + x
    return And(x > 0, r != home(a), rights(s, a, r, view=True) >= x), t


def slash(s: State, a: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """The home replica destroys ``x`` of ``a``'s stake."""
    t = copy.deepcopy(s)
    t.stake_out[a] = s.stake_out[a] + x
    t.burned = s.burned + x
    return And(x > 0, staked(s, a) >= x), t


def unstake(s: State, a: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """The home replica releases ``x`` of ``a``'s stake to liquid credits."""
    t = copy.deepcopy(s)
    h = home(a)
    t.stake_out[a] = s.stake_out[a] + x
    t.earned[a][h] = s.earned[a][h] + x
    return And(x > 0, staked(s, a) >= x), t


def mint(s: State, a: int, r: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """Replica ``r`` creates ``x`` credits for ``a``."""
    t = copy.deepcopy(s)
    t.earned[a][r] = s.earned[a][r] + x
    t.minted = s.minted + x
    return And(x > 0), t
