"""Coordination inside a world: trading couples agents, regions synchronise, synchronisation fires
an anti-entropy round, order parameters and tension are recorded, and it all replays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.recorder import read_stream
from runtime.record.recording import record
from runtime.record.replay import verify

SCENARIO = """
[world]
ticks = 40
seed = 3
checkpoint_every = 10
[network]
regions = ["a", "b"]
[[population]]
name = "req"
role = "requester"
count = 60
initial_credits = 1000
post_rate = 0.9
[[population]]
name = "work"
role = "worker"
count = 30
[coordination]
coupling = 6.0
frequency_spread = 0.05
graph_every = 5
sync_threshold = 0.8
tension_every = 10
"""


def test_trading_agents_synchronise_and_fire_anti_entropy():
    world = World(parse(SCENARIO))
    fired: list[tuple[int, int]] = []
    real = world.anti_entropy_from

    def observed(replica: int) -> None:
        fired.append((world.tick, replica))
        real(replica)

    world.anti_entropy_from = observed
    world.run(2)
    early = world.coordination.osc.r()
    world.run(40)
    assert early < 0.5 < 0.8 < world.coordination.osc.r()
    off_schedule = [(t, r) for t, r in fired if t % world.scenario.economy.anti_entropy_every != 0]
    assert {r for _, r in off_schedule} == {0, 1}, (
        "each region's synchronisation fired its own round"
    )


def test_uncoupled_agents_stay_incoherent():
    world = World(parse(SCENARIO.replace("coupling = 6.0", "coupling = 0.0")))
    world.run(40)
    assert world.coordination.osc.r() < 0.3


def test_order_parameters_and_tension_are_recorded_and_replay(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(SCENARIO)
    record(path, tmp_path / "run")
    metrics, _ = read_stream(tmp_path / "run" / "metrics.arrows")
    for column in ("r_global", "r_region/a", "r_region/b", "tension"):
        values = metrics.column(column).to_numpy()
        assert values.shape == (40,) and (values >= 0).all() and (values <= 1).all()
    events, _ = read_stream(tmp_path / "run" / "events.arrows")
    kinds = np.array(events.column("kind").to_pylist())
    assert (kinds == "tension").sum() >= 3 and (
        kinds == "sync_fired"
    ).sum() >= 2  # tick 0 may have no 2-core yet
    assert verify(tmp_path / "run").status == "identical"


def test_message_gain_follows_phase_coherence():
    world = World(parse(SCENARIO))
    got = []
    world.bus.subscribe("note", lambda m: got.append(m.gain))
    theta = world.coordination.osc.theta
    theta[0], theta[1], theta[2] = 0.0, 0.0, np.pi
    world.send(0, 1, "note", None)
    world.send(0, 2, "note", None)
    world.env.run(until=1.0)
    assert np.allclose(sorted(got), [0.0, 1.0])


def test_members_synchronising_close_open_votes_early():
    text = (
        SCENARIO.replace(
            "tension_every = 10", "tension_every = 10\nclose_votes_on_sync = true"
        ).replace("sync_threshold = 0.8", "sync_threshold = 0.6")
        + """
