"""Byzantine traffic: forged, replayed and altered ledger messages, and local batches that the
ledger must refuse.

A scenario's ``[[fault]] kind = "byzantine"`` makes ``count`` items at its tick (:func:`inject`),
each of one attack drawn uniformly from its ``attacks`` with the world's stream ``faults/<index>``:

===============  ==========================================================  ===================
attack           what is injected                                            refused by
===============  ==========================================================  ===================
forged_tag       a mint claiming a replica's next op, tagged with a key of    the tag check
                 no replica, random bytes, or a cut tag
replayed         the next real op seen delivered to a replica, sent to it     ``(origin, seq)``
                 again byte for byte                                          ids: a duplicate
mutated_resend   the next real op seen delivered, one entry's amount or       the tag check
                 account altered, its original tag, sent to a replica that has not applied it yet
                 (the one that has, if none)
unknown_account  an op tagged with its origin's real key (a replica that      the range check
                 lies) whose account or transfer destination is outside ``[0, n_accounts)``
huge_amount      such an op with an amount past ``MAX_AMOUNT`` up to the      the amount check
                 int64 limit; or the same amount in a local mint or transfer through
                 :meth:`World.execute`
forged_delta     a sync delta: a real one with a counter raised under its     the delta checks
                 original tag, one tagged with a foreign key, one signed by its source with a
                 counter past ``counter_max``, or one claiming the receiver's own id
overdraft        a local spend, transfer, burn or stake through               the rights check
                 :meth:`World.execute` of more than the account's rights      (or a critic)
                 at that replica
over_bound       an op tagged with its origin's real key at the receiver's    the counter bound
                 next seq of it, whose mints to one account sum past          (whole op)
                 ``counter_max``
===============  ==========================================================  ===================

Messages go on the bus on the world's own topics (``op``, ``sync_delta``), so the world's own
handlers meet them. The attacker sits in the target replica's region: its messages arrive at
once (no latency, loss or partition), and since real gossip never goes to its own region,
``src == dst`` marks injected traffic. Replays and altered resends need real ops: the fault arms
them, and the next real ops delivered (within :data:`ARMED_TICKS` ticks) are captured and sent.

Every item is recorded as one ``byzantine`` event (detail ``"<attack> <ref>"``, ref ``op o:s``,
``delta s@v`` or ``local <kind>``) before it is sent or run, and every refusal as the world
records refusals: ``op_rejected``, ``delta_rejected``, ``op_refused``, and ``op_duplicate`` for an
injected op that a replica already held and that changed nothing. :class:`Audit` pairs them.
A ledger batch that the ledger refuses whole by raising (a structural fault: an amount past
``MAX_AMOUNT``) is recorded here as ``op_refused`` with the ledger's reason.

The counter bound is met by ``over_bound`` ops, not by local batches: a local batch is checked
entry by entry, so entries of at most ``MAX_AMOUNT`` would apply until the bound and only the rest
be refused, while an op from another replica applies whole or not at all. An ``over_bound`` item
that no replica can take at once (a world of one replica, or every replica waiting on ops) is
made as an ``overdraft`` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from economy.errors import LedgerError
from economy.ledger import MAX_AMOUNT
from economy.ops import Keyring, Op, OpKind
from runtime.kernel.bus import Delivery, Message
from runtime.kernel.rng import Stream

if TYPE_CHECKING:  # the world calls in here; importing it at run time would be a cycle
    from runtime.kernel.scenario import FaultConfig
    from runtime.kernel.world import World

INT64_MAX = int(np.iinfo(np.int64).max)
SEQ_FAR = 1 << 40
"""Seqs of injected ops that must fail a check before their turn: far past any real op's seq, so
their ids never meet a real op's (ids ``SEQ_FAR + 1000 * fault + item``)."""
ARMED_TICKS = 2
"""Ticks an armed replay or resend waits for a real op to capture before it lapses."""
ARMED_MAX = 1024
"""Most replays and resends armed at once; more are not armed (and not injected)."""

REFUSALS = ("op_rejected", "delta_rejected", "op_refused", "op_duplicate")
"""Event kinds that record a refusal (or, ``op_duplicate``, a copy that changed nothing)."""

_ACCEPTS: dict[str, frozenset[str]] = {
    "replayed": frozenset({"op_duplicate", "op_rejected"}),
    # an op at the next seq whose real twin arrived first is a duplicate, which changes nothing
    "over_bound": frozenset({"op_rejected", "op_duplicate"}),
    "forged_delta": frozenset({"delta_rejected"}),
}


