"""Ledger operations: what they are, how they are identified and authenticated.

An :class:`Op` is a batch of one or more entries of one kind, created at one replica (its
``origin``) with the next sequence number of that origin. ``(origin, seq)`` is the op's unique id:
a replica applies each origin's ops once and in sequence order, so a duplicated or replayed op
changes nothing. Each op carries an HMAC-SHA256 tag under its origin's key; a replica rejects an op
whose tag does not verify, so no one can claim another replica's origin without its key.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from enum import IntEnum

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
    UNSTAKE = 5  # release stake back to liquid credits (home replica; after unbonding)
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
        """:meth:`payload` in its five parts, the columns as views of the arrays' memory (no copy)."""
        head = struct.pack("<qqqqq", self.origin, self.seq, int(self.kind), len(self), len(self.deps))
        cols = (self.accounts, self.others, self.amounts, self.deps)
        return (head, *(memoryview(np.ascontiguousarray(c, dtype=np.int64)).cast("B") for c in cols))

    def with_tag(self, tag: bytes) -> Op:
        """A copy carrying ``tag``."""
        return Op(self.origin, self.seq, self.kind, self.accounts, self.others, self.amounts, self.deps, tag)

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
    if all(type(c) is np.ndarray and c.dtype == np.int64 and c.ndim == 1 and c.flags.c_contiguous
           for c in (accounts, others, amounts)):  # the common case, checked without numpy's dtype machinery
        acc, oth, amt = accounts, others, amounts  # type: ignore[assignment]
        if acc.shape[0] == oth.shape[0] == amt.shape[0]:  # type: ignore[union-attr]
            return acc, oth, amt  # type: ignore[return-value]
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


class Keyring:
    """Per-replica HMAC keys. A replica signs with its own key and verifies with everyone's."""

    def __init__(self, keys: dict[int, bytes]) -> None:
        self._keys = dict(keys)

    @classmethod
    def derive(cls, n_replicas: int, secret: bytes) -> Keyring:
        """Deterministic keys for ``n_replicas`` replicas from one shared ``secret``."""
        return cls(
            {r: hashlib.sha256(secret + b"/replica/" + str(r).encode()).digest() for r in range(n_replicas)}
        )

    def sign(self, op: Op) -> Op:
        """Return ``op`` tagged with its origin's key."""
        key = self._keys.get(op.origin)
        if key is None:
            raise LedgerError(f"no key for replica {op.origin}; this keyring holds {sorted(self._keys)}")
        return op.with_tag(_mac(key, op))

    def verify(self, op: Op) -> bool:
        """True when ``op``'s tag was made with its origin's key."""
        key = self._keys.get(op.origin)
        if key is None or len(op.tag) != 32:
            return False
        return hmac.compare_digest(_mac(key, op), op.tag)


def _mac(key: bytes, op: Op) -> bytes:
    """HMAC-SHA256 of ``op``'s payload, fed part by part (the same digest as over the joined bytes)."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in op.payload_parts():
        h.update(part)
    return h.digest()
