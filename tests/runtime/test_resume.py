"""Checkpoints that hold the whole world: resume after a kill, fork a what-if branch, bad input."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.record.checkpoints import SNAPSHOT_DIR, snapshot_name
from runtime.record.recorder import read_stream
from runtime.record.recording import record

# Every subsystem a checkpoint must carry: roles with learned cores, critics reviewing the ledger,
# coordination (oscillators and tension), governance with proposals, faults, a lossy bus.
RICH = """
[world]
name = "rich"
seed = 3
ticks = 60
checkpoint_every = 10

[network]
regions = ["a", "b", "c"]
links = [{ a = "a", b = "b", latency = 0.1 }, { a = "b", b = "c", latency = 0.3 }]

[bus]
loss = 0.05
duplication = 0.05
jitter = 0.2

[economy]
anti_entropy_every = 4

[[population]]
name = "req"
role = "requester"
count = 120
initial_credits = 40
post_rate = 0.3
task_units = 3

[[population]]
name = "work"
role = "worker"
count = 40
stake = 5
cheat_fraction = 0.2

[[population]]
name = "heal"
role = "healer"
count = 1
watches = "work"

[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"

[[population]]
name = "wm"
role = "world_model"
count = 1
horizon = 3

[[population]]
name = "neg"
role = "negotiator"
count = 12
initial_credits = 500

[[population]]
name = "ref"
role = "refactor"
count = 2
initial_credits = 500
modules = 12

[[fault]]
at = 15
kind = "degrade"
population = "work"
fraction = 0.3
severity = 0.7
duration = 20

[[fault]]
at = 25
kind = "partition"
groups = [["a"], ["b", "c"]]
duration = 8

[[fault]]
at = 40
kind = "crash"
population = "work"
fraction = 0.2
duration = 6

[coordination]
coupling = 4.0
graph_every = 5
tension_every = 10

[governance]
members = "neg"
member_stake = 10
voting_period = 3
timelock = 1

[[proposal]]
at = 12
kind = "params"
changes = { fee_rate = 0.05 }

[[vote]]
at = 13
member = 0
proposal = 0
support = true
"""

RUNNER = CliRunner()


def _files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run except its summary (which holds the wall time), by relative path."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "summary.json"
    }


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """The scenario file, and its uninterrupted run."""
    folder = tmp_path_factory.mktemp("rich")
    scenario = folder / "rich.toml"
    scenario.write_text(RICH)
    summary = record(scenario, folder / "whole")
    return scenario, folder / "whole", summary


CHILD = (
    "import sys; from pathlib import Path; from runtime.record.recording import record; "
    "record(Path(sys.argv[1]), Path(sys.argv[2]))"
)


@pytest.mark.slow
def test_killed_at_random_points_then_resumed_equals_the_uninterrupted_run(rich, tmp_path):
    scenario, whole, summary = rich
    rng = random.Random(20261201)
    for trial in range(3):
        out = tmp_path / f"killed{trial}"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(scenario), str(out)])
        # Kill once a checkpoint exists, at a random moment after it (mid-tick, mid-write, ...).
        wait_for = out / SNAPSHOT_DIR / snapshot_name(rng.choice([9, 19, 29, 39]))
        deadline = time.monotonic() + 120
        while not wait_for.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        if (out / "summary.json").exists():
            continue  # it finished before the kill landed: nothing to resume in this trial
        done = RUNNER.invoke(app, ["run", "--resume", str(out), "-q"])
        assert done.exit_code == 0, done.output
        assert _files(out) == _files(whole), f"trial {trial}: the resumed run's files differ"
        resumed = __import__("json").loads((out / "summary.json").read_text())
        assert resumed["final_state_hash"] == summary["final_state_hash"]
        assert resumed["checkpoints"] == summary["checkpoints"]


def test_a_run_killed_before_its_first_checkpoint_starts_again(rich, tmp_path):
    _, whole, _ = rich
    # A recording of the scenario (every recording of it has the same bytes), cut back to what a
    # run killed before its first checkpoint leaves.
    out = _copy_run(whole, tmp_path / "early")
    for name in ("summary.json", SNAPSHOT_DIR, "cores"):
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    done = RUNNER.invoke(app, ["run", "--resume", str(out), "-q"])
    assert done.exit_code == 0, done.output
    assert _files(out) == _files(whole)


def test_a_fork_without_changes_equals_its_parent_from_the_fork_tick(rich, tmp_path):
    _, whole, summary = rich
    done = RUNNER.invoke(
        app, ["fork", str(whole), "--at", "29", "--out", str(tmp_path / "branch"), "-q"]
    )
    assert done.exit_code == 0, done.output
    branch = __import__("json").loads((tmp_path / "branch" / "summary.json").read_text())
    assert branch["final_state_hash"] == summary["final_state_hash"]
    assert branch["parent"]["tick"] == 29 and branch["parent"]["run"] == str(whole)
    assert branch["checkpoints"] == summary["checkpoints"]
    for name in ("events.arrows", "metrics.arrows"):
        parent, _ = read_stream(whole / name)
        child, _ = read_stream(tmp_path / "branch" / name)
        after = parent.filter(np.asarray(parent.column("tick")) > 29)
        assert after.equals(child), name
    for tick in (39, 49, 59):
        name = f"state/full_{tick:06d}.arrow"
        assert (whole / name).read_bytes() == (tmp_path / "branch" / name).read_bytes()


def test_a_fork_with_a_change_parts_from_its_parent_after_the_fork(rich, tmp_path):
    _, whole, summary = rich
    done = RUNNER.invoke(
        app,
        [
            "fork",
            str(whole),
            "--at",
            "19",
            "--out",
            str(tmp_path / "elastic"),
            "--set",
            "economy.price_elasticity=2.0",
            "--set",
            "bus.loss=0.2",
            "-q",
        ],
    )
    assert done.exit_code == 0, done.output
    parent, _ = read_stream(whole / "metrics.arrows")
    child, _ = read_stream(tmp_path / "elastic" / "metrics.arrows")
    assert child.column("tick")[0].as_py() == 20
    p_price = np.asarray(parent.column("mean_price_micro"))[20:]
    c_price = np.asarray(child.column("mean_price_micro"))
    assert not np.array_equal(p_price, c_price)
    branch = __import__("json").loads((tmp_path / "elastic" / "summary.json").read_text())
    assert branch["parent"]["sets"] == ["economy.price_elasticity=2.0", "bus.loss=0.2"]
    assert branch["final_state_hash"] != summary["final_state_hash"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "33"], "saved no world at tick 33; the nearest are at ticks 19, 29, 39"),
        (["--at", "19", "--set", "population.work.count=50"], "keeps every population"),
        (
            ["--at", "19", "--set", "network.default_latency=0.3"],
            "network: fixed when the world is built",
        ),
        (
            ["--at", "19", "--set", "population.work.quality=0.5"],
            "population.work.quality: read when the world is built",
        ),
        (
            ["--at", "19", "--set", "fault.0.severity=0.2"],
            "fault[0]: starts at or before the fork's tick 19",
        ),
        (["--at", "19", "--set", "economy.price_elastic=0.2"], "unknown key"),
        (["--at", "19", "--set", "nonsense"], "expected KEY=VALUE"),
    ],
)
def test_bad_forks_exit_2_with_one_line_and_leave_no_folder(rich, tmp_path, args, message):
    _, whole, _ = rich
    out = tmp_path / "bad"
    done = RUNNER.invoke(app, ["fork", str(whole), *args, "--out", str(out)])
    assert done.exit_code == 2, done.output
    assert message in done.output, done.output
    assert "Traceback" not in done.output
    assert not out.exists()


def _copy_run(whole: Path, target: Path) -> Path:
    shutil.copytree(whole, target)
    return target


def test_a_damaged_or_altered_checkpoint_is_refused(rich, tmp_path):
    _, whole, _ = rich
    run = _copy_run(whole, tmp_path / "flipped")
    path = run / SNAPSHOT_DIR / snapshot_name(29)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    done = RUNNER.invoke(app, ["fork", str(run), "--at", "29", "--out", str(tmp_path / "x")])
    assert done.exit_code == 2 and "checksum does not match" in done.output, done.output
    assert not (tmp_path / "x").exists()
    # Altered consistently (the checksum recomputed): the state no longer has the recorded hash.
    run = _copy_run(whole, tmp_path / "forged")
    path = run / SNAPSHOT_DIR / snapshot_name(29)
    _forge(path)
    done = RUNNER.invoke(app, ["fork", str(run), "--at", "29", "--out", str(tmp_path / "y")])
    assert done.exit_code == 2 and "was altered" in done.output, done.output


def _forge(path: Path) -> None:
    """Raise an account's earned credits in a replica of a saved world, checksum recomputed."""
    import hashlib
    import io
    import zipfile

    from runtime.kernel.array_files import npz_bytes, read_npz

    arrays = read_npz(path.read_bytes()[:-32])
    cells = next(
        k
        for k in arrays
        if arrays[k].dtype == np.int64 and arrays[k].ndim == 2 and arrays[k].shape[1] == 8
    )  # a replica's dense counters: 2R + 2 columns, R = 3
    arrays[cells] = arrays[cells].copy()
    arrays[cells][0, 0] += 10**12
    body = npz_bytes(arrays)
    assert zipfile.ZipFile(io.BytesIO(body)).namelist()[0] == "tree.npy"
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_resume_refuses_what_it_cannot_continue(rich, tmp_path):
    _, whole, _ = rich
    done = RUNNER.invoke(app, ["run", "--resume", str(whole)])
    assert done.exit_code == 2 and "the run finished" in done.output
    (tmp_path / "empty").mkdir()
    done = RUNNER.invoke(app, ["run", "--resume", str(tmp_path / "empty")])
    assert done.exit_code == 2 and "not a run directory" in done.output
    done = RUNNER.invoke(app, ["run", "--resume", str(tmp_path / "missing")])
    assert done.exit_code == 2 and "no such run directory" in done.output
    done = RUNNER.invoke(app, ["run", "scenarios/marketplace.toml", "--resume", str(whole)])
    assert done.exit_code == 2 and "takes no scenario" in done.output
    run = _copy_run(whole, tmp_path / "tampered")
    (run / "summary.json").unlink()
    _forge(run / SNAPSHOT_DIR / snapshot_name(59))
    done = RUNNER.invoke(app, ["run", "--resume", str(run)])
    assert done.exit_code == 2 and "was altered" in done.output, done.output


def test_analyze_compares_a_fork_with_its_parent_and_plots_where_they_part(rich, tmp_path):
    _, whole, _ = rich
    fork_dir, same_dir = tmp_path / "elastic", tmp_path / "same"
    assert (
        RUNNER.invoke(
            app,
            [
                "fork",
                str(whole),
                "--at",
                "19",
                "--out",
                str(fork_dir),
                "-q",
                "--set",
                "economy.price_elasticity=2.0",
            ],
        ).exit_code
        == 0
    )
    assert (
        RUNNER.invoke(
            app, ["fork", str(whole), "--at", "19", "--out", str(same_dir), "-q"]
        ).exit_code
        == 0
    )
    report = tmp_path / "report.html"
    done = RUNNER.invoke(
        app, ["analyze", str(whole), str(fork_dir), str(same_dir), "--report", str(report)]
    )
    assert done.exit_code == 0, done.output
    assert (
        f"forks {whole} at tick 19 with economy.price_elasticity=2.0: they part at tick 20"
        in done.output
    )
    assert (
        f"{same_dir} forks {whole} at tick 19: their metrics are the same from the fork on"
        in done.output
    )
    assert (
        "Fork at tick 19 (economy.price_elasticity=2.0): they part at tick 20" in report.read_text()
    )
