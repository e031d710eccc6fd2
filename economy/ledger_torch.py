"""The ledger's data-parallel kernels in torch (any device, a GPU included): the same integers as the numba ones.

Two of a replica's kernels have no order between entries and so run as tensor operations:

* applying an authenticated op from another replica (``check = False``: its origin already checked
  every entry against its own rights) adds each entry's amount to the cells it writes -- integer
  ``index_add_``, exact whatever order the device sums in;
* merging another replica's dense state is an element-wise max (every cell has one writer).

Checking entries of an op made here stays sequential on the CPU (``ledger_kernels.apply_entries``):
each entry is checked against rights that the entries before it changed. The side table (refunds,
escrow moves) is small and stays on the CPU too. ``cells`` is the dense table
``int64[n_accounts, 2R + 2]`` of ``economy/ledger_kernels.py``; ``totals`` is ``int64[R, 3]``.
"""

from __future__ import annotations

from typing import Any

from economy.ledger_kernels import BURN, EARNED, MINT, SLASH, SPEND, SPENT_P, STAKE, TRANSFER, UNSTAKE


def apply_remote(kind: int, origin: int, R: int, accounts: Any, others: Any, amounts: Any, cells: Any, totals: Any) -> None:
    """Apply an authenticated op of a dense-table kind from replica ``origin`` to ``cells`` in place
    (torch int64 tensors on one device); what ``apply_entries(..., check=False)`` writes to the cells and totals."""
    width = cells.shape[1]
    flat = cells.view(-1)
    stake_in, stake_out = 2 * R, 2 * R + 1

    def add(rows: Any, col: int) -> None:
        flat.index_add_(0, rows * width + col, amounts)

    if kind == MINT:
        add(accounts, EARNED * R + origin)
        totals[origin, 0] += amounts.sum()
    elif kind in (SPEND, BURN, STAKE, TRANSFER):
        add(accounts, SPENT_P * R + origin)
        if kind == STAKE:
            add(accounts, stake_in)
        elif kind == TRANSFER:
            add(others, EARNED * R + origin)
        else:
            totals[origin, 1] += amounts.sum()
    elif kind in (UNSTAKE, SLASH):
        add(accounts, stake_out)
        if kind == UNSTAKE:
            add(accounts, EARNED * R + origin)
        else:
            totals[origin, 1] += amounts.sum()
    else:
        raise ValueError(f"op kind {kind}: not a dense-table kind (refund, lend and return use the side table)")


def merge_dense(cells: Any, other: Any) -> Any:
    """Merge another replica's dense cells into ``cells`` (element-wise max, in place); return how many
    rows changed."""
    import torch

    changed = (other > cells).any(dim=1).sum()
    torch.maximum(cells, other, out=cells)
    return changed


def balances(cells: Any, R: int) -> Any:
    """Each account's liquid balance from the dense cells (earned − spent over every replica); exact
    for accounts with no side-table row."""
    return cells[:, EARNED * R:(EARNED + 1) * R].sum(1) - cells[:, SPENT_P * R:(SPENT_P + 1) * R].sum(1)
