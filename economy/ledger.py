"""A replica of the credit ledger: a state-based CRDT with escrowed spending rights.

Per account and replica the state holds earned credits (G-Counter), spent credits (PN-Counter
whose negative side carries refunds), spending rights lent and returned between the account's home
replica (``account % R``) and the others, and the account's stake. See ``ledger_kernels`` for the
layout: a dense array for the counters nearly every op writes, a sorted side table for refunds
and escrow moves, which few accounts ever have. Properties the tests check:

* merge is element-wise max: commutative, associative, idempotent;
* a replica spends only rights it holds, so no interleaving of partitions and merges overdraws;
* conservation: sum(balance + stake) == minted - burned + refunded, in every replica's view;
* ops are idempotent (``origin:seq`` ids), causally delivered, and HMAC-authenticated;
* a rejected op is never half-applied.

Stake, unstake and slash run at the account's home replica, which serialises them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from economy import ledger_kernels as K
from economy.errors import LedgerError, OpRejected
from economy.merkle import MerkleDiff, MerkleTree
from economy.ops import KIND_NAMES, Keyring, Op, OpKind, make_entries

MAX_AMOUNT: int = 10**15
"""Largest amount of one entry, in micro-credits (10⁹ credits): keeps every counter far from int64 overflow."""

_SIDE_KINDS = (OpKind.REFUND, OpKind.LEND, OpKind.RETURN)


@dataclass(frozen=True)
class Rejection:
    """An op (or one entry of a local batch) that was refused, and why."""

    op_id: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Delta:
    """The rows of a replica that changed since a version (dense and side), plus its global vectors."""

    source: int
    version: int
    rows: npt.NDArray[np.int64]
    cells: npt.NDArray[np.int64]
    side_keys: npt.NDArray[np.int64]
    side_vals: npt.NDArray[np.int64]
    totals: npt.NDArray[np.int64]
    clock: npt.NDArray[np.int64]

    @property
    def nbytes(self) -> int:
        """Payload size in bytes."""
        return int(sum(a.nbytes for a in (self.rows, self.cells, self.side_keys, self.side_vals, self.totals, self.clock)))


def rights_at_homes(replicas: list[Replica], accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Spending rights each account's home replica (``account % R``) holds for it, in that replica's view.

    ``replicas`` are all R replicas of one ledger in id order. One pass in a numba kernel: the same
    values as asking each home replica with :meth:`Replica.rights_of`.
    """
    acc = np.ascontiguousarray(accounts, dtype=np.int64)
    if len(replicas) == 0 or any(r.id != i or r.R != len(replicas) for i, r in enumerate(replicas)):
        raise LedgerError("rights_at_homes needs every replica of the ledger, in id order")
    if acc.size and (acc.min() < 0 or acc.max() >= replicas[0].N):
        raise LedgerError(f"accounts out of range [0, {replicas[0].N})")
    return K.gather_home_rights(acc, tuple(r.cells for r in replicas), tuple(r._side_pos for r in replicas),  # type: ignore[no-any-return]
                                tuple(r.side_vals for r in replicas))


