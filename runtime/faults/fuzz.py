"""``agora fuzz``: a seeded fault swarm over whole worlds, checking the ledger's promises each tick.

Each seed draws a whole scenario (:func:`draw_scenario`): regions and links with latencies; a
lossy, duplicating, jittery bus; populations of every role with drawn counts and parameters;
sometimes coordination and governance; and a fault schedule of crashes, restarts, degradations,
partitions of drawn groups, heals, loss bursts and byzantine traffic
(:mod:`runtime.faults.byzantine`),
all of which end before the last third of the run. The scenario is written as TOML and parsed
with :func:`runtime.kernel.scenario.parse`, so it is a scenario file like any other, and run in a
:class:`~runtime.kernel.world.World`. After every tick (:func:`check_world`):

* **conservation**: at every replica, held (balances plus stakes) == issued (minted - burned +
  refunded), as :meth:`Replica.supply` reports them;
* **non-negative**: no balance, stake or spending right below zero at any replica;
* **applied once**: every counter a replica shows of another replica's (its owner's) is at most
  the owner's own, and so is its clock entry of that origin: an op applied twice, a replay or an
  altered resend taken, would show a counter past its owner's;
* **byzantine refused**: every ``byzantine`` item is matched by its refusal event before the end
  of the tick after it (:class:`runtime.faults.byzantine.Audit`).

Then liveness: once the run is over (every fault healed for the last third of it),
:meth:`World.settle` must bring every replica to one Merkle root within K = 12 anti-entropy
rounds (:data:`SETTLE_ROUNDS_MAX`). A failing seed writes its scenario file,
which reproduces the failure with ``agora run`` (the byzantine traffic is part of it), and the
violation beside it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import tomli_w
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from economy.ledger import Replica
from economy.ops import OpKind
from runtime.faults.byzantine import ARMED_TICKS, REFUSALS, Audit
from runtime.kernel.scenario import ATTACKS, parse
from runtime.kernel.world import SettleOutcome, World

SETTLE_ROUNDS_MAX = 12
"""K: anti-entropy rounds :meth:`World.settle` may take after the last tick before a seed fails
liveness (each round, every replica asks every other for what it lacks)."""

SIZES: dict[str, dict[str, tuple[int, int]]] = {
    # (low, high) inclusive ranges drawn per seed
    "small": {
        "ticks": (20, 40),
        "requester": (4, 24),
        "worker": (2, 10),
        "healer": (1, 2),
        "critic": (1, 2),
        "world_model": (1, 1),
        "refactor": (1, 2),
        "negotiator": (2, 6),
        "modules": (4, 12),
        "faults": (2, 6),
        "byzantine": (1, 3),
        "items": (1, 12),
    },
    "medium": {
        "ticks": (60, 120),
        "requester": (40, 300),
        "worker": (10, 80),
        "healer": (1, 4),
        "critic": (1, 3),
        "world_model": (1, 2),
        "refactor": (2, 6),
        "negotiator": (4, 30),
        "modules": (8, 40),
        "faults": (4, 12),
        "byzantine": (2, 5),
        "items": (4, 40),
    },
}
"""What a seed draws from at each ``--size``: ticks, agents per role, refactor modules, faults
besides byzantine ones, byzantine faults, items per byzantine fault."""

FAULT_KINDS = ("crash", "restart", "degrade", "partition", "heal", "loss_burst")
_FAULT_WEIGHTS = np.array([3.0, 1.0, 2.0, 3.0, 1.0, 2.0]) / 12.0
REGION_NAMES = ("eu", "us", "ap", "sa", "af")
_CHECKED_EVENTS = frozenset({"byzantine", *REFUSALS})


# ---------------------------------------------------------------------- drawing a scenario
def _rng(seed: int) -> np.random.Generator:
    """The scenario's own stream: Philox from the seed's SeedSequence, apart from the world's."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(seed, spawn_key=(0xF022,))))


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), 3)


def _count(rng: np.random.Generator, size: str, key: str) -> int:
    low, high = SIZES[size][key]
    return int(rng.integers(low, high + 1))


