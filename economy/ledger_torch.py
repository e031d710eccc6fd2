"""The ledger's data-parallel kernels in torch (any device, a GPU included): the same integers as
the numba ones.

Two of a replica's kernels have no order between entries and so run as tensor operations:

* applying an authenticated op from another replica (``check = False``: its origin already checked
  every entry against its own rights and the counter bound) adds each entry's amount to the cells
  it writes -- integer ``index_add_``, exact whatever order the device sums in. Unlike the numba
  kernel it does not check the bound again: give it ops a replica accepted;
* merging another replica's dense state is an element-wise max (every cell has one writer); a
  replica takes only the cells the other owns, which ``merge_dense(..., source=, n_replicas=)``
  does too.

Checking entries of an op made here stays sequential on the CPU (``ledger_kernels.apply_entries``):
each entry is checked against rights that the entries before it changed. The side table (refunds,
escrow moves) is small and stays on the CPU too. ``cells`` is the dense table
``int64[n_accounts, 2R + 2]`` of ``economy/ledger_kernels.py``; ``totals`` is ``int64[R, 3]``.
"""

from __future__ import annotations

from typing import Any

from economy.ledger_kernels import (
    BURN,
    EARNED,
    MINT,
    SLASH,
    SPEND,
    SPENT_P,
    STAKE,
    TRANSFER,
    UNSTAKE,
)


def apply_remote(
    kind: int,
    origin: int,
    n_replicas: int,
    accounts: Any,
    others: Any,
    amounts: Any,
    cells: Any,
    totals: Any,
) -> None:
    """Apply an authenticated op of a dense-table kind from replica ``origin`` to ``cells`` in place
    (torch int64 tensors on one device); what ``apply_entries(..., check=False)`` writes to the
    cells and totals for an op within the counter bound."""
    width = cells.shape[1]
    flat = cells.view(-1)
    stake_in, stake_out = 2 * n_replicas, 2 * n_replicas + 1

    def add(rows: Any, col: int) -> None:
        flat.index_add_(0, rows * width + col, amounts)

    if kind == MINT:
        add(accounts, EARNED * n_replicas + origin)
        totals[origin, 0] += amounts.sum()
    elif kind in (SPEND, BURN, STAKE, TRANSFER):
        add(accounts, SPENT_P * n_replicas + origin)
        if kind == STAKE:
            add(accounts, stake_in)
        elif kind == TRANSFER:
            add(others, EARNED * n_replicas + origin)
        else:
            totals[origin, 1] += amounts.sum()
    elif kind in (UNSTAKE, SLASH):
        add(accounts, stake_out)
        if kind == UNSTAKE:
            add(accounts, EARNED * n_replicas + origin)
        else:
            totals[origin, 1] += amounts.sum()
    else:
        raise ValueError(
            f"op kind {kind}: not a dense-table kind (refund, lend and return use the side table)"
        )


def merge_dense(
    cells: Any, other: Any, source: int | None = None, n_replicas: int | None = None
) -> Any:
    """Merge another replica's dense cells into ``cells`` (element-wise max, in place); return how
    many rows changed.

    With ``source`` and ``n_replicas``, only the cells replica ``source`` owns are taken (its
    earned and spent_p columns, and stake of the accounts whose home it is), as
    ``Replica.merge`` takes them; without, every cell (both states trusted whole).
    """
    import torch

    if source is None:
        changed = (other > cells).any(dim=1).sum()
        torch.maximum(cells, other, out=cells)
        return changed
    assert n_replicas is not None and 0 <= source < n_replicas
    owned = torch.zeros_like(cells, dtype=torch.bool)
    owned[:, [EARNED * n_replicas + source, SPENT_P * n_replicas + source]] = True
    homes = torch.arange(cells.shape[0], device=cells.device) % n_replicas == source
    owned[homes, 2 * n_replicas : 2 * n_replicas + 2] = True
    grown = (other > cells) & owned
    cells.copy_(torch.where(grown, other, cells))
    return grown.any(dim=1).sum()


def balances(cells: Any, n_replicas: int) -> Any:
    """Each account's liquid balance from the dense cells (earned − spent over every replica);
    exact for accounts with no side-table row."""
    earned = cells[:, EARNED * n_replicas : (EARNED + 1) * n_replicas].sum(1)
    return earned - cells[:, SPENT_P * n_replicas : (SPENT_P + 1) * n_replicas].sum(1)
