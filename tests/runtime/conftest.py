"""Shared fixtures: a small marketplace scenario that runs in well under a second, and the default
scenario's run, recorded once per test session in a child process."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "scenarios" / "marketplace.toml"

RECORD_DEFAULT = r"""
import hashlib, json, math, struct, sys
from pathlib import Path
import numpy as np
from runtime.record.recording import record

xs = np.linspace(-30.0, 30.0, 100_001)
canary = {
    "numpy": hashlib.sha256(np.exp(xs).tobytes() + np.tanh(xs).tobytes()).hexdigest(),
    "libm": hashlib.sha256(b"".join(
        struct.pack("<3d", math.exp(x), math.log(abs(x) + 1e-3), math.pow(abs(x) + 0.5, 1.37))
        for x in xs.tolist())).hexdigest(),
}
summary = record(Path(sys.argv[1]), Path(sys.argv[2]))
json.dump({"ticks": summary["ticks"], "checkpoints": summary["checkpoints"],
           "final": summary["final_state_hash"], "canary": canary}, sys.stdout)
"""


def record_default(out: Path, env: dict[str, str], name: str = "the default scenario") -> dict:
    """Record the default scenario into ``out`` in a fresh interpreter with environment ``env``:
    its ticks, checkpoints and final state hash, and the hashes of a canary computed by numpy
    (``np.exp``, ``np.tanh``) and by the C library's math (``math.exp``, ``log``, ``pow``)."""
    done = subprocess.run(
        [sys.executable, "-c", RECORD_DEFAULT, str(DEFAULT), str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{name}: the run failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default scenario recorded natively (a child process with this process's environment), as
    :func:`record_default` gives it, once per test session: under pytest-xdist the first worker to
    need it records it while any other waits, and the others read what it wrote."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return record_default(tmp_path_factory.mktemp("default") / "run", dict(os.environ))
    shared = tmp_path_factory.getbasetemp().parent  # the session's folder, above each worker's
    with open(shared / "default_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = shared / "default_run.json"
        if done.is_file():
            return json.loads(done.read_text())
        result = record_default(shared / "default_run", dict(os.environ))
        done.write_text(json.dumps(result))
        return result


SMALL = """
[world]
name = "small"
seed = 5
ticks = 40
checkpoint_every = 10

[network]
regions = ["a", "b", "c"]
links = [{ a = "a", b = "b", latency = 0.1 }, { a = "b", b = "c", latency = 0.2 }]

[bus]
loss = 0.05
duplication = 0.05

[economy]
anti_entropy_every = 3

[[population]]
name = "req"
role = "requester"
count = 60
initial_credits = 20
post_rate = 0.3

[[population]]
name = "work"
role = "worker"
count = 30

[[fault]]
at = 10
kind = "crash"
population = "work"
fraction = 0.5
duration = 5

[[fault]]
at = 20
kind = "partition"
groups = [["a"], ["b", "c"]]
duration = 6
"""


@pytest.fixture
def small_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path
