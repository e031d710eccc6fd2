"""Contribution curve, rates, reputation, market pricing and task routing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from economy import LedgerError
from economy.contribution import contribution_multiplier
from economy.market import Market
from economy.rates import MICRO, Rates
from economy.reputation import BetaReputation
from economy.routing import TopKGate, hash_route


def test_contribution_multiplier_follows_the_formula_not_the_plan_table():
    assert contribution_multiplier(0) == 10.0
    for c in (1e5, 5e5, 1e6, 5e6):
        assert contribution_multiplier(c) == pytest.approx(1 + 9 * math.exp(-c / 1e6), rel=1e-15)
    assert contribution_multiplier(1e6) == pytest.approx(4.3109149705, rel=1e-9)  # 1 + 9/e
    assert contribution_multiplier(5e5) != pytest.approx(5.0)  # exp(-0.5): about 6.46, not 5
    with pytest.raises(LedgerError, match=">= 0"):
        contribution_multiplier(-1)
    with pytest.raises(LedgerError):
        contribution_multiplier(float("nan"))


def test_rates_default_to_the_plan_in_micro_credits():
    rates = Rates()
    assert rates.task_unit == MICRO  # 1 credit per compute task unit
    assert rates.uptime_hour == MICRO // 10  # 0.1 credit per hour of uptime
    assert rates.priority_factor == 2  # priority execution costs twice
    assert rates.storage_mb_day == MICRO // 100  # 0.01 credit per MB per day
    with pytest.raises(LedgerError, match="task_unit"):
        Rates(task_unit=-1)
    with pytest.raises(LedgerError, match="uptime_hour"):
        Rates(uptime_hour=-5)


def test_reputation_predicts_success_better_than_chance():
    rng = np.random.default_rng(1)
    n = 200
    p_true = rng.uniform(0, 1, n)
    rep = BetaReputation(n, decay=0.999)
    for _ in range(200):
        agents = rng.integers(0, n, 100)
        rep.observe(agents, rng.random(100) < p_true[agents])
        rep.step()
    assert rep.accuracy > 0.7
    assert rep.brier < 0.22
    assert np.corrcoef(rep.score(), p_true)[0, 1] > 0.9
    with pytest.raises(LedgerError):
        rep.observe(np.array([0, 1]), np.array([True]))


def test_market_prices_follow_demand_within_the_step_bound():
    m = Market(3, base_price=1000, elasticity=2.0, max_step=0.05)
    for _ in range(10):
        p = m.update(np.array([100, 0, 10]), np.array([0, 100, 10]))
    assert p[0] == pytest.approx(1000 * 1.05**10, rel=1e-3)
    assert p[1] == pytest.approx(1000 * 0.95**10, abs=10)  # whole micro-credits each tick
    assert p[2] == 1000
    assert p.dtype == np.int64
    with pytest.raises(LedgerError):
        m.update(np.array([1]), np.array([1]))


def test_hash_routing_is_deterministic_and_balanced():
    ids = np.arange(100_000)
    a = hash_route(ids, 50, salt=3)
    assert np.array_equal(a, hash_route(ids, 50, salt=3))
    load = np.bincount(a, minlength=50)
    assert load.std() / load.mean() < 0.05


def test_topk_gate_respects_capacity_and_learns_from_outcomes():
    skills = np.eye(4)[[0, 0, 1, 2]]  # agents 0 and 1 share skill 0; nobody has skill 3
    gate = TopKGate(skills, k=1, capacity_factor=1.0, lr=0.5, balance_rate=0.0)
    tasks = np.eye(4)[[0] * 8]
    assignment, stats = gate.route(tasks)
    capacity = math.ceil(1.0 * 8 / 4)
    assert stats.load.max() <= capacity and stats.dropped == 8 - stats.load.sum()
    assert set(assignment[assignment >= 0].tolist()) <= {0, 1, 2, 3}
    for _ in range(20):  # agent 1 succeeds, agent 0 fails: the gate should prefer agent 1
        gate.learn(np.array([0, 1]), np.array([False, True]))
    assert gate.bias[1] > gate.bias[0]
    a2, _ = gate.route(np.eye(4)[[0]])
    assert a2[0, 0] == 1
    a3, _ = gate.route(np.eye(4)[[0]], available=np.array([True, False, True, True]))
    assert a3[0, 0] != 1
    assert stats.utilisation <= 1.0 and stats.load_std >= 0


def test_overflow_gate_offers_full_agents_work_to_the_next_best():
    skills = np.eye(4)[[0, 0, 1, 2, 3, 3]]
    tasks = np.eye(4)[[0] * 12]
    dropped = TopKGate(skills, k=1, capacity_factor=1.0, balance_rate=0.0)
    _, s_drop = dropped.route(tasks)
    assert s_drop.dropped == 12 - 2  # capacity 2, one best agent
    market = TopKGate(skills, k=1, capacity_factor=1.0, balance_rate=0.0, overflow=True)
    a, s_next = market.route(tasks)
    assert s_next.dropped == 0 and s_next.load.tolist() == [2, 2, 2, 2, 2, 2]
    assert a[:4, 0].tolist() == [0, 0, 1, 1]  # the skilled agents first
    a2, _ = TopKGate(skills, k=2, capacity_factor=2.0, overflow=True).route(tasks[:3])
    assert all(len(set(row)) == 2 for row in a2.tolist())


def test_the_one_hot_routing_path_assigns_exactly_as_the_dense_greedy_pass():
    from economy.routing import TopKGate, _assign

    rng = np.random.default_rng(8)
    for trial in range(160):
        n, d, m = int(rng.integers(2, 40)), int(rng.integers(1, 6)), int(rng.integers(1, 120))
        if trial < 60:
            skills = np.round(
                rng.random((n, d)), 1
            )  # coarse values: many ties, the sort-per-skill path
            bias = np.round(rng.normal(0, 0.1, n), 1)
        else:
            # A main skill and the rest (the workers' case): the merged path. Biases a rounding
            # error
            # apart tie once a skill value is added, and ties go to the lower index.
            skills = np.where(rng.random((n, d)) < 0.3, 1.0, 0.1)
            bias = rng.choice([0.0, 1e-17, -1e-17, 0.9, 0.9 + 1e-16, -0.5], size=n)
        gate = TopKGate(skills, k=1, overflow=bool(trial % 2))
        gate.bias = bias
        onehot = np.zeros((m, d))
        onehot[np.arange(m), rng.integers(0, d, m)] = 1.0
        available = rng.random(n) < 0.8
        capacity = int(rng.integers(1, 6))
        logits = onehot @ skills.T + gate.bias
        logits[:, ~available] = -np.inf
        dense = _assign(logits, capacity, 1, gate.overflow)
        fast, _ = gate.route(onehot, available=available, capacity=capacity)
        assert np.array_equal(fast, dense), trial


def test_route_skills_gives_route_of_the_one_hot_rows():
    rng = np.random.default_rng(5)
    for trial in range(30):
        n, d, m = int(rng.integers(3, 40)), int(rng.integers(1, 6)), int(rng.integers(0, 80))
        skills = np.full((n, d), 0.1)
        skills[np.arange(n), rng.integers(0, d, n)] = 1.0
        a, b = (
            TopKGate(skills.copy(), overflow=bool(trial % 2)),
            TopKGate(skills.copy(), overflow=bool(trial % 2)),
        )
        for _ in range(3):  # the bias moves with each routing: both gates must move alike
            task = rng.integers(0, d, m)
            onehot = np.zeros((m, d))
            onehot[np.arange(m), task] = 1.0
            avail = rng.random(n) < 0.8
            cap = None if trial % 3 == 0 else int(rng.integers(1, 4))
            (x, sx), (y, sy) = a.route(onehot, avail, cap), b.route_skills(task, avail, cap)
            assert x.tolist() == y.tolist() and sx.dropped == sy.dropped
            assert a.bias.tobytes() == b.bias.tobytes()


def test_route_skills_refuses_skills_outside_the_gate():
    gate = TopKGate(np.eye(3))
    for bad in (np.array([0, 3]), np.array([-1]), np.array([0.5]), np.zeros((2, 1), np.int64)):
        with pytest.raises(LedgerError, match=r"integers in \[0, 3\)"):
            gate.route_skills(bad)
    assert gate.bias.tolist() == [0.0, 0.0, 0.0]
