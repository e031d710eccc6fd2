"""The synchronous exchange on a GPU (torch) against the CPU (numba), with hash equality.

Run on a machine with CUDA: ``python -m benchmarks.exchange_gpu`` prints agent-steps/s at 10^6,
10^7 and 10^8 agents and, at 10^7, the SHA-256 of the wealth after 10 ticks on both backends.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import torch

from runtime.exchange import compiled_exchange_sync, exchange_sync_tick, exchange_sync_torch


def gpu_rate(n: int, ticks: int, step=exchange_sync_torch) -> float:  # type: ignore[no-untyped-def]
    """Agent-steps/s of a torch step function on the GPU."""
    w = torch.ones(n, dtype=torch.int64, device="cuda")
    step(w, 0, 1, 2)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for tick in range(1, ticks + 1):
        step(w, tick, 1, 2)
    torch.cuda.synchronize()
    return n * ticks / (time.perf_counter() - start)


def cpu_rate(n: int, ticks: int) -> float:
    """Agent-steps/s of the numba kernel on this machine's CPU."""
    w = np.ones(n, dtype=np.int64)
    exchange_sync_tick(w, np.uint32(0), np.uint32(1), np.uint32(2))
    start = time.perf_counter()
    for tick in range(1, ticks + 1):
        exchange_sync_tick(w, np.uint32(tick), np.uint32(1), np.uint32(2))
    return n * ticks / (time.perf_counter() - start)


def main() -> None:
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    try:  # one fused kernel instead of ~250 elementwise launches (runtime.exchange.compiled_exchange_sync)
        compiled = compiled_exchange_sync(1, 2)
    except Exception as exc:  # noqa: BLE001 -- report and go on with eager torch
        print(f"torch.compile unavailable: {exc}")
        compiled = None
    for n in (1_000_000, 10_000_000, 100_000_000):
        g = gpu_rate(n, 20)
        c = cpu_rate(n, 3) if n <= 10_000_000 else float("nan")
        line = f"N={n:>11,}  GPU eager {g:,.0f} agent-steps/s"
        if compiled is not None:
            gc = gpu_rate(n, 50, lambda w, t, k0, k1: compiled(w, t))
            line += f"   GPU compiled {gc:,.0f}"
        print(line + f"   CPU (numba, 1 thread) {c:,.0f}")
    if compiled is not None:  # the compiled step gives the same integers too
        n = 1_000_000
        a = torch.ones(n, dtype=torch.int64, device="cuda")
        b = torch.ones(n, dtype=torch.int64, device="cuda")
        for tick in range(10):
            exchange_sync_torch(a, tick, 1, 2)
            compiled(b, tick)
        print(f"compiled == eager after 10 ticks at N={n:,}: {bool(torch.equal(a, b))}")
    n = 10_000_000
    w = np.ones(n, dtype=np.int64)
    t = torch.ones(n, dtype=torch.int64, device="cuda")
    for tick in range(10):
        exchange_sync_tick(w, np.uint32(tick), np.uint32(1), np.uint32(2))
        exchange_sync_torch(t, tick, 1, 2)
    a = hashlib.sha256(w.tobytes()).hexdigest()
    b = hashlib.sha256(t.cpu().numpy().tobytes()).hexdigest()
    print(f"N={n:,}, 10 ticks: CPU sha256 {a[:16]}  GPU sha256 {b[:16]}  equal: {a == b}")


if __name__ == "__main__":
    main()
