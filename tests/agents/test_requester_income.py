"""The default scenario stays alive: requesters' income keeps demand up, and without it trade
dies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

import agora

DEFAULT = Path(__file__).resolve().parents[2] / "scenarios" / "marketplace.toml"


def _volume(income: float | None, ticks: int = 300) -> np.ndarray:
    """Credits traded per tick in the default scenario at an eighth of its size."""
    data = tomllib.loads(DEFAULT.read_text())
    data["world"]["ticks"] = ticks
    for pop in data["population"]:
        pop["count"] = max(1, pop["count"] // 8)
        if pop["name"] == "requesters" and income is not None:
            pop["income"] = income
    sim = agora.Simulation.from_dict(data, base=DEFAULT.parent)
    sim.run()
    metrics = sim.metrics()
    minted = int(metrics["minted_micro"].sum())
    held, issued = metrics["supply_held_micro"][-1], metrics["supply_issued_micro"][-1]
    assert held == issued and minted <= issued  # income is minted and counted, nothing hidden
    return metrics["volume_micro"].to_numpy() / 1e6


def test_with_the_shipped_income_trade_does_not_decay():
    volume = _volume(None)
    first, last = volume[:100].mean(), volume[-100:].mean()
    assert first > 0 and last >= 0.6 * first, (first, last)


def test_without_income_trade_dies_out():
    volume = _volume(0.0)
    assert volume[-100:].mean() < 0.05 * volume[:100].mean()
