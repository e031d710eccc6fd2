"""The gpu engine (``[world] engine = "gpu"``) in its CPU form: the same integers as the GPU,
conserved credits, replicas that converge, batches checked on arrival, the call auction's rules,
recorded runs that replay, and clear refusals of what the engine does not model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from runtime.cli import app
from runtime.kernel.errors import ScenarioError
from runtime.kernel.scenario import load, parse
from runtime.tensor.draws import host_u32, stream_key, u32
from runtime.tensor.world import TensorWorld, auction_rounds

ROOT = Path(__file__).resolve().parents[2]
GPU_SCENARIO = ROOT / "scenarios" / "gpu_marketplace.toml"
# The final state of scenarios/gpu_marketplace.toml after 60 ticks, computed on an NVIDIA H200
# (`python -m benchmarks.scale`'s equality check; benchmarks/results/scale.txt).
H200_60_TICKS = "040063e50032b10a91c6b35aa02cd886face580d215543880f7ed40af1228130"

SMALL_GPU = """
[world]
name = "small-gpu"
seed = 3
ticks = 30
checkpoint_every = 10
engine = "gpu"

[market]
mechanism = "call"

[network]
regions = ["a", "b", "c"]
links = [{ a = "a", b = "b", latency = 0.1 }, { a = "b", b = "c", latency = 1.5 }]

[bus]
loss = 0.2
duplication = 0.1

[economy]
anti_entropy_every = 4

[[population]]
name = "req"
role = "requester"
count = 120
initial_credits = 30
income = 0.2

[[population]]
name = "work"
role = "worker"
count = 40
stake = 5
cheat_fraction = 0.2
cheat_probability = 0.5

[[population]]
name = "neg"
role = "negotiator"
count = 10
initial_credits = 100

[[population]]
name = "critics"
role = "critic"
count = 1
watches = "work"
check_budget = 0.3

[[fault]]
at = 5
kind = "partition"
groups = [["a"], ["b", "c"]]
duration = 8