def draw_scenario(seed: int, size: str) -> str:
    """The scenario file (TOML text) that ``seed`` draws at ``size`` (a key of :data:`SIZES`)."""
    if size not in SIZES:
        raise ValueError(f"size {size!r}: expected one of {', '.join(SIZES)}")
    rng = _rng(seed)
    ticks = _count(rng, size, "ticks")
    regions = list(REGION_NAMES[: int(rng.integers(1, 6))])
    data: dict[str, Any] = {
        # One checkpoint, at the end: hashing the world is not what the swarm checks.
        "world": {
            "name": f"fuzz-{size}-{seed}",
            "seed": seed,
            "ticks": ticks,
            "checkpoint_every": ticks,
        },
        "network": _network(rng, regions),
        "bus": {
            "loss": _uniform(rng, 0.0, 0.1),
            "duplication": _uniform(rng, 0.0, 0.1),
            "jitter": _uniform(rng, 0.0, 0.5),
        },
        "economy": {
            "anti_entropy_every": int(rng.integers(1, 7)),
            "price_elasticity": _uniform(rng, 0.1, 1.0),
            "n_skills": int(rng.integers(2, 9)),
        },
        "population": _populations(rng, size),
    }
    data["fault"] = _faults(rng, size, ticks, regions, [p["name"] for p in data["population"]])
    if rng.random() < 0.3:
        data["coordination"] = _coordination(rng)
    if rng.random() < 0.3:
        negotiators = next(p["count"] for p in data["population"] if p["role"] == "negotiator")
        data.update(_governance(rng, ticks, negotiators))
    text = tomli_w.dumps(data)
    assert parse(text).world.seed == seed  # a drawn scenario is always a valid one
    return text


def _network(rng: np.random.Generator, regions: list[str]) -> dict[str, Any]:
    pairs = [(a, b) for i, a in enumerate(regions) for b in regions[i + 1 :]]
    links = [
        {"a": a, "b": b, "latency": _uniform(rng, 0.01, 0.4)}
        for a, b in pairs
        if rng.random() < 0.6
    ]
    return {"regions": regions, "links": links, "default_latency": _uniform(rng, 0.05, 0.5)}


def _populations(rng: np.random.Generator, size: str) -> list[dict[str, Any]]:
    def core() -> str:
        return "learned" if rng.random() < 0.7 else "baseline"

    req: dict[str, Any] = {
        "name": "requesters",
        "role": "requester",
        "count": _count(rng, size, "requester"),
        "initial_credits": int(rng.integers(5, 101)),
        "post_rate": _uniform(rng, 0.05, 0.6),
        "task_units": int(rng.integers(1, 5)),
    }
    if rng.random() < 0.4:
        req.update(forecasts_from="forecasters", forecast_fee=_uniform(rng, 0.001, 0.01))
    return [
        req,
        {
            "name": "workers",
            "role": "worker",
            "count": _count(rng, size, "worker"),
            "quality": _uniform(rng, 0.5, 1.0),
            "capacity_factor": _uniform(rng, 0.8, 2.0),
            "stake": int(rng.integers(0, 11)),
            "cheat_fraction": _uniform(rng, 0.0, 0.3),
            "cheat_probability": _uniform(rng, 0.0, 1.0),
        },
        {
            "name": "healers",
            "role": "healer",
            "count": _count(rng, size, "healer"),
            "watches": "workers",
            "core": core(),
            "z_threshold": _uniform(rng, 1.5, 4.0),
            "ewma_alpha": _uniform(rng, 0.1, 0.6),
            "confirm_ticks": int(rng.integers(1, 4)),
            "restart_ticks": int(rng.integers(1, 5)),
        },
        {
            "name": "critics",
            "role": "critic",
            "count": _count(rng, size, "critic"),
            "watches": "workers",
            "core": core(),
            "check_budget": _uniform(rng, 0.05, 0.5),
            "review_ledger": bool(rng.random() < 0.5),
            "check_accuracy": _uniform(rng, 0.8, 1.0),
        },
        {
            "name": "forecasters",
            "role": "world_model",
            "count": _count(rng, size, "world_model"),
            "core": core(),
            "horizon": int(rng.integers(1, 6)),
        },
        {
            "name": "refactorers",
            "role": "refactor",
            "count": _count(rng, size, "refactor"),
            "core": core(),
            "modules": _count(rng, size, "modules"),
            "initial_credits": int(rng.integers(50, 1001)),
        },
        {
            "name": "negotiators",
            "role": "negotiator",
            "count": _count(rng, size, "negotiator"),
            "core": core(),
            "initial_credits": int(rng.integers(100, 1001)),
        },
    ]


