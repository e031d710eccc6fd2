"""Agent-steps per second of the scenario environments against the small benchmark market.

``agora.make_parallel_env(scenarios/marketplace.toml, "negotiators")`` with 10, 100 and 1,000
negotiators, every one a learner, beside ``market_v0``'s parallel env with as many agents. A
scenario env steps the whole World each tick (requesters, workers, critics, healers, the world
model, faults, the ledger replicas, coordination), so its figure is the World's tick rate times
the learners; the share of the wall time spent inside the World's tick says where the time goes.
The rest of the suite ``envs`` (trainers, trained policies) is ``agora bench --only envs``.
"""

from __future__ import annotations

from benchmarks import Rows
from benchmarks.envs import parallel_rates, scenario_rates

SIZES = (10, 100, 1000)


def run(quick: bool) -> Rows:
    """One row per environment and size: env steps/s, agent-steps/s, share of time in the tick."""
    seconds = 0.5 if quick else 3.0
    rows: Rows = []
    for n in SIZES:
        ticks, agent_steps, in_tick, _ = scenario_rates(n, seconds)
        assert ticks > 0 and 0.0 <= in_tick <= 1.0
        rows.append(
            (
                f"scenario, {n:,} learners",
                f"{ticks:,.1f}",
                f"{agent_steps:,.0f}",
                f"{in_tick:.0%}",
            )
        )
    for n in SIZES:
        steps, agent_steps = parallel_rates(n, seconds)
        rows.append((f"market_v0, {n:,} agents", f"{steps:,.0f}", f"{agent_steps:,.0f}", "-"))
    return rows