[[fault]]
at = 7
kind = "crash"
population = "work"
fraction = 0.3
duration = 6
"""


def small(text: str = SMALL_GPU) -> TensorWorld:
    return TensorWorld(parse(text))


def test_the_cpu_form_gives_the_integers_the_h200_gave():
    scenario, _ = load(GPU_SCENARIO)
    world = TensorWorld(scenario)
    for _ in range(60):
        world.step()
    assert world.combine(world.subsystem_hashes()) == H200_60_TICKS


def test_credits_are_conserved_and_never_overdrawn_and_replicas_converge():
    world = small()
    states = []
    for _ in range(30):
        row = world.step()
        states.append(row["ledger_states"])
        assert world.conserved(), world.tick
        assert int(world.ledger.view.min()) >= 0
        assert int(world.stake.min()) >= 0
    # The partition (ticks 5-12) and the slow link keep replicas apart; anti-entropy after the heal
    # brings them together.
    assert max(states[5:13]) > 1
    assert world.ledger.anti_entropy([[0, 1, 2]]) >= 0
    assert world.ledger.distinct_states() == 1 and world.ledger.pending_batches() == 0
    assert torch.equal(world.ledger.base, world.ledger.view)
    assert world.ledger.rejected == 0


def test_same_seed_same_bits_other_seed_differs():
    a, b = small(), small()
    c = TensorWorld(parse(SMALL_GPU), seed=4)
    for _ in range(12):
        rows = [w.step() for w in (a, b, c)]
    assert rows[0] == rows[1] and rows[0] != rows[2]
    assert a.subsystem_hashes() == b.subsystem_hashes() != c.subsystem_hashes()


def test_a_batch_changed_in_flight_is_rejected_and_applies_nothing():
    # Every message lost and no anti-entropy: each batch stays at its origin.
    world = small(
        SMALL_GPU.replace("loss = 0.2", "loss = 1.0").replace(
            "anti_entropy_every = 4", "anti_entropy_every = 1000"
        )
    )
    world.step()
    tick = max(world.ledger.ticks)
    batch = world.ledger.ticks[tick]
    # An entry of one origin's batch for an account at another replica: its amount is changed.
    pairs = [(o, r) for o in range(3) for r in range(3) if r not in batch.seen[o]]
    origin, replica = next(
        (o, r)
        for o, r in pairs
        if bool(((batch.origin == o) & (world.ledger.home[batch.account] == r)).any())
    )
    mask = (batch.origin == origin) & (world.ledger.home[batch.account] == replica)
    i = int(torch.nonzero(mask)[0])
    batch.amount[i] += 1_000_000
    before = world.ledger.view.clone()
    world.ledger.deliver(tick, origin, replica)
    assert world.ledger.rejected == 1
    assert torch.equal(world.ledger.view, before)
    # Arriving with an intact batch of the same tick: the intact one applies, the changed one not.
    other, to = next(
        (o, r) for o, r in pairs if o != origin and len(range(*batch.remote(o, r, 3))) > 0
    )
    a, b = batch.remote(other, to, 3)
    want = before.clone().index_add_(0, batch.account[a:b], batch.amount[a:b])
    batch.seen[origin].discard(replica)
    assert world.ledger.deliver_many([(tick, origin, replica), (tick, other, to)]) == 2
    assert world.ledger.rejected == 2
    assert torch.equal(world.ledger.view, want)
    world.ledger.view.copy_(before)
    batch.seen[other].discard(to)
    batch.amount[i] -= 1_000_000  # restored: it verifies and applies
    batch.seen[origin].discard(replica)
    world.ledger.deliver(tick, origin, replica)
    assert world.ledger.rejected == 2 and replica in batch.seen[origin]
    a, b = batch.remote(origin, replica, 3)
    assert torch.equal(
        world.ledger.view, before.index_add_(0, batch.account[a:b], batch.amount[a:b])
    )


def auction_reference(bids, asks, active_b, alive_s):
    """The call market's rounds, written out plainly (index order breaks ties)."""
    rounds, mb = bids.shape
    ns = asks.shape[1]
    partner, price = [-1] * mb, [0] * mb
    sold = [False] * ns
    for r in range(rounds):
        b = sorted(
            (i for i in range(mb) if active_b[i] and partner[i] < 0), key=lambda i: (-bids[r, i], i)
        )
        a = sorted(
            (j for j in range(ns) if alive_s[j] and not sold[j]), key=lambda j: (asks[r, j], j)
        )
        k = 0
        while k < min(len(b), len(a)) and bids[r, b[k]] >= asks[r, a[k]]:
            k += 1
        if k == 0:
            continue
        low = max([asks[r, a[k - 1]]] + ([bids[r, b[k]]] if k < len(b) else []))
        high = min([bids[r, b[k - 1]]] + ([asks[r, a[k]]] if k < len(a) else []))
        for i, j in zip(b[:k], a[:k], strict=True):
            partner[i], price[i], sold[j] = j, (low + high) // 2, True
    return partner, price, sold


def test_the_auction_rounds_follow_the_call_market_rules_ties_included():
    rng = np.random.default_rng(7)
    for case in range(150):
        mb, ns, rounds = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 5))
        top = int(rng.choice([5, 50, 2000]))  # small ranges force ties
        bids = rng.integers(0, top, (rounds, mb))
        asks = rng.integers(0, top, (rounds, ns))
        active = rng.random(mb) < 0.8
        alive = rng.random(ns) < 0.8
        tb, ts, partner, price = auction_rounds(
            torch.as_tensor(bids),
            torch.as_tensor(asks),
            torch.as_tensor(active),
            torch.as_tensor(alive),
        )
        want_partner, want_price, want_sold = auction_reference(bids, asks, active, alive)
        traded = [p >= 0 for p in want_partner]
        assert tb.tolist() == traded, case
        assert ts.tolist() == want_sold, case
        assert [
            p if t else -1 for p, t in zip(partner.tolist(), traded, strict=True)
        ] == want_partner
        assert [p if t else 0 for p, t in zip(price.tolist(), traded, strict=True)] == want_price
        # Posts known to be small are sorted as 16-bit keys: the same outcome.
        narrow = auction_rounds(
            torch.as_tensor(bids),
            torch.as_tensor(asks),
            torch.as_tensor(active),
            torch.as_tensor(alive),
            post_max=top,
        )
        assert all(torch.equal(a, b) for a, b in zip(narrow, (tb, ts, partner, price), strict=True))


