"""The roles' learned cores: Agora's fixed-order numba kernels against torch on the CPU and
per-agent Python.

Agora runs the cores on the CPU as numba kernels whose sums run in a fixed order, so a run is the
same bits on every processor; torch (``agents.negotiator_core.TorchPolicy``,
``agents.world_model_core.TorchEnsemble``, here on the CPU with one thread and with every thread)
picks its kernels by instruction set, which is why the runs no longer use it there. Same arithmetic,
same weights, in one process:

* negotiator policy: one forward pass and one REINFORCE step with per-agent MicroLoRA adapters,
  batched over all agents;
* world model: three Adam steps on 32 training windows plus a forecast for 8 skills (one tick's
  work), the three-member ensemble;
* healing detector: one tick of the two-speed EWMA failure detector over every watched worker,
  numba kernel vs a per-worker Python loop.
"""

from __future__ import annotations

import math

import numpy as np

from agents.healing import ewma_alarm
from agents.negotiator_core import ALPHA, Policy, TorchPolicy
from agents.world_model_core import Ensemble, TorchEnsemble, initial_weights
from benchmarks.timing import rate
from runtime.kernel.rng import Streams


def _torch_threads(n: int | None) -> int:
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    return before


def microlora(n: int) -> tuple[float, float, float, float]:
    """Agent updates/s: Agora's kernels, torch with 1 and with all threads, a per-agent numpy
    loop."""
    rng = Streams(0)("bench")
    x = np.column_stack([rng.uniform(-0.5, 0.5, n), np.full(n, -1.0)])
    noise = rng.normal(0, 0.3, n)
    adv = rng.normal(0, 0.1, n)
    rates = []
    for make in (
        lambda: Policy(n, Streams(1)("init")),
        lambda: TorchPolicy(n, Streams(1)("init"), "cpu"),
    ):
        pol = make()

        def step(pol: Policy | TorchPolicy = pol) -> None:
            _, h = pol.forward(x)
            pol.learn(x, h, adv, noise, 0.3, 0.3, 1.0)

        if isinstance(pol, TorchPolicy):
            cores = _torch_threads(1)
            rates.append(rate(step, n))
            _torch_threads(cores)
        rates.append(rate(step, n))
    a = Policy(n, Streams(1)("init")).arrays()
    w1, b1, w2, A, B = a["w1"], a["b1"], a["w2"], a["A"].copy(), a["B"]
    m = min(n, 2000)  # the loop is timed on the first m agents and reported per agent

    def per_agent() -> None:
        for i in range(m):
            w = w1 + ALPHA * A[i] @ B[i]
            h = np.tanh(x[i] @ w + b1)
            g_h = adv[i] * noise[i] / 0.3 * w2 * (1 - h**2)
            A[i] += 1.0 * ALPHA * np.outer(x[i], g_h) @ B[i].T

    return rates[0], rates[1], rates[2], rate(per_agent, m)


def world_model() -> tuple[float, float, float]:
    """Ticks/s of the world model's learning and forecast: Agora's kernels, torch 1 thread, all
    threads."""
    stream = Streams(2)("bench")
    x, y = stream.normal(0, 0.01, (32, 9)), stream.normal(0, 0.02, (32, 5))
    recent = stream.normal(0, 0.01, (8, 9))
    rates = []
    for kind in ("numba", "torch-1", "torch-all"):
        weights = initial_weights(Streams(3)("init"), 3, 9, 32, 5)
        model = Ensemble(weights, 3e-3) if kind == "numba" else TorchEnsemble(weights, 3e-3, "cpu")
        cores = _torch_threads(1) if kind == "torch-1" else None

        def tick(model: Ensemble | TorchEnsemble = model) -> None:
            model.learn(x, y, 3)
            model.predict(recent)

        rates.append(rate(tick, 1))
        if cores is not None:
            _torch_threads(cores)
    return rates[0], rates[1], rates[2]


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
    t_list, f_list = (
        tasks.tolist(),
        failed.tolist(),
    )  # plain Python numbers: the loop's fair best case

    def kernel() -> None:
        ewma_alarm(tasks, failed, state[0], state[1], state[2], state[3], streak, 0.3, 3.0, 3.0)

    def loop() -> None:
        alpha, slow = 0.3, 0.03
        pop = (sum(sf) / sum(st)) if sum(st) > 0 else 0.1
        for i in range(m):
            ft[i] = (1 - alpha) * ft[i] + t_list[i]
            ff[i] = (1 - alpha) * ff[i] + f_list[i]
            p = min(max((sf[i] + 10 * pop) / (st[i] + 10), 0.02), 0.98)
            if (
                st[i] >= 10
                and ft[i] >= 3
                and (ff[i] - ft[i] * p) / math.sqrt(ft[i] * p * (1 - p)) > 3.0
            ):
                sk[i] += 1
                continue
            sk[i] = 0
            st[i] = (1 - slow) * st[i] + t_list[i]
            sf[i] = (1 - slow) * sf[i] + f_list[i]

    return rate(kernel, n), rate(loop, m)


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: core, size, Agora's rate, torch's with one thread and with all, per-agent Python's, and
    Agora's ratio to torch with one thread."""
    rows = []
    for n in (1_000, 10_000) if quick else (1_000, 10_000, 100_000, 1_000_000):
        ours, torch_one, torch_all, python = microlora(n)
        rows.append(
            (
                "negotiator policy: forward + adapt (agent updates/s)",
                f"{n:,}",
                f"{ours:,.0f}",
                f"{torch_one:,.0f}",
                f"{torch_all:,.0f}",
                f"{python:,.0f}",
                f"{ours / torch_one:.2f}x",
            )
        )
    ours, torch_one, torch_all = world_model()
    rows.append(
        (
            "world model: 3 Adam steps + forecast (ticks/s)",
            "3 x 9-32-5, batch 32",
            f"{ours:,.0f}",
            f"{torch_one:,.0f}",
            f"{torch_all:,.0f}",
            "",
            f"{ours / torch_one:.2f}x",
        )
    )
    for n in (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000):
        kernel, loop = detector(n)
        rows.append(
            (
                "healing detector (worker-ticks/s)",
                f"{n:,}",
                f"{kernel:,.0f}",
                "",
                "",
                f"{loop:,.0f}",
                f"{kernel / loop:.0f}x Python ({1e9 / kernel:.1f} ns per sample)",
            )
        )
    return rows
