"""The gpu engine at scale: ``agora bench --only scale``.

The default marketplace on the gpu engine (``scenarios/gpu_marketplace.toml``: every role, the
faults and the coordination) scaled to 10^5..10^7 agents, each size run for a few ticks after a
warm-up, on the first CUDA GPU (and, at the smaller sizes, on this CPU with the engine's CPU form).
Reported per size and device: ticks per second, agent-steps per second, the world's arrays per agent
(the tensors the engine keeps between ticks), the device's peak memory per agent, and the bytes a
tick reads and writes as a fraction of the GPU's memory bandwidth over the tick's time. The bytes
are counted on one more tick, launched kernel by kernel: every aten operation's inputs and outputs
(with a dispatch mode; index operations are counted at their tensors' full size, and caches and
re-reads inside a kernel are ignored) plus the Triton auction kernels' loads and stores, counted
as if no trader left the market; on a GPU only (the CPU form runs its heaviest parts as numba
loops, :mod:`runtime.tensor.cpu_kernels`, which a dispatch mode does not see).

Beside it, the field's anchor: FLAME GPU 2's published circles benchmark, about 2.8 ms a step at
10^6 agents on an A100 (about 3.6·10^8 agent-steps/s; Richmond et al., 2023). The circles model is
a spatial message-passing model, not a market: the comparison is of throughput per agent-step and
bytes per agent, not of models.

The first table checks the engine's contract: the default size, recorded on the GPU and on the CPU,
gives the same checkpoint hashes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import Rows
from benchmarks.marketplace import scaled_text

SOURCE = Path(__file__).resolve().parent.parent / "scenarios" / "gpu_marketplace.toml"
FLAME_STEP_S = 2.8e-3  # FLAME GPU 2, circles benchmark, 10^6 agents, A100 (published)
H200_BANDWIDTH = 4.8e12  # bytes/s, the H200's HBM3e


def scenario(n: int | None, ticks: int | None = None) -> Any:
    """The gpu marketplace (scaled to ``n`` agents when given)."""
    from runtime.kernel.scenario import parse

    text = SOURCE.read_text() if n is None else scaled_text(n, True, SOURCE)
    sc = parse(text, str(SOURCE), SOURCE.parent)
    if ticks is not None:
        sc = sc.model_copy(update={"world": sc.world.model_copy(update={"ticks": ticks})})
    return sc


def state_bytes(world: Any) -> int:
    """Bytes of the tensors the world keeps between ticks."""
    import torch

    seen: set[int] = set()
    total = 0

    def add(x: Any) -> None:
        nonlocal total
        if torch.is_tensor(x) and id(x) not in seen:
            seen.add(id(x))
            total += x.numel() * x.element_size()
        elif isinstance(x, list | tuple):
            for y in x:
                add(y)

    for obj in (world, world.ledger):
        for v in vars(obj).values():
            add(v)
    for t in world.ledger.ticks.values():
        add([t.account, t.amount, t.origin])
    return total


def bytes_per_tick(world: Any) -> int:
    """Bytes read and written by one tick: every aten operation's inputs and outputs, each counted
    once per operation, with the tick's kernels launched one by one (a CUDA graph's replay is not
    seen operation by operation), plus, on a GPU, the Triton auction kernels' loads and stores
    (:func:`runtime.tensor.auction_cuda.traffic`)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import runtime.tensor.world as tensor_world

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            out = func(*args, **(kwargs or {}))
            for x in (
                *args,
                *(kwargs or {}).values(),
                *(out if isinstance(out, tuple | list) else (out,)),
            ):
                if torch.is_tensor(x):
                    Count.total += x.numel() * x.element_size()
            return out

    auctions: list[tuple[int, int, int]] = []
    cleared = tensor_world.auction_rounds

    def seen(bids: Any, asks: Any, *args: Any, **kwargs: Any) -> Any:
        auctions.append((bids.shape[0], bids.shape[1], asks.shape[1]))
        return cleared(bids, asks, *args, **kwargs)

    graphed, world.graphed = world.graphed, False
    tensor_world.auction_rounds = seen
    try:
        with Count():
            world.step()
    finally:
        world.graphed = graphed
        tensor_world.auction_rounds = cleared
    total = Count.total
    if world.device.type == "cuda" and tensor_world._triton():
        from runtime.tensor.auction_cuda import traffic

        total += sum(traffic(*a) for a in auctions)
    return total