def test_host_and_tensor_draws_are_the_same_words():
    key = stream_key(9, "x")
    hi, _ = u32(torch.arange(50), key, 3, 2)
    assert hi.tolist() == [host_u32(key, 3, 2, i) for i in range(50)]
    assert stream_key(9, "x") != stream_key(9, "y") != stream_key(8, "y")


def test_a_recorded_run_replays_bit_for_bit_and_tampering_is_named(tmp_path):
    runner = CliRunner()
    (tmp_path / "s.toml").write_text(SMALL_GPU)
    run = runner.invoke(app, ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "r"), "-q"])
    assert run.exit_code == 0, run.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["format"] == "agora-gpu-run-1" and summary["engine"] == "gpu"
    assert [c["tick"] for c in summary["checkpoints"]] == [9, 19, 29]
    assert summary["totals"]["supply_held_micro"] == summary["totals"]["supply_issued_micro"]
    ok = runner.invoke(app, ["replay", str(tmp_path / "r"), "--verify"])
    assert ok.exit_code == 0 and "identical" in ok.output, ok.output
    # The run's tables read like any run's; what it does not keep is refused by name.
    analyzed = runner.invoke(app, ["analyze", str(tmp_path / "r")])
    assert analyzed.exit_code == 0 and "market efficiency" in analyzed.output, analyzed.output
    query = "select sum(tasks_posted) as posted from metrics"
    q = runner.invoke(app, ["query", str(tmp_path / "r"), query, "--format", "json"])
    assert q.exit_code == 0, q.output
    assert int(json.loads(q.output)[0]["posted"]) == summary["totals"]["tasks_posted"]
    for argv in (
        ["fork", str(tmp_path / "r"), "--at", "9", "--out", str(tmp_path / "f")],
        ["replay", str(tmp_path / "r"), "--at", "5"],
    ):
        refused = runner.invoke(app, argv)
        assert refused.exit_code == 2 and "gpu-engine run" in refused.output, refused.output
    # A byte of the metrics changed: named.
    data = bytearray((tmp_path / "r" / "metrics.arrows").read_bytes())
    data[-40] ^= 1
    (tmp_path / "r" / "metrics.arrows").write_bytes(bytes(data))
    bad = runner.invoke(app, ["replay", str(tmp_path / "r"), "--verify"])
    assert bad.exit_code != 0 and "metrics.arrows" in bad.output, bad.output


def test_a_run_whose_recorded_hashes_differ_is_named_at_its_first_checkpoint(tmp_path):
    import hashlib

    from runtime.record.recording import _canonical

    runner = CliRunner()
    (tmp_path / "s.toml").write_text(SMALL_GPU)
    assert (
        runner.invoke(
            app, ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "r"), "-q"]
        ).exit_code
        == 0
    )
    path = tmp_path / "r" / "summary.json"
    summary = json.loads(path.read_text())
    summary["checkpoints"][1]["hashes"]["market"] = "0" * 64
    summary["summary_sha256"] = hashlib.sha256(_canonical(summary)).hexdigest()
    path.write_text(json.dumps(summary))
    out = runner.invoke(app, ["replay", str(tmp_path / "r"), "--verify"])
    assert out.exit_code == 1, out.output
    assert "diverged at tick 19: subsystem(s) market" in out.output


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ('[governance]\nmembers = "work"\n', "governance: the gpu engine has no governance"),
        ("", "market.mechanism"),
        ('[[fault]]\nat = 3\nkind = "byzantine"\ncount = 1\n', "fault[2].kind: 'byzantine'"),
        (
            '[[fault]]\nat = 3\nkind = "degrade"\npopulation = "req"\nfraction = 0.5\n',
            "fault[2].population: the gpu engine degrades workers",
        ),
    ],
)
def test_what_the_gpu_engine_does_not_model_is_refused_naming_the_key(tmp_path, change, named):
    text = SMALL_GPU + "\n" + change
    if not change:
        text = text.replace('mechanism = "call"', 'mechanism = "cda"')
    with pytest.raises(ScenarioError) as err:
        parse(text)
    assert any(named in line for line in err.value.problems), err.value.problems
    (tmp_path / "s.toml").write_text(text)
    out = CliRunner().invoke(app, ["validate", str(tmp_path / "s.toml")])
    assert out.exit_code == 2 and named in out.output


