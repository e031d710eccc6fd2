"""Sharded worlds: one scenario's agents partitioned over K shards, each a World in its own Ray
actor.

With ``[distributed] shards = K``, shard ``k`` holds the agents whose region ``r`` has ``r % K ==
k`` and the ledger replicas of those regions; each shard's requesters, workers and roles trade among
the shard's own agents, on its own task board and market. The shards share nothing but messages:
ledger ops gossiped to the other replicas and the anti-entropy rounds (sync requests and deltas)
travel over each shard's message bus, with the network's latency, loss, duplication and partitions,
and are carried between shards by the driver at each tick barrier. There is no central ledger and no
coordinator of balances: every op is made at the payer's home replica, which escrows its spending
rights, so no interleaving can overdraw an account, and the replicas merge as CRDTs.

Time: shards run tick ``t`` in parallel, then the driver hands every shard the messages the others
sent during it. A message arrives at its send time plus latency, or at the next tick barrier if
that is later (conservative synchronisation: cross-shard latency below a tick is rounded up to
the barrier). The driver orders each shard's incoming messages by (arrival, sending shard, send
order), so a run is a function of the scenario, the seed and K: the same K and seed give
identical results; a different K partitions the agents differently and gives a different (equally
valid) run. Each shard draws from its own random streams (``shard{k}of{K}/...``); with K = 1 the
world is exactly the one-process World.

After the last tick :func:`run_sharded` settles: it runs anti-entropy rounds, without new ticks,
until every replica holds the same Merkle root (or ``settle_rounds`` ticks of virtual time pass),
then reports the totals: credits held by every account at its home replica against credits minted
minus burned, the lowest balance, and the roots.

Faults at the shard level (Ray): at every ``checkpoint_every`` ticks the driver keeps each shard's
saved world and the messages routed to it at that barrier, a consistent cut. A shard whose actor
dies, or does not answer within ``shard_timeout`` seconds, has every shard rebuilt from the last
cut, and the ticks since run again: the shards are deterministic, so the run ends as an
uninterrupted one does. After ``max_restarts`` restarts the run stops with an error naming the
shard and the tick; it never waits forever.

Recording (:func:`record_sharded`, what ``agora run`` does with a sharded scenario): every shard
writes its own event log and metrics table into ``shard-K/`` of one run directory, with its state
hashes at every checkpoint tick in the summary. A restart from a barrier cut takes each shard's
logs back to where they stood at that cut, so a run with restarts writes the bytes of an
uninterrupted one. ``agora replay --verify`` re-runs the shards with the same K and compares every
file, every figure and the checkpoint hashes, naming the shard, tick and subsystem of the first
divergence.

Coordination and governance: see :mod:`runtime.coordination.service` and
:mod:`runtime.coordination.organisation`; at each barrier the driver gathers the governance
members' stakes from every shard and hands the total to each, with the verdicts shard 0 proved
for the proposals deciding in the coming tick.

Not yet: ``agora fork`` of a sharded run (``agora run --resume`` continues one from its last cut:
:mod:`runtime.scale.sharded_recording`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from runtime.kernel.bus import Message
from runtime.kernel.scenario import parse

FORMAT = "agora-sharded-run-2"
"""A recorded sharded run: per-shard event logs, metrics and checkpoint hashes. (Format
``agora-sharded-run-1`` held totals only.)"""


CUT_FORMAT = "agora-shard-cut-1"


def shard_dir(k: int) -> str:
    """The folder of a run directory that holds shard ``k``'s logs."""
    return f"shard-{k}"


def cut_name(tick: int) -> str:
    """The file (in a shard's ``checkpoints/``) of its part of the barrier cut before ``tick``."""
    assert 0 <= tick < 10**8
    return f"cut_{tick:08d}.npz"


