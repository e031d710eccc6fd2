"""The market's synchronous tensor step (runtime/market_kernel.py) on a GPU against the CPU, with hash equality.

    python -m benchmarks.market_gpu            # needs CUDA; ticks/s at 10^5..10^7 agents, then CPU = GPU
    python -m benchmarks.market_gpu --compile  # also time torch.compile of the step (slow to compile)
    python -m benchmarks.market_gpu --cpu      # the CPU (torch) figures only, on any machine

80% requesters, 20% workers, 8 skills. Ticks/s over 20 ticks after 3 warm-up ticks (eager torch,
and ``torch.compile`` of the step on the GPU), then the SHA-256 of the integer state after 20
ticks at 10^6 agents on the CPU and on the GPU.
"""

from __future__ import annotations

import sys
import time

import torch

from runtime.market_kernel import MarketKernel


def rate(n: int, device: str, ticks: int = 20, compiled: bool = False) -> float:
    """Ticks/s of the market kernel with ``n`` agents on ``device``."""
    k = MarketKernel(n * 4 // 5, n // 5, seed=1, device=device)
    if compiled:
        k.compile()
    for _ in range(3):
        k.step()
    k.synchronize()
    start = time.perf_counter()
    for _ in range(ticks):
        k.step()
    k.synchronize()
    assert int(k.credits.sum()) == k.credits_issued
    return ticks / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    cpu_only = "--cpu" in argv
    if not cpu_only and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch; run with --cpu for the CPU figures", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}", flush=True)
    for n in (100_000, 1_000_000):
        print(f"N={n:>11,}  CPU (torch) {rate(n, 'cpu', ticks=5):8.2f} ticks/s", flush=True)
    if cpu_only:
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}", flush=True)
    for n in (100_000, 1_000_000, 10_000_000):
        eager = rate(n, "cuda")
        line = f"N={n:>11,}  GPU eager {eager:9.1f} ticks/s ({eager * n:,.0f} agent-steps/s)"
        if "--compile" not in argv:
            print(line, flush=True)
            continue
        try:
            compiled = rate(n, "cuda", compiled=True)
            line += f"   torch.compile {compiled:9.1f} ticks/s"
        except Exception as exc:  # report, do not hide: the eager figure stands
            line += f"   torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        print(line, flush=True)
    n = 1_000_000
    cpu, gpu = MarketKernel(n * 4 // 5, n // 5, seed=3), MarketKernel(n * 4 // 5, n // 5, seed=3, device="cuda")
    cpu.run(20)
    gpu.run(20)
    a, b = cpu.state_hash(), gpu.state_hash()
    print(f"N={n:,}, 20 ticks: CPU sha256 {a[:16]}  GPU sha256 {b[:16]}  equal: {a == b}")
    print(f"tasks served {int(gpu.tasks.sum()):,}, credits conserved: {int(gpu.credits.sum()) == gpu.credits_issued}")
    return 0 if a == b else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
