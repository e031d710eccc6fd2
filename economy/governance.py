"""Neural Autonomous Organisation: stake-weighted attention voting on proposals, with snapshots,
quorum, threshold, voting period, timelock, and a constitution check before execution.

A member's weight on a proposal is ``stake^α × relevance``: ``stake`` is the member's stake
*snapshotted when the proposal opened* (stake bought later counts for nothing), ``α ≤ 1`` is the
optional sub-linear exponent against whales, and ``relevance = n · softmax_m(e · x_m / τ)`` is the
attention of the proposal embedding ``e`` over member expertise embeddings ``x_m`` (mean 1).
Weights are fixed-point integers (micro-weights), so tallies and the quorum and threshold
comparisons are exact: a vote exactly at quorum passes, one weight unit short fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from economy.constitution import Constitution, Verdict
from economy.errors import LedgerError
from economy.portable_math import exp, matmul, power

WEIGHT_SCALE = 1_000_000


class GovernanceError(LedgerError):
    """A governance action that cannot be taken (not a member, voting closed, ...)."""


@dataclass
class GovernanceParams:
    """Governed parameters of governance itself; proposals may change them."""

    quorum: float = 0.4  # fraction of the snapshotted weight that must vote
    threshold: float = 0.5  # fraction of the cast weight that must say yes
    voting_period: int = 5  # ticks a proposal stays open
    timelock: int = 2  # ticks between passing and taking effect
    stake_exponent: float = 1.0  # α; < 1 is sub-linear against whales
    temperature: float = 1.0  # τ of the relevance softmax

    def __post_init__(self) -> None:
        for name in ("voting_period", "timelock"):  # ticks: whole numbers, kept as ints
            value = getattr(self, name)
            if isinstance(value, float):
                if not value.is_integer():
                    raise GovernanceError(f"{name} must be a whole number of ticks, not {value}")
                setattr(self, name, int(value))
        if not (
            0 <= self.quorum <= 1
            and 0 <= self.threshold <= 1
            and self.voting_period >= 1
            and self.timelock >= 0
            and 0 < self.stake_exponent <= 1
            and self.temperature > 0
            and np.isfinite(self.temperature)
        ):
            raise GovernanceError(f"invalid governance parameters: {self}")


KINDS = ("params", "admit", "expel", "treasury")


@dataclass
class Proposal:
    """One proposal, its snapshot weights and its votes.

    ``kind`` is ``params`` (set ``changes``), ``admit`` or ``expel`` (member ``target``), or
    ``treasury`` (pay ``amount`` credits from the treasury to account ``target``).
    """

    id: int
    proposer: int
    kind: str
    changes: dict[str, float]
    target: int
    amount: int
    embedding: npt.NDArray[np.float64]
    opened_at: int
    closes_at: int
    weights: npt.NDArray[np.int64]  # micro-weights per member, fixed at opening
    votes: dict[int, bool] = field(default_factory=dict)
    state: str = "open"  # open | rejected | blocked | queued | executed
    reason: str = ""
    eta: int | None = None

    def tally(self) -> tuple[int, int, int]:
        """``(yes, no, total)`` micro-weights."""
        yes = sum(int(self.weights[m]) for m, v in self.votes.items() if v)
        no = sum(int(self.weights[m]) for m, v in self.votes.items() if not v)
        return yes, no, int(self.weights.sum())


def attention_weights(
    stakes: npt.NDArray[np.int64],
    expertise: npt.NDArray[np.float64],
    embedding: npt.NDArray[np.float64],
    exponent: float,
    temperature: float,
) -> npt.NDArray[np.int64]:
    """Micro-weights ``rint(stake^α · n · softmax(e·x/τ) · 10⁶)`` per member."""
    logits = matmul(expertise, embedding) / temperature
    z = np.asarray(exp(logits - logits.max()), dtype=np.float64)
    relevance = z * (len(z) / z.sum())
    weight = power(stakes.astype(np.float64), exponent)
    micro_weights: npt.NDArray[np.int64] = np.rint(weight * relevance * WEIGHT_SCALE).astype(
        np.int64
    )
    return micro_weights


class NAO:
    """Members ``0..n-1`` with expertise ``float64[n, d]``; stakes read through ``stakes()``."""

    def __init__(
        self,
        expertise: npt.NDArray[np.float64],
        stakes: Callable[[], npt.NDArray[np.int64]],
        params: GovernanceParams,
        constitution: Constitution,
        governed: dict[str, float],
        critic: Callable[[dict[str, float]], Verdict] | None = None,
        active: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        self.expertise = np.asarray(expertise, dtype=np.float64)
        self.active = (
            np.ones(self.expertise.shape[0], dtype=np.bool_)
            if active is None
            else np.asarray(active, dtype=np.bool_).copy()
        )
        self.stakes = stakes
        self.params = params
        self.constitution = constitution
        self.governed = dict(governed)
        self.critic = critic if critic is not None else constitution.verify
        self.proposals: list[Proposal] = []
        self.log: list[tuple[int, int, str, str]] = []  # (tick, proposal, event, detail)

    @property
    def n(self) -> int:
        """Number of members."""
        return int(self.expertise.shape[0])

    def _member(self, m: int, active: bool = True) -> None:
        if not 0 <= m < self.n:
            raise GovernanceError(f"member {m} does not exist; members are 0..{self.n - 1}")
        if active and not self.active[m]:
            raise GovernanceError(f"member {m} is not an active member (not admitted, or expelled)")

    def check_open(
        self,
        proposer: int,
        kind: str,
        changes: dict[str, float],
        target: int,
        amount: int,
        stakes: npt.NDArray[np.int64],
        active: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """GovernanceError naming why a proposal could not open with members' ``stakes`` (whole
        credits) and ``active`` flags (the NAO's own when None); nothing changes."""
        active = self.active if active is None else active
        if not 0 <= proposer < self.n:
            raise GovernanceError(f"member {proposer} does not exist; members are 0..{self.n - 1}")
        if not active[proposer]:
            raise GovernanceError(
                f"member {proposer} is not an active member (not admitted, or expelled)"
            )
        if kind not in KINDS:
            raise GovernanceError(f"proposal kind must be one of {KINDS}, got {kind!r}")
        if kind in ("admit", "expel"):
            if not 0 <= target < self.n:
                raise GovernanceError(
                    f"member {target} does not exist; members are 0..{self.n - 1}"
                )
            if active[target] == (kind == "admit"):
                raise GovernanceError(
                    f"member {target} is already {'active' if kind == 'admit' else 'inactive'}"
                )
        if kind == "treasury" and (amount <= 0 or target < 0):
            raise GovernanceError(
                f"a treasury spend needs amount > 0 and a recipient account, got {amount}, {target}"
            )
        known = set(self.governed) | set(vars(self.params))
        unknown = sorted(set(changes) - known)
        if (kind == "params" and not changes) or unknown or (kind != "params" and changes):
            raise GovernanceError(
                f"a params proposal changes known parameters {sorted(known)}; got {kind} with "
                f"{sorted(changes)}"
            )
        own = {k: v for k, v in changes.items() if k in vars(self.params)}
        if own:
            GovernanceParams(**{**vars(self.params), **own})  # raises GovernanceError if invalid
        if stakes[proposer] <= 0:
            raise GovernanceError(f"member {proposer} has no stake and cannot propose")

    def open(
        self,
        proposer: int,
        changes: dict[str, float],
        embedding: npt.NDArray[np.float64],
        now: int,
        kind: str = "params",
        target: int = -1,
        amount: int = 0,
    ) -> Proposal:
        """Open a proposal; snapshot every active member's stake now."""
        stakes = np.asarray(self.stakes(), dtype=np.int64)
        self.check_open(proposer, kind, changes, target, amount, stakes)
        embedding = np.asarray(embedding, dtype=np.float64)
        if embedding.shape != self.expertise.shape[1:]:
            raise GovernanceError(
                f"embedding must have shape {self.expertise.shape[1:]}, got {embedding.shape}"
            )
        p = self.params
        weights = (
            attention_weights(stakes, self.expertise, embedding, p.stake_exponent, p.temperature)
            * self.active
        )
        prop = Proposal(
            len(self.proposals),
            proposer,
            kind,
            dict(changes),
            target,
            amount,
            embedding,
            now,
            now + p.voting_period,
            weights,
        )
        self.proposals.append(prop)
        self.log.append((now, prop.id, "opened", self.describe(prop)))
        return prop

    def vote(self, proposal: int, member: int, support: bool, now: int) -> None:
        """Cast ``member``'s vote; one vote per member, only while the proposal is open."""
        self.check_vote(proposal, member, now)
        self.proposals[proposal].votes[member] = bool(support)

    def check_vote(self, proposal: int, member: int, now: int) -> None:
        """GovernanceError naming why ``member`` could not vote on ``proposal`` at ``now``."""
        self._member(member, active=False)
        if not 0 <= proposal < len(self.proposals):
            raise GovernanceError(f"no proposal {proposal}")
        prop = self.proposals[proposal]
        if prop.state != "open" or now >= prop.closes_at:
            raise GovernanceError(
                f"proposal {proposal} is closed for voting (state {prop.state}, closes at tick "
                f"{prop.closes_at})"
            )
        if member in prop.votes:
            raise GovernanceError(f"member {member} already voted on proposal {proposal}")
        if prop.weights[member] == 0:
            raise GovernanceError(
                f"member {member} had no weight when proposal {proposal} opened and cannot vote "
                "on it"
            )

    def decide(self, prop: Proposal, now: int) -> None:
        """Close ``prop``: quorum and threshold exactly, then the critic; queue it behind the
        timelock."""
        yes, no, total = prop.tally()
        q = Fraction(str(self.params.quorum))
        t = Fraction(str(self.params.threshold))
        if total == 0 or (yes + no) * q.denominator < q.numerator * total:
            prop.state, prop.reason = (
                "rejected",
                f"quorum not met: {yes + no} of {total} weight voted",
            )
        elif yes * t.denominator < t.numerator * (yes + no):
            prop.state, prop.reason = "rejected", f"threshold not met: {yes} yes of {yes + no} cast"
        else:
            verdict = self.critic(self.state_after(prop))
            if not verdict.ok:
                prop.state, prop.reason = "blocked", f"critic: {verdict.reason}"
            else:
                prop.state, prop.reason, prop.eta = (
                    "queued",
                    f"passed {yes} yes of {yes + no} cast",
                    now + self.params.timelock,
                )
        self.log.append((now, prop.id, prop.state, prop.reason))

    def state_after(self, prop: Proposal) -> dict[str, float]:
        """What the critic checks: every governed value as it would be if ``prop`` executed, plus
        ``member_count`` and, for a treasury spend, ``treasury_spend`` (credits)."""
        state = {**self.governed, **vars(self.params), **prop.changes}
        count = int(self.active.sum())
        if prop.kind == "admit":
            count += 1
        elif prop.kind == "expel":
            count -= 1
        state["member_count"] = count
        state["treasury_spend"] = prop.amount if prop.kind == "treasury" else 0
        return state

    @staticmethod
    def describe(prop: Proposal) -> str:
        """One line naming what the proposal does."""
        if prop.kind == "params":
            return ", ".join(f"{k}={v:g}" for k, v in sorted(prop.changes.items()))
        if prop.kind == "treasury":
            return f"pay {prop.amount} credits from the treasury to member {prop.target}"
        return f"{prop.kind} member {prop.target}"

    def close_open(self, now: int) -> list[Proposal]:
        """Decide now every open proposal that has been open for at least one tick (early close)."""
        closing = [p for p in self.proposals if p.state == "open" and now > p.opened_at]
        for prop in closing:
            prop.closes_at = now
            self.decide(prop, now)
        return closing

    def tick(self, now: int) -> list[Proposal]:
        """At a tick boundary: close proposals whose period ended; execute those whose timelock
        ended."""
        executed = []
        for prop in self.proposals:
            if prop.state == "open" and now >= prop.closes_at:
                self.decide(prop, now)
            if prop.state == "queued" and prop.eta is not None and now >= prop.eta:
                own = {k: v for k, v in prop.changes.items() if k in vars(self.params)}
                self.params = GovernanceParams(**{**vars(self.params), **own})
                self.governed.update({k: v for k, v in prop.changes.items() if k not in own})
                if prop.kind in ("admit", "expel"):
                    self.active[prop.target] = prop.kind == "admit"
                prop.state = "executed"
                self.log.append((now, prop.id, "executed", self.describe(prop)))
                executed.append(prop)
        return executed
