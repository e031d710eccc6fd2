"""Recorded runs: determinism, replay verification, tampering, divergence, SIGKILL, faults,
clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mesa
import numpy as np
import pyarrow as pa
import pytest
import simpy
from typer.testing import CliRunner

from runtime.cli import app
from runtime.kernel.scenario import load
from runtime.kernel.world import World
from runtime.record.recorder import read_stream
from runtime.record.recording import record
from runtime.record.replay import verify


def test_same_seed_same_bytes_and_hashes_other_seed_differs(small_scenario, tmp_path):
    s1 = record(small_scenario, tmp_path / "r1")
    s2 = record(small_scenario, tmp_path / "r2")
    s3 = record(small_scenario, tmp_path / "r3", seed=6)
    for name in ("events.arrows", "metrics.arrows"):
        assert (tmp_path / "r1" / name).read_bytes() == (tmp_path / "r2" / name).read_bytes()
        assert (tmp_path / "r1" / name).read_bytes() != (tmp_path / "r3" / name).read_bytes()
    assert (
        s1["checkpoints"] == s2["checkpoints"] and s1["final_state_hash"] == s2["final_state_hash"]
    )
    assert s1["final_state_hash"] != s3["final_state_hash"]
    assert len(s1["checkpoints"]) == 4
    events, complete = read_stream(tmp_path / "r1" / "events.arrows")
    assert complete and events.num_rows == s1["totals"]["events"]
    assert set(events.column("kind").to_pylist()) >= {
        "task_posted",
        "task_done",
        "fault",
        "checkpoint",
        "minted",
    }


def test_credits_are_conserved_and_replicas_converge(small_scenario, tmp_path):
    s = record(small_scenario, tmp_path / "r")
    t = s["totals"]
    assert t["supply_held_micro"] == t["supply_issued_micro"]
    metrics, _ = read_stream(tmp_path / "r" / "metrics.arrows")
    held = metrics.column("supply_held_micro").to_numpy()
    issued = metrics.column("supply_issued_micro").to_numpy()
    assert metrics.schema.field("supply_held_micro").type == pa.int64()
    assert np.array_equal(held, issued)
    assert metrics.num_rows == 40


def test_replay_verify_passes_on_a_good_run(small_scenario, tmp_path):
    record(small_scenario, tmp_path / "r")
    r = CliRunner().invoke(app, ["replay", str(tmp_path / "r"), "--verify"])
    assert r.exit_code == 0, r.output
    assert "identical" in r.output


def test_a_run_cut_short_with_until_ends_on_a_checkpoint_that_replay_compares(
    small_scenario, tmp_path
):
    summary = record(small_scenario, tmp_path / "run", until=7)
    assert summary["checkpoints"][-1]["tick"] == 6
    verdict = verify(tmp_path / "run")
    assert (
        verdict.exit_code == 0 and f"{len(summary['checkpoints'])} checkpoints" in verdict.lines[0]
    )


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_replay_verify_reports_a_flipped_byte_in_the_log(small_scenario, tmp_path, where):
    run = tmp_path / "r"
    record(small_scenario, run)
    log = run / "events.arrows"
    data = bytearray(log.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    log.write_bytes(bytes(data))
    verdict = verify(run)
    assert verdict.status == "tampered" and verdict.exit_code == 1
    assert any(ln.startswith("events.arrows: different bytes") for ln in verdict.lines)


def test_modified_summary_is_tampered_not_a_crash(small_scenario, tmp_path):
    run = tmp_path / "r"
    record(small_scenario, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["checkpoints"][1]["hashes"]["market"] = "0" * 64
    (run / "summary.json").write_text(json.dumps(summary))
    r = CliRunner().invoke(app, ["replay", str(run), "--verify"])
    assert r.exit_code == 1 and "tampered" in r.output and "Traceback" not in r.output
    (run / "summary.json").write_text("{ not json")
    r = CliRunner().invoke(app, ["replay", str(run), "--verify"])
    assert r.exit_code == 1 and "tampered" in r.output


def test_replay_names_the_first_diverging_tick_and_subsystem(small_scenario, tmp_path, monkeypatch):
    run = tmp_path / "r"
    record(small_scenario, run)
    from agents.worker import WorkerPopulation

    real_step = WorkerPopulation.step

    def nondeterministic_step(self, world, tick):
        real_step(self, world, tick)
        if tick == 23:
            self.quality[0] += 1e-9  # a change no log line shows, only the state hash

    monkeypatch.setattr(WorkerPopulation, "step", nondeterministic_step)
    verdict = verify(run)
    assert verdict.status == "diverged"
    assert "diverged at tick 29: subsystem(s) population/work" in verdict.lines[-1]


def test_sigkill_leaves_a_readable_log(tmp_path):
    scen = tmp_path / "long.toml"
    scen.write_text(
        "[world]\nticks = 100000\n[record]\nflush_seconds = 0.1\n"
        '[[population]]\nname = "req"\nrole = "requester"\ncount = 200\ninitial_credits = 1000\n'
        '[[population]]\nname = "w"\nrole = "worker"\ncount = 100\n'
    )
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", str(scen), "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = out / "events.arrows"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 200_000):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    table, _ = read_stream(log)
    assert table.num_rows > 1000
    ticks = table.column("tick").to_numpy()
    assert (np.diff(ticks) >= 0).all()
    assert table.column("seq").to_numpy().tolist() == list(range(table.num_rows))
    r = CliRunner().invoke(app, ["replay", str(out), "--verify"])
    assert r.exit_code == 2 and "did not finish" in r.output


def test_faults_crash_partition_and_heal(small_scenario):
    scenario, _ = load(small_scenario)
    w = World(scenario)
    w.run(11)
    work = next(p for p in w.populations if p.name == "work")
    assert work.alive.sum() == 15
    w.run(16)
    assert work.alive.all()
    w.run(22)
    assert not w.network.reachable(0, 1) and w.network.reachable(1, 2)
    blocked = w.bus.counts["blocked"]
    w.run(26)
    assert w.bus.counts["blocked"] > blocked
    w.run(40)
    assert w.network.reachable(0, 1)
    # after the heal, anti-entropy brings every replica to one state
    for _ in range(3):
        w._anti_entropy()
        w.env.run(until=w.env.now + 2)
    assert w.distinct_roots() == 1


def test_world_is_a_mesa_model_on_a_simpy_clock(small_scenario):
    scenario, _ = load(small_scenario)
    w = World(scenario)
    assert isinstance(w, mesa.Model) and isinstance(w.env, simpy.Environment)
    w.step()
    w.step()
    assert w.steps == 2 and w.tick == 2 and w.env.now == pytest.approx(2.0)
    agent = w.populations[1].agent(3)
    assert agent.unique_id == 63 and agent.alive


def test_realtime_mode_paces_against_the_wall_clock(small_scenario, tmp_path):
    scenario, _ = load(small_scenario)
    w = World(scenario, realtime=0.02)
    start = time.monotonic()
    w.run(10)
    assert isinstance(w.env, simpy.rt.RealtimeEnvironment)
    assert time.monotonic() - start >= 10 * 0.02 * 0.9


def test_a_realtime_world_stepped_tick_by_tick_paces_each_tick_from_now(small_scenario):
    scenario, _ = load(small_scenario)
    w = World(scenario, realtime=0.005)
    w.run(100)
    start = time.monotonic()
    w.run(101)  # one tick: 0.005 s of pacing, not the 0.505 s of every tick since tick 0
    assert time.monotonic() - start < 0.25
    w.env.set_factor(0.02)
    start = time.monotonic()
    w.run(103)
    assert w.tick == 103 and time.monotonic() - start >= 2 * 0.02 * 0.9


def test_locating_damage_never_crashes_wherever_the_byte_is(small_scenario, tmp_path):
    from runtime.record.replay import first_difference

    run = tmp_path / "r"
    record(small_scenario, run)
    original = (run / "events.arrows").read_bytes()
    damaged = tmp_path / "damaged.arrows"
    rng = np.random.default_rng(0)
    found = 0
    for pos in rng.integers(0, len(original), 150):
        data = bytearray(original)
        data[pos] ^= 1 << int(rng.integers(0, 8))
        damaged.write_bytes(bytes(data))
        read_stream(damaged)
        found += first_difference(damaged, run / "events.arrows") is not None
    assert found > 100  # most flips change a value; a few land in padding


def test_agent_messages_arrive_after_latency_and_not_across_a_partition(small_scenario):
    scenario, _ = load(small_scenario)
    w = World(scenario)
    got = []
    w.bus.subscribe("hello", lambda m: got.append((w.env.now, m.src_agent, m.dst_agent, m.payload)))
    w.bus.loss = 0.0
    w.bus.duplication = 0.0
    w.send(0, 2, "hello", "hi")  # regions a -> c: path a-b-c, latency 0.1 + 0.2
    w.env.run(until=1.0)
    assert got == [(pytest.approx(0.3), 0, 2, "hi")]
    w.network.partition([["a"], ["b", "c"]])
    w.send(0, 2, "hello", "lost")
    w.env.run(until=2.0)
    assert len(got) == 1 and w.bus.counts["blocked"] >= 1
    with pytest.raises(ValueError, match="does not exist"):
        w.send(0, 10_000, "hello", "x")