class Shard:
    """One shard: a World over its agents and replicas, stepped a tick at a time by the driver."""

    def __init__(
        self,
        scenario_text: str,
        base: str,
        seed: int | None,
        k: int,
        n_shards: int,
        saved: tuple[bytes, tuple[str, ...], dict[str, Any]] | None = None,
        out: str | None = None,
        until: int | None = None,
        cut_tick: int | None = None,
    ) -> None:
        from runtime.kernel.world import World

        self.k = k
        # Where this shard records its logs (a run directory's shard-K/), when the run records.
        self.out = None if out is None else Path(out) / shard_dir(k)
        self.inbox_at_cut: list[tuple[float, Message]] = []
        if cut_tick is not None:  # its part of a cut that save_cut wrote
            assert self.out is not None
            self.world, self.inbox_at_cut = self._load_cut(cut_tick, scenario_text, base)
        elif saved is None:
            if self.out is not None:
                self.out.mkdir(parents=True, exist_ok=True)
            self.world = World(
                parse(scenario_text, "scenario", Path(base)),
                base=Path(base),
                out=self.out,
                seed=seed,
                shard=(k, n_shards),
            )
        else:  # what save() gave, at a tick barrier
            from runtime.record import snapshot

            data, modules, logs = saved
            self.world = snapshot.loads(data, modules)
            self.world.base = Path(base)
            if self.out is not None:  # the logs go on from where they stood at the cut
                from runtime.record.resume import attach

                attach(self.world, self.out, Path(base), logs)
                self.world.snapshots = None
        if until is not None:  # the run's last tick is a checkpoint, as in one process
            self.world.final_tick = until - 1
        self.shard_of = [r % n_shards for r in range(self.world.network.n_regions)]

    def _logs(self) -> dict[str, Any]:
        """Where the shard's logs stand now (events not yet written included)."""
        from runtime.record.checkpoints import log_positions

        return log_positions(self.world, pending=True)

    def save_cut(self, tick: int, inbox: list[tuple[float, Message]]) -> str:
        """Write this shard's part of the cut at the barrier before ``tick`` to its
        ``checkpoints/`` (its world, where its logs stand, the messages the driver hands it now):
        what ``agora run --resume`` goes on from. Its state hash is recorded first, as a ``cut``
        event, so a resumed run can tell an altered file. Returns the file's SHA-256."""
        from runtime.kernel.world import Checkpoint
        from runtime.record import snapshot
        from runtime.record.checkpoints import allowed_modules

        assert self.out is not None, "a shard writes cuts into a run directory"
        w = self.world
        w.emit("cut", "world", other=tick, detail=Checkpoint(tick, w.hashes()).state_hash)
        root = {
            "format": CUT_FORMAT,
            "tick": tick,
            "world": w,
            "logs": self._logs(),
            "inbox": [[arrives, msg] for arrives, msg in inbox],
        }
        path = self.out / "checkpoints" / cut_name(tick)
        path.parent.mkdir(parents=True, exist_ok=True)
        return snapshot.save(path, root, allowed_modules(w.populations))

    def _load_cut(
        self, tick: int, scenario_text: str, base: str
    ) -> tuple[Any, list[tuple[float, Message]]]:
        """The world and inbox of this shard's cut before ``tick``, its logs taken back to it."""
        from runtime.kernel.world import World, role_modules
        from runtime.record import snapshot
        from runtime.record.resume import attach

        assert self.out is not None
        scenario = parse(scenario_text, "scenario", Path(base))
        path = self.out / "checkpoints" / cut_name(tick)
        root = snapshot.load(
            path, (*snapshot.AGORA_MODULES, "networkx", *role_modules(scenario, Path(base)))
        )
        if (
            not isinstance(root, dict)
            or root.get("format") != CUT_FORMAT
            or root.get("tick") != tick
            or not isinstance(root.get("world"), World)
        ):
            raise snapshot.SnapshotError(f"{path}: not a shard's cut before tick {tick}")
        world = root["world"]
        world.base = Path(base)
        attach(world, self.out, Path(base), root["logs"])
        world.snapshots = None
        return world, [(float(arrives), msg) for arrives, msg in root["inbox"]]

    def take_inbox(self) -> list[tuple[float, Message]]:
        """The messages a shard built from a cut is handed first (those of the cut)."""
        inbox, self.inbox_at_cut = self.inbox_at_cut, []
        return inbox

    def save(self) -> tuple[bytes, tuple[str, ...], dict[str, Any]]:
        """The shard's world, saved at a tick barrier (messages still to leave it included), the
        modules whose classes it holds and where its logs stand: what ``Shard(..., saved=...)``
        takes back."""
        from runtime.record import snapshot
        from runtime.record.checkpoints import allowed_modules

        w = self.world
        modules = allowed_modules(w.populations)
        return snapshot.dumps(w, modules), modules, self._logs()

    def close(self) -> dict[str, Any]:
        """Flush and close the shard's logs (after the last report); its checkpoints and the
        number of events it recorded."""
        w = self.world
        events = w.log.seq if w.log is not None else 0
        w.close()
        return {"checkpoints": _checkpoints(w), "events": events}

    def ready(self) -> int:
        """The shard's agent count, once its world is built."""
        return int(sum(p.n for p in self.world.populations))

    def _take_outbox(self) -> list[tuple[int, float, int, int, Message]]:
        """(destination shard, arrival, this shard, send order, message) for every message
        leaving."""
        bus = self.world.bus
        out = [
            (self.shard_of[m.dst], arrives, self.k, i, m)
            for i, (arrives, m) in enumerate(bus.outbox)
        ]
        bus.outbox = []
        return out

    def member_stakes(self) -> np.ndarray | None:
        """The governance members' stakes at their home replicas on this shard (micro-credits;
        0 for other shards' members), or None without governance."""
        org = self.world.organisation
        return None if org is None else org.own_stakes()

    def verdicts_ahead(self, tick: int | None) -> dict[str, Any]:
        """The constitution's verdicts for the proposals deciding at ``tick`` (shard 0's part at a
        barrier; None: not this shard's job)."""
        org = self.world.organisation
        return {} if tick is None or org is None else org.verdicts_ahead(tick)

    def step(
        self,
        inbox: list[tuple[float, Message]],
        stakes: np.ndarray | None = None,
        verdicts: dict[str, Any] | None = None,
    ) -> list[tuple[int, float, int, int, Message]]:
        """Take in the messages due (and, with governance, every member's stake gathered at this
        barrier and the verdicts shard 0 proved), run one tick, return what leaves for other
        shards."""
        for arrives, msg in inbox:
            self.world.bus.inject(arrives, msg)
        org = self.world.organisation
        if stakes is not None and org is not None:
            org.gathered = stakes
            org.verdicts = verdicts or {}
        self.world.run(self.world.tick + 1)
        return self._take_outbox()

    def settle(
        self, inbox: list[tuple[float, Message]], anti_entropy: bool
    ) -> list[tuple[int, float, int, int, Message]]:
        """Without a tick: take in messages, optionally start an anti-entropy round, let one tick of
        virtual time pass (deliveries happen), return what leaves."""
        w = self.world
        for arrives, msg in inbox:
            w.bus.inject(arrives, msg)
        if anti_entropy:
            for r in w.local_regions:
                w.anti_entropy_from(r)
        w.env.run(until=w.env.now + w.scenario.world.tick_length)
        return self._take_outbox()

    def report(self) -> dict[str, Any]:
        """What the driver needs for the totals: this shard's accounts at their home replicas,
        its replicas' roots and supply, its state hashes and message counts."""
        w = self.world
        ids = (
            np.concatenate([p.ids for p in w.populations])
            if w.populations
            else np.empty(0, np.int64)
        )
        if w.treasury % w.network.n_regions in w.local_regions:
            ids = np.append(ids, w.treasury)
        balance = np.zeros(ids.size, dtype=np.int64)
        stake = np.zeros(ids.size, dtype=np.int64)
        homes = w.home(ids)
        for r in w.local_regions:
            sel = homes == r
            balance[sel] = w.ledgers[r].balances()[ids[sel]]
            stake[sel] = w.ledgers[r].staked()[ids[sel]]
        held, issued = w.local_ledgers[0].supply()
        return {
            "shard": self.k,
            "agents": int(sum(p.n for p in w.populations)),
            "tick": w.tick,
            "held_micro": int(balance.sum() + stake.sum()),
            "lowest_balance_micro": int(balance.min()) if balance.size else 0,
            "supply_held_micro": held,
            "supply_issued_micro": issued,
            "roots": {r: w.ledgers[r].root().hex() for r in w.local_regions},
            "hashes": w.hashes(),
            "messages": dict(w.bus.counts),
            "tasks_posted": w.task_board.next_id,
            "ops_refused": sum(len(ledger.rejected) for ledger in w.local_ledgers)
            + w.refused_by_critic,
            "checkpoints": _checkpoints(w),
            "proposals": [] if w.organisation is None else w.organisation.outcomes(),
        }