def test_a_role_of_your_own_needs_the_exact_engine():
    text = SMALL_GPU.replace('role = "negotiator"', 'role = "ticker"')
    with pytest.raises(ScenarioError) as err:
        parse(text)
    assert any("does not run on the gpu engine" in line for line in err.value.problems)


def test_the_sampled_proofs_refute_a_payer_that_pays_more_than_it_held():
    from runtime.tensor.verify import prove

    assert prove([1, 2, 3], [5, 0, 7], [5, 0, 9]) == (2, 0)  # slot 2 paid nothing
    assert prove([1, 1, 2], [5, 6, 3], [10, 10, 2]) == (0, 3)  # both of payer 1's, payer 2's
    assert prove([4, 5], [-1, 2], [10, 2]) == (1, 1)  # a negative amount
    assert prove([7], [3], [-2]) == (0, 1)  # a payer that held less than nothing
    assert prove([], [], []) == (0, 0)


def test_a_run_proves_its_sample_every_tick_and_refutes_nothing():
    world = small()
    proved = 0
    for _ in range(10):
        row = world.step()
        proved += row["proved"]
        assert row["refuted"] == 0
    assert proved > 0


def test_the_exact_engines_world_refuses_a_gpu_scenario():
    from runtime.kernel.world import World

    with pytest.raises(ScenarioError, match="world.engine"):
        World(parse(SMALL_GPU))


HEAD = '[world]\nticks = 12\ncheckpoint_every = 4\nengine = "gpu"\n[market]\nmechanism = "call"\n'


def test_edge_worlds_run_and_conserve():
    texts = [
        # a critic with no workers to watch
        HEAD + '[[population]]\nname = "r"\nrole = "requester"\ncount = 5\ninitial_credits = 10\n'
        '[[population]]\nname = "w"\nrole = "worker"\ncount = 0\n'
        '[[population]]\nname = "c"\nrole = "critic"\ncount = 1\nwatches = "w"\n',
        # planners reading a forecaster that has no agents
        HEAD + '[[population]]\nname = "fc"\nrole = "world_model"\ncount = 0\n'
        '[[population]]\nname = "r"\nrole = "requester"\ncount = 5\ninitial_credits = 10\n'
        'post_rate = 1.0\nforecasts_from = "fc"\nforecast_fee = 1.0\n',
        # workers and no requesters: uptime is still earned
        HEAD + '[[population]]\nname = "w"\nrole = "worker"\ncount = 3\n',
    ]
    for text in texts:
        world = TensorWorld(parse(text))
        rows = [world.step() for _ in range(12)]
        assert world.conserved()
        assert sum(r["forecast_fees_micro"] for r in rows) == 0
    assert int(world.ledger.view.sum()) > 0  # the workers' uptime


def test_faults_end_as_in_the_exact_engine():
    text = HEAD + (
        '[network]\nregions = ["a", "b"]\n'
        '[[population]]\nname = "r"\nrole = "requester"\ncount = 4\ninitial_credits = 50\n'
        '[[population]]\nname = "w"\nrole = "worker"\ncount = 10\n'
        '[[fault]]\nat = 1\nkind = "loss_burst"\nloss = 1.0\nduration = 2\n'
        '[[fault]]\nat = 2\nkind = "loss_burst"\nloss = 1.0\nduration = 3\n'
        '[[fault]]\nat = 0\nkind = "crash"\npopulation = "w"\nfraction = 1.0\n'
        '[[fault]]\nat = 2\nkind = "restart"\npopulation = "w"\nfraction = 0.5\nduration = 2\n'
    )
    world = TensorWorld(parse(text))
    rows = [world.step() for _ in range(8)]
    # A burst's end restores the scenario's loss (0), as in the exact engine: the first burst's
    # end (tick 3) ends the loss, and nothing brings a burst's loss back later.
    assert [r["messages_lost"] for r in rows] == [0, 2, 2, 0, 0, 0, 0, 0]
    # The first half of the workers comes back at tick 2 and goes down again at tick 4.
    assert [r["alive"] - 4 for r in rows] == [0, 0, 5, 5, 0, 0, 0, 0]


