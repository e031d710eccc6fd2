"""agora sweep: the grid as run directories and one table; rows equal single runs; killed workers
are retried, a killed sweep resumes and leaves no process behind; run ids are distinct and
reversible; one sweep at a time writes into a folder; failures are reported; bad input exits 2."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from runtime.cli import app
from runtime.record.recording import read_summary, record
from runtime.scale.sweep import (
    ID_LENGTH_MAX,
    LOCK,
    PARTIAL,
    RESULTS,
    decode_run_id,
    encode_run_id,
    parse_sets,
    plan,
    summary_row,
    sweep,
)

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
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            str(scenario),
            "--set",
            "population.workers.stake=2,4",
            "--seeds",
            "2",
            "--backend",
            "ray",
            "--workers",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == [
        "population.workers.stake=2__seed=7",
        "population.workers.stake=2__seed=8",
        "population.workers.stake=4__seed=7",
        "population.workers.stake=4__seed=8",
    ]
    rows = _rows(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    # Each row equals what a single run of that scenario and seed records (timing aside).
    for row in rows:
        stake = row["set.population.workers.stake"]
        single_scenario = tmp_path / f"stake{stake}.toml"
        single_scenario.write_text(scenario.read_text().replace("stake = 2", f"stake = {stake}"))
        single = record(
            single_scenario, tmp_path / f"single-{stake}-{row['seed']}", seed=row["seed"]
        )
        expected = summary_row(single)
        got = {k: row[k] for k in expected}
        assert {k: v for k, v in got.items() if k != "wall_seconds"} == {
            k: v for k, v in expected.items() if k != "wall_seconds"
        }
        assert read_summary(out / row["run"])[0]["final_state_hash"] == single["final_state_hash"]
    assert len({r["final_state_hash"] for r in rows}) == 4
    # The economic outcomes travel with each row, and analyze summarises them by value.
    for row in rows:
        assert row["volume_total_credits"] > 0 and 0 <= row["gini_last"] <= 1
        assert row["wealth_credits.workers"] > 0 and row["mean_price_credits"] > 0
    shown = CliRunner().invoke(app, ["analyze", str(out)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert (
        "stake=2" in shown.output
        and "stake=4" in shown.output
        and "wealth of workers (credits)" in shown.output
    )
    data = __import__("json").loads(
        CliRunner().invoke(app, ["analyze", str(out), "--format", "json"]).output
    )
    assert [g["seeds"] for g in data["groups"]] == [2, 2]
    volume = data["groups"][0]["figures"]["volume_total_credits"]
    assert volume["n"] == 2 and volume["ci95"][0] <= volume["mean"] <= volume["ci95"][1]


def _worker_pid(out: Path, run_id: str) -> int | None:
    """The process that records ``run_id`` now, as its ``.pid`` file names it, if there is one."""
    for path in (out / PARTIAL).glob(f"*/{run_id}.pid"):
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue  # the run has just been moved into place
        if text:  # not caught mid-write
            return int(text)
    return None


def _wait_for(predicate, timeout: float = 120.0):
    """Poll ``predicate`` until it returns something true, and return that."""
    deadline = time.time() + timeout
    while not (value := predicate()):
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_killed_worker_is_retried_and_a_killed_sweep_resumes(tmp_path, backend):
    if backend == "ray":
        pytest.importorskip("ray")
    scenario = _scenario(tmp_path, ticks=60, req=2000, work=400)
    out = tmp_path / "sweep"
    args = [
        *AGORA,
        "sweep",
        str(scenario),
        "--set",
        "economy.price_elasticity=0.3,0.6",
        "--seeds",
        "2",
        "--backend",
        backend,
        "--workers",
        "1" if backend == "local" else "2",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    # Kill the worker process of the first run while it runs: the sweep tries that run again.
    first = "economy.price_elasticity=0.3__seed=7"
    os.kill(_wait_for(lambda: _worker_pid(out, first)), signal.SIGKILL)
    # Then kill the whole sweep once two runs are finished.
    _wait_for(lambda: len([p for p in out.iterdir() if p.is_dir() and p.name != PARTIAL]) >= 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {
        p.name: (p / "summary.json").stat().st_mtime_ns
        for p in out.iterdir()
        if p.is_dir() and p.name != PARTIAL
    }
    assert len(finished) >= 2 and all(not read_summary(out / name)[1] for name in finished)
    # Running the same command again keeps the finished runs and completes the rest.
    again = subprocess.run(
        args, capture_output=True, text=True, timeout=300, start_new_session=True
    )
    assert again.returncode == 0, again.stderr
    rows = {r["run"]: r for r in _rows(out)}
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows.values())
    for name, mtime in finished.items():
        assert (out / name / "summary.json").stat().st_mtime_ns == mtime  # not redone
    assert not (out / PARTIAL).exists() or not any((out / PARTIAL).iterdir())


def test_a_ray_worker_killed_mid_run_is_retried(tmp_path):
    pytest.importorskip("ray")
    import ray

    scenario = _scenario(tmp_path, ticks=60, req=2000, work=400)
    out = tmp_path / "sweep"
    specs = plan(scenario, parse_sets(["economy.price_elasticity=0.4"]), 2, out)
    killed: list[int] = []

    def kill_first_worker() -> None:
        pid = _wait_for(lambda: _worker_pid(out, specs[0].run_id))
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


BOOM = '''
from typing import ClassVar

from runtime.kernel.population import Population


class Boom(Population):
    """A role that fails in its third tick: a bug in a user's own code."""

    role: ClassVar[str] = "boom"

    def step(self, world, tick):
        if tick == 2 and self.n:
            raise RuntimeError("boom at tick 2")
