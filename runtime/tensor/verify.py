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

    # A context of its own: z3's default context is not safe to share between threads, and the
    # proofs run on a host thread beside anything else that calls z3 (the exact engine's critics,
    # another world's proofs).
    ctx = z3.Context()

    def holds(entries: list[tuple[int, int]]) -> z3.BoolRef:
        amounts_ = [z3.IntVal(a, ctx) for a, _ in entries]
        held = z3.IntVal(entries[0][1], ctx)
        return z3.And(*[x >= 0 for x in amounts_], held - z3.Sum(amounts_) >= 0)

    solver = z3.Solver(ctx=ctx)
    solver.add(z3.Not(z3.And(*[holds(e) for e in by_payer.values()])))
    n = sum(len(e) for e in by_payer.values())
    if solver.check() == z3.unsat:
        return n, 0
    bad = 0
    for entries in by_payer.values():
        one = z3.Solver(ctx=ctx)
        one.add(z3.Not(holds(entries)))
        if one.check() != z3.unsat:
            bad += len(entries)
    return n - bad, bad
