"""The roles' batched cores against per-agent Python, same work in the same process.

* MicroLoRA adapt: one forward pass and one REINFORCE update of the negotiators' policy with
  per-agent rank-2 adapters, batched over all agents (torch, one thread) vs the same arithmetic per
  agent in a Python loop (numpy, the object-per-agent way).
* Healing detector: one tick of the two-speed EWMA failure detector over every watched worker,
  numba kernel vs a per-worker Python loop.
"""

from __future__ import annotations

import math
import time

import numpy as np

from agents.healing import ewma_alarm
from agents.negotiator import ALPHA, Policy


def _rate(fn, units: int, seconds: float = 0.5) -> float:  # type: ignore[no-untyped-def]
    fn()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        reps += 1
    return units * reps / (time.perf_counter() - start)


def microlora(n: int) -> tuple[float, float]:
    """Agent updates/s: batched Policy.forward + learn, and a per-agent numpy loop doing the same."""
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pol = Policy(n, rng)
    x = np.column_stack([rng.uniform(-0.5, 0.5, n), np.full(n, -1.0)])
    noise = rng.normal(0, 0.3, n)
    adv = rng.normal(0, 0.1, n)

    def batched() -> None:
        _, h = pol.forward(x)
        pol.learn(x, h, adv, noise, 0.3, 0.3, 1.0)

    a = pol.arrays()
    w1, b1, w2, A, B = a["w1"], a["b1"], a["w2"], a["A"].copy(), a["B"]
    m = min(n, 2000)  # the loop is timed on the first m agents and reported per agent

    def per_agent() -> None:
        for i in range(m):
            w = w1 + ALPHA * A[i] @ B[i]
            h = np.tanh(x[i] @ w + b1)
            g_out = adv[i] * noise[i] / 0.3
            g_h = g_out * w2 * (1 - h**2)
            A[i] += 1.0 * ALPHA * np.outer(x[i], g_h) @ B[i].T

    return _rate(batched, n), _rate(per_agent, m)


def detector(n: int) -> tuple[float, float]:
    """Worker-ticks/s of the healing detector: numba kernel vs a per-worker Python loop."""
    rng = np.random.default_rng(1)
    tasks = rng.integers(0, 4, n)
    failed = rng.binomial(tasks, 0.1)
    state = np.zeros((4, n))
    streak = np.zeros(n, dtype=np.int64)
    m = min(n, 20_000)
    ft, ff, st, sf = (state[k].tolist()[:m] for k in range(4))
    sk = [0] * m
    t_list, f_list = tasks.tolist(), failed.tolist()  # plain Python numbers: the loop's fair best case

    def kernel() -> None:
        ewma_alarm(tasks, failed, state[0], state[1], state[2], state[3], streak, 0.3, 3.0, 3.0)

    def loop() -> None:
        alpha, slow = 0.3, 0.03
        pop = (sum(sf) / sum(st)) if sum(st) > 0 else 0.1
        for i in range(m):
            ft[i] = (1 - alpha) * ft[i] + t_list[i]
            ff[i] = (1 - alpha) * ff[i] + f_list[i]
            p = min(max((sf[i] + 10 * pop) / (st[i] + 10), 0.02), 0.98)
            if st[i] >= 10 and ft[i] >= 3 and (ff[i] - ft[i] * p) / math.sqrt(ft[i] * p * (1 - p)) > 3.0:
                sk[i] += 1
                continue
            sk[i] = 0
            st[i] = (1 - slow) * st[i] + t_list[i]
            sf[i] = (1 - slow) * sf[i] + f_list[i]

    return _rate(kernel, n), _rate(loop, m)


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (core, agents, batched per s, per-agent Python per s, ratio)."""
    rows = []
    for n in ((1_000, 10_000) if quick else (1_000, 10_000, 100_000)):
        b, p = microlora(n)
        rows.append(("MicroLoRA forward + adapt (agent updates/s)", f"{n:,}", f"{b:,.0f}", f"{p:,.0f}", f"{b / p:.0f}x"))
    for n in ((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)):
        b, p = detector(n)
        rows.append(("healing detector (worker-ticks/s)", f"{n:,}", f"{b:,.0f}", f"{p:,.0f}",
                     f"{b / p:.0f}x ({1e9 / b:.1f} ns per sample)"))
    return rows
