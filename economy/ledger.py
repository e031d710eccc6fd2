"""A replica of the credit ledger: a state-based CRDT with escrowed spending rights.

Per account and replica the state holds earned credits (G-Counter), spent credits (PN-Counter
whose negative side carries refunds), spending rights lent and returned between the account's home
replica (``account % R``) and the others, and the account's stake. See ``ledger_kernels`` for the
layout: a dense array for the counters nearly every op writes, a sorted side table for refunds
and escrow moves, which few accounts ever have.

Every counter has one writer, its owner: replica r owns column r of the per-replica blocks, row r
of the totals and its clock entry; the account's home replica owns its stake and its lent block.
Replicas exchange two kinds of message (``economy.ops``), both HMAC-tagged by their sender: ops,
which every replica applies, and deltas, which anti-entropy ships. A delta holds only cells its
source owns, so a replica learns each counter from its owner, never from a relay. Properties the
code asserts or enforces and the tests check:

* merge is element-wise max of what an owner sent: commutative, associative, idempotent; all
  replicas hold one state (one root) once each has synced from every other after the last op;
* a replica spends only rights it holds, so no interleaving of partitions and merges overdraws;
* ops and deltas wait until the replica has applied what they depend on (their ``deps``), so every
  view is a state the ledger could have been in: balances, rights and stakes are >= 0 in it;
* conservation: sum(balance + stake) == minted - burned + refunded, in every replica's view;
* ops are idempotent (``origin:seq`` ids), causally delivered and authenticated; a delta is
  authenticated too; a refused op or delta is recorded in :attr:`Replica.rejected` and changes
  nothing, and a refused entry of a local batch is left out of the op;
* every counter stays in ``[0, counter_max(R)]``, which keeps every sum inside int64 (below).

**The bound.** Let C = ``counter_max(R)`` = floor((2⁶³ - 1) / (2R + 2)). Every counter (a cell of
the dense or side table, a totals entry) starts at 0 and only grows, by amounts in
``[1, MAX_AMOUNT]``; a write that would take it past C is refused (local entry) or rejects its op
(remote op), and a merged value past C rejects its delta. So every counter is in [0, C], and:

* a stake, stake_in - stake_out, is in [-C, C];
* a balance, sum over r of (earned_r - spent_p_r), then plus each spent_n_r, has every partial sum
  in [-R·C, 2R·C]; balance plus stake is in [-(R+1)·C, (2R+1)·C];
* rights at a replica, earned - spent_p + spent_n plus R differences of lent and returned (home)
  or one (elsewhere), have every partial sum in [-(R+1)·C, (R+2)·C];
* the issued supply, sum over r of (minted_r - burned_r + refunded_r), is in [-R·C, 2R·C];
* the held sum over every account: in a view the ledger keeps, every balance and stake is >= 0
  and their sum equals the issued supply, so each running sum is in [0, 2R·C]; the kernel checks
  each addition as well.

Each is within (2R + 2)·C <= 2⁶³ - 1. Because ``MAX_AMOUNT <= C`` (enforced by ``REPLICAS_MAX``),
the check ``counter > C - amount`` cannot overflow either. For R = 3, C is about 1.15·10¹⁸
micro-credits (1.15·10¹² credits). Counters are cumulative flows: an account's earned and spent
at a replica grow with every credit passing through it there, whatever its balance, so a very
busy account can reach C at one replica and then receive (or pay) there no more.

Stake, unstake, slash and lend run at the account's home replica, which serialises them. Two
replicas built with the same id are one writer split in two, a caller error: a replica refuses
an op claiming its own origin beyond its clock, and any delta or merge from its own id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, SupportsInt, cast, overload

import numpy as np
import numpy.typing as npt

from economy import ledger_kernels as kernels
from economy.errors import DeltaRejected, LedgerError, OpRejected
from economy.merkle import MerkleDiff, MerkleTree
from economy.ops import KIND_NAMES, Delta, Keyring, Op, OpKind, make_entries

__all__ = [
    "MAX_AMOUNT",
    "REPLICAS_MAX",
    "Delta",
    "Rejection",
    "Replica",
    "counter_max",
    "rights_at_homes",
]

MAX_AMOUNT: int = 10**15
"""Largest amount of one entry, in micro-credits (10⁹ credits)."""

REPLICAS_MAX: int = 4096
"""Most replicas a ledger may have: keeps ``counter_max(R) >= MAX_AMOUNT``."""

_SIDE_KINDS = (OpKind.REFUND, OpKind.LEND, OpKind.RETURN)


def counter_max(n_replicas: int) -> int:
    """Bound on every counter of a ledger of ``n_replicas`` replicas, micro-credits:
    floor((2⁶³ - 1) / (2R + 2)); the module docstring proves what it keeps inside int64."""
    if not 1 <= n_replicas <= REPLICAS_MAX:
        raise LedgerError(f"n_replicas must be in [1, {REPLICAS_MAX}], got {n_replicas!r}")
    bound = kernels.INT64_MAX // (2 * n_replicas + 2)
    assert bound >= MAX_AMOUNT and (2 * n_replicas + 2) * bound <= kernels.INT64_MAX
    return bound


@dataclass(frozen=True)
class Rejection:
    """An op, a delta, or one entry of a local batch that was refused, and why."""

    op_id: str
    kind: str
    reason: str


def rights_at_homes(
    replicas: list[Replica], accounts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Spending rights each account's home replica (``account % R``) holds for it, in that
    replica's view.

    ``replicas`` are all R replicas of one ledger in id order. One pass in a numba kernel: the same
    values as asking each home replica with :meth:`Replica.rights_of`.
    """
    if len(replicas) == 0 or any(
        r.id != i or r.n_replicas != len(replicas) for i, r in enumerate(replicas)
    ):
        raise LedgerError("rights_at_homes needs every replica of the ledger, in id order")
    acc = replicas[0]._accounts(accounts)
    return kernels.gather_home_rights(
        acc,
        tuple(r.cells for r in replicas),
        tuple(r._side_pos for r in replicas),
        tuple(r.side_vals for r in replicas),
    )


