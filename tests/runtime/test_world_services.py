"""The World's services: the fault schedule, telemetry and replication, each on its own."""

from __future__ import annotations

import numpy as np
import pytest

from economy.ops import OpKind
from runtime.kernel.fault_schedule import expand
from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.checkpoints import load_world

from .conftest import SMALL


def test_a_fault_with_a_duration_starts_and_ends_in_scenario_order():
    burst = '[[fault]]\nat = 12\nkind = "loss_burst"\nloss = 0.5\nduration = 8\n'
    actions = expand(parse(SMALL + burst).fault)  # faults 0 and 1 from SMALL, the burst is 2

    def due(tick: int) -> list[tuple[str, int]]:
        return [(mode, index) for mode, index, _ in actions[tick]]

    assert due(10) == [("do", 0)] and due(15) == [("undo", 0)] and due(12) == [("do", 2)]
    # Tick 20: the partition starts and the burst ends, in the scenario's order.
    assert due(20) == [("do", 1), ("undo", 2)]
    assert 11 not in actions and expand([]) == {}


def test_counters_start_at_zero_each_tick_and_keep_their_columns():
    world = World(parse(SMALL))
    world.count("custom", 3)
    world.gauge("level", 1.5)
    world.run(1)
    row = world.last_metrics
    assert row["custom"] == 0  # zeroed when the tick began, still a column
    assert row["level"] == 1.5 and row["minted_micro"] > 0
    assert {"ops_refused", "sync_rows_changed", "distinct_roots"} <= set(row)


def test_the_world_delegates_to_its_services():
    world = World(parse(SMALL))
    accounts = np.arange(6, dtype=np.int64)
    assert (world.home(accounts) == world.replication.home(accounts)).all()
    assert world.ledgers is world.replication.replicas
    assert world.hashes() == world.telemetry.hashes()
    accepted = world.execute_by_home(
        OpKind.MINT, accounts, np.zeros(6, np.int64), np.full(6, 10, np.int64)
    )
    assert accepted.all()
    assert (world.rights_at_home(accounts) >= 10).all()


def test_a_restored_world_keeps_its_services_and_drops_its_logs(tmp_path):
    world = World(parse(SMALL), out=tmp_path)
    world.run(5)
    assert world.log is not None
    world.save_snapshot(tmp_path / "world.npz")
    back, _ = load_world(tmp_path / "world.npz")
    assert back.log is None and back.metrics is None and back.metrics_history is None
    assert back.replication.world is back and back.telemetry.world is back
    assert back.fault_schedule.world is back
    assert back.hashes() == world.hashes()
    back.run(10)
    world.run(10)
    assert back.hashes() == world.hashes()
    world.close()


def test_an_unknown_replica_is_refused_by_name():
    world = World(parse(SMALL))
    with pytest.raises(IndexError):
        world.replication.replica(99)
