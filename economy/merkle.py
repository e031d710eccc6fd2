"""A Merkle tree over a replica's account rows: one comparison of roots tells whether two replicas
agree; a top-down walk finds the differing account ranges in O(log n) comparisons per difference.

Leaves are blocks of ``leaf_size`` consecutive accounts hashed with a 128-bit non-cryptographic
hash (two splitmix64 lanes). It detects divergence between honest replicas; it is not a defence
against an adversary who crafts collisions (the HMAC tags of ops and deltas are that defence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from economy.ledger_kernels import hash_leaves, hash_level


@dataclass(frozen=True)
class MerkleDiff:
    """Differing account ranges ``[start, stop)`` and the node comparisons it took to find them."""

    ranges: list[tuple[int, int]]
    comparisons: int


class MerkleTree:
    """Hash levels over account rows in blocks of ``leaf_size`` accounts, rebuilt incrementally."""

    def __init__(self, n_rows: int, leaf_size: int) -> None:
        self.n_rows = n_rows
        self.leaf_size = leaf_size
        n_leaves = max(1, -(-n_rows // leaf_size))
        self.levels: list[npt.NDArray[np.uint64]] = [np.zeros((n_leaves, 2), dtype=np.uint64)]
        while self.levels[-1].shape[0] > 1:
            m = self.levels[-1].shape[0]
            self.levels.append(np.zeros(((m + 1) // 2, 2), dtype=np.uint64))

    @property
    def n_leaves(self) -> int:
        """Number of leaf blocks."""
        return int(self.levels[0].shape[0])

    def update(
        self,
        cells: npt.NDArray[np.int64],
        keys: npt.NDArray[np.int64],
        vals: npt.NDArray[np.int64],
        dirty: npt.NDArray[np.bool_],
    ) -> None:
        """Rehash the leaves flagged in ``dirty: bool[n_leaves]`` and every level above; clear
        ``dirty``.

        ``cells`` are the dense rows, ``keys``/``vals`` the side table (see ``ledger_kernels``).
        """
        leaves = np.flatnonzero(dirty).astype(np.int64)
        if leaves.size == 0:
            return
        hash_leaves(cells, keys, vals, self.leaf_size, leaves, self.levels[0])
        for lower, upper in zip(self.levels, self.levels[1:], strict=False):
            hash_level(lower, upper)
        dirty[:] = False

    def root(self) -> bytes:
        """16-byte root hash."""
        root: bytes = self.levels[-1][0].tobytes()
        return root

    def diff(self, other: MerkleTree) -> MerkleDiff:
        """Account ranges where this tree and ``other`` differ, found top-down."""
        if other.n_rows != self.n_rows or other.leaf_size != self.leaf_size:
            raise ValueError(
                f"cannot diff trees of different shape: {self.n_rows}/{self.leaf_size} "
                f"vs {other.n_rows}/{other.leaf_size}"
            )
        comparisons = 0
        frontier = [0]
        for depth in range(len(self.levels) - 1, -1, -1):
            mine, theirs = self.levels[depth], other.levels[depth]
            differing = []
            for node in frontier:
                comparisons += 1
                if not np.array_equal(mine[node], theirs[node]):
                    differing.append(node)
            if depth == 0:
                frontier = differing
                break
            m = self.levels[depth - 1].shape[0]
            frontier = [c for node in differing for c in (2 * node, 2 * node + 1) if c < m]
        ranges: list[tuple[int, int]] = []
        for leaf in frontier:
            start, stop = leaf * self.leaf_size, min(self.n_rows, (leaf + 1) * self.leaf_size)
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], stop)
            else:
                ranges.append((start, stop))
        return MerkleDiff(ranges, comparisons)
