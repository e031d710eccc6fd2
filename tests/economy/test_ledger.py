"""Unit behaviour of one ledger replica and of replicas talking to each other."""

from __future__ import annotations

import numpy as np
import pytest

from economy import CorruptStateError, Keyring, LedgerError, OpKind, OpRejected, Replica
from economy.ops import Op


def replicas(n: int = 3, accounts: int = 12, leaf: int = 4) -> list[Replica]:
    kr = Keyring.derive(n, b"test")
    return [Replica(r, n, accounts, kr, leaf_size=leaf) for r in range(n)]


def test_spend_beyond_rights_is_rejected_and_recorded_without_change():
    (a,) = replicas(1)
    a.mint(0, 100)
    before = a.to_bytes()
    with pytest.raises(OpRejected, match="rights"):
        a.transfer(0, 1, 101)
    assert a.balance(0) == 100 and a.balance(1) == 0
    assert a.rejected[-1].kind == "transfer"
    assert Replica.from_bytes(before, a.keyring).root() == a.root()


def test_partitioned_replicas_cannot_overdraw():
    a, b, _ = replicas()
    for op in (a.mint(0, 100), a.lend(0, 1, 40)):
        b.receive(op)
    # Partition: a and b each spend what they hold, never more.
    a.transfer(0, 3, 60)
    with pytest.raises(OpRejected):
        a.transfer(0, 3, 1)
    b.transfer(0, 4, 40)
    with pytest.raises(OpRejected):
        b.transfer(0, 4, 1)
    a.merge(b)
    b.merge(a)
    assert a.root() == b.root()
    assert a.balance(0) == 0 and a.balance(3) == 60 and a.balance(4) == 40
    assert a.supply() == (100, 100)


def test_duplicated_and_replayed_ops_change_nothing():
    a, b, _ = replicas()
    op = a.mint(0, 50)
    assert b.receive(op) == "applied"
    root = b.root()
    assert b.receive(op) == "duplicate"
    assert b.receive(Op.decode(op.encode())) == "duplicate"
    assert b.root() == root and b.balance(0) == 50


def test_forged_origin_is_rejected_recorded_and_not_applied():
    a, b, _ = replicas()
    genuine = a.mint(0, 50)
    forged = Op(
        0,
        genuine.seq + 1,
        OpKind.MINT,
        np.array([1]),
        np.array([0]),
        np.array([10**9]),
        a.clock.copy(),
    )
    wrong_key = Keyring.derive(3, b"attacker").sign(forged)
    b.receive(genuine)
    root = b.root()
    with pytest.raises(OpRejected, match="does not verify"):
        b.receive(wrong_key)
    assert b.root() == root and b.balance(1) == 0
    assert b.rejected[-1].op_id == f"0:{genuine.seq + 1}"
    tampered = Op(
        genuine.origin,
        genuine.seq,
        genuine.kind,
        genuine.accounts,
        genuine.others,
        genuine.amounts * 2,
        genuine.deps,
        genuine.tag,
    )
    with pytest.raises(OpRejected):
        a_fresh = replicas()[2]
        a_fresh.receive(tampered)


