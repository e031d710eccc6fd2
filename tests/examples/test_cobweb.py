"""The cobweb (Ezekiel 1938): near the equilibrium each season's price deviation is minus the
slope ratio K/G times the last; the swings die out when K/G < 1 and grow when K/G > 1, until the
curves' kinks hold them in a two-season boom and bust.

Held-out seeds 51, 52, 53 (the scenarios ship with 1938); 60 seasons. The slopes are drawn per
agent, so each seed has its own K/G (0.73..0.92 for the convergent scenario, 1.13..1.38 for the
divergent one, at two standard deviations); the tests read it from the agents' state.
"""

from __future__ import annotations

import numpy as np
import pytest

import agora

from .conftest import simulate

SEEDS = (51, 52, 53)
SEASONS = 60
RATIO_TOLERANCE = 1e-6  # relative: in the linear region the ratio is K/G to rounding


def _seasons(scenario: str, seed: int) -> tuple[np.ndarray, float, float, agora.Simulation]:
    """Prices by season, the equilibrium price and K/G (from the agents' slopes)."""
    sim = simulate(scenario, seed, SEASONS)
    sim.run()
    metrics = sim.metrics()
    ratio = sim.population("farmers")["slope"].sum() / sim.population("consumers")["slope"].sum()
    assert abs(metrics["consumers/slope_ratio"][0] / ratio - 1.0) < 1e-12
    equilibrium = float(metrics["consumers/equilibrium_price_credits"][0])
    return metrics["consumers/price_credits"].to_numpy(), equilibrium, float(ratio), sim


def _linear(prices: np.ndarray, sim: agora.Simulation) -> np.ndarray:
    """Seasons t >= 1 whose planting price and clearing price both lie where every farmer plants
    and every consumer buys."""
    plants_all = float(sim.population("farmers")["cost_credits"].max())
    consumers = sim.population("consumers")
    buys_all = float((consumers["intercept"] / consumers["slope"]).min())
    inside = (prices >= plants_all) & (prices <= buys_all)
    return np.flatnonzero(inside[1:] & inside[:-1]) + 1


@pytest.mark.parametrize("seed", SEEDS)
def test_the_swings_die_out_when_supply_is_flatter_than_demand(seed):
    prices, equilibrium, ratio, sim = _seasons("cobweb_convergent", seed)
    assert ratio < 1.0
    deviation = prices - equilibrium
    t = _linear(prices, sim)
    assert t.size >= SEASONS // 2
    shrink = deviation[t] / deviation[t - 1]
    assert np.allclose(shrink, -ratio, rtol=RATIO_TOLERANCE, atol=0.0)  # alternating, by K/G
    assert abs(deviation[-1]) <= 0.01 * abs(deviation[0])
    assert (sim.metrics()["consumers/spent_micro"] > 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_swings_grow_when_supply_is_steeper_than_demand(seed):
    prices, equilibrium, ratio, sim = _seasons("cobweb_divergent", seed)
    assert ratio > 1.0
    deviation = prices - equilibrium
    t = _linear(prices, sim)
    assert t.size >= 1  # the first seasons, before the swings reach the kinks
    assert np.allclose(deviation[t] / deviation[t - 1], -ratio, rtol=RATIO_TOLERANCE, atol=0.0)
    # Then boom and bust: the price alternates between two levels, far apart.
    tail = prices[-10:]
    assert np.allclose(tail[2:], tail[:-2], rtol=1e-9, atol=1e-9)
    assert abs(tail[-1] - tail[-2]) >= 5 * abs(deviation[0])
    assert min(tail[-1], tail[-2]) == 0.0  # a glut: consumers take all they want for free


def test_a_farmer_population_needs_a_consumer_market():
    with pytest.raises(agora.ScenarioError, match=r"market: names no Consumers population"):
        simulate("cobweb_convergent", SEEDS[0], farmers={"market": "nobody"})
