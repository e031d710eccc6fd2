"""Ticks/s of the scaled default scenario over the benchmark's window, with nothing else around it.

    python -m benchmarks.tick_window 1000000     # agents

Builds the scaled marketplace (``benchmarks.marketplace``), runs the ``WARMUP`` ticks, then times
ticks 11-29 (a coupling-graph rebuild and a tension reading among them) -- the window
``agora bench --only marketplace`` times, without the fresh process and memory accounting. It
needs only ``World`` and ``scaled_text``, so it runs on older checkouts too (``git worktree add``),
which makes it the tool for before/after comparisons of a change.
"""

from __future__ import annotations

import sys
import time

from benchmarks.marketplace import SCENARIO, WARMUP, scaled_text
from runtime.kernel.scenario import parse
from runtime.kernel.world import World

LAST = 30


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1000:
        print(
            "usage: python -m benchmarks.tick_window AGENTS   (an integer >= 1000)", file=sys.stderr
        )
        return 2
    n = int(argv[0])
    world = World(parse(scaled_text(n), base=SCENARIO.parent), base=SCENARIO.parent)
    world.run(WARMUP)
    start = time.perf_counter()
    world.run(LAST)
    seconds = time.perf_counter() - start
    ticks = LAST - WARMUP
    print(
        f"{n:,} agents, ticks {WARMUP}-{LAST - 1}: {ticks / seconds:.2f} ticks/s "
        f"({1000 * seconds / ticks:.0f} ms per tick)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
