"""agora sweep: the grid as run directories and one table; rows equal single runs; killed workers are
retried, a killed sweep resumes; failures are reported; bad input exits 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.recording import read_summary, record
from runtime.sweep import PARTIAL, RESULTS, parse_sets, plan, summary_row

SCENARIO = """
[world]
name = "small"
seed = 7
ticks = {ticks}
checkpoint_every = 10
[network]
regions = ["eu", "us"]
[[population]]
name = "requesters"
role = "requester"
count = {req}
initial_credits = 20
post_rate = 0.3
[[population]]
name = "workers"
role = "worker"
count = {work}
stake = 2
"""

AGORA = [sys.executable, "-m", "runtime.cli"]


def _scenario(tmp: Path, ticks: int = 20, req: int = 300, work: int = 60) -> Path:
    path = tmp / "small.toml"
    path.write_text(SCENARIO.format(ticks=ticks, req=req, work=work))
    return path


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / RESULTS).to_pylist()


def test_a_two_by_two_seed_sweep_on_ray_matches_single_runs(tmp_path):
    pytest.importorskip("ray")
    scenario = _scenario(tmp_path)
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", str(scenario), "--set", "population.workers.stake=2,4", "--seeds", "2",
                                      "--backend", "ray", "--workers", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == ["population.workers.stake=2__seed=7", "population.workers.stake=2__seed=8",
                    "population.workers.stake=4__seed=7", "population.workers.stake=4__seed=8"]
    rows = _rows(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    # Each row equals what a single run of that scenario and seed records (timing aside).
    for row in rows:
        stake = row["set.population.workers.stake"]
        single_scenario = tmp_path / f"stake{stake}.toml"
        single_scenario.write_text(scenario.read_text().replace("stake = 2", f"stake = {stake}"))
        single = record(single_scenario, tmp_path / f"single-{stake}-{row['seed']}", seed=row["seed"])
        expected = summary_row(single)
        got = {k: row[k] for k in expected}
        assert {k: v for k, v in got.items() if k != "wall_seconds"} == \
               {k: v for k, v in expected.items() if k != "wall_seconds"}
        assert read_summary(out / row["run"])[0]["final_state_hash"] == single["final_state_hash"]
    assert len({r["final_state_hash"] for r in rows}) == 4


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_killed_worker_is_retried_and_a_killed_sweep_resumes(tmp_path, backend):
    if backend == "ray":
        pytest.importorskip("ray")
    scenario = _scenario(tmp_path, ticks=60, req=2000, work=400)
    out = tmp_path / "sweep"
    args = [*AGORA, "sweep", str(scenario), "--set", "economy.price_elasticity=0.3,0.6", "--seeds", "2",
            "--backend", backend, "--workers", "1" if backend == "local" else "2", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # Kill the worker process of the first run while it runs: the sweep tries that run again.
    first = "economy.price_elasticity=0.3__seed=7"
    pid_file = out / PARTIAL / f"{first}.pid"
    _wait_for(pid_file.is_file)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    # Then kill the whole sweep once two runs are finished.
    _wait_for(lambda: len([p for p in out.iterdir() if p.is_dir() and p.name != PARTIAL]) >= 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: (p / "summary.json").stat().st_mtime_ns for p in out.iterdir() if p.is_dir() and p.name != PARTIAL}
    assert len(finished) >= 2 and all(not read_summary(out / name)[1] for name in finished)
    # Running the same command again keeps the finished runs and completes the rest.
    again = subprocess.run(args, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert again.returncode == 0, again.stderr
    rows = {r["run"]: r for r in _rows(out)}
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows.values())
    for name, mtime in finished.items():
        assert (out / name / "summary.json").stat().st_mtime_ns == mtime  # not redone
    assert not (out / PARTIAL).exists() or not any((out / PARTIAL).iterdir())


def test_a_ray_worker_killed_mid_run_is_retried(tmp_path):
    pytest.importorskip("ray")
    import ray

    from runtime.sweep import sweep

    scenario = _scenario(tmp_path, ticks=60, req=2000, work=400)
    out = tmp_path / "sweep"
    specs = plan(scenario, parse_sets(["economy.price_elasticity=0.4"]), 2, out)
    killed: list[int] = []

    def kill_first_worker() -> None:
        pid_file = out / PARTIAL / f"{specs[0].run_id}.pid"
        _wait_for(pid_file.is_file)
        pid = int(pid_file.read_text())
        killed.append(pid)
        os.kill(pid, signal.SIGKILL)

    import threading

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    try:
        outcomes = sweep(specs, "ray", workers=2)
    finally:
        killer.join()
        ray.shutdown()
    assert killed and [o.status for o in outcomes] == ["done", "done"]
    assert outcomes[0].attempts == 2 and outcomes[1].attempts == 1
    assert all(not read_summary(out / s.run_id)[1] for s in specs)


def test_a_run_that_fails_twice_is_reported_not_dropped(tmp_path):
    scenario = _scenario(tmp_path)
    (tmp_path / "broken.npz").write_bytes(b"not a core file")
    text = scenario.read_text() + '\n[[population]]\nname = "healers"\nrole = "healer"\ncount = 1\nwatches = "workers"\n'
    scenario.write_text(text)
    out = tmp_path / "sweep"
    result = subprocess.run([*AGORA, "sweep", str(scenario), "--set", 'population.healers.core="learned","broken.npz"',
                             "--out", str(out), "--workers", "2", "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "failed twice" in result.stderr and "broken.npz" in result.stderr
    rows = {r["set.population.healers.core"]: r for r in _rows(out)}
    assert rows["learned"]["status"] == "ok"
    assert rows["broken.npz"]["status"] == "failed" and rows["broken.npz"]["attempts"] == 2
    assert "broken.npz" in rows["broken.npz"]["error"]
    assert not (out / "population.healers.core=broken.npz__seed=7").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "economy.no_such_key=1,2"], "economy.no_such_key"),
    (["--set", "population.nobody.stake=1"], "no entry named 'nobody'"),
    (["--set", "economy.price_elasticity=-1"], "price_elasticity"),
    (["--set", "economy.price_elasticity"], "expected KEY=VALUE"),
    (["--set", "world.seed=1,1"], "listed twice"),
    (["--set", "world.seed=1,2"], "seeds come from --seeds"),
    (["--seeds", "0"], "--seeds"),
    (["--backend", "spark"], "expected local or ray"),
    (["--address", "10.0.0.1:6379"], "only with --backend ray"),
])
def test_bad_sweeps_exit_2_naming_the_problem_and_run_nothing(tmp_path, args, message):
    scenario = _scenario(tmp_path)
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", str(scenario), *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()


def test_backend_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what a Python without Ray sees: import ray fails
    result = CliRunner().invoke(app, ["sweep", str(_scenario(tmp_path)), "--backend", "ray", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "pip install -e '.[ray]'" in result.output