# ---------------------------------------------------------------------- injection
def inject(world: World, index: int, fault: FaultConfig) -> None:
    """Make fault ``index``'s ``fault.count`` items at the current tick (module docstring)."""
    assert fault.kind == "byzantine" and fault.count >= 1 and fault.attacks
    attacker = _Attacker(world, index, world.streams(f"faults/{index}"))
    tap = install_tap(world)
    world.emit(
        "fault",
        "ledger",
        amount=fault.count,
        value=float(index),
        detail=f"byzantine {fault.count} items of {', '.join(fault.attacks)}",
    )
    for item in range(fault.count):
        attack = fault.attacks[int(attacker.rng.integers(len(fault.attacks)))]
        if attack in ("replayed", "mutated_resend"):
            tap.arm(index, attack, world.tick)
        else:
            _MAKERS[attack](attacker, item)


@dataclass
class _Attacker:
    """What one fault's items are made with: the world, the fault's stream, and keys."""

    world: World
    index: int
    rng: Stream
    foreign: Keyring = field(init=False)

    def __post_init__(self) -> None:
        # Keys no replica holds: a tag under them verifies nowhere.
        self.foreign = Keyring.derive(
            self.world.network.n_regions, f"byzantine/{self.world.seed}/{self.index}".encode()
        )

    @property
    def keys(self) -> Keyring:
        """The replicas' own keyring (an insider's: it can tag as any replica)."""
        keyring = self.world.local_ledgers[0].keyring
        assert keyring is not None, "a running world's replicas hold their keyring"
        return keyring

    def target(self) -> int:
        """A replica of this world, drawn."""
        local = self.world.local_regions
        return int(local[int(self.rng.integers(len(local)))])

    def pair(self) -> tuple[int, int]:
        """A target replica and another replica (the target itself when it is alone)."""
        dst, n_regions = self.target(), self.world.network.n_regions
        if n_regions == 1:
            return dst, dst
        return dst, int((dst + 1 + self.rng.integers(n_regions - 1)) % n_regions)

    def account(self) -> int:
        """An account of the world (an agent or the treasury), drawn."""
        return int(self.rng.integers(self.world.n_accounts))

    def far_seq(self, item: int) -> int:
        """A seq no real op will reach, unique to this fault's ``item``."""
        assert 0 <= item < 1000
        return SEQ_FAR + 1000 * self.index + item


def _one(value: int) -> npt.NDArray[np.int64]:
    return np.array([value], dtype=np.int64)


def send(
    world: World,
    dst: int,
    topic: str,
    payload: Op | object,
    attack: str,
    ref: str,
    agent: int = -1,
    other: int = -1,
    amount: int = 0,
) -> None:
    """Record one ``byzantine`` item and put it on the bus to replica ``dst`` from its own region
    (it arrives at once; nothing between the attacker and the replica loses or blocks it)."""
    assert topic in ("op", "sync_delta") and dst in world.local_regions
    world.emit("byzantine", f"ledger/{dst}", agent, other, amount, detail=f"{attack} {ref}")
    msg = Message(dst, dst, topic, payload, float(world.env.now))
    world.env.timeout(0).callbacks.append(Delivery(world.bus, msg))


def _forged_tag(a: _Attacker, item: int) -> None:
    dst, origin = a.pair()
    seq = int(a.world.ledgers[dst].clock[origin]) + 1  # the op the target would apply next
    account, amount = a.account(), int(a.rng.integers(1, 10**9))
    op = Op(
        origin,
        seq,
        OpKind.MINT,
        _one(account),
        _one(0),
        _one(amount),
        a.world.ledgers[dst].clock.copy(),
    )
    style = int(a.rng.integers(3))
    if style == 0:
        tag = a.foreign.sign(op).tag
    elif style == 1:
        tag = a.rng.bytes(32)
    else:
        tag = a.keys.sign(op).tag[:16]  # a real tag, cut short
    send(
        a.world,
        dst,
        "op",
        op.with_tag(tag),
        "forged_tag",
        f"op {op.op_id}",
        account,
        origin,
        amount,
    )


def _unknown_account(a: _Attacker, item: int) -> None:
    dst, origin = a.pair()
    n = a.world.n_accounts
    bad = [
        n + int(a.rng.integers(1000)),
        -1 - int(a.rng.integers(1000)),
        (1 << 62) + int(a.rng.integers(1000)),
    ][int(a.rng.integers(3))]
    transfer = bool(a.rng.integers(2))
    account, other = (a.account(), bad) if transfer else (bad, 0)
    kind = OpKind.TRANSFER if transfer else OpKind.MINT
    amount = int(a.rng.integers(1, 10**6))
    op = a.keys.sign(
        Op(
            origin,
            a.far_seq(item),
            kind,
            _one(account),
            _one(other),
            _one(amount),
            np.zeros(a.world.network.n_regions, dtype=np.int64),
        )
    )
    send(a.world, dst, "op", op, "unknown_account", f"op {op.op_id}", account, other, amount)


