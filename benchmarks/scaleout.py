"""Scale-out: sweep throughput on local processes vs Ray, and a sharded world's scaling for
K = 1, 2, 4 with a model of the time per tick.

Sweep: the same grid (the default scenario, 100 ticks, ``economy.price_elasticity`` at 4 values x
2 seeds = 8 runs) three ways into fresh folders: one run after another in this process, the local
backend with 2 worker processes, and Ray started on this machine with 2 CPUs. Runs per minute.

Sharded world: the market suite's scenario (requesters and workers, 80/20) over four regions, 20
ticks, as one World in this process and on Ray actors: strong scaling (``N`` agents on K = 1, 2,
4 shards) and weak scaling (``N / 4`` agents per shard, K = 1, 2; K = 4 is the strong row). Time
per tick over the ticks with the driver's message exchange between them (building the shards and
the final settling apart), and the bytes carried between shards per tick (pickled, as Ray moves
them). This machine has 2 cores: four shards share them.

The model (:class:`Model`) is fitted on the points with one shard per core and checked against
the K = 4 point; with one core per shard and a stated bandwidth it projects a cluster, beside
Repast4Py's published strong scaling (3 million agents, 100 ticks: 827 s on 36 MPI ranks, 113 s
on 288).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

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


def _market4(n: int, ticks: int, shards: int | None) -> str:
    """:func:`_market` over four regions (so that up to four shards each hold one)."""
    text = _market(n, ticks, shards)
    return text.replace(
        'regions = ["eu", "us"]\nlinks = [{ a = "eu", b = "us", latency = 0.1 }]',
        'regions = ["eu", "us", "ap", "sa"]\nlinks = [{ a = "eu", b = "us", latency = 0.1 }, '
        '{ a = "us", b = "ap", latency = 0.1 }, { a = "ap", b = "sa", latency = 0.1 }]',
    )


@dataclass
class Point:
    """One measured sharded run: ``n`` agents on ``k`` shards, seconds per tick, bytes per tick."""

    scaling: str
    n: int
    k: int
    build_settle: float
    tick: float
    bytes_per_tick: float
    ok: bool


@dataclass
class Model:
    """Seconds per tick of ``n`` agents on ``k`` shards with ``cores`` cores and ``bandwidth``
    bytes/s per shard's link: ``a n / k max(1, k / cores) + b n + h + bytes / k / bandwidth``.

    ``a`` is the work per agent that only the agent's own shard does (its populations' steps),
    which divides over the shards and is slowed when shards share a core; ``b`` the work per agent
    of the whole world that does not divide (each replica verifies and applies every ledger op;
    the driver carries every message across the barrier); ``h`` the barrier's round trip; the
    bytes between shards per tick are ``beta n (k - 1) / k``. A cluster stops gaining from shards
    once ``a n / k`` is small beside ``b n``: at most ``(a + b) / b`` times one shard."""

    a: float
    b: float
    h: float
    beta: float

    def tick(self, n: int, k: int, cores: int, bandwidth: float | None = None) -> float:
        own = self.a * n / k * max(1.0, k / cores)
        wire = 0.0 if bandwidth is None else self.beta * n * (k - 1) / k / k / bandwidth
        return own + self.b * n + self.h + wire


def fit(points: list[Point]) -> Model:
    """Non-negative least squares for ``a``, ``b``, ``h`` over the points with one shard per core
    of this machine (K = 1, 2 on 2 cores), and ``beta`` from the bytes measured with K > 1."""
    rows = [p for p in points if p.k <= CORES]
    x = np.array([[p.n / p.k, p.n, 1.0] for p in rows])
    y = np.array([p.tick for p in rows])
    (a, b, h), _ = nnls(x, y)  # each term is a cost: none is negative
    crossing = [p for p in points if p.k > 1]
    beta = float(np.mean([p.bytes_per_tick / (p.n * (p.k - 1) / p.k) for p in crossing]))
    return Model(float(a), float(b), float(h), beta)


CORES = 2  # this machine's
REPAST4PY = ((3_000_000, 36, 827.0), (3_000_000, 288, 113.0))
"""Repast4Py's published strong scaling: (agents, MPI ranks, seconds for 100 ticks)."""
CLUSTER_BANDWIDTH = 1.25e9  # bytes/s: a 10 Gbit/s link per shard


