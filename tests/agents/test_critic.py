"""Critic: z3 proves ledger batches and proposals, rejected work is redone, spot checks catch
cheats, learned checks beat random ones at
the same budget, and rejected results refund the requester and slash the cheat."""

from __future__ import annotations

import numpy as np

from agents.critic import check_batch, top_k
from economy.ops import OpKind
from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.recording import with_baseline_cores


def test_z3_accepts_a_valid_batch_and_rejects_an_overdrawing_one():
    assert check_batch({1: 100, 2: 50}, [1, 2, 1], [3, 3, 4], [60, 50, 40]) == (True, "")
    ok, reason = check_batch({1: 100}, [1, 1], [3, 4], [60, 41])
    assert not ok and "entry 1" in reason and "overdraws" in reason
    ok, reason = check_batch({1: 100}, [1], [3], [0])
    assert not ok and "entry 0" in reason
    ok, reason = check_batch({1: 100, 3: 0}, [1, 3], [3, 1], [5, -5])  # a negative entry is caught
    assert not ok and "entry 1" in reason
    for _ in range(3):  # the reused solver answers the same query the same way every time
        assert check_batch({1: 100}, [1], [3], [100]) == (True, "")
        assert check_batch({1: 100}, [1], [3], [101])[0] is False
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
    scenario_config = parse(SCENARIO)
    learned = World(scenario_config)
    learned.run()
    random = World(with_baseline_cores(scenario_config))
    random.run()
    a, b = learned.populations[2].role_metrics(), random.populations[2].role_metrics()
    assert (
        a["invalid"] > 0 and b["invalid"] > 0
    )  # redone tasks differ between the runs, so the counts do too
    assert abs(a["checks"] - b["checks"]) <= 0.1 * b["checks"]
    assert b["catch_rate"] < 0.2 and a["catch_rate"] > max(0.4, 3 * b["catch_rate"])
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


def test_the_critic_reviews_every_ledger_batch_and_the_ledger_itself_refuses_nothing():
    world = World(parse(SCENARIO))
    refused: list[str] = []
    ledger_execute = type(world.ledgers[0]).execute

    def spy(self, kind, accounts, others, amounts):  # type: ignore[no-untyped-def]
        op, bad = ledger_execute(self, kind, accounts, others, amounts)
        refused.extend(reason for _, reason in bad)
        return op, bad

    type(world.ledgers[0]).execute = spy  # type: ignore[method-assign]
    try:
        world.run()
        s = world.populations[2].role_metrics()
        assert s["batches_proved"] > 100
        # A batch with one overdrawing entry: the critic drops exactly that entry before the ledger
        # sees it.
        payers = world.populations[0].ids[world.populations[0].ids % 3 == 0][:3]
        rights = world.ledgers[0].rights_of(payers)
        amounts = np.array([1, int(rights[1]) + 1, 1], dtype=np.int64)
        before = world.ledgers[0].rights_of(payers).copy()
        accepted = world.execute(
            0, OpKind.TRANSFER, payers, np.full(3, world.treasury, np.int64), amounts
        )
    finally:
        type(world.ledgers[0]).execute = ledger_execute  # type: ignore[method-assign]
    assert accepted.tolist() == [True, False, True]
    assert (world.ledgers[0].rights_of(payers) == before - np.array([1, 0, 1])).all()
    s = world.populations[2].role_metrics()
    assert s["batches_refused"] == 1 and s["entries_dropped"] == 1
    assert (
        refused == []
    )  # what the critic let through, the ledger accepted: the proof and the ledger agree


def test_without_review_the_ledger_refuses_what_the_critic_would_have_dropped():
    world = World(
        parse(SCENARIO.replace("check_budget = 0.1", "check_budget = 0.1\nreview_ledger = false"))
    )
    world.run()
    s = world.populations[2].role_metrics()
    assert world.reviewer is None
    assert s["batches_proved"] > 0  # refunds are still proved, one batch at a time
    for ledger in world.ledgers:
        assert ledger.supply()[0] == ledger.supply()[1]


def test_rejected_work_goes_back_to_its_producer_and_is_redone():
    world = World(parse(SCENARIO))
    sent = []
    workers = world.populations[1]
    original = workers.send_back

    def record(rows, reason):  # type: ignore[no-untyped-def]
        sent.append(
            (
                workers.results["worker"][rows].copy(),
                workers.results["attempt"][rows].copy(),
                reason,
            )
        )
        original(rows, reason)

    workers.send_back = record  # type: ignore[method-assign]
    redone_attempts = []
    for _ in range(60):
        world.step()
        redone_attempts.append(workers.results["attempt"].copy())
    s = world.populations[2].role_metrics()
    assert s["sent_back"] == sum(len(w) for w, _, _ in sent) > 0
    assert all(reason == "judged invalid by the critic" for _, _, reason in sent)
    attempts = np.concatenate(redone_attempts)
    assert (attempts == 1).sum() > 0  # redone tasks were paid again and checked again
    assert attempts.max() < 3  # never more than MAX_ATTEMPTS tries


def test_duplicate_ledger_reviewers_are_a_scenario_error():
    import pytest

    from runtime.kernel.scenario import ScenarioError

    twice = (
        SCENARIO + '[[population]]\nname = "crit2"\nrole = "critic"\ncount = 1\nwatches = "work"\n'
    )
    with pytest.raises(ScenarioError, match="review_ledger"):
        parse(twice)


def test_top_k_is_the_stable_sort_prefix_ties_included():
    rng = np.random.default_rng(5)
    for m, k in [(1, 1), (10, 0), (10, 3), (1000, 100), (1000, 1000), (1000, 1500), (5000, 4999)]:
        for values in (
            rng.random(m),
            rng.integers(0, 4, m).astype(np.float64),
        ):  # continuous, and mostly ties
            expected = np.sort(np.argsort(-values, kind="stable")[:k])
            assert np.array_equal(top_k(values, k), expected)
