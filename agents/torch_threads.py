"""Torch's CPU thread count for the roles' networks: one, asked for again before each use.

On the CPU the roles run their networks on one thread, so the same seed gives the same updates bit
for bit on any machine: a reduction split over threads may sum in another order. The count must be set
again before each use, not once at set-up: when numba starts its OpenMP thread pool (the process's
first parallel kernel, in the world's first tick) it sets the OpenMP thread count to every core, and
torch reads its CPU thread count from the same OpenMP runtime when the two share it (they did in a
process that had imported the runtime: ``torch.set_num_threads(1)`` before the world's first tick
read 2 after it on this 2-core machine). So the networks had run on every core, beside the
oscillators' thread and numba's workers: on the lent H100 host (16 cores) the negotiators' learning
step took 112 ms a tick at 10^6 agents, against 1.4 ms for the same call alone
(``benchmarks/results/gpu-kuramoto-h100.txt``).
"""

from __future__ import annotations


def one_thread() -> None:
    """Set torch's CPU ops to one thread, if they are not already."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