[governance]
members = "work"
voting_period = 30
quorum = 0.0
[[proposal]]
at = 2
changes = { fee_rate = 0.02 }
support = 1.0
"""
    )
    world = World(parse(text))
    world.run(40)
    prop = world.organisation.nao.proposals[0]
    assert prop.state in ("queued", "executed")
    assert prop.closes_at < 2 + 30, "closed by synchronisation, before its voting period ended"
    closes = [e for e in world.organisation.nao.log if e[2] == "queued"]
    assert closes and closes[0][0] == prop.closes_at


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_oscillators_on_the_gpu_give_the_cpu_run_bit_for_bit():
    # These roles have no networks, so --device cuda changes only where the oscillators step.
    cpu = World(parse(SCENARIO), device="cpu")
    cpu.run()
    gpu = World(parse(SCENARIO), device="cuda")
    gpu.run()
    assert gpu.coordination.osc.theta_t.is_cuda
    assert gpu.hashes() == cpu.hashes()


def test_oscillators_stepped_beside_the_populations_give_the_same_run(monkeypatch):
    import runtime.coordination.service as coordination

    plain = World(parse(SCENARIO))
    plain.run()
    monkeypatch.setattr(
        coordination, "BACKGROUND_NODES", 0
    )  # so this small world steps them on a second thread
    beside = World(parse(SCENARIO))
    started = []
    real = beside.coordination.begin_tick

    def observed(tick: int) -> None:
        real(tick)
        if beside.coordination._ahead is not None:
            started.append(beside.coordination._ahead_tick)

    beside.coordination.begin_tick = observed
    beside.run()
    # Every tick but the graph rebuilds (0, 5, ..., 35), each started once the tick before was done.
    assert sorted(set(started)) == [t for t in range(1, 40) if t % 5]
    assert beside.hashes() == plain.hashes()
    assert [c.state_hash for c in beside.checkpoints] == [c.state_hash for c in plain.checkpoints]


def test_while_steps_run_ahead_messages_and_digests_see_the_phases_of_the_plain_order(monkeypatch):
    import runtime.coordination.service as coordination

    plain = World(parse(SCENARIO))
    plain.run(31)  # tick 31 is no rebuild: its steps may run ahead
    monkeypatch.setattr(coordination, "BACKGROUND_NODES", 0)
    beside = World(parse(SCENARIO))
    beside.run(31)
    a, b = np.arange(0, 40), np.arange(50, 90)
    beside.coordination.begin_tick(31)  # as the world does once tick 30 is done
    assert beside.coordination._ahead is not None
    # Until tick 31's step, a message reads the phases before the steps, as the plain order does.
    assert beside.coordination.gain(a, b).tobytes() == plain.coordination.gain(a, b).tobytes()
    assert beside.coordination.digest() == plain.coordination.digest()
    beside.run(33)  # tick 31 takes the steps started above; tick 32's start when 31 is done
    plain.run(33)
    assert beside.hashes() == plain.hashes()
    assert beside.coordination.gain(a, b).tobytes() == plain.coordination.gain(a, b).tobytes()


def test_the_graph_read_back_from_the_csr_is_the_trades_of_the_window():
    world = World(parse(SCENARIO))
    world.run(5)  # ticks 0-4 traded; tick 5 rebuilds the graph from them (and tick 5's trades)
    src, dst = np.concatenate(world.coordination._src), np.concatenate(world.coordination._dst)
    world.run(6)
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    g = world.coordination.graph()
    assert g.number_of_edges() > 0 and all(
        u < v for u, v in zip(*world.coordination._edges()[:2], strict=True)
    )
    assert all(g.has_edge(int(a), int(b)) for a, b in zip(lo[lo != hi], hi[lo != hi], strict=True))
    assert sum(d["weight"] for _, _, d in g.edges(data=True)) >= int((lo != hi).sum())


def test_tension_read_ahead_on_its_own_thread_gives_the_same_run(monkeypatch):
    import runtime.coordination.service as coordination

    text = SCENARIO.replace(
        "tension_every = 10", "tension_every = 7"
    )  # due at 7, 14, 21, 28 (after rebuilds at 5..25) and 35 (a rebuild)
    readings: dict[str, list[tuple[int, int, float]]] = {"plain": [], "ahead": []}

    def recording(world: World, into: list[tuple[int, int, float]]) -> World:
        emit = world.emit

        def emit_and_keep(kind: str, subsystem: str, *args: Any, **kw: Any) -> None:
            if kind == "tension":
                into.append((world.tick, kw["amount"], kw["value"]))
            emit(kind, subsystem, *args, **kw)

        world.emit = emit_and_keep  # type: ignore[method-assign]  # keeps each reading, then emits
        return world

    plain = recording(World(parse(text)), readings["plain"])
    plain.run()
    monkeypatch.setattr(coordination, "BACKGROUND_NODES", 0)
    ahead = recording(World(parse(text)), readings["ahead"])
    started = []
    real = ahead.coordination._read_ahead

    def observed(tick: int) -> None:
        real(tick)
        started.append(
            (
                tick,
                ahead.coordination._reading_tick
                if ahead.coordination._reading is not None
                else None,
            )
        )

    ahead.coordination._read_ahead = observed
    ahead.run()
    launched = sorted({due for _, due in started if due is not None})
    assert launched == [7, 14, 21, 28]  # 35 is a rebuild tick: read when due
    assert (
        (5, 7) in started and (6, 7) in started and (7, None) in started
    )  # taken at 5, held until 7
    assert [t for t, _, _ in readings["plain"]] == [7, 14, 21, 28, 35]
    assert readings["ahead"] == readings["plain"]
    assert ahead.hashes() == plain.hashes()
    assert [c.state_hash for c in ahead.checkpoints] == [c.state_hash for c in plain.checkpoints]


def test_an_error_in_a_reading_taken_ahead_is_raised_when_it_is_due(monkeypatch):
    import runtime.coordination.service as coordination

    monkeypatch.setattr(coordination, "BACKGROUND_NODES", 0)
    world = World(parse(SCENARIO.replace("tension_every = 10", "tension_every = 7")))
    world.run(5)

    def broken() -> None:
        raise RuntimeError("eigensolver failed")

    world.coordination._read_tension = broken
    world.run(6)  # tick 5 rebuilt the graph and started the reading due at 7
    assert world.coordination._reading is not None and world.coordination._reading_tick == 7
    with pytest.raises(RuntimeError, match="eigensolver failed"):
        world.run(8)