def test_ops_wait_for_their_causal_predecessors():
    a, b, c = replicas()
    m = a.mint(0, 100)
    lend = a.lend(0, 1, 100)
    b.receive(m)
    b.receive(lend)
    pay = b.transfer(0, 5, 100)
    assert c.receive(pay) == "buffered"  # c has not seen the mint: applying would show -100
    assert c.balance(0) == 0 and c.pending == 1
    assert c.receive(lend) == "buffered"
    assert c.receive(m) == "applied"
    assert c.pending == 0 and c.balance(0) == 0 and c.balance(5) == 100
    assert c.root() == b.root()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r.mint(99, 1), "out of range"),
        (lambda r: r.mint(0, 0), "amount 0"),
        (lambda r: r.mint(0, -5), "amount -5"),
        (lambda r: r.execute(OpKind.MINT, [0, 1], [0], [1, 1]), "differ in length"),
        (lambda r: r.execute(OpKind.MINT, [0.5], [0], [1]), "integers"),
        (lambda r: r.execute(42, [0], [0], [1]), "unknown op kind"),
        (lambda r: r.stake(1, 1), "home replica 1"),
        (lambda r: r.lend(0, 0, 1), "another replica"),
        (lambda r: r.give_back(0, 1), "home replica holds"),
        (lambda r: r.transfer(0, 12, 1), "destination"),
        (lambda r: r.refund(0, 0, 1), r"spend's seq \(>= 1\)"),
        (
            lambda r: r.execute(OpKind.MINT, [0, 1, 2], [0, 0, 0], [1, 10**16, 1]),
            r"amount 10000000000000000 must be in \[1, ",
        ),
        # Several faults: the first rule in order (accounts, amounts, destinations, ...) names the
        # first bad entry.
        (
            lambda r: r.execute(OpKind.TRANSFER, [0, 40, 50], [99, 1, 1], [0, 1, 1]),
            r"op 0:2 \(transfer\): account 40 out of range",
        ),
        (
            lambda r: r.execute(OpKind.STAKE, [0, 3, 4, 1], [0, 0, 0, 0], [1, 1, 1, 1]),
            "account 4 has home replica 1",
        ),
    ],
)
def test_bad_ops_raise_clear_errors_and_change_nothing(call, message):
    (a, *_rest) = replicas()
    a.mint(0, 10)
    root, version = a.root(), a.version
    with pytest.raises(LedgerError, match=message):
        call(a)
    assert a.root() == root and a.version == version


def test_stake_unstake_slash_and_refund():
    (a, *_rest) = replicas()
    a.mint(0, 100)
    a.stake(0, 60)
    assert a.balance(0) == 40 and a.staked(0) == 60
    a.slash(0, 30)
    assert a.staked(0) == 30 and a.staked_of(np.array([0, 1, 0])).tolist() == [30, 0, 30]
    assert a.staked()[[0, 1]].tolist() == [30, 0]
    with pytest.raises(OpRejected, match="stake"):
        a.unstake(0, 31)
    a.unstake(0, 30)
    fee = a.spend(0, 20)
    a.refund(0, fee.seq, 15)
    with pytest.raises(OpRejected, match="refundable"):
        a.refund(0, fee.seq, 6)
    assert a.balance(0) == 40 + 30 - 20 + 15
    held, issued = a.supply()
    assert held == issued == 100 - 30 - 20 + 15


def test_delta_sync_equals_full_merge_and_ships_less():
    a, b, c = replicas(accounts=64, leaf=8)
    for i in range(0, 64, 3):
        a.mint(i, i + 1)
    b.sync_from(a)
    assert b.root() == a.root()
    a.mint(3, 7)  # one leaf changes
    delta = a.delta_since(b.synced_from[0])
    assert delta.spans.tolist() == [[0, 8]] and delta.cells.shape == (8, 2)  # its own two columns
    b.merge_delta(delta)
    c.merge(a)
    assert b.root() == a.root() == c.root()


def test_merkle_diff_finds_the_differing_range_in_log_comparisons():
    a, b, _ = replicas(accounts=1 << 12, leaf=16)
    for i in range(0, 1 << 12, 97):
        op = a.mint(i, 5)
        b.receive(op)
    assert a.diff(b).ranges == []
    a.mint(1000, 1)
    d = a.diff(b)
    assert d.ranges == [(992, 1008)]
    depth = len(a.tree.levels)
    assert d.comparisons <= 2 * depth


