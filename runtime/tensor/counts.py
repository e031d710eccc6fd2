"""Counting integer keys on a torch device, the same integers on a CPU and a GPU."""

from __future__ import annotations

from typing import Any


def count_keys(keys: Any, n: int) -> Any:
    """How many of ``keys`` (int64 in ``0..n``) equal each of ``0..n-1`` (key ``n``: none). On a
    GPU a sum of one-hot rows (no atomics contending for a few addresses, no read-back); on a CPU
    a bincount. The same integers either way."""
    import torch

    if keys.is_cuda:
        return (keys.reshape(-1, 1) == torch.arange(n, dtype=keys.dtype, device=keys.device)).sum(0)
    return torch.bincount(keys, minlength=n + 1)[:n]