def measure(quick: bool) -> list[Point]:
    """Strong scaling (N agents on K = 1, 2, 4 shards) and weak scaling (N / 4 agents per shard)
    of the market scenario over four regions, 20 ticks, on Ray actors on this machine."""
    import ray

    n = 20_000 if quick else 200_000
    ticks = 20
    runs = [("strong", n, k) for k in (1, 2, 4)] + [("weak", n // 4 * k, k) for k in (1, 2)]
    points = []
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        for scaling, agents, k in runs:
            result = run_sharded(_market4(agents, ticks, k), count_bytes=True)
            ok = result.converged and result.conserved and result.lowest_balance >= 0
            points.append(
                Point(
                    scaling,
                    agents,
                    k,
                    result.wall_seconds - result.tick_seconds,
                    result.tick_seconds / ticks,
                    result.bytes_exchanged / ticks,
                    ok,
                )
            )
    finally:
        ray.shutdown()
    return points


def sharded_rates(quick: bool) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The measured table (strong and weak scaling, with one World in this process beside them)
    and the model's table (its fit against the measured points, its projection for a cluster,
    Repast4Py's published figures)."""
    n = 20_000 if quick else 200_000
    ticks = 20
    world = World(parse(_market4(n, ticks, None)))
    start = time.perf_counter()
    world.run()
    one = (time.perf_counter() - start) / ticks
    points = measure(quick)
    model = fit(points)
    # Weak scaling at K = 4 (N / 4 agents per shard) is the strong row's run: listed under both.
    strong4 = next(p for p in points if p.scaling == "strong" and p.k == 4)
    shown = [*points, dataclasses.replace(strong4, scaling="weak")]
    base = {p.scaling: p for p in points if p.k == 1}
    measured = [
        (
            "-",
            f"{n:,}",
            "one World, this process",
            "-",
            f"{1000 * one:.0f}",
            f"{n / one:,.0f}",
            "-",
            "-",
            "-",
        )
    ]
    for p in shown:
        first = base[p.scaling]
        # Strong: the same work in less time; weak: more work in the same time.
        speedup = (
            first.tick / p.tick
            if p.scaling == "strong"
            else (p.n / first.n) * (first.tick / p.tick)
        )
        measured.append(
            (
                p.scaling,
                f"{p.n:,}",
                f"{p.k} shard{'s' if p.k > 1 else ''} on Ray actors",
                f"{p.build_settle:.2f}",
                f"{1000 * p.tick:.0f}",
                f"{p.n / p.tick:,.0f}",
                f"{speedup:.2f}x",
                f"{p.bytes_per_tick:,.0f}",
                "yes" if p.ok else "NO",
            )
        )
    modelled = []
    for p in points:
        predicted = model.tick(p.n, p.k, CORES)
        modelled.append(
            (
                f"{p.scaling}, this machine ({CORES} cores), "
                + ("fitted" if p.k <= CORES else "predicted"),
                f"{p.n:,}",
                str(p.k),
                f"{1000 * p.tick:.0f}",
                f"{1000 * predicted:.0f}",
                f"{100 * (predicted - p.tick) / p.tick:+.0f}%",
                "-",
            )
        )
    ceiling = (model.a + model.b) / model.b if model.b > 0 else float("inf")
    for agents, ranks, seconds in REPAST4PY:
        t = model.tick(agents, ranks, ranks, CLUSTER_BANDWIDTH)
        modelled.append(
            (
                f"projected: a cluster, one core per shard, 10 Gbit/s (ceiling {ceiling:.1f}x)",
                f"{agents:,}",
                str(ranks),
                "-",
                f"{1000 * t:,.0f}",
                "-",
                f"{100 * t:,.0f} s for 100 ticks",
            )
        )
        modelled.append(
            (
                "Repast4Py (published), MPI ranks",
                f"{agents:,}",
                str(ranks),
                f"{1000 * seconds / 100:,.0f}",
                "-",
                "-",
                f"{seconds:,.0f} s for 100 ticks",
            )
        )
    modelled.append(
        (
            f"fit: a = {1e9 * model.a:.0f} ns per own agent, b = {1e9 * model.b:.0f} ns per "
            f"agent on every shard, h = {1000 * model.h:.1f} ms, beta = {model.beta:.1f} B per "
            "agent",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
        )
    )
    return measured, modelled


def run(
    quick: bool,
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The sweep table, the sharded world's measured table and its model's table."""
    measured, modelled = sharded_rates(quick)
    return sweep_rates(quick), measured, modelled
