"""Property-based tests: random ops, partitions, message loss/duplication/reordering and merge
orders.

The default suite runs 2,000 schedules, and 300 more with a counter bound small enough that the
ops reach it; ``pytest -m long`` runs 100,000 (result quoted in README).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from economy import Keyring, LedgerError, Replica
from economy.ledger import rights_at_homes

n_replicas, n_accounts = 3, 6
KINDS = (
    "mint",
    "transfer",
    "spend",
    "burn",
    "stake",
    "unstake",
    "slash",
    "lend",
    "give_back",
    "refund",
)

op_step = st.tuples(
    st.just("op"),
    st.integers(0, n_replicas - 1),
    st.sampled_from(KINDS),
    st.integers(0, n_accounts - 1),
    st.integers(0, n_accounts - 1),
    st.integers(1, 60),
)
deliver_step = st.tuples(
    st.just("deliver"),
    st.integers(0, n_replicas - 1),
    st.integers(0, n_replicas - 1),
    st.integers(0, 50),
    st.booleans(),
)
merge_step = st.tuples(
    st.just("merge"), st.integers(0, n_replicas - 1), st.integers(0, n_replicas - 1), st.booleans()
)
step = st.one_of(
    op_step,
    deliver_step,
    merge_step,
    st.tuples(st.just("partition"), st.integers(0, n_replicas - 1)),
    st.tuples(
        st.just("heal"),
    ),
)
# Mostly ops, a third of them mints, so that counters climb to a small bound within one schedule.
busy_op_step = st.tuples(
    st.just("op"),
    st.integers(0, n_replicas - 1),
    st.sampled_from(KINDS + ("mint",) * 5),
    st.integers(0, n_accounts - 1),
    st.integers(0, n_accounts - 1),
    st.integers(1, 60),
)
busy_step = st.one_of(busy_op_step, busy_op_step, busy_op_step, deliver_step, merge_step)


def check_views(reps: list[Replica]) -> None:
    for r in reps:
        for arr in (r.cells, r.side_vals, r.totals):
            assert arr.size == 0 or 0 <= arr.min() <= arr.max() <= r.counter_max, (
                "a counter left its bound"
            )
        assert (r.balances() >= 0).all(), "a balance went negative in some replica's view"
        assert (r.rights() >= 0).all(), "a replica holds negative spending rights"
        assert (r.staked() >= 0).all()
        held, issued = r.supply()
        assert held == issued, "conservation broken"
        assert held == int(r.balances().sum() + r.staked().sum())
        # The batch kernels read balances and rights from the counters: they must agree with the
        # per-account readings and with the rights read at each home replica.
        assert r.balances().tolist() == [r.balance(a) for a in range(n_accounts)]
        assert (
            r.rights().tolist()
            == [r.rights(a) for a in range(n_accounts)]
            == r.rights_of(np.arange(n_accounts)).tolist()
        )
    homes = rights_at_homes(reps, np.arange(n_accounts))
    assert homes.tolist() == [reps[a % n_replicas].rights(a) for a in range(n_accounts)]


def run_schedule(steps: list[tuple], bound: int | None = None) -> None:
    kr = Keyring.derive(n_replicas, b"prop")
    reps = [Replica(i, n_replicas, n_accounts, kr, leaf_size=2) for i in range(n_replicas)]
    if bound is not None:  # a lower bound than the ledger's is as safe, and reachable here
        for rep in reps:
            rep.counter_max = bound
    outbox: dict[tuple[int, int], list] = {
        (a, b): [] for a in range(n_replicas) for b in range(n_replicas) if a != b
    }
    spends: list[tuple[int, int, int]] = []  # (replica, seq, account)
    side = np.zeros(n_replicas, dtype=int)  # partition label per replica

    for s in steps:
        if s[0] == "op":
            _, r, kind, a, b, x = s
            rep = reps[r]
            try:
                if kind == "mint":
                    op = rep.mint(a, x)
                elif kind == "transfer":
                    op = rep.transfer(a, b, x)
                elif kind == "lend":
                    op = rep.lend(a, b % n_replicas, x)
                elif kind == "refund":
                    mine = [(q, acc) for (rr, q, acc) in spends if rr == r]
                    if not mine:
                        continue
                    q, acc = mine[b % len(mine)]
                    op = rep.refund(acc, q, x)
                else:
                    op = getattr(rep, kind)(a, x)
            except LedgerError:
                continue
            if kind == "spend":
                spends.append((r, op.seq, a))
            for dst in range(n_replicas):
                if dst != r:
                    outbox[(r, dst)].append(op)
        elif s[0] == "deliver":
            _, src, dst, k, dup = s
            box = outbox.get((src, dst))
            if not box or side[src] != side[dst]:
                continue
            op = box[k % len(box)]  # any order
            if not dup:
                box.remove(op)
            reps[dst].receive(op)
        elif s[0] == "merge":
            _, a, b, delta = s
            if a == b or side[a] != side[b]:
                continue
            if delta:
                reps[a].sync_from(reps[b])
            else:
                reps[a].merge(reps[b])
        elif s[0] == "partition":
            side[:] = 0
            side[s[1]] = 1
        else:
            side[:] = 0
        check_views(reps)

    # Heal, deliver everything (twice, as duplicates), then one full exchange.
    for (_src, dst), box in outbox.items():
        for op in box + box:
            reps[dst].receive(op)
    for _ in range(2):
        for a in range(n_replicas):
            for b in range(n_replicas):
                if a != b:
                    reps[a].sync_from(reps[b])
    check_views(reps)
    roots = {r.root() for r in reps}
    assert len(roots) == 1, "replicas did not converge to one Merkle root"
    assert all(r.pending == 0 and r.deferred == 0 for r in reps)
    # Honest replicas refuse only entries of their own batches: never another's op or delta.
    assert all("[" in j.op_id for r in reps for j in r.rejected)
    # Every replica's true rights, computed from the converged state, are non-negative.
    for acc in range(n_accounts):
        for own_replica in range(n_replicas):
            assert reps[0].rights_as(acc, own_replica) >= 0
            assert reps[own_replica].rights_as(acc, own_replica) == reps[own_replica].rights(acc)


@settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(st.lists(step, min_size=1, max_size=60))
def test_random_schedules_converge_conserve_and_never_overdraw(steps):
    run_schedule(steps)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(st.lists(busy_step, min_size=40, max_size=100))
def test_schedules_that_reach_the_counter_bound_refuse_and_still_converge(steps):
    run_schedule(steps, bound=60)


@pytest.mark.long
@settings(
    max_examples=100_000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(st.lists(step, min_size=1, max_size=60))
def test_long_random_schedules(steps):
    run_schedule(steps)


def merged(states: list[Replica], kr: Keyring, n_replicas: int) -> bytes:
    """Root of a fresh replica (the last id, which no state has) after merging ``states`` in
    order."""
    target = Replica(n_replicas - 1, n_replicas, n_accounts, kr, leaf_size=2)
    for s in states:
        target.merge(s)
    return target.root()


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.booleans(),
            st.integers(0, n_accounts - 1),
            st.integers(0, n_accounts - 1),
            st.integers(1, 9),
        ),
        min_size=1,
        max_size=30,
    ),
    st.permutations(range(3)),
)
def test_merge_is_commutative_idempotent_and_takes_only_the_owners_cells(script, order):
    kr = Keyring.derive(4, b"laws")
    reps = [Replica(i, 4, n_accounts, kr, leaf_size=2) for i in range(4)]
    for r, mint, a, b, x in script:
        try:
            reps[r].mint(a, x) if mint else reps[r].transfer(a, b, x)
        except LedgerError:
            continue
    a, b, c = reps[:3]
    assert merged([a, b], kr, 4) == merged([b, a], kr, 4)
    assert merged([a, b, c], kr, 4) == merged([reps[i] for i in order], kr, 4)
    assert merged([a, a, b, b], kr, 4) == merged([a, b], kr, 4)
    # A replica relays nothing: what a holds of b's counters is not taken from a.
    a_alone = Replica.from_bytes(a.to_bytes(), kr)
    a.merge(b)
    assert merged([a, c], kr, 4) == merged([a_alone, c], kr, 4)
    assert merged([a, b, c], kr, 4) == merged([a_alone, b, c], kr, 4)


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2), st.integers(1, 9))
def test_owned_merge_kernel_is_a_join(seed, source, leaf):
    """Merging two states of one source's cells, in either order, once or twice, gives their
    element-wise max in the source's cells and changes no other cell."""
    from economy import ledger_kernels as kernels

    rng = np.random.default_rng(seed)
    n, r = 11, 3
    spans = np.array([[0, 4], [6, n]], dtype=np.int64)
    base = rng.integers(0, 50, (n, 2 * r + 2))
    states = [rng.integers(0, 50, (n, 2 * r + 2)) for _ in range(2)]
    parts = [kernels.gather_owned(s, spans, source, r) for s in states]

    def merged_in(order):
        cells = base.copy()
        for i in order:
            kernels.merge_owned(
                cells, spans, *parts[i], source, r, leaf, np.zeros(n // leaf + 1, np.bool_)
            )
        return cells

    want = base.copy()
    rows = np.r_[0:4, 6:n]
    owned = [source, r + source]
    want[np.ix_(rows, owned)] = np.maximum.reduce([base, *states])[np.ix_(rows, owned)]
    homes = rows[rows % r == source]
    want[np.ix_(homes, [2 * r, 2 * r + 1])] = np.maximum.reduce([base, *states])[
        np.ix_(homes, [2 * r, 2 * r + 1])
    ]
    for order in ([0, 1], [1, 0], [0, 1, 0, 1]):
        assert np.array_equal(merged_in(order), want)