def _faults(
    rng: np.random.Generator, size: str, ticks: int, regions: list[str], populations: list[str]
) -> list[dict[str, Any]]:
    """A schedule whose every fault has ended by ``horizon``, two thirds into the run."""
    horizon = (2 * ticks) // 3
    faults = []
    for _ in range(_count(rng, size, "faults")):
        kind = str(rng.choice(FAULT_KINDS, p=_FAULT_WEIGHTS))
        if kind == "partition" and len(regions) < 2:
            kind = "loss_burst"
        at = int(rng.integers(0, horizon))
        fault: dict[str, Any] = {"at": at, "kind": kind}
        if kind in ("crash", "restart", "degrade"):
            fault.update(population=str(rng.choice(populations)), fraction=_uniform(rng, 0.1, 1.0))
        if kind == "degrade":
            fault["severity"] = _uniform(rng, 0.2, 1.0)
        if kind == "partition":
            fault["groups"] = _groups(rng, regions)
        if kind == "loss_burst":
            fault["loss"] = _uniform(rng, 0.2, 0.9)
        if kind not in ("restart", "heal"):  # those two end a fault; the rest are undone in time
            fault["duration"] = int(rng.integers(1, horizon - at + 1))
        faults.append(fault)
    for _ in range(_count(rng, size, "byzantine")):
        # Armed replays may fire up to ARMED_TICKS later: they too end before the horizon.
        at = int(rng.integers(1, max(2, horizon - ARMED_TICKS)))
        attacks = (
            list(ATTACKS)
            if rng.random() < 0.5
            else sorted(
                rng.choice(ATTACKS, size=int(rng.integers(1, len(ATTACKS) + 1)), replace=False)
            )
        )
        faults.append(
            {
                "at": at,
                "kind": "byzantine",
                "count": _count(rng, size, "items"),
                "attacks": [str(a) for a in attacks],
            }
        )
    faults.sort(key=lambda f: (f["at"], f["kind"]))
    assert all(f["at"] + f.get("duration", 0) <= horizon for f in faults)
    return faults


def _groups(rng: np.random.Generator, regions: list[str]) -> list[list[str]]:
    """Regions dealt into two or three non-empty groups."""
    n_groups = int(rng.integers(2, min(len(regions), 3) + 1))
    order = [str(r) for r in rng.permutation(regions)]
    return [order[g::n_groups] for g in range(n_groups)]


def _coordination(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "coupling": _uniform(rng, 0.0, 6.0),
        "frequency_spread": _uniform(rng, 0.05, 1.0),
        "steps_per_tick": int(rng.integers(2, 9)),
        "graph_every": int(rng.integers(2, 11)),
        "tension_every": int(rng.integers(5, 21)),
        "sync_threshold": _uniform(rng, 0.5, 0.95),
        "close_votes_on_sync": bool(rng.random() < 0.3),
    }


def _governance(rng: np.random.Generator, ticks: int, members: int) -> dict[str, Any]:
    gov = {
        "members": "negotiators",
        "member_stake": int(rng.integers(1, 11)),
        "quorum": _uniform(rng, 0.2, 0.7),
        "threshold": _uniform(rng, 0.3, 0.7),
        "voting_period": int(rng.integers(2, 6)),
        "timelock": int(rng.integers(0, 3)),
        "stake_exponent": _uniform(rng, 0.5, 1.0),
        "fee_rate": _uniform(rng, 0.0, 0.1),
        "slash_fraction": _uniform(rng, 0.0, 0.3),
        "constitution": {"fee_rate": {"max": 0.2}},
    }
    proposals = []
    for _ in range(int(rng.integers(0, 3))):
        at, proposer = int(rng.integers(1, ticks)), int(rng.integers(members))
        if rng.random() < 0.7:
            key = "fee_rate" if rng.random() < 0.5 else "slash_fraction"
            proposals.append(
                {
                    "at": at,
                    "proposer": proposer,
                    "kind": "params",
                    "changes": {key: _uniform(rng, 0.0, 0.3)},
                    "support": _uniform(rng, 0.2, 0.9),
                }
            )
        else:
            proposals.append(
                {
                    "at": at,
                    "proposer": proposer,
                    "kind": "treasury",
                    "target": int(rng.integers(members)),
                    "credits": int(rng.integers(1, 6)),
                }
            )
    return {"governance": gov, "proposal": proposals}


