"""Where a tick of the scaled default scenario spends its time: milliseconds per tick by component.

    python -m benchmarks.profile_tick 1000000 5        # agents, timed ticks (after 11 warm-up)
    python -m benchmarks.profile_tick 1000000 5 cuda   # the same on --device cuda

Times ticks 11.. (after ``benchmarks.marketplace.WARMUP`` ticks: the coupling graph exists).
Wraps each population's step, the coordination step and the ledger's remote work (ops received
over the bus, deltas built and merged for anti-entropy) with wall-clock timers; indented rows are
parts of the row above them. Recording is off, as in ``agora bench --only marketplace``.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable

import agents.critic as critic_module
import agents.negotiator as negotiator_module
from benchmarks.marketplace import SCENARIO, WARMUP, scaled_text
from runtime.kernel.scenario import parse
from runtime.kernel.world import World


def profile(n: int, ticks: int, device: str = "cpu") -> tuple[float, list[tuple[str, float]]]:
    """(ticks/s, [(component, ms per tick)] largest first) over ``ticks`` timed ticks."""
    spent: collections.Counter[str] = collections.Counter()

    def wrap(owner: object, name: str, label: str) -> None:
        inner: Callable[..., object] = getattr(owner, name)

        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        setattr(owner, name, timed)

    world = World(parse(scaled_text(n), base=SCENARIO.parent), base=SCENARIO.parent, device=device)
    world.run(WARMUP)
    for pop in world.populations:
        wrap(pop, "step", f"population {pop.name}")
        if pop.role == "worker":
            wrap(pop.gate, "route_skills", "  worker routing")
            wrap(pop, "_settle", "  worker settlement")
    if world.coordination is not None:
        wrap(world.coordination, "step", "coordination")
        wrap(world.coordination.osc, "step", "  Kuramoto steps")
    for ledger in world.ledgers:
        wrap(ledger, "receive", "ledger: ops received over the bus")
        wrap(ledger, "delta_since", "ledger: anti-entropy deltas built")
        wrap(ledger, "merge_delta", "ledger: anti-entropy deltas merged")
    wrap(critic_module, "check_batch", "  critic z3 proofs")
    wrap(negotiator_module, "clear", "  negotiator auction (clearing)")
    wrap(world, "_write_metrics", "metrics row")
    start = time.perf_counter()
    world.run(WARMUP + ticks)
    rate = ticks / (time.perf_counter() - start)
    return rate, [(label, 1000 * seconds / ticks) for label, seconds in spent.most_common()]


def main(argv: list[str]) -> int:
    device = argv[2] if len(argv) == 3 else "cpu"
    if (
        len(argv) not in (2, 3)
        or not all(a.isdigit() and int(a) > 0 for a in argv[:2])
        or device not in ("cpu", "cuda")
    ):
        print(
            "usage: python -m benchmarks.profile_tick AGENTS TICKS [cpu|cuda]   (two positive "
            "integers)",
            file=sys.stderr,
        )
        return 2
    n, ticks = int(argv[0]), int(argv[1])
    rate, rows = profile(n, ticks, device)
    print(
        f"{n:,} agents, device {device}: {rate:.2f} ticks/s ({1000 / rate:.0f} ms per tick); "
        f"ms per tick by component:"
    )
    for label, ms in rows:
        print(f"{ms:9.1f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