def _huge(a: _Attacker) -> int:
    if a.rng.integers(2):
        return INT64_MAX - int(a.rng.integers(1 << 20))
    return MAX_AMOUNT + 1 + int(a.rng.integers(1 << 30))


def _huge_amount(a: _Attacker, item: int) -> None:
    amount = _huge(a)
    transfer = bool(a.rng.integers(2))
    account, other = a.account(), a.account() if transfer else 0
    kind = OpKind.TRANSFER if transfer else OpKind.MINT
    if a.rng.integers(2):
        dst, origin = a.pair()
        op = a.keys.sign(
            Op(
                origin,
                a.far_seq(item),
                kind,
                _one(account),
                _one(other),
                _one(amount),
                np.zeros(a.world.network.n_regions, dtype=np.int64),
            )
        )
        send(a.world, dst, "op", op, "huge_amount", f"op {op.op_id}", account, other, amount)
        return
    _local(a, "huge_amount", a.target(), kind, account, other, amount)


def _overdraft(a: _Attacker, item: int) -> None:
    account = a.account()
    kind = [OpKind.SPEND, OpKind.TRANSFER, OpKind.BURN, OpKind.STAKE][int(a.rng.integers(4))]
    home = account % a.world.network.n_regions
    # Rights live at the home replica unless lent; a stake runs only there.
    replica = home if kind == OpKind.STAKE or a.rng.integers(2) else a.target()
    if replica not in a.world.local_regions:
        return
    rights = int(a.world.ledgers[replica].rights_of(_one(account))[0])
    beyond = 0 if a.rng.integers(2) else int(a.rng.integers(10**9))  # half at the very edge
    amount = min(MAX_AMOUNT, max(rights, 0) + 1 + beyond)
    if amount <= rights:  # an account holding MAX_AMOUNT cannot be overdrawn by one entry
        return
    other = a.account() if kind == OpKind.TRANSFER else 0
    _local(a, "overdraft", replica, kind, account, other, amount)


def _local(
    a: _Attacker, attack: str, replica: int, kind: OpKind, account: int, other: int, amount: int
) -> None:
    """Run a one-entry batch at ``replica`` through the world's own API; the ledger (or a
    reviewing critic) must refuse it, and the world records that as ``op_refused``."""
    w = a.world
    w.emit(
        "byzantine",
        f"ledger/{replica}",
        account,
        other,
        amount,
        detail=f"{attack} local {kind.name.lower()}",
    )
    try:
        w.execute(replica, kind, _one(account), _one(other), _one(amount))
    except LedgerError as exc:  # refused whole before it touched anything: recorded like the rest
        w.emit(
            "op_refused",
            f"ledger/{replica}",
            account,
            other,
            amount,
            detail=f"{kind.name.lower()}: {exc}",
        )


def _over_bound(a: _Attacker, item: int) -> None:
    w, n_regions = a.world, a.world.network.n_regions
    # An op at the next seq must wait for nothing but this one's turn: targets with no op pending.
    ready = [r for r in w.local_regions if w.ledgers[r].pending == 0]
    if n_regions == 1 or not ready:
        _overdraft(a, item)
        return
    dst = int(ready[int(a.rng.integers(len(ready)))])
    origin = int((dst + 1 + a.rng.integers(n_regions - 1)) % n_regions)
    ledger = w.ledgers[dst]
    k = ledger.counter_max // MAX_AMOUNT + 2  # entries whose sum passes the bound from zero
    account = a.account()
    deps = ledger.clock.copy()
    seq = int(deps[origin]) + 1
    deps[origin] = seq - 1
    op = a.keys.sign(
        Op(
            origin,
            seq,
            OpKind.MINT,
            np.full(k, account, dtype=np.int64),
            np.zeros(k, dtype=np.int64),
            np.full(k, MAX_AMOUNT, dtype=np.int64),
            deps,
        )
    )
    send(w, dst, "op", op, "over_bound", f"op {op.op_id}", account, origin, k * MAX_AMOUNT)


