"""The signed messages ledger replicas exchange: ops and state deltas, and the keys that tag them.

An :class:`Op` is a batch of one or more entries of one kind, created at one replica (its
``origin``) with the next sequence number of that origin. ``(origin, seq)`` is the op's unique id:
a replica applies each origin's ops once and in sequence order, so a duplicated or replayed op
changes nothing.

A :class:`Delta` is what anti-entropy ships: the cells its ``source`` replica owns (the counters
only it writes, see ``ledger_kernels``) of the accounts it wrote after some version.

Both carry an HMAC-SHA256 tag under the sending replica's key, over canonical little-endian bytes
(:meth:`Op.payload`, :meth:`Delta.payload_parts`). A delta's bytes start with a fixed prefix and an
op's with its origin (a small integer), so an op's tag can never pass as a delta's or the reverse.
A replica refuses a message whose tag does not verify, so no one without a replica's key can
speak for it. The keys are symmetric: whoever holds a :class:`Keyring` can tag as any replica in
it. The tags keep out everyone outside the set of replicas, not a replica that lies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import cast

import numpy as np
import numpy.typing as npt

from economy.errors import LedgerError


class OpKind(IntEnum):
    """What an op's entries do. ``others`` holds the kind-specific second operand."""

    MINT = 0  # credit `account` with newly created credits
    SPEND = 1  # pay a refundable fee to the system
    TRANSFER = 2  # move credits from `account` to `others` (an account)
    REFUND = 3  # return part of an earlier SPEND; `others` is that spend's seq at this origin
    STAKE = 4  # lock liquid credits as stake (at the account's home replica)
    UNSTAKE = 5  # release stake back to liquid credits at once (home replica)
    SLASH = 6  # destroy stake (home replica)
    BURN = 7  # destroy liquid credits, not refundable
    LEND = 8  # home replica moves spending rights to replica `others`
    RETURN = 9  # a non-home replica gives its spending rights back to the home replica


KIND_NAMES: dict[int, str] = {k.value: k.name.lower() for k in OpKind}


@dataclass(frozen=True)
class Op:
    """One authenticated batch of ledger entries.

    accounts, others, amounts: int64[k]; amounts in micro-credits, all > 0.
    deps: int64[R], the origin's clock when it made the op: a replica applies the op only after it
    has applied every op counted there (causal delivery), so every replica's view stays consistent.
    """

    origin: int
    seq: int
    kind: OpKind
    accounts: npt.NDArray[np.int64]
    others: npt.NDArray[np.int64]
    amounts: npt.NDArray[np.int64]
    deps: npt.NDArray[np.int64]
    tag: bytes = field(default=b"", compare=False)

    @property
    def op_id(self) -> str:
        """``"origin:seq"``, unique across the ledger."""
        return f"{self.origin}:{self.seq}"

    def __len__(self) -> int:
        return int(self.accounts.shape[0])

    def payload(self) -> bytes:
        """Canonical bytes covered by the tag."""
        return b"".join(self.payload_parts())

    def payload_parts(self) -> tuple[bytes | memoryview, ...]:
        """:meth:`payload` in its five parts, the columns as views of the arrays' memory (no
        copy)."""
        head = struct.pack(
            "<qqqqq", self.origin, self.seq, int(self.kind), len(self), len(self.deps)
        )
        cols = (self.accounts, self.others, self.amounts, self.deps)
        return (
            head,
            *(np.ascontiguousarray(c, dtype=np.int64).data.cast("B") for c in cols),
        )

    def with_tag(self, tag: bytes) -> Op:
        """A copy carrying ``tag``."""
        return Op(
            self.origin,
            self.seq,
            self.kind,
            self.accounts,
            self.others,
            self.amounts,
            self.deps,
            tag,
        )

    def encode(self) -> bytes:
        """Wire bytes: the payload followed by the 32-byte tag."""
        return self.payload() + self.tag.ljust(32, b"\0")[:32]

    @classmethod
    def decode(cls, data: bytes) -> Op:
        """Inverse of :meth:`encode`; raise :class:`LedgerError` on malformed bytes."""
        try:
            origin, seq, kind, k, r = struct.unpack_from("<qqqqq", data, 0)
            if k < 0 or r < 0 or len(data) != 40 + 8 * (3 * k + r) + 32:
                raise ValueError("length does not match header")
            cols = np.frombuffer(data, dtype=np.int64, count=3 * k + r, offset=40).copy()
            return cls(
                origin,
                seq,
                OpKind(kind),
                cols[:k],
                cols[k : 2 * k],
                cols[2 * k : 3 * k],
                cols[3 * k :],
                bytes(data[-32:]),
            )
        except (struct.error, ValueError) as exc:
            raise LedgerError(f"malformed op bytes ({len(data)} bytes): {exc}") from exc