# ---------------------------------------------------------------------- checking a world
class EventSink:
    """An in-memory stand-in for a world's event log that hands byzantine items and refusals to
    an :class:`~runtime.faults.byzantine.Audit` and drops every other event (a fuzzed world records
    nothing to disk)."""

    def __init__(self, audit: Audit) -> None:
        self.audit = audit
        self.seq = 0

    def emit(
        self,
        tick: int,
        time_: float,
        kind: str,
        subsystem: str,
        agent: int = -1,
        other: int = -1,
        amount: int = 0,
        value: float = 0.0,
        detail: str = "",
    ) -> None:
        """Take one event (the signature of :meth:`runtime.record.recorder.EventLog.emit`)."""
        self.seq += 1
        if kind in _CHECKED_EVENTS:
            self.audit.observe(tick, kind, subsystem, int(agent), int(other), int(amount), detail)

    def emit_many(
        self,
        tick: int,
        time_: float,
        kind: str,
        subsystem: str,
        agent: npt.NDArray[np.int64],
        other: npt.NDArray[np.int64],
        amount: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        detail: str = "",
    ) -> None:
        """Take ``len(agent)`` events of one kind (the signature of
        :meth:`runtime.record.recorder.EventLog.emit_many`)."""
        self.seq += len(agent)
        if kind in _CHECKED_EVENTS:
            for a, o, x in zip(agent.tolist(), other.tolist(), amount.tolist(), strict=True):
                self.audit.observe(tick, kind, subsystem, int(a), int(o), int(x), detail)

    def end_tick(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass(frozen=True)
class Violation:
    """A broken promise: at the end of ``tick``, ``invariant`` failed at ``replica`` (-1: the
    world as a whole) for ``account`` (-1: no one account); ``detail`` says how."""

    tick: int
    invariant: str
    replica: int
    account: int
    detail: str

    def describe(self) -> str:
        """One line naming where and how."""
        where = "" if self.replica < 0 else f" at replica {self.replica}"
        who = "" if self.account < 0 else f", account {self.account}"
        return f"tick {self.tick}: {self.invariant}{where}{who}: {self.detail}"


def _side_dense(ledger: Replica) -> npt.NDArray[np.int64]:
    """The side table as int64[n_accounts, 3R] (zeros for accounts without a row)."""
    dense = np.zeros((ledger.n_accounts, ledger.side_vals.shape[1]), dtype=np.int64)
    dense[ledger.side_keys] = ledger.side_vals
    return dense


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def check_replica(ledger: Replica) -> tuple[str, int, str] | None:
    """Conservation and non-negativity in one replica's view: ``(invariant, account, detail)``
    of the first failure, or None."""
    try:
        held, issued = ledger.supply()
    except AssertionError as exc:
        return "conservation", -1, f"the held sum left int64 ({exc})"
    if held != issued:
        return "conservation", -1, f"held {held} != issued {issued} micro-credits"
    for name, values in (
        ("balance", ledger.balances()),
        ("stake", ledger.staked()),
        ("spending rights", ledger.rights()),
    ):
        low = np.asarray(values) < 0
        if low.any():
            a = _first(low)
            return "non_negative", a, f"{name} {int(np.asarray(values)[a])} micro-credits"
    return None


def check_owned(
    viewer: Replica, owner: Replica, sides: dict[int, npt.NDArray[np.int64]]
) -> tuple[int, str] | None:
    """Whether ``viewer`` shows any counter that ``owner`` writes above ``owner``'s own value
    (the sign of an op applied twice): ``(account, detail)`` of the first, or None. ``sides``:
    :func:`_side_dense` of both, by replica id."""
    n_regions, o = owner.n_replicas, owner.id
    if viewer.clock[o] > owner.clock[o]:
        return -1, f"clock of origin {o} is {int(viewer.clock[o])}; it made {int(owner.clock[o])}"
    if (viewer.totals[o] > owner.totals[o]).any():
        return (
            -1,
            f"totals of origin {o} {viewer.totals[o].tolist()} exceed its own "
            f"{owner.totals[o].tolist()}",
        )
    home = np.arange(viewer.n_accounts) % n_regions == o
    cols = [o, n_regions + o]
    over = (viewer.cells[:, cols] > owner.cells[:, cols]).any(axis=1)
    over |= home & (viewer.cells[:, 2 * n_regions :] > owner.cells[:, 2 * n_regions :]).any(axis=1)
    mine, theirs = sides[viewer.id], sides[o]
    side_cols = [o, 2 * n_regions + o]  # spent_n and returned of origin o
    over |= (mine[:, side_cols] > theirs[:, side_cols]).any(axis=1)
    over |= home & (mine[:, n_regions : 2 * n_regions] > theirs[:, n_regions : 2 * n_regions]).any(
        axis=1
    )  # lent, by the home
    if over.any():
        a = _first(over)
        return (
            a,
            f"a counter origin {o} owns is {viewer.counters(a)} here, above its own "
            f"{owner.counters(a)}",
        )
    return None


def check_world(world: World, audit: Audit, tick: int) -> Violation | None:
    """Every per-tick invariant of the module docstring, at the end of ``tick``; the first
    failure, or None."""
    ledgers = world.local_ledgers
    for ledger in ledgers:
        found = check_replica(ledger)
        if found is not None:
            return Violation(tick, found[0], ledger.id, found[1], found[2])
    sides = {ledger.id: _side_dense(ledger) for ledger in ledgers}
    for viewer in ledgers:
        for owner in ledgers:
            if viewer is not owner:
                owned = check_owned(viewer, owner, sides)
                if owned is not None:
                    return Violation(tick, "applied_once", viewer.id, owned[0], owned[1])
    late = audit.overdue(tick)
    if late:
        item = late[0]
        return Violation(
            tick,
            "byzantine_refused",
            item.replica,
            item.account,
            f"no refusal recorded for {item.describe()}",
        )
    return None


# ---------------------------------------------------------------------- running seeds
@dataclass
class SeedResult:
    """What one seed did: ``ticks`` run, ``faults`` by kind, byzantine items ``injected`` and
    ``refused`` by attack, ``settle_rounds`` taken, ``wall_s`` seconds, and its ``violation``
    (None when every check held)."""

    seed: int
    ticks: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    settle_rounds: int = 0
    wall_s: float = 0.0
    violation: Violation | None = None


class _Stop(Exception):
    """Raised from the tick callback to end a run at its first violation."""


def check_scenario(text: str, seed: int, label: str = "<fuzz>") -> SeedResult:
    """Parse and run scenario ``text`` with every check of the module docstring; return what
    happened (``seed`` only names the result: the file's own seed drives the world)."""
    start = time.perf_counter()
    scenario = parse(text, label)
    result = SeedResult(seed)
    for f in scenario.fault:
        result.faults[f.kind] = result.faults.get(f.kind, 0) + 1
    audit = Audit()
    world = World(scenario)
    world.log = EventSink(audit)  # type: ignore[assignment]  # duck-typed: keeps what is checked

    def after(tick: int) -> None:
        # ``tick`` ticks have run: the state is that of the end of tick ``tick - 1``.
        result.ticks = tick
        found = check_world(world, audit, tick - 1)
        if found is not None:
            result.violation = found
            raise _Stop

    try:
        world.run(progress=after)
        settled = world.settle(SETTLE_ROUNDS_MAX)
        result.settle_rounds = int(settled["rounds"])
        result.violation = _final(world, audit, settled)
    except _Stop:
        pass
    except Exception as exc:  # a world that raises is a failure to report
        result.violation = Violation(
            world.tick, "world_raised", -1, -1, f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        )
    result.injected, result.refused = dict(audit.injected), dict(audit.refused)
    result.wall_s = time.perf_counter() - start
    return result


def _final(world: World, audit: Audit, settled: SettleOutcome) -> Violation | None:
    """The checks after the settle phase: one root, the per-tick invariants, nothing unrefused."""
    tick = world.tick - 1
    if not settled["converged"]:
        return Violation(
            tick,
            "liveness",
            -1,
            -1,
            f"{settled['distinct_roots']} distinct ledger roots after "
            f"{SETTLE_ROUNDS_MAX} settle rounds (K = {SETTLE_ROUNDS_MAX})",
        )
    found = check_world(world, audit, tick)
    if found is None and audit.unresolved():
        item = audit.unresolved()[0]
        found = Violation(
            tick,
            "byzantine_refused",
            item.replica,
            item.account,
            f"no refusal recorded for {item.describe()}",
        )
    return found


def run_seed(seed: int, size: str) -> tuple[SeedResult, str]:
    """Draw ``seed``'s scenario at ``size``, run and check it; return the result and the text."""
    text = draw_scenario(seed, size)
    return check_scenario(text, seed, f"fuzz seed {seed}"), text


# ---------------------------------------------------------------------- the negative control
_ESCROWED = frozenset({OpKind.SPEND, OpKind.TRANSFER, OpKind.BURN, OpKind.STAKE})


def _skip_escrow() -> Callable[[], None]:
    """Plant a bug: a replica applies its own spends, transfers, burns and stakes without
    checking the rights it holds. Returns the function that removes it."""
    original = Replica._apply

    def unchecked(
        self: Replica,
        kind: OpKind,
        origin: int,
        acc: npt.NDArray[np.int64],
        oth: npt.NDArray[np.int64],
        amt: npt.NDArray[np.int64],
        check: bool,
    ) -> npt.NDArray[np.int8]:
        return original(self, kind, origin, acc, oth, amt, check and kind not in _ESCROWED)

    # The ledger's own apply, swapped for the duration of a check: mypy refuses assignments to
    # methods, and this one is on purpose.
    Replica._apply = unchecked  # type: ignore[method-assign]  # see the comment above

    def remove() -> None:
        Replica._apply = original  # type: ignore[method-assign]  # the swap above, undone

    return remove


PLANTS: dict[str, Callable[[], Callable[[], None]]] = {"skip-escrow": _skip_escrow}
"""Bugs ``--plant`` can put in for the length of a fuzz run, to show the swarm finds them."""


@contextlib.contextmanager
def planted(name: str | None) -> Iterator[None]:
    """Run the body with the bug ``name`` of :data:`PLANTS` in place (None: no bug)."""
    if name is None:
        yield
        return
    if name not in PLANTS:
        raise ValueError(f"plant {name!r}: expected one of {', '.join(PLANTS)}")
    remove = PLANTS[name]()
    try:
        yield
    finally:
        remove()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run numba's parallel kernels on the calling thread. Small worlds gain nothing from more,
    and on a busy machine each parallel region waits for a thread the scheduler put aside; the
    kernels sum in a fixed order, so the results are the same bits at any thread count."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def fuzz(
    seeds: int,
    start: int = 0,
    size: str = "small",
    plant: str | None = None,
    on_seed: Callable[[SeedResult, str], None] | None = None,
) -> list[SeedResult]:
    """Run seeds ``start .. start + seeds - 1`` at ``size`` (with bug ``plant`` in place); call
    ``on_seed(result, scenario_text)`` after each; return the results in seed order."""
    assert seeds >= 1 and start >= 0 and size in SIZES
    results = []
    with planted(plant), _one_thread():
        for seed in range(start, start + seeds):
            result, text = run_seed(seed, size)
            results.append(result)
            if on_seed is not None:
                on_seed(result, text)
    return results