class Replica:
    """One replica of the ledger for ``n_accounts`` accounts replicated over ``n_replicas``.

    Balances and stakes are int64 micro-credits. Local ops (``mint``, ``transfer``, ...) are checked
    against this replica's own view and return the signed :class:`Op` to send to the others;
    :meth:`receive` applies ops from other replicas; :meth:`merge`, :meth:`delta_since` and
    :meth:`merge_delta` exchange state.
    """

    def __init__(
        self, replica_id: int, n_replicas: int, n_accounts: int, keyring: Keyring, leaf_size: int = 1024
    ) -> None:
        for name, value, low in (("n_replicas", n_replicas, 1), ("n_accounts", n_accounts, 1), ("leaf_size", leaf_size, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise LedgerError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0 <= replica_id < n_replicas:
            raise LedgerError(f"replica_id must be in [0, {n_replicas}), got {replica_id!r}")
        self.id = int(replica_id)
        self.R = int(n_replicas)
        self.N = int(n_accounts)
        self.leaf_size = int(leaf_size)
        self.keyring = keyring
        self.cells = np.zeros((self.N, 2 * self.R + 2), dtype=np.int64)
        self.side_keys = np.zeros(0, dtype=np.int64)
        self.side_vals = np.zeros((0, 3 * self.R), dtype=np.int64)
        # account -> side row, -1 if none; int32 (4 bytes an account) while the side table, which never
        # holds more rows than there are accounts, fits it
        self._side_pos = np.full(self.N, -1, dtype=np.int32 if self.N < 2**31 else np.int64)
        self.totals = np.zeros((self.R, 3), dtype=np.int64)  # minted, burned, refunded per origin
        self.clock = np.zeros(self.R, dtype=np.int64)
        self.tree = MerkleTree(self.N, self.leaf_size)
        self._leaf_dirty = np.ones(self.tree.n_leaves, dtype=np.bool_)
        self._leaf_ver = np.zeros(self.tree.n_leaves, dtype=np.int64)
        self.version = 0
        self._pending: dict[tuple[int, int], Op] = {}
        self._spends: dict[tuple[int, int], int] = {}  # (spend seq, account) -> refundable remainder
        self.synced_from: dict[int, int] = {}
        self.rejected: list[Rejection] = []

    # ------------------------------------------------------------------ queries
    def balance(self, account: int) -> int:
        """Liquid balance of ``account`` in this replica's view, micro-credits."""
        if not 0 <= account < self.N:
            raise LedgerError(f"account {account!r} out of range [0, {self.N})")
        return int(K.row_balance(self.cells, self._side_pos, self.side_vals, account, self.R))

    def balances(self) -> npt.NDArray[np.int64]:
        """All liquid balances: int64[n_accounts], micro-credits (computed from the counters: one
        pass over every account)."""
        return K.balances_of(self.cells, self._side_pos, self.side_vals, self.R)  # type: ignore[no-any-return]

    def staked(self, account: int | None = None) -> npt.NDArray[np.int64] | int:
        """Stake of ``account`` (or int64[n_accounts] of all stakes), micro-credits."""
        if account is not None:  # one row, not a pass over every account
            return int(self.cells[account, 2 * self.R] - self.cells[account, 2 * self.R + 1])
        return self.cells[:, 2 * self.R] - self.cells[:, 2 * self.R + 1]

    def staked_of(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Stake of each of ``accounts``: int64[len(accounts)], micro-credits."""
        return self.cells[accounts, 2 * self.R] - self.cells[accounts, 2 * self.R + 1]

    def rights(self, account: int | None = None) -> npt.NDArray[np.int64] | int:
        """Spending rights this replica holds for ``account`` (or all accounts)."""
        if account is None:
            return K.rights_of(self.cells, self._side_pos, self.side_vals, None, self.id, self.R)  # type: ignore[no-any-return]
        if not 0 <= account < self.N:
            raise LedgerError(f"account {account!r} out of range [0, {self.N})")
        return int(K.row_rights(self.cells, self._side_pos, self.side_vals, account, self.id, self.R))

    def rights_of(self, accounts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Spending rights this replica holds for each of ``accounts``: int64[len(accounts)]."""
        acc = np.ascontiguousarray(accounts, dtype=np.int64)
        if acc.size and (acc.min() < 0 or acc.max() >= self.N):
            raise LedgerError(f"accounts out of range [0, {self.N})")
        return K.rights_of(self.cells, self._side_pos, self.side_vals, acc, self.id, self.R)  # type: ignore[no-any-return]

    def counters(self, account: int) -> dict[str, npt.NDArray[np.int64] | int]:
        """Every counter of ``account`` in this replica's view: int64[R] per block, plus stake in/out."""
        R = self.R
        row = self.cells[account]
        out: dict[str, npt.NDArray[np.int64] | int] = {
            "earned": row[0:R].copy(), "spent_p": row[R : 2 * R].copy(),
            "stake_in": int(row[2 * R]), "stake_out": int(row[2 * R + 1]),
        }
        i = int(self._side_pos[account])
        side = self.side_vals[i] if i >= 0 else np.zeros(3 * R, dtype=np.int64)
        out.update(spent_n=side[0:R].copy(), lent=side[R : 2 * R].copy(), returned=side[2 * R :].copy())
        return out

    def rights_as(self, account: int, replica: int) -> int:
        """Rights of ``account`` at ``replica`` computed from this replica's state (true once converged)."""
        return int(K.row_rights(self.cells, self._side_pos, self.side_vals, account, replica, self.R))

    def home(self, account: int) -> int:
        """The replica that serialises ``account``'s stake ops and lends its rights."""
        return account % self.R

    def supply(self) -> tuple[int, int]:
        """``(held, issued)``: sum of balances and stakes, and minted - burned + refunded."""
        held = int(K.held(self.cells, self._side_pos, self.side_vals, self.R))
        t = self.totals.sum(axis=0)
        return held, int(t[0] - t[1] + t[2])

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

    # ------------------------------------------------------------------ local ops
    def execute(
        self, kind: OpKind, accounts: object, others: object, amounts: object
    ) -> tuple[Op | None, list[tuple[int, str]]]:
        """Apply a batch of entries created here; return the signed op and the refused entries.

        Entries are checked in order against this replica's rights; refused entries (``(index,
        reason)``) are left out of the op and recorded in :attr:`rejected`. A structurally invalid
        batch raises :class:`LedgerError` and changes nothing.
        """
        kind = self._kind(kind)
        acc, oth, amt = make_entries(accounts, others, amounts)
        seq = int(self.clock[self.id]) + 1
        op_id = f"{self.id}:{seq}"
        self._check_structure(kind, self.id, acc, oth, amt, op_id)
        refused: list[tuple[int, str]] = []
        if kind == OpKind.REFUND:
            keep = self._claim_refunds(acc, oth, amt, refused)
            acc, oth, amt = acc[keep], oth[keep], amt[keep]
        # Entries apply as they are checked; refused entries changed nothing and are left out of the op.
        outcome = self._apply(kind, self.id, acc, oth, amt, check=True)
        bad = np.flatnonzero(outcome)
        for i in bad:
            refused.append((int(i), K.REASONS[int(outcome[i])]))
        ok = outcome == 0
        for index, reason in refused:
            self.rejected.append(Rejection(f"{op_id}[{index}]", KIND_NAMES[kind], reason))
        if not ok.any():
            return None, refused
        acc, oth, amt = acc[ok], oth[ok], amt[ok]
        op = self.keyring.sign(Op(self.id, seq, kind, acc, oth, amt, self.clock.copy()))
        self.clock[self.id] = seq
        if kind == OpKind.SPEND:
            for a, x in zip(acc.tolist(), amt.tolist()):
                self._spends[(seq, a)] = self._spends.get((seq, a), 0) + x
        self._touch(acc, oth if kind == OpKind.TRANSFER else None)
        return op, refused

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
        """Move ``amount`` of ``account``'s spending rights from its home replica (here) to another."""
        return self._single(OpKind.LEND, account, to_replica, amount)

    def give_back(self, account: int, amount: int) -> Op:
        """Return ``amount`` of ``account``'s spending rights held here to its home replica."""
        return self._single(OpKind.RETURN, account, 0, amount)

    # ------------------------------------------------------------------ remote ops
    def receive(self, op: Op) -> str:
        """Apply an op from any replica: ``"applied"``, ``"duplicate"`` or ``"buffered"``.

        An op whose tag does not verify under its origin's key, or whose entries are malformed,
        raises :class:`OpRejected`, is recorded in :attr:`rejected`, and changes nothing.
        """
        op_id = f"{op.origin}:{op.seq}"
        if not (0 <= op.origin < self.R) or op.deps.shape != (self.R,):
            return self._reject_remote(op, f"origin {op.origin} or clock length {op.deps.shape} does not fit {self.R} replicas")
        if not self.keyring.verify(op):
            return self._reject_remote(op, f"tag does not verify under replica {op.origin}'s key")
        if op.seq <= self.clock[op.origin] or (op.origin, op.seq) in self._pending:
            return "duplicate"
        try:
            kind = self._kind(op.kind)
            acc, oth, amt = make_entries(op.accounts, op.others, op.amounts)
            self._check_structure(kind, op.origin, acc, oth, amt, op_id)
        except LedgerError as exc:
            return self._reject_remote(op, str(exc))
        self._pending[(op.origin, op.seq)] = op
        applied = self._drain()
        return "applied" if (op.origin, op.seq) in applied else "buffered"

    def _reject_remote(self, op: Op, reason: str) -> str:
        self.rejected.append(Rejection(f"{op.origin}:{op.seq}", KIND_NAMES.get(int(op.kind), "?"), reason))
        raise OpRejected(f"{op.origin}:{op.seq}", reason)

    def _drain(self) -> set[tuple[int, int]]:
        """Apply every pending op whose turn has come; drop those already covered by the clock."""
        applied: set[tuple[int, int]] = set()
        progress = True
        while progress and self._pending:
            progress = False
            for key in sorted(self._pending):
                op = self._pending[key]
                if op.seq <= self.clock[op.origin]:
                    del self._pending[key]
                    continue
                if op.seq == self.clock[op.origin] + 1 and all(
                        self.clock[r] >= op.deps[r] for r in range(self.R) if r != op.origin):
                    self._apply(op.kind, op.origin, op.accounts, op.others, op.amounts, check=False)
                    self.clock[op.origin] = op.seq
                    self._touch(op.accounts, op.others if op.kind == OpKind.TRANSFER else None)
                    del self._pending[key]
                    applied.add(key)
                    progress = True
        return applied

    def _apply(self, kind: OpKind, origin: int, acc: npt.NDArray[np.int64], oth: npt.NDArray[np.int64],
               amt: npt.NDArray[np.int64], check: bool) -> npt.NDArray[np.int8]:
        """Apply validated entries; return per-entry outcome codes (0 = applied)."""
        if kind not in _SIDE_KINDS:
            return K.apply_entries(int(kind), origin, self.id, self.R, acc, oth, amt, self.cells, self._side_pos,
                                   self.side_vals, self.totals, check)
        # Refunds and escrow moves are rare: a Python loop over the side table is cheap enough.
        R = self.R
        out = np.zeros(acc.shape[0], dtype=np.int8)
        for i, (a, o, x) in enumerate(zip(acc.tolist(), oth.tolist(), amt.tolist())):
            if check and kind != OpKind.REFUND and K.row_rights(self.cells, self._side_pos, self.side_vals, a, self.id, R) < x:
                out[i] = K.NO_RIGHTS
                continue
            row = self._side_row(a)
            if kind == OpKind.REFUND:
                self.side_vals[row, K.SPENT_N * R + origin] += x
                self.totals[origin, 2] += x
            elif kind == OpKind.LEND:
                self.side_vals[row, K.LENT * R + o] += x
            else:
                self.side_vals[row, K.RETURNED * R + origin] += x
        return out

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
        self._side_pos[self.side_keys] = np.arange(self.side_keys.shape[0], dtype=self._side_pos.dtype)

    def _merge_side(self, keys: npt.NDArray[np.int64], vals: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Max-merge another side table into this one; return the accounts whose side row changed."""
        before = self.side_keys.shape[0]
        self.side_keys, self.side_vals, changed = K.merge_side(self.side_keys, self.side_vals, keys, vals)
        if self.side_keys.shape[0] != before:
            self._reindex_side()
        return changed

    def _merge_state(self, rows: npt.NDArray[np.int64], cells: npt.NDArray[np.int64], keys: npt.NDArray[np.int64],
                     vals: npt.NDArray[np.int64]) -> tuple[int, npt.NDArray[np.bool_]]:
        """Merge side rows, then dense rows (empty ``rows``: the whole array); return (changed, touched leaves)."""
        touched = np.zeros(self.tree.n_leaves, dtype=np.bool_)
        side_changed = self._merge_side(keys, vals)
        if side_changed.size:
            touched[side_changed // self.leaf_size] = True
        changed = 0
        if cells.shape[0]:
            changed = K.merge_rows(self.cells, rows, cells, self.leaf_size, touched)
        return int(changed) + int(side_changed.size), touched

    @property
    def pending(self) -> int:
        """Ops received but waiting for their causal predecessors."""
        return len(self._pending)

    # ------------------------------------------------------------------ state exchange
    def merge(self, other: Replica) -> int:
        """Merge ``other``'s whole state into this one; return the number of account rows changed."""
        self._check_peer(other)
        changed, touched = self._merge_state(np.empty(0, np.int64), other.cells, other.side_keys, other.side_vals)
        self._after_merge(touched, other.totals, other.clock, changed)
        return changed

    def delta_since(self, version: int) -> Delta:
        """The rows changed after ``version`` of this replica (0 = everything)."""
        changed = self._leaf_ver > version
        # Runs of consecutive changed leaves are copied as slices: after a busy tick most leaves have
        # changed, and one block copy is several times cheaper than gathering the same rows by index.
        edges = np.flatnonzero(np.diff(np.concatenate([[False], changed, [False]]).astype(np.int8)))
        spans = [(lo * self.leaf_size, min(hi * self.leaf_size, self.N)) for lo, hi in zip(edges[::2].tolist(), edges[1::2].tolist())]
        rows = np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in spans]) if spans else np.empty(0, np.int64)
        cells = (np.concatenate([self.cells[lo:hi] for lo, hi in spans]) if spans
                 else np.empty((0, self.cells.shape[1]), np.int64))
        side = self._leaf_ver[self.side_keys // self.leaf_size] > version
        return Delta(self.id, self.version, rows, cells, self.side_keys[side], self.side_vals[side],
                     self.totals.copy(), self.clock.copy())

    def merge_delta(self, delta: Delta) -> int:
        """Merge a :class:`Delta`; return the number of account rows changed."""
        if (delta.cells.shape[1:] != self.cells.shape[1:] or delta.clock.shape != self.clock.shape
                or delta.side_vals.shape[1:] != self.side_vals.shape[1:] or delta.rows.shape[0] != delta.cells.shape[0]):
            raise LedgerError(
                f"delta shape {delta.cells.shape[1:]}/{delta.side_vals.shape[1:]}/{delta.clock.shape} does not fit "
                f"this ledger ({self.cells.shape[1:]}/{self.side_vals.shape[1:]}/{self.clock.shape})"
            )
        for name, idx in (("rows", delta.rows), ("side keys", delta.side_keys)):
            if idx.size and (idx.min() < 0 or idx.max() >= self.N):
                raise LedgerError(f"delta {name} out of range [0, {self.N})")
        if delta.side_keys.size > 1 and (np.diff(delta.side_keys) <= 0).any():
            raise LedgerError("delta side keys must be sorted and unique")
        changed, touched = self._merge_state(delta.rows, delta.cells, delta.side_keys, delta.side_vals)
        self._after_merge(touched, delta.totals, delta.clock, changed)
        self.synced_from[delta.source] = max(self.synced_from.get(delta.source, 0), delta.version)
        return changed

    def sync_from(self, other: Replica) -> int:
        """Pull ``other``'s changes since the last sync from it; return rows changed here."""
        self._check_peer(other)
        return self.merge_delta(other.delta_since(self.synced_from.get(other.id, 0)))

    def _after_merge(self, touched: npt.NDArray[np.bool_], totals: npt.NDArray[np.int64], clock: npt.NDArray[np.int64], changed: int) -> None:
        moved = bool(changed) or bool((totals > self.totals).any()) or bool((clock > self.clock).any())
        np.maximum(self.totals, totals, out=self.totals)
        np.maximum(self.clock, clock, out=self.clock)
        if moved:
            self.version += 1
            self._leaf_ver[touched] = self.version
            self._leaf_dirty |= touched
        if self._pending:
            self._drain()

    def _check_peer(self, other: Replica) -> None:
        if (other.R, other.N) != (self.R, self.N):
            raise LedgerError(f"replica {other.id} has shape {other.R}x{other.N}, this one {self.R}x{self.N}")

    # ------------------------------------------------------------------ validation
    def _kind(self, kind: object) -> OpKind:
        try:
            return OpKind(int(kind))  # type: ignore[call-overload]
        except (ValueError, TypeError):
            raise LedgerError(f"unknown op kind {kind!r}; expected one of {[k.name for k in OpKind]}") from None

    def _check_structure(
        self, kind: OpKind, origin: int, acc: npt.NDArray[np.int64], oth: npt.NDArray[np.int64],
        amt: npt.NDArray[np.int64], op_id: str,
    ) -> None:
        where = f"op {op_id} ({kind.name.lower()})"
        if acc.size == 0:
            raise LedgerError(f"{where}: no entries")
        code, i = K.check_entries(int(kind), origin, self.R, self.N, MAX_AMOUNT, acc, oth, amt)
        if code == 0:
            return
        a = int(acc[i])
        messages = {
            K.BAD_ACCOUNT: f"account {a} out of range [0, {self.N})",
            K.BAD_AMOUNT: f"amount {int(amt[i])} must be in [1, {MAX_AMOUNT}] micro-credits",
            K.BAD_DESTINATION: f"destination account out of range [0, {self.N})",
            K.NOT_HOME: f"account {a} has home replica {a % self.R}; run this op there, not at replica {origin}",
            K.BAD_TARGET: f"target replica must be another replica in [0, {self.R}), got {oth.tolist()}",
            K.AT_HOME: "the home replica holds rights already; return from another replica",
            K.BAD_SEQ: "refund must name the spend's seq (>= 1)",
        }
        raise LedgerError(f"{where}: {messages[code]}")

    def _claim_refunds(self, acc: npt.NDArray[np.int64], oth: npt.NDArray[np.int64], amt: npt.NDArray[np.int64], refused: list[tuple[int, str]]) -> npt.NDArray[np.bool_]:
        keep = np.ones(acc.shape[0], dtype=np.bool_)
        for i, (a, seq, x) in enumerate(zip(acc.tolist(), oth.tolist(), amt.tolist())):
            left = self._spends.get((seq, a), 0)
            if x > left:
                keep[i] = False
                refused.append((i, f"spend {self.id}:{seq} by account {a} has {left} refundable, asked {x}"))
            else:
                self._spends[(seq, a)] = left - x
        return keep

    def _touch(self, acc: npt.NDArray[np.int64], oth: npt.NDArray[np.int64] | None) -> None:
        self.version += 1
        leaves = acc // self.leaf_size
        self._leaf_ver[leaves] = self.version
        self._leaf_dirty[leaves] = True
        if oth is not None:
            leaves = oth // self.leaf_size
            self._leaf_ver[leaves] = self.version
            self._leaf_dirty[leaves] = True

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """Serialise the whole replica; the last 32 bytes are a SHA-256 of everything before."""
        from economy.ledger_codec import dump

        return dump(self)

    @classmethod
    def from_bytes(cls, data: bytes, keyring: Keyring) -> Replica:
        """Load :meth:`to_bytes` output exactly; raise :class:`CorruptStateError` if it was altered."""
        from economy.ledger_codec import load

        return load(data, keyring)