def test_large_values_do_not_overflow():
    rich = HEAD + (
        "[economy]\ntask_unit_credits = 2000\n"
        '[[population]]\nname = "r"\nrole = "requester"\ncount = 20\n'
        "initial_credits = 1000000000\npost_rate = 1.0\n"
        '[[population]]\nname = "n"\nrole = "negotiator"\ncount = 20\n'
        '[[population]]\nname = "w"\nrole = "worker"\ncount = 50\n'
        '[[population]]\nname = "h"\nrole = "healer"\ncount = 1\nwatches = "w"\n'
        "z_threshold = 1000\n"
    )
    world = TensorWorld(parse(rich))
    price = 2000 * 1_000_000
    cost = world.w_cost
    assert int(cost.min()) >= price // 5 and int(cost.max()) < price * 3 // 2
    rows = [world.step() for _ in range(12)]
    assert all(r["surplus_pm"] >= 0 for r in rows)
    assert sum(r["quarantined"] for r in rows) == 0  # no worker is 1000 sd from the mean
    assert world.conserved()


def test_bad_options_and_tampered_run_files_are_named(tmp_path):
    runner = CliRunner()
    (tmp_path / "s.toml").write_text(SMALL_GPU)
    scenario = str(tmp_path / "s.toml")
    for argv, named in (
        (
            ["run", scenario, "--compare-baseline", "--out", str(tmp_path / "b")],
            "--compare-baseline",
        ),
        (["run", scenario, "--seed", str(2**63), "--out", str(tmp_path / "c")], "--seed"),
        (["train", scenario, "--out", str(tmp_path / "t")], 'world.engine = "gpu"'),
    ):
        out = runner.invoke(app, argv)
        assert out.exit_code == 2 and named in out.output, (argv, out.output)
    assert runner.invoke(app, ["run", scenario, "--out", str(tmp_path / "r"), "-q"]).exit_code == 0
    run = tmp_path / "r"

    def verdict() -> str:
        out = runner.invoke(app, ["replay", str(run), "--verify"])
        assert out.exit_code in (1, 2) and "Traceback" not in out.output, out.output
        return out.output

    import hashlib

    from runtime.record.recording import _canonical

    summary_text = (run / "summary.json").read_text()
    for edit in (
        lambda s: s.update(format="agora-run-1"),
        lambda s: s.update(checkpoints=None),
        lambda s: s.update(files=[]),
    ):
        summary = json.loads(summary_text)
        edit(summary)
        summary["summary_sha256"] = hashlib.sha256(_canonical(summary)).hexdigest()
        (run / "summary.json").write_text(json.dumps(summary))
        assert "tampered" in verdict() or "diverged" in verdict()
    (run / "summary.json").write_text(summary_text)
    manifest_text = (run / "run.json").read_text()
    manifest = json.loads(manifest_text)
    manifest["device"] = "tpu"
    (run / "run.json").write_text(json.dumps(manifest))
    assert "'device'" in verdict()
    (run / "run.json").write_text(manifest_text)
    (run / "state.arrows").write_bytes(b"x")
    assert "state.arrows: extra" in verdict()
    (run / "state.arrows").unlink()
    ok = runner.invoke(app, ["replay", str(run), "--verify"])
    assert ok.exit_code == 0, ok.output


