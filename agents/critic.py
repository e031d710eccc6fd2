"""Critics: verify a budgeted share of the results workers are paid for, every ledger batch and
every
proposal; slash cheats, refund requesters, send rejected work back.

Each tick the critic picks ``ceil(check_budget × results)`` of the tick's paid results to verify.
Core ``baseline``: uniform random spot checks. Core ``learned``: Thompson sampling over workers --
each worker's cheat rate has a Beta posterior from what earlier checks found, a draw is taken per
result and the highest draws are checked, so checks concentrate on workers caught before while
still exploring the rest. A verification judges correctly with probability ``check_accuracy``.
A result judged invalid is refunded to the requester by the worker, the worker's stake is slashed
by the governed ``slash_fraction``, and the task goes back to its producer with the reason
(generate–critique–refine): the worker redoes it next tick, is paid again, and may be checked again.

With ``review_ledger`` (the default), the world hands the critic every ledger batch that draws on
an account before it executes (:meth:`CriticPopulation.review_batch`): :func:`check_batch` has z3
prove that no entry overdraws its payer and, for transfers, that the batch gives exactly what it
takes; a batch that fails is refined by dropping the entries that overdraw and proved again, and
only what is proved reaches the ledger. When governance runs, the critic proves each proposal that
passed its vote against the constitution (:meth:`CriticPopulation.verify_proposal`).

Critics offer a control form (:meth:`CriticPopulation.control_form`): a learner sets, per seat and
tick, the check rate the seat argues for; its class docstring gives the spaces.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
import z3
from pydantic import Field

from economy.constitution import Constitution, Verdict
from economy.ops import OpKind
from economy.scatter import add_at
from runtime.kernel.control import (
    Control,
    ControlForm,
    inputs_fallback_core,
    is_inputs_file,
    share_feature,
    share_left,
)
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import PopulationConfig, Probability, ScenarioError

if TYPE_CHECKING:
    from agents.worker import WorkerPopulation
    from runtime.kernel.scenario import Scenario
    from runtime.kernel.world import World


def refine_batch(held: dict[int, int], src: list[int], amounts: list[int]) -> list[int]:
    """Indices of the entries to drop, in order: not positive, or more than the payer still
    holds."""
    left = dict(held)
    dropped = []
    for k, (a, x) in enumerate(zip(src, amounts, strict=True)):
        if x <= 0 or a not in left or left[a] < x:
            dropped.append(k)
        else:
            left[a] -= x
    return dropped


def top_k(values: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """Positions of the ``k`` largest values, ties to the lower position, ascending: what
    ``np.sort(np.argsort(-values, kind="stable")[:k])`` gives, by a partition instead of a sort."""
    m = values.shape[0]
    if k >= m:
        return np.arange(m)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    cut = np.partition(values, m - k)[m - k]  # the k-th largest value
    above = np.flatnonzero(values > cut)
    tied = np.flatnonzero(values == cut)[: k - above.size]
    return np.sort(np.concatenate([above, tied]))


class _Prover:
    """One reused z3 solver: each query in its own push/pop scope, under names no earlier query
    used.

    (Creating a solver per query costs about a millisecond; a scope on a warm one, a tenth of that.
    z3's parser keeps declarations across scopes, so names carry a fresh prefix, and the solver is
    replaced every ``RENEW`` queries to keep that table small.)
    """

    RENEW = 500

    def __init__(self) -> None:
        self.solver = z3.SimpleSolver()
        self.queries = 0

    def unsat(self, text: str) -> bool:
        if self.queries and self.queries % self.RENEW == 0:
            self.solver = z3.SimpleSolver()
        prefix = f"q{self.queries}_"
        self.queries += 1
        self.solver.push()
        try:
            self.solver.from_string(text.replace("$", prefix))
            return self.solver.check() == z3.unsat
        finally:
            self.solver.pop()


_prover = _Prover()


def _lit(v: int) -> str:
    """An integer as an SMT-LIB literal (negative numbers are written as a negation)."""
    return str(v) if v >= 0 else f"(- {-v})"


def _prove(text: str) -> bool:
    """Whether z3 finds the SMT-LIB ``text`` (names written ``$name``) unsatisfiable."""
    return _prover.unsat(text)


def check_batch(
    held: dict[int, int], src: list[int], dst: list[int], amounts: list[int], conserve: bool = True
) -> tuple[bool, str]:
    """Prove with z3 that a batch overdraws nobody and (``conserve``) moves exactly what it takes.

    ``held`` is what each payer holds before the batch (spending rights, or stake for a slash),
    micro-credits. The batch is stated to z3 as integer terms -- each entry's amount, each payer's
    total as the sum of its entries, what payers give and payees get as sums of the same entries --
    under the negation of the claim: some entry is not positive, some payer's total exceeds what it
    holds, or (``conserve``) what payers give differs from what payees get. ``unsat`` proves the
    claim. Returns ``(True, "")`` or ``(False, reason naming the first bad entry)``.
    """
    if len(src) != len(dst) or len(src) != len(amounts):
        return False, "entries of unequal length"
    unknown = sorted({a for a in src if a not in held})
    if unknown:
        k = src.index(unknown[0])
        return False, f"entry {k}: payer {unknown[0]} has no known rights"
    if not src:
        return True, ""
    out: dict[int, list[str]] = {}
    into: dict[int, list[str]] = {}
    lits = [_lit(x) for x in amounts]
    for a, b, x in zip(src, dst, lits, strict=True):
        out.setdefault(a, []).append(x)
        into.setdefault(b, []).append(x)
    bad = [f"(<= {x} 0)" for x in lits]
    bad += [f"(> (+ 0 {' '.join(xs)}) {_lit(held[a])})" for a, xs in sorted(out.items())]
    if conserve:
        given = " ".join(f"(+ 0 {' '.join(xs)})" for _, xs in sorted(out.items()))
        got = " ".join(f"(+ 0 {' '.join(xs)})" for _, xs in sorted(into.items()))
        bad.append(f"(not (= (+ 0 {given}) (+ 0 {got})))")
    text = [f"(assert (or {' '.join(bad)}))"]
    if _prove("".join(text)):
        return True, ""
    dropped = refine_batch(held, src, amounts)
    if dropped:
        k = dropped[0]
        return (
            False,
            f"entry {k}: {amounts[k]} from account {src[k]} overdraws it or is not positive",
        )
    return False, "the batch does not conserve credits"


class CriticParams(RoleParams):
    """A critic's own keys."""

    watches: str | None = Field(
        None, max_length=64, description="The worker population whose results it verifies."
    )
    check_budget: Probability = Field(
        0.1, description="Fraction of each tick's results it verifies."
    )
    review_ledger: bool = Field(
        True,
        description=(
            "Prove every ledger batch with z3 before it executes (at most one critic population "
            "may)."
        ),
    )
    check_accuracy: Probability = Field(
        0.98, description="Probability a verification judges a result correctly."
    )
    setup_only: ClassVar[frozenset[str]] = frozenset({"watches", "review_ledger"})


