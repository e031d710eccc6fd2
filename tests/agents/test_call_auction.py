"""The call market (``market.mechanism = "call"``): each round clears at one price by its stated
rules, ZI-C traders reach high efficiency in it, and a scenario that chooses it runs, conserves
credits and replays."""

from __future__ import annotations

import numpy as np
import pytest

from agents.auction import CEILING, ROUNDS, call_auction, max_surplus, realised_surplus
from runtime.kernel.errors import ScenarioError
from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.recording import record
from runtime.record.replay import verify


def call_reference(is_buyer, limit, posts, order):
    """The rules of the call market, written out plainly."""
    n = len(limit)
    partner, price = [-1] * n, [0.0] * n
    for r in range(posts.shape[0]):
        rank = {int(i): k for k, i in enumerate(order[r])}
        live = [int(i) for i in order[r] if partner[int(i)] < 0]
        bids = sorted((i for i in live if is_buyer[i]), key=lambda i: (-posts[r, i], rank[i]))
        asks = sorted((i for i in live if not is_buyer[i]), key=lambda i: (posts[r, i], rank[i]))
        k = 0
        while k < min(len(bids), len(asks)) and posts[r, bids[k]] >= posts[r, asks[k]]:
            k += 1
        if k == 0:
            continue
        low = max([posts[r, asks[k - 1]]] + ([posts[r, bids[k]]] if k < len(bids) else []))
        high = min([posts[r, bids[k - 1]]] + ([posts[r, asks[k]]] if k < len(asks) else []))
        for b, s in zip(bids[:k], asks[:k], strict=True):
            partner[b], partner[s] = s, b
            price[b] = price[s] = (low + high) / 2
    return np.array(partner), np.array(price)


def test_the_call_market_follows_its_rules_on_random_markets_ties_included():
    rng = np.random.default_rng(21)
    for trial in range(300):
        n, rounds = int(rng.integers(2, 60)), int(rng.integers(1, 12))
        is_buyer = rng.random(n) < 0.5
        limit = rng.uniform(0.5, 2.0, n)
        posts = np.round(rng.random((rounds, n)) * 2, 1 if trial % 2 else 6)  # many ties
        order = np.argsort(rng.random((rounds, n)), axis=1).astype(np.int64)
        got = call_auction(is_buyer, limit, posts, order)
        want = call_reference(is_buyer, limit, posts, order)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), trial


def test_zi_c_traders_are_efficient_in_the_call_market_and_each_round_has_one_price():
    values = np.linspace(1.45, 0.55, 10)
    costs = np.linspace(0.55, 1.45, 10)
    limit = np.empty(20)
    limit[0::2], limit[1::2] = values, costs
    is_buyer = np.arange(20) % 2 == 0
    rng = np.random.default_rng(0)
    effs = []
    for _ in range(300):
        u = rng.random((ROUNDS, 20))
        posts = np.where(is_buyer, u * limit, limit + u * (CEILING - limit))
        order = np.argsort(rng.random((ROUNDS, 20)), axis=1).astype(np.int64)
        partner, price = call_auction(is_buyer, limit, posts, order)
        traded = partner >= 0
        assert (partner[partner[traded]] == np.flatnonzero(traded)).all()
        assert (is_buyer[traded] != is_buyer[partner[traded]]).all()
        assert (price[is_buyer & traded] <= limit[is_buyer & traded]).all()
        assert (price[~is_buyer & traded] >= limit[~is_buyer & traded]).all()
        assert np.unique(price[traded]).size <= ROUNDS
        effs.append(realised_surplus(is_buyer, limit, partner) / max_surplus(is_buyer, limit))
    assert np.mean(effs) >= 0.85


SCENARIO = """
[world]
ticks = 60
seed = 8
checkpoint_every = 20
[market]
mechanism = "{mechanism}"
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
core = "baseline"
"""


def test_a_scenario_that_chooses_the_call_market_runs_conserves_and_replays(tmp_path):
    worlds = {m: World(parse(SCENARIO.format(mechanism=m))) for m in ("cda", "call")}
    for world in worlds.values():
        world.run()
        for ledger in world.ledgers:
            held, issued = ledger.supply()
            assert held == issued
    cda, call = (worlds[m].populations[1].role_metrics() for m in ("cda", "call"))
    assert call["efficiency"] > 0.8 and cda["efficiency"] > 0.8
    assert call != cda  # the mechanism is the one thing that differs
    path = tmp_path / "call.toml"
    path.write_text(SCENARIO.format(mechanism="call"))
    record(path, tmp_path / "run")
    assert verify(tmp_path / "run").status == "identical"


def test_an_unknown_mechanism_is_named():
    with pytest.raises(ScenarioError, match="market.mechanism"):
        parse(SCENARIO.format(mechanism="auction"))
