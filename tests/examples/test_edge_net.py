"""edge-net: a compute marketplace whose nodes both sell and buy stays alive for 5,000 ticks,
creates credits only by its stated rules, and dies out when split into buyers and sellers.

Held-out seeds 21 and 22 (the scenario ships with 7); 300 nodes, the full 5,000 ticks, about 4 s
a run. "Volume" is the CPU-hours traded; the volume in credits is CPU-hours times the price,
which follows the contribution multiplier down (see test_the_price_settles_where_rewards_meet_fees).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import agora
from agora import MICRO
from economy.contribution import contribution_multiplier

from .conftest import simulate

SEEDS = (21, 22)
TICKS = 5_000
WINDOW = 1_000
NODES = 300
START_CREDITS = 100
REWARD, FEE_RATE = 0.05, 0.05  # the scenario's reward per CPU-hour and fee rate
VOLUME_KEPT_MIN = 0.95  # CPU-hours traded in the last 1,000 ticks over the first 1,000


@pytest.fixture(scope="module", params=SEEDS)
def run(request) -> tuple[agora.Simulation, pl.DataFrame]:
    sim = simulate("edge_net", request.param, TICKS)
    sim.run()
    return sim, sim.metrics()


def _window(metrics: pl.DataFrame, first: bool) -> pl.DataFrame:
    return metrics.head(WINDOW) if first else metrics.tail(WINDOW)


def test_trade_does_not_decay_over_5000_ticks(run):
    _, metrics = run
    first, last = _window(metrics, True), _window(metrics, False)
    kept = last["nodes/units"].sum() / first["nodes/units"].sum()
    assert kept >= VOLUME_KEPT_MIN
    assert last["nodes/units"].min() > 0  # not one tick without trade
    served = last["nodes/units"].sum() / last["nodes/units_offered"].sum()
    assert served >= 0.9  # nearly all the compute offered finds a buyer
    gini = last["nodes/gini"].to_numpy()
    assert 0.2 <= gini.min() and gini.max() <= 0.45  # capacity-driven, and not concentrating


def test_the_price_settles_where_rewards_meet_fees(run):
    # Money in circulation grows by reward·multiplier and shrinks by fee_rate·price per CPU-hour,
    # so the price tends to reward·multiplier/fee_rate; it lags the multiplier by a few hundred
    # ticks, and by the last 1,000 ticks the multiplier has nearly stopped moving.
    _, metrics = run
    last = _window(metrics, False)
    anchor = REWARD * last["nodes/multiplier"].to_numpy() / FEE_RATE
    ratio = float(np.mean(last["nodes/price_credits"].to_numpy() / anchor))
    assert 0.97 <= ratio <= 1.10
    first_price = float(_window(metrics, True)["nodes/price_credits"].mean())
    assert first_price > 2 * float(last["nodes/price_credits"].mean())  # the early bonus, priced in


def test_credits_are_created_only_by_the_stated_rules(run):
    sim, metrics = run
    held, issued = (
        metrics["supply_held_micro"].to_numpy(),
        metrics["supply_issued_micro"].to_numpy(),
    )
    assert (held == issued).all()
    units = metrics["nodes/units"].to_numpy()
    compute_before = np.concatenate([[0], np.cumsum(units)[:-1]]).astype(np.float64)
    per_hour = np.array(
        [int(REWARD * MICRO * float(contribution_multiplier(c))) for c in compute_before]
    )
    rewards = units * per_hour
    assert (metrics["nodes/rewards_micro"].to_numpy() == rewards).all()
    assert (metrics["minted_micro"].to_numpy() == rewards).all()  # the kernel counts every mint
    assert issued[0] == NODES * START_CREDITS * MICRO + rewards[0]
    assert (np.diff(issued) == rewards[1:]).all()
    treasury = sim.balances().filter(pl.col("population") == "treasury")["balance_micro"][0]
    assert (
        treasury == int(metrics["nodes/fees_micro"].sum()) > 0
    )  # the treasury holds the fees, all


def test_a_market_split_into_buyers_and_sellers_dies_out():
    sim = simulate("edge_net", SEEDS[0], 1_500, nodes={"split_roles": True})
    sim.run()
    units = sim.metrics()["nodes/units"].to_numpy()
    assert units[:100].sum() > 0
    assert units[-500:].sum() <= 0.01 * units[:500].sum()
    buyers = sim.population("nodes").filter(pl.col("submits"))
    # The buyers' money went to the sellers; what is left no longer pays a seller's cost.
    assert (buyers["balance_credits"] < 0.05 * START_CREDITS).all()