class Replica:
    """One replica of the ledger for ``n_accounts`` accounts replicated over ``n_replicas``.

    Balances and stakes are int64 micro-credits. Local ops (``mint``, ``transfer``, ...) are checked
    against this replica's own view and return the signed :class:`Op` to send to the others;
    :meth:`receive` applies ops from other replicas; :meth:`delta_since` and :meth:`merge_delta`
    exchange signed state deltas, :meth:`sync_from` and :meth:`merge` do so between replicas in
    one process. Each id must be used by one replica only (see the module docstring).

    Attributes read by callers: ``clock: int64[R]`` (ops of each origin applied),
    ``rejected: list[Rejection]`` (every refused entry, op and delta, in order),
    ``synced_from: dict[int, int]`` (the version of each peer merged last), ``counter_max``
    (micro-credits, the bound on every counter).
    """

    def __init__(
        self,
        replica_id: int,
        n_replicas: int,
        n_accounts: int,
        keyring: Keyring,
        leaf_size: int = 1024,
    ) -> None:
        for name, value, low in (
            ("n_replicas", n_replicas, 1),
            ("n_accounts", n_accounts, 1),
            ("leaf_size", leaf_size, 1),
        ):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise LedgerError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(replica_id, (int, np.integer)) or not 0 <= replica_id < n_replicas:
            raise LedgerError(f"replica_id must be in [0, {n_replicas}), got {replica_id!r}")
        self.id = int(replica_id)
        self.n_replicas = int(n_replicas)
        self.n_accounts = int(n_accounts)
        self.counter_max = counter_max(self.n_replicas)
        self.leaf_size = int(leaf_size)
        self.keyring: Keyring | None = keyring
        self.cells = np.zeros((self.n_accounts, 2 * self.n_replicas + 2), dtype=np.int64)
        self.side_keys = np.zeros(0, dtype=np.int64)
        self.side_vals = np.zeros((0, 3 * self.n_replicas), dtype=np.int64)
        # account -> side row, -1 if none; int32 (4 bytes an account) while the side table, which
        # never holds more rows than there are accounts, fits it
        self._side_pos: npt.NDArray[np.signedinteger[Any]] = np.full(
            self.n_accounts, -1, dtype=np.int32 if self.n_accounts < 2**31 else np.int64
        )
        self.totals = np.zeros(
            (self.n_replicas, 3), dtype=np.int64
        )  # minted, burned, refunded per origin
        self.clock = np.zeros(self.n_replicas, dtype=np.int64)
        self.tree = MerkleTree(self.n_accounts, self.leaf_size)
        self._leaf_dirty = np.ones(self.tree.n_leaves, dtype=np.bool_)
        # version at which this replica last wrote a cell it owns in each leaf: what deltas ship
        self._leaf_ver = np.zeros(self.tree.n_leaves, dtype=np.int64)
        self.version = 0
        self._own_deps = np.zeros(
            self.n_replicas, dtype=np.int64
        )  # deps of this replica's latest op
        self._pending: dict[tuple[int, int], Op] = {}
        self._deferred: dict[int, Delta] = {}  # source -> newest delta waiting for its deps
        self._spends: dict[tuple[int, int], int] = {}  # (spend seq, account) -> refundable rest
        self.synced_from: dict[int, int] = {}
        self.rejected: list[Rejection] = []

    # ------------------------------------------------------------------ checkpoints
    def __getstate__(self) -> dict[str, object]:
        """The replica's state for a checkpoint: the counters and logs, not the keys (the owner
        supplies them again) and not the Merkle tree (derived; rebuilt from the counters, so a
        saved root can never vouch for altered counters)."""
        return {
            k: v for k, v in self.__dict__.items() if k not in ("keyring", "tree", "_leaf_dirty")
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        """Take up a checkpoint's state; :attr:`keyring` must be set before the replica is used."""
        self.__dict__.update(state)
        self.keyring = None
        self.tree = MerkleTree(self.n_accounts, self.leaf_size)
        self._leaf_dirty = np.ones(self.tree.n_leaves, dtype=np.bool_)

    # ------------------------------------------------------------------ queries
    def balance(self, account: int) -> int:
        """Liquid balance of ``account`` in this replica's view, micro-credits."""
        a = self._account(account)
        return int(
            kernels.row_balance(self.cells, self._side_pos, self.side_vals, a, self.n_replicas)
        )

    def balances(self) -> npt.NDArray[np.int64]:
        """All liquid balances: int64[n_accounts], micro-credits (computed from the counters: one
        pass over every account)."""
        return kernels.balances_of(self.cells, self._side_pos, self.side_vals, self.n_replicas)

    @overload
    def staked(self, account: None = None) -> npt.NDArray[np.int64]: ...
    @overload
    def staked(self, account: int) -> int: ...
    def staked(self, account: int | None = None) -> npt.NDArray[np.int64] | int:
        """Stake of ``account`` (or int64[n_accounts] of all stakes), micro-credits."""
        if account is not None:  # one row, not a pass over every account
            a = self._account(account)
            return int(self.cells[a, 2 * self.n_replicas] - self.cells[a, 2 * self.n_replicas + 1])
        return self.cells[:, 2 * self.n_replicas] - self.cells[:, 2 * self.n_replicas + 1]

    def staked_of(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Stake of each of ``accounts``: int64[len(accounts)], micro-credits."""
        acc = self._accounts(accounts)
        stakes: npt.NDArray[np.int64] = (
            self.cells[acc, 2 * self.n_replicas] - self.cells[acc, 2 * self.n_replicas + 1]
        )
        return stakes

    @overload
    def rights(self, account: None = None) -> npt.NDArray[np.int64]: ...
    @overload
    def rights(self, account: int) -> int: ...
    def rights(self, account: int | None = None) -> npt.NDArray[np.int64] | int:
        """Spending rights this replica holds for ``account`` (or all accounts)."""
        if account is None:
            return kernels.rights_of(
                self.cells, self._side_pos, self.side_vals, None, self.id, self.n_replicas
            )
        a = self._account(account)
        return int(
            kernels.row_rights(
                self.cells, self._side_pos, self.side_vals, a, self.id, self.n_replicas
            )
        )

    def rights_of(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Spending rights this replica holds for each of ``accounts``: int64[len(accounts)]."""
        acc = self._accounts(accounts)
        return kernels.rights_of(
            self.cells, self._side_pos, self.side_vals, acc, self.id, self.n_replicas
        )

    def counters(self, account: int) -> dict[str, npt.NDArray[np.int64] | int]:
        """Every counter of ``account`` in this replica's view: int64[R] per block, plus stake
        in/out."""
        n_replicas = self.n_replicas
        row = self.cells[self._account(account)]
        out: dict[str, npt.NDArray[np.int64] | int] = {
            "earned": row[0:n_replicas].copy(),
            "spent_p": row[n_replicas : 2 * n_replicas].copy(),
            "stake_in": int(row[2 * n_replicas]),
            "stake_out": int(row[2 * n_replicas + 1]),
        }
        i = int(self._side_pos[int(account)])
        side = self.side_vals[i] if i >= 0 else np.zeros(3 * n_replicas, dtype=np.int64)
        out.update(
            spent_n=side[0:n_replicas].copy(),
            lent=side[n_replicas : 2 * n_replicas].copy(),
            returned=side[2 * n_replicas :].copy(),
        )
        return out

    def rights_as(self, account: int, replica: int) -> int:
        """Rights of ``account`` at ``replica`` computed from this replica's state (true once
        converged)."""
        a = self._account(account)
        if not isinstance(replica, (int, np.integer)) or not 0 <= replica < self.n_replicas:
            raise LedgerError(f"replica {replica!r} out of range [0, {self.n_replicas})")
        return int(
            kernels.row_rights(
                self.cells, self._side_pos, self.side_vals, a, int(replica), self.n_replicas
            )
        )

    def home(self, account: int) -> int:
        """The replica that serialises ``account``'s stake ops and lends its rights."""
        return self._account(account) % self.n_replicas

    def supply(self) -> tuple[int, int]:
        """``(held, issued)``: sum of balances and stakes, and minted - burned + refunded."""
        held, exact = kernels.held(self.cells, self._side_pos, self.side_vals, self.n_replicas)
        assert exact, "the held sum left int64: this view breaks the ledger's invariants"
        t = self.totals.sum(axis=0)
        return int(held), int(t[0] - t[1] + t[2])

    def root(self) -> bytes:
        """32-byte state root: the Merkle root over accounts with the clock and totals."""
        self.tree.update(self.cells, self.side_keys, self.side_vals, self._leaf_dirty)
        return hashlib.blake2b(
            self.tree.root() + self.totals.tobytes() + self.clock.tobytes(), digest_size=32
        ).digest()

    def diff(self, other: Replica) -> MerkleDiff:
        """Account ranges where this replica's state differs from ``other``'s."""
        self.root()
        other.root()
        return self.tree.diff(other.tree)

    @property
    def pending(self) -> int:
        """Ops received but waiting for their causal predecessors."""
        return len(self._pending)

    @property
    def deferred(self) -> int:
        """Deltas received but waiting for the ops their source's state depends on."""
        return len(self._deferred)

    # ------------------------------------------------------------------ local ops
    def execute(
        self, kind: OpKind, accounts: object, others: object, amounts: object
    ) -> tuple[Op | None, list[tuple[int, str]]]:
        """Apply a batch of entries created here; return the signed op and the refused entries.

        Entries are checked in order against this replica's rights and the counter bound; refused
        entries (``(index, reason)``, in index order) are left out of the op and recorded in
        :attr:`rejected`. A structurally invalid batch raises :class:`LedgerError` and changes
        nothing.
        """
        kind = self._kind(kind)
        acc, oth, amt = make_entries(accounts, others, amounts)
        seq = int(self.clock[self.id]) + 1
        op_id = f"{self.id}:{seq}"
        self._check_structure(kind, self.id, acc, oth, amt, op_id)
        refused: list[tuple[int, str]] = []
        index: npt.NDArray[np.int64] | None = None  # position in the batch of each entry kept
        if kind == OpKind.REFUND:
            keep = self._claim_refunds(acc, oth, amt, refused)
            index = np.flatnonzero(keep)
            acc, oth, amt = acc[keep], oth[keep], amt[keep]
        # Entries apply as they are checked; refused entries changed nothing and are left out.
        outcome = self._apply(kind, self.id, acc, oth, amt, check=True)
        ok = outcome == kernels.OK
        for i in np.flatnonzero(~ok).tolist():
            refused.append((int(i if index is None else index[i]), self._reason(int(outcome[i]))))
            if kind == OpKind.REFUND:  # the claim made for this entry is given back
                key = (int(oth[i]), int(acc[i]))
                self._spends[key] = self._spends.get(key, 0) + int(amt[i])
        refused.sort()
        for i, reason in refused:
            self.rejected.append(Rejection(f"{op_id}[{i}]", KIND_NAMES[kind], reason))
        if not ok.any():
            return None, refused
        acc, oth, amt = acc[ok], oth[ok], amt[ok]  # copies: the op must not alias the caller's
        op = self._keys().sign(Op(self.id, seq, kind, acc, oth, amt, self.clock.copy()))
        self._own_deps = op.deps.copy()
        self.clock[self.id] = seq
        if kind == OpKind.SPEND:
            for a, x in zip(acc.tolist(), amt.tolist(), strict=True):
                self._spends[(seq, a)] = self._spends.get((seq, a), 0) + x
        self._touch(acc, oth if kind == OpKind.TRANSFER else None, own=True)
        assert self.totals[self.id].max() <= self.counter_max and op.seq == self.clock[self.id]
        return op, refused

    def _reason(self, code: int) -> str:
        if code == kernels.OVER_BOUND:
            return f"{kernels.REASONS[code]} of {self.counter_max} micro-credits"
        return kernels.REASONS[code]

    def _single(self, kind: OpKind, account: int, other: int, amount: int) -> Op:
        op, refused = self.execute(kind, account, other, amount)
        if op is None:
            raise OpRejected(f"{self.id}:{int(self.clock[self.id]) + 1}", refused[0][1])
        return op

    def mint(self, account: int, amount: int) -> Op:
        """Create ``amount`` credits for ``account`` (earned at this replica)."""
        return self._single(OpKind.MINT, account, 0, amount)

    def spend(self, account: int, amount: int) -> Op:
        """Pay a refundable fee of ``amount`` from ``account`` to the system."""
        return self._single(OpKind.SPEND, account, 0, amount)

    def transfer(self, src: int, dst: int, amount: int) -> Op:
        """Move ``amount`` from ``src`` to ``dst``."""
        return self._single(OpKind.TRANSFER, src, dst, amount)

    def refund(self, account: int, spend_seq: int, amount: int) -> Op:
        """Refund up to what remains of this replica's spend ``spend_seq`` by ``account``."""
        return self._single(OpKind.REFUND, account, spend_seq, amount)

    def stake(self, account: int, amount: int) -> Op:
        """Lock ``amount`` of ``account``'s liquid credits as stake (home replica only)."""
        return self._single(OpKind.STAKE, account, 0, amount)

    def unstake(self, account: int, amount: int) -> Op:
        """Release ``amount`` of stake back to liquid credits (home replica only)."""
        return self._single(OpKind.UNSTAKE, account, 0, amount)

    def slash(self, account: int, amount: int) -> Op:
        """Destroy ``amount`` of ``account``'s stake (home replica only)."""
        return self._single(OpKind.SLASH, account, 0, amount)

    def burn(self, account: int, amount: int) -> Op:
        """Destroy ``amount`` of ``account``'s liquid credits."""
        return self._single(OpKind.BURN, account, 0, amount)

    def lend(self, account: int, to_replica: int, amount: int) -> Op:
        """Move ``amount`` of ``account``'s spending rights from its home replica (here) to
        another."""
        return self._single(OpKind.LEND, account, to_replica, amount)

    def give_back(self, account: int, amount: int) -> Op:
        """Return ``amount`` of ``account``'s spending rights held here to its home replica."""
        return self._single(OpKind.RETURN, account, 0, amount)

    # ------------------------------------------------------------------ remote ops
    def receive(self, op: Op) -> str:
        """Apply an op from any replica: ``"applied"``, ``"duplicate"`` or ``"buffered"``.

        An op whose tag does not verify under its origin's key, whose entries are malformed, that
        claims this replica's own origin beyond its clock, or that would take a counter past the
        bound when its turn comes, raises :class:`OpRejected`, is recorded in :attr:`rejected`,
        and changes nothing.
        """
        op_id = f"{op.origin}:{op.seq}"
        if not (0 <= op.origin < self.n_replicas) or op.deps.shape != (self.n_replicas,):
            return self._reject_remote(
                op,
                f"origin {op.origin} or clock length {op.deps.shape} does not fit "
                f"{self.n_replicas} "
                "replicas",
            )
        if not self._keys().verify(op):
            return self._reject_remote(op, f"tag does not verify under replica {op.origin}'s key")
        if op.seq <= self.clock[op.origin] or (op.origin, op.seq) in self._pending:
            return "duplicate"
        if op.origin == self.id:
            return self._reject_remote(
                op,
                f"op claims this replica's origin {self.id} with a seq it never made: another "
                "replica uses the same id",
            )
        try:
            kind = self._kind(op.kind)
            acc, oth, amt = make_entries(op.accounts, op.others, op.amounts)
            self._check_structure(kind, op.origin, acc, oth, amt, op_id)
        except LedgerError as exc:
            return self._reject_remote(op, str(exc))
        key = (op.origin, op.seq)
        self._pending[key] = Op(op.origin, op.seq, kind, acc, oth, amt, op.deps, op.tag)
        applied, refused, _ = self._drain()
        if key in refused:
            raise OpRejected(op_id, self.rejected[refused[key]].reason)
        return "applied" if key in applied else "buffered"

    def _reject_remote(self, op: Op, reason: str) -> str:
        self.rejected.append(
            Rejection(f"{op.origin}:{op.seq}", KIND_NAMES.get(int(op.kind), "?"), reason)
        )
        raise OpRejected(f"{op.origin}:{op.seq}", reason)

    def _drain(self) -> tuple[set[tuple[int, int]], dict[tuple[int, int], int], int]:
        """Apply every pending op and deferred delta whose turn has come, until none is left.

        Returns the ops applied, the ops refused (key -> index in :attr:`rejected`) and the
        account rows the deltas changed.
        """
        applied: set[tuple[int, int]] = set()
        refused: dict[tuple[int, int], int] = {}
        rows = 0
        # Each pass but the last applies an op or a delta, so the passes are bounded.
        for _ in range(len(self._pending) + len(self._deferred) + 1):
            ops_moved = self._drain_ops(applied, refused)
            ready = self._ready_deltas()
            for delta in ready:
                del self._deferred[delta.source]
                rows += self._merge_owned(delta)
            if not ops_moved and not ready:
                break
        return applied, refused, rows

    def _drain_ops(
        self, applied: set[tuple[int, int]], refused: dict[tuple[int, int], int]
    ) -> bool:
        """Apply the pending ops whose turn has come (dropping those the clock covers, and those
        that would pass the bound, recorded in ``refused``); return whether any was applied."""
        moved = False
        for _ in range(len(self._pending) + 1):  # each pass but the last applies an op
            progress = False
            for key in sorted(self._pending):
                op = self._pending[key]
                if op.seq <= self.clock[op.origin]:
                    del self._pending[key]
                    continue
                if op.seq != self.clock[op.origin] + 1 or any(
                    self.clock[r] < op.deps[r] for r in range(self.n_replicas) if r != op.origin
                ):
                    continue
                del self._pending[key]
                outcome = self._apply(
                    op.kind, op.origin, op.accounts, op.others, op.amounts, check=False
                )
                if outcome.any():  # nothing was applied; the origin's later ops stay pending
                    refused[key] = len(self.rejected)
                    reason = (
                        f"applying it would take a counter past the ledger's bound of "
                        f"{self.counter_max} micro-credits"
                    )
                    self.rejected.append(Rejection(op.op_id, KIND_NAMES[int(op.kind)], reason))
                    continue
                self.clock[op.origin] = op.seq
                self._touch(
                    op.accounts, op.others if op.kind == OpKind.TRANSFER else None, own=False
                )
                applied.add(key)
                progress = moved = True
            if not progress:
                break
        return moved

    def _apply(
        self,
        kind: OpKind,
        origin: int,
        acc: npt.NDArray[np.int64],
        oth: npt.NDArray[np.int64],
        amt: npt.NDArray[np.int64],
        check: bool,
    ) -> npt.NDArray[np.int8]:
        """Apply validated entries; return per-entry outcome codes (0 = applied).

        ``check``: an op made here (each entry checked and refused on its own) or not (an op from
        another replica: applied whole, or not at all when any outcome is non-zero).
        """
        if kind not in _SIDE_KINDS:
            return kernels.apply_entries(
                int(kind),
                origin,
                self.id,
                self.n_replicas,
                acc,
                oth,
                amt,
                self.cells,
                self._side_pos,
                self.side_vals,
                self.totals,
                check,
                self.counter_max,
            )
        return self._apply_side(kind, origin, acc, oth, amt, check)

    def _apply_side(
        self,
        kind: OpKind,
        origin: int,
        acc: npt.NDArray[np.int64],
        oth: npt.NDArray[np.int64],
        amt: npt.NDArray[np.int64],
        check: bool,
    ) -> npt.NDArray[np.int8]:
        """:meth:`_apply` for refunds and escrow moves, which write the side table."""
        n_replicas, bound = self.n_replicas, self.counter_max
        out = np.zeros(acc.shape[0], dtype=np.int8)
        if kind == OpKind.LEND:
            cols = kernels.LENT * n_replicas + oth
        else:
            block = kernels.SPENT_N if kind == OpKind.REFUND else kernels.RETURNED
            cols = np.full(acc.shape[0], block * n_replicas + origin, dtype=np.int64)
        refund = kind == OpKind.REFUND
        if not check and self._side_over_bound(acc, cols, amt, origin if refund else -1):
            out[:] = kernels.OVER_BOUND
            return out
        # Refunds and escrow moves are rare: a Python loop over the side table is cheap enough.
        for i, (a, c, x) in enumerate(zip(acc.tolist(), cols.tolist(), amt.tolist(), strict=True)):
            if (
                check
                and not refund
                and kernels.row_rights(
                    self.cells, self._side_pos, self.side_vals, a, self.id, n_replicas
                )
                < x
            ):
                out[i] = kernels.NO_RIGHTS
                continue
            if check and (
                self._side_value(a, c) > bound - x
                or (refund and self.totals[origin, 2] > bound - x)
            ):
                out[i] = kernels.OVER_BOUND
                continue
            row = self._side_row(a)  # first: inserting a row replaces the side arrays
            self.side_vals[row, c] += x
            if refund:
                self.totals[origin, 2] += x
        return out

    def _side_over_bound(
        self,
        acc: npt.NDArray[np.int64],
        cols: npt.NDArray[np.int64],
        amt: npt.NDArray[np.int64],
        refund_origin: int,
    ) -> bool:
        """Whether a whole op's entries would take a side counter (or the origin's refunded
        total, when ``refund_origin >= 0``) past the bound. Amounts are positive, so the sums per
        counter are the peaks."""
        added: dict[tuple[int, int], int] = {}
        for a, c, x in zip(acc.tolist(), cols.tolist(), amt.tolist(), strict=True):
            added[(a, c)] = added.get((a, c), 0) + x
        bound = self.counter_max
        if any(self._side_value(a, c) > bound - x for (a, c), x in added.items()):
            return True
        return refund_origin >= 0 and int(self.totals[refund_origin, 2]) > bound - int(amt.sum())

    def _side_value(self, account: int, col: int) -> int:
        """Side-table counter ``col`` of ``account`` (0 when it has no side row)."""
        i = int(self._side_pos[account])
        return 0 if i < 0 else int(self.side_vals[i, col])

    def _side_row(self, account: int) -> int:
        """Row of ``account`` in the side table, inserted (zeros) when absent."""
        i = int(np.searchsorted(self.side_keys, account))
        if i < self.side_keys.shape[0] and self.side_keys[i] == account:
            return i
        self.side_keys = np.insert(self.side_keys, i, account)
        self.side_vals = np.insert(self.side_vals, i, 0, axis=0)
        self._reindex_side()
        return i

    def _reindex_side(self) -> None:
        """Rebuild the account -> side-row index after the side table's keys changed."""
        self._side_pos[self.side_keys] = np.arange(
            self.side_keys.shape[0], dtype=self._side_pos.dtype
        )

    # ------------------------------------------------------------------ state exchange
    def delta_since(self, version: int) -> Delta:
        """The cells this replica owns of the accounts it wrote after ``version`` of it (0: every
        account it ever wrote), tagged with its key: what a peer that has merged up to
        ``version`` lacks of this replica's counters."""
        return self._keys().sign_delta(self._owned_since(version))

    def merge_delta(self, delta: Delta) -> int:
        """Merge a :class:`Delta` from another replica; return the number of account rows changed.

        A delta whose tag does not verify under its source's key, whose source is not another
        replica of this ledger, or whose arrays do not fit raises :class:`DeltaRejected`, is
        recorded in :attr:`rejected` and changes nothing. A valid delta is merged once this
        replica has applied what its source's state depends on (``delta.deps``); until then it
        waits (0 rows changed now) and merges as soon as ops or other deltas bring that.
        """
        self._admit(delta, trusted=False)
        return self._offer(delta)

    def merge(self, other: Replica) -> int:
        """Merge the cells ``other`` (a replica of this ledger in this process) owns into this
        one; return the number of account rows changed.

        The same rule as :meth:`merge_delta`, without a tag (the object is at hand): only
        ``other``'s own counters are taken, and only once their dependencies are here. Merging a
        replica with itself changes nothing.
        """
        if other is self:
            return 0
        self._check_peer(other)
        delta = other._owned_since(0)
        self._admit(delta, trusted=True)
        return self._offer(delta)

    def sync_from(self, other: Replica) -> int:
        """Pull ``other``'s changes since the last sync from it; return rows changed here."""
        self._check_peer(other)
        return self.merge_delta(other.delta_since(self.synced_from.get(other.id, 0)))

    def _owned_since(self, version: int) -> Delta:
        """:meth:`delta_since` without the tag."""
        changed = self._leaf_ver > version
        # Runs of consecutive changed leaves become account spans: after a busy tick most leaves
        # have changed, and a few long spans are cheaper to gather and to check than rows.
        edges = np.flatnonzero(np.diff(np.concatenate([[False], changed, [False]]).astype(np.int8)))
        spans = np.stack(
            [
                edges[::2] * self.leaf_size,
                np.minimum(edges[1::2] * self.leaf_size, self.n_accounts),
            ],
            axis=1,
        )
        spans = spans.astype(np.int64).reshape(-1, 2)
        own, stake = kernels.gather_owned(self.cells, spans, self.id, self.n_replicas)
        n_replicas, s = self.n_replicas, self.id
        keys = self.side_keys
        side_cells = self.side_vals[
            :, [kernels.SPENT_N * n_replicas + s, kernels.RETURNED * n_replicas + s]
        ]
        lent = np.where(
            (keys % n_replicas == s)[:, None],
            self.side_vals[:, kernels.LENT * n_replicas : (kernels.LENT + 1) * n_replicas],
            0,
        )
        # Side rows this replica wrote since ``version`` and holds something of its own in.
        sel = (self._leaf_ver[keys // self.leaf_size] > version) & (
            side_cells.any(axis=1) | lent.any(axis=1)
        )
        return Delta(
            s,
            self.version,
            int(self.clock[s]),
            spans,
            own,
            stake,
            keys[sel],
            side_cells[sel],
            lent[sel & (keys % n_replicas == s)],
            self.totals[s].copy(),
            self._own_deps.copy(),
        )

    def _admit(self, delta: Delta, trusted: bool) -> None:
        """Refuse (record and raise :class:`DeltaRejected`) a delta that is not another replica's,
        does not fit this ledger, or whose tag does not verify (unless ``trusted``: made in this
        process from a replica object)."""
        if not isinstance(delta, Delta):
            raise LedgerError(f"merge_delta takes a Delta, got {type(delta).__name__}")
        source = delta.source
        if not isinstance(source, (int, np.integer)) or not 0 <= source < self.n_replicas:
            self._reject_delta(
                delta, f"source {source!r} is not a replica in [0, {self.n_replicas})"
            )
        if source == self.id:
            self._reject_delta(
                delta,
                f"source is this replica's own id {self.id}: another replica uses the same id",
            )
        fault = delta.fault(self.n_replicas, self.n_accounts, self.counter_max)
        if fault:
            self._reject_delta(delta, fault)
        if not trusted and not self._keys().verify_delta(delta):
            self._reject_delta(delta, f"tag does not verify under replica {source}'s key")

    def _reject_delta(self, delta: Delta, reason: str) -> None:
        self.rejected.append(Rejection(delta.delta_id, "delta", reason))
        raise DeltaRejected(delta.delta_id, reason)

    def _offer(self, delta: Delta) -> int:
        """Merge an admitted delta now if its dependencies are here, else keep it (the newest
        of its source) until they are; return the rows changed now."""
        s = delta.source
        if delta.seq <= self.clock[s]:
            # Nothing new: this replica has the source's ops up to delta.seq, so its cells of
            # the source are at least the delta's.
            self.synced_from[s] = max(self.synced_from.get(s, 0), int(delta.version))
            return 0
        held = self._deferred.get(s)
        if held is not None and held.version > delta.version:
            return 0  # an older delta of a source whose newer one already waits
        self._deferred[s] = delta
        return self._drain()[2]

    def _ready_deltas(self) -> list[Delta]:
        """The largest set of deferred deltas whose dependencies this replica's clock and the set
        itself cover (deltas of two sources may each wait for the other)."""
        if not self._deferred:
            return []
        live = dict(self._deferred)
        others = np.arange(self.n_replicas)
        for _ in range(len(live) + 1):  # each pass but the last drops a delta
            have = self.clock.copy()
            for s, d in live.items():
                have[s] = max(have[s], d.seq)
            blocked = [s for s, d in live.items() if ((have < d.deps) & (others != s)).any()]
            if not blocked:
                return list(live.values())
            for s in blocked:
                del live[s]
        return []

    def _merge_owned(self, delta: Delta) -> int:
        """Max-merge an admitted, ready delta's cells (all its source's own); return rows
        changed."""
        s, n_replicas = delta.source, self.n_replicas
        touched = np.zeros(self.tree.n_leaves, dtype=np.bool_)
        full = np.zeros((delta.side_keys.shape[0], 3 * n_replicas), dtype=np.int64)
        full[:, kernels.SPENT_N * n_replicas + s] = delta.side_cells[:, 0]
        full[:, kernels.RETURNED * n_replicas + s] = delta.side_cells[:, 1]
        full[
            delta.side_keys % n_replicas == s,
            kernels.LENT * n_replicas : (kernels.LENT + 1) * n_replicas,
        ] = delta.side_lent
        # Counters are >= 0, so the zeros in the other owners' columns change nothing.
        side_changed = self._merge_side(delta.side_keys, full)
        touched[side_changed // self.leaf_size] = True
        changed = int(
            kernels.merge_owned(
                self.cells,
                delta.spans,
                delta.cells,
                delta.stake,
                s,
                n_replicas,
                self.leaf_size,
                touched,
            )
        ) + int(side_changed.size)
        moved = (
            changed > 0 or bool((delta.totals > self.totals[s]).any()) or delta.seq > self.clock[s]
        )
        np.maximum(self.totals[s], delta.totals, out=self.totals[s])
        self.clock[s] = max(int(self.clock[s]), int(delta.seq))
        self.synced_from[s] = max(self.synced_from.get(s, 0), int(delta.version))
        if moved:
            self.version += 1
            self._leaf_dirty |= touched
        assert self.totals[s].max() <= self.counter_max and self.clock[s] >= delta.seq
        return changed

    def _merge_side(
        self, keys: npt.NDArray[np.int64], vals: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Max-merge another side table into this one; return the accounts whose side row
        changed."""
        before = self.side_keys.shape[0]
        self.side_keys, self.side_vals, changed = kernels.merge_side(
            self.side_keys, self.side_vals, keys, vals
        )
        if self.side_keys.shape[0] != before:
            self._reindex_side()
        assert self.side_keys.shape[0] >= before
        return changed

    def _check_peer(self, other: Replica) -> None:
        if (other.n_replicas, other.n_accounts) != (self.n_replicas, self.n_accounts):
            raise LedgerError(
                f"replica {other.id} has shape {other.n_replicas}x{other.n_accounts}, this one "
                f"{self.n_replicas}x{self.n_accounts}"
            )

    # ------------------------------------------------------------------ validation
    def _account(self, account: object) -> int:
        """``account`` as an int, or :class:`LedgerError` naming it and the range."""
        if not isinstance(account, (int, np.integer)) or isinstance(account, bool):
            raise LedgerError(
                f"account must be an integer in [0, {self.n_accounts}), got {account!r}"
            )
        if not 0 <= account < self.n_accounts:
            raise LedgerError(f"account {account!r} out of range [0, {self.n_accounts})")
        return int(account)

    def _accounts(self, accounts: object) -> npt.NDArray[np.int64]:
        """``accounts`` as int64[k], or :class:`LedgerError` naming the first bad one."""
        arr = np.asarray(accounts)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise LedgerError(f"accounts must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        acc = np.ascontiguousarray(arr, dtype=np.int64)
        if acc.size and (acc.min() < 0 or acc.max() >= self.n_accounts):
            bad = int(acc[(acc < 0) | (acc >= self.n_accounts)][0])
            raise LedgerError(f"account {bad} out of range [0, {self.n_accounts})")
        return acc

    def _keys(self) -> Keyring:
        """The keyring ops and deltas are signed and verified with (set again after a restore)."""
        assert self.keyring is not None, "a restored replica takes its keyring before it is used"
        return self.keyring

    def _kind(self, kind: object) -> OpKind:
        try:
            return OpKind(int(cast(SupportsInt, kind)))
        except (ValueError, TypeError):
            raise LedgerError(
                f"unknown op kind {kind!r}; expected one of {[k.name for k in OpKind]}"
            ) from None

    def _check_structure(
        self,
        kind: OpKind,
        origin: int,
        acc: npt.NDArray[np.int64],
        oth: npt.NDArray[np.int64],
        amt: npt.NDArray[np.int64],
        op_id: str,
    ) -> None:
        where = f"op {op_id} ({kind.name.lower()})"
        if acc.size == 0:
            raise LedgerError(f"{where}: no entries")
        assert 0 <= origin < self.n_replicas and acc.shape == oth.shape == amt.shape
        code, i = kernels.check_entries(
            int(kind), origin, self.n_replicas, self.n_accounts, MAX_AMOUNT, acc, oth, amt
        )
        if code == 0:
            return
        assert 0 <= i < acc.shape[0], "a fault names the entry it found"
        a = int(acc[i])
        messages = {
            kernels.BAD_ACCOUNT: f"account {a} out of range [0, {self.n_accounts})",
            kernels.BAD_AMOUNT: f"amount {int(amt[i])} must be in [1, {MAX_AMOUNT}] micro-credits",
            kernels.BAD_DESTINATION: f"destination account out of range [0, {self.n_accounts})",
            kernels.NOT_HOME: f"account {a} has home replica {a % self.n_replicas}; run this op "
            "there, not at "
            f"replica {origin}",
            kernels.BAD_TARGET: "target replica must be another replica in [0, "
            f"{self.n_replicas}), got "
            f"{oth.tolist()}",
            kernels.AT_HOME: "the home replica holds rights already; return from another replica",
            kernels.BAD_SEQ: "refund must name the spend's seq (>= 1)",
        }
        raise LedgerError(f"{where}: {messages[code]}")

    def _claim_refunds(
        self,
        acc: npt.NDArray[np.int64],
        oth: npt.NDArray[np.int64],
        amt: npt.NDArray[np.int64],
        refused: list[tuple[int, str]],
    ) -> npt.NDArray[np.bool_]:
        keep = np.ones(acc.shape[0], dtype=np.bool_)
        for i, (a, seq, x) in enumerate(zip(acc.tolist(), oth.tolist(), amt.tolist(), strict=True)):
            left = self._spends.get((seq, a), 0)
            if x > left:
                keep[i] = False
                refused.append(
                    (i, f"spend {self.id}:{seq} by account {a} has {left} refundable, asked {x}")
                )
            else:
                self._spends[(seq, a)] = left - x
        return keep

    def _touch(
        self, acc: npt.NDArray[np.int64], oth: npt.NDArray[np.int64] | None, own: bool
    ) -> None:
        """Flag the leaves of the accounts an op wrote for rehashing, and, for an op made here
        (``own``), as written by this replica at the new version (what deltas ship)."""
        self.version += 1
        for rows in (acc,) if oth is None else (acc, oth):
            leaves = rows // self.leaf_size
            self._leaf_dirty[leaves] = True
            if own:
                self._leaf_ver[leaves] = self.version

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """Serialise the whole replica; the last 32 bytes are a SHA-256 of everything before.

        Deferred deltas are not kept: the replica asks its peers again (its sync versions
        did not move for them).
        """
        from economy.ledger_codec import dump

        return dump(self)

    @classmethod
    def from_bytes(cls, data: bytes, keyring: Keyring) -> Replica:
        """Load :meth:`to_bytes` output exactly; raise :class:`CorruptStateError` if it was
        altered or does not parse.

        For a replica's own saved state only: the checksum catches accidents, not an adversary,
        who can recompute it. State from a peer travels as signed deltas (:meth:`merge_delta`).
        """
        from economy.ledger_codec import load

        return load(data, keyring)