def _forged_delta(a: _Attacker, item: int) -> None:
    w = a.world
    dst, source = a.pair()
    if source not in w.local_regions:
        source = dst
    real = w.ledgers[source].delta_since(0)
    totals = real.totals.copy()
    style = 3 if source == dst else int(a.rng.integers(4))
    if style == 0:  # a counter raised under the original tag
        totals[0] += 1 + int(a.rng.integers(10**6))
        delta = dataclasses.replace(real, totals=totals)
    elif style == 1:  # the real content under a key no replica holds
        delta = a.foreign.sign_delta(real)
    elif style == 2:  # signed by its source, a counter past the bound
        totals[0] = w.ledgers[dst].counter_max + 1 + int(a.rng.integers(10**6))
        delta = a.keys.sign_delta(dataclasses.replace(real, totals=totals))
    else:  # the receiver's own id (the only forgery left when the receiver is alone)
        delta = w.ledgers[dst].delta_since(0)
    send(
        w,
        dst,
        "sync_delta",
        delta,
        "forged_delta",
        delta.delta_id,
        other=delta.source,
        amount=int(delta.totals[0]),
    )


_MAKERS: dict[str, Callable[[_Attacker, int], None]] = {
    "forged_tag": _forged_tag,
    "unknown_account": _unknown_account,
    "huge_amount": _huge_amount,
    "overdraft": _overdraft,
    "over_bound": _over_bound,
    "forged_delta": _forged_delta,
}


# ---------------------------------------------------------------------- the tap on "op"
class OpTap:
    """Sits on the bus's ``op`` topic in front of the world's handler.

    Real ops (``src != dst``) go to the world's handler; after one is delivered, the oldest armed
    replay or resend captures it. Injected ops (``src == dst``) go to the world's handler too,
    and when one changed nothing -- no version, no pending op, no refusal -- it is recorded as an
    ``op_duplicate``. ``armed``: ``(fault index, attack, tick armed)``, oldest first.
    """

    def __init__(self, world: World, inner: Callable[[Message], None]) -> None:
        self.world = world
        self.inner = inner
        self.armed: list[tuple[int, str, int]] = []

    def arm(self, index: int, attack: str, tick: int) -> None:
        """Capture a coming real op for fault ``index``'s ``attack`` (replayed, mutated_resend)."""
        assert attack in ("replayed", "mutated_resend")
        if len(self.armed) < ARMED_MAX:
            self.armed.append((index, attack, tick))

    def deliver(self, msg: Message) -> None:
        """The bus's handler for ``op`` messages."""
        if msg.src != msg.dst:
            self.inner(msg)
            self._capture(msg)
            return
        ledger = self.world.ledgers[msg.dst]
        before = (ledger.version, ledger.pending, len(ledger.rejected))
        self.inner(msg)
        if (ledger.version, ledger.pending, len(ledger.rejected)) == before:
            self.world.emit(
                "op_duplicate",
                f"ledger/{msg.dst}",
                detail=f"op {msg.payload.op_id} duplicate: a copy of an op this "
                "replica holds; nothing changed",
            )

    def _capture(self, msg: Message) -> None:
        w = self.world
        while self.armed and self.armed[0][2] + ARMED_TICKS < w.tick:
            self.armed.pop(0)  # lapsed: no real op came in time
        if not self.armed:
            return
        index, attack, _ = self.armed.pop(0)
        rng = w.streams(f"faults/{index}")
        op = Op.decode(msg.payload.encode())  # the bytes as they travelled
        if attack == "replayed":
            send(
                w,
                msg.dst,
                "op",
                op,
                "replayed",
                f"op {op.op_id}",
                int(op.accounts[0]),
                op.origin,
                int(op.amounts[0]),
            )
            return
        altered, i = _mutate(op, rng, w.n_accounts)
        lacking = [
            r for r in w.local_regions if r != op.origin and w.ledgers[r].clock[op.origin] < op.seq
        ]
        dst = int(lacking[int(rng.integers(len(lacking)))]) if lacking else msg.dst
        send(
            w,
            dst,
            "op",
            altered,
            "mutated_resend",
            f"op {op.op_id}",
            int(altered.accounts[i]),
            op.origin,
            int(altered.amounts[i]),
        )


