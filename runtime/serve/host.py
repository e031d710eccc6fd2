"""The served world: a recorded run whose seats outside agents drive, ticking on SimPy's realtime
clock.

A :class:`Host` owns one :class:`runtime.record.controlled.ControlledRun`. Seats are the first
``seats`` agents of each population that declares them (``seats = N`` in the scenario); each has a
random token, kept only as its SHA-256. Between ticks the host hands every seat's latest accepted
action to its population's :class:`runtime.kernel.control.Control` and runs one tick in a worker
thread; an action that arrives while tick ``t`` runs applies at tick ``t + 1``. A seat with no
action for a tick acts as its role's scripted baseline. The actions a tick takes are recorded
inputs, so ``agora replay --verify`` reproduces a served run with no client present.

Everything that changes the host's state runs on the event loop's thread (requests, the tick
loop's hand-over); the worker thread only runs the World. So no lock is needed, and a request
either takes effect whole or not at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import ValidationError

from economy.governance import GovernanceError
from runtime.kernel import roles
from runtime.kernel.clock import RealtimeClock
from runtime.kernel.control import ControlForm, wealth_micro
from runtime.kernel.errors import ScenarioError
from runtime.kernel.scenario import FaultConfig, ProposalConfig, check_faults, check_proposal
from runtime.record.controlled import ControlledRun, parse_data

TOKEN_BYTES = 32  # 256 random bits per token
IDEMPOTENCY_KEYS_KEPT = 1024  # per seat: the newest keys and their answers
EVENTS_PER_MESSAGE = 200  # a seat's feed carries at most this many of a tick's events
SERIES_KEPT = 2000  # ticks of dashboard series kept in memory

# What a subscriber's queue holds: a message, or a tick's message already encoded as JSON text.
Message = dict[str, Any] | str


class Refused(Exception):
    """A request the host refuses: an HTTP status, the field at fault and the reason."""

    def __init__(
        self, status: int, field: str, reason: str, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{field}: {reason}")
        self.status, self.field, self.reason = status, field, reason
        self.retry_after = retry_after  # whole seconds, for a 429


def token_hash(token: str) -> bytes:
    """What the host keeps of a token."""
    return hashlib.sha256(token.encode()).digest()


@dataclass
class RateLimit:
    """A token bucket: ``rate`` requests a second on average, bursts of up to ``burst``."""

    rate: float
    burst: float
    level: float = 0.0
    at: float = 0.0

    def take(self, now: float) -> float:
        """0 when a request may pass now (and count it), else the seconds to wait."""
        if self.at == 0.0:
            self.level, self.at = self.burst, now
        self.level = min(self.burst, self.level + (now - self.at) * self.rate)
        self.at = now
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.rate


@dataclass
class GovernanceView:
    """The organisation as the host last read it: what requests are checked against."""

    proposals: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[int, bool]] = field(default_factory=list)  # each proposal's, by member
    weights: list[npt.NDArray[np.int64]] = field(default_factory=list)
    stakes: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    active: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))

    def can_vote_on(self, member: int | None, at: int, queued: set[int]) -> list[int]:
        """The proposals ``member`` may still vote on at tick ``at`` (less ``queued``: those its
        vote on is on its way)."""
        if member is None:
            return []
        return [
            p["id"]
            for p in self.proposals
            if p["state"] == "open"
            and p["closes_at"] > at
            and self.weights[p["id"]][member] > 0
            and member not in self.votes[p["id"]]
            and p["id"] not in queued
        ]


@dataclass
class Seat:
    """One agent of a population that an outside agent drives."""

    id: str  # "<population>-<index>"
    population: str
    index: int  # the agent's index in its population
    row: int  # its row in the population's Control
    account: int  # its ledger account
    token_hash: bytes
    limit: RateLimit
    answers: OrderedDict[str, tuple[str, dict[str, Any]]] = field(default_factory=OrderedDict)
    queues: set[asyncio.Queue[Message]] = field(default_factory=set)


class Host:
    """A served run of ``scenario`` recorded into ``out``.

    Args:
        scenario: the scenario file; populations with ``seats = N`` give the seats.
        out: the run directory.
        realtime: wall seconds per unit of virtual time (one tick is ``world.tick_length`` units).
        seed, ticks: override the scenario's.
        overwrite: replace a run directory at ``out``.
        rate, burst: each seat's request rate limit (requests a second, and the burst allowed).
        paused: start with the clock held until the operator resumes it.
    """

    def __init__(
        self,
        scenario: Path,
        out: Path,
        *,
        realtime: float = 1.0,
        seed: int | None = None,
        ticks: int | None = None,
        overwrite: bool = False,
        rate: float = 50.0,
        burst: float = 100.0,
        paused: bool = False,
    ) -> None:
        try:
            data = tomllib.loads(scenario.read_text())
        except OSError as exc:
            raise ScenarioError([f"{scenario}: cannot read it ({exc.strerror})"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError([f"{scenario}: not TOML ({exc})"]) from None
        base = scenario.parent
        parsed = parse_data(data, base)
        seats: dict[str, npt.NDArray[np.int64]] = {}
        problems = []
        for i, pop in enumerate(parsed.population):
            if not pop.seats:
                continue
            cls = roles.resolve(pop.role, base).cls
            if not hasattr(cls, "control_form"):
                problems.append(
                    f"population[{i}].seats: role {pop.role!r} takes no outside control (it has "
                    "no control_form); give seats to a negotiator, requester, worker or critic "
                    "population, or a role of your own with a control form"
                )
            elif pop.seats > pop.count:
                problems.append(
                    f"population[{i}].seats: {pop.seats} seats, but the population has "
                    f"{pop.count} agents"
                )
            else:
                seats[pop.name] = np.arange(pop.seats, dtype=np.int64)
        if not seats and not problems:
            problems.append(
                f"{scenario}: no population declares seats; add `seats = N` to a population "
                "whose agents outside agents should drive"
            )
        if problems:
            raise ScenarioError(problems)
        seed = parsed.world.seed if seed is None else seed
        self.ticks = parsed.world.ticks if ticks is None else ticks
        self.run = ControlledRun(
            data, base, out, seed, self.ticks, seats, realtime=realtime, overwrite=overwrite
        )
        self.world = self.run.world
        self.factor = realtime
        self.pops = {p.name: p for p in self.world.populations if p.name in seats}
        self.forms: dict[str, ControlForm] = {
            name: pop.control_form()  # type: ignore[attr-defined]
            for name, pop in self.pops.items()
        }
        # Each one-dimensional action space's bounds, for the fast check of an action.
        self.bounds: dict[str, tuple[list[float], list[float]] | None] = {}
        for name, form in self.forms.items():
            space = form.action_space
            one_dim = len(space.shape) == 1
            self.bounds[name] = (
                (
                    np.asarray(space.low, np.float64).tolist(),
                    np.asarray(space.high, np.float64).tolist(),
                )
                if one_dim
                else None
            )
        self.tokens: dict[str, str] = {}  # shown once, then dropped by the caller
        self.seats: dict[str, Seat] = {}
        for name, idx in seats.items():
            for row, index in enumerate(idx.tolist()):
                token = secrets.token_urlsafe(TOKEN_BYTES)
                seat_id = f"{name}-{index}"
                self.tokens[seat_id] = token
                self.seats[seat_id] = Seat(
                    seat_id,
                    name,
                    index,
                    row,
                    int(self.pops[name].ids[index]),
                    token_hash(token),
                    RateLimit(rate, burst),
                )
        self.admin_token = secrets.token_urlsafe(TOKEN_BYTES)
        self.admin_answers: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._admin_hash = token_hash(self.admin_token)
        self.pending = {
            name: np.full((idx.size, int(np.prod(self.forms[name].action_space.shape))), np.nan)
            for name, idx in seats.items()
        }
        self.running: int | None = None  # the tick being run, if one is
        self.finished = False
        self.summary_path: Path | None = None
        self.accepted = 0
        self.series: list[dict[str, Any]] = []
        self.watchers: set[asyncio.Queue[Message]] = set()
        self.operator_log = out / "served" / "operator.jsonl"
        self._resume = asyncio.Event()
        self.paused = paused
        if not paused:
            self._resume.set()
        self._batch: pa.RecordBatch | None = None
        if self.world.log is not None:
            self.world.log.on_batch = self._on_batch
        self.views: dict[str, dict[str, Any]] = {}
        org = self.world.organisation
        # Seats whose agents are members of the organisation: their member index, by seat.
        self.members: dict[str, int] = {}
        if org is not None:
            index = {int(a): m for m, a in enumerate(org.ids.tolist())}
            self.members = {
                sid: index[s.account] for sid, s in self.seats.items() if s.account in index
            }
        self.gov = GovernanceView()
        self._applying: list[dict[str, Any]] = []
        self._observe()

    # ------------------------------------------------------------------ authentication
    def seat(self, seat_id: str, token: str | None) -> Seat:
        """The seat ``seat_id`` if ``token`` is its token; Refused (401, 403, 404) otherwise."""
        if not token:
            raise Refused(401, "authorization", "missing: send 'Authorization: Bearer <token>'")
        seat = self.seats.get(seat_id)
        presented = token_hash(token)
        if seat is None:
            raise Refused(404, "seat", f"no seat {seat_id!r}; GET /api/v1/world lists them")
        if not hmac.compare_digest(presented, seat.token_hash):
            if self.is_admin(token) or any(
                hmac.compare_digest(presented, s.token_hash) for s in self.seats.values()
            ):
                raise Refused(403, "seat", f"this token does not act for seat {seat_id!r}")
            raise Refused(401, "authorization", "unknown token")
        return seat

    def is_admin(self, token: str | None) -> bool:
        """Whether ``token`` is the operator's."""
        return bool(token) and hmac.compare_digest(token_hash(token or ""), self._admin_hash)

    def admin(self, token: str | None) -> None:
        """Refused (401/403) unless ``token`` is the operator's."""
        if not token:
            raise Refused(
                401, "authorization", "missing: send 'Authorization: Bearer <admin token>'"
            )
        if not self.is_admin(token):
            presented = token_hash(token)
            if any(hmac.compare_digest(presented, s.token_hash) for s in self.seats.values()):
                raise Refused(403, "authorization", "operator actions need the admin token")
            raise Refused(401, "authorization", "unknown token")

    def throttle(self, seat: Seat) -> None:
        """Refused (429) when the seat is over its rate limit."""
        wait = seat.limit.take(time.monotonic())
        if wait > 0:
            raise Refused(
                429,
                "rate",
                f"over {seat.limit.rate:g} requests/s; retry in {wait:.3f} s",
                math.ceil(wait),
            )

    # ------------------------------------------------------------------ actions
    def next_tick(self) -> int:
        """The tick an action accepted now applies at."""
        # While tick t runs, world.tick may already read t + 1 (the world counts the tick done
        # before its clock waits for the tick's end): the hand-over after t is what counts.
        return self.running + 1 if self.running is not None else self.world.tick

    def act(self, seat: Seat, action: Any, key: str | None, body: bytes) -> dict[str, Any]:
        """Accept ``action`` for ``seat``'s next tick; the answer (a resend of ``key`` with the same
        body gets the first answer again). Refused (409, 422) without any change otherwise."""

        def accept() -> dict[str, Any]:
            if self.finished or self.next_tick() >= self.ticks:
                raise Refused(
                    409,
                    "tick",
                    f"the run's last tick ({self.ticks - 1}) has begun; no tick is left",
                )
            values = self._inside(seat.population, action)
            if values is None:  # the form's own check names what is wrong
                form = self.forms[seat.population]
                try:
                    values = form.check(np.asarray([action]), lambda _: seat.id)[0].tolist()
                except (ValueError, TypeError) as exc:
                    raise Refused(422, "action", str(exc)) from None
            pending = self.pending[seat.population]
            replaced = bool(not np.isnan(pending[seat.row]).all())
            pending[seat.row] = values
            self.accepted += 1
            return {
                "accepted": True,
                "seat": seat.id,
                "applies_at_tick": self.next_tick(),
                "replaced_earlier_action": replaced,
                "action": values,
            }

        return self._once(seat.answers, key, body, accept)

    def _inside(self, population: str, action: Any) -> list[float] | None:
        """``action`` as floats when it is a flat list of finite numbers inside the population's
        (one-dimensional) action space; None otherwise. The fast path of every action."""
        bounds = self.bounds[population]
        if bounds is None or not isinstance(action, list) or len(action) != len(bounds[0]):
            return None
        try:
            values = [float(x) for x in action if not isinstance(x, bool)]
        except (TypeError, ValueError, OverflowError):
            return None
        if len(values) != len(action) or not all(
            lo <= x <= hi for x, lo, hi in zip(values, *bounds, strict=True)
        ):
            return None  # NaN fails every comparison, as infinities fail the bounds
        return values

    def stake(self, seat: Seat, micro: Any, key: str | None, body: bytes) -> dict[str, Any]:
        """Stake (``micro > 0``) or unstake (``micro < 0``) micro-credits of ``seat``'s account at
        its next tick; Refused (409, 422) without any change when it cannot be."""

        def accept() -> dict[str, Any]:
            if isinstance(micro, bool) or not isinstance(micro, int) or micro == 0:
                raise Refused(422, "micro", "must be a whole number of micro-credits, not 0")
            if abs(micro) > 10**15:
                raise Refused(422, "micro", "at most 10^15 micro-credits at once")
            if self.finished or self.next_tick() >= self.ticks:
                raise Refused(409, "tick", "the run's last tick has begun; no tick is left")
            outside = self.world.outside
            assert outside is not None, "a served world records its outside inputs"
            # What the seat has at the coming tick, less what it already asked for.
            view = self.views[seat.population]
            queued = sum(
                e["stake"]["micro"]
                for e in self._queued()
                if "stake" in e and e["stake"]["account"] == seat.account
            )
            liquid = int(view["balance"][seat.row]) - queued
            staked = int(view["stake"][seat.row]) + queued
            if micro > liquid:
                raise Refused(
                    422, "micro", f"overdraft: {micro} to stake, {liquid} liquid micro-credits"
                )
            if -micro > staked:
                raise Refused(422, "micro", f"{-micro} to unstake, {staked} micro-credits staked")
            at = self.next_tick()
            outside.stake(seat.account, micro, at)
            return {"accepted": True, "seat": seat.id, "micro": micro, "applies_at_tick": at}

        return self._once(seat.answers, key, body, accept)

    def cancel(self, seat: Seat) -> dict[str, Any]:
        """Withdraw ``seat``'s pending action: at its next tick it acts as its role's baseline."""
        pending = self.pending[seat.population]
        had = bool(not np.isnan(pending[seat.row]).all())
        pending[seat.row] = np.nan
        return {"seat": seat.id, "cancelled": had, "tick": self.next_tick()}

    def vote(self, seat: Seat, payload: Any, key: str | None, body: bytes) -> dict[str, Any]:
        """``seat``'s vote on an open proposal, cast at its next tick; Refused (404, 409, 422)
        without any change when it cannot be."""

        def accept() -> dict[str, Any]:
            if not isinstance(payload, dict) or set(payload) != {"proposal", "support"}:
                raise Refused(422, "body", 'expected {"proposal": id, "support": true or false}')
            pid, support = payload["proposal"], payload["support"]
            if type(pid) is not int or pid < 0:
                raise Refused(422, "proposal", "must be a proposal id (a whole number >= 0)")
            if not isinstance(support, bool):
                raise Refused(422, "support", "must be true or false")
            if self.finished or self.next_tick() >= self.ticks:
                raise Refused(409, "tick", "the run's last tick has begun; no tick is left")
            org = self.world.organisation
            if org is None:
                raise Refused(404, "proposal", "this world has no governance")
            member = self.members.get(seat.id)
            if member is None:
                raise Refused(
                    422,
                    "seat",
                    f"seat {seat.id!r} is not a member of the organisation (its members are "
                    f"the {org.cfg.members!r} population)",
                )
            gov = self.gov  # one snapshot throughout
            if pid >= len(gov.proposals):
                raise Refused(
                    404, "proposal", f"no proposal {pid}; GET /api/v1/proposals lists them"
                )
            at = self.next_tick()
            prop = gov.proposals[pid]
            if prop["state"] != "open" or prop["closes_at"] <= at:
                raise Refused(
                    409,
                    "proposal",
                    f"proposal {pid} is closed for voting at tick {at} (state {prop['state']}, "
                    f"voting closes at tick {prop['closes_at']})",
                )
            if gov.weights[pid][member] == 0:
                raise Refused(
                    422, "seat", f"seat {seat.id!r} had no weight when proposal {pid} opened"
                )
            outside = self.world.outside
            assert outside is not None, "a served world records its outside inputs"
            queued = any(
                "vote" in e
                and e["vote"]["account"] == seat.account
                and e["vote"]["proposal"] == pid
                for e in self._queued()
            )
            if member in gov.votes[pid] or queued:
                raise Refused(409, "proposal", f"seat {seat.id!r} already voted on proposal {pid}")
            outside.vote(seat.account, pid, support, at)
            return {
                "accepted": True,
                "seat": seat.id,
                "proposal": pid,
                "support": support,
                "applies_at_tick": at,
            }

        return self._once(seat.answers, key, body, accept)

    def open_proposal(
        self, table: Any, key: str | None = None, body: bytes = b""
    ) -> dict[str, Any]:
        """Open ``table`` (a ``[[proposal]]`` table without ``at``) at the next tick, for the
        operator; Refused (404, 409, 422) naming what is wrong, with nothing changed. A resend
        with the same idempotency ``key`` gets the first answer."""
        return self._once(self.admin_answers, key, body, lambda: self._open_proposal(table))

    def _open_proposal(self, table: Any) -> dict[str, Any]:
        org = self.world.organisation
        if org is None:
            raise Refused(404, "proposal", "this world has no governance ([governance] table)")
        if not isinstance(table, dict) or "at" in table:
            raise Refused(
                422, "body", "expected a [[proposal]] table without 'at': it opens at the next tick"
            )
        if self.finished or self.next_tick() >= self.ticks:
            raise Refused(409, "tick", "the run's last tick has begun; no tick is left")
        at = self.next_tick()
        try:
            config = ProposalConfig(**{**table, "at": at})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(x) for x in first.get("loc", ())) or "body"
            raise Refused(422, field, str(first.get("msg", "invalid"))) from None
        problems = check_proposal(config, len(org.ids), "proposal")
        if problems:
            where, _, reason = problems[0].partition(": ")
            raise Refused(422, where.removeprefix("proposal."), reason)
        try:
            org.nao.check_open(
                config.proposer,
                config.kind,
                dict(config.changes),
                config.target if config.kind != "params" else -1,
                config.credits,
                self.gov.stakes,
                self.gov.active,
            )
        except GovernanceError as exc:
            raise Refused(422, "proposal", str(exc)) from None
        outside = self.world.outside
        assert outside is not None, "a served world records its outside inputs"
        outside.propose(config.model_dump(exclude={"at"}, exclude_defaults=True), at)
        entry = {"action": "proposal", "applies_at_tick": at, "proposal": table}
        self._operator(entry)
        return {
            **entry,
            "opens": "its id is in the proposal_opened event and GET /api/v1/proposals",
        }

    def _queued(self) -> list[dict[str, Any]]:
        """Outside entries not yet in the views: those waiting for a coming tick, and those the
        running tick has taken but whose effect the views do not show until it ends."""
        outside = self.world.outside
        assert outside is not None, "a served world records its outside inputs"
        return [*self._applying, *outside.pending]

    def _once(
        self,
        answers: OrderedDict[str, tuple[str, dict[str, Any]]],
        key: str | None,
        body: bytes,
        accept: Any,
    ) -> dict[str, Any]:
        """``accept()``'s answer, once per idempotency ``key``: a resend with the same body gets
        the first answer again; the key with another body is refused (409)."""
        if key is None:
            return accept()  # type: ignore[no-any-return]
        if not 1 <= len(key) <= 200:
            raise Refused(422, "Idempotency-Key", "must be 1 to 200 characters")
        digest = hashlib.sha256(body).hexdigest()
        if key in answers:
            first, answer = answers[key]
            if first != digest:
                raise Refused(
                    409,
                    "Idempotency-Key",
                    f"{key!r} was used with a different body; use a new key for a new request",
                )
            return {**answer, "replayed": True}
        answer: dict[str, Any] = accept()
        answers[key] = (digest, answer)
        while len(answers) > IDEMPOTENCY_KEYS_KEPT:
            answers.popitem(last=False)
        return answer

    # ------------------------------------------------------------------ views
    def seat_view(self, seat: Seat) -> dict[str, Any]:
        """What a seat may read about itself and the market."""
        form = self.forms[seat.population]
        view = self.views[seat.population]
        space = form.action_space
        return {
            "seat": seat.id,
            "population": seat.population,
            "role": self.pops[seat.population].role,
            "account": seat.account,
            "tick": self.world.tick,
            "ticks": self.ticks,
            "observation": view["observation"][seat.row],
            "balance_micro": view["balance"][seat.row],
            "stake_micro": view["stake"][seat.row],
            "reputation": view["reputation"][seat.row],
            "price_credits": view["price"],
            "action_space": {
                "shape": list(space.shape),
                "low": np.asarray(space.low).reshape(-1).tolist(),
                "high": np.asarray(space.high).reshape(-1).tolist(),
                "meaning": form.action_meaning,
            },
            "observation_space": {"shape": list(form.observation_space.shape)},
            "member": seat.id in self.members,
            "can_vote_on": self.gov.can_vote_on(
                self.members.get(seat.id),
                self.next_tick(),
                {
                    e["vote"]["proposal"]
                    for e in self._queued()
                    if "vote" in e and e["vote"]["account"] == seat.account
                },
            ),
            "pending_action": None
            if np.isnan(self.pending[seat.population][seat.row]).all()
            else self.pending[seat.population][seat.row].tolist(),
        }

    def world_view(self) -> dict[str, Any]:
        """What anyone may read: the run's progress, prices and the seats."""
        return {
            "scenario": self.world.scenario.world.name,
            "tick": self.world.tick,
            "ticks": self.ticks,
            "paused": self.paused,
            "tick_running": self.running is not None,
            "finished": self.finished,
            "realtime_factor": self.factor,
            "price_credits": float(self.world.market.prices.mean()) / self.world.MICRO,
            "seats": [
                {"seat": s.id, "population": s.population, "account": s.account}
                for s in self.seats.values()
            ],
            "actions_accepted": self.accepted,
            "seats_streaming": sum(1 for s in self.seats.values() if s.queues),
        }

    def _on_batch(self, batch: pa.RecordBatch) -> None:
        self._batch = batch

    @property
    def proposals(self) -> list[dict[str, Any]]:
        """The organisation's proposals as of the last tick's end (empty without governance)."""
        return self.gov.proposals

    def _observe(self) -> None:
        """Read what the seats and the dashboard see after a tick, while the world is between
        ticks; each view replaces the last whole, so a request reads one or the other."""
        world = self.world
        ledger = world.local_ledgers[0]
        views = {}
        for name, pop in self.pops.items():
            control_seats = np.array(
                sorted(s.index for s in self.seats.values() if s.population == name),
                dtype=np.int64,
            )
            accounts = pop.ids[control_seats]
            wealth = wealth_micro(world, pop, control_seats)
            stake = ledger.staked_of(accounts)
            reputation = world.reputation.score(accounts)
            views[name] = {
                "observation": pop.observe(world, control_seats).astype(float).tolist(),  # type: ignore[attr-defined]
                "balance": (wealth - stake).tolist(),
                "stake": stake.tolist(),
                "reputation": [float(x) for x in reputation],
                "price": float(world.market.prices.mean()) / world.MICRO,
            }
        self.views = views
        org = world.organisation
        if org is not None:
            nao = org.nao
            gov = GovernanceView(
                stakes=org.stakes(),
                active=nao.active.copy(),
                votes=[dict(p.votes) for p in nao.proposals],
                weights=[p.weights.copy() for p in nao.proposals],
            )
            for p in nao.proposals:
                yes, no, total = p.tally()
                gov.proposals.append(
                    {
                        "id": p.id,
                        "kind": p.kind,
                        "what": nao.describe(p),
                        "proposer_account": int(org.ids[p.proposer]),
                        "opened_at": p.opened_at,
                        "closes_at": p.closes_at,
                        "state": p.state,
                        "reason": p.reason,
                        "executes_at": p.eta,
                        "weight_yes": yes,
                        "weight_no": no,
                        "weight_total": total,
                        "votes": len(p.votes),
                    }
                )
            self.gov = gov

    def tick_row(self) -> dict[str, Any]:
        """The dashboard's row for the tick just run."""
        world = self.world
        held, issued = world.local_ledgers[0].supply()
        counters = world.telemetry.counters
        lag, _ = world.replica_lag()
        balances = world.local_ledgers[0].balances() / world.MICRO
        hist, edges = np.histogram(balances, bins=20)
        return {
            "tick": world.tick,
            "price": float(world.market.prices.mean()) / world.MICRO,
            "volume": int(sum(v for k, v in counters.items() if k.endswith("contracts")))
            + int(counters.get("tasks_done", 0)),
            "held": held / world.MICRO,
            "issued": issued / world.MICRO,
            "replica_lag": int(lag),
            "order": world.telemetry.gauges.get("r_global"),
            "wealth_hist": hist.tolist(),
            "wealth_edges": [float(e) for e in edges],
            "seats": {
                sid: self.views[s.population]["balance"][s.row] / world.MICRO
                for sid, s in self.seats.items()
            },
            "events": [] if self._batch is None else _feed(self._batch, None, 30),
        }

    # ------------------------------------------------------------------ the loop
    def pause(self, paused: bool, who: str = "operator") -> None:
        """Hold the clock between ticks, or let it go on (recorded in ``operator.jsonl``)."""
        self.paused = paused
        (self._resume.clear if paused else self._resume.set)()
        self._operator({"action": "pause" if paused else "resume", "by": who})

    def set_speed(self, factor: float) -> None:
        """Wall seconds per unit of virtual time from the next tick on (recorded)."""
        if not (isinstance(factor, (int, float)) and 1e-4 <= factor <= 3600):
            raise Refused(422, "factor", "must be a number of seconds from 0.0001 to 3600")
        self.factor = float(factor)
        env = self.world.env
        assert isinstance(env, RealtimeClock)
        env.set_factor(self.factor)
        self._operator({"action": "speed", "factor": self.factor})

    def inject_fault(self, fault: Any, key: str | None = None, body: bytes = b"") -> dict[str, Any]:
        """Inject ``fault`` (a ``[[fault]]`` table of the scenario's kinds, without ``at``) at the
        next tick; Refused (422) naming what is wrong, with nothing changed. A resend with the
        same idempotency ``key`` gets the first answer."""
        return self._once(self.admin_answers, key, body, lambda: self._inject_fault(fault))

    def _inject_fault(self, fault: Any) -> dict[str, Any]:
        if not isinstance(fault, dict) or "at" in fault:
            raise Refused(
                422, "body", "expected a [[fault]] table without 'at': it starts at the next tick"
            )
        if self.finished or self.next_tick() >= self.ticks:
            raise Refused(409, "tick", "the run's last tick has begun; no tick is left")
        outside = self.world.outside
        assert outside is not None, "a served world records its outside inputs"
        at = self.next_tick()
        try:
            config = FaultConfig(**{**fault, "at": at})
            faults = [*self.world.scenario.fault, config]
            scenario = self.world.scenario.model_copy(update={"fault": faults})
            problems = check_faults(scenario, self.world.network.names, "fault")
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(x) for x in first.get("loc", ())) or "body"
            raise Refused(422, field, str(first.get("msg", "invalid"))) from None
        if problems:
            raise Refused(422, "fault", problems[0])
        outside.inject(config.model_dump(exclude={"at"}, exclude_defaults=True), at)
        entry = {"action": "fault", "applies_at_tick": at, "fault": fault}
        self._operator(entry)
        return entry

    def _operator(self, entry: dict[str, Any]) -> None:
        entry = {"tick": self.world.tick, **entry}
        self.operator_log.parent.mkdir(exist_ok=True)
        with self.operator_log.open("a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
        self._broadcast_watchers({"operator": entry})

    async def run_loop(self) -> None:
        """Run every tick, handing the seats' actions over before each; then finish the run."""
        try:
            while self.world.tick < self.ticks:
                await self._resume.wait()
                tick = self.world.tick
                for name, control in self.run.controls.items():
                    rows, self.pending[name] = (
                        self.pending[name],
                        np.full_like(self.pending[name], np.nan),
                    )
                    control.set_actions(rows)
                self.running = tick
                self._batch = None
                outside = self.world.outside
                self._applying = (
                    [] if outside is None else [e for e in outside.pending if e["at"] <= tick]
                )
                try:
                    # The tick, and reading what it made, run off the event loop's thread, so
                    # requests are answered meanwhile; only the hand-over below is on it.
                    row, messages = await asyncio.to_thread(self._tick, tick)
                finally:
                    self.running = None
                self._publish(row, messages)
            self.summary_path = await asyncio.to_thread(self.run.finish)
        finally:
            self.finished = True
            self._broadcast_watchers({"finished": True, "tick": self.world.tick})
            for seat in self.seats.values():
                for q in seat.queues:
                    _offer(q, {"finished": True, "tick": self.world.tick})

    def _tick(self, tick: int) -> tuple[dict[str, Any], list[tuple[Seat, str]]]:
        """Run ``tick`` and read its views, the dashboard's row and each subscribed seat's
        message, encoded (in the worker thread)."""
        self.world.run(tick + 1)
        self._observe()
        self._applying = []  # the views now show them
        messages = [
            (
                seat,
                json.dumps(
                    {
                        "tick": tick,
                        "next_tick": self.world.tick,
                        **{k: v for k, v in self.seat_view(seat).items() if k != "action_space"},
                        "events": [] if self._batch is None else _feed(self._batch, seat.account),
                    },
                    separators=(",", ":"),
                ),
            )
            for seat in list(self.seats.values())
            if seat.queues
        ]
        return self.tick_row(), messages

    def _publish(self, row: dict[str, Any], messages: list[tuple[Seat, str]]) -> None:
        """Hand a tick's row and messages to their subscribers (on the loop's thread)."""
        self.series.append(row)
        del self.series[:-SERIES_KEPT]
        self._broadcast_watchers({"row": row})
        for seat, message in messages:
            for q in list(seat.queues):
                _offer(q, message)

    def _broadcast_watchers(self, message: dict[str, Any]) -> None:
        for q in self.watchers:
            _offer(q, message)


def _offer(q: asyncio.Queue[Message], message: Message) -> None:
    """Queue ``message``; a subscriber that fell behind loses its oldest message, not the host."""
    if q.full():
        q.get_nowait()
    q.put_nowait(message)


def _feed(
    batch: pa.RecordBatch, account: int | None, limit: int = EVENTS_PER_MESSAGE
) -> list[dict[str, Any]]:
    """A tick's events as dicts: those naming ``account`` (as agent or other), or all."""
    agent = batch.column("agent").to_numpy()
    other = batch.column("other").to_numpy()
    idx = (
        np.arange(len(agent))
        if account is None
        else np.flatnonzero((agent == account) | (other == account))
    )
    cols = {
        name: batch.column(name)
        for name in (
            "seq",
            "kind",
            "subsystem",
            "agent",
            "other",
            "amount_micro",
            "value",
            "detail",
        )
    }
    out = []
    for i in idx[:limit].tolist():
        out.append({name: col[i].as_py() for name, col in cols.items()})
    return out
