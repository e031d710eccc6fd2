"""Healing: the batched detector finds a planted anomaly in time, the scores are exact, and in a
world the learned core repairs faults sooner and loses less work than no healing (same seed)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.healing import ewma_alarm, latency_alarm
from runtime.kernel.health import HealthRecord
from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.recording import record, with_baseline_cores
from runtime.record.replay import verify


def run_detector(n_ticks: int, fail_rate, seed: int = 0, z: float = 3.0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    n = 200
    fast, slow = np.zeros((2, n)), np.zeros((2, n))
    streak = np.zeros(n, dtype=np.int64)
    first_alarm = np.full(n, -1)
    for t in range(n_ticks):
        tasks = np.full(n, 3)
        failed = rng.binomial(tasks, fail_rate(t))
        ewma_alarm(tasks, failed, fast[0], fast[1], slow[0], slow[1], streak, 0.3, z, 3.0)
        newly = (streak >= 2) & (first_alarm < 0)
        first_alarm[newly] = t
    return first_alarm


def test_a_planted_anomaly_is_detected_within_five_ticks_and_healthy_workers_stay_quiet():
    def rate(t: int) -> np.ndarray:
        r = np.full(200, 0.1)
        if t >= 60:
            r[7] = 0.7
        return r

    first = run_detector(100, rate)
    assert 60 <= first[7] <= 65
    false_alarms = set(np.flatnonzero(first >= 0).tolist()) - {7}
    assert len(false_alarms) <= 5  # of 199 healthy workers over 100 ticks


def test_no_alarm_without_an_anomaly():
    first = run_detector(200, lambda t: np.full(200, 0.1), seed=1)
    assert (
        first >= 0
    ).sum() <= 20  # of 40,000 worker-ticks: under 0.05% raise a confirmed false alarm


def test_health_scores_are_exact():
    h = HealthRecord()
    for agent in (1, 2, 3, 4):
        h.start(agent, 10)
    assert h.detect(1, 12) and h.detect(2, 15) and not h.detect(9, 15)
    h.end(1, 14, "healer restart")
    h.end(2, 17, "healer restart")
    h.end(3, 30, "fault ended")
    s = h.summary()
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 4)
    assert s["mean_time_to_repair"] == pytest.approx((4 + 7 + 20) / 3)
    assert s["unrepaired_at_end"] == 1


SCENARIO = """
[world]
ticks = 80
seed = 11
checkpoint_every = 20
[[population]]
name = "req"
role = "requester"
count = 300
initial_credits = 1000
post_rate = 0.5
[[population]]
name = "work"
role = "worker"
count = 60
[[population]]
name = "heal"
role = "healer"
count = 1
watches = "work"
[[fault]]
at = 20
kind = "degrade"
population = "work"
fraction = 0.25
severity = 0.8
duration = 50
"""


def test_learned_healing_beats_no_healing_on_the_same_seed():
    recalls, precisions = [], []
    for seed in (11, 12, 13):  # one seed alone can be unlucky; the claim is about the detector
        scenario_config = parse(SCENARIO.replace("seed = 11", f"seed = {seed}"))
        healed = World(scenario_config)
        healed.run()
        plain = World(with_baseline_cores(scenario_config))
        plain.run()
        h, b = healed.health.summary(), plain.health.summary()
        assert h["episodes"] == b["episodes"] == 15
        assert b["detections"] == 0 and b["mean_time_to_repair"] == 50
        assert h["mean_time_to_repair"] < b["mean_time_to_repair"]
        assert h["credits_lost_micro"] < b["credits_lost_micro"]
        recalls.append(h["recall"])
        precisions.append(h["precision"])
    assert np.mean(recalls) > 0.5 and np.mean(precisions) > 0.5


def test_quarantined_workers_get_no_work():
    world = World(parse(SCENARIO))
    work = world.populations[1]
    world.run(5)
    work.quarantined[:30] = True
    before = work.done[:30].copy()
    world.run(6)
    assert (work.done[:30] == before).all() and work.tel_tasks[:30].sum() == 0


def test_a_healer_run_replays(tmp_path):
    path = tmp_path / "h.toml"
    path.write_text(SCENARIO)
    summary = record(path, tmp_path / "run")
    assert summary["totals"]["health"]["detections"] > 0
    assert verify(tmp_path / "run").status == "identical"
    base = record(path, tmp_path / "base", baseline=True)
    assert base["cores"] == "baseline" and verify(tmp_path / "base").status == "identical"


def test_the_latency_detector_finds_a_slowed_worker_and_ignores_idle_ticks():
    rng = np.random.default_rng(3)
    n = 100
    state = np.zeros((3, n))
    seen = np.zeros(n, dtype=np.int64)
    alarm = np.zeros(n, dtype=np.bool_)
    speed = rng.lognormal(np.log(60), 0.3, n)
    first = np.full(n, -1)
    for t in range(80):
        tasks = np.where(rng.random(n) < 0.8, 1, 0)
        tasks[5] = 0 if 40 <= t < 45 else 1  # an idle stretch changes nothing
        tasks[9] = 1
        slow = np.where(np.arange(n) == 9, 1.0 + 3.0 * 0.6 * (t >= 50), 1.0)
        latency = speed * slow * rng.lognormal(0, 0.2, n)
        latency_alarm(latency, tasks, state[0], state[1], state[2], seen, 0.3, 3.0, alarm)
        first[alarm & (first < 0)] = t
    assert 50 <= first[9] <= 52
    assert (first >= 0).sum() <= 3  # the slowed worker and at most two false alarms among 99


CRASH = SCENARIO.replace(
    '''[[fault]]
at = 20
kind = "degrade"''',
    '''[[fault]]
at = 30
kind = "crash"
population = "work"
fraction = 0.1
duration = 30
[[fault]]
at = 10
kind = "loss_burst"
loss = 0.4
duration = 6
[[fault]]
at = 20
kind = "degrade"''',
)


def test_crashed_workers_are_restarted_from_missed_heartbeats_and_a_loss_burst_is_not_a_crash():
    scenario_config = parse(CRASH)
    healed = World(scenario_config)
    healed.run()
    plain = World(with_baseline_cores(scenario_config))
    plain.run()
    crashed = healed.populations[1].ids[:6]

    def at_crash(world: World) -> list:  # type: ignore[type-arg]
        return [
            e
            for e in world.health.episodes
            if e.agent in set(crashed.tolist()) and e.start <= 30 and (e.end is None or e.end > 30)
        ]

    mine, theirs = at_crash(healed), at_crash(plain)
    assert len(mine) == len(theirs) == 6
    assert all(
        e.end is None or e.end >= 60 for e in theirs
    )  # nobody restarts them before the fault ends
    assert all(e.repaired_by == "healer restart" and e.end <= 30 + 2 + 2 for e in mine)
    false_during_burst = [d for d in healed.health.detections if 10 <= d[0] < 16 and not d[2]]
    assert (
        len(false_during_burst) <= 1
    )  # the lost heartbeats of a loss burst are not taken for crashes
