"""The default scenario with every role, scaled to N agents: Agora beside the Mesa-idiomatic peer.

``scaled(n)`` keeps the default scenario (scenarios/marketplace.toml) as it is -- faults,
coordination, healers, critics, forecaster, refactor agents -- and scales its four large
populations (requesters, workers, planners, negotiators: 2,240 of its 2,250 agents) so the world
holds ``n`` agents; the ten service agents stay. The critic's z3 review of every ledger batch is
off (``review_ledger = false``): it does not scale past 10^5 (see the README's limits); the critic
still proves each refund batch.

Each case runs in a fresh process (so peak memory is its own): build, ``WARMUP`` = 11 warm-up
ticks, then timed ticks 11.., all before the scenario's first fault (tick 30). Eleven, because the
interaction graph the oscillators couple along is first built at tick 10 from ticks 0-9's trades
(``graph_every``, the same in the peer): until then every oscillator is isolated and a tick costs
far less than in a running market. Agora times ticks 11-29, which hold a coupling-graph rebuild
(tick 20) and a tension reading (tick 25; one every 25 ticks, so this window over-weights it);
the peer, whose ticks cost the same from tick 10 on, times fewer. (Before 2026-11-23 the timed
ticks were 3.., which measured both implementations at 10^5 and 10^6, and the peer at 10^4,
without their coupling work, and Agora without tension readings.)
Reported: ticks/s, agent-steps/s, microseconds per agent-step, peak resident memory from building
the world to the last tick over the resident memory before it (after a 1,000-agent warm-up world
has loaded the libraries and compiled the kernels; per agent), the bytes of the world's own arrays
per agent (Agora), and Agora's speed over the peer's. The peer is
``benchmarks/mesa_marketplace.py``; its docstring lists what it leaves out.

At 10^4, where the figure that matters is the ratio, the two run in turn ``PAIRS_1E4`` times, each
in a fresh process; the table shows each side's median run and the ratio of the medians, with the
range of the pairwise ratios: on a shared machine one side alone can move by 2x within an hour.
"""

from __future__ import annotations

import multiprocessing
import re
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "marketplace.toml"
SCALED = {
    "requesters": 1600,
    "workers": 400,
    "planners": 200,
    "negotiators": 40,
}  # the default's counts
SERVICE = 10  # healers, critics, forecaster, refactor agents
WARMUP = 11  # ticks before timing: the coupling graph exists from tick 10 on
PAIRS_1E4 = (
    3  # Agora and the peer at 10^4, run in turn this many times: the ratio is of the median rates
)


def scaled_text(n: int, review_ledger: bool = False, source: Path = SCENARIO) -> str:
    """The default scenario's text (or ``source``, a file with the same populations) with its large
    populations scaled to ``n`` agents in all."""
    text = source.read_text()
    f = (n - SERVICE) / sum(SCALED.values())
    for name, count in SCALED.items():
        pattern = rf'(name = "{name}"\nrole = "\w+"\ncount = ){count}\n'
        text, found = re.subn(pattern, lambda m, c=count: f"{m.group(1)}{round(c * f)}\n", text)
        if found != 1:
            raise RuntimeError(f"{source.name}: population {name!r} with count {count} not found")
    if not review_ledger:
        text = text.replace("check_budget = 0.1\n", "check_budget = 0.1\nreview_ledger = false\n")
    return text


