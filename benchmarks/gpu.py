"""The GPU kernels against their CPU peers, with the bits compared: ``agora bench --only gpu``.

Each row times one kernel on the host's CPU and on the first CUDA GPU, in the same process, and
says whether the two give the same integers (or, for the oscillators, the same float64 bits):

* the synchronous Boltzmann exchange (``runtime.kernel.exchange``): numba on one CPU thread against
torch;
* the market's tensor step (``runtime.kernel.market_kernel``): torch on the CPU against torch on the
GPU;
* the ledger's remote-op and merge kernels (``economy.ledger_torch``) against the numba replica,
  8 replicas;
* one Kuramoto step (``runtime.coordination.kuramoto``): the numba CSR kernel against torch.

Without a CUDA GPU the suite prints one row saying so.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from benchmarks import Rows
from benchmarks.ledger import REPLICAS


def _exchange(n: int, ticks: int) -> tuple[float, float, bool]:
    import torch

    from runtime.kernel.exchange import exchange_sync_tick, exchange_sync_torch

    cpu = np.ones(n, dtype=np.int64)
    exchange_sync_tick(cpu, np.uint32(0), np.uint32(1), np.uint32(2))
    start = time.perf_counter()
    for tick in range(1, ticks + 1):
        exchange_sync_tick(cpu, np.uint32(tick), np.uint32(1), np.uint32(2))
    cpu_rate = n * ticks / (time.perf_counter() - start)
    gpu = torch.ones(n, dtype=torch.int64, device="cuda")
    exchange_sync_torch(gpu, 0, 1, 2)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for tick in range(1, ticks + 1):
        exchange_sync_torch(gpu, tick, 1, 2)
    torch.cuda.synchronize()
    gpu_rate = n * ticks / (time.perf_counter() - start)
    same = (
        hashlib.sha256(cpu.tobytes()).digest()
        == hashlib.sha256(gpu.cpu().numpy().tobytes()).digest()
    )
    return cpu_rate, gpu_rate, same


def _market(n: int, ticks: int) -> tuple[float, float, bool]:
    from runtime.kernel.market_kernel import MarketKernel

    rates, hashes = [], []
    for device in ("cpu", "cuda"):
        kernel = MarketKernel(n * 4 // 5, n // 5, seed=1, device=device)
        for _ in range(3):
            kernel.step()
        kernel.synchronize()
        start = time.perf_counter()
        for _ in range(ticks):
            kernel.step()
        kernel.synchronize()
        rates.append(ticks / (time.perf_counter() - start))
        assert int(kernel.credits.sum()) == kernel.credits_issued
        hashes.append(kernel.state_hash())
    return rates[0], rates[1], hashes[0] == hashes[1]


def _ledger(n: int, entries: int) -> tuple[tuple[float, float, bool], tuple[float, float, bool]]:
    """(CPU entries/s, GPU entries/s, equal) of a remote transfer op, and (CPU ms, GPU ms, equal)
    of merging a whole replica."""
    import torch

    from economy import Keyring, Replica
    from economy.ledger_torch import apply_remote, merge_dense
    from economy.ops import OpKind

    rng = np.random.default_rng(0)
    keys = Keyring.derive(REPLICAS, b"bench")
    origin, other = Replica(0, REPLICAS, n, keys), Replica(1, REPLICAS, n, keys)
    home = np.arange(0, n, REPLICAS)
    mint, _ = origin.execute(
        OpKind.MINT, home, np.zeros(home.size, np.int64), np.full(home.size, 10**9, np.int64)
    )
    src = rng.choice(home, entries)
    op, _ = origin.execute(
        OpKind.TRANSFER, src, rng.integers(0, n, entries), rng.integers(1, 100, entries)
    )
    other.receive(mint)
    start = time.perf_counter()
    other.receive(op)
    cpu_apply = time.perf_counter() - start

    def put(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64), device="cuda")

    cells = torch.zeros((n, 2 * REPLICAS + 2), dtype=torch.int64, device="cuda")
    totals = torch.zeros((REPLICAS, 3), dtype=torch.int64, device="cuda")
    apply_remote(
        int(mint.kind),
        0,
        REPLICAS,
        put(mint.accounts),
        put(mint.others),
        put(mint.amounts),
        cells,
        totals,
    )
    accounts, others, amounts = put(op.accounts), put(op.others), put(op.amounts)
    apply_remote(
        int(op.kind), 0, REPLICAS, accounts, others, amounts, cells.clone(), totals.clone()
    )  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    apply_remote(int(op.kind), 0, REPLICAS, accounts, others, amounts, cells, totals)
    torch.cuda.synchronize()
    gpu_apply = time.perf_counter() - start
    applied = np.array_equal(cells.cpu().numpy(), other.cells)
    start = time.perf_counter()
    other.merge(origin)
    cpu_merge = time.perf_counter() - start
    mine, theirs = cells.clone(), put(origin.cells)
    merge_dense(mine.clone(), theirs)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    merge_dense(mine, theirs)
    torch.cuda.synchronize()
    gpu_merge = time.perf_counter() - start
    merged = np.array_equal(mine.cpu().numpy(), other.cells)
    return (
        (entries / cpu_apply, entries / gpu_apply, applied),
        (1000 * cpu_merge, 1000 * gpu_merge, merged),
    )


def _kuramoto(n: int, edges: int, steps: int) -> tuple[float, float, bool]:
    from benchmarks.coordination import COUPLING, TIME_STEP, _graph
    from runtime.coordination.kuramoto import Oscillators
    from runtime.coordination.kuramoto_torch import TorchOscillators

    csr = _graph(n, edges)
    rng = np.random.default_rng(1)
    omega, theta0 = rng.normal(0, 0.5, n), rng.uniform(0, 2 * np.pi, n)
    cpu, gpu = (
        Oscillators(omega, COUPLING, TIME_STEP, theta0, csr),
        TorchOscillators(omega, COUPLING, TIME_STEP, theta0, csr, device="cuda"),
    )
    cpu.step()
    gpu.step()
    gpu.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        cpu.step()
    cpu_rate = steps / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(steps):
        gpu.step()
    gpu.synchronize()
    gpu_rate = steps / (time.perf_counter() - start)
    return cpu_rate, gpu_rate, bool(np.array_equal(cpu.theta, gpu.phases()))


def run(quick: bool) -> Rows:
    """Rows: kernel, size, CPU, GPU, GPU over CPU, same bits."""
    try:
        import torch
    except ImportError:
        return [("torch is not installed", "-", "-", "-", "-", "-")]
    if not torch.cuda.is_available():
        return [("needs a CUDA GPU: torch sees none here", "-", "-", "-", "-", "-")]
    name = torch.cuda.get_device_name(0)
    rows: Rows = []

    def add(
        kernel: str, size: str, cpu: float, gpu: float, same: bool, unit: str, lower: bool = False
    ) -> None:
        ratio = cpu / gpu if lower else gpu / cpu
        rows.append(
            (
                kernel,
                size,
                f"{cpu:,.3g} {unit}",
                f"{gpu:,.3g} {unit}",
                f"{ratio:,.1f}x",
                "yes" if same else "NO",
            )
        )

    for n in (1_000_000,) if quick else (1_000_000, 10_000_000):
        add(
            "Boltzmann exchange (numba 1 thread vs torch)",
            f"{n:,} agents",
            *_exchange(n, 3 if quick else 5),
            unit="agent-steps/s",
        )
    for n in (100_000,) if quick else (100_000, 1_000_000):
        add(
            "market tensor step (torch CPU vs torch GPU)",
            f"{n:,} agents",
            *_market(n, 3 if quick else 10),
            unit="ticks/s",
        )
    for n in (1_000_000,) if quick else (1_000_000, 10_000_000):
        (a_cpu, a_gpu, a_same), (m_cpu, m_gpu, m_same) = _ledger(n, 1_000_000)
        add(
            "ledger: apply a remote op of 10^6 transfers",
            f"{n:,} accounts",
            a_cpu,
            a_gpu,
            a_same,
            unit="entries/s",
        )
        add(
            "ledger: merge a whole replica",
            f"{n:,} accounts",
            m_cpu,
            m_gpu,
            m_same,
            unit="ms",
            lower=True,
        )
    for n, e in (
        ((100_000, 1_000_000),) if quick else ((100_000, 1_000_000), (1_000_000, 10_000_000))
    ):
        add(
            "Kuramoto step (numba CSR vs torch)",
            f"{n:,} nodes, {e:,} edges",
            *_kuramoto(n, e, 5 if quick else 20),
            unit="steps/s",
        )
    return [(f"{kernel} on {name}", *rest) for kernel, *rest in rows]
