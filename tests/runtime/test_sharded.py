"""Sharded worlds: K shards on Ray actors conserve credits, never overdraw, converge to one Merkle
root, and give identical results for the same K and seed; one shard is the one-process World."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.kernel.scenario import ScenarioError, parse
from runtime.kernel.world import World
from runtime.record.replay import open as open_run
from runtime.record.replay import verify
from runtime.scale.sharded import Shard, ShardDown, run_sharded
from runtime.scale.sharded_recording import record_sharded_text

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
    if ray.is_initialized():  # started by a run of another module in this worker
        ray.shutdown()
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
            "[distributed]\nshards = 2\n[coordination]\nclose_votes_on_sync = true",
            "close_votes_on_sync: not supported in a sharded world",
        ),
        ("[distributed]\nshards = 0", "distributed.shards"),
    ],
)
def test_bad_sharded_scenarios_are_refused(change, message):
    with pytest.raises(ScenarioError) as info:
        parse(SCENARIO.format(distributed=change))
    assert any(message in p for p in info.value.problems), info.value.problems


def test_agora_run_records_a_sharded_run_that_verify_analyze_and_query_read(tmp_path, ray_local):
    scenario = tmp_path / "sharded.toml"
    scenario.write_text(_text(2))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out), "--until", "25"])
    assert result.exit_code == 0, result.output
    assert "2 shards" in result.output and "conserved" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "agora-sharded-run-2" and summary["conserved"]
    assert summary["converged"] and summary["ticks"] == 25 and summary["shards"] == 2
    state = ("deltas.arrows", "full_000009.arrow", "full_000019.arrow", "full_000024.arrow")
    assert sorted(summary["files"]) == sorted(
        [f"shard-{k}/{name}" for k in (0, 1) for name in ("events.arrows", "metrics.arrows")]
        + [f"shard-{k}/state/{name}" for k in (0, 1) for name in state]
    )
    for report in summary["shard_reports"]:  # every shard's state at every checkpoint tick
        assert [c["tick"] for c in report["checkpoints"]] == [9, 19, 24]
    # Recorded on Ray, verified by stepping the shards in this process: the same bits.
    verify = CliRunner().invoke(app, ["replay", str(out), "--verify"])
    assert verify.exit_code == 0 and "identical: 2 shards" in verify.stdout, verify.output
    query = CliRunner().invoke(
        app,
        [
            "query",
            str(out),
            "select shard, count(*) as n from events group by shard order by 1",
            "--format",
            "csv",
        ],
    )
    assert query.exit_code == 0, query.output
    counts = [int(line.split(",")[1]) for line in query.stdout.splitlines()[1:]]
    assert counts == summary["events"] and all(n > 0 for n in counts)
    analyzed = CliRunner().invoke(app, ["analyze", str(out), "--format", "json"])
    assert analyzed.exit_code == 0, analyzed.output
    run = json.loads(analyzed.stdout)
    assert run["ticks"] == 25 and len(run["series"]["tick"]) == 25 and run["slashes"]["count"] > 0
    assert run["wealth"]["ticks_measured"] == 25  # from every shard's state table
    at = CliRunner().invoke(
        app, ["replay", str(out), "--at", "5", "--out", str(tmp_path / "s5.parquet")]
    )
    assert at.exit_code == 0 and "matches the live run" in at.stdout, at.output
    assert pq.read_table(tmp_path / "s5.parquet").num_rows == 2003  # agents and the treasury
    refused = CliRunner().invoke(
        app, ["run", str(scenario), "--out", str(tmp_path / "b"), "--compare-baseline"]
    )
    assert refused.exit_code == 2 and "not available for a sharded world" in refused.output


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The two-shard scenario recorded to tick 25, stepping the shards in this process."""
    out = tmp_path_factory.mktemp("sharded") / "run"
    return out, record_sharded_text(_text(2).encode(), Path("."), out, 11, 25, backend="inline")


