"""Scale-out: sweep throughput on local processes vs Ray, and a sharded world's speed for K = 1, 2.

Sweep: the same grid (the default scenario, 100 ticks, ``economy.price_elasticity`` at 4 values x
2 seeds = 8 runs) three ways into fresh folders: one run after another in this process, the local
backend with 2 worker processes, and Ray started on this machine with 2 CPUs. Runs per minute.

Sharded world: the market suite's scenario (requesters and workers, 80/20, 2 regions), ``N``
agents, 20 ticks, as one World in this process and as K = 1 and K = 2 shards on Ray actors
(agent-steps per second over the ticks with the driver's message exchange between them; building
the shards and the final settling are reported apart).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.market import SCENARIO as MARKET
from benchmarks.marketplace import SCENARIO
from runtime.kernel.scenario import parse
from runtime.kernel.world import World
from runtime.record.recording import record_scenario
from runtime.scale.sharded import run_sharded
from runtime.scale.sweep import parse_sets, plan, sweep


def _market(n: int, ticks: int, shards: int | None) -> str:
    """The market suite's scenario (80/20 requesters and workers, 2 regions), sharded when
    ``shards``."""
    text = MARKET.format(ticks=ticks, checkpoint_every=ticks, req=n * 4 // 5, work=n // 5)
    return text if shards is None else text + f"\n[distributed]\nshards = {shards}\n"


def sweep_rates(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (backend, runs, seconds, runs per minute, vs one after another)."""
    import ray

    values = "0.3,0.5" if quick else "0.2,0.4,0.6,0.8"
    until = 30 if quick else 100
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = plan(
            SCENARIO,
            parse_sets([f"economy.price_elasticity={values}"]),
            2,
            Path(tmp) / "serial",
            until,
        )
        start = time.perf_counter()
        for spec in specs:
            scenario_config = parse(spec.text, spec.run_id, Path(spec.base))
            record_scenario(
                scenario_config,
                spec.text.encode(),
                Path(spec.base),
                Path(tmp) / "serial" / spec.run_id,
                seed=spec.seed,
                until=spec.until,
            )
        serial = time.perf_counter() - start
        rows.append(
            (
                "one after another, this process",
                str(len(specs)),
                f"{serial:.1f}",
                f"{60 * len(specs) / serial:.1f}",
                "1.00x",
            )
        )
        for backend in ("local", "ray"):
            specs = plan(
                SCENARIO,
                parse_sets([f"economy.price_elasticity={values}"]),
                2,
                Path(tmp) / backend,
                until,
            )
            start = time.perf_counter()
            outcomes = sweep(specs, backend, workers=2)
            seconds = time.perf_counter() - start
            assert all(o.status == "done" for o in outcomes)
            label = (
                "local, 2 processes"
                if backend == "local"
                else "Ray on this machine, 2 CPUs (incl. start)"
            )
            rows.append(
                (
                    label,
                    str(len(specs)),
                    f"{seconds:.1f}",
                    f"{60 * len(specs) / seconds:.1f}",
                    f"{serial / seconds:.2f}x",
                )
            )
        if ray.is_initialized():
            ray.shutdown()
    return rows


def sharded_rates(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (agents, implementation, build + settle seconds, tick seconds, agent-steps/s, converged
    and conserved, bytes carried between shards per tick)."""
    import ray

    n = 20_000 if quick else 200_000
    ticks = 20
    rows = []
    text = _market(n, ticks, None)
    start = time.perf_counter()
    world = World(parse(text))
    built = time.perf_counter()
    world.run()
    seconds = time.perf_counter() - built
    rows.append(
        (
            f"{n:,}",
            "one World, this process",
            f"{built - start:.2f}",
            f"{seconds:.2f}",
            f"{n * ticks / seconds:,.0f}",
            "-",
            "-",
        )
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for k in (1, 2):
            text = _market(n, ticks, k)
            result = run_sharded(text, count_bytes=True)
            ok = (
                "yes"
                if result.converged and result.conserved and result.lowest_balance >= 0
                else "NO"
            )
            rows.append(
                (
                    f"{n:,}",
                    f"{k} shard{'s' if k > 1 else ''} on Ray actors",
                    f"{result.wall_seconds - result.tick_seconds:.2f}",
                    f"{result.tick_seconds:.2f}",
                    f"{n * ticks / result.tick_seconds:,.0f}",
                    ok,
                    f"{result.bytes_exchanged / ticks:,.0f}",
                )
            )
    finally:
        ray.shutdown()
    return rows


def run(quick: bool) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The sweep table and the sharded-world table."""
    return sweep_rates(quick), sharded_rates(quick)
