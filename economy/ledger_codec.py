"""Serialisation of a ledger replica: bytes with a SHA-256 checksum that catches any altered byte.

Layout: a magic line, a length-prefixed JSON header (ids, shape, version, refundable spends, sync
versions, pending ops, rejections, side-table size), then the raw int64 arrays, then the checksum.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

from economy.errors import CorruptStateError
from economy.ledger import Rejection, Replica
from economy.ops import Keyring, Op

_MAGIC = b"AGORA-LEDGER-1\n"


def dump(rep: Replica) -> bytes:
    """Serialise a replica; the last 32 bytes are a SHA-256 of everything before."""
    meta = {
        "id": rep.id, "R": rep.R, "N": rep.N, "leaf_size": rep.leaf_size, "version": rep.version,
        "spends": [[s, a, x] for (s, a), x in sorted(rep._spends.items())],
        "synced_from": sorted(rep.synced_from.items()),
        "pending": [op.encode().hex() for _, op in sorted(rep._pending.items())],
        "rejected": [[r.op_id, r.kind, r.reason] for r in rep.rejected],
        "side_rows": int(rep.side_keys.shape[0]),
    }
    head = json.dumps(meta, sort_keys=True).encode()
    body = (
        _MAGIC + struct.pack("<q", len(head)) + head
        + rep.cells.tobytes() + rep.totals.tobytes() + rep.clock.tobytes() + rep._leaf_ver.tobytes()
        + rep.side_keys.tobytes() + rep.side_vals.tobytes()
    )
    return body + hashlib.sha256(body).digest()


def load(data: bytes, keyring: Keyring) -> Replica:
    """Load :func:`dump` output exactly; raise :class:`CorruptStateError` if it was altered."""
    if len(data) < len(_MAGIC) + 40 or not data.startswith(_MAGIC):
        raise CorruptStateError("not an Agora ledger replica (bad magic or too short)")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptStateError("checksum mismatch: the replica bytes were altered or truncated")
    try:
        (hlen,) = struct.unpack_from("<q", body, len(_MAGIC))
        off = len(_MAGIC) + 8
        meta = json.loads(body[off : off + hlen])
        off += hlen
        rep = Replica(meta["id"], meta["R"], meta["N"], keyring, meta["leaf_size"])
        rep.side_keys = np.zeros(meta["side_rows"], dtype=np.int64)
        rep.side_vals = np.zeros((meta["side_rows"], 3 * rep.R), dtype=np.int64)
        for arr in (rep.cells, rep.totals, rep.clock, rep._leaf_ver, rep.side_keys, rep.side_vals):
            arr[...] = np.frombuffer(body, dtype=np.int64, count=arr.size, offset=off).reshape(arr.shape)
            off += arr.nbytes
        if off != len(body):
            raise ValueError(f"{len(body) - off} trailing bytes")
    except (KeyError, ValueError, struct.error) as exc:
        raise CorruptStateError(f"structure does not parse: {exc}") from exc
    rep.version = meta["version"]
    rep._spends = {(s, a): x for s, a, x in meta["spends"]}
    rep.synced_from = {int(k): v for k, v in meta["synced_from"]}
    rep._pending = {(op.origin, op.seq): op for op in (Op.decode(bytes.fromhex(h)) for h in meta["pending"])}
    rep.rejected = [Rejection(*r) for r in meta["rejected"]]
    if rep.side_keys.size and ((np.diff(rep.side_keys) <= 0).any() or rep.side_keys[0] < 0 or rep.side_keys[-1] >= rep.N):
        raise CorruptStateError("side table keys are not sorted accounts in range")
    rep._reindex_side()
    return rep