def test_the_merged_tables_are_the_shards_tables(recorded):
    out, summary = recorded
    run = open_run(out)
    shard_rows = run.shard_metrics()
    merged = run.metrics()
    assert shard_rows.num_rows == 2 * merged.num_rows == 50
    volume = shard_rows.column("volume_micro").to_numpy().reshape(25, 2)
    assert (merged.column("volume_micro").to_numpy() == volume.sum(axis=1)).all()
    price = shard_rows.column("mean_price_micro").to_numpy().reshape(25, 2)
    assert np.allclose(merged.column("mean_price_micro").to_numpy(), price.mean(axis=1))
    events = run.events()
    assert events.num_rows == sum(summary["events"])
    assert sum(b.num_rows for b in run.event_batches()) == events.num_rows
    ticks = events.column("tick").to_numpy()
    assert (np.diff(ticks) >= 0).all()  # by tick, then shard
    # One batch per tick, each holding both shards' events of that tick.
    for batch in run.event_batches():
        assert len(set(batch.column("tick").to_pylist())) == 1
    assert set(run.query("select distinct shard from events").column("shard").to_pylist()) == {
        0,
        1,
    }


def test_verify_names_the_tampered_file_and_figure(recorded, tmp_path):
    out, _ = recorded
    events = tmp_path / "events"
    shutil.copytree(out, events)
    path = events / "shard-1" / "events.arrows"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    verdict = verify(events)
    assert verdict.status == "tampered"
    assert verdict.lines[0].startswith("shard-1/events.arrows: different bytes"), verdict.lines
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    summary = json.loads((edited / "summary.json").read_text())
    summary["credits_held_micro"] += 1
    (edited / "summary.json").write_text(json.dumps(summary))
    verdict = verify(edited)
    assert verdict.status == "tampered" and "self-hash" in verdict.lines[0]
    assert any("credits_held_micro" in line for line in verdict.lines)
    manifest = tmp_path / "manifest"
    shutil.copytree(out, manifest)
    started = json.loads((manifest / "run.json").read_text())
    started["shards"] = 4
    (manifest / "run.json").write_text(json.dumps(started))
    verdict = verify(manifest)
    assert verdict.status == "tampered" and "4 shards" in verdict.lines[0]


def test_verify_names_the_shard_tick_and_subsystem_of_the_first_divergence(tmp_path, monkeypatch):
    step = Shard.step

    def skewed(self, inbox):  # shard 1's market computes other prices from tick 15 on
        out = step(self, inbox)
        if self.k == 1 and self.world.tick == 15:
            self.world.market.prices[0] += 1
        return out

    monkeypatch.setattr(Shard, "step", skewed)
    record_sharded_text(_text(2).encode(), Path("."), tmp_path / "run", 11, 25, backend="inline")
    monkeypatch.setattr(Shard, "step", step)
    verdict = verify(tmp_path / "run")
    assert verdict.status == "diverged", verdict.lines
    (line,) = verdict.lines  # the skew spreads from the market to the workers and the ledger
    assert line.startswith("diverged at tick 19 on shard 1: subsystem(s) ledger/1, ")
    assert "market" in line and line.endswith(" differ from the recording")


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
    ray_local, tmp_path
):
    text = _text(2)
    # The uninterrupted run, stepped in this process: the same run as on Ray (the two-shard test
    # above checks that), without starting two more actors.
    whole = run_sharded(text, backend="inline", until=20, out=tmp_path / "whole")
    killed: list[int] = []

    def kill_once(tick, shards):
        if tick == 13 and not killed:  # the last barrier checkpoint was at tick 10
            killed.append(tick)
            ray_local.kill(shards[0])

    again = run_sharded(text, backend="ray", until=20, on_tick=kill_once, out=tmp_path / "again")
    assert killed == [13] and again.restarts == 1
    assert again.state_hash == whole.state_hash and again.roots == whole.roots
    assert again.conserved and again.credits_held == whole.credits_held
    # Each shard's logs went back to where they stood at the cut: the bytes of the uninterrupted
    # run (events emitted between the last tick and the barrier included).
    for k in (0, 1):
        for name in ("events.arrows", "metrics.arrows", "state/deltas.arrows"):
            a = (tmp_path / "whole" / f"shard-{k}" / name).read_bytes()
            assert a == (tmp_path / "again" / f"shard-{k}" / name).read_bytes(), (k, name)

    def kill_always(tick, shards):
        if tick >= 3:
            ray_local.kill(shards[1])

    with pytest.raises(ShardDown, match=r"shard 1 of 2 went down at tick 3 .*2 restart\(s\) of 2"):
        run_sharded(text, backend="ray", until=8, on_tick=kill_always, max_restarts=2)


