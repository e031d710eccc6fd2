"""Serialisation of a ledger replica: bytes with a SHA-256 checksum that catches any altered byte.

Layout: a magic line, a length-prefixed JSON header (ids, shape, version, the deps of the
replica's latest op, refundable spends, sync versions, pending ops, rejections, side-table size),
then the raw int64 arrays, then the checksum.

These bytes are a replica's own saved state, trusted input: the checksum detects accidents
(a truncated or flipped file), not an adversary, who can recompute it. :func:`load` checks that
the header parses, that its sizes agree with the byte length before allocating anything, and that
every counter is in the ledger's bound; any failure is :class:`CorruptStateError`. Replicas
exchange state as signed deltas (``economy.ops.Delta``), never as these bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np

from economy.errors import CorruptStateError, LedgerError
from economy.ledger import REPLICAS_MAX, Rejection, Replica
from economy.ops import Keyring, Op

_MAGIC = b"AGORA-LEDGER-1\n"


def dump(rep: Replica) -> bytes:
    """Serialise a replica; the last 32 bytes are a SHA-256 of everything before."""
    meta = {
        "id": rep.id,
        "R": rep.n_replicas,
        "N": rep.n_accounts,
        "leaf_size": rep.leaf_size,
        "version": rep.version,
        "own_deps": rep._own_deps.tolist(),
        "spends": [[s, a, x] for (s, a), x in sorted(rep._spends.items())],
        "synced_from": sorted(rep.synced_from.items()),
        "pending": [op.encode().hex() for _, op in sorted(rep._pending.items())],
        "rejected": [[r.op_id, r.kind, r.reason] for r in rep.rejected],
        "side_rows": int(rep.side_keys.shape[0]),
    }
    head = json.dumps(meta, sort_keys=True).encode()
    body = (
        _MAGIC
        + struct.pack("<q", len(head))
        + head
        + rep.cells.tobytes()
        + rep.totals.tobytes()
        + rep.clock.tobytes()
        + rep._leaf_ver.tobytes()
        + rep.side_keys.tobytes()
        + rep.side_vals.tobytes()
    )
    return body + hashlib.sha256(body).digest()


def load(data: bytes, keyring: Keyring) -> Replica:
    """Load :func:`dump` output exactly; raise :class:`CorruptStateError` if it was altered or
    does not parse."""
    if len(data) < len(_MAGIC) + 40 or not data.startswith(_MAGIC):
        raise CorruptStateError("not an Agora ledger replica (bad magic or too short)")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptStateError("checksum mismatch: the replica bytes were altered or truncated")
    try:
        meta, off = _header(body)
        rep = Replica(meta["id"], meta["R"], meta["N"], keyring, meta["leaf_size"])
        rep.side_keys = np.zeros(meta["side_rows"], dtype=np.int64)
        rep.side_vals = np.zeros((meta["side_rows"], 3 * rep.n_replicas), dtype=np.int64)
        arrays = (rep.cells, rep.totals, rep.clock, rep._leaf_ver, rep.side_keys, rep.side_vals)
        for arr in arrays:
            flat = np.frombuffer(body, dtype=np.int64, count=arr.size, offset=off)
            arr[...] = flat.reshape(arr.shape)
            off += arr.nbytes
        assert off == len(body), "the header's sizes were checked against the byte length"
        _restore(rep, meta)
    except CorruptStateError:
        raise
    except (
        KeyError,
        ValueError,
        TypeError,
        IndexError,
        AttributeError,
        struct.error,
        LedgerError,
    ) as exc:
        raise CorruptStateError(f"structure does not parse: {exc}") from exc
    _check_values(rep)
    rep._reindex_side()
    return rep


def _header(body: bytes) -> tuple[dict[str, Any], int]:
    """The JSON header and the offset of the arrays, checked against the byte length."""
    (hlen,) = struct.unpack_from("<q", body, len(_MAGIC))
    off = len(_MAGIC) + 8
    if not 0 <= hlen <= len(body) - off:
        raise CorruptStateError(f"header length {hlen} does not fit {len(body)} bytes")
    meta = json.loads(body[off : off + hlen])
    off += hlen
    if not isinstance(meta, dict):
        raise CorruptStateError(f"header must be a JSON object, got {type(meta).__name__}")
    for name, low in (
        ("id", 0),
        ("R", 1),
        ("N", 1),
        ("leaf_size", 1),
        ("version", 0),
        ("side_rows", 0),
    ):
        value = meta.get(name)
        if type(value) is not int or value < low:
            raise CorruptStateError(
                f"header field {name!r} must be an integer >= {low}, got {value!r}"
            )
    n_replicas, n_accounts, leaf, m = meta["R"], meta["N"], meta["leaf_size"], meta["side_rows"]
    if n_replicas > REPLICAS_MAX or m > n_accounts:
        raise CorruptStateError(
            f"header shape R={n_replicas}, side rows={m} out of range "
            f"(R <= {REPLICAS_MAX}, side rows <= N={n_accounts})"
        )
    n_leaves = max(1, -(-n_accounts // leaf))
    # Python integers: no overflow, and nothing is allocated before the sizes agree.
    words = (
        n_accounts * (2 * n_replicas + 2)
        + 3 * n_replicas
        + n_replicas
        + n_leaves
        + m
        + m * 3 * n_replicas
    )
    if 8 * words != len(body) - off:
        raise CorruptStateError(
            f"header promises {8 * words} bytes of arrays, {len(body) - off} follow"
        )
    return meta, off


def _restore(rep: Replica, meta: dict[str, Any]) -> None:
    """Set the header's bookkeeping on a replica whose arrays are loaded."""
    rep.version = meta["version"]
    own_deps = meta.get("own_deps", rep.clock.tolist())  # absent: the clock covers them
    if len(own_deps) != rep.n_replicas or any(type(v) is not int or v < 0 for v in own_deps):
        raise CorruptStateError(f"own_deps must be {rep.n_replicas} integers >= 0")
    rep._own_deps = np.array(own_deps, dtype=np.int64)
    rep._spends = {(int(s), int(a)): int(x) for s, a, x in meta["spends"]}
    rep.synced_from = {int(k): int(v) for k, v in meta["synced_from"]}
    ops = (Op.decode(bytes.fromhex(h)) for h in meta["pending"])
    rep._pending = {(op.origin, op.seq): op for op in ops}
    rep.rejected = [Rejection(str(i), str(k), str(r)) for i, k, r in meta["rejected"]]


def _check_values(rep: Replica) -> None:
    """Counters in the bound, clocks and versions >= 0, side keys sorted accounts in range."""
    bound = rep.counter_max
    for name, arr in (("cells", rep.cells), ("totals", rep.totals), ("side", rep.side_vals)):
        if arr.size and (arr.min() < 0 or arr.max() > bound):
            raise CorruptStateError(f"{name} hold a counter outside [0, {bound}]")
    if (rep.clock < 0).any() or (rep._leaf_ver < 0).any() or (rep._leaf_ver > rep.version).any():
        raise CorruptStateError("clock or leaf versions out of range")
    keys = rep.side_keys
    if keys.size and ((np.diff(keys) <= 0).any() or keys[0] < 0 or keys[-1] >= rep.n_accounts):
        raise CorruptStateError("side table keys are not sorted accounts in range")