def make_entries(
    accounts: object, others: object, amounts: object
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Coerce entry columns to equal-length int64 arrays, or raise :class:`LedgerError`."""
    # The common case, checked without numpy's dtype machinery.
    if all(
        type(c) is np.ndarray and c.dtype == np.int64 and c.ndim == 1 and c.flags.c_contiguous
        for c in (accounts, others, amounts)
    ):
        acc = cast(npt.NDArray[np.int64], accounts)
        oth = cast(npt.NDArray[np.int64], others)
        amt = cast(npt.NDArray[np.int64], amounts)
        if acc.shape[0] == oth.shape[0] == amt.shape[0]:
            return acc, oth, amt
    cols = []
    for name, col in (("accounts", accounts), ("others", others), ("amounts", amounts)):
        arr = np.asarray(col)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise LedgerError(f"{name} must be a scalar or 1-D array, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise LedgerError(
                f"{name} must be integers (credits are int64 micro-credits), got dtype {arr.dtype}"
            )
        cols.append(np.ascontiguousarray(arr, dtype=np.int64))
    if not (cols[0].shape == cols[1].shape == cols[2].shape):
        raise LedgerError(
            f"entry columns differ in length: accounts {cols[0].shape[0]}, "
            f"others {cols[1].shape[0]}, amounts {cols[2].shape[0]}"
        )
    return cols[0], cols[1], cols[2]


_DELTA_PREFIX = b"AGORA-DELTA-1\n"
_DELTA_ARRAYS = (
    "spans",
    "cells",
    "stake",
    "side_keys",
    "side_cells",
    "side_lent",
    "totals",
    "deps",
)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Delta:
    """The cells replica ``source`` owns, of the accounts it wrote after a version; tagged by it.

    A replica owns column ``source`` of the per-replica blocks (earned, spent_p, spent_n,
    returned), row ``source`` of the totals, its own clock entry, and stake and lent of the
    accounts whose home it is (``account % R == source``). A delta holds those cells and nothing
    else, so merging it cannot move a counter another replica writes. Arrays are int64:

    * ``spans: [k, 2]``: account ranges ``[lo, hi)``, increasing and disjoint;
    * ``cells: [n, 2]``: earned and spent_p at ``source`` of each account of the spans, in order;
    * ``stake: [n_home, 2]``: stake_in and stake_out of the spans' accounts whose home is
      ``source``, in order;
    * ``side_keys: [m]``: sorted accounts with a side row; ``side_cells: [m, 2]``: their spent_n
      and returned at ``source``; ``side_lent: [m_home, R]``: the lent block of the side keys
      whose home is ``source``;
    * ``totals: [3]``: micro-credits minted, burned and refunded by ``source``;
    * ``deps: [R]``: the clock ``source``'s latest own op was made with. A receiver merges the
      delta once it has applied that much of every other replica (causal delivery, as for ops),
      so every view it shows is one the ledger could have been in.

    ``version`` is the source's state version when it made the delta; ``seq`` its clock entry
    (its ops ``1..seq`` are in the cells); ``tag`` the HMAC-SHA256 of :meth:`payload_parts`
    under the source's key.
    """

    source: int
    version: int
    seq: int
    spans: npt.NDArray[np.int64]
    cells: npt.NDArray[np.int64]
    stake: npt.NDArray[np.int64]
    side_keys: npt.NDArray[np.int64]
    side_cells: npt.NDArray[np.int64]
    side_lent: npt.NDArray[np.int64]
    totals: npt.NDArray[np.int64]
    deps: npt.NDArray[np.int64]
    tag: bytes = field(default=b"", compare=False, repr=False)

    @property
    def delta_id(self) -> str:
        """``"delta source@version"``, how refusals name it."""
        return f"delta {self.source}@{self.version}"

    @property
    def nbytes(self) -> int:
        """Payload size in bytes."""
        return int(sum(getattr(self, name).nbytes for name in _DELTA_ARRAYS))

    def payload_parts(self) -> tuple[bytes | memoryview, ...]:
        """Canonical bytes covered by the tag: a prefix, a header of the ids and every array's
        shape, then each array as little-endian int64 in C order (views, no copy where the
        arrays are already so)."""
        arrays = [np.ascontiguousarray(getattr(self, name), dtype="<i8") for name in _DELTA_ARRAYS]
        if any(a.ndim not in (1, 2) for a in arrays):
            raise LedgerError("every array of a delta must be 1-D or 2-D")
        shapes = [d for a in arrays for d in (a.shape + (1,))[:2]]
        head = struct.pack(f"<{3 + len(shapes)}q", self.source, self.version, self.seq, *shapes)
        return (_DELTA_PREFIX, head, *(a.reshape(-1).data.cast("B") for a in arrays))

    def with_tag(self, tag: bytes) -> Delta:
        """A copy carrying ``tag``."""
        return dataclasses.replace(self, tag=tag)

    def fault(self, n_replicas: int, n_accounts: int, counter_max: int) -> str:
        """Why this delta does not fit a ledger of ``n_replicas`` x ``n_accounts`` whose counters
        stay in ``[0, counter_max]``; ``""`` when it fits. Checks shapes, ranges and order only."""
        assert n_replicas >= 1 and n_accounts >= 1 and counter_max >= 1
        s = self.source
        for name in _DELTA_ARRAYS:
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.dtype != np.int64:
                return f"{name} must be an int64 array, got {type(a).__name__}"
        ids = (s, self.version, self.seq)
        if not all(isinstance(v, (int, np.integer)) and v >= 0 for v in ids):
            return "source, version and seq must be integers >= 0"
        sp = self.spans
        if sp.ndim != 2 or sp.shape[1] != 2:
            return f"spans must have shape (k, 2), got {sp.shape}"
        if sp.size and (
            (sp[:, 0] >= sp[:, 1]).any()
            or sp[0, 0] < 0
            or sp[-1, 1] > n_accounts
            or (sp[1:, 0] < sp[:-1, 1]).any()
        ):
            return f"spans must be increasing, disjoint, non-empty ranges within [0, {n_accounts})"
        keys = self.side_keys
        if keys.ndim != 1 or (
            keys.size and (keys[0] < 0 or keys[-1] >= n_accounts or (np.diff(keys) <= 0).any())
        ):
            return f"side keys must be sorted, unique accounts in [0, {n_accounts})"
        n_home = int(((sp[:, 1] - 1 - s) // n_replicas - (sp[:, 0] - 1 - s) // n_replicas).sum())
        expected = {
            "cells": (int((sp[:, 1] - sp[:, 0]).sum()), 2),
            "stake": (n_home, 2),
            "side_cells": (keys.size, 2),
            "side_lent": (int((keys % n_replicas == s).sum()), n_replicas),
            "totals": (3,),
            "deps": (n_replicas,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                return f"{name} has shape {getattr(self, name).shape}, expected {shape}"
        for name in ("cells", "stake", "side_cells", "side_lent", "totals"):
            a = getattr(self, name)
            if a.size and (a.min() < 0 or a.max() > counter_max):
                return f"{name} holds a counter outside [0, {counter_max}]"
        if (self.deps < 0).any():
            return "deps must be >= 0"
        if self.stake.size and (self.stake[:, 1] > self.stake[:, 0]).any():
            return "stake_out exceeds stake_in for an account"
        return ""


class Keyring:
    """Per-replica HMAC keys. A replica tags with its own key and verifies with everyone's.

    Two :class:`~economy.ledger.Replica` objects built on the same id and keyring are one writer
    split in two: the ledger's guarantees assume each id is used by one replica only.
    """

    def __init__(self, keys: dict[int, bytes]) -> None:
        for replica, key in keys.items():
            if not isinstance(replica, int) or replica < 0:
                raise LedgerError(f"replica ids must be integers >= 0, got {replica!r}")
            if not isinstance(key, bytes) or len(key) < 16:
                raise LedgerError(f"replica {replica}'s key must be at least 16 bytes")
        self._keys = dict(keys)

    @classmethod
    def derive(cls, n_replicas: int, secret: bytes) -> Keyring:
        """Deterministic keys for ``n_replicas`` replicas from one shared ``secret``.

        Anyone who knows ``secret`` can rebuild every key and tag as any replica. A world that
        derives its keys from its seed (which its summary records) is a reproducible simulation,
        not an authenticated one: use :meth:`generate` for a served world or a signed run.
        """
        return cls(
            {
                r: hashlib.sha256(secret + b"/replica/" + str(r).encode()).digest()
                for r in range(n_replicas)
            }
        )

    @classmethod
    def generate(cls, n_replicas: int) -> Keyring:
        """Fresh 32-byte keys for ``n_replicas`` replicas from the operating system's random source.

        Nothing can rebuild them: keep the keyring (or save it yourself) for as long as the
        replicas must verify each other.
        """
        if not isinstance(n_replicas, int) or n_replicas < 1:
            raise LedgerError(f"n_replicas must be an integer >= 1, got {n_replicas!r}")
        return cls({r: secrets.token_bytes(32) for r in range(n_replicas)})

    def __repr__(self) -> str:
        # Never the keys: a repr ends up in logs and tracebacks.
        return f"Keyring(replicas={sorted(self._keys)})"

    def holds(self, replica: int) -> bool:
        """Whether this keyring has a key for ``replica``."""
        return replica in self._keys

    def sign(self, op: Op) -> Op:
        """Return ``op`` tagged with its origin's key."""
        return op.with_tag(_mac(self._key(op.origin), op.payload_parts()))

    def verify(self, op: Op) -> bool:
        """True when ``op``'s tag was made with its origin's key."""
        key = self._keys.get(op.origin)
        if key is None or len(op.tag) != 32:
            return False
        return hmac.compare_digest(_mac(key, op.payload_parts()), op.tag)

    def sign_delta(self, delta: Delta) -> Delta:
        """Return ``delta`` tagged with its source's key."""
        return delta.with_tag(_mac(self._key(delta.source), delta.payload_parts()))

    def verify_delta(self, delta: Delta) -> bool:
        """True when ``delta``'s tag was made with its source's key over its canonical bytes."""
        key = self._keys.get(delta.source)
        if key is None or not isinstance(delta.tag, bytes) or len(delta.tag) != 32:
            return False
        return hmac.compare_digest(_mac(key, delta.payload_parts()), delta.tag)

    def _key(self, replica: int) -> bytes:
        key = self._keys.get(replica)
        if key is None:
            raise LedgerError(
                f"no key for replica {replica}; this keyring holds {sorted(self._keys)}"
            )
        return key


def _mac(key: bytes, parts: Iterable[bytes | memoryview]) -> bytes:
    """HMAC-SHA256 of the parts, fed one by one (the same digest as over the joined bytes)."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        h.update(part)
    return h.digest()
