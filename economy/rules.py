"""The ledger's rules as a small symbolic model, for z3 to prove and for tests to compare with the code.

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

R = 2
ACCOUNTS = (0, 1)

Term = Any  # an int or a z3 arithmetic term
Bool = Any  # a bool or a z3 boolean term


@dataclass
class State:
    """Every counter of two accounts over two replicas, plus the stale views used by guards."""

    E: list[list[Term]]  # earned[a][r]
    P: list[list[Term]]  # spent_p[a][r]
    N: list[list[Term]]  # spent_n[a][r]
    L: list[list[Term]]  # lent[a][s]
    T: list[list[Term]]  # returned[a][s]
    SI: list[Term]  # stake_in[a]
    SO: list[Term]  # stake_out[a]
    minted: Term
    burned: Term
    refunded: Term
    # Views of counters the replica does not write (lagging copies).
    view_L: list[list[Term]] = field(default_factory=list)
    view_T: list[list[Term]] = field(default_factory=list)
    view_P: list[list[Term]] = field(default_factory=list)


def home(a: int) -> int:
    """Home replica of account ``a``."""
    return a % R


def rights(s: State, a: int, r: int, view: bool) -> Term:
    """Spending rights of account ``a`` at replica ``r`` (``view``: as ``r`` itself sees them)."""
    L = s.view_L if view and r != home(a) else s.L
    T = s.view_T if view and r == home(a) else s.T
    v = s.E[a][r] - s.P[a][r] + s.N[a][r]
    if r == home(a):
        for q in range(R):
            v = v + T[a][q] - s.L[a][q]
    else:
        v = v + L[a][r] - s.T[a][r]
    return v


def balance(s: State, a: int, view_from: int | None = None) -> Term:
    """Liquid balance of ``a``; with ``view_from``, as that replica sees it (others' spends lag)."""
    v = 0
    for r in range(R):
        P = s.view_P if view_from is not None and r != view_from else s.P
        v = v + s.E[a][r] - P[a][r] + s.N[a][r]
    return v


def staked(s: State, a: int) -> Term:
    """Stake of ``a``."""
    return s.SI[a] - s.SO[a]


def invariants(s: State, And: Callable[..., Bool]) -> Bool:
    """Non-negative counters, rights, balances and stakes; unused home cells zero; exact conservation."""
    parts: list[Bool] = []
    for a in ACCOUNTS:
        for r in range(R):
            parts += [s.E[a][r] >= 0, s.P[a][r] >= 0, s.N[a][r] >= 0, s.L[a][r] >= 0, s.T[a][r] >= 0]
            parts.append(rights(s, a, r, view=False) >= 0)
        # The home replica never lends to or takes back from itself: those cells stay 0.
        parts += [s.L[a][home(a)] == 0, s.T[a][home(a)] == 0]
        parts += [s.SO[a] >= 0, staked(s, a) >= 0, balance(s, a) >= 0]
    held = sum((balance(s, a) + staked(s, a) for a in ACCOUNTS), 0)
    parts.append(held == s.minted - s.burned + s.refunded)
    return And(*parts)


def views_lag(s: State, And: Callable[..., Bool]) -> Bool:
    """Views lie between 0 and the truth."""
    parts = []
    for a in ACCOUNTS:
        for r in range(R):
            for view, true in ((s.view_L, s.L), (s.view_T, s.T), (s.view_P, s.P)):
                parts += [view[a][r] >= 0, view[a][r] <= true[a][r]]
    return And(*parts)


def _spend_guard(s: State, a: int, r: int, x: Term, escrow: bool, And: Callable[..., Bool]) -> Bool:
    if escrow:
        return And(x > 0, rights(s, a, r, view=True) >= x)
    return And(x > 0, balance(s, a, view_from=r) >= x)


def transfer(s: State, a: int, b: int, r: int, x: Term, And: Callable[..., Bool], escrow: bool = True) -> tuple[Bool, State]:
    """Replica ``r`` moves ``x`` from ``a`` to ``b``."""
    t = copy.deepcopy(s)
    t.P[a][r] = s.P[a][r] + x
    t.E[b][r] = t.E[b][r] + x
    return _spend_guard(s, a, r, x, escrow, And), t


def spend(s: State, a: int, r: int, x: Term, And: Callable[..., Bool], escrow: bool = True) -> tuple[Bool, State]:
    """Replica ``r`` takes a fee ``x`` from ``a``."""
    t = copy.deepcopy(s)
    t.P[a][r] = s.P[a][r] + x
    t.burned = s.burned + x
    return _spend_guard(s, a, r, x, escrow, And), t


def stake(s: State, a: int, x: Term, And: Callable[..., Bool], escrow: bool = True) -> tuple[Bool, State]:
    """The home replica locks ``x`` of ``a``'s credits as stake."""
    t = copy.deepcopy(s)
    h = home(a)
    t.P[a][h] = s.P[a][h] + x
    t.SI[a] = s.SI[a] + x
    return _spend_guard(s, a, h, x, escrow, And), t


def lend(s: State, a: int, to: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """The home replica of ``a`` moves ``x`` of its rights to replica ``to``."""
    t = copy.deepcopy(s)
    t.L[a][to] = s.L[a][to] + x
    return And(x > 0, to != home(a), rights(s, a, home(a), view=True) >= x), t


def give_back(s: State, a: int, r: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """Non-home replica ``r`` returns ``x`` of ``a``'s rights to the home replica."""
    t = copy.deepcopy(s)
    t.T[a][r] = s.T[a][r] + x
    return And(x > 0, r != home(a), rights(s, a, r, view=True) >= x), t


def slash(s: State, a: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """The home replica destroys ``x`` of ``a``'s stake."""
    t = copy.deepcopy(s)
    t.SO[a] = s.SO[a] + x
    t.burned = s.burned + x
    return And(x > 0, staked(s, a) >= x), t


def unstake(s: State, a: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """The home replica releases ``x`` of ``a``'s stake to liquid credits."""
    t = copy.deepcopy(s)
    h = home(a)
    t.SO[a] = s.SO[a] + x
    t.E[a][h] = s.E[a][h] + x
    return And(x > 0, staked(s, a) >= x), t


def mint(s: State, a: int, r: int, x: Term, And: Callable[..., Bool]) -> tuple[Bool, State]:
    """Replica ``r`` creates ``x`` credits for ``a``."""
    t = copy.deepcopy(s)
    t.E[a][r] = s.E[a][r] + x
    t.minted = s.minted + x
    return And(x > 0), t
