"""The NAO inside a world: member stakes on the ledger, scripted proposals, votes and stake
purchases.

Members are the agents of one population. Each stakes ``member_stake`` credits at tick 0 through
the ledger (at its home replica), and the NAO reads stakes from the ledger when a proposal opens.
At every tick boundary, before populations step: stake purchases of the tick are made; proposals
whose voting period or timelock ended are decided or executed (executed changes take effect from
this tick on; treasury spends pay out of the treasury account, which the governed fee fills);
proposals of the tick open; members vote on proposals opened the tick before (drawn
from the scenario's turnout and support) and cast scripted votes. Every step is recorded.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from economy.constitution import Constitution, Verdict
from economy.governance import NAO, GovernanceError, GovernanceParams
from economy.ops import OpKind
from runtime.kernel.scenario import GovernanceConfig, ProposalConfig, StakeEventConfig, VoteConfig

if TYPE_CHECKING:
    from runtime.kernel.world import World


@runtime_checkable
class ProposalVerifier(Protocol):
    """A population that proves a proposal's parameters against the constitution (a critic)."""

    def verify_proposal(self, constitution: Constitution, params: dict[str, float]) -> Any:
        """The verdict: whether the parameters respect the constitution, and why not."""


@runtime_checkable
class WhatIfModel(Protocol):
    """A population that predicts what a parameter change would do (a learned world model)."""

    def what_if(
        self, changes: dict[str, float], current: dict[str, float]
    ) -> tuple[float | None, str]:
        """The predicted change of the mean price, and a line that says it."""