def _mutate(op: Op, rng: Stream, n_accounts: int) -> tuple[Op, int]:
    """``op`` with one entry's amount or account changed, under its original tag; and which."""
    i = int(rng.integers(len(op)))
    accounts, amounts = op.accounts.copy(), op.amounts.copy()
    if n_accounts >= 2 and rng.integers(2):
        accounts[i] = (accounts[i] + 1 + int(rng.integers(n_accounts - 1))) % n_accounts
    else:
        step = 1 + int(rng.integers(1000))
        amounts[i] = amounts[i] + step if amounts[i] <= MAX_AMOUNT - step else amounts[i] - step
    altered = Op(
        op.origin, op.seq, op.kind, accounts, op.others.copy(), amounts, op.deps.copy(), op.tag
    )
    assert altered.payload() != op.payload() and altered.tag == op.tag
    return altered, i


def install_tap(world: World) -> OpTap:
    """The world's :class:`OpTap`, put in front of its ``op`` handler the first time."""
    handler = world.bus.handlers["op"]
    owner = getattr(handler, "__self__", None)
    if isinstance(owner, OpTap):
        return owner
    tap = OpTap(world, handler)
    world.bus.subscribe("op", tap.deliver)
    return tap


# ---------------------------------------------------------------------- audit
@dataclass(frozen=True)
class Item:
    """One injected item, from its ``byzantine`` event: ``tick`` it was recorded at, ``replica``
    it targets, ``attack``, ``ref`` (``op o:s``, ``delta s@v``, ``local <kind>``), and the
    event's ``account``, ``other`` and ``amount`` (micro-credits)."""

    tick: int
    replica: int
    attack: str
    ref: str
    account: int
    other: int
    amount: int

    def describe(self) -> str:
        """One line naming the item."""
        return (
            f"{self.attack} {self.ref} at replica {self.replica} (tick {self.tick}, account "
            f"{self.account}, amount {self.amount})"
        )


class Audit:
    """Pairs each ``byzantine`` item with the refusal recorded for it, from a run's events in
    order (:meth:`observe`). An item is open until its refusal is seen; :meth:`overdue` lists
    those open longer than a delivery takes."""

    def __init__(self) -> None:
        self.open: dict[tuple[object, ...], list[Item]] = {}
        self.injected: dict[str, int] = {}
        self.refused: dict[str, int] = {}

    def observe(
        self, tick: int, kind: str, subsystem: str, agent: int, other: int, amount: int, detail: str
    ) -> None:
        """Take one event (the fields of the event log)."""
        if kind == "byzantine":
            attack, _, ref = detail.partition(" ")
            item = Item(tick, int(subsystem.rpartition("/")[2]), attack, ref, agent, other, amount)
            self.injected[attack] = self.injected.get(attack, 0) + 1
            self.open.setdefault(self._key(item), []).append(item)
        elif kind in REFUSALS:
            self._resolve(kind, subsystem, tick, agent, other, amount, detail)

    @staticmethod
    def _key(item: Item) -> tuple[object, ...]:
        if item.ref.startswith("local"):  # refused within the tick it was run in
            return ("local", item.replica, item.tick, item.account, item.other, item.amount)
        return ("remote", item.replica, item.ref)

    def _resolve(
        self, kind: str, subsystem: str, tick: int, agent: int, other: int, amount: int, detail: str
    ) -> None:
        replica = int(subsystem.rpartition("/")[2])
        if kind == "op_refused":
            key: tuple[object, ...] = ("local", replica, tick, agent, other, amount)
        else:
            sep = " duplicate: " if kind == "op_duplicate" else " rejected: "
            key = ("remote", replica, detail.partition(sep)[0])
        waiting = self.open.get(key)
        if not waiting:
            return  # a refusal of the world's own traffic
        for i, item in enumerate(waiting):
            if kind in accepts(item.attack, item.ref):
                del waiting[i]
                if not waiting:
                    del self.open[key]
                self.refused[item.attack] = self.refused.get(item.attack, 0) + 1
                return

    def overdue(self, tick: int) -> list[Item]:
        """Items recorded before ``tick`` and still open at its end. Deliveries take no time, so
        an item is met before the next tick starts: an item of tick t is refused by the end of
        tick t + 1 at the latest (an item made during tick t is recorded as of tick t)."""
        return sorted(
            (i for items in self.open.values() for i in items if i.tick < tick),
            key=lambda i: (i.tick, i.replica, i.ref),
        )

    def unresolved(self) -> list[Item]:
        """Every item still open."""
        return sorted(
            (i for items in self.open.values() for i in items),
            key=lambda i: (i.tick, i.replica, i.ref),
        )


def accepts(attack: str, ref: str) -> frozenset[str]:
    """The event kinds that count as the refusal of an item of ``attack`` (``ref`` as recorded)."""
    if ref.startswith("local"):
        return frozenset({"op_refused"})
    return _ACCEPTS.get(attack, frozenset({"op_rejected"}))