def _checkpoints(world: Any) -> list[dict[str, Any]]:
    """A world's checkpoints as a summary lists them: tick, state hash, subsystem hashes."""
    return [{"tick": c.tick, "state": c.state_hash, "hashes": c.hashes} for c in world.checkpoints]


@dataclass
class ShardedResult:
    """Totals of a sharded run."""

    shards: int
    ticks: int
    wall_seconds: float  # everything: building the shards, the ticks, settling
    tick_seconds: float  # the ticks alone (with the message exchange between them)
    settle_rounds: int
    reports: list[dict[str, Any]]  # after settling
    at_last_tick: list[dict[str, Any]]  # the same, at the end of the last tick (before settling)
    # Bytes of the messages carried between shards over the ticks (pickled, as Ray moves them);
    # counted only when run_sharded(count_bytes=True).
    bytes_exchanged: int = 0
    restarts: int = 0  # shards restarted from a barrier cut (Ray)
    closed: list[dict[str, Any]] | None = None  # each shard's Shard.close(), when recorded

    @property
    def roots(self) -> dict[int, str]:
        """Merkle root of every replica, by region."""
        return {int(r): root for rep in self.reports for r, root in rep["roots"].items()}

    @property
    def converged(self) -> bool:
        """Whether every replica holds the same state."""
        return len(set(self.roots.values())) == 1

    @property
    def credits_held(self) -> int:
        """Credits (balance + stake) of every account at its home replica, micro-credits."""
        return sum(rep["held_micro"] for rep in self.reports)

    @property
    def supply_issued(self) -> int:
        """Credits minted minus burned, as the (converged) first replica counts them."""
        return self.reports[0]["supply_issued_micro"]

    @property
    def conserved(self) -> bool:
        """Credits held equal credits issued, and every replica agrees on the supply (only known
        once the replicas have converged: False before)."""
        return (
            self.credits_held == self.supply_issued
            and len({(r["supply_held_micro"], r["supply_issued_micro"]) for r in self.reports}) == 1
        )

    @property
    def lowest_balance(self) -> int:
        """The lowest balance of any account at its home replica (never negative)."""
        return min(rep["lowest_balance_micro"] for rep in self.reports)

    @property
    def state_hash(self) -> str:
        """One hash over every shard's subsystem hashes (for determinism checks)."""
        h = hashlib.sha256()
        for rep in self.reports:
            for name in sorted(rep["hashes"]):
                h.update(f"{rep['shard']}:{name}={rep['hashes'][name]};".encode())
        return h.hexdigest()