class Organisation:
    """Drives an :class:`economy.governance.NAO` from a scenario inside ``world``."""

    def __init__(
        self,
        world: World,
        cfg: GovernanceConfig,
        proposals: list[ProposalConfig],
        votes: list[VoteConfig],
        stake_events: list[StakeEventConfig],
    ) -> None:
        self.world = world
        self.cfg = cfg
        self.scripted = list(proposals)  # the scenario's, then any an operator opens live
        self.outside: set[int] = set()  # indices in ``scripted`` of the operator's proposals
        self.votes = votes
        self.stake_events = stake_events
        pop = next(p for p in world.populations if p.name == cfg.members)
        self.ids = pop.ids
        self.streams = world.streams
        # In a shard: every member (the population's ids on every shard), whether each is this
        # shard's, the stakes gathered at the last barrier, and whether this shard records.
        self.here: npt.NDArray[np.bool_] | None = None
        self.gathered: npt.NDArray[np.int64] | None = None
        self.speaks = world.shard is None or world.shard[0] == 0
        if world.shard is not None:
            from runtime.kernel.rng import Streams

            start = 0
            for p in world.scenario.population:
                if p.name == cfg.members:
                    break
                start += p.count
            self.ids = np.arange(start, start + pop.cfg.count, dtype=np.int64)
            self.here = np.isin(self.ids, pop.ids)
            self.streams = Streams(world.seed)  # the same draws on every shard
        rng = self.streams("governance/setup")
        expertise = rng.normal(size=(len(self.ids), cfg.embedding_dim))
        self.embeddings = rng.normal(size=(len(proposals), cfg.embedding_dim))
        params = GovernanceParams(
            cfg.quorum,
            cfg.threshold,
            cfg.voting_period,
            cfg.timelock,
            cfg.stake_exponent,
            cfg.temperature,
        )
        constitution = Constitution({k: (b.min, b.max) for k, b in cfg.constitution.items()})
        active = np.zeros(len(self.ids), dtype=np.bool_)
        active[: cfg.initial_members if cfg.initial_members is not None else len(self.ids)] = True
        # A critic population, when the world has one, is who proves proposals against the
        # constitution.
        critic = next((p for p in world.populations if p.role == "critic"), None)
        check: Any = constitution.verify
        if isinstance(critic, ProposalVerifier):
            check = partial(critic.verify_proposal, constitution)
        # In a shard: the proof (z3) runs once, on shard 0 at the barrier before the tick that
        # decides (verdicts_ahead); every shard's NAO takes the verdict the driver hands it.
        self.prove = check
        self.verdicts: dict[str, Verdict] = {}
        self.nao = NAO(
            expertise,
            self.stakes,
            params,
            constitution,
            dict(world.params),
            active=active,
            critic=check if self.here is None else self._handed_verdict,
        )
        self.opened: dict[int, int] = {}  # scenario proposal index -> NAO proposal id
        self._logged = 0

    def verdicts_ahead(self, tick: int) -> dict[str, Verdict]:
        """The constitution's verdicts on what the proposals deciding at ``tick`` would produce,
        proved now (a sharded world's shard 0, at the barrier before ``tick``): the NAO's tick,
        run on a copy of its state with the proofs kept."""
        nao = self.nao
        if not any(p.state == "open" and tick >= p.closes_at for p in nao.proposals):
            return {}
        found: dict[str, Verdict] = {}

        def prove(state: dict[str, float]) -> Verdict:
            verdict: Verdict = self.prove(state)
            found[_state_key(state)] = verdict
            return verdict

        dry = copy.copy(nao)
        dry.proposals = copy.deepcopy(nao.proposals)
        dry.governed = dict(nao.governed)
        dry.active = nao.active.copy()
        dry.log = list(nao.log)
        dry.critic = prove
        dry.tick(tick)
        return found

    def _handed_verdict(self, state: dict[str, float]) -> Verdict:
        """The verdict shard 0 proved for ``state`` (:meth:`verdicts_ahead`)."""
        verdict = self.verdicts.get(_state_key(state))
        if verdict is None:
            raise RuntimeError(
                "a shard's organisation decided a proposal whose proof the driver did not hand it"
            )
        return verdict

    def reconfigure(self, cfg: GovernanceConfig, was: GovernanceConfig) -> None:
        """Take up voting rules changed from ``was`` mid-run (a fork); rules governance itself has
        changed since stay as they are unless the fork changes them too."""
        self.cfg = cfg
        changed = {
            key: getattr(cfg, key)
            for key in vars(self.nao.params)
            if getattr(cfg, key) != getattr(was, key)
        }
        if changed:
            self.nao.params = dataclasses.replace(self.nao.params, **changed)

    def add_proposal(self, proposal: ProposalConfig) -> None:
        """Open ``proposal`` (an operator's, from outside the world) at its tick, like a scripted
        one; its embedding comes from a stream of its own, so a replay draws the same."""
        i = len(self.scripted)
        rng = self.streams(f"governance/outside-proposal/{i}")
        embedding = rng.normal(size=(1, self.cfg.embedding_dim))
        self.embeddings = np.vstack([self.embeddings, embedding])
        self.scripted.append(proposal)
        self.outside.add(i)

    def outside_vote(self, account: int, pid: int, support: bool, tick: int) -> None:
        """A seat's vote from outside, recorded as ``outside_vote`` or, when the NAO refuses it,
        ``outside_vote_refused`` with the reason."""
        w = self.world
        member = np.flatnonzero(self.ids == account)
        try:
            if member.size == 0:
                raise GovernanceError(f"account {account} is not a member")
            self.nao.vote(pid, int(member[0]), support, tick)
        except GovernanceError as exc:
            w.emit("outside_vote_refused", "serve", account, pid, detail=str(exc))
            return
        w.emit("outside_vote", "serve", account, pid, value=float(support))

    def seat_members(self) -> npt.NDArray[np.int64]:
        """Member indices driven from outside (seats of the members' population): they vote
        only as their outside agents do, never by the scenario's drawn turnout."""
        pop = next(p for p in self.world.populations if p.name == self.cfg.members)
        control = getattr(pop, "control", None)
        return np.empty(0, np.int64) if control is None else control.seats

    def setup(self) -> None:
        """Each member stakes ``member_stake`` credits (minted to it first; in a shard, its own
        members)."""
        ids = self.ids if self.here is None else self.ids[self.here]
        amounts = np.full(len(ids), self.cfg.member_stake * self.world.MICRO, dtype=np.int64)
        self.world.mint(ids, amounts, "member stake")
        self.world.execute_by_home(OpKind.STAKE, ids, np.zeros_like(ids), amounts)

    def own_stakes(self) -> npt.NDArray[np.int64]:
        """Each member's stake in micro-credits at its home replica (in a shard: 0 for the
        members of other shards)."""
        out = np.zeros(len(self.ids), dtype=np.int64)
        homes = self.world.home(self.ids)
        for r, ledger in enumerate(self.world.ledgers):
            sel = homes == r
            if ledger is not None:
                out[sel] = ledger.staked()[self.ids[sel]]
        return out

    def stakes(self) -> npt.NDArray[np.int64]:
        """Each member's stake in whole credits, read from its home replica (in a shard: as
        gathered from every shard at the barrier before this tick, plus this tick's stake
        purchases)."""
        if self.here is None:
            return self.own_stakes() // self.world.MICRO
        assert self.gathered is not None, "the driver hands the shards the stakes at each barrier"
        out = self.gathered.copy()
        for e in self.stake_events:
            if e.at == self.world.tick:
                out[e.member] += e.credits * self.world.MICRO
        return out // self.world.MICRO

    def _emit(self, *args: Any, **kwargs: Any) -> None:
        """Record an event of the organisation's (once in a sharded world: shard 0)."""
        if self.speaks:
            self.world.emit(*args, **kwargs)

    def step(self, tick: int) -> None:
        """Run one tick boundary of governance (see the module docstring for the order)."""
        w = self.world
        for e in self.stake_events:
            if e.at == tick and (self.here is None or self.here[e.member]):
                member = self.ids[e.member : e.member + 1]
                amount = np.array([e.credits * w.MICRO], dtype=np.int64)
                w.mint(member, amount, "stake purchase")
                w.execute_by_home(OpKind.STAKE, member, np.zeros(1, np.int64), amount)
                w.emit("stake_bought", "governance", int(member[0]), amount=int(amount[0]))
        for prop in self.nao.tick(tick):
            w.params.update(self.nao.governed)
            w.market.elasticity = w.params["price_elasticity"]
            for key, value in sorted(prop.changes.items()):
                self._emit(
                    "param_changed", "governance", other=prop.id, value=float(value), detail=key
                )
            if prop.kind in ("admit", "expel"):
                self._emit(
                    "member_admitted" if prop.kind == "admit" else "member_expelled",
                    "governance",
                    int(self.ids[prop.target]),
                    prop.id,
                )
            if prop.kind == "treasury":
                self._pay(prop.id, int(self.ids[prop.target]), prop.amount * w.MICRO)
        for i, p in enumerate(self.scripted):
            if p.at == tick:
                try:
                    prop = self.nao.open(
                        p.proposer,
                        dict(p.changes),
                        self.embeddings[i],
                        tick,
                        p.kind,
                        p.target,
                        p.credits,
                    )
                except GovernanceError as exc:
                    # A proposal that cannot open as the run stands (its proposer lost its stake,
                    # its candidate was admitted already, say): recorded, and the run goes on.
                    if i in self.outside:
                        self._emit("outside_proposal_refused", "serve", other=i, detail=str(exc))
                    else:
                        self._emit("proposal_refused", "governance", other=i, detail=str(exc))
                    continue
                self.opened[i] = prop.id
                # The proposal is recorded with the network's tension at opening, for voters and
                # analysts.
                tension = w.coordination.tension if w.coordination is not None else 0.0
                self._emit(
                    "proposal_opened",
                    "governance",
                    int(self.ids[p.proposer]),
                    prop.id,
                    value=tension,
                    detail=self.nao.describe(prop),
                )
                self._ask_world_model(prop.id, dict(p.changes))
        self._vote(tick)
        self._record_decisions()

    def _ask_world_model(self, pid: int, changes: dict[str, float]) -> None:
        """Record a learned world model's what-if answer for a parameter change, for voters and
        analysts."""
        w = self.world
        model = next(
            (
                p
                for p in w.populations
                if p.role == "world_model" and getattr(p, "core", "") == "learned"
            ),
            None,
        )
        if not isinstance(model, WhatIfModel) or not changes or not self.speaks:
            return
        change, line = model.what_if(changes, w.params)
        w.emit(
            "what_if",
            model.name,
            other=pid,
            value=float("nan") if change is None else change,
            detail=line,
        )

    def _pay(self, pid: int, recipient: int, amount: int) -> None:
        """Pay from the treasury at the replica holding the most of its spending rights."""
        w = self.world
        treasury_home = int(w.home(np.array([w.treasury], dtype=np.int64))[0])
        if treasury_home not in w.local_regions:
            return  # a shard of a sharded world: the shard of the treasury's home pays
        # (In a shard, the replicas it holds: those of other shards' regions count for nothing.)
        rights = np.array(
            [ledger.rights(w.treasury) if ledger is not None else -1 for ledger in w.ledgers]
        )
        r = int(np.argmax(rights))
        if rights[r] < amount:
            w.emit(
                "treasury_spend_failed",
                "governance",
                recipient,
                pid,
                amount,
                detail=f"no replica holds {amount} of the treasury's rights (most: "
                f"{int(rights[r])})",
            )
            return
        w.execute(
            r, OpKind.TRANSFER, np.array([w.treasury]), np.array([recipient]), np.array([amount])
        )
        w.emit("treasury_spent", "governance", recipient, pid, amount)

    def _vote(self, tick: int) -> None:
        rng = self.streams("governance/votes")
        seated = set(self.seat_members().tolist())
        for i, p in enumerate(self.scripted):
            pid = self.opened.get(i)
            if pid is None:
                continue
            prop = self.nao.proposals[pid]
            scripted = {v.member for v in self.votes if v.proposal == i}
            if tick == p.at + 1 and prop.state == "open" and tick < prop.closes_at:
                turn = rng.random(len(self.ids)) < p.turnout
                yes = rng.random(len(self.ids)) < p.support
                for m in np.flatnonzero(turn & (prop.weights > 0)):
                    if int(m) not in scripted and int(m) not in seated and m not in prop.votes:
                        self.nao.vote(pid, int(m), bool(yes[m]), tick)
                self._emit(
                    "votes_cast",
                    "governance",
                    other=pid,
                    amount=int(turn.sum()),
                    value=float(yes[turn].mean()) if turn.any() else 0.0,
                )
            for v in self.votes:
                if v.proposal == i and v.at == tick:
                    self.nao.vote(pid, v.member, v.support, tick)
                    self._emit(
                        "vote", "governance", int(self.ids[v.member]), pid, value=float(v.support)
                    )

    def _record_decisions(self) -> None:
        for _tick, pid, event, detail in self.nao.log[self._logged :]:
            if event in ("rejected", "blocked", "queued"):
                self._emit(f"proposal_{event}", "governance", other=pid, detail=detail)
        self._logged = len(self.nao.log)

    def outcomes(self) -> list[dict[str, object]]:
        """Each proposal's final state and reason (for the run summary)."""
        return [
            {"id": p.id, "what": self.nao.describe(p), "state": p.state, "reason": p.reason}
            for p in self.nao.proposals
        ]

    def digest(self) -> bytes:
        """Hash of proposals, votes, weights and governed parameters."""
        h = hashlib.sha256(
            repr(sorted(self.nao.governed.items())).encode()
            + repr(vars(self.nao.params)).encode()
            + self.nao.active.tobytes()
        )
        for p in self.nao.proposals:
            h.update(repr((p.id, p.state, p.eta, sorted(p.votes.items()))).encode())
            h.update(p.weights.tobytes())
        return h.digest()


def _state_key(state: dict[str, float]) -> str:
    """What a verdict is looked up by: the state the constitution is proved on."""
    return repr(sorted(state.items()))
