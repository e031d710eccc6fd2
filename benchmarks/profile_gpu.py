"""Where a tick of the gpu engine's time goes: ``python -m benchmarks.profile_gpu [AGENTS]``.

The default gpu scenario scaled to AGENTS (10^6 by default) on the first CUDA GPU: after three
warm-up ticks, the replay of the tick's CUDA graph alone; twenty ticks with the host's parts timed
(the read-back, which waits for the graph, the bus's deliveries, the closing of the tick's
batches, the proofs collected from their thread); and torch.profiler over five ticks: kernels per
tick and the device time of the kernels by name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def main(agents: int = 1_000_000) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.scale import scenario
    from runtime.tensor.world import TensorWorld

    world = TensorWorld(scenario(agents), device="cuda")
    for _ in range(3):
        world.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        world._graph.replay()
    torch.cuda.synchronize()
    print(f"{torch.cuda.get_device_name(0)}, {world.N:,} agents")
    print(f"the tick's graph replayed alone: {(time.perf_counter() - start) / 10 * 1e3:.2f} ms")

    spent: dict[str, float] = {}

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

        return run

    for name in ("_graphed_phase", "collect_proofs", "_order_parameter", "_bus", "_faults"):
        setattr(world, name, timed(name, getattr(world, name)))
    for name in ("end_tick", "seal", "anti_entropy"):
        setattr(world.ledger, name, timed(f"ledger.{name}", getattr(world.ledger, name)))
    tolist = torch.Tensor.tolist
    torch.Tensor.tolist = timed("read-back (waits for the graph)", tolist)  # type: ignore[method-assign]
    try:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            world.step()
        torch.cuda.synchronize()
        total = time.perf_counter() - start
    finally:
        torch.Tensor.tolist = tolist  # type: ignore[method-assign]
    print(f"a tick: {total / 20 * 1e3:.2f} ms, of which")
    for label, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<34} {seconds / 20 * 1e3:6.2f} ms")

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            world.step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    device_us = sum(e.device_time for e in kernels) / 5
    print(f"kernels a tick: {len(kernels) / 5:,.0f}, {device_us / 1e3:.2f} ms of device time")
    by_name: dict[str, tuple[int, float]] = {}
    for e in kernels:
        name = f"triton {e.name}" if e.name.startswith("_") else e.name[:80]
        count, us = by_name.get(name, (0, 0.0))
        by_name[name] = (count + 1, us + e.device_time)
    for name, (count, us) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:14]:
        print(f"  {us / 5:7.0f} us {count / 5:5.0f} kernels  {name}")
    world.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