class CriticPopulation(Population):
    """Critics sharing one verification budget over their watched worker population.

    ## Action Space

    ``Box(-1, 1, (1,), float32)`` per seat (:meth:`control_form`): the check rate ``(a + 1)/2``
    the seat argues for. The population's rate this tick is ``check_budget`` moved by the mean,
    over all its critics, of each driven seat's rate less ``check_budget``; it checks
    ``ceil(rate × results)`` of the tick's results, chosen by its core as ever. A row of NaN: the
    seat argues for ``check_budget``.

    ## Observation Space

    ``Box(-1, 1, (4,), float32)`` per seat, the same for every seat of the population:

    | Num | Observation | Feature |
    |-----|-------------|---------|
    | 0 | share of its checks so far judged invalid | ``2·share − 1`` |
    | 1 | share of the watched workers ever judged invalid | ``2·share − 1`` |
    | 2 | share of the results so far that it checked | ``2·share − 1`` |
    | 3 | share of the run left | ``2·share − 1`` |

    ## Rewards

    ``"wealth"`` (critics earn nothing: 0) and ``"audit"``: this tick's share of the invalid
    results caught less the share of results checked, the same for every seat. Being broke
    does not end a seat's episode.
    """

    role: ClassVar[str] = "critic"
    Params: ClassVar[type[RoleParams]] = CriticParams
    has_core: ClassVar[bool] = True
    phase: ClassVar[int] = 3  # after workers: this tick's results are complete

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.target: WorkerPopulation | None = None
        self.bad = np.zeros(0)  # per watched worker: checks judged invalid
        self.good = np.zeros(0)  # per watched worker: checks judged valid
        self.stats = {
            "results": 0,
            "invalid": 0,
            "checks": 0,
            "caught": 0,
            "false_slashes": 0,
            "slashed_micro": 0,
            "refunded_micro": 0,
            "sent_back": 0,
            "batches_proved": 0,
            "batches_refused": 0,
            "entries_dropped": 0,
            "batches_unreviewed": 0,
            "proposals_checked": 0,
            "proposals_blocked": 0,
        }
        self.reviews_batches = bool(self.params.review_ledger)  # type: ignore[misc]
        self.control: Control | None = None  # outside control of some seats (control_form)
        self.audit = 0.0  # this tick's share of invalid results caught less the share checked

    def review_batch(
        self,
        world: World,
        replica: int,
        kind: OpKind,
        accounts: npt.NDArray[np.int64],
        others: npt.NDArray[np.int64],
        amounts: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.bool_], str]:
        """Prove a ledger batch with z3 before it executes; refuse it, and keep only what can be
        proved.

        Generate–critique–refine for ledger batches: a batch that fails the proof goes back with
        the reason, the entries that overdraw are dropped, and the refined batch is proved again
        before anything executes. With every critic down, batches pass unreviewed (and are counted).
        """
        keep = np.ones(len(accounts), dtype=np.bool_)
        if not self.alive.any():
            self.stats["batches_unreviewed"] += 1
            return keep, ""
        ledger = world.ledgers[replica]
        payers = np.unique(accounts)
        held_arr = (
            ledger.staked_of(payers)
            if kind in (OpKind.SLASH, OpKind.UNSTAKE)
            else ledger.rights_of(payers)
        )
        held = dict(zip(payers.tolist(), held_arr.tolist(), strict=True))
        src, amt = accounts.tolist(), amounts.tolist()
        dst = others.tolist() if kind == OpKind.TRANSFER else [-1] * len(src)
        ok, reason = check_batch(held, src, dst, amt, conserve=kind == OpKind.TRANSFER)
        self.stats["batches_proved"] += 1
        if ok:
            return keep, ""
        self.stats["batches_refused"] += 1
        world.emit(
            "batch_refused",
            self.name,
            int(accounts[0]),
            replica,
            int(amounts.sum()),
            float(len(src)),
            detail=f"{kind.name.lower()}: {reason}",
        )
        dropped = refine_batch(held, src, amt)
        keep[dropped] = False
        self.stats["entries_dropped"] += len(dropped)
        rest = np.flatnonzero(keep).tolist()
        ok, again = check_batch(
            held,
            [src[k] for k in rest],
            [dst[k] for k in rest],
            [amt[k] for k in rest],
            conserve=kind == OpKind.TRANSFER,
        )
        if (
            not ok
        ):  # cannot happen unless refine_batch and the proof disagree: refuse the whole batch
            raise AssertionError(f"refined batch still fails its proof: {again}")
        return keep, reason

    def verify_proposal(self, constitution: Constitution, params: dict[str, float]) -> Verdict:
        """Prove with z3 that the parameters a proposal would produce respect the constitution."""
        verdict = constitution.verify(params)
        self.stats["proposals_checked"] += 1
        self.stats["proposals_blocked"] += int(not verdict.ok)
        return verdict

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``watches`` must name a worker population; at most one critic population reviews the
        ledger."""
        assert isinstance(params, CriticParams)
        problems = []
        watched = next((q for q in scenario.population if q.name == params.watches), None)
        if watched is None or watched.role != "worker":
            problems.append(
                f"{label}: population[{index}].watches: a {cls.role} watches a worker population; "
                f"got {params.watches!r}"
            )
        earlier = [
            q
            for q in scenario.population[:index]
            if q.role == "critic" and q.params.get("review_ledger", True)
        ]
        if params.review_ledger and earlier:
            problems.append(
                f"{label}: population[{index}].review_ledger: another critic population already "
                "reviews the ledger; set review_ledger = false on one"
            )
        return problems

    def setup(self, world: World) -> None:
        """Find the watched workers."""
        self.target = next(p for p in world.populations if p.name == self.params.watches)  # type: ignore[assignment]
        self.bad = np.zeros(self.target.n)
        self.good = np.zeros(self.target.n)
        if self.core not in ("baseline", "learned"):
            path = world.base / self.core
            if is_inputs_file(path):  # a recorded episode: its actions drive their seats again
                try:
                    self.control = Control.replaying(path, self)
                except ValueError as exc:
                    raise ScenarioError([f"population {self.name!r}: core: {exc}"]) from None
                self.core = inputs_fallback_core(path)
            else:
                self.load_core(path)  # start from a saved check record of the same workers
                self.core = "learned"

    @classmethod
    def check_core_file(cls, path: Path) -> str | None:
        """A critic's core file: a saved check record, or a recorded episode's inputs file."""
        return None if is_inputs_file(path) else super().check_core_file(path)

    def _choose(
        self, rng: np.random.Generator, workers: npt.NDArray[np.int64], budget: int
    ) -> npt.NDArray[np.int64]:
        if self.core == "baseline":
            return np.sort(rng.choice(workers.size, size=budget, replace=False))
        draws = rng.beta(1.0 + self.bad[workers], 4.0 + self.good[workers])
        return top_k(draws, budget)

    def step(self, world: World, tick: int) -> None:
        """Verify this tick's sample of results; refund and slash what is judged invalid."""
        assert self.target is not None
        res = self.target.results
        m = int(res["worker"].size)
        self.stats["results"] += m
        self.stats["invalid"] += int((~res["valid"]).sum())
        rate = self._rate(tick)
        self.audit = 0.0
        if m == 0 or not self.alive.any():
            return
        rng = world.streams(f"population/{self.name}")
        budget = min(m, math.ceil(rate * m))
        chosen = self._choose(rng, res["worker"], budget)
        correct = rng.random(budget) < self.params.check_accuracy
        truly_invalid = ~res["valid"][chosen]
        judged_invalid = np.where(correct, truly_invalid, ~truly_invalid)
        w = res["worker"][chosen]
        add_at(self.bad, w[judged_invalid], 1.0)
        add_at(self.good, w[~judged_invalid], 1.0)
        self.stats["checks"] += budget
        self.stats["caught"] += int((judged_invalid & truly_invalid).sum())
        self.stats["false_slashes"] += int((judged_invalid & ~truly_invalid).sum())
        rejected = chosen[judged_invalid]
        if rejected.size:
            self._reject(world, rejected)
        invalid = int((~res["valid"]).sum())
        caught = int((judged_invalid & truly_invalid).sum())
        self.audit = (caught / invalid if invalid else 0.0) - budget / m

    def _rate(self, tick: int) -> float:
        """This tick's check rate: ``check_budget``, moved by the driven seats' actions."""
        budget = float(self.params.check_budget)
        if self.control is None:
            return budget
        actions = self.control.take(tick)
        acting = self.control.acting(actions)
        if not acting.any():
            return budget
        pulls = (actions[acting, 0] + 1.0) / 2.0 - budget
        rate = budget + float(np.sort(pulls).sum()) / self.n
        assert -1e-12 <= rate <= 1.0 + 1e-12
        return min(1.0, max(0.0, rate))

    # ------------------------------------------------------------------ outside control
    def control_form(self) -> ControlForm:
        """One critic driven from outside: the check rate it argues for (the class docstring)."""
        from gymnasium import spaces

        return ControlForm(
            observation_space=spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32),
            action_space=spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
            action_meaning="an action in [-1, 1]: the check rate (a + 1)/2 the seat argues for",
            rewards={"audit": audit_reward},
            bankrupt_leaves=False,
        )

    def attach_control(self, world: World, seats: npt.NDArray[np.int64]) -> Control:
        """Drive ``seats`` from outside from the next tick on (before tick 0)."""
        assert self.control is None, "one control per population"
        self.control = Control.live(seats, 1)
        return self.control

    def observe(self, world: World, seats: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Each seat's observation for the coming tick, ``float32[len(seats), 4]`` (the class
        docstring); reads the record, draws nothing."""
        s = self.stats
        judged = s["caught"] + s["false_slashes"]
        row = [
            share_feature(judged / s["checks"] if s["checks"] else 0.0),
            share_feature(float((self.bad > 0).mean()) if self.bad.size else 0.0),
            share_feature(s["checks"] / s["results"] if s["results"] else 0.0),
            share_feature(share_left(world)),
        ]
        obs = np.tile(np.asarray(row, dtype=np.float64), (seats.size, 1))
        assert obs.shape == (seats.size, 4)
        return obs.astype(np.float32)

    def _reject(self, world: World, rows: npt.NDArray[np.int64]) -> None:
        assert self.target is not None
        res = self.target.results
        workers = self.target.ids[res["worker"][rows]]
        requesters = res["requester"][rows]
        prices = res["price"][rows]
        # value: 1 when the result truly was invalid, 0 for a false rejection (ground truth, for
        # analysis).
        world.emit_many(
            "result_rejected",
            self.name,
            workers,
            requesters,
            prices,
            (~res["valid"][rows]).astype(np.float64),
            detail="judged invalid: refund the requester, slash the stake",
        )
        homes = world.home(requesters)  # the worker was paid, and holds the rights, at this replica
        for r in range(len(world.ledgers)):
            sel = np.flatnonzero(homes == r)
            if sel.size == 0:
                continue
            src, dst, amt = workers[sel], requesters[sel], prices[sel]
            if world.reviewer is not self:  # not reviewing every batch: prove this one here
                ledger = world.ledgers[r]
                held = dict(zip(src.tolist(), ledger.rights_of(src).tolist(), strict=True))
                ok, reason = check_batch(held, src.tolist(), dst.tolist(), amt.tolist())
                self.stats["batches_proved"] += 1
                # a worker spent the payment already: the ledger refunds what it can, entry by entry
                if not ok:
                    self.stats["batches_refused"] += 1
                    world.emit(
                        "batch_refused",
                        self.name,
                        int(src[0]),
                        r,
                        int(amt.sum()),
                        float(sel.size),
                        detail=reason,
                    )
            accepted = world.execute(r, OpKind.TRANSFER, src, dst, amt)
            self.stats["refunded_micro"] += int(amt[accepted].sum())
        # Generate–critique–refine: each rejected task goes back to its producer with the reason.
        self.target.send_back(rows, "judged invalid by the critic")
        self.stats["sent_back"] += int(rows.size)
        slash_fraction = world.params["slash_fraction"]
        stakes = np.zeros(workers.size, dtype=np.int64)
        for r, ledger in enumerate(world.ledgers):
            sel = world.home(workers) == r
            if sel.any():
                stakes[sel] = ledger.staked_of(workers[sel])
        amounts = (stakes * slash_fraction).astype(np.int64)
        keep = amounts > 0
        if keep.any():
            # Several rejections of one worker in a tick slash it once, by the largest amount.
            uniq, first = np.unique(workers[keep], return_index=True)
            done = world.execute_by_home(
                OpKind.SLASH, uniq, np.zeros(uniq.size, np.int64), amounts[keep][first]
            )
            world.emit_many(
                "slashed",
                self.name,
                uniq[done],
                np.full(int(done.sum()), -1),
                amounts[keep][first][done],
                np.full(int(done.sum()), world.params["slash_fraction"]),
            )
            self.stats["slashed_micro"] += int(amounts[keep][first].sum())

    def role_metrics(self) -> dict[str, float | int | None]:
        """Catch rate of cheats and false-slash rate at this budget, with the counts."""
        s = self.stats
        return {
            **s,
            "catch_rate": s["caught"] / s["invalid"] if s["invalid"] else None,
            "false_slash_rate": s["false_slashes"] / s["checks"] if s["checks"] else None,
        }

    def core_state(self) -> dict[str, npt.NDArray[np.generic]] | None:
        """The per-worker check record behind the Thompson draws (learned core)."""
        return {"bad": self.bad, "good": self.good} if self.core != "baseline" else None

    def set_core_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """Start from a saved check record."""
        self.bad, self.good = arrays["bad"].copy(), arrays["good"].copy()

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and the per-worker check record."""
        return {"alive": self.alive, "bad": self.bad, "good": self.good}


