"""Refactor: z3 keeps the dependency graph acyclic, and Q-learning gains more quality per credit
than random choices on the same seed."""

from __future__ import annotations

import networkx as nx

from agents.critic import plan_keeps_acyclic
from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.recording import record, with_baseline_cores
from runtime.record.replay import verify


def test_z3_accepts_a_dag_extension_and_refuses_a_cycle():
    edges = [(0, 1), (1, 2), (2, 3)]
    assert plan_keeps_acyclic(edges, [(0, 3), (1, 3)]) == (True, "")
    ok, reason = plan_keeps_acyclic(edges, [(0, 2), (3, 1)])
    assert not ok and "3 -> 1" in reason
    assert not plan_keeps_acyclic([], [(5, 5)])[0]
    # The first added edge that closes a cycle is named, wherever it sits among the added ones.
    for k in range(6):
        added = [(10 + i, 11 + i) for i in range(k)] + [(3, 0)] + [(20, 21), (2, 1)]
        ok, reason = plan_keeps_acyclic(edges, added)
        assert not ok and "3 -> 0" in reason, (k, reason)
    assert plan_keeps_acyclic(edges, []) == (True, "")


SCENARIO = """
[world]
ticks = 150
seed = 3
checkpoint_every = 50
[[population]]
name = "ref"
role = "refactor"
count = 4
initial_credits = 2000
modules = 40
"""


def test_learned_refactoring_gains_more_quality_per_credit_than_random():
    scenario_config = parse(SCENARIO)
    learned, random = World(scenario_config), World(with_baseline_cores(scenario_config))
    learned.run()
    random.run()
    a, b = learned.populations[0].role_metrics(), random.populations[0].role_metrics()
    assert a["quality_gained"] > 0
    assert a["quality_per_credit"] > 1.5 * b["quality_per_credit"]
    assert a["acyclic"] and b["acyclic"]
    assert nx.is_directed_acyclic_graph(learned.populations[0].code.graph)


def test_a_refactor_run_replays(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(SCENARIO.replace("ticks = 150", "ticks = 60"))
    record(path, tmp_path / "run")
    assert verify(tmp_path / "run").status == "identical"
