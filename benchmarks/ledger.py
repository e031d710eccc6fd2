"""Ledger benchmarks: the array replica beside the straightforward dict implementation of the same
CRDT.

Balance query latency, single-op throughput, batched op throughput, full merge time and state
bytes at 10⁴ and 10⁶ accounts × 8 replicas, and a Merkle diff that finds one differing account.
"""

from __future__ import annotations

import pickle
import time

import numpy as np

from benchmarks.timing import rate
from economy import Keyring, Replica
from economy.ops import OpKind
from economy.reference_ledger import DictReplica

REPLICAS = 8


def _filled(
    n: int, side_fraction: float, rng: np.random.Generator
) -> tuple[list[Replica], Keyring]:
    """Replicas whose every dense counter differs, with refund/escrow rows for ``side_fraction`` of
    accounts."""
    kr = Keyring.derive(REPLICAS, b"bench")
    reps = [Replica(r, REPLICAS, n, kr) for r in range(REPLICAS)]
    m = int(n * side_fraction)
    for rep in reps:
        rep.cells[:, : 2 * REPLICAS] = rng.integers(0, 1 << 40, size=(n, 2 * REPLICAS))
        rep.side_keys = np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
        rep.side_vals = rng.integers(0, 1 << 40, size=(m, 3 * REPLICAS))
        rep._reindex_side()  # the fill bypasses ops, so rebuild the side index by hand
        rep._leaf_ver[:] = 1  # ...and mark every leaf written, so deltas ship the whole fill
        rep.version = 1
    return reps, kr


def _dict_filled(n: int, side_fraction: float, rng: np.random.Generator) -> list[DictReplica]:
    """The same fill as :func:`_filled` in the dict replica (keys only where a value exists)."""
    reps = []
    m = int(n * side_fraction)
    for r in range(REPLICAS):
        d = DictReplica(r, REPLICAS)
        for counter, count in (
            (d.earned, n),
            (d.spent_p, n),
            (d.spent_n, m),
            (d.lent, m),
            (d.returned, m),
        ):
            vals = rng.integers(0, 1 << 40, size=(count, REPLICAS)).tolist()
            for a in range(count):
                for c in range(REPLICAS):
                    counter[(a, c)] = vals[a][c]
        reps.append(d)
    return reps


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (measure, size, Agora, dict baseline, ratio)."""
    rng = np.random.default_rng(0)
    rows: list[tuple[str, ...]] = []
    kr = Keyring.derive(REPLICAS, b"bench")

    # Balance query latency.
    n = 10_000
    rep = Replica(0, REPLICAS, n, kr)
    ref = DictReplica(0, REPLICAS)
    for a in range(0, n, 7):
        rep.mint(a, 10**6)
        ref.mint(a, 10**6)
    k = 100_000
    t_arr = 1 / rate(lambda: rep.balance(4242), repeat=k, warm_up=False)
    t_ref = 1 / rate(lambda: ref.balance(4242), repeat=k, warm_up=False)
    rows.append(
        (
            "balance query",
            f"{n:,} acc",
            f"{t_arr * 1e9:.0f} ns",
            f"{t_ref * 1e9:.0f} ns",
            f"{t_ref / t_arr:.1f}x",
        )
    )

    # Single-op throughput: one signed transfer at a time.
    m = 5_000 if quick else 20_000
    t0 = time.perf_counter()
    for i in range(m):
        rep.transfer(7 * (i % 100), 1 + i % 1000, 1)
    t_arr = (time.perf_counter() - t0) / m
    t0 = time.perf_counter()
    for i in range(m):
        ref.transfer(7 * (i % 100), 1 + i % 1000, 1)
    t_ref = (time.perf_counter() - t0) / m
    rows.append(
        (
            "transfer, one op (signed)",
            "1 entry",
            f"{1 / t_arr:,.0f} op/s",
            f"{1 / t_ref:,.0f} op/s",
            f"{t_ref / t_arr:.2f}x",
        )
    )

    # Batched throughput: one op of many entries, checked in order by the numba kernel.
    b = 100_000
    src = (7 * rng.integers(0, n // 7, b)).astype(np.int64)
    dst = rng.integers(0, n, b).astype(np.int64)
    amt = np.ones(b, dtype=np.int64)
    t_arr = (
        1 / rate(lambda: rep.execute(OpKind.TRANSFER, src, dst, amt), repeat=3, warm_up=False) / b
    )
    s_list, d_list = src.tolist(), dst.tolist()
    t0 = time.perf_counter()
    for i in range(b):
        ref.transfer(s_list[i], d_list[i], 1)
    t_ref = (time.perf_counter() - t0) / b
    rows.append(
        (
            "transfer, batched",
            f"{b:,} entries",
            f"{1 / t_arr:,.0f} op/s",
            f"{1 / t_ref:,.0f} op/s",
            f"{t_ref / t_arr:.1f}x",
        )
    )

    # Merge and state bytes. Every dense counter differs between replicas (the worst case for the
    # dense part); refund/escrow rows exist for 1% of accounts (typical) or for all (worst case).
    sizes = [10_000, 100_000] if quick else [10_000, 1_000_000]
    for n in sizes:
        for side_fraction in (0.01, 1.0):
            label = f"{n:,} acc x {REPLICAS}, {'1%' if side_fraction < 1 else 'all'} side"
            reps, _ = _filled(n, side_fraction, rng)
            a, others = reps[0], reps[1:]
            warm, _ = _filled(64, side_fraction, rng)
            warm[0].merge(warm[1])  # load the compiled kernels before timing
            t0 = time.perf_counter()
            for o in others:
                a.merge(o)
            t_merge = (time.perf_counter() - t0) / len(others)
            state = len(a.to_bytes())
            dict_cell = dict_state = ratio = "-"
            if n <= 10_000:
                dreps = _dict_filled(n, side_fraction, rng)
                t0 = time.perf_counter()
                for o in dreps[1:]:
                    dreps[0].merge_owned(o)
                t_dict = (time.perf_counter() - t0) / (len(dreps) - 1)
                dict_cell = f"{t_dict * 1e3:,.1f} ms"
                dict_state = f"{len(pickle.dumps(dreps[0])) / 1e6:,.1f} MB"
                ratio = f"{t_dict / t_merge:,.1f}x"
            rows.append(
                ("merge (a peer's own cells)", label, f"{t_merge * 1e3:,.1f} ms", dict_cell, ratio)
            )
            rows.append(("state bytes", label, f"{state / 1e6:,.1f} MB", dict_state, "-"))
            if n >= 100_000 and side_fraction < 1:
                b_rep = Replica.from_bytes(a.to_bytes(), a.keyring)
                b_rep.mint(n // 2 + 3, 1)
                a.root()
                b_rep.root()
                t0 = time.perf_counter()
                d = a.diff(b_rep)
                t_diff = time.perf_counter() - t0
                rows.append(
                    (
                        "Merkle diff, 1 of n differs",
                        f"{n:,} acc",
                        f"{t_diff * 1e6:,.0f} us, {d.comparisons} cmp",
                        "-",
                        "-",
                    )
                )
                t0 = time.perf_counter()
                b_rep.mint(7, 1)
                b_rep.root()
                rows.append(
                    (
                        "root after 1 change",
                        f"{n:,} acc",
                        f"{(time.perf_counter() - t0) * 1e6:,.0f} us",
                        "-",
                        "-",
                    )
                )
            del reps, a, others
    return rows
