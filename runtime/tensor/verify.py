"""The gpu engine's verification budget: z3 proofs of a fixed sample of each tick's payments.

The exact engine's critic proves every ledger batch with z3 before it executes, work that grows
with the number of agents. The gpu engine draws a fixed number of the tick's board slots
(:data:`BUDGET`, whatever the world's size), reads back each sampled payment (payer, amount, and
the balance the payer's home held before it), and proves with z3, on a host thread while the
device runs the next tick, that no payer's sampled payments exceed what it held and that no amount
is negative. A proof's outcome is recorded with the tick after the one it covers. A bad payment is
caught with probability (sampled payments) / (payments that tick); the exact engine catches every
one.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import z3

BUDGET = 256  # board slots sampled per tick (slots with no payment prove trivially)


def prove(payers: list[int], amounts: list[int], held: list[int]) -> tuple[int, int]:
    """``(payments proved, payments refuted)`` of one tick's sample: one z3 query over all of
    them; when it fails, each payer's payments are checked on their own to count the bad ones."""
    paid = [(p, a, h) for p, a, h in zip(payers, amounts, held, strict=True) if a != 0]
    if not paid:
        return 0, 0
    by_payer: dict[int, list[tuple[int, int]]] = defaultdict(list)
    seen: set[tuple[int, int]] = set()
    for p, a, h in paid:
        if (p, a) not in seen:  # the same slot drawn twice is one payment
            seen.add((p, a))
            by_payer[p].append((a, h))

    # One query as SMT-LIB text: z3 parses and decides it in C, with Python's lock released, so
    # the proofs on the host thread do not hold up the thread that drives the device.
    ctx = _context()
    n = sum(len(e) for e in by_payer.values())
    if _unsat(ctx, [_holds(e) for e in by_payer.values()]):
        return n, 0
    bad = sum(len(e) for e in by_payer.values() if not _unsat(ctx, [_holds(e)]))
    return n - bad, bad


_local = threading.local()


def _context() -> z3.Context:
    """This thread's z3 context: z3's default context is not safe to share between threads, and
    the proofs run on a host thread beside anything else that calls z3 (the exact engine's
    critics, another world's proofs)."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = _local.ctx = z3.Context()
    return ctx


def _int(x: int) -> str:
    return str(x) if x >= 0 else f"(- {-x})"


def _holds(entries: list[tuple[int, int]]) -> str:
    """One payer's payments are amounts >= 0 whose sum the balance it held covers."""
    amounts = " ".join(_int(a) for a, _ in entries)
    nonnegative = " ".join(f"(>= {_int(a)} 0)" for a, _ in entries)
    return f"(and {nonnegative} (>= (- {_int(entries[0][1])} (+ 0 {amounts})) 0))"


def _unsat(ctx: z3.Context, claims: list[str]) -> bool:
    """Whether z3 proves every claim (their conjunction's negation has no model)."""
    solver = z3.Solver(ctx=ctx)
    solver.from_string(f"(assert (not (and true {' '.join(claims)})))")
    return bool(solver.check() == z3.unsat)
