"""Negotiators: ZI-C reaches textbook efficiency in the double auction, the auction's rules hold,
a MicroLoRA update changes only its agent's outputs, and the learned core beats ZI-C."""

from __future__ import annotations

import numpy as np

from agents.auction import (
    CEILING,
    ROUNDS,
    arrival_orders,
    double_auction,
    double_auction_fast,
    max_surplus,
    realised_surplus,
)
from agents.negotiator import Policy
from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.recording import record, with_baseline_cores
from runtime.record.replay import verify


def test_zi_c_efficiency_in_a_textbook_double_auction_is_at_least_90_percent():
    # Smith-style schedule: 10 buyers valued 1.45, 1.35, ..., 0.55; 10 sellers costing 0.55, ...,
    # 1.45.
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
        assert (
            price[is_buyer & traded] <= limit[is_buyer & traded] + 1e-12
        ).all()  # no buyer pays over value
        assert (
            price[~is_buyer & traded] >= limit[~is_buyer & traded] - 1e-12
        ).all()  # no seller sells under cost
        effs.append(realised_surplus(is_buyer, limit, partner) / max_surplus(is_buyer, limit))
    assert np.mean(effs) >= 0.90


def test_a_microlora_update_changes_only_that_agents_outputs():
    policy = Policy(6, np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=(6, 2))
    before, h = policy.forward(x)
    only = np.zeros(6, dtype=bool)
    only[3] = True
    base = policy.arrays()
    policy.learn(x, h, np.ones(6), np.ones(6), 0.3, 0.0, 1.0, agents_only=only)
    after, _ = policy.forward(x)
    now = policy.arrays()
    assert all(np.array_equal(now[k], base[k]) for k in ("w1", "b1", "w2", "b2", "B"))
    changed = np.flatnonzero(after != before)
    assert changed.tolist() == [3]


SCENARIO = """
[world]
ticks = 200
seed = 8
checkpoint_every = 50
[[population]]
name = "req"
role = "requester"
count = 300
initial_credits = 1000
post_rate = 0.3
[[population]]
name = "neg"
role = "negotiator"
count = 40
initial_credits = 1000
"""


def test_contracts_take_tasks_off_the_board_and_pay_the_contractor():
    world = World(parse(SCENARIO))
    world.run(30)
    neg = world.populations[1]
    assert neg.profit.sum() > 0
    bal = sum(world.ledgers[r].balances()[neg.ids] for r in range(len(world.ledgers)))
    assert (world.ledgers[0].balances()[neg.ids] >= 0).all() and bal.sum() > 0


def test_learned_negotiators_beat_zi_c_on_efficiency_and_profit():
    scenario_config = parse(SCENARIO)
    learned, zic = World(scenario_config), World(with_baseline_cores(scenario_config))
    learned.run()
    zic.run()
    a, b = learned.populations[1].role_metrics(), zic.populations[1].role_metrics()
    assert b["efficiency"] >= 0.9
    assert (
        a["efficiency"] > b["efficiency"]
        and a["profit_per_agent_credits"] > b["profit_per_agent_credits"]
    )
    for ledger in learned.ledgers:
        held, issued = ledger.supply()
        assert held == issued


def test_a_negotiator_run_replays(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text(SCENARIO.replace("ticks = 200", "ticks = 60"))
    summary = record(path, tmp_path / "run")
    assert summary["totals"]["roles"]["neg"]["efficiency"] > 0.9
    assert verify(tmp_path / "run").status == "identical"


def test_a_saved_policy_is_loaded_as_another_scenarios_core(tmp_path):
    train = tmp_path / "train.toml"
    train.write_text(SCENARIO)
    summary = record(train, tmp_path / "trained")
    assert summary["cores_saved"] == {"neg": "cores/neg.npz"}
    deploy_dir = tmp_path / "deploy"
    (deploy_dir / "policies").mkdir(parents=True)
    (deploy_dir / "policies" / "neg.npz").write_bytes(
        (tmp_path / "trained" / "cores" / "neg.npz").read_bytes()
    )
    deploy = deploy_dir / "deploy.toml"
    deploy.write_text(
        SCENARIO.replace(
            "count = 40\ninitial_credits = 1000",
            'count = 40\ninitial_credits = 1000\ncore = "policies/neg.npz"',
        )
        .replace("seed = 8", "seed = 9")
        .replace("ticks = 200", "ticks = 20")
    )
    loaded = World(parse(deploy.read_text(), str(deploy), deploy_dir), base=deploy_dir)
    fresh = World(
        parse(SCENARIO.replace("seed = 8", "seed = 9").replace("ticks = 200", "ticks = 20"))
    )
    trained_w1 = np.load(tmp_path / "trained" / "cores" / "neg.npz")["w1"]
    assert np.array_equal(loaded.populations[1].policy.arrays()["w1"], trained_w1)
    loaded.run()
    fresh.run()
    # The trained policy earns more from its first periods; a fresh one is still learning.
    assert (
        loaded.populations[1].role_metrics()["profit_per_agent_credits"]
        > fresh.populations[1].role_metrics()["profit_per_agent_credits"]
    )
    run = record(deploy, tmp_path / "deployed")  # the policy file travels with the run...
    assert (tmp_path / "deployed" / "policies" / "neg.npz").is_file() and run["cores_saved"]
    assert verify(tmp_path / "deployed").status == "identical"  # ...so it replays


def test_a_missing_or_broken_policy_file_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from runtime.cli import app

    path = tmp_path / "s.toml"
    path.write_text(
        SCENARIO.replace(
            "count = 40\ninitial_credits = 1000",
            'count = 40\ninitial_credits = 1000\ncore = "nope.npz"',
        )
    )
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 2 and "core file not found" in r.output
    (tmp_path / "nope.npz").write_bytes(b"not a policy")
    r = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "-q"])
    assert (
        r.exit_code == 2
        and "not a negotiator policy file" in r.output
        and "Traceback" not in r.output
    )


def test_the_heap_auction_matches_the_direct_one_on_random_markets_ties_included():
    rng = np.random.default_rng(12)
    for trial in range(200):
        n, rounds = int(rng.integers(2, 50)), int(rng.integers(1, 15))
        is_buyer = rng.random(n) < 0.5
        limit = rng.uniform(0.5, 2.0, n)
        posts = np.round(
            rng.random((rounds, n)) * 2, 1 if trial % 2 else 6
        )  # coarse prices: many ties
        order = np.argsort(rng.random((rounds, n)), axis=1).astype(np.int64)
        a, b = (
            double_auction(is_buyer, limit, posts, order),
            double_auction_fast(is_buyer, limit, posts, order),
        )
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), trial


def test_arrival_orders_break_ties_by_index_as_a_stable_sort_does():
    rng = np.random.default_rng(5)
    keys = rng.random((6, 5000))
    keys[1] = np.floor(keys[1] * 4)  # four values: thousands of ties
    keys[4, 100:200] = keys[4, 50]  # a run of ties among distinct keys
    got = arrival_orders(keys)
    assert got.dtype == np.int64
    assert np.array_equal(got, np.argsort(keys, axis=1, kind="stable"))
    assert np.array_equal(
        got[[0, 2, 3, 5]], np.argsort(keys[[0, 2, 3, 5]], axis=1)
    )  # no ties: the one order
    assert np.array_equal(arrival_orders(keys[:, :1]), np.zeros((6, 1), dtype=np.int64))