def _files_of(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != "summary.json"
    }


def test_a_killed_sharded_run_resumes_from_its_last_cut_to_the_same_bytes(recorded, tmp_path):
    from runtime.scale.sharded_recording import resume_sharded

    out, summary = recorded
    whole = _files_of(out)
    assert {f"shard-{k}/checkpoints/cut_{t:08d}.npz" for k in (0, 1) for t in (0, 10, 20)} <= set(
        whole
    )
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    (killed / "summary.json").unlink()
    events = killed / "shard-0" / "events.arrows"
    events.write_bytes(events.read_bytes()[:-100])  # killed in the middle of a write
    # replay --verify says how to go on; fork does not take a sharded run.
    done = CliRunner().invoke(app, ["replay", str(killed), "--verify"])
    assert done.exit_code == 2 and f"agora run --resume {killed}" in done.stderr
    fork = CliRunner().invoke(app, ["fork", str(out), "--at", "9", "--out", str(tmp_path / "f")])
    assert fork.exit_code == 2 and "cannot be branched" in fork.stderr
    assert not (tmp_path / "f").exists()
    again, start = resume_sharded(killed, backend="inline")
    assert start == 20 and again["resumed_at"] == 20
    assert _files_of(killed) == whole  # the bytes of the uninterrupted run
    assert again["final_state_hash"] == summary["final_state_hash"]
    assert verify(killed).status == "identical"
    # Without shard 1's newest cut, the run goes on from the one before.
    older = tmp_path / "older"
    shutil.copytree(out, older)
    (older / "summary.json").unlink()
    (older / "shard-1" / "checkpoints" / "cut_00000020.npz").unlink()
    assert resume_sharded(older, backend="inline")[1] == 10
    assert _files_of(older) == whole
    # An altered cut is refused, naming it; nothing runs.
    altered = tmp_path / "altered"
    shutil.copytree(out, altered)
    (altered / "summary.json").unlink()
    cut = altered / "shard-0" / "checkpoints" / "cut_00000020.npz"
    data = bytearray(cut.read_bytes())
    data[100] ^= 1
    cut.write_bytes(bytes(data))
    done = CliRunner().invoke(app, ["run", "--resume", str(altered)])
    assert done.exit_code == 2 and "cut_00000020.npz" in done.stderr
    assert "Traceback" not in done.output and not (altered / "summary.json").exists()


def test_agora_run_resume_goes_on_with_a_sharded_run_on_ray(recorded, tmp_path, ray_local):
    out, summary = recorded
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    (killed / "summary.json").unlink()
    done = CliRunner().invoke(app, ["run", "--resume", str(killed)])
    assert done.exit_code == 0, done.output
    assert "resumed" in done.stderr and "barrier before tick 20" in done.stderr
    assert _files_of(killed) == _files_of(out)
    again = CliRunner().invoke(app, ["run", "--resume", str(killed)])
    assert again.exit_code == 2 and "nothing to resume" in again.stderr


COORDINATED = _text(2).replace(
    "[economy]", "[coordination]\ncoupling = 4.0\ngraph_every = 5\ntension_every = 5\n\n[economy]"
)


def _drive(text: str, until: int) -> list[Shard]:
    """The shards of ``text`` stepped to ``until`` in this process, as run_sharded steps them."""
    from runtime.scale.sharded import _route

    shards = [Shard(text, ".", None, k, 2, None, None, until) for k in range(2)]
    inbox: list = [[], []]
    for _ in range(until):
        inbox = _route([s.step(box) for s, box in zip(shards, inbox, strict=True)], 2)
    return shards