def test_analyze_counts_the_gpu_engines_slashes(tmp_path):
    from runtime.analysis.runs import analyze
    from runtime.record.recording import record_scenario
    from runtime.record.run_data import open_run

    summary = record_scenario(parse(SMALL_GPU), SMALL_GPU.encode(), tmp_path, tmp_path / "r")
    a = analyze(open_run(tmp_path / "r"))
    assert a["slashes"]["count"] > 0 and a["slashes"]["rejections"] == summary["totals"]["caught"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_triton_auction_gives_the_torch_forms_integers():
    from runtime.tensor.auction_cuda import auction_rounds_cuda
    from runtime.tensor.world import auction_rounds_torch

    rng = np.random.default_rng(11)
    for case in range(60):
        # Sizes across the kernels' 1024-wide blocks; small price ranges force ties.
        mb = int(rng.choice([1, 2, 17, 1023, 1024, 1025, 3000]))
        ns = int(rng.choice([1, 9, 1024, 1025, 2049]))
        rounds, top = int(rng.integers(1, 31)), int(rng.choice([3, 50, 2001]))
        args = (
            torch.as_tensor(rng.integers(0, top, (rounds, mb)), device="cuda"),
            torch.as_tensor(rng.integers(0, top, (rounds, ns)), device="cuda"),
            torch.as_tensor(rng.random(mb) < 0.8, device="cuda"),
            torch.as_tensor(rng.random(ns) < 0.8, device="cuda"),
        )
        # Every other case with the posts' bound given: sorted as 16-bit keys, the same outcome.
        bound = {"post_max": top} if case % 2 else {}
        want, got = auction_rounds_torch(*args), auction_rounds_cuda(*args, **bound)
        traded = want[0]
        assert torch.equal(got[0], traded) and torch.equal(got[1], want[1]), case
        for w, g in zip(want[2:], got[2:], strict=True):
            assert torch.equal(torch.where(traded, g, 0), torch.where(traded, w, 0)), case


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_second_world_in_the_process_gives_the_cpu_forms_bits():
    import gc

    scenario, _ = load(GPU_SCENARIO)
    earlier = TensorWorld(scenario, device="cuda")
    for _ in range(3):
        earlier.step()  # its graph captured
    # Freed only by the collector, at a moment of its choosing: it must not be while the next
    # world captures its graph (CUDA refuses a graph destroyed during a capture).
    earlier._cycle = earlier
    del earlier
    cpu, gpu = TensorWorld(scenario), TensorWorld(scenario, device="cuda")
    for _ in range(10):
        cpu.step()
        gpu.step()
    gc.collect()
    assert gpu.combine(gpu.subsystem_hashes()) == cpu.combine(cpu.subsystem_hashes())


def test_an_auction_whose_triton_kernels_fail_runs_as_torch_operations(monkeypatch):
    import sys
    import types

    import runtime.tensor.world as tensor_world

    def fails(*args):
        raise RuntimeError("no kernel image is available for this GPU")

    # A GPU where Triton is installed but its kernels do not build: the first call warns and
    # the auction runs as torch operations from then on.
    fake = types.ModuleType("runtime.tensor.auction_cuda")
    fake.auction_rounds_cuda = fails
    monkeypatch.setitem(sys.modules, "runtime.tensor.auction_cuda", fake)
    monkeypatch.setattr(tensor_world, "_on_cuda", lambda tensor: True)
    monkeypatch.setattr(tensor_world, "_TRITON", {})
    monkeypatch.setitem(sys.modules, "triton", types.ModuleType("triton"))
    rng = np.random.default_rng(3)
    args = (
        torch.as_tensor(rng.integers(0, 50, (4, 9))),
        torch.as_tensor(rng.integers(0, 50, (4, 7))),
        torch.ones(9, dtype=torch.bool),
        torch.ones(7, dtype=torch.bool),
    )
    with pytest.warns(RuntimeWarning, match="no kernel image.*same integers"):
        got = tensor_world.auction_rounds(*args)
    want = tensor_world.auction_rounds_torch(*args)
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    assert not tensor_world._triton()
    again = tensor_world.auction_rounds(*args)  # no second warning: the torch form is chosen
    assert all(torch.equal(g, w) for g, w in zip(again, want, strict=True))
