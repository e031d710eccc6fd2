"""z3 proves that every accepted op preserves the ledger's invariants -- and finds the overdraft
when the escrow check is replaced by a bare PN-Counter's balance check (the negative control)."""

from __future__ import annotations

import numpy as np
import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from economy import Keyring, LedgerError, Op, Replica, rules
from economy.rules import ACCOUNTS, N_REPLICAS, State


def symbolic_state() -> State:
    def grid(name: str) -> list[list[z3.ArithRef]]:
        return [[z3.Int(f"{name}_{a}_{r}") for r in range(N_REPLICAS)] for a in ACCOUNTS]

    return State(
        earned=grid("E"),
        spent_p=grid("P"),
        spent_n=grid("N"),
        lent=grid("L"),
        returned=grid("T"),
        stake_in=[z3.Int(f"SI_{a}") for a in ACCOUNTS],
        stake_out=[z3.Int(f"SO_{a}") for a in ACCOUNTS],
        minted=z3.Int("minted"),
        burned=z3.Int("burned"),
        refunded=z3.Int("refunded"),
        view_lent=grid("vL"),
        view_returned=grid("vT"),
        view_spent_p=grid("vP"),
    )


def ops_under_test(s: State, x: z3.ArithRef, escrow: bool):
    And = z3.And
    out = {}
    for r in range(N_REPLICAS):
        out[f"transfer 0->1 at replica {r}"] = rules.transfer(s, 0, 1, r, x, And, escrow)
        out[f"spend at replica {r}"] = rules.spend(s, 0, r, x, And, escrow)
        out[f"mint at replica {r}"] = rules.mint(s, 0, r, x, And)
    out["escrow move: lend home->1"] = rules.lend(s, 0, 1, x, And)
    out["escrow move: give back 1->home"] = rules.give_back(s, 0, 1, x, And)
    out["stake"] = rules.stake(s, 0, x, And, escrow)
    out["unstake"] = rules.unstake(s, 0, x, And)
    out["slash"] = rules.slash(s, 0, x, And)
    return out


@pytest.mark.parametrize("name", list(ops_under_test(symbolic_state(), z3.Int("x"), True)))
def test_z3_proves_each_accepted_op_preserves_the_invariants(name):
    s, x = symbolic_state(), z3.Int("x")
    guard, after = ops_under_test(s, x, escrow=True)[name]
    solver = z3.Solver()
    solver.add(rules.invariants(s, z3.And), rules.views_lag(s, z3.And), guard)
    solver.add(z3.Not(rules.invariants(after, z3.And)))
    assert solver.check() == z3.unsat, f"{name}: counterexample {solver.model()}"


def test_z3_finds_the_overdraft_without_the_escrow_check():
    s, x = symbolic_state(), z3.Int("x")
    guard, after = rules.spend(s, 0, 0, x, z3.And, escrow=False)
    solver = z3.Solver()
    solver.add(rules.invariants(s, z3.And), rules.views_lag(s, z3.And), guard)
    solver.add(rules.balance(after, 0) < 0)  # an overdraft
    assert solver.check() == z3.sat
    m = solver.model()
    before = m.eval(rules.balance(s, 0)).as_long()
    amount = m.eval(x).as_long()
    stale_view = m.eval(rules.balance(s, 0, view_from=0)).as_long()
    # The counterexample is the partition story: this replica's stale view allowed a spend that
    # the true balance (another replica already spent) could not cover.
    assert amount > before and stale_view >= amount


def test_z3_negative_control_also_breaks_transfers():
    s, x = symbolic_state(), z3.Int("x")
    guard, after = rules.transfer(s, 0, 1, 1, x, z3.And, escrow=False)
    solver = z3.Solver()
    solver.add(
        rules.invariants(s, z3.And),
        rules.views_lag(s, z3.And),
        guard,
        z3.Not(rules.invariants(after, z3.And)),
    )
    assert solver.check() == z3.sat


def concrete(rep: Replica) -> State:
    """The rules' state read off a real replica (its own view; views = what it holds)."""
    rows = [rep.counters(a) for a in ACCOUNTS]

    def grid(block: str) -> list[list[int]]:
        return [[int(v) for v in np.atleast_1d(rows[a][block])] for a in ACCOUNTS]

    t = rep.totals.sum(axis=0)
    return State(
        earned=grid("earned"),
        spent_p=grid("spent_p"),
        spent_n=grid("spent_n"),
        lent=grid("lent"),
        returned=grid("returned"),
        stake_in=[int(rows[a]["stake_in"]) for a in ACCOUNTS],
        stake_out=[int(rows[a]["stake_out"]) for a in ACCOUNTS],
        minted=int(t[0]),
        burned=int(t[1]),
        refunded=int(t[2]),
        view_lent=grid("lent"),
        view_returned=grid("returned"),
        view_spent_p=grid("spent_p"),
    )


def _all_true(*conditions: object) -> bool:
    """The rules' conjunction over concrete booleans."""
    return all(bool(condition) for condition in conditions)


def _run_op(rep: Replica, kind: str, account: int, amount: int) -> Op:
    """Run one scripted op of kind ``kind`` on ``rep`` (the other account is ``1 - account``)."""
    if kind == "transfer":
        return rep.transfer(account, 1 - account, amount)
    if kind == "lend":
        return rep.lend(account, 1 - rules.home(account), amount)
    op: Op = getattr(rep, kind)(account, amount)
    return op


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, N_REPLICAS - 1),
            st.sampled_from(
                ["mint", "transfer", "spend", "lend", "give_back", "stake", "unstake", "slash"]
            ),
            st.integers(0, 1),
            st.integers(1, 40),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_the_implementation_accepts_exactly_what_the_rules_allow(script):
    """The proved rules and the numba kernel agree on every accept/reject decision (one shared
    view)."""
    kr = Keyring.derive(N_REPLICAS, b"rules")
    reps = [Replica(r, N_REPLICAS, 2, kr, leaf_size=1) for r in range(N_REPLICAS)]
    for r, kind, a, x in script:
        rep = reps[r]
        s = concrete(rep)
        if kind == "mint":
            guard, _ = rules.mint(s, a, r, x, _all_true)
        elif kind == "transfer":
            guard, _ = rules.transfer(s, a, 1 - a, r, x, _all_true)
        elif kind == "spend":
            guard, _ = rules.spend(s, a, r, x, _all_true)
        elif kind == "lend":
            guard, _ = rules.lend(s, a, 1 - rules.home(a), x, _all_true)
            guard = guard and r == rules.home(a)
        elif kind == "give_back":
            guard, _ = rules.give_back(s, a, r, x, _all_true)
        else:
            guard, _ = getattr(rules, kind)(s, a, x, _all_true)
            guard = guard and r == rules.home(a)
        try:
            op = _run_op(rep, kind, a, x)
            accepted = True
        except LedgerError:
            accepted = False
        assert accepted == bool(guard), (
            f"{kind} a={a} x={x} at {r}: code says {accepted}, rules say {guard}"
        )
        if accepted:
            for other in reps:
                if other is not rep:
                    other.receive(op)
    assert np.array_equal(reps[0].balances(), reps[1].balances())