def test_coordination_in_a_sharded_world_reads_the_whole_worlds_order_and_tension(
    tmp_path, ray_local
):
    from economy.portable_math import sin_cos
    from runtime.coordination.service import core_of
    from runtime.coordination.tension import tension_of_edges

    shards = _drive(COORDINATED, 26)
    coords = [s.world.coordination for s in shards]
    for s, c in zip(shards, coords, strict=True):  # each shard's oscillators: its own agents
        assert c.osc.theta.size == sum(p.n for p in s.world.populations) < s.world.n_agents
    # The world's interaction graph is the shards' graphs together: no edge crosses shards.
    u, v, w = (np.concatenate(parts) for parts in zip(*(c._edges() for c in coords), strict=True))
    order = np.lexsort((v, u))
    merged = tension_of_edges(*core_of(u[order], v[order], w[order], shards[0].world.n_agents))
    sizes = [
        core_of(*c._edges(), s.world.n_agents)[0].size for s, c in zip(shards, coords, strict=True)
    ]
    holder = int(np.argmax(sizes))
    assert coords[holder]._read_tension() == merged  # the one-process reading, exactly
    # Recorded, the world's metrics carry that shard's reading and the order parameter of all
    # phases together.
    summary = record_sharded_text(COORDINATED.encode(), Path("."), tmp_path / "run", 11, 26)
    assert summary["conserved"]
    run = open_run(tmp_path / "run")
    metrics, rows = run.metrics(), run.shard_metrics()
    tension = rows.column("tension").to_numpy().reshape(26, 2)
    assert (metrics.column("tension").to_numpy() == tension[:, holder]).all()
    sin_t, cos_t = zip(*(sin_cos(c.osc.theta) for c in coords), strict=True)
    n = sum(c.osc.theta.size for c in coords)
    r = np.hypot(sum(x.sum() for x in cos_t), sum(x.sum() for x in sin_t)) / n
    assert metrics.column("r_global").to_numpy()[-1] == pytest.approx(r, rel=1e-12)
    shard_r = rows.column("r_global").to_numpy()[-2:]
    assert r < shard_r.max()  # two populations with no coupling between them
    for region in ("eu", "us", "ap", "sa"):  # each region's order parameter, from its shard
        assert np.isfinite(metrics.column(f"r_region/{region}").to_numpy()).all()
    assert verify(tmp_path / "run").status == "identical"


def test_a_shard_refuses_an_interaction_with_another_shards_agent():
    (shard, _) = _drive(COORDINATED, 1)
    stranger = next(i for i in range(8) if i not in shard.world.coordination.local)
    with pytest.raises(ValueError, match=f"agent {stranger} is not on this shard"):
        shard.world.interact(
            np.array([int(shard.world.coordination.local[0])]), np.array([stranger])
        )


GOVERNED = (Path(__file__).resolve().parents[2] / "scenarios" / "governance.toml").read_text()


def _governed(shards: int) -> str:
    return GOVERNED.replace("[network]", f"[distributed]\nshards = {shards}\n\n[network]", 1)


