"""Attacks on a replica and how it meets them: counters driven past int64, forged or relayed
state deltas, keys anyone can rebuild, two replicas on one id, out-of-range queries, crafted
state bytes. Each is refused (raised, recorded in ``rejected``) and changes nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import struct
from collections.abc import Callable

import numpy as np
import pytest

from economy import CorruptStateError, Keyring, LedgerError, OpKind, OpRejected, Replica
from economy.errors import DeltaRejected
from economy.ledger import MAX_AMOUNT, REPLICAS_MAX, counter_max
from economy.ops import Delta, Op


def ledger(n: int = 3, accounts: int = 12, secret: bytes = b"sec") -> list[Replica]:
    kr = Keyring.derive(n, secret)
    return [Replica(r, n, accounts, kr, leaf_size=4) for r in range(n)]


def full(k: int, value: int) -> np.ndarray:
    return np.full(k, value, dtype=np.int64)


# ------------------------------------------------------------------ the counter bound
def test_the_bound_keeps_every_sum_of_counters_inside_int64():
    for r in (1, 2, 3, 8, 100, REPLICAS_MAX):
        bound = counter_max(r)
        assert MAX_AMOUNT <= bound and (2 * r + 2) * bound <= 2**63 - 1 < (2 * r + 2) * (bound + 1)
    assert counter_max(3) == (2**63 - 1) // 8
    with pytest.raises(LedgerError, match=r"n_replicas must be in \[1, 4096\]"):
        Replica(0, REPLICAS_MAX + 1, 4, Keyring.derive(1, b"x"))


def test_mints_past_the_bound_are_refused_and_the_balance_stays_exact():
    (a,) = ledger(1, accounts=4)
    n = 9_300  # 9.3·10^18 micro-credits in all: past int64
    op, refused = a.execute(OpKind.MINT, full(n, 0), full(n, 0), full(n, MAX_AMOUNT))
    accepted = counter_max(1) // MAX_AMOUNT
    assert op is not None and len(op) == accepted and len(refused) == n - accepted
    assert refused[0] == (
        accepted,
        f"a counter it writes would pass the ledger's bound of {counter_max(1)} micro-credits",
    )
    assert a.balance(0) == accepted * MAX_AMOUNT > 0 and a.rights(0) == a.balance(0)
    assert a.supply() == (a.balance(0), a.balance(0))
    assert len(a.rejected) == n - accepted and a.rejected[0].op_id == f"0:1[{accepted}]"
    root, version = a.root(), a.version
    with pytest.raises(OpRejected, match="bound"):
        a.mint(0, MAX_AMOUNT)
    with pytest.raises(OpRejected, match="bound"):
        a.mint(1, MAX_AMOUNT)  # another account: the replica's minted total is at its bound too
    assert a.root() == root and a.version == version


def test_transfers_cycling_through_one_account_stop_at_the_bound():
    (a,) = ledger(1, accounts=4)
    a.mint(1, MAX_AMOUNT)
    # Credits going round 1 -> 0 -> 1: balances stay put, earned and spent grow with each pass.
    n = 2 * (counter_max(1) // MAX_AMOUNT) + 10
    src = np.tile(np.array([1, 0], dtype=np.int64), n // 2)
    op, refused = a.execute(OpKind.TRANSFER, src, 1 - src, full(src.size, MAX_AMOUNT))
    assert op is not None and "bound" in refused[0][1]
    # Once 1 -> 0 is refused, 0 has nothing to send back: those entries lack rights.
    assert all("bound" in reason or "rights" in reason for _, reason in refused)
    assert a.cells.max() <= counter_max(1) and a.cells.min() >= 0
    assert a.balances().min() >= 0 and a.balance(0) + a.balance(1) == MAX_AMOUNT
    assert a.supply() == (MAX_AMOUNT, MAX_AMOUNT)


def test_a_tagged_op_that_would_pass_the_bound_is_rejected_whole():
    a, b = ledger(2, accounts=6)
    k = counter_max(2) // MAX_AMOUNT
    fill, _ = a.execute(OpKind.MINT, full(k, 0), full(k, 0), full(k, MAX_AMOUNT))
    assert b.receive(fill) == "applied"
    # Replica 0's key on entries its own check would refuse: the second takes earned past the bound.
    bad = a.keyring.sign(
        Op(
            0,
            2,
            OpKind.MINT,
            np.array([3, 0]),
            full(2, 0),
            np.array([5, MAX_AMOUNT]),
            a.clock.copy(),
        )
    )
    root, totals = b.root(), b.totals.copy()
    with pytest.raises(OpRejected, match="op 0:2 rejected: applying it would take a counter past"):
        b.receive(bad)
    assert b.root() == root and b.balance(3) == 0 and np.array_equal(b.totals, totals)
    assert b.pending == 0 and b.clock[0] == 1 and b.rejected[-1].op_id == "0:2"
    assert b.receive(a.mint(3, 7)) == "applied"  # the origin's real op 0:2 still applies
    assert b.balance(3) == 7 and b.root() == a.root()


def test_a_tagged_refund_op_that_would_pass_the_bound_is_rejected_whole():
    a, b = ledger(2, accounts=6)
    k = counter_max(2) // MAX_AMOUNT + 2
    accounts = np.concatenate([[2], full(k, 0)])  # account 2 has no side row yet
    bad = a.keyring.sign(
        Op(
            0,
            1,
            OpKind.REFUND,
            accounts,
            full(k + 1, 1),
            np.concatenate([[5], full(k, MAX_AMOUNT)]),
            a.clock.copy(),
        )
    )
    root = b.root()
    with pytest.raises(OpRejected, match="bound"):
        b.receive(bad)
    assert b.root() == root and b.side_keys.size == 0 and b.totals.sum() == 0


def test_escrow_moves_made_here_stop_at_the_bound():
    a, b = ledger(2, accounts=4)
    for rep in (a, b):
        rep.counter_max = 100  # a lower bound is as safe, and reachable in a few ops
    b.receive(a.mint(0, 80))
    b.receive(a.lend(0, 1, 60))
    a.receive(b.give_back(0, 60))
    root = a.root()
    with pytest.raises(OpRejected, match="bound of 100"):
        a.lend(0, 1, 60)  # lent to replica 1 would reach 120, though the rights are there
    assert a.root() == root and a.rights(0) == 80
    a.lend(0, 1, 40)


# ------------------------------------------------------------------ deltas
def forged_delta(source: int, n_replicas: int, earned: int) -> Delta:
    """A delta claiming ``earned`` micro-credits for account 0 at ``source``."""
    cells = np.zeros((4, 2), dtype=np.int64)
    cells[0, 0] = earned
    n_home = sum(1 for acc in range(4) if acc % n_replicas == source)
    return Delta(
        source,
        1,
        1,
        np.array([[0, 4]]),
        cells,
        np.zeros((n_home, 2), np.int64),
        np.zeros(0, np.int64),
        np.zeros((0, 2), np.int64),
        np.zeros((0, n_replicas), np.int64),
        np.zeros(3, np.int64),
        np.zeros(n_replicas, np.int64),
    )


def test_a_delta_that_does_not_verify_is_rejected_recorded_and_changes_nothing():
    a, b, c = ledger()
    c.receive(a.mint(0, 100))
    root, supply = c.root(), c.supply()
    raised = forged_delta(1, 3, 10**18)
    genuine = b.delta_since(0)
    attempts = [
        raised,  # no tag
        Keyring.derive(3, b"attacker").sign_delta(raised),  # another key
        dataclasses.replace(raised, tag=genuine.tag),  # a tag of other bytes
        dataclasses.replace(genuine, totals=genuine.totals + 100),  # altered after tagging
    ]
    for delta in attempts:
        with pytest.raises(DeltaRejected, match="tag does not verify under replica 1's key"):
            c.merge_delta(delta)
    assert c.root() == root and c.supply() == supply == (100, 100)
    assert [r.kind for r in c.rejected] == ["delta"] * 4 and c.rejected[0].op_id == "delta 1@1"
    with pytest.raises(DeltaRejected, match=r"source 7 is not a replica in \[0, 3\)"):
        c.merge_delta(dataclasses.replace(raised, source=7))
    with pytest.raises(LedgerError, match="takes a Delta"):
        c.merge_delta(a.to_bytes())
    assert c.root() == root and len(c.rejected) == 5


def test_a_replica_takes_only_the_cells_a_delta_source_owns():
    a, b, c = ledger()
    mint = a.mint(0, 100)
    b.receive(mint)
    c.receive(mint)
    # b's own view claims a's counters were raised: b's deltas and merges carry only b's own.
    b.cells[0, 0] = 10**18
    b.totals[0, 0] = 10**18
    b.mint(5, 7)
    for pull in (lambda: c.sync_from(b), lambda: c.merge(b)):
        pull()
        assert c.counters(0)["earned"].tolist() == [100, 0, 0] and c.balance(5) == 7
        assert c.supply() == (107, 107) and c.totals[0].tolist() == [100, 0, 0]


def test_a_replayed_delta_changes_nothing():
    a, b, _ = ledger()
    a.mint(0, 5)
    d = a.delta_since(0)
    assert b.merge_delta(d) > 0
    root = b.root()
    a.mint(0, 6)
    assert b.merge_delta(d) == 0 and b.root() == root and b.rejected == []


def test_delta_tags_are_hmac_sha256_of_the_canonical_bytes():
    kr = Keyring.derive(2, b"test")
    a = Replica(0, 2, 10, kr, leaf_size=4)
    a.mint(1, 5)
    fee = a.spend(1, 2)
    a.refund(1, fee.seq, 1)
    d = a.delta_since(0)
    arrays = [d.spans, d.cells, d.stake, d.side_keys, d.side_cells, d.side_lent, d.totals, d.deps]
    shapes = [n for x in arrays for n in (x.shape if x.ndim == 2 else (x.shape[0], 1))]
    head = b"AGORA-DELTA-1\n" + np.array([d.source, d.version, d.seq, *shapes], "<i8").tobytes()
    body = b"".join(x.astype("<i8").tobytes() for x in arrays)
    key = hashlib.sha256(b"test/replica/0").digest()
    assert d.tag == hmac.new(key, head + body, hashlib.sha256).digest() and kr.verify_delta(d)
    assert d.side_keys.tolist() == [1] and d.side_cells.tolist() == [[1, 0]]
    op = a.mint(2, 1)  # an op's tag under the same key does not pass for a delta, nor the reverse
    assert not kr.verify_delta(dataclasses.replace(d, tag=op.tag))
    assert not kr.verify(op.with_tag(d.tag))


def test_a_delta_waits_for_the_ops_its_source_depended_on():
    a, b, c = ledger()
    mint, lend = a.mint(0, 100), a.lend(0, 2, 100)
    c.receive(mint)
    c.receive(lend)
    c.transfer(0, 5, 100)  # spends rights a lent: c's state depends on a's ops 1 and 2
    root = b.root()
    assert b.merge_delta(c.delta_since(0)) == 0  # b has none of a's ops: it would show -100
    assert b.deferred == 1 and b.root() == root and b.balance(0) == 0
    b.receive(mint)
    assert b.deferred == 1 and b.balances().min() >= 0
    b.receive(lend)  # the dependency is here: the waiting delta merges
    assert b.deferred == 0 and b.balance(0) == 0 and b.balance(5) == 100
    assert b.supply() == (100, 100) and b.synced_from[2] == c.version


def test_deltas_that_wait_for_each_other_merge_together():
    a, b, c = ledger()
    b.receive(a.mint(0, 10))
    a.receive(b.mint(1, 10))
    a.transfer(0, 3, 5)  # made after a saw b's op 1
    b.transfer(1, 4, 5)  # made after b saw a's op 1
    assert c.merge_delta(a.delta_since(0)) == 0 and c.deferred == 1
    assert c.merge_delta(b.delta_since(0)) > 0 and c.deferred == 0
    a.sync_from(b)
    b.sync_from(a)
    assert c.root() == a.root() == b.root() and c.supply() == (20, 20)


# ------------------------------------------------------------------ keys and ids
def test_generated_keys_are_random_and_never_shown():
    k1, k2 = Keyring.generate(3), Keyring.generate(3)
    a = Replica(0, 3, 4, k1)
    op = a.mint(0, 5)
    assert k1.verify(op) and not k2.verify(op) and not Keyring.derive(3, b"agora/42").verify(op)
    text = repr(k1) + str(k1) + repr([k1])
    assert repr(k1) == "Keyring(replicas=[0, 1, 2])"
    for r in range(3):
        key = k1._keys[r]
        assert len(key) == 32 and key != k2._keys[r]
        assert key.hex() not in text and repr(key) not in text
    b = Replica(1, 3, 4, k2)
    with pytest.raises(DeltaRejected, match="does not verify"):
        a.merge_delta(b.delta_since(0))
    again = Keyring.derive(3, b"agora/42")  # derived keys: anyone with the secret rebuilds them
    assert again.sign(op).tag == Keyring.derive(3, b"agora/42").sign(op).tag
    for bad in (0, -1, 2.5):
        with pytest.raises(LedgerError, match="n_replicas"):
            Keyring.generate(bad)
    with pytest.raises(LedgerError, match="16 bytes"):
        Keyring({0: b"short"})


def test_two_replicas_on_one_id_cannot_merge_or_feed_each_other():
    kr = Keyring.derive(2, b"sec")
    a, twin = Replica(0, 2, 4, kr), Replica(0, 2, 4, kr)
    a.mint(0, 100)
    twin.mint(1, 50)  # op 0:1 as well, with other content
    root = a.root()
    with pytest.raises(DeltaRejected, match="own id 0"):
        a.merge(twin)
    with pytest.raises(DeltaRejected, match="own id 0"):
        a.merge_delta(twin.delta_since(0))
    with pytest.raises(OpRejected, match="never made"):
        a.receive(twin.mint(1, 50))  # op 0:2: past a's own clock
    assert a.root() == root and a.supply() == (100, 100)
    assert [r.kind for r in a.rejected] == ["delta", "delta", "mint"]
    assert a.merge(a) == 0 and a.root() == root


# ------------------------------------------------------------------ queries and state bytes
@pytest.mark.parametrize(
    "call, account",
    [
        (lambda r: r.staked(-1), -1),
        (lambda r: r.staked(12), 12),
        (lambda r: r.staked_of(np.array([-3])), -3),
        (lambda r: r.staked_of(np.array([0, 12])), 12),
        (lambda r: r.counters(-1), -1),
        (lambda r: r.balance(-1), -1),
        (lambda r: r.home(-1), -1),
        (lambda r: r.rights_as(-1, 0), -1),
        (lambda r: r.rights(12), 12),
    ],
)
def test_account_queries_refuse_accounts_out_of_range(call, account):
    (a, *_rest) = ledger()
    a.mint(11, 9)
    with pytest.raises(LedgerError, match=rf"account {account} out of range \[0, 12\)"):
        call(a)
    with pytest.raises(LedgerError, match=r"replica 3 out of range \[0, 3\)"):
        a.rights_as(0, 3)
    with pytest.raises(LedgerError, match="integer"):
        a.staked(1.5)
    with pytest.raises(LedgerError, match="integer"):
        a.staked_of(np.array([0.5]))
    assert a.staked(11) == 0 and a.counters(11)["earned"].tolist() == [9, 0, 0]


def resealed(blob: bytes, edit=None, head: bytes | None = None, arrays=None) -> bytes:
    """``blob`` with its header edited (or replaced) and its checksum recomputed."""
    magic = b"AGORA-LEDGER-1\n"
    body = blob[:-32]
    (hlen,) = struct.unpack_from("<q", body, len(magic))
    off = len(magic) + 8
    old_head, rest = body[off : off + hlen], body[off + hlen :]
    if edit is not None:
        meta = json.loads(old_head)
        edit(meta)
        head = json.dumps(meta).encode()
    head = old_head if head is None else head
    rest = rest if arrays is None else arrays(rest)
    body = magic + struct.pack("<q", len(head)) + head + rest
    return body + hashlib.sha256(body).digest()


def first_word(value: int) -> Callable[[bytes], bytes]:
    return lambda rest: np.array([value], "<i8").tobytes() + rest[8:]


@pytest.mark.parametrize(
    "forge, message",
    [
        (lambda b: resealed(b, edit=lambda m: m.update(N=10**12)), "promises"),
        (lambda b: resealed(b, head=b"[]"), "JSON object"),
        (lambda b: resealed(b, head=b"[1, 2, 3]"), "JSON object"),
        (lambda b: resealed(b, edit=lambda m: m.update(R="3")), "'R' must be an integer"),
        (lambda b: resealed(b, edit=lambda m: m.update(side_rows=10**15)), "out of range"),
        (lambda b: resealed(b, edit=lambda m: m.update(R=10**6)), "out of range"),
        (lambda b: resealed(b, edit=lambda m: m.update(spends=[[1]])), "does not parse"),
        (lambda b: resealed(b, edit=lambda m: m.update(pending=["zz"])), "does not parse"),
        (lambda b: resealed(b, edit=lambda m: m.update(own_deps=[1])), "own_deps"),
        (lambda b: resealed(b, arrays=first_word(-1)), "outside"),
        (lambda b: resealed(b, arrays=first_word(2**62)), "outside"),
    ],
)
def test_crafted_state_bytes_with_a_valid_checksum_are_corrupt_state(forge, message):
    (a, *_rest) = ledger()
    a.mint(0, 5)
    blob = a.to_bytes()
    assert Replica.from_bytes(resealed(blob), a.keyring).root() == a.root()
    with pytest.raises(CorruptStateError, match=message):
        Replica.from_bytes(forge(blob), a.keyring)
