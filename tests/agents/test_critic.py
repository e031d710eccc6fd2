"""Critic: z3 proves refund batches, spot checks catch cheats, learned checks beat random ones at
the same budget, and rejected results refund the requester and slash the cheat."""

from __future__ import annotations

import numpy as np

from agents.critic import check_batch
from runtime.recording import with_baseline_cores
from runtime.scenario import parse
from runtime.world import World


def test_z3_accepts_a_valid_batch_and_rejects_an_overdrawing_one():
    assert check_batch({1: 100, 2: 50}, [1, 2, 1], [3, 3, 4], [60, 50, 40]) == (True, "")
    ok, reason = check_batch({1: 100}, [1, 1], [3, 4], [60, 41])
    assert not ok and "entry 1" in reason and "overdraws" in reason
    ok, reason = check_batch({1: 100}, [1], [3], [0])
    assert not ok and "entry 0" in reason
    ok, reason = check_batch({1: 100}, [9], [3], [1])
    assert not ok and "no known rights" in reason


SCENARIO = """
[world]
ticks = 60
seed = 21
[[population]]
name = "req"
role = "requester"
count = 300
initial_credits = 1000
post_rate = 0.5
[[population]]
name = "work"
role = "worker"
count = 80
stake = 10
cheat_fraction = 0.1
cheat_probability = 0.6
[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"
check_budget = 0.1
"""


def test_learned_checks_catch_more_cheats_than_random_ones_at_the_same_budget():
    sc = parse(SCENARIO)
    learned = World(sc)
    learned.run()
    random = World(with_baseline_cores(sc))
    random.run()
    a, b = learned.populations[2].role_metrics(), random.populations[2].role_metrics()
    assert a["invalid"] == b["invalid"] > 0  # the same cheats happen in both runs
    assert abs(a["checks"] - b["checks"]) <= 0.1 * b["checks"]
    assert b["catch_rate"] < 0.2 < 0.5 < a["catch_rate"]
    assert a["false_slash_rate"] <= b["false_slash_rate"] + 0.02


def test_rejections_refund_slash_and_conserve_credits():
    world = World(parse(SCENARIO))
    world.run()
    critic, workers = world.populations[2], world.populations[1]
    s = critic.role_metrics()
    assert s["refunded_micro"] > 0 and s["slashed_micro"] > 0
    cheats = workers.ids[workers.cheater]
    stakes = world.ledgers[0].staked()
    honest = workers.ids[~workers.cheater]
    assert stakes[cheats].mean() < stakes[honest].mean()  # slashing hit cheaters far harder
    for ledger in world.ledgers:
        held, issued = ledger.supply()
        assert held == issued