def test_governance_in_a_sharded_world_is_the_same_on_every_shard(tmp_path, monkeypatch):
    from economy.constitution import Constitution

    proofs: list[dict] = []
    verify_ = Constitution.verify

    def counted(self, params):
        proofs.append(dict(params))
        return verify_(self, params)

    monkeypatch.setattr(Constitution, "verify", counted)
    base = Path(__file__).resolve().parents[2] / "scenarios"
    summary = record_sharded_text(
        _governed(2).encode(), base, tmp_path / "run", 7, 90, backend="inline"
    )
    reports = summary["shard_reports"]
    # Every shard tallied and executed the same proposals: the same organisation state.
    assert reports[0]["hashes"]["governance"] == reports[1]["hashes"]["governance"]
    assert reports[0]["proposals"] == reports[1]["proposals"]
    states = [p["state"] for p in reports[0]["proposals"]]
    assert states == ["executed", "rejected", "blocked", "executed", "executed"]
    assert "critic: violates" in reports[0]["proposals"][2]["reason"]  # the constitution's proof
    # Proved once per proposal that passed its vote, not once per shard.
    assert len(proofs) == sum(s != "rejected" for s in states) == 4
    assert summary["conserved"] and summary["converged"]
    run = open_run(tmp_path / "run")
    events = run.query(
        "select kind, shard, agent from events where subsystem = 'governance' order by seq"
    ).to_pylist()
    by_kind: dict[str, set[int]] = {}
    for e in events:
        by_kind.setdefault(e["kind"], set()).add(e["shard"])
    assert by_kind["proposal_opened"] == by_kind["param_changed"] == {0}  # recorded once
    (spent,) = [e for e in events if e["kind"] == "treasury_spent"]
    world = World(parse(_governed(2)), shard=(spent["shard"], 2))
    treasury_home = int(world.home(np.array([world.treasury]))[0])
    assert treasury_home in world.local_regions  # paid where the treasury lives, once
    (bought,) = [e for e in events if e["kind"] == "stake_bought"]
    assert bought["agent"] % 2 % 2 == bought["shard"]  # on the buyer's shard (2 regions)
    monkeypatch.undo()
    assert verify(tmp_path / "run").status == "identical"


def test_one_shard_with_governance_is_the_one_process_world():
    sharded = run_sharded(_governed(1), Path("scenarios"), backend="inline")
    world = World(parse(GOVERNED, "scenario", Path("scenarios")), base=Path("scenarios"))
    world.run()
    assert sharded.at_last_tick[0]["hashes"] == world.hashes()


def test_a_sweep_of_a_sharded_scenario_records_verifiable_runs_and_resumes(tmp_path):
    from runtime.scale.sweep import parse_sets, plan, sweep, write_table

    scenario = tmp_path / "sharded.toml"
    scenario.write_text(_text(2))
    out = tmp_path / "sweep"
    specs = plan(scenario, parse_sets(["economy.anti_entropy_every=2,4"]), 1, out, 12)
    outcomes = sweep(specs, "local", workers=2)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    rows = pq.read_table(write_table(out, outcomes)).to_pylist()
    assert [r["shards"] for r in rows] == [2, 2] and all(r["events"] > 0 for r in rows)
    assert rows[0]["final_state_hash"] != rows[1]["final_state_hash"]  # the swept value counts
    for spec, row in zip(specs, rows, strict=True):
        assert verify(out / spec.run_id).status == "identical"
        # The same world as agora run records (there on Ray, here its shards in the worker).
        alone = record_sharded_text(
            (out / spec.run_id / "scenario.toml").read_bytes(),
            Path("."),
            tmp_path / f"alone-{spec.run_id}",
            spec.seed,
            12,
        )
        assert alone["final_state_hash"] == row["final_state_hash"]
    again = sweep(plan(scenario, parse_sets(["economy.anti_entropy_every=2,4"]), 1, out, 12))
    assert [o.status for o in again] == ["skipped", "skipped"]  # finished runs are kept
    resumed = pq.read_table(write_table(out, again)).to_pylist()
    assert [r["final_state_hash"] for r in resumed] == [r["final_state_hash"] for r in rows]