def _route(
    outs: list[list[tuple[int, float, int, int, Message]]], n_shards: int
) -> list[list[tuple[float, Message]]]:
    inbox: list[list[tuple[int, float, int, int, Message]]] = [[] for _ in range(n_shards)]
    for out in outs:
        for item in out:
            inbox[item[0]].append(item)
    return [
        [(arrives, msg) for _, arrives, _, _, msg in sorted(box, key=lambda x: (x[1], x[2], x[3]))]
        for box in inbox
    ]


class ShardDown(RuntimeError):
    """A shard that stayed down: its actor died or stopped answering more often than the run
    restarts it."""


class _Lost(Exception):
    """A call to the shards failed: the first shard that did not answer, and why."""

    def __init__(self, shard: int, why: str) -> None:
        super().__init__(f"shard {shard}: {why}")
        self.shard, self.why = shard, why


def _first_down(ray: Any, refs: list[Any]) -> int:
    """The index of the first call in ``refs`` that failed, else of the first not finished."""
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=1.0)
    done = {ref.hex() for ref in ready}
    for i, ref in enumerate(refs):
        if ref.hex() in done:
            try:
                ray.get(ref, timeout=0)
            except Exception:  # noqa: BLE001 -- whatever it raised, this shard failed
                return i
    return next((i for i, ref in enumerate(refs) if ref.hex() not in done), 0)


