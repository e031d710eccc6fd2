"""scenarios/governance.toml end to end: a fee change passes, a whale's late stake cannot capture a
vote, a constitution-violating proposal is blocked -- recorded and replayable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.record.recorder import read_stream
from runtime.record.recording import record
from runtime.record.replay import verify


@pytest.fixture(scope="module")
def gov_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gov") / "run"
    return record(Path("scenarios/governance.toml"), out), out


def test_the_three_outcomes(gov_run):
    summary, _ = gov_run
    states = [p["state"] for p in summary["totals"]["proposals"]]
    assert states == ["executed", "rejected", "blocked", "executed", "executed"]
    assert summary["totals"]["params"] == {
        "fee_rate": 0.02,
        "slash_fraction": 0.1,
        "price_elasticity": 0.5,
    }
    assert "threshold not met" in summary["totals"]["proposals"][1]["reason"]
    assert "fee_rate <= 0.05" in summary["totals"]["proposals"][2]["reason"]
    assert summary["totals"]["proposals"][2]["reason"].startswith("critic: ")
    critic = summary["totals"]["roles"]["critics"]
    # Every proposal that passed its vote went to the critic; the one breaking the constitution was
    # blocked.
    assert critic["proposals_checked"] == 4 and critic["proposals_blocked"] == 1
    assert critic["batches_proved"] > 0


def test_changes_take_effect_at_a_tick_boundary_and_fees_follow(gov_run):
    _, out = gov_run
    events, _ = read_stream(out / "events.arrows")
    kinds = np.array(events.column("kind").to_pylist())
    ticks = events.column("tick").to_numpy()
    changed = ticks[kinds == "param_changed"]
    assert changed.tolist() == [5 + 5 + 2]  # opened at 5, voting period 5, timelock 2
    metrics, _ = read_stream(out / "metrics.arrows")
    fee_rate = metrics.column("fee_rate").to_numpy()
    fees = metrics.column("fees_micro").to_numpy()
    assert (fee_rate[:12] == 0.01).all() and (fee_rate[12:] == 0.02).all()
    done = metrics.column("volume_micro").to_numpy()
    busy = done > 0
    ratio = fees[busy] / done[busy]
    assert np.all(ratio[: int(busy[:12].sum())] <= 0.0101) and np.median(ratio[-20:]) > 0.019


def test_the_whale_bought_more_stake_than_everyone_else_and_still_lost(gov_run):
    _, out = gov_run
    events, _ = read_stream(out / "events.arrows")
    kinds = events.column("kind").to_pylist()
    bought = [i for i, k in enumerate(kinds) if k == "stake_bought"]
    assert len(bought) == 1
    assert events.column("amount_micro")[bought[0]].as_py() == 100_000 * 1_000_000
    whale_votes = [i for i, k in enumerate(kinds) if k == "vote"]
    assert len(whale_votes) == 1 and events.column("value")[whale_votes[0]].as_py() == 1.0


def test_admission_and_a_treasury_spend_paid_from_fees(gov_run):
    _, out = gov_run
    events, _ = read_stream(out / "events.arrows")
    kinds = events.column("kind").to_pylist()
    admitted = [i for i, k in enumerate(kinds) if k == "member_admitted"]
    spent = [i for i, k in enumerate(kinds) if k == "treasury_spent"]
    assert (
        len(admitted) == 1 and events.column("agent")[admitted[0]].as_py() == 300 + 100
    )  # requesters come first
    assert len(spent) == 1 and events.column("amount_micro")[spent[0]].as_py() == 20 * 1_000_000
    assert events.column("agent")[spent[0]].as_py() == 300 + 5


def test_governance_run_replays_identically(gov_run):
    _, out = gov_run
    assert verify(out).status == "identical"


GOVERNANCE = Path(__file__).resolve().parents[2] / "scenarios" / "governance.toml"


@pytest.mark.parametrize(
    ("proposal", "message"),
    [
        ('kind = "admit"\ntarget = 7', "member 7 is a member from the start"),
        ('kind = "expel"\ntarget = 110', "110 is a candidate, not a member"),
    ],
)
def test_a_membership_change_the_organisation_would_refuse_is_a_scenario_error(proposal, message):
    from runtime.kernel.scenario import ScenarioError, parse

    text = GOVERNANCE.read_text() + f"\n[[proposal]]\nat = 70\n{proposal}\n"
    with pytest.raises(ScenarioError, match=message):
        parse(text, "governance", GOVERNANCE.parent)


def test_a_proposal_that_cannot_open_as_the_run_stands_is_recorded_and_the_run_goes_on(tmp_path):
    from typer.testing import CliRunner

    from runtime.cli import app

    # Candidate 100 is admitted by the proposal of tick 60; asking again at tick 75 cannot open.
    text = GOVERNANCE.read_text() + '\n[[proposal]]\nat = 75\nkind = "admit"\ntarget = 100\n'
    scenario = tmp_path / "twice.toml"
    scenario.write_text(text)
    done = CliRunner().invoke(app, ["run", str(scenario), "--out", str(tmp_path / "run"), "-q"])
    assert done.exit_code == 0 and "Traceback" not in done.output, done.output
    events, _ = read_stream(tmp_path / "run" / "events.arrows")
    kinds = events.column("kind").to_pylist()
    at = kinds.index("proposal_refused")
    assert "already active" in events.column("detail")[at].as_py()
    assert events.column("other")[at].as_py() == 5 and events.column("tick")[at].as_py() == 75
