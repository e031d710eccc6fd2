"""The ledger replicas of a world and their replication over the message bus.

One :class:`economy.ledger.Replica` per region. A batch op runs at one replica (after a reviewing
critic, where the world has one), and the replica gossips it to every other one over the bus.
Anti-entropy rounds repair what gossip lost: each replica asks every other for the changes it has
not seen, and merges the delta it gets back (a forged or altered delta is refused and recorded).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from economy.errors import DeltaRejected, OpRejected
from economy.ledger import Delta, Replica, rights_at_homes
from economy.ops import Keyring, Op, OpKind
from runtime.kernel.bus import Message

if TYPE_CHECKING:
    from runtime.kernel.world import World

# Batches that draw on what an account holds: a reviewing critic proves them before they execute.
REVIEWED = frozenset(
    {OpKind.SPEND, OpKind.TRANSFER, OpKind.STAKE, OpKind.BURN, OpKind.UNSTAKE, OpKind.SLASH}
)


def ledger_keys(n_regions: int, seed: int, key_secret: bytes | None) -> Keyring:
    """The replicas' op keys.

    A simulation derives them from its seed, so anyone who knows the seed can sign as any replica
    (fine for a model; a run in summary.json names its seed). A signed run (``agora run
    --sign-key``) derives them from its secret key, which never enters the run.
    """
    assert n_regions >= 1, n_regions
    if key_secret is None:
        return Keyring.derive(n_regions, f"agora/{seed}".encode())
    digest = hmac.new(key_secret, b"agora/ledger-keys", hashlib.sha256).digest()
    return Keyring.derive(n_regions, digest)


class Replication:
    """The world's ledger replicas, the ops they make and the messages that keep them in step.

    ``replicas[r]`` is region r's replica, or None in a shard of a sharded world that does not hold
    region r. ``op_ticks[origin][seq - 1]`` is the tick at which replica ``origin`` made its op
    ``seq`` (for :meth:`replica_lag`).
    """

    def __init__(self, world: World, keyring: Keyring, signed: bool) -> None:
        n_regions = world.network.n_regions
        assert len(world.local_regions) >= 1, "a world holds at least one replica"
        self.world = world
        self.signed = signed  # keys from a secret (never saved), not from the seed
        self.replicas: list[Replica | None] = [
            Replica(r, n_regions, world.n_accounts, keyring) if r in world.local_regions else None
            for r in range(n_regions)
        ]
        self.op_ticks: list[list[int]] = [[] for _ in range(n_regions)]
        self.refused_by_critic = 0  # entries a reviewer dropped before they reached a ledger
        world.bus.subscribe("op", self._on_op)
        world.bus.subscribe("sync_request", self._on_sync_request)
        world.bus.subscribe("sync_delta", self._on_sync_delta)

    # ------------------------------------------------------------------ queries
    def replica(self, region: int) -> Replica:
        """Region ``region``'s replica, which this world holds."""
        replica = self.replicas[region]
        assert replica is not None, f"replica {region} is held by another shard"
        return replica

    @property
    def local(self) -> list[Replica]:
        """The replicas this world holds (all of them, except in a shard of a sharded world)."""
        return [self.replica(r) for r in self.world.local_regions]

    def home(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Home region (ledger replica) of each account."""
        return accounts % self.world.network.n_regions

    def rights_at_home(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Spending rights each account's home replica holds for it, micro-credits."""
        if all(replica is not None for replica in self.replicas):  # every replica here: one pass
            return rights_at_homes(self.local, accounts)
        out = np.zeros(len(accounts), dtype=np.int64)
        homes = self.home(accounts)
        for region, replica in enumerate(self.replicas):
            selected = homes == region
            if replica is not None and selected.any():
                out[selected] = replica.rights_of(accounts[selected])
        return out

    def distinct_roots(self) -> int:
        """How many different ledger states the (local) replicas hold (1 = converged)."""
        return len({replica.root() for replica in self.local})

    def replica_lag(self) -> tuple[int, float]:
        """How far replicas trail the ops made.

        Over every (replica, origin) pair, the age in ticks of the oldest op of that origin the
        replica has not applied yet (0 when it has them all); the largest and the mean.
        """
        lags = []
        local_regions = self.world.local_regions
        for replica in self.local:
            for origin, made in enumerate(self.op_ticks):
                if origin not in local_regions:
                    continue  # another shard made those ops; their ticks are not known here
                applied = int(replica.clock[origin])
                lags.append(self.world.tick - made[applied] if applied < len(made) else 0)
        return (max(lags), float(np.mean(lags))) if lags else (0, 0.0)

    # ------------------------------------------------------------------ ops
    def execute(
        self,
        replica: int,
        kind: OpKind,
        accounts: npt.NDArray[np.int64],
        others: npt.NDArray[np.int64],
        amounts: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """Run a batch op at ``replica``, gossip it, record refusals; return the accepted mask."""
        assert len(accounts) == len(others) == len(amounts)
        world = self.world
        accepted = np.ones(len(accounts), dtype=np.bool_)
        if len(accounts) == 0:
            return accepted
        if world.reviewer is not None and kind in REVIEWED:
            # A critic reviews the batch before it executes; what it drops never reaches the ledger.
            keep, reason = world.reviewer.review_batch(
                world, replica, kind, accounts, others, amounts
            )
            if not keep.all():
                for index in np.flatnonzero(~keep).tolist():
                    world.emit(
                        "op_refused",
                        f"ledger/{replica}",
                        int(accounts[index]),
                        int(others[index]),
                        int(amounts[index]),
                        detail=f"{kind.name.lower()}: critic: {reason}",
                    )
                world.count("ops_refused", int((~keep).sum()))
                self.refused_by_critic += int((~keep).sum())
                accepted = keep.copy()
                if not keep.any():
                    return accepted
                accounts, others, amounts = accounts[keep], others[keep], amounts[keep]
            index_map = np.flatnonzero(keep)
        else:
            index_map = np.arange(len(accounts))
        op, refused = self.replica(replica).execute(kind, accounts, others, amounts)
        for index, reason in refused:
            accepted[index_map[index]] = False
            world.emit(
                "op_refused",
                f"ledger/{replica}",
                int(accounts[index]),
                int(others[index]),
                int(amounts[index]),
                detail=f"{kind.name.lower()}: {reason}",
            )
        world.count("ops_refused", len(refused))
        if op is not None:
            self._gossip(replica, op)
        return accepted

    def execute_by_home(
        self,
        kind: OpKind,
        accounts: npt.NDArray[np.int64],
        others: npt.NDArray[np.int64],
        amounts: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """:meth:`execute` each entry at its account's home replica; return the accepted mask."""
        accepted = np.ones(len(accounts), dtype=np.bool_)
        homes = self.home(accounts)
        for region in range(len(self.replicas)):
            selected = np.flatnonzero(homes == region)
            if selected.size:
                accepted[selected] = self.execute(
                    region, kind, accounts[selected], others[selected], amounts[selected]
                )
        assert accepted.shape == accounts.shape
        return accepted

    def mint(
        self, accounts: npt.NDArray[np.int64], amounts: npt.NDArray[np.int64], reason: str
    ) -> None:
        """Create credits for ``accounts`` at their home replicas; one event per replica."""
        assert len(accounts) == len(amounts)
        keep = amounts > 0
        accounts, amounts = accounts[keep], amounts[keep]
        homes = self.home(accounts)
        for region in range(len(self.replicas)):
            selected = homes == region
            if selected.any():
                n_selected = int(selected.sum())
                no_others = np.zeros(n_selected, np.int64)
                self.execute(region, OpKind.MINT, accounts[selected], no_others, amounts[selected])
                self.world.emit(
                    "minted",
                    f"ledger/{region}",
                    amount=int(amounts[selected].sum()),
                    value=float(n_selected),
                    detail=reason,
                )
        self.world.count("minted_micro", int(amounts.sum()))

    # ------------------------------------------------------------------ keys
    def restore_keys(self, seed: int) -> None:
        """After a restore: an unsigned world's replicas take their keys from the seed again; a
        signed world's wait for :meth:`use_keys` (its keys are never saved)."""
        keyring = None if self.signed else ledger_keys(len(self.replicas), seed, None)
        for replica in self.local:
            replica.keyring = keyring  # None until use_keys (a signed run's)

    def use_keys(self, seed: int, key_secret: bytes | None) -> None:
        """After a restore: a signed world's replicas take their keys from the run's key again."""
        if self.signed != (key_secret is not None):
            raise ValueError("a signed run's world needs its key; an unsigned one takes none")
        if key_secret is not None:
            keyring = ledger_keys(len(self.replicas), seed, key_secret)
            for replica in self.local:
                replica.keyring = keyring

    # ------------------------------------------------------------------ replication over the bus
    def _gossip(self, origin: int, op: Op) -> None:
        self.op_ticks[origin].append(self.world.tick)
        for destination in range(len(self.replicas)):
            if destination != origin:
                self.world.bus.send(origin, destination, "op", op)

    def _on_op(self, msg: Message) -> None:
        try:
            self.replica(msg.dst).receive(msg.payload)
        except OpRejected as exc:
            self.world.emit("op_rejected", f"ledger/{msg.dst}", detail=str(exc))

    def anti_entropy(self) -> None:
        """Every local replica asks every other for the changes it has not seen."""
        for region in self.world.local_regions:
            self.anti_entropy_from(region)

    def anti_entropy_from(self, replica: int) -> None:
        """Replica ``replica`` asks every other replica for the changes it has not seen."""
        synced_from = self.replica(replica).synced_from
        for other in range(len(self.replicas)):
            if other != replica:
                self.world.bus.send(replica, other, "sync_request", synced_from.get(other, 0))

    def _on_sync_request(self, msg: Message) -> None:
        delta = self.replica(msg.dst).delta_since(int(msg.payload))
        self.world.bus.send(msg.dst, msg.src, "sync_delta", delta)

    def _on_sync_delta(self, msg: Message) -> None:
        delta: Delta = msg.payload
        try:
            changed = self.replica(msg.dst).merge_delta(delta)
        except DeltaRejected as exc:  # a forged or altered delta: refused, recorded, nothing merged
            self.world.emit("delta_rejected", f"ledger/{msg.dst}", detail=str(exc))
            return
        self.world.count("sync_rows_changed", changed)