def measure(n: int, device: str, ticks: int) -> dict[str, float]:
    """Ticks/s and bytes of the scaled scenario at ``n`` agents on ``device``, and the share of
    the tick's payments the sampled z3 proofs covered."""
    import torch

    from runtime.tensor.world import TensorWorld

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    world = TensorWorld(scenario(n), device=device)
    for _ in range(3):
        world.step()
    world.synchronize()
    proved = payments = 0
    start = time.perf_counter()
    for _ in range(ticks):
        row = world.step()
        proved += row["proved"]
        payments += row["tasks_succeeded"] + row["cheats"]
    world.synchronize()
    seconds = (time.perf_counter() - start) / ticks
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    # The bytes are counted for a GPU's tick (the CPU form's numba loops are not aten operations).
    moved = bytes_per_tick(world) if device == "cuda" else 0
    return {
        "agents": world.N,
        "tick_s": seconds,
        "state": state_bytes(world) / world.N,
        "peak": peak / world.N,
        "moved": moved,
        "coverage": proved / max(1, payments),
    }


def same_bits(ticks: int) -> tuple[str, str]:
    """Final state hash of the default size on the CPU and on the GPU."""
    from runtime.tensor.world import TensorWorld

    out = []
    for device in ("cpu", "cuda"):
        world = TensorWorld(scenario(None), device=device)
        for _ in range(ticks):
            world.step()
        out.append(world.combine(world.subsystem_hashes()))
    return out[0], out[1]


def run(quick: bool) -> tuple[Rows, Rows, Rows]:
    """Equality on CPU and GPU, the scale rows, and the two engines side by side at 10^4."""
    import torch

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "no CUDA GPU"
    equal: Rows = []
    if cuda:
        cpu, gpu = same_bits(20 if quick else 60)
        equal.append((name, cpu[:16], gpu[:16], "yes" if cpu == gpu else "NO"))
    else:
        equal.append((name, "-", "-", "not run: no CUDA GPU"))
    rows: Rows = []
    sizes = [(100_000, "cpu", 5)] if quick else [(100_000, "cpu", 5), (1_000_000, "cpu", 3)]
    if cuda:
        sizes += [
            (n, "cuda", 20)
            for n in ((100_000, 1_000_000) if quick else (100_000, 1_000_000, 10_000_000))
        ]
    for n, device, ticks in sizes:
        f = measure(n, device, ticks)
        rate = 1 / f["tick_s"]
        label = name if device == "cuda" else "this CPU"
        frac = f["moved"] / f["tick_s"] / H200_BANDWIDTH if device == "cuda" else float("nan")
        rows.append(
            (
                f"{f['agents']:,}",
                label,
                f"{rate:,.1f}",
                f"{f['agents'] * rate:.3g}",
                f"{f['state']:.0f}",
                f"{f['peak']:.0f}" if device == "cuda" else "-",
                f"{f['moved'] / 1e6:,.0f} MB" if device == "cuda" else "-",
                f"{frac:.1%}" if device == "cuda" else "-",
                f"{f['coverage']:.2%}",
            )
        )
    rows.append(
        (
            "1,000,000",
            "FLAME GPU 2 circles, A100 (published)",
            f"{1 / FLAME_STEP_S:,.0f}",
            f"{1e6 / FLAME_STEP_S:.3g}",
            "-",
            "-",
            "-",
            "-",
            "-",
        )
    )
    return equal, rows, engines(20 if quick else 60)


def engines(ticks: int) -> Rows:
    """The default scenario with every role at 10^4 agents on the call market, run by the exact
    engine and by the gpu engine (its CPU form), same seed: the indicators of ``agora analyze``
    side by side, so the gpu engine's model choices show as differences."""
    import tempfile

    from runtime.analysis.runs import analyze
    from runtime.kernel.scenario import parse
    from runtime.record.recording import record_scenario
    from runtime.record.run_data import open_run

    exact_text = scaled_text(10_000).replace(
        "[network]", '[market]\nmechanism = "call"\n\n[network]', 1
    )
    gpu_text = scaled_text(10_000, True, SOURCE)
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="agora-engines-") as tmp:
        for name, text in (("exact", exact_text), ("gpu", gpu_text)):
            sc = parse(text, name, SOURCE.parent)
            sc = sc.model_copy(update={"world": sc.world.model_copy(update={"ticks": ticks})})
            start = time.perf_counter()
            summary = record_scenario(sc, text.encode(), SOURCE.parent, Path(tmp) / name)
            wall = time.perf_counter() - start
            a = analyze(open_run(Path(tmp) / name))
            out[name] = {
                "tasks posted per tick": summary["totals"]["tasks_posted"] / ticks,
                "mean price (credits)": a["mean_price_credits"]["mean"],
                "volume per tick (credits)": a["volume_credits"]["mean"],
                "market efficiency (negotiators)": a["market_efficiency"],
                "ticks replicas disagreed": a["ledger_convergence"]["ticks_diverged"],
                "order parameter r, mean": (a.get("order_parameter") or {}).get("mean"),
                "wall seconds (this CPU)": wall,
            }

    def fmt(v: object) -> str:
        return "-" if v is None else f"{v:,.4g}" if isinstance(v, float) else f"{v:,}"

    return [(k, fmt(out["exact"][k]), fmt(out["gpu"][k])) for k in out["exact"]]
