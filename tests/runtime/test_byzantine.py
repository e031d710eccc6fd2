"""Byzantine traffic: every attack kind is injected, recorded, refused by the check meant for it,
and changes no ledger state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.faults.byzantine import Audit
from runtime.faults.fuzz import check_world
from runtime.kernel.scenario import ATTACKS, parse
from runtime.kernel.world import World

BASE = """
[world]
seed = 11
ticks = 16
checkpoint_every = 16

[network]
regions = ["a", "b", "c"]
links = [{ a = "a", b = "b", latency = 0.1 }, { a = "b", b = "c", latency = 0.3 }]

[bus]
loss = 0.05
duplication = 0.05
jitter = 0.2

[[population]]
name = "req"
role = "requester"
count = 18
initial_credits = 40
post_rate = 0.4
task_units = 3

[[population]]
name = "work"
role = "worker"
count = 8
stake = 5

[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"
review_ledger = REVIEW

[[population]]
name = "neg"
role = "negotiator"
count = 4
initial_credits = 300
"""

# What the refusal of each attack's items says (the check that met it).
REASONS = {
    "forged_tag": ("op_rejected", "tag does not verify"),
    "replayed": ("op_duplicate", "nothing changed"),
    "mutated_resend": ("op_rejected", "tag does not verify"),
    "unknown_account": ("op_rejected", "out of range"),
    "huge_amount": ("", "must be in [1, 1000000000000000]"),
    "forged_delta": ("delta_rejected", "rejected: "),
    "overdraft": ("op_refused", "spending rights held at this replica are short"),
    "over_bound": ("op_rejected", "would take a counter past the ledger's bound"),
}


class Log:
    """Every event of a run, in order, as tuples of the event log's fields."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str, int, int, int, str]] = []
        self.seq = 0

    def emit(
        self, tick, time_, kind, subsystem, agent=-1, other=-1, amount=0, value=0.0, detail=""
    ):
        self.events.append((tick, kind, subsystem, int(agent), int(other), int(amount), detail))

    def emit_many(self, tick, time_, kind, subsystem, agent, other, amount, value, detail=""):
        for a, o, x in zip(agent.tolist(), other.tolist(), amount.tolist(), strict=True):
            self.events.append((tick, kind, subsystem, a, o, x, detail))

    def end_tick(self) -> None:
        pass

    def close(self) -> None:
        pass

    def audit(self) -> Audit:
        audit = Audit()
        for event in self.events:
            audit.observe(*event)
        return audit


def scenario(faults: str, review: bool = False, regions: str | None = None) -> str:
    text = BASE.replace("REVIEW", "true" if review else "false") + faults
    if regions is not None:
        text = text.replace('regions = ["a", "b", "c"]', f"regions = {regions}").replace(
            'links = [{ a = "a", b = "b", latency = 0.1 }, { a = "b", b = "c", latency = 0.3 }]',
            "links = []",
        )
    return text


def byzantine(at: int, count: int, attacks: list[str]) -> str:
    return (
        f'[[fault]]\nat = {at}\nkind = "byzantine"\ncount = {count}\n'
        f"attacks = {json.dumps(attacks)}\n"
    )


def run(text: str) -> tuple[World, Log, list[tuple[str, ...]]]:
    """Run a scenario to its end and settle it; return the world, its events, and the replicas'
    roots after every tick."""
    world = World(parse(text))
    log = Log()
    world.log = log  # type: ignore[assignment]  # a duck-typed sink: keeps what is checked
    roots: list[tuple[str, ...]] = []
    world.run(progress=lambda tick: roots.append(tuple(r.root().hex() for r in world.ledgers)))
    assert world.settle(12)["converged"]
    return world, log, roots


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_is_injected_recorded_and_refused_by_its_check(attack):
    world, log, _ = run(scenario(byzantine(4, 12, [attack]) + byzantine(9, 12, [attack])))
    audit = log.audit()
    assert audit.injected.get(attack, 0) >= 1, audit.injected
    assert audit.refused == audit.injected and audit.unresolved() == []
    kind, reason = REASONS[attack]
    items = [e for e in log.events if e[1] == "byzantine" and e[6].startswith(attack + " ")]
    refusals = [
        e
        for e in log.events
        if e[1] in ("op_rejected", "delta_rejected", "op_refused", "op_duplicate")
    ]
    assert len(items) == audit.injected[attack]
    assert any((not kind or e[1] == kind) and reason in e[6] for e in refusals), refusals[:5]
    assert check_world(world, audit, world.tick) is None  # nothing applied twice, nothing negative


def test_forged_deltas_are_refused_for_each_of_their_faults():
    faults = byzantine(3, 40, ["forged_delta"]) + byzantine(8, 40, ["forged_delta"])
    _, log, _ = run(scenario(faults))
    reasons = [e[6] for e in log.events if e[1] == "delta_rejected"]
    for fragment in ("tag does not verify", "holds a counter outside", "this replica's own id"):
        assert any(fragment in r for r in reasons), (fragment, reasons[:6])


def test_a_reviewing_critic_refuses_overdrafts_before_the_ledger():
    _, log, _ = run(scenario(byzantine(4, 10, ["overdraft"]), review=True))
    audit = log.audit()
    assert audit.injected["overdraft"] == audit.refused["overdraft"] >= 1
    refused = [e[6] for e in log.events if e[1] == "op_refused"]
    assert any("critic:" in r for r in refused)


def test_refused_traffic_changes_no_ledger_state_at_any_tick():
    quiet = scenario("")
    noisy = scenario(byzantine(2, 30, list(ATTACKS)) + byzantine(7, 30, list(ATTACKS)))
    w0, _, roots0 = run(quiet)
    w1, log, roots1 = run(noisy)
    assert sum(log.audit().injected.values()) >= 40
    assert roots0 == roots1, "a refused item moved a ledger replica"
    h0, h1 = w0.hashes(), w1.hashes()
    # Only the attacker's own random stream and the bus's delivery counts differ.
    assert {k for k in h0 if h0[k] != h1[k]} == {"rng", "bus"}


def test_replays_and_resends_are_never_applied_twice():
    world, log, _ = run(scenario(byzantine(3, 40, ["replayed", "mutated_resend"])))
    audit = log.audit()
    assert audit.injected["replayed"] >= 5 and audit.injected["mutated_resend"] >= 5
    assert audit.refused == audit.injected
    duplicates = [e for e in log.events if e[1] == "op_duplicate"]
    assert len(duplicates) == audit.injected["replayed"]
    made = [int(r.clock[r.id]) for r in world.ledgers]
    for r in world.ledgers:  # converged: every replica holds each origin's ops exactly once
        assert r.clock.tolist() == made


def test_a_lone_replica_refuses_everything_and_replays_lapse():
    world, log, _ = run(scenario(byzantine(3, 30, list(ATTACKS)), regions='["solo"]'))
    audit = log.audit()
    assert "replayed" not in audit.injected  # no gossip to capture in a world of one replica
    assert audit.refused == audit.injected and sum(audit.injected.values()) >= 10
    assert check_world(world, audit, world.tick) is None


def test_a_world_under_attack_forks_from_its_checkpoint_to_the_same_state(tmp_path):
    from runtime.record.recording import record
    from runtime.record.resume import fork

    # The fault is at a checkpoint tick: the checkpoint holds armed replays and items in flight.
    path = tmp_path / "attacked.toml"
    path.write_text(
        scenario(byzantine(7, 20, list(ATTACKS))).replace(
            "checkpoint_every = 16", "checkpoint_every = 8"
        )
    )
    whole = record(path, tmp_path / "whole")
    branch = fork(tmp_path / "whole", 7, [], tmp_path / "branch")
    assert branch["final_state_hash"] == whole["final_state_hash"]
    assert branch["checkpoints"] == whole["checkpoints"]


@pytest.mark.parametrize(
    "fault, expected",
    [
        (
            'at = 2\nkind = "byzantine"\nduration = 3\n',
            "fault[0].duration: a byzantine fault injects",
        ),
        (
            'at = 2\nkind = "byzantine"\nattacks = []\n',
            "fault[0].attacks: empty; name at least one",
        ),
        (
            'at = 2\nkind = "byzantine"\nattacks = ["replayed", "replayed"]\n',
            "fault[0].attacks: 'replayed' is listed more than once",
        ),
        (
            'at = 2\nkind = "byzantine"\nattacks = ["teleport"]\n',
            "fault[0].attacks[0]: Input should be",
        ),
        ('at = 2\nkind = "byzantine"\ncount = 0\n', "fault[0].count: Input should be greater than"),
        (
            'at = 2\nkind = "loss_burst"\ncount = 3\n',
            "fault[0].count: only a byzantine fault takes count",
        ),
    ],
)
def test_bad_byzantine_faults_exit_2_with_one_line_each(fault, expected, tmp_path):
    path = Path(tmp_path) / "bad.toml"
    path.write_text("[world]\nticks = 5\n[[fault]]\n" + fault)
    result = CliRunner().invoke(app, ["validate", str(path)])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], result.output
