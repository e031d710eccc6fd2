"""Negotiators: ZI-C reaches textbook efficiency in the double auction, the auction's rules hold,
a MicroLoRA update changes only its agent's outputs, and the learned core beats ZI-C."""

from __future__ import annotations

import numpy as np

from agents.negotiator import CEILING, ROUNDS, Policy, double_auction, max_surplus, realised_surplus
from runtime.recording import record, with_baseline_cores
from runtime.replay import verify
from runtime.scenario import parse
from runtime.world import World


def test_zi_c_efficiency_in_a_textbook_double_auction_is_at_least_90_percent():
    # Smith-style schedule: 10 buyers valued 1.45, 1.35, ..., 0.55; 10 sellers costing 0.55, ..., 1.45.
    values = np.linspace(1.45, 0.55, 10)
    costs = np.linspace(0.55, 1.45, 10)
    limit = np.empty(20)
    limit[0::2], limit[1::2] = values, costs
    is_buyer = np.arange(20) % 2 == 0
    assert max_surplus(is_buyer, limit) == np.sum(np.clip(values - costs, 0, None))
    rng = np.random.default_rng(0)
    effs = []
    for _ in range(300):
        u = rng.random((ROUNDS, 20))
        posts = np.where(is_buyer, u * limit, limit + u * (CEILING - limit))
        order = np.argsort(rng.random((ROUNDS, 20)), axis=1).astype(np.int64)
        partner, price = double_auction(is_buyer, limit, posts, order)
        traded = partner >= 0
        assert (is_buyer[traded] != is_buyer[partner[traded]]).all()  # buyers trade with sellers
        assert (price[is_buyer & traded] <= limit[is_buyer & traded] + 1e-12).all()  # no buyer pays over value
        assert (price[~is_buyer & traded] >= limit[~is_buyer & traded] - 1e-12).all()  # no seller sells under cost
        effs.append(realised_surplus(is_buyer, limit, partner) / max_surplus(is_buyer, limit))
    assert np.mean(effs) >= 0.90


def test_a_microlora_update_changes_only_that_agents_outputs():
    policy = Policy(6, np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=(6, 2))
    before, h = policy.forward(x)
    only = np.zeros(6, dtype=bool)
    only[3] = True
    base = (policy.w1.copy(), policy.b1.copy(), policy.w2.copy(), policy.b2)
    policy.learn(x, h, np.ones(6), np.ones(6), 0.3, 0.0, 1.0, agents_only=only)
    after, _ = policy.forward(x)
    assert np.array_equal(policy.w1, base[0]) and policy.b2 == base[3]
    changed = np.flatnonzero(after != before)
    assert changed.tolist() == [3]


SCENARIO = """
[world]
ticks = 200
seed = 8
checkpoint_every = 50
[[population]]
name = "neg"
role = "negotiator"
count = 40
initial_credits = 1000
"""


def test_learned_negotiators_beat_zi_c_on_efficiency_and_profit():
    sc = parse(SCENARIO)
    learned, zic = World(sc), World(with_baseline_cores(sc))
    learned.run()
    zic.run()
    a, b = learned.populations[0].role_metrics(), zic.populations[0].role_metrics()
    assert b["efficiency"] >= 0.9
    assert a["efficiency"] > b["efficiency"] and a["profit_per_agent"] > b["profit_per_agent"]
    for ledger in learned.ledgers:
        held, issued = ledger.supply()
        assert held == issued


def test_a_negotiator_run_replays(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text(SCENARIO.replace("ticks = 200", "ticks = 60"))
    summary = record(path, tmp_path / "run")
    assert summary["totals"]["roles"]["neg"]["efficiency"] > 0.9
    assert verify(tmp_path / "run").status == "identical"
