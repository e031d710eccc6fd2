"""Start-up time, in fresh processes as a user meets it: ``agora --help``, and building a world.

Each figure is the median of five fresh processes (imports included, numba's on-disk cache warm,
as after a first run). ``build`` times ``agora.Simulation.from_file`` on a scenario: one without a
learned core (requesters and workers, which import neither torch nor z3) and the default scenario.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAIN = """
[world]
seed = 1
ticks = 10
[[population]]
name = "requesters"
role = "requester"
count = 1000
initial_credits = 50
[[population]]
name = "workers"
role = "worker"
count = 200
"""
# prints: seconds to import mesa, then the rest of agora, then to build the world
BUILD = (
    "import sys, time; t0 = time.perf_counter(); import mesa; t1 = time.perf_counter(); "
    "import agora; t2 = time.perf_counter(); agora.Simulation.from_file(sys.argv[1]); "
    "print(t1 - t0, t2 - t1, time.perf_counter() - t2)"
)


def _median(command: list[str], runs: int, printed: bool = True) -> list[float]:
    """Per figure, the median over fresh processes: the figures the process prints on its last
    line, or its wall time (``printed=False``)."""
    samples = []
    for _ in range(runs + 1):  # the first warms the caches and is not counted
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        wall = time.perf_counter() - start
        samples.append(
            [float(x) for x in done.stdout.split("\n")[-2].split()] if printed else [wall]
        )
    return [statistics.median(column) for column in zip(*samples[1:], strict=True)]


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: what, seconds (median of fresh processes), target."""
    runs = 3 if quick else 5
    plain = ROOT / "runs" / "bench-startup" / "plain.toml"
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text(PLAIN)
    (help_s,) = _median([sys.executable, "-m", "runtime.cli", "--help"], runs, printed=False)
    mesa_s, agora_s, build_s = _median([sys.executable, "-c", BUILD, str(plain)], runs)
    *_, default_s = _median(
        [sys.executable, "-c", BUILD, str(ROOT / "scenarios" / "marketplace.toml")], runs
    )
    return [
        ("agora --help (process start to exit)", f"{help_s:.2f}", "< 0.5 s"),
        (
            "build a scenario without learned cores (1,200 agents), after imports",
            f"{build_s:.2f}",
            "< 1 s",
        ),
        (
            "  imports before it: mesa (Mesa's own package, which loads pandas and scipy)",
            f"{mesa_s:.2f}",
            "-",
        ),
        ("  imports before it: the rest of agora", f"{agora_s:.2f}", "-"),
        (
            "build the default scenario (2,250 agents, every role), after imports",
            f"{default_s:.2f}",
            "-",
        ),
    ]