def _rss_now() -> int:
    """Resident bytes now, after resetting the peak (Linux: ``clear_refs`` 5), so the peak read
    later
    is this case's, not that of imports or the warm-up."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _peak() -> int:
    """Peak resident bytes since the last :func:`_rss_now`."""
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _case(impl: str, n: int, ticks: int) -> tuple[int, float, int, int]:
    """In a fresh process: (agents, ticks/s, peak memory rise in bytes, bytes of the world's arrays
    (Agora; 0 for the peer))."""
    if impl == "agora":
        from runtime.kernel.scenario import parse
        from runtime.kernel.world import World

        small = World(parse(scaled_text(1_000), base=SCENARIO.parent), base=SCENARIO.parent)
        small.run(2)  # libraries loaded, kernels compiled: what remains is what N agents cost
        del small
        scenario_config = parse(scaled_text(n), base=SCENARIO.parent)
        before = _rss_now()
        world = World(scenario_config, base=SCENARIO.parent)
        agents, step = world.n_agents, None
        world.run(WARMUP)
    else:
        from benchmarks.mesa_marketplace import MesaMarketplace

        small = MesaMarketplace(1_000)
        small.step()
        del small
        before = _rss_now()
        model = MesaMarketplace(n)
        agents, step = len(model.agents), model.step
        for _ in range(WARMUP):
            model.step()
    start = time.perf_counter()
    if step is None:
        world.run(WARMUP + ticks)
    else:
        for _ in range(ticks):
            step()
    rate = ticks / (time.perf_counter() - start)
    peak = _peak()
    held = 0
    if step is None:
        from benchmarks.market import world_bytes

        held = world_bytes(world)
    return agents, rate, max(0, peak - before), held


def measure(impl: str, n: int, ticks: int) -> tuple[int, float, int, int]:
    """Run one case in a fresh process (see :func:`_case`)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_case, impl, n, ticks).result()


def run(quick: bool, progress: Callable[[str], None] | None = None) -> list[tuple[str, ...]]:
    """Rows: (agents, implementation, ticks/s, agent-steps/s, us per agent-step, peak memory per
    agent,
    world arrays per agent, Agora is); the ratio is of agent-steps/s (the peer has the ten service
    agents less its four refactor agents). ``progress`` is told which case runs."""
    say = progress or (lambda _what: None)
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    agora_ticks = {
        10_000: 19,
        100_000: 19,
        1_000_000: 19,
    }  # ticks 11-29: a graph rebuild (20) and a tension reading (25)
    mesa_ticks = {10_000: 5, 100_000: 2}  # the peer at 10^6 would take about half an hour per run
    pairs = {10_000: 1 if quick else PAIRS_1E4}
    rows = []
    for n in sizes:
        agora, mesa = [], []
        runs = pairs.get(n, 1)
        for k in range(runs):  # alternating, so that a slow spell of the machine hits both sides
            of = f", run {k + 1} of {runs}" if runs > 1 else ""
            say(f"Agora at {n:,} agents{of}")
            agora.append(measure("agora", n, 5 if quick else agora_ticks[n]))
            if n in mesa_ticks:
                say(f"the Mesa peer at {n:,} agents{of}")
                mesa.append(measure("mesa", n, 2 if quick else mesa_ticks[n]))
        a_n, a_rate, a_mem, a_held = _median_run(agora)
        rows.append(
            _row(a_n, "Agora" + _of(agora), a_rate, a_mem, f"{a_held / a_n:,.0f} B", "1.0x")
        )
        if mesa:
            m_n, m_rate, m_mem, _ = _median_run(mesa)
            ratio = a_rate * a_n / (m_rate * m_n)
            each = sorted(a[1] * a[0] / (m[1] * m[0]) for a, m in zip(agora, mesa, strict=True))
            spread = f" ({each[0]:.1f}-{each[-1]:.1f} by pair)" if len(each) > 1 else ""
            rows.append(
                _row(
                    m_n,
                    "Mesa 3, object per agent" + _of(mesa),
                    m_rate,
                    m_mem,
                    "-",
                    f"{ratio:.1f}x{spread}",
                )
            )
    return rows


def _median_run(runs: list[tuple[int, float, int, int]]) -> tuple[int, float, int, int]:
    """The run with the median rate (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r[1])[(len(runs) - 1) // 2]


def _of(runs: list[tuple[int, float, int, int]]) -> str:
    return f", median of {len(runs)}" if len(runs) > 1 else ""


def _row(n: int, label: str, rate: float, mem: int, held: str, ratio: str) -> tuple[str, ...]:
    return (
        f"{n:,}",
        label,
        f"{rate:.2f}",
        f"{rate * n:,.0f}",
        f"{1e6 / (rate * n):.3f}",
        f"{mem / n:,.0f} B",
        held,
        ratio,
    )
