"""Analysis: indicators with known answers, on plain arrays and on a synthetic run written with the
runtime's own writers; the state at any tick equals the live state; SQL; runs side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from runtime.analysis.indicators import divergence_spells, gini, mean_ci, top_share, volatility
from runtime.analysis.report import report_html
from runtime.analysis.runs import analyze, compare
from runtime.record.recorder import EventLog, MetricsLog
from runtime.record.recording import record
from runtime.record.replay import open as open_run
from runtime.record.state_log import StateLog


def agora(*args: str) -> Result:
    """``agora ARGS`` in this process: its exit code, and its stdout and stderr apart."""
    from runtime.cli import app

    return CliRunner().invoke(app, list(args))


def test_indicators_on_known_vectors():
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 8]) == pytest.approx(0.75)  # (n − 1) / n
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)  # Σ|xi − xj| / (2 n² mean) = 20 / 80
    assert gini([]) == 0.0 and gini([0, 0]) == 0.0
    wealth = np.arange(1, 201)  # top 1% of 200 holders = the 2 richest: 199 + 200
    assert top_share(wealth, 0.01) == pytest.approx(399 / wealth.sum())
    prices = 100 * np.exp(np.cumsum([0.0, 0.1, -0.1, 0.1, -0.1]))
    assert volatility(prices) == pytest.approx(0.1)
    assert divergence_spells([1, 2, 2, 1, 3, 1, 2]) == [2, 1, 1]
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))
    assert mean_ci([7.0]) == (7.0, 7.0, 7.0)


SYNTH = """
[world]
name = "synthetic"
seed = 3
ticks = 4
[[population]]
name = "a"
role = "ticker"
count = 4
"""


@pytest.fixture()
def synthetic(tmp_path: Path) -> Path:
    """A run directory written tick by tick with chosen numbers (the runtime's writers, no
    simulation)."""
    run = tmp_path / "synth"
    run.mkdir()
    (run / "scenario.toml").write_text(SYNTH)
    events = EventLog(run / "events.arrows", 60)
    metrics = MetricsLog(run / "metrics.arrows", 60)
    state = StateLog(run, 60)
    # Wealth per tick for agents 0..3 and the treasury (4), in micro-credits.
    wealth = [[5, 5, 5, 5, 0], [0, 0, 0, 8, 0], [1, 2, 3, 4, 100], [1, 2, 3, 4, 100]]
    prices = 1_000_000 * np.exp(np.array([0.0, 0.1, 0.0, 0.1]))
    lag = [0, 3, 1, 0]
    for t in range(4):
        cols = {
            "balance_micro": np.array(wealth[t], np.int64),
            "stake_micro": np.zeros(5, np.int64),
            "reputation": np.full(5, 0.5),
            "alive": np.ones(5, np.bool_),
        }
        state.write(t, cols, full=t == 1)
        metrics.write(
            {
                "tick": t,
                "mean_price_micro": float(prices[t]),
                "volume_micro": 2_000_000 * (t + 1),
                "distinct_roots": 1 + (t == 1),
                "replica_lag_max": lag[t],
                "price_0_micro": int(prices[t]),
            }
        )
        if t == 2:  # two slashes of 3 and 4 credits; three rejections, one of honest work
            events.emit_many(
                t,
                t,
                "slashed",
                "critic",
                np.array([0, 1]),
                np.array([-1, -1]),
                np.array([3_000_000, 4_000_000]),
                np.array([0.1, 0.1]),
            )
            events.emit_many(
                t,
                t,
                "result_rejected",
                "critic",
                np.array([0, 1, 2]),
                np.array([3, 3, 3]),
                np.array([1, 1, 1]),
                np.array([1.0, 1.0, 0.0]),
            )
            # healer acted on four workers; three were truly degraded
            events.emit_many(
                t,
                t,
                "quarantined",
                "healer",
                np.arange(4),
                np.full(4, -1),
                np.zeros(4, np.int64),
                np.array([1.0, 1.0, 0.0, 1.0]),
            )
        events.end_tick()
    events.close()
    metrics.close()
    state.close()
    (run / "summary.json").write_text(
        json.dumps({"scenario": "synthetic", "seed": 3, "ticks": 4, "totals": {}})
    )
    return run


def test_indicators_of_a_synthetic_run_are_exact(synthetic: Path):
    a = analyze(open_run(synthetic))
    s = a["series"]
    assert s["wealth_tick"] == [0, 1, 2, 3]
    assert s["gini"] == pytest.approx([0.0, 0.75, 0.25, 0.25])  # the treasury is not an agent
    # log returns +0.1, -0.1, +0.1
    assert a["mean_price_credits"]["volatility"] == pytest.approx(math.sqrt(0.08 / 9))
    mean_price = float(np.mean(np.exp([0.0, 0.1, 0.0, 0.1])))  # credits
    assert a["mean_price_credits"]["mean"] == pytest.approx(mean_price)
    assert a["volume_credits"]["total"] == pytest.approx(2 + 4 + 6 + 8)
    assert s["volume_credits"] == pytest.approx([2, 4, 6, 8])
    assert a["slashes"] == {
        "count": 2,
        "slashed_credits": 7.0,
        "rejections": 3,
        "false_rejections": 1,
        "false_rejection_rate": pytest.approx(1 / 3),
    }
    assert a["healing"]["precision_from_log"] == pytest.approx(0.75)
    assert a["ledger_convergence"]["lag_max"] == 3 and a["ledger_convergence"][
        "lag_mean"
    ] == pytest.approx(1.0)
    assert a["ledger_convergence"]["ticks_diverged"] == 1


def test_state_at_rebuilds_from_the_snapshot_and_deltas(synthetic: Path):
    run = open_run(synthetic)
    table, facts = run.state_at(3)
    assert table.column("balance_micro").to_pylist() == [1, 2, 3, 4, 100]
    assert table.column("balance_credits").to_pylist() == [1e-6, 2e-6, 3e-6, 4e-6, 1e-4]
    assert facts["from_snapshot"] == 1
    table, facts = run.state_at(0)
    assert (
        table.column("balance_micro").to_pylist() == [5, 5, 5, 5, 0]
        and facts["from_snapshot"] == -1
    )
    assert facts["recorded_hash"] is None  # this synthetic run recorded no hashes
    assert facts["prices_micro"] == {"price_0_micro": 1_000_000}


MARKET = """
[world]
seed = 4
ticks = 30
checkpoint_every = 10
[network]
regions = ["eu", "us"]
links = [{ a = "eu", b = "us", latency = 0.1 }]
[[population]]
name = "req"
role = "requester"
count = 200
initial_credits = 50
post_rate = 0.4
[[population]]
name = "work"
role = "worker"
count = 60
stake = 5
cheat_fraction = 0.2
[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"
[[fault]]
at = 12
kind = "crash"
population = "work"
fraction = 0.2
duration = 5
"""


@pytest.fixture(scope="module")
def market_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("market")
    (tmp / "m.toml").write_text(MARKET)
    record(tmp / "m.toml", tmp / "run")
    return tmp / "run"


def test_the_state_at_every_tick_matches_the_live_runs_hash(market_run: Path):
    run = open_run(market_run)
    for tick in range(30):
        table, facts = run.state_at(tick)
        assert facts["matches_live"], tick
        assert facts["from_snapshot"] == (-1 if tick < 9 else tick - (tick + 1) % 10)
    # The crash shows in the state: 12 workers down during ticks 12..16, back at 17.

    def alive(t: int) -> int:
        return int(np.asarray(run.state_at(t)[0].column("alive")).sum())

    assert alive(11) - alive(12) == 12 and alive(17) == alive(11)


def test_replay_at_exports_and_refuses_bad_ticks(market_run: Path, tmp_path: Path):
    cli = ["replay", str(market_run)]
    ok = agora(*cli, "--at", "21", "--out", str(tmp_path / "s.parquet"))
    assert ok.exit_code == 0 and "matches the live run" in ok.stdout
    table = pq.read_table(tmp_path / "s.parquet")
    meta = json.loads(table.schema.metadata[b"agora"])
    assert meta["tick"] == 21 and meta["matches_live"] and table.num_rows == 262
    assert set(table.column("population").to_pylist()) == {"req", "work", "crit", "treasury"}
    assert table.schema.field("balance_micro").type == pa.int64()
    assert table.schema.field("stake_micro").type == pa.int64()
    micro = np.asarray(table.column("balance_micro"))
    assert (np.asarray(table.column("balance_credits")) == micro / 1e6).all() and micro.sum() > 0
    assert list(meta["prices_micro"]) == [f"price_{k}_micro" for k in range(8)]  # 8 skills
    csv = agora(*cli, "--at", "21", "--out", str(tmp_path / "s.csv"))
    assert csv.exit_code == 0 and (tmp_path / "s.prices.csv").is_file()
    prices = pacsv.read_csv(tmp_path / "s.prices.csv")
    assert prices.column("skill").to_pylist() == list(range(8))
    assert prices.column("price_micro").to_pylist() == list(meta["prices_micro"].values())
    assert "prices (credits)" in ok.stdout
    for args, msg in (
        (["--at", "30"], "ticks 0..29"),
        (["--at", "3", "--verify"], "exactly one"),
        (["--at", "3", "--out", str(tmp_path / "s.xlsx")], ".parquet or .csv"),
    ):
        bad = agora(*cli, *args)
        assert bad.exit_code == 2 and msg in bad.stderr, args


def test_a_tampered_delta_is_caught_by_the_hash(market_run: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(market_run, copy)
    run = open_run(copy)
    # Rewrite one snapshot with a changed balance: the rebuilt state no longer matches the live
    # hash.
    import pyarrow as pa
    import pyarrow.ipc

    path = copy / "state" / "full_000019.arrow"
    with pa.OSFile(str(path), "rb") as src:  # read into memory: the file is rewritten below
        t = pa.ipc.open_file(src).read_all()
    bal = t.column("balance_micro").to_numpy().copy()
    bal[260] += 1  # the critic: no ledger activity of its own, so no later delta overwrites it
    t = t.set_column(t.schema.get_field_index("balance_micro"), "balance_micro", pa.array(bal))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)
    assert not run.state_at(22)[1]["matches_live"]
    proc = agora("replay", str(copy), "--at", "22")
    assert proc.exit_code == 1 and "DIFFERS" in proc.stdout


def test_sql_over_the_run(market_run: Path):
    run = open_run(market_run)
    got = (
        run.query("select count(*) as n from events where kind = 'task_done'")
        .column("n")[0]
        .as_py()
    )
    events = run.events()
    assert got == sum(1 for k in events.column("kind").to_pylist() if k == "task_done") > 0
    ticks = run.query("select max(tick) as t from metrics").column("t")[0].as_py()
    assert ticks == 29
    bad = agora("query", str(market_run), "select nope from events")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: SQL:")
    csv = agora(
        "query",
        str(market_run),
        "select tick, volume_micro from metrics order by tick limit 3",
        "--format",
        "csv",
    )
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0] == '"tick","volume_micro"'
    assert len(csv.stdout.splitlines()) == 4


def test_runs_side_by_side_with_confidence_intervals(market_run: Path, tmp_path: Path):
    (tmp_path / "m.toml").write_text(MARKET)
    record(tmp_path / "m.toml", tmp_path / "b", seed=5)
    a, b = analyze(open_run(market_run)), analyze(open_run(tmp_path / "b"))
    c = compare([a, b])
    assert c["same_scenario_different_seeds"] and c["seeds"] == [4, 5]
    row = next(r for r in c["rows"] if r["indicator"] == "wealth Gini, last tick")
    x, y = row["values"]
    assert row["diff_from_first"] == [0.0, pytest.approx(y - x)]
    assert row["mean"] == pytest.approx((x + y) / 2)
    assert row["ci95"][0] < row["mean"] < row["ci95"][1]
    proc = agora("analyze", str(market_run), str(tmp_path / "b"), "--format", "json")
    assert proc.exit_code == 0 and len(json.loads(proc.stdout)["runs"]) == 2
    html = report_html([a, b])
    assert (
        html.count("<img class='plot'") >= 4
        and "http" not in html.split("<body>")[1].split("data:image")[0]
    )


def test_analyze_refuses_what_is_not_a_run(tmp_path: Path):
    proc = agora("analyze", str(tmp_path))
    assert proc.exit_code == 2 and "not a run directory" in proc.stderr
