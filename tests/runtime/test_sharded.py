"""Sharded worlds: K shards on Ray actors conserve credits, never overdraw, converge to one Merkle
root, and give identical results for the same K and seed; one shard is the one-process World."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.kernel.scenario import ScenarioError, parse
from runtime.kernel.world import World
from runtime.scale.sharded import Shard, ShardDown, run_sharded

SCENARIO = """
[world]
name = "sharded"
seed = 11
ticks = 40
checkpoint_every = 10
[network]
regions = ["eu", "us", "ap", "sa"]
links = [{{ a = "eu", b = "us", latency = 0.3 }}, {{ a = "us", b = "ap", latency = 1.5 }}]
[bus]
loss = 0.05
duplication = 0.02
[economy]
anti_entropy_every = 4
{distributed}
[[population]]
name = "requesters"
role = "requester"
count = 1600
initial_credits = 15
post_rate = 0.3
[[population]]
name = "workers"
role = "worker"
count = 400
stake = 3
cheat_fraction = 0.2
[[population]]
name = "critics"
role = "critic"
count = 2
watches = "workers"
[[fault]]
at = 10
kind = "partition"
groups = [["eu", "ap"], ["us", "sa"]]
duration = 8
"""


def _text(shards: int | None) -> str:
    return SCENARIO.format(
        distributed="" if shards is None else f"[distributed]\nshards = {shards}"
    )


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_two_shard_world_on_ray_conserves_credits_and_converges(ray_local):
    result = run_sharded(_text(2), backend="ray")
    assert result.shards == 2 and [r["agents"] for r in result.reports] == [1001, 1001]
    assert (
        result.converged and len(result.roots) == 4
    )  # the four replicas, two on each shard, agree
    assert result.conserved and result.credits_held == result.supply_issued > 0
    assert result.lowest_balance >= 0
    # The shards traded (each on its own board) and their replicas talked across the partition's
    # end.
    assert all(r["tasks_posted"] > 1000 for r in result.reports)
    assert all(r["messages"]["sent"] > 0 and r["messages"]["blocked"] > 0 for r in result.reports)
    # Slashes burned credits: issued is below what was minted, and still equal to what is held.
    first = result.reports[0]
    assert first["supply_held_micro"] == first["supply_issued_micro"]
    # Same K and seed: the same run, on Ray or stepped in this process.
    assert run_sharded(_text(2), backend="inline").state_hash == result.state_hash


def test_same_shards_and_seed_are_identical_and_other_seeds_or_shard_counts_differ():
    a = run_sharded(_text(2), backend="inline")
    b = run_sharded(_text(2), backend="inline")
    c = run_sharded(_text(2), backend="inline", seed=12)
    d = run_sharded(_text(4), backend="inline")
    assert a.state_hash == b.state_hash and a.reports == b.reports
    assert c.state_hash != a.state_hash and d.state_hash != a.state_hash
    for r in (c, d):
        assert r.converged and r.conserved and r.lowest_balance >= 0
    assert [rep["agents"] for rep in d.reports] == [501, 501, 500, 500]


def test_one_shard_is_the_one_process_world():
    sharded = run_sharded(_text(1), backend="inline")
    world = World(parse(_text(None)))
    world.run()
    # At the end of the last tick, every subsystem is the one-process run's (settling then converges
    # the replicas further).
    assert sharded.at_last_tick[0]["hashes"] == world.hashes()
    assert sharded.converged and sharded.conserved


def test_a_shard_holds_only_its_agents_and_replicas():
    shard = Shard(_text(2), ".", None, 1, 2)
    w = shard.world
    assert w.local_regions == [1, 3] and w.ledgers[0] is None and w.ledgers[2] is None
    ids = np.concatenate([p.ids for p in w.populations])
    assert ((ids % 4) % 2 == 1).all() and ids.size == 1001
    assert w.bus.remote == frozenset({0, 2})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("[distributed]\nshards = 5", "need at least as many regions"),
        (
            "[distributed]\nshards = 2\n[coordination]\ncoupling = 1.0",
            "coordination: not supported in a sharded world",
        ),
        ("[distributed]\nshards = 0", "distributed.shards"),
    ],
)
def test_bad_sharded_scenarios_are_refused(change, message):
    with pytest.raises(ScenarioError) as info:
        parse(SCENARIO.format(distributed=change))
    assert any(message in p for p in info.value.problems), info.value.problems


def test_agora_run_records_a_sharded_run_and_replay_says_it_cannot_verify_it(tmp_path, ray_local):
    scenario = tmp_path / "sharded.toml"
    scenario.write_text(_text(2))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out), "--until", "25"])
    assert result.exit_code == 0, result.output
    assert "2 shards" in result.output and "conserved" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["format"] == "agora-sharded-run-1" and summary["conserved"] and summary["converged"]
    )
    assert summary["ticks"] == 25 and summary["shards"] == 2
    verify = CliRunner().invoke(app, ["replay", str(out), "--verify"])
    assert verify.exit_code == 2 and "cannot be replayed" in verify.output
    refused = CliRunner().invoke(
        app, ["run", str(scenario), "--out", str(tmp_path / "b"), "--compare-baseline"]
    )
    assert refused.exit_code == 2 and "not available for a sharded world" in refused.output


def test_a_sharded_run_without_ray_says_how_to_install(tmp_path, monkeypatch):
    scenario = tmp_path / "sharded.toml"
    scenario.write_text(_text(2))
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "pip install -e '.[ray]'" in result.output
    with pytest.raises(RuntimeError, match="backend='inline'"):
        run_sharded(_text(2), backend="ray")


def test_a_partition_still_in_place_at_the_end_is_reported_as_not_converged():
    result = run_sharded(
        _text(2), backend="inline", until=15
    )  # the partition lasts from tick 10 to 18
    assert not result.converged and not result.conserved
    assert result.lowest_balance >= 0
    healed = run_sharded(_text(2), backend="inline", until=20)
    assert healed.converged and healed.conserved


def test_a_killed_shard_restarts_from_the_last_barrier_and_one_that_stays_down_stops_the_run(
    ray_local,
):
    text = _text(2)
    # The uninterrupted run, stepped in this process: the same run as on Ray (the two-shard test
    # above checks that), without starting two more actors.
    whole = run_sharded(text, backend="inline", until=20)
    killed: list[int] = []

    def kill_once(tick, shards):
        if tick == 13 and not killed:  # the last barrier checkpoint was at tick 10
            killed.append(tick)
            ray_local.kill(shards[0])

    again = run_sharded(text, backend="ray", until=20, on_tick=kill_once)
    assert killed == [13]
    assert again.state_hash == whole.state_hash and again.roots == whole.roots
    assert again.conserved and again.credits_held == whole.credits_held

    def kill_always(tick, shards):
        if tick >= 3:
            ray_local.kill(shards[1])

    with pytest.raises(ShardDown, match=r"shard 1 of 2 went down at tick 3 .*2 restart\(s\) of 2"):
        run_sharded(text, backend="ray", until=8, on_tick=kill_always, max_restarts=2)