def write_failure(out: Path, result: SeedResult, text: str, command: str) -> Path:
    """Write a failing seed's scenario file ``OUT/seed-S.toml`` (headed by comments saying what
    failed and how to see it again) and ``OUT/seed-S.json`` (the violation); return the file."""
    assert result.violation is not None
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"seed-{result.seed}.toml"
    head = [
        f"# agora fuzz: seed {result.seed} failed {result.violation.describe()}",
        f"# reproduce: {command}",
        f"# or run this file: agora run {path}",
    ]
    path.write_text("\n".join(line.replace("\n", " ") for line in head) + "\n" + text)
    record = {
        "seed": result.seed,
        "command": command,
        "scenario": str(path),
        **asdict(result.violation),
    }
    (out / f"seed-{result.seed}.json").write_text(json.dumps(record, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------- the command
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_out = Console(highlight=False, soft_wrap=True)


def reproduce_command(seed: int, size: str, plant: str | None) -> str:
    """The one command that runs ``seed`` again as the swarm ran it."""
    return f"agora fuzz --seeds 1 --start {seed} --size {size}" + (
        f" --plant {plant}" if plant else ""
    )


def _argument_problems(
    seeds: int, start: int, size: str, out: Path, plant: str | None
) -> list[str]:
    problems = []
    if seeds < 1:
        problems.append(f"--seeds {seeds}: expected a number of seeds >= 1, e.g. --seeds 200")
    if start < 0:
        problems.append(f"--start {start}: expected the first seed, >= 0")
    if size not in SIZES:
        problems.append(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    if out.exists() and not out.is_dir():
        problems.append(f"--out {out}: exists and is not a folder; name a folder")
    if plant is not None and plant not in PLANTS:
        problems.append(f"--plant {plant!r}: expected one of {', '.join(PLANTS)}")
    return problems


class _Tally:
    """Totals over the seeds run, for the summary table."""

    def __init__(self) -> None:
        self.seeds = self.ticks = 0
        self.faults: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.rounds: list[int] = []
        self.failed: list[SeedResult] = []
        self.wall_s = 0.0

    def add(self, r: SeedResult) -> None:
        """Count one seed's result."""
        self.seeds += 1
        self.ticks += r.ticks
        self.wall_s += r.wall_s
        for total, part in (
            (self.faults, r.faults),
            (self.injected, r.injected),
            (self.refused, r.refused),
        ):
            for key, n in part.items():
                total[key] = total.get(key, 0) + n
        self.rounds.append(r.settle_rounds)
        if r.violation is not None:
            self.failed.append(r)


def _by_key(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {counts[k]:,}" for k in sorted(counts)) or "none"


def _table(t: _Tally, start: int, size: str, wall_s: float, plant: str | None) -> Table:
    title = f"agora fuzz: seeds {start}..{start + t.seeds - 1}, size {size}" + (
        f", planted bug {plant}" if plant else ""
    )
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    injected, refused = sum(t.injected.values()), sum(t.refused.values())
    rows = [
        ("seeds run", f"{t.seeds:,}"),
        ("ticks", f"{t.ticks:,}"),
        ("wall time", f"{wall_s:.1f} s ({t.wall_s / max(t.seeds, 1):.3f} s per seed)"),
        ("faults injected", f"{sum(t.faults.values()):,}: {_by_key(t.faults)}"),
        ("byzantine items", f"{injected:,} injected, {refused:,} refused"),
        ("  injected by attack", _by_key(t.injected)),
        ("  refused by attack", _by_key(t.refused)),
        (
            "settle rounds",
            f"max {max(t.rounds, default=0)}, mean "
            f"{float(np.mean(t.rounds)) if t.rounds else 0.0:.2f} "
            f"(limit K = {SETTLE_ROUNDS_MAX})",
        ),
        ("violations", f"{len(t.failed)}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _reporter(
    seeds: int, out: Path, size: str, plant: str | None, tally: _Tally, bar: Progress | None
) -> Callable[[SeedResult, str], None]:
    """The per-seed callback: count, write and name failures, and show progress on stderr (the
    bar on a terminal; elsewhere, for runs of 100 seeds or more, a line every tenth of them)."""
    every = max(1, seeds // 10) if seeds >= 100 and bar is None else 0
    task = bar.add_task("fuzz", total=seeds) if bar is not None else None
    began = time.perf_counter()

    def report(result: SeedResult, text: str) -> None:
        tally.add(result)
        if result.violation is not None:
            command = reproduce_command(result.seed, size, plant)
            path = write_failure(out, result, text, command)
            _err.print(f"seed {result.seed}: {result.violation.describe()}", markup=False)
            _err.print(f"  reproduce: {command}", markup=False)
            _err.print(f"  scenario:  {path} (agora run {path})", markup=False)
        if bar is not None and task is not None:
            bar.update(task, advance=1)
        elif every and tally.seeds % every == 0:
            _err.print(
                f"fuzz: {tally.seeds:,}/{seeds:,} seeds, {len(tally.failed)} violations, "
                f"{time.perf_counter() - began:.0f} s",
                markup=False,
            )

    return report