def test_the_state_at_a_tick_is_every_account_as_its_home_shard_held_it(recorded):
    out, _ = recorded
    run = open_run(out)
    table, facts = run.state_at(24)
    assert facts["matches_live"] and [f["matches_live"] for f in facts["shards"]] == [True, True]
    live: dict[int, dict] = {}  # each shard's state table at the end of tick 24, as it ran

    def keep(k):
        def at_checkpoint(cp):
            if cp.tick == 24:
                live[k] = shards[k].world.telemetry.state_table()

        return at_checkpoint

    shards = [Shard(_text(2), ".", None, k, 2, None, None, 25) for k in range(2)]  # the same
    for k, s in enumerate(shards):
        s.world.on_checkpoint = keep(k)
    inbox: list = [[], []]
    from runtime.scale.sharded import _route

    for _ in range(25):
        inbox = _route([s.step(box) for s, box in zip(shards, inbox, strict=True)], 2)
    for k, s in enumerate(shards):
        own = np.concatenate([p.ids for p in s.world.populations])
        for name in ("balance_micro", "stake_micro", "alive"):
            assert (table.column(name).to_numpy()[own] == live[k][name][own]).all(), name
    treasury = shards[0].world.treasury  # at its home's shard
    held = live[treasury % 4 % 2]["balance_micro"][treasury]
    assert table.column("balance_micro")[treasury].as_py() == held
    deltas = run.state_deltas()
    first = deltas.filter(pa.compute.equal(deltas.column("tick"), 0))
    assert sorted(first.column("account").to_pylist()) == list(range(2003))  # each once


def test_the_default_scenario_with_governance_runs_on_two_shards_on_ray(tmp_path, ray_local):
    root = Path(__file__).resolve().parents[2] / "scenarios"
    default = (root / "marketplace.toml").read_text()
    governance = GOVERNED[GOVERNED.index("[governance]") : GOVERNED.index("# Members 100")]
    text = default.replace("[bus]", "[distributed]\nshards = 2\n\n[bus]", 1) + "\n" + governance
    scenario = tmp_path / "default-sharded.toml"
    scenario.write_text(text)
    out = tmp_path / "run"
    done = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out), "--until", "40"])
    assert done.exit_code == 0 and "conserved" in done.stdout, done.output
    summary = json.loads((out / "summary.json").read_text())
    roles = {p.role for p in parse(text, "default", root).population}
    assert {"negotiator", "critic", "refactor", "world_model", "healer"} <= roles  # every role
    reports = summary["shard_reports"]
    assert reports[0]["hashes"]["governance"] == reports[1]["hashes"]["governance"]
    assert [p["state"] for p in reports[0]["proposals"]] == ["executed", "rejected"]
    assert all("coordination" in r["hashes"] for r in reports)
    verified = CliRunner().invoke(app, ["replay", str(out), "--verify"])
    assert verified.exit_code == 0 and "identical" in verified.stdout, verified.output


def test_more_shards_than_cpus_share_them_instead_of_waiting(ray_local):
    assert ray_local.cluster_resources()["CPU"] == 2
    result = run_sharded(_text(4), backend="ray", until=5, shard_timeout=60)
    assert [r["agents"] for r in result.reports] == [501, 501, 500, 500]
    assert result.lowest_balance >= 0


def test_resuming_a_run_whose_shard_count_was_edited_is_refused(recorded, tmp_path):
    from runtime.record.recording import RunDirError
    from runtime.scale.sharded_recording import resume_sharded

    out, _ = recorded
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    (edited / "summary.json").unlink()
    started = json.loads((edited / "run.json").read_text())
    started["shards"] = 4
    (edited / "run.json").write_text(json.dumps(started))
    with pytest.raises(RunDirError, match="run.json says 4 shards; scenario.toml runs 2"):
        resume_sharded(edited, backend="inline")
    assert not (edited / "summary.json").exists()


@pytest.mark.parametrize("shards", [None, 2])
def test_until_past_what_the_ledger_can_hold_is_refused_before_anything_runs(tmp_path, shards):
    root = Path(__file__).resolve().parents[2] / "scenarios"
    text = (root / "marketplace.toml").read_text()
    if shards:
        text = text.replace("[bus]", f"[distributed]\nshards = {shards}\n\n[bus]", 1)
    scenario = tmp_path / "s.toml"
    scenario.write_text(text)
    out = tmp_path / "run"
    done = CliRunner().invoke(
        app, ["run", str(scenario), "--out", str(out), "--until", "1000000000"]
    )
    assert done.exit_code == 2, done.output
    assert "--until 1000000000: (credits): the scenario can mint up to" in done.stderr
    assert "Traceback" not in done.output and not out.exists()
