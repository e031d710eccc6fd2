"""The task auction's two mechanisms side by side: the continuous double auction (``cda``) and a
call market in each round (``call``), chosen by the scenario's ``market.mechanism``.

Model effect: the default scenario with every role, scaled to 10^4 agents (as in the marketplace
suite), run for ``TICKS`` ticks under each mechanism on the same seeds. Reported per mechanism: the
negotiators' allocative efficiency (realised over the largest possible surplus of each tick's
auction), their profit per agent, the contracts signed, and the mean contract price in units of
the task's posted price, each the mean over the seeds with its range.

Kernel cost: one tick's auction (``ROUNDS`` rounds) on synthetic markets of 10^4 to 10^6 agents,
half buyers and half sellers posting ZI-C bids and asks, each kernel timed alone on this CPU. The
continuous auction walks its order book post by post (sequential by its rules); the call market
sorts each round's posts, work that a GPU does in parallel.
"""

from __future__ import annotations

import time

import numpy as np

from agents.auction import CEILING, ROUNDS, arrival_orders, call_auction, double_auction_fast
from benchmarks import Rows
from benchmarks.marketplace import scaled_text

TICKS = 60
SEEDS = (1, 2, 3)


def model_effect(n: int, ticks: int, seeds: tuple[int, ...]) -> dict[str, dict[str, list[float]]]:
    """Each mechanism's negotiator figures in the default scenario scaled to ``n`` agents."""
    from runtime.kernel.scenario import parse
    from runtime.kernel.world import World

    text = scaled_text(n)
    out: dict[str, dict[str, list[float]]] = {}
    for mechanism in ("cda", "call"):
        figures: dict[str, list[float]] = {
            "efficiency": [],
            "profit": [],
            "contracts": [],
            "price": [],
        }
        for seed in seeds:
            scenario = parse(text + f'\n[market]\nmechanism = "{mechanism}"\n')
            run = scenario.world.model_copy(update={"seed": seed, "ticks": ticks})
            world = World(scenario.model_copy(update={"world": run}))
            negotiators = next(p for p in world.populations if p.role == "negotiator")
            contracts, price_sum = 0, 0.0
            for _ in range(ticks):
                world.run(world.tick + 1)
                done = int(world.telemetry.counters.get(f"{negotiators.name}/contracts", 0))
                contracts += done
                price_sum += negotiators.last_price * done
            metrics = negotiators.role_metrics()
            figures["efficiency"].append(metrics["efficiency"])
            figures["profit"].append(metrics["profit_per_agent_credits"])
            figures["contracts"].append(contracts)
            figures["price"].append(price_sum / max(contracts, 1))
        out[mechanism] = figures
    return out


def _market(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    is_buyer = np.arange(n) % 2 == 0
    limit = np.where(is_buyer, rng.uniform(1.0, 2.0, n), rng.uniform(0.5, 1.5, n))
    u = rng.random((ROUNDS, n))
    posts = np.where(is_buyer, u * limit, limit + u * (CEILING - limit))
    order = arrival_orders(rng.random((ROUNDS, n)))
    return is_buyer, limit, posts, order


def kernel_ms(kernel, n: int, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Best wall milliseconds of ``kernel`` on a market of ``n`` agents."""
    market = _market(n)
    kernel(*_market(100))  # compiled before timing
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        kernel(*market)
        best = min(best, time.perf_counter() - t)
    return best * 1000


def _spread(values: list[float], fmt: str) -> str:
    mean = float(np.mean(values))
    if len(values) == 1:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def run(quick: bool) -> tuple[Rows, Rows]:
    """The model effect at 10^4 agents, and the kernels' cost from 10^4 to 10^6 agents."""
    ticks, seeds = (20, SEEDS[:1]) if quick else (TICKS, SEEDS)
    effect = model_effect(10_000, ticks, seeds)
    model: Rows = []
    for mechanism, figures in effect.items():
        model.append(
            (
                mechanism,
                _spread(figures["efficiency"], ".4f"),
                _spread(figures["profit"], ".2f"),
                _spread(figures["contracts"], ",.0f"),
                _spread(figures["price"], ".4f"),
            )
        )
    cda, call = effect["cda"], effect["call"]
    model.append(
        (
            "call minus cda",
            f"{np.mean(call['efficiency']) - np.mean(cda['efficiency']):+.4f}",
            f"{np.mean(call['profit']) - np.mean(cda['profit']):+.2f}",
            f"{np.mean(call['contracts']) - np.mean(cda['contracts']):+,.0f}",
            f"{np.mean(call['price']) - np.mean(cda['price']):+.4f}",
        )
    )
    kernels: Rows = []
    for n in (10_000,) if quick else (10_000, 100_000, 1_000_000):
        repeats = 3 if n < 1_000_000 else 2
        a = kernel_ms(double_auction_fast, n, repeats)
        b = kernel_ms(call_auction, n, repeats)
        kernels.append((f"{n:,}", f"{a:,.1f}", f"{b:,.1f}", f"{a / b:.2f}x"))
    return model, kernels
