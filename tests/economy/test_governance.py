"""NAO voting: snapshots against flash stake, sub-linear whale weighting, exact quorum and
threshold edges, timelock, and the z3 constitution check that blocks violating proposals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from economy.constitution import Constitution
from economy.governance import (
    NAO,
    WEIGHT_SCALE,
    GovernanceError,
    GovernanceParams,
    attention_weights,
)

CONSTITUTION = Constitution({"fee_rate": (0.0, 0.05), "slash_fraction": (0.0, 0.5)})
FLAT = np.zeros(2)


def nao(stakes: list[int], **params: Any) -> tuple[NAO, np.ndarray]:
    book = np.array(stakes, dtype=np.int64)
    org = NAO(
        np.zeros((len(stakes), 2)),
        lambda: book.copy(),
        GovernanceParams(**params),
        CONSTITUTION,
        {"fee_rate": 0.01, "slash_fraction": 0.1},
    )
    return org, book


def test_a_passing_proposal_executes_after_the_timelock():
    org, _ = nao([10, 10, 10], voting_period=3, timelock=2)
    p = org.open(0, {"fee_rate": 0.02}, FLAT, now=0)
    org.vote(p.id, 0, True, now=1)
    org.vote(p.id, 1, True, now=1)
    assert org.tick(2) == [] and p.state == "open"
    assert org.tick(3) == [] and p.state == "queued" and p.eta == 5
    assert org.governed["fee_rate"] == 0.01
    assert org.tick(5) == [p] and org.governed["fee_rate"] == 0.02 and p.state == "executed"


def test_snapshot_defeats_flash_stake():
    org, book = nao([10, 10, 10])
    p = org.open(0, {"fee_rate": 0.03}, FLAT, now=0)
    book[2] = 1_000_000  # the whale buys stake after the proposal opened
    org.vote(p.id, 2, True, now=1)
    org.vote(p.id, 0, False, now=1)
    org.vote(p.id, 1, False, now=1)
    org.tick(5)
    assert p.state == "rejected" and "threshold" in p.reason
    assert p.weights[2] == 10 * WEIGHT_SCALE
    later = org.open(
        0, {"fee_rate": 0.03}, FLAT, now=6
    )  # the new stake counts from the next proposal on
    assert later.weights[2] == 1_000_000 * WEIGHT_SCALE


def test_sublinear_exponent_reduces_the_whales_share_as_computed():
    stakes = np.array([900, 50, 50], dtype=np.int64)
    linear = attention_weights(stakes, np.zeros((3, 2)), FLAT, 1.0, 1.0)
    root = attention_weights(stakes, np.zeros((3, 2)), FLAT, 0.5, 1.0)
    assert linear[0] / linear.sum() == pytest.approx(0.9)
    assert root[0] / root.sum() == pytest.approx(30 / (30 + 2 * np.sqrt(50)), rel=1e-6)
    assert root[0] / root.sum() < 0.7


def test_relevance_follows_expertise():
    expertise = np.array([[1.0, 0.0], [0.0, 1.0]])
    w = attention_weights(np.array([10, 10]), expertise, np.array([2.0, 0.0]), 1.0, 1.0)
    assert w[0] > w[1]
    assert w.sum() == pytest.approx(20 * WEIGHT_SCALE, abs=2)
    assert w[0] / w[1] == pytest.approx(np.e**2, rel=1e-6)


@pytest.mark.parametrize("voters, passes", [((0, 1), True), ((0,), False)])
def test_exactly_at_quorum_passes_one_vote_short_fails(voters, passes):
    org, _ = nao([20, 20, 40, 20], quorum=0.4, threshold=0.5)  # 40% of 100 = 40
    p = org.open(0, {"fee_rate": 0.02}, FLAT, now=0)
    for m in voters:
        org.vote(p.id, m, True, now=0)
    org.tick(5)
    assert (p.state == "queued") is passes
    if not passes:
        assert "quorum" in p.reason


@pytest.mark.parametrize("no_stake, passes", [(30, True), (31, False)])
def test_threshold_edge(no_stake, passes):
    org, _ = nao([30, no_stake, 39], quorum=0.0, threshold=0.5)
    p = org.open(0, {"fee_rate": 0.02}, FLAT, now=0)
    org.vote(p.id, 0, True, now=0)
    org.vote(p.id, 1, False, now=0)
    org.tick(5)
    assert (p.state == "queued") is passes


def test_constitution_violating_proposal_never_executes():
    org, _ = nao([10, 10])
    p = org.open(0, {"fee_rate": 0.10, "slash_fraction": 0.9}, FLAT, now=0)
    org.vote(p.id, 0, True, now=0)
    org.vote(p.id, 1, True, now=0)
    for t in range(1, 30):
        org.tick(t)
    assert p.state == "blocked"
    assert "fee_rate <= 0.05" in p.reason and "slash_fraction <= 0.5" in p.reason
    assert org.governed == {"fee_rate": 0.01, "slash_fraction": 0.1}


def test_constitution_checked_by_z3_on_exact_rationals():
    c = Constitution({"fee_rate": (0.0, 0.05)})
    assert c.verify({"fee_rate": 0.05}).ok
    assert not c.verify({"fee_rate": 0.0500001}).ok
    assert c.verify({"other": 3.0}).ok


def test_bad_governance_actions_are_refused():
    org, _ = nao([10, 0, 10], voting_period=2)
    with pytest.raises(GovernanceError, match="no stake"):
        org.open(1, {"fee_rate": 0.02}, FLAT, now=0)
    with pytest.raises(GovernanceError, match="known parameters"):
        org.open(0, {"fee_rat": 0.02}, FLAT, now=0)
    with pytest.raises(GovernanceError, match="invalid governance"):
        org.open(0, {"quorum": 1.5}, FLAT, now=0)
    with pytest.raises(GovernanceError, match="embedding"):
        org.open(0, {"fee_rate": 0.02}, np.zeros(3), now=0)
    p = org.open(0, {"quorum": 0.5}, FLAT, now=0)
    org.vote(p.id, 0, True, now=0)
    with pytest.raises(GovernanceError, match="already voted"):
        org.vote(p.id, 0, False, now=0)
    with pytest.raises(GovernanceError, match="closed"):
        org.vote(p.id, 2, True, now=2)
    with pytest.raises(GovernanceError, match="does not exist"):
        org.vote(p.id, 9, True, now=0)
    org.tick(2)
    org.tick(4)
    assert p.state == "executed" and org.params.quorum == 0.5


def test_close_open_decides_early_but_not_in_the_opening_tick():
    org, _ = nao([10, 10, 10], voting_period=10)
    first = org.open(0, {"fee_rate": 0.02}, FLAT, now=0)
    org.vote(first.id, 0, True, now=0)
    org.vote(first.id, 1, True, now=0)
    second = org.open(1, {"fee_rate": 0.03}, FLAT, now=3)
    closed = org.close_open(now=3)
    assert closed == [first] and first.state == "queued" and second.state == "open"


def test_admission_and_expulsion_change_who_votes():
    book = np.array([10, 10, 10, 10], dtype=np.int64)
    org = NAO(
        np.zeros((4, 2)),
        lambda: book.copy(),
        GovernanceParams(voting_period=1, timelock=0),
        CONSTITUTION,
        {"fee_rate": 0.01},
        active=np.array([True, True, True, False]),
    )
    with pytest.raises(GovernanceError, match="not an active member"):
        org.open(3, {"fee_rate": 0.02}, FLAT, now=0)
    admit = org.open(0, {}, FLAT, now=0, kind="admit", target=3)
    assert admit.weights[3] == 0  # a candidate has no say on its own admission
    with pytest.raises(GovernanceError, match="no weight"):
        org.vote(admit.id, 3, True, now=0)
    for m in (0, 1):
        org.vote(admit.id, m, True, now=0)
    org.tick(1)
    assert admit.state == "executed" and org.active[3]
    expel = org.open(3, {}, FLAT, now=1, kind="expel", target=0)
    for m in (1, 2, 3):
        org.vote(expel.id, m, True, now=1)
    org.tick(2)
    assert expel.state == "executed" and not org.active[0]
    with pytest.raises(GovernanceError, match="already inactive"):
        org.open(1, {}, FLAT, now=2, kind="expel", target=0)


def test_treasury_spend_is_bounded_by_the_constitution():
    book = np.array([10, 10], dtype=np.int64)
    c = Constitution({"treasury_spend": (0, 100), "member_count": (2, None)})
    org = NAO(
        np.zeros((2, 2)), lambda: book.copy(), GovernanceParams(voting_period=1, timelock=0), c, {}
    )
    ok = org.open(0, {}, FLAT, now=0, kind="treasury", target=7, amount=100)
    big = org.open(0, {}, FLAT, now=0, kind="treasury", target=7, amount=101)
    shrink = org.open(0, {}, FLAT, now=0, kind="expel", target=1)
    for p in (ok, big, shrink):
        org.vote(p.id, 0, True, now=0)
        org.vote(p.id, 1, True, now=0)
    executed = org.tick(1)
    assert executed == [ok]
    assert big.state == "blocked" and "treasury_spend <= 100" in big.reason
    assert shrink.state == "blocked" and "member_count >= 2" in shrink.reason
    with pytest.raises(GovernanceError, match="amount > 0"):
        org.open(0, {}, FLAT, now=1, kind="treasury", target=7, amount=0)
    with pytest.raises(GovernanceError, match="kind"):
        org.open(0, {}, FLAT, now=1, kind="coup")
