"""Critics: verify a budgeted share of the results workers are paid for, slash cheats, refund requesters.

Each tick the critic picks ``ceil(check_budget × results)`` of the tick's paid results to verify.
Core ``baseline``: uniform random spot checks. Core ``learned``: Thompson sampling over workers --
each worker's cheat rate has a Beta posterior from what earlier checks found, a draw is taken per
result and the highest draws are checked, so checks concentrate on workers caught before while
still exploring the rest. A verification judges correctly with probability ``check_accuracy``.
A result judged invalid goes back to its producer with the reason (generate–critique–refine): the
requester is refunded by the worker, and the worker's stake is slashed by the governed
``slash_fraction``. Before the refund batch executes, :func:`check_batch` has z3 prove that it
conserves credits and overdraws nobody.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
import z3

from economy.ops import OpKind
from runtime.population import Population
from runtime.scenario import PopulationConfig

if TYPE_CHECKING:
    from agents.worker import WorkerPopulation
    from runtime.world import World


def check_batch(rights: dict[int, int], src: list[int], dst: list[int], amounts: list[int]) -> tuple[bool, str]:
    """Prove with z3 that applying the transfers in order overdraws no account and conserves credits.

    ``rights`` holds each payer's spending rights before the batch (micro-credits). Returns
    ``(True, "")`` or ``(False, reason naming the first bad entry)``.
    """
    held = {a: z3.IntVal(v) for a, v in rights.items()}
    total_before = z3.Sum(list(held.values())) if held else z3.IntVal(0)
    received: dict[int, z3.ArithRef] = {}
    solver = z3.Solver()
    for k, (a, b, x) in enumerate(zip(src, dst, amounts, strict=True)):
        if a not in held:
            return False, f"entry {k}: payer {a} has no known rights"
        amount = z3.IntVal(x)
        solver.push()
        solver.add(z3.Or(amount <= 0, held[a] - amount < 0))
        if solver.check() == z3.sat:
            solver.pop()
            return False, f"entry {k}: {x} from account {a} overdraws it or is not positive"
        solver.pop()
        held[a] = held[a] - amount
        received[b] = received.get(b, z3.IntVal(0)) + amount
    total_after = (z3.Sum(list(held.values())) if held else z3.IntVal(0)) + (
        z3.Sum(list(received.values())) if received else z3.IntVal(0))
    solver.add(total_after != total_before)
    if solver.check() == z3.sat:
        return False, "the batch does not conserve credits"
    return True, ""


class CriticPopulation(Population):
    """Critics sharing one verification budget over their watched worker population."""

    role: ClassVar[str] = "critic"
    phase: ClassVar[int] = 3  # after workers: this tick's results are complete

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.target: WorkerPopulation | None = None
        self.bad = np.zeros(0)  # per watched worker: checks judged invalid
        self.good = np.zeros(0)  # per watched worker: checks judged valid
        self.stats = {"results": 0, "invalid": 0, "checks": 0, "caught": 0, "false_slashes": 0,
                      "slashed_micro": 0, "refunded_micro": 0, "batches_refused": 0}

    def setup(self, world: World) -> None:
        """Find the watched workers."""
        self.target = next(p for p in world.populations if p.name == self.cfg.watches)  # type: ignore[assignment]
        self.bad = np.zeros(self.target.n)
        self.good = np.zeros(self.target.n)

    def _choose(self, rng: np.random.Generator, workers: npt.NDArray[np.int64], budget: int) -> npt.NDArray[np.int64]:
        if self.core == "baseline":
            return np.sort(rng.choice(workers.size, size=budget, replace=False))
        draws = rng.beta(1.0 + self.bad[workers], 4.0 + self.good[workers])
        return np.sort(np.argsort(-draws, kind="stable")[:budget])

    def step(self, world: World, tick: int) -> None:
        """Verify this tick's sample of results; refund and slash what is judged invalid."""
        assert self.target is not None
        res = self.target.results
        m = int(res["worker"].size)
        self.stats["results"] += m
        self.stats["invalid"] += int((~res["valid"]).sum())
        if m == 0 or not self.alive.any():
            return
        rng = world.streams(f"population/{self.name}")
        budget = min(m, math.ceil(self.cfg.check_budget * m))
        chosen = self._choose(rng, res["worker"], budget)
        correct = rng.random(budget) < self.cfg.check_accuracy
        truly_invalid = ~res["valid"][chosen]
        judged_invalid = np.where(correct, truly_invalid, ~truly_invalid)
        w = res["worker"][chosen]
        np.add.at(self.bad, w[judged_invalid], 1.0)
        np.add.at(self.good, w[~judged_invalid], 1.0)
        self.stats["checks"] += budget
        self.stats["caught"] += int((judged_invalid & truly_invalid).sum())
        self.stats["false_slashes"] += int((judged_invalid & ~truly_invalid).sum())
        rejected = chosen[judged_invalid]
        if rejected.size:
            self._reject(world, rejected)

    def _reject(self, world: World, rows: npt.NDArray[np.int64]) -> None:
        assert self.target is not None
        res = self.target.results
        workers = self.target.ids[res["worker"][rows]]
        requesters = res["requester"][rows]
        prices = res["price"][rows]
        world.emit_many("result_rejected", self.name, workers, requesters, prices, np.zeros(rows.size),
                        detail="judged invalid: refund the requester, slash the stake")
        homes = world.home(requesters)  # the worker was paid, and holds the rights, at this replica
        for r in range(len(world.ledgers)):
            sel = np.flatnonzero(homes == r)
            if sel.size == 0:
                continue
            src, dst, amt = workers[sel], requesters[sel], prices[sel]
            ledger = world.ledgers[r]
            ok, reason = check_batch({int(a): int(ledger.rights_of(np.array([a]))[0]) for a in set(src.tolist())},
                                     src.tolist(), dst.tolist(), amt.tolist())
            if not ok:  # the worker spent the payment already: refund what each one can, one by one
                self.stats["batches_refused"] += 1
                world.emit("refund_batch_refused", self.name, detail=reason)
            accepted = world.execute(r, OpKind.TRANSFER, src, dst, amt)
            self.stats["refunded_micro"] += int(amt[accepted].sum())
        slash_fraction = world.params["slash_fraction"]
        stakes = np.zeros(workers.size, dtype=np.int64)
        for r, ledger in enumerate(world.ledgers):
            sel = world.home(workers) == r
            stakes[sel] = ledger.staked()[workers[sel]]
        amounts = (stakes * slash_fraction).astype(np.int64)
        keep = amounts > 0
        if keep.any():
            # Several rejections of one worker in a tick slash it once, by the largest amount.
            uniq, first = np.unique(workers[keep], return_index=True)
            world.execute_by_home(OpKind.SLASH, uniq, np.zeros(uniq.size, np.int64), amounts[keep][first])
            self.stats["slashed_micro"] += int(amounts[keep][first].sum())

    def role_metrics(self) -> dict[str, float | int | None]:
        """Catch rate of cheats and false-slash rate at this budget, with the counts."""
        s = self.stats
        return {**s, "catch_rate": s["caught"] / s["invalid"] if s["invalid"] else None,
                "false_slash_rate": s["false_slashes"] / s["checks"] if s["checks"] else None}

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and the per-worker check record."""
        return {"alive": self.alive, "bad": self.bad, "good": self.good}


def plan_keeps_acyclic(edges: list[tuple[int, int]], added: list[tuple[int, int]]) -> tuple[bool, str]:
    """Prove with z3 that a dependency graph stays acyclic after ``added`` edges.

    A directed graph is acyclic exactly when its nodes can be numbered so every edge goes from a
    lower to a higher number; z3 looks for such a numbering. Returns ``(True, "")`` or ``(False,
    reason)`` naming the first added edge that makes it impossible.
    """
    solver = z3.Solver()
    order: dict[int, z3.ArithRef] = {}

    def rank(node: int) -> z3.ArithRef:
        if node not in order:
            order[node] = z3.Int(f"rank_{node}")
        return order[node]

    for u, v in edges:
        solver.add(rank(u) < rank(v))
    for u, v in added:
        solver.push()
        solver.add(rank(u) < rank(v))
        if solver.check() == z3.unsat:
            return False, f"dependency {u} -> {v} would close a cycle"
        solver.pop()
        solver.add(rank(u) < rank(v))
    return True, ""