'''


def test_a_run_that_fails_twice_is_reported_not_dropped(tmp_path):
    scenario = _scenario(tmp_path)
    (tmp_path / "boom.py").write_text(BOOM)
    scenario.write_text(
        scenario.read_text() + '\n[[population]]\nname = "boom"\nrole = "boom:Boom"\ncount = 1\n'
    )
    out = tmp_path / "sweep"
    result = subprocess.run(
        [
            *AGORA,
            "sweep",
            str(scenario),
            "--set",
            "population.boom.count=0,1",
            "--out",
            str(out),
            "--workers",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "failed twice" in result.stderr and "boom at tick 2" in result.stderr
    rows = {r["set.population.boom.count"]: r for r in _rows(out)}
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "failed" and rows[1]["attempts"] == 2
    assert "boom at tick 2" in rows[1]["error"]
    assert not (out / "population.boom.count=1__seed=7").exists()


def test_a_grid_point_that_does_not_validate_is_refused_before_any_run(tmp_path):
    scenario = _scenario(tmp_path)
    (tmp_path / "broken.npz").write_bytes(b"not a core file")
    scenario.write_text(
        scenario.read_text() + '\n[[population]]\nname = "healers"\nrole = "healer"\ncount = 1\n'
        'watches = "workers"\n'
    )
    out = tmp_path / "sweep"
    result = subprocess.run(
        [
            *AGORA,
            "sweep",
            str(scenario),
            "--set",
            'population.healers.core="learned","broken.npz"',
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        result.returncode == 2
        and "broken.npz" in result.stderr
        and "not an .npz file" in result.stderr
    )
    assert not any(out.glob("population*")) if out.exists() else True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "economy.no_such_key=1,2"], "economy.no_such_key"),
        (["--set", "population.nobody.stake=1"], "no entry named 'nobody'"),
        (["--set", "economy.price_elasticity=-1"], "price_elasticity"),
        (["--set", "economy.price_elasticity"], "expected KEY=VALUE"),
        (["--set", "world.seed=1,1"], "listed twice"),
        (["--set", "world.seed=1,2"], "seeds come from --seeds"),
        (["--seeds", "0"], "--seeds"),
        (["--backend", "spark"], "expected local or ray"),
        (["--address", "10.0.0.1:6379"], "only with --backend ray"),
    ],
)
def test_bad_sweeps_exit_2_naming_the_problem_and_run_nothing(tmp_path, args, message):
    scenario = _scenario(tmp_path)
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", str(scenario), *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()


def test_backend_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(
        sys.modules, "ray", None
    )  # what a Python without Ray sees: import ray fails
    result = CliRunner().invoke(
        app, ["sweep", str(_scenario(tmp_path)), "--backend", "ray", "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 2 and "pip install -e '.[ray]'" in result.output


# -- a killed driver ------------------------------------------------------------------------------

MARKER = "AGORA_SWEEP_TEST_MARKER"  # set in a test sweep's environment, so its processes are found


def _sweep_processes(session: int, marker: str) -> dict[int, str]:
    """Live processes (zombies aside) in ``session`` or with ``marker`` in their environment, by
    pid, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            environ = []  # another user's: its session still tells
        state, _ppid, _group, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if state not in ("Z", "X") and (int(sid) == session or marker.encode() in environ):
            found[int(entry.name)] = cmdline
    return found


def _placed_runs(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_dir() and p.name != PARTIAL}


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
def test_a_driver_killed_with_sigkill_leaves_no_process_and_no_later_run(tmp_path):
    scenario = _scenario(tmp_path, ticks=40)
    out = tmp_path / "sweep"
    token = uuid.uuid4().hex
    env = {**os.environ, MARKER: token}
    marker = f"{MARKER}={token}"  # as the entry reads in /proc/PID/environ
    args = [
        *AGORA,
        "sweep",
        str(scenario),
        "--set",
        "economy.price_elasticity=0.2,0.3,0.4,0.5",
        "--seeds",
        "2",
        "--workers",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True
        )
    try:
        # Kill the driver alone, mid-sweep: a run is in place and others are being recorded.
        def mid_sweep() -> bool:
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            return out.is_dir() and bool(_placed_runs(out)) and any((out / PARTIAL).rglob("*.pid"))

        _wait_for(mid_sweep)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        placed = _placed_runs(out)
        deadline = time.monotonic() + 10
        while (left := _sweep_processes(proc.pid, marker)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"processes of the killed sweep still run: {left}"
        # Nothing that could write is left, so what is in place now is final.
        assert _placed_runs(out) == placed and 1 <= len(placed) < 8
        assert all(not read_summary(out / name)[1] for name in placed)
        with open(out / LOCK) as lock:  # the lock died with its holders
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        for pid in _sweep_processes(proc.pid, marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_second_sweep_into_a_locked_folder_exits_2_naming_the_holder(tmp_path):
    scenario = _scenario(tmp_path, ticks=5)
    out = tmp_path / "sweep"
    out.mkdir()
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running sweep's driver holds
        os.write(fd, b"4242\n")
        result = CliRunner().invoke(app, ["sweep", str(scenario), "--out", str(out), "--quiet"])
        assert result.exit_code == 2, result.output
        assert f"--out {out}: another agora sweep (driver pid 4242" in result.output
        assert "choose another --out" in result.output
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing ran, nothing cleared
    finally:
        os.close(fd)


# -- run ids --------------------------------------------------------------------------------------


def test_values_that_looked_alike_in_ids_get_distinct_runs_and_resume(tmp_path):
    scenario = _scenario(tmp_path, ticks=5, req=30, work=10)
    out = tmp_path / "sweep"
    args = [
        *AGORA,
        "sweep",
        str(scenario),
        "--set",
        'world.name="a b","a-b"',
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    rows = _rows(out)
    assert sorted(r["run"] for r in rows) == ["world.name=a%20b__seed=7", "world.name=a-b__seed=7"]
    for row in rows:
        assert row["status"] == "ok" and not read_summary(out / row["run"])[1]
        recorded = tomllib.loads((out / row["run"] / "scenario.toml").read_text())
        assert recorded["world"]["name"] == row["set.world.name"]
        assert decode_run_id(row["run"]) == ((("world.name", row["set.world.name"]),), 7)
    # The same sweep again plans the same ids, so it finds both runs finished.
    again = sweep(plan(scenario, parse_sets(['world.name="a b","a-b"']), 1, out), workers=2)
    assert [o.status for o in again] == ["skipped", "skipped"]


TOML_SCALARS = (
    st.integers(-(2**63), 2**63 - 1)
    | st.booleans()
    | st.text(max_size=12)
    | st.floats(allow_nan=False)
    | st.dates()  # TOML has no fold: a time is one value
    | st.datetimes().map(lambda d: d.replace(fold=0))
    | st.times().map(lambda t: t.replace(fold=0))
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.text(st.sampled_from("abz_.-=%~ é/"), min_size=1, max_size=12)


def _same(a, b) -> bool:
    """Equal and of the same types throughout (1, 1.0 and True differ; so do 0.0 and -0.0)."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return type(a) is type(b) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and repr(a) == repr(b)


@given(st.lists(st.tuples(KEYS, TOML_VALUES), max_size=3), st.integers(-10, 10**6))
def test_a_run_id_decodes_to_its_values_and_seed(values, seed):
    run_id = encode_run_id(values, seed)
    assert len(run_id) <= ID_LENGTH_MAX and "/" not in run_id
    if "~" in run_id:  # too long to spell out: shortened, and it says so
        with pytest.raises(ValueError, match="shortened with a hash"):
            decode_run_id(run_id)
        return
    decoded_values, decoded_seed = decode_run_id(run_id)
    assert decoded_seed == seed and _same(list(decoded_values), [tuple(v) for v in values])


@given(TOML_VALUES, TOML_VALUES)
def test_distinct_values_give_distinct_run_ids(a, b):
    assert (encode_run_id([("k", a)], 7) == encode_run_id([("k", b)], 7)) == _same(a, b)


def test_run_ids_stay_readable_for_plain_values():
    assert (
        encode_run_id([("economy.price_elasticity", 0.3)], 42)
        == "economy.price_elasticity=0.3__seed=42"
    )
    assert (
        encode_run_id([("population.workers.stake", 2), ("world.name", "eu_1")], 7)
        == "population.workers.stake=2__world.name=eu_1__seed=7"
    )
    assert (
        encode_run_id([("k", "2"), ("j", True), ("i", "true")], 1)
        == "k=%222%22__j=true__i=%22true%22__seed=1"
    )  # a string that reads as another value is quoted


def test_a_long_run_id_is_shortened_distinctly_and_keeps_its_seed():
    a = encode_run_id([("world.name", "x" * 300)], 7)
    b = encode_run_id([("world.name", "x" * 299 + "y")], 7)
    assert a != b and len(a) == len(b) == ID_LENGTH_MAX and a.endswith("__seed=7") and "~" in a


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("economy.price_elasticity=0.3", "expected it to end with seed=N"),
        ("economy.price_elasticity=0.3__seed=07", "not as encode_run_id writes it"),
        ("price__seed=7", "is not KEY=VALUE"),
        ("k=%FF__seed=7", "not UTF-8"),
        ("k=a%20b__seed=x", "expected it to end with seed=N"),
    ],
)
def test_decoding_a_name_that_is_not_a_run_id_says_why(run_id, message):
    with pytest.raises(ValueError, match=message):
        decode_run_id(run_id)


LIFELINE_CHILD = """
import fcntl, sys
from multiprocessing.connection import Connection
from runtime.scale.sweep import _end_with_driver
if sys.argv[1] == "thread":
    del fcntl.F_SETSIG  # as on a system without it
_end_with_driver(Connection(int(sys.argv[2]), writable=False))
print("armed", flush=True)
while True:  # busy, as a worker in the middle of a run
    pass
"""


@pytest.mark.parametrize(("how", "returncode"), [("signal", -signal.SIGKILL), ("thread", 1)])
def test_a_worker_ends_when_its_drivers_end_of_the_lifeline_closes(how, returncode):
    if how == "signal" and not hasattr(fcntl, "F_SETSIG"):
        pytest.skip("F_SETSIG is Linux's")
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", LIFELINE_CHILD, how, str(read_end)],
        pass_fds=[read_end],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        os.close(read_end)
        assert child.stdout.readline() == "armed\n"
        os.close(write_end)  # what the kernel does when the driver dies
        assert child.wait(timeout=10) == returncode
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