def run_sharded(
    text: str,
    base: Path = Path("."),
    *,
    seed: int | None = None,
    until: int | None = None,
    backend: str = "ray",
    settle_rounds: int = 20,
    max_restarts: int = 3,
    shard_timeout: float = 300.0,
    on_tick: Callable[[int, list[Any]], None] | None = None,
    count_bytes: bool = False,
    out: Path | None = None,
    resume_at: int | None = None,
) -> ShardedResult:
    """Run scenario ``text`` (files it names relative to ``base``) as a sharded world of its
    ``[distributed] shards`` shards.

    ``backend="ray"``: each shard is a Ray actor (``ray.init()`` on this machine unless Ray is
    already initialised, e.g. with a cluster address). ``backend="inline"``: the shards are objects
    in this process, stepped in turn (the same results; for machines without Ray and for tests).

    On Ray, a shard that dies or takes more than ``shard_timeout`` seconds over a call has every
    shard restarted from the last barrier checkpoint (the module docstring), up to
    ``max_restarts`` times; then :class:`ShardDown`. ``on_tick(tick, shards)`` is called at each
    barrier with the actor handles (a test kills one there). ``count_bytes`` counts the bytes of
    the messages carried between shards (:attr:`ShardedResult.bytes_exchanged`). ``out``: a
    folder (on a file system every shard can write) where each shard records its logs, in
    ``shard-K/``, and at every ``checkpoint_every`` barrier each shard writes its part of the
    cut (:meth:`Shard.save_cut`); see :mod:`runtime.scale.sharded_recording`. ``resume_at``: go on
    from the cut ``out`` holds at the barrier before that tick.
    """
    scenario = parse(text, "scenario", base)
    n_shards = scenario.distributed.shards if scenario.distributed is not None else 1
    until = scenario.world.ticks if until is None else until
    where = None if out is None else str(out.resolve())
    start = time.perf_counter()
    if backend == "ray":
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "a sharded world runs on Ray actors: install the extra, pip install -e '.[ray]' "
                "(or pass backend='inline' to step the shards in this process)"
            ) from None
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        if not ray.is_initialized():
            # One CPU per shard, even on a machine with fewer cores (the shards then share them).
            ray.init(
                num_cpus=max(n_shards, os.cpu_count() or 1),
                include_dashboard=False,
                log_to_driver=False,
            )
        # A CPU per actor when the cluster has as many; else a share, so that every shard starts.
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        actor = ray.remote(num_cpus=min(1.0, cpus / n_shards))(Shard)
        shards = [
            actor.remote(text, str(base), seed, k, n_shards, None, where, until, resume_at)
            for k in range(n_shards)
        ]

        def call(method: str, args: list[tuple[Any, ...]]) -> list[Any]:
            refs = [getattr(s, method).remote(*a) for s, a in zip(shards, args, strict=True)]
            try:
                answers: list[Any] = ray.get(refs, timeout=shard_timeout)
                return answers
            except GetTimeoutError:
                raise _Lost(
                    _first_down(ray, refs), f"no answer within {shard_timeout:g} s"
                ) from None
            except RayTaskError:
                raise  # the shard's own code failed: a bug to report, not a shard to restart
            except RayError as exc:  # the actor died or cannot be reached
                raise _Lost(_first_down(ray, refs), type(exc).__name__) from None
    elif backend == "inline":
        local = [
            Shard(text, str(base), seed, k, n_shards, None, where, until, resume_at)
            for k in range(n_shards)
        ]

        def call(method: str, args: list[tuple[Any, ...]]) -> list[Any]:
            return [getattr(s, method)(*a) for s, a in zip(local, args, strict=True)]
    else:
        raise ValueError(f"backend {backend!r}: expected ray or inline")
    try:
        call("ready", [() for _ in range(n_shards)])
    except _Lost as lost:
        raise ShardDown(
            f"shard {lost.shard} of {n_shards} did not start ({lost.why}); nothing ran"
        ) from None
    ticking = time.perf_counter()
    inbox: list[list[tuple[float, Message]]] = [[] for _ in range(n_shards)]
    every = scenario.world.checkpoint_every
    # The last barrier cut: its tick, each shard's saved world (None: in the run directory's
    # files) and the messages handed to each shard there.
    cut: tuple[int, list[Any] | None, list[list[tuple[float, Message]]]] | None = None
    restarts = 0
    tick = 0
    exchanged = 0
    if resume_at is not None:
        inbox = call("take_inbox", [() for _ in range(n_shards)])
        tick = resume_at
        cut = (tick, None, inbox)  # already on disk
    while tick < until:
        try:
            due = every and tick % every == 0 and (cut is None or cut[0] != tick)
            if due and out is not None:  # in the run directory, for restarts and --resume
                call("save_cut", [(tick, box) for box in inbox])
                cut = (tick, None, inbox)
            elif due and backend == "ray":
                cut = (tick, call("save", [() for _ in range(n_shards)]), inbox)
            if on_tick is not None and backend == "ray":
                on_tick(tick, shards)
            if scenario.governance is not None:  # the stake snapshot of this barrier
                stakes = sum(call("member_stakes", [() for _ in range(n_shards)]))
                # The constitution, proved once (by shard 0) for the proposals deciding now.
                verdicts = call(
                    "verdicts_ahead", [(tick if k == 0 else None,) for k in range(n_shards)]
                )[0]
                outs = call("step", [(box, stakes, verdicts) for box in inbox])
            else:
                outs = call("step", [(box,) for box in inbox])
            if count_bytes:
                exchanged += sum(
                    len(pickle.dumps(item, protocol=5))
                    for out in outs
                    for item in out
                    if item[0] != item[2]  # leaving its shard
                )
            inbox = _route(outs, n_shards)
            tick += 1
        except _Lost as lost:
            if restarts >= max_restarts or cut is None:
                raise ShardDown(
                    f"shard {lost.shard} of {n_shards} went down at tick {tick} ({lost.why}); "
                    f"{restarts} restart(s) of {max_restarts} used, so the run stops"
                ) from None
            restarts += 1
            for handle in shards:
                ray.kill(cast(Any, handle))
            at, saved, inbox = cut
            shards = [
                actor.remote(
                    text,
                    str(base),
                    seed,
                    k,
                    n_shards,
                    None if saved is None else saved[k],
                    where,
                    until,
                    at if saved is None else None,
                )
                for k in range(n_shards)
            ]
            if saved is None:
                call("take_inbox", [() for _ in range(n_shards)])  # the same as the cut's
            tick = at
            call("ready", [() for _ in range(n_shards)])
    tick_seconds = time.perf_counter() - ticking
    at_last_tick = call("report", [() for _ in range(n_shards)])
    rounds = 0
    for rounds in range(1, settle_rounds + 1):
        # An anti-entropy round every other settling tick, messages carried in between.
        inbox = _route(call("settle", [(box, rounds % 2 == 1) for box in inbox]), n_shards)
        reports = call("report", [() for _ in range(n_shards)])
        if len({root for rep in reports for root in rep["roots"].values()}) == 1:
            # every replica holds the same state: whatever is still in flight is already applied
            break
    reports = call("report", [() for _ in range(n_shards)])
    closed = call("close", [() for _ in range(n_shards)]) if out is not None else None
    if backend == "ray":
        for shard in shards:
            ray.kill(cast(Any, shard))  # an actor handle (ray types the list by its class)
    return ShardedResult(
        n_shards,
        until,
        time.perf_counter() - start,
        tick_seconds,
        rounds,
        reports,
        at_last_tick,
        exchanged,
        restarts,
        closed,
    )