def test_serialised_replica_loads_back_exactly_and_detects_corruption():
    a, b, _ = replicas()
    a.mint(0, 100)
    a.lend(0, 2, 30)
    fee = a.spend(0, 8)
    a.refund(0, fee.seq, 3)
    pay = a.transfer(0, 3, 10)
    b.receive(pay)  # buffered: b has not seen the mint
    for blob, rep in ((a.to_bytes(), a), (b.to_bytes(), b)):
        loaded = Replica.from_bytes(blob, rep.keyring)
        assert loaded.root() == rep.root() and loaded.pending == rep.pending
        assert loaded.to_bytes() == blob
    blob = bytearray(a.to_bytes())
    for pos in (0, 40, len(blob) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(CorruptStateError):
            Replica.from_bytes(bytes(bad), a.keyring)
    with pytest.raises(CorruptStateError):
        Replica.from_bytes(bytes(blob[:-10]), a.keyring)


def test_side_table_rows_are_hashed_synced_and_merged():
    a, b, c = replicas(accounts=64, leaf=8)
    for op in (a.mint(9, 50), a.mint(40, 50)):
        b.receive(op)
    assert a.root() == b.root()
    fee = a.spend(9, 20)
    b.receive(fee)
    assert a.root() == b.root()
    a.refund(9, fee.seq, 5)  # only the side table differs now
    assert a.root() != b.root()
    assert a.diff(b).ranges == [(8, 16)]
    delta = a.delta_since(b.synced_from.get(0, 0))
    assert 9 in delta.side_keys.tolist()
    b.merge_delta(delta)
    assert b.root() == a.root() and b.balance(9) == 35
    c.merge(a)
    assert c.root() == a.root() and c.counters(9)["spent_n"].tolist() == [5, 0, 0]


def test_malformed_delta_is_refused_recorded_and_changes_nothing():
    import dataclasses

    from economy.errors import DeltaRejected

    a, b, _ = replicas(accounts=16, leaf=4)
    a.mint(0, 5)
    d = a.delta_since(0)
    root = b.root()
    bad = dataclasses.replace(d, spans=d.spans + 100)
    with pytest.raises(DeltaRejected, match="spans must be increasing, disjoint"):
        b.merge_delta(bad)
    resigned = a.keyring.sign_delta(bad)  # well tagged, still out of range
    with pytest.raises(LedgerError, match="within \\[0, 16\\)"):
        b.merge_delta(resigned)
    assert b.balance(0) == 0 and b.root() == root
    assert [r.kind for r in b.rejected] == ["delta", "delta"] and b.rejected[0].op_id == "delta 0@1"


def test_delta_since_holds_exactly_the_rows_of_changed_leaves():
    kr = Keyring.derive(2, b"test")
    a = Replica(0, 2, 10, kr, leaf_size=4)  # leaves [0-3] [4-7] [8-9]
    a.mint(1, 5)
    v = a.version
    a.mint(9, 7)
    a.mint(2, 3)
    d = a.delta_since(v)
    rows = [0, 1, 2, 3, 8, 9]
    assert d.spans.tolist() == [[0, 4], [8, 10]]
    # Replica 0 owns earned[0] and spent_p[0] (columns 0 and 2 of 2 replicas), and the stake of
    # the accounts whose home it is (the even ones).
    assert d.cells.tolist() == a.cells[rows][:, [0, 2]].tolist() and d.cells.dtype == np.int64
    assert d.stake.tolist() == a.cells[[0, 2, 8]][:, [4, 5]].tolist()
    assert d.cells.flags.c_contiguous and d.seq == 3 and d.totals.tolist() == [15, 0, 0]
    empty = a.delta_since(a.version)
    assert (
        empty.spans.shape == (0, 2) and empty.cells.shape == (0, 2) and empty.stake.shape == (0, 2)
    )
    assert a.delta_since(0).spans.tolist() == [[0, 4], [8, 10]]  # leaves ever written; not [4-7]


def test_rights_at_homes_asks_each_accounts_home_replica():
    from economy.ledger import rights_at_homes

    reps = replicas()  # 3 replicas, 12 accounts
    for a in range(12):
        reps[a % 3].mint(a, 10 + a)  # each account's home mints for it: rights at home only
    reps[1].mint(0, 5)  # account 0's home is 0; replica 1 holds rights for it too, not asked
    accounts = np.array([0, 1, 2, 5, 11, 0])
    want = [reps[a % 3].rights(int(a)) for a in accounts]
    assert rights_at_homes(reps, accounts).tolist() == want == [10, 11, 12, 15, 21, 10]
    assert rights_at_homes(reps, np.empty(0, np.int64)).tolist() == []
    with pytest.raises(LedgerError, match=r"out of range \[0, 12\)"):
        rights_at_homes(reps, np.array([3, 12]))
    with pytest.raises(LedgerError, match="every replica"):
        rights_at_homes(reps[:2], accounts)


def test_a_replica_holds_68_bytes_per_account_for_three_replicas():
    # Eight int64 counters and the side-table index as int32, nothing derived kept beside them: what
    # the README's memory figures count. A wider or extra array here shows up in every world's
    # footprint.
    kr = Keyring.derive(3, b"test")
    a = Replica(0, 3, 10_000, kr)
    per_account = (
        sum(
            v.nbytes
            for v in vars(a).values()
            if isinstance(v, np.ndarray) and v.shape[:1] == (a.n_accounts,)
        )
        / a.n_accounts
    )
    assert per_account == 68
    a.mint(7, 5)
    fee = a.spend(7, 2)
    a.refund(7, fee.seq, 1)  # a side row: its index fits the narrow array
    assert a._side_pos.dtype == np.int32 and a._side_pos[7] == 0 and a.balance(7) == 4


def test_op_tags_are_hmac_sha256_of_the_canonical_payload():
    import hashlib
    import hmac

    kr = Keyring.derive(3, b"test")
    a = Replica(1, 3, 100, kr)
    op, refused = a.execute(
        OpKind.MINT, np.array([4, 7, 90]), np.zeros(3, dtype=np.int64), np.array([5, 6, 7])
    )
    assert op is not None and refused == []
    key = hashlib.sha256(b"test/replica/1").digest()
    head = np.array([op.origin, op.seq, int(op.kind), 3, len(op.deps)], dtype="<i8").tobytes()
    body = b"".join(
        c.astype("<i8").tobytes() for c in (op.accounts, op.others, op.amounts, op.deps)
    )
    assert op.payload() == head + body
    assert op.tag == hmac.new(key, head + body, hashlib.sha256).digest()
    assert kr.verify(op) and kr.verify(Op.decode(op.encode()))
    forged = Op(op.origin, op.seq, op.kind, op.accounts, op.others, op.amounts + 1, op.deps, op.tag)
    assert not kr.verify(forged)
    strided = Op(
        op.origin,
        op.seq,
        op.kind,
        np.array([4, 0, 7, 0, 90, 0])[::2],
        op.others,
        op.amounts,
        op.deps,
        op.tag,
    )
    assert kr.verify(strided)  # a non-contiguous column is read by value


def test_rights_queries_refuse_accounts_out_of_range_and_change_nothing():
    kr = Keyring.derive(3, b"test")
    a = Replica(0, 3, 12, kr)
    a.mint(3, 9)
    before = a.root()
    for bad in (12, -1):
        with pytest.raises(LedgerError, match=r"out of range \[0, 12\)"):
            a.rights(bad)
        with pytest.raises(LedgerError, match=r"out of range \[0, 12\)"):
            a.rights_of(np.array([3, bad]))
    assert (
        a.root() == before and a.rights(3) == 9 and a.rights_of(np.array([3, 0])).tolist() == [9, 0]
    )


@pytest.mark.parametrize("n_accounts", [1, 5, 64, 257, 1030])
def test_leaves_hashed_four_at_a_time_equal_the_one_at_a_time_definition(n_accounts):
    from economy.ledger_kernels import hash_leaves, hash_leaves_reference

    rng = np.random.default_rng(n_accounts)
    cells = rng.integers(-(2**62), 2**62, (n_accounts, 8), dtype=np.int64)
    keys = np.sort(rng.choice(n_accounts, min(n_accounts, 9), replace=False)).astype(np.int64)
    vals = rng.integers(0, 10**9, (keys.size, 4), dtype=np.int64)
    leaf = 16
    n_leaves = -(-n_accounts // leaf)
    for leaves in (
        np.arange(n_leaves, dtype=np.int64),  # every leaf, the last one short
        np.flatnonzero(rng.random(n_leaves) < 0.6).astype(np.int64),  # a dirty subset
    ):
        fast = np.zeros((n_leaves, 2), np.uint64)
        slow = np.zeros((n_leaves, 2), np.uint64)
        hash_leaves(cells, keys, vals, leaf, leaves, fast)
        hash_leaves_reference(cells, keys, vals, leaf, leaves, slow)
        assert (fast == slow).all() and (fast[leaves] != 0).all()
    changed = cells.copy()
    changed[-1, 3] += 1  # one word of the last account: its leaf's hash moves, no other
    moved = np.zeros((n_leaves, 2), np.uint64)
    hash_leaves(changed, keys, vals, leaf, np.arange(n_leaves, dtype=np.int64), moved)
    hash_leaves(cells, keys, vals, leaf, np.arange(n_leaves, dtype=np.int64), fast)
    assert (moved[:-1] == fast[:-1]).all() and (moved[-1] != fast[-1]).all()
