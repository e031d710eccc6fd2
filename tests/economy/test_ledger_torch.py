"""The ledger's torch kernels write the same integers as the numba replica: remote ops and merges,
on the CPU here and on a GPU where there is one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from economy import Keyring, Replica
from economy.ledger_torch import apply_remote, balances, merge_dense
from economy.ops import OpKind

N, R = 400, 2


def _ops(seed: int) -> tuple[Replica, list]:
    """Ops made at replica 0: mints, transfers, stakes, spends, burns, unstakes, slashes (some
    refused there)."""
    rng = np.random.default_rng(seed)
    origin = Replica(0, R, N, Keyring.derive(R, b"torch"))
    ops = []
    accounts = np.arange(0, N, 2)  # replica 0's home accounts
    op, _ = origin.execute(
        OpKind.MINT,
        accounts,
        np.zeros(accounts.size, np.int64),
        np.full(accounts.size, 1000, np.int64),
    )
    ops.append(op)
    for _ in range(40):
        kind = rng.choice(
            [
                OpKind.TRANSFER,
                OpKind.STAKE,
                OpKind.SPEND,
                OpKind.BURN,
                OpKind.UNSTAKE,
                OpKind.SLASH,
                OpKind.MINT,
            ]
        )
        k = int(rng.integers(1, 50))
        src = rng.choice(accounts, k)
        dst = rng.integers(0, N, k) if kind == OpKind.TRANSFER else np.zeros(k, np.int64)
        op, _ = origin.execute(kind, src, dst, rng.integers(1, 300, k))
        if op is not None:
            ops.append(op)
    return origin, ops


def _apply_all(ops, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    cells = torch.zeros((N, 2 * R + 2), dtype=torch.int64, device=device)
    totals = torch.zeros((R, 3), dtype=torch.int64, device=device)

    def put(a: object) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)

    for op in ops:
        apply_remote(
            int(op.kind),
            op.origin,
            R,
            put(op.accounts),
            put(op.others),
            put(op.amounts),
            cells,
            totals,
        )
    return cells, totals


def test_remote_ops_write_what_the_replica_writes():
    origin, ops = _ops(1)
    kinds = {int(op.kind) for op in ops}
    assert {int(OpKind.TRANSFER), int(OpKind.STAKE), int(OpKind.SLASH)} <= kinds
    other = Replica(1, R, N, origin.keyring)
    for op in ops:
        other.receive(op)
    cells, totals = _apply_all(ops, "cpu")
    assert np.array_equal(cells.numpy(), other.cells) and np.array_equal(
        totals.numpy(), other.totals
    )
    assert np.array_equal(balances(cells, R).numpy(), other.balances())
    with pytest.raises(ValueError, match="not a dense-table kind"):
        apply_remote(
            int(OpKind.REFUND),
            0,
            R,
            torch.zeros(1, dtype=torch.int64),
            torch.zeros(1, dtype=torch.int64),
            torch.ones(1, dtype=torch.int64),
            cells,
            totals,
        )


def test_merge_is_the_replicas_merge_on_the_dense_table():
    a, ops_a = _ops(2)
    b = Replica(1, R, N, a.keyring)
    b.execute(
        OpKind.MINT, np.arange(1, N, 2), np.zeros(N // 2, np.int64), np.full(N // 2, 500, np.int64)
    )
    mine = torch.as_tensor(b.cells.copy())
    expected_changed = int((a.cells > b.cells).any(axis=1).sum())
    changed = merge_dense(mine, torch.as_tensor(a.cells.copy()))
    b.merge(a)
    assert np.array_equal(mine.numpy(), b.cells) and int(changed) == expected_changed >= N // 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_writes_the_same_integers():
    _, ops = _ops(3)
    cpu_cells, cpu_totals = _apply_all(ops, "cpu")
    gpu_cells, gpu_totals = _apply_all(ops, "cuda")
    assert torch.equal(cpu_cells, gpu_cells.cpu()) and torch.equal(cpu_totals, gpu_totals.cpu())
    mine = gpu_cells.clone()
    merge_dense(mine, torch.zeros_like(mine))
    assert torch.equal(mine, gpu_cells)


def test_an_owned_merge_takes_only_the_sources_cells_as_the_replica_does():
    a, _ = _ops(4)
    b = Replica(1, R, N, a.keyring)
    b.execute(
        OpKind.MINT, np.arange(1, N, 2), np.zeros(N // 2, np.int64), np.full(N // 2, 500, np.int64)
    )
    a.cells[:, 1] += 7  # a's view of replica 1's column, raised: not a's to send
    mine = torch.as_tensor(b.cells.copy())
    changed = merge_dense(mine, torch.as_tensor(a.cells.copy()), source=0, n_replicas=R)
    rows = b.merge(a)
    assert np.array_equal(mine.numpy(), b.cells) and int(changed) == rows > 0
    assert (b.cells[:, 1] == np.where(np.arange(N) % 2 == 1, 500, 0)).all()
