"""The ledger's data-parallel kernels (economy/ledger_torch.py) on a GPU against the numba replica.

    python -m benchmarks.ledger_gpu          # needs CUDA

R = 8 replicas, 10^6 and 10^7 accounts: applying a remote transfer op of 10^6 entries (entries/s),
and merging another replica's whole dense table (ms), torch on the GPU beside the numba replica on
the host's CPU; then the cells after the same ops, compared bit for bit.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from economy import Keyring, Replica
from economy.ledger_torch import apply_remote, merge_dense
from economy.ops import OpKind

R = 8


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    rng = np.random.default_rng(0)
    for n in (1_000_000, 10_000_000):
        kr = Keyring.derive(R, b"bench")
        origin, other = Replica(0, R, n, kr), Replica(1, R, n, kr)
        home = np.arange(0, n, R)
        mint, _ = origin.execute(OpKind.MINT, home, np.zeros(home.size, np.int64), np.full(home.size, 10**9, np.int64))
        k = 1_000_000
        src = rng.choice(home, k)
        op, _ = origin.execute(OpKind.TRANSFER, src, rng.integers(0, n, k), rng.integers(1, 100, k))
        other.receive(mint)
        start = time.perf_counter()
        other.receive(op)
        cpu_apply = time.perf_counter() - start
        dev = "cuda"
        cells = torch.zeros((n, 2 * R + 2), dtype=torch.int64, device=dev)
        totals = torch.zeros((R, 3), dtype=torch.int64, device=dev)
        put = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=dev)  # noqa: E731
        apply_remote(int(mint.kind), 0, R, put(mint.accounts), put(mint.others), put(mint.amounts), cells, totals)
        acc, oth, amt = put(op.accounts), put(op.others), put(op.amounts)
        warm = cells.clone()
        apply_remote(int(op.kind), 0, R, acc, oth, amt, warm, totals.clone())  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        apply_remote(int(op.kind), 0, R, acc, oth, amt, cells, totals)
        torch.cuda.synchronize()
        gpu_apply = time.perf_counter() - start
        equal = np.array_equal(cells.cpu().numpy(), other.cells)
        # Merge the origin's whole state into the other replica.
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
        merged_equal = np.array_equal(mine.cpu().numpy(), other.cells)
        print(f"accounts {n:>11,}: remote transfer of {k:,} entries  CPU (numba replica, receive) {k / cpu_apply:,.0f} entries/s"
              f"  GPU {k / gpu_apply:,.0f} entries/s  cells equal: {equal}", flush=True)
        print(f"{'':>24}merge of a whole replica  CPU {1000 * cpu_merge:.1f} ms  GPU {1000 * gpu_merge:.2f} ms"
              f"  dense cells equal: {merged_equal}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
