"""Replay analysis at scale: a checkpointed 10^5-agent run, the state at a tick rebuilt from its
snapshots (against the run's own time, and checked against the live hash), and `agora analyze`'s
peak memory on runs of 50 and 200 ticks of that size (the log grows fourfold; the analysis
streams)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.market import SCENARIO  # the same market: 80% requesters, 20% workers

PROBE = """
import sys, threading, time
from runtime.analysis.runs import analyze
from runtime.record.replay import open as open_run
import matplotlib, scipy.stats  # loaded first: what is measured is the analysis, not the imports

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

peak = [rss()]
before = peak[0]
done = threading.Event()
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
threading.Thread(target=watch, daemon=True).start()
t = time.perf_counter()
a = analyze(open_run(sys.argv[1]))
secs = time.perf_counter() - t
done.set()
print(secs, before, max(peak[0], rss()), a["wealth"]["gini"]["last"])
"""


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (measure, value)."""
    from runtime.record.recording import record
    from runtime.record.replay import open as open_run

    agents = 10_000 if quick else 100_000
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        runs = {}
        for ticks in (50, 200):
            path = base / f"s{ticks}.toml"
            path.write_text(
                SCENARIO.format(
                    ticks=ticks, checkpoint_every=10, req=agents * 4 // 5, work=agents // 5
                )
            )
            start = time.perf_counter()
            record(path, base / f"run{ticks}")
            runs[ticks] = (base / f"run{ticks}", time.perf_counter() - start)
        run_dir, run_time = runs[200]
        data = open_run(run_dir)
        start = time.perf_counter()
        _, facts = data.state_at(157)
        at_time = time.perf_counter() - start
        rows += [
            (f"run: {agents:,} agents, 200 ticks, checkpoints every 10", f"{run_time:.1f} s"),
            (
                "agora replay --at 157 (snapshot 149 + 8 ticks of deltas)",
                f"{at_time:.3f} s = {at_time / run_time:.4f} of the run",
            ),
            ("state hash at tick 157 equals the live run's", str(facts["matches_live"])),
        ]
        for ticks in (50, 200):
            d, _ = runs[ticks]
            out = subprocess.run(
                [sys.executable, "-c", PROBE, str(d)], capture_output=True, text=True, check=True
            )
            secs, before, peak, _ = out.stdout.split()
            rows.append(
                (
                    f"agora analyze, {ticks} ticks (run directory {_dir_mb(d):,.0f} MB)",
                    f"{float(secs):.2f} s; resident memory rose at most "
                    f"{float(peak) - float(before):,.0f} MB "
                    f"(sampled every 5 ms) above the {float(before):,.0f} MB of the loaded "
                    f"libraries",
                )
            )
    return rows