def audit_reward(
    world: World,
    pop: Population,
    seats: npt.NDArray[np.int64],
    before: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The ``"audit"`` reward: the population's share of this tick's invalid results caught less
    the share of results checked, for every seat, ``float64[len(seats)]``."""
    assert isinstance(pop, CriticPopulation)
    assert -1.0 <= pop.audit <= 1.0
    return np.full(seats.size, pop.audit)


def plan_keeps_acyclic(
    edges: list[tuple[int, int]], added: list[tuple[int, int]]
) -> tuple[bool, str]:
    """Prove with z3 that a dependency graph stays acyclic after ``added`` edges.

    A directed graph is acyclic exactly when its nodes can be numbered so every edge goes from a
    lower to a higher number; z3 looks for such a numbering. Returns ``(True, "")`` or ``(False,
    reason)`` naming the first added edge that makes it impossible.
    """
    if not added:
        return True, ""
    nodes = sorted({node for edge in [*edges, *added] for node in edge})
    declare = "".join(f"(declare-const $r{node} Int)" for node in nodes)
    before = "".join(f"(assert (< $r{u} $r{v}))" for u, v in edges)

    def cyclic(k: int) -> bool:  # no numbering fits the edges and the first k added ones
        return _prove(declare + before + "".join(f"(assert (< $r{u} $r{v}))" for u, v in added[:k]))

    if not cyclic(len(added)):
        return True, ""
    lo, hi = 1, len(added)  # the first k with no numbering: the k-th added edge closes a cycle
    while lo < hi:
        mid = (lo + hi) // 2
        if cyclic(mid):
            hi = mid
        else:
            lo = mid + 1
    u, v = added[lo - 1]
    return False, f"dependency {u} -> {v} would close a cycle"
