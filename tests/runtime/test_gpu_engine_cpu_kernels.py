"""The gpu engine's CPU form as numba loops (``runtime.tensor.cpu_kernels``): each loop gives the
integers of the torch form a GPU runs, on random inputs with the cases that differ (ties, zero
weights, dead nodes, divisions that round down), and a whole world gives the same rows and hashes
either way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.kernel.scenario import parse
from runtime.tensor import cpu_kernels
from runtime.tensor.world import TensorWorld, auction_rounds_torch
from tests.runtime.test_gpu_engine import SMALL_GPU

COORDINATED = (
    SMALL_GPU.replace("count = 120", "count = 400")
    + "\n[coordination]\ncoupling = 6.0\nfrequency_spread = 0.1\nsync_threshold = 0.6\n"
)


def test_fused_and_torch_forms_give_one_run():
    worlds = [TensorWorld(parse(COORDINATED), fused=f) for f in (True, False)]
    assert worlds[0].fused and not worlds[1].fused
    contracts = 0
    for _ in range(30):  # a partition, a crash and their ends, and anti-entropy rounds
        rows = [w.step() for w in worlds]
        assert rows[0] == rows[1], worlds[0].tick
        contracts += rows[0]["contracts"]
    assert worlds[0].subsystem_hashes() == worlds[1].subsystem_hashes()
    # The parts that have loops of their own ran: auctions traded, oscillators coupled.
    assert contracts > 0 and rows[0]["order_pm"] > 0
    assert worlds[0].conserved()


def test_fused_needs_the_cpu():
    with pytest.raises(ValueError, match="device='cpu'"):
        TensorWorld(parse(SMALL_GPU), device="cuda", fused=True)


def oscillate_reference(phase, omega, alive, a, b, w, table, kq, sin_one, steps):
    # The formula, one Python integer at a time: all pulls from the phases before the step.
    n = len(phase)
    phase = list(phase)
    deg = [0] * n
    for i, wk in zip(a, w, strict=True):
        deg[i] += wk
    for _ in range(steps):
        pull = [0] * n
        for i, j, wk in zip(a, b, w, strict=True):
            pull[i] += table[(phase[j] - phase[i]) & 0xFFFF] * wk
        for i in range(n):
            if alive[i]:
                phase[i] = (
                    phase[i] + omega[i] + (kq * pull[i]) // (max(deg[i], 1) * sin_one)
                ) & 0xFFFF
    return phase


def test_the_oscillator_loop_follows_the_formula():
    rng = np.random.default_rng(11)
    angles = np.arange(1 << 16) * (2 * np.pi / (1 << 16))
    table = np.rint(np.sin(angles) * (1 << 14)).astype(np.int64)
    for case in range(60):
        n = int(rng.integers(1, 40))
        e = int(rng.integers(0, 80))
        a = rng.integers(0, n, e)
        b = rng.integers(0, n, e)
        w = rng.choice([0, 0, 1, 1, 2, 3, 4, 7], e)  # zeros; degrees of 1, 2, 4 and others
        phase = rng.integers(0, 1 << 16, n)
        omega = rng.integers(-300, 301, n)
        alive = rng.random(n) < 0.8
        kq = int(rng.choice([1, 4000, 1 << 20]))
        steps = int(rng.integers(0, 6))
        want = oscillate_reference(phase, omega, alive, a, b, w, table, kq, 1 << 14, steps)
        got = phase.copy()
        cpu_kernels.oscillate(got, omega, alive, a, b, w, table, kq, 1 << 14, steps)
        assert got.tolist() == want, case


def test_the_auction_loop_gives_the_torch_forms_integers():
    rng = np.random.default_rng(5)
    for case in range(200):
        mb, ns, rounds = int(rng.integers(1, 40)), int(rng.integers(1, 40)), int(rng.integers(1, 6))
        top = int(rng.choice([3, 40, 2001, 1 << 20]))  # ties; a span past the counting sort's
        bids = torch.as_tensor(rng.integers(0, top, (rounds, mb)))
        asks = torch.as_tensor(rng.integers(0, top, (rounds, ns)))
        active = torch.as_tensor(rng.random(mb) < 0.8)
        alive = torch.as_tensor(rng.random(ns) < 0.8)
        want = auction_rounds_torch(bids, asks, active, alive)
        got = cpu_kernels.auction_rounds(bids.numpy(), asks.numpy(), active.numpy(), alive.numpy())
        for x, y in zip(got, want, strict=True):
            assert x.tolist() == y.tolist(), case


def test_the_group_sort_is_the_stable_sort():
    rng = np.random.default_rng(2)
    for size in (0, 1, 17, 5000):
        code = rng.integers(0, 18, size)
        order, counts = cpu_kernels.group_sort(code, 18)
        want = torch.sort(torch.as_tensor(code), stable=True).indices
        assert order.tolist() == want.tolist()
        assert counts.tolist() == np.bincount(code, minlength=18).tolist()


def test_region_sums_count_the_live_agents_of_each_region():
    table = np.arange(1 << 16, dtype=np.int64)  # the "sine" of a phase is the phase itself
    phase = np.array([0, 1, 2, 3, 0xFFFF], dtype=np.int64)
    alive = np.array([True, True, False, True, True])
    sums = cpu_kernels.region_sums(phase, alive, table, 2)
    # Region 0 holds agents 0, 2 (dead), 4; region 1 holds agents 1, 3.
    assert sums[1].tolist() == [0 + 0xFFFF, 1 + 3]
    assert sums[0].tolist() == [0x4000 + 0x3FFF, 0x4001 + 0x4003]
    assert sums[2].tolist() == [2, 2]


def test_a_step_split_over_threads_is_the_step_on_one():
    rng = np.random.default_rng(3)
    m, e = 60_000, 150_000
    rows = np.sort(rng.integers(0, m, e))
    indptr = np.searchsorted(rows, np.arange(m + 1)).astype(np.int64)
    nb = rng.integers(0, m, e).astype(np.int32)
    nw = rng.integers(1, 4, e)
    deg = np.zeros(m, dtype=np.int64)
    np.add.at(deg, rows, nw)
    shifts = np.where(deg <= 1, 0, np.where(deg & (deg - 1) == 0, np.log2(np.maximum(deg, 1)), -1))
    live = rng.random(m) < 0.9
    freq = rng.integers(-300, 301, m)
    table = rng.integers(-(1 << 14), (1 << 14) + 1, 1 << 16).astype(np.int16)
    old = rng.integers(0, 1 << 16, m).astype(np.int32)
    args = (indptr, nb, nw, deg, shifts.astype(np.int64), live, freq, table, 4000, 14)
    one, many = np.empty_like(old), np.empty_like(old)
    cpu_kernels._coupled_serial(old, one, *args)
    cpu_kernels._coupled_parallel(old, many, *args)
    assert np.array_equal(one, many) and not np.array_equal(one, old)


def test_ranks_are_positions_in_the_stable_sort():
    rng = np.random.default_rng(4)
    keys = rng.integers(0, 9, 3000)
    rank, counts = cpu_kernels.ranks(keys, 9)
    order = np.argsort(keys, kind="stable")
    start = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=9))])
    want = np.empty_like(keys)
    want[order] = np.arange(keys.size) - start[keys[order]]
    assert rank.tolist() == want.tolist()
    assert counts.tolist() == np.bincount(keys, minlength=9).tolist()


HEAD = '[world]\nticks = 10\ncheckpoint_every = 5\nengine = "gpu"\n[market]\nmechanism = "call"\n'
COUPLED = "[coordination]\ncoupling = 2.0\nfrequency_spread = 0.3\n"


@pytest.mark.parametrize(
    "populations",
    [
        # one agent, no trade: every node uncoupled
        '[[population]]\nname = "w"\nrole = "worker"\ncount = 1\n',
        # negotiators with nobody to sell to; requesters with no workers
        '[[population]]\nname = "r"\nrole = "requester"\ncount = 30\ninitial_credits = 10\n'
        "post_rate = 1.0\n"
        '[[population]]\nname = "n"\nrole = "negotiator"\ncount = 3\n',
        # everyone trades every tick
        '[[population]]\nname = "r"\nrole = "requester"\ncount = 50\ninitial_credits = 1000\n'
        "post_rate = 1.0\n"
        '[[population]]\nname = "w"\nrole = "worker"\ncount = 50\n'
        '[[population]]\nname = "n"\nrole = "negotiator"\ncount = 50\n',
    ],
)
def test_edge_worlds_give_one_run_in_both_forms(populations):
    text = HEAD + COUPLED + populations
    worlds = [TensorWorld(parse(text), fused=f) for f in (True, False)]
    for _ in range(10):
        rows = [w.step() for w in worlds]
        assert rows[0] == rows[1], worlds[0].tick
    assert worlds[0].subsystem_hashes() == worlds[1].subsystem_hashes()


def random_gpu_scenario(seed: int) -> str:
    """A random gpu-engine world: sizes, rates, faults and coupling drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    regions = ["a", "b", "c"][: int(rng.integers(1, 4))]
    text = HEAD.replace("ticks = 10", f"ticks = 16\nseed = {seed}") + (
        f"[network]\nregions = {regions!r}\n".replace("'", '"')
        + f"[bus]\nloss = {rng.uniform(0, 0.5):.2f}\nduplication = {rng.uniform(0, 0.3):.2f}\n"
        + f"[economy]\nanti_entropy_every = {int(rng.integers(1, 6))}\n"
        + f"[coordination]\ncoupling = {rng.uniform(0, 8):.2f}\n"
        + f"frequency_spread = {rng.uniform(0.01, 0.5):.2f}\n"
        + f"steps_per_tick = {rng.integers(1, 6)}\n"
        + f'[[population]]\nname = "r"\nrole = "requester"\ncount = {rng.integers(0, 300)}\n'
        + f"initial_credits = {rng.integers(0, 200)}\npost_rate = {rng.uniform(0, 1):.2f}\n"
        + f'[[population]]\nname = "w"\nrole = "worker"\ncount = {rng.integers(0, 80)}\n'
        + f"cheat_fraction = {rng.uniform(0, 0.5):.2f}\n"
        + f'[[population]]\nname = "n"\nrole = "negotiator"\ncount = {rng.integers(0, 40)}\n'
        + '[[population]]\nname = "c"\nrole = "critic"\ncount = 1\nwatches = "w"\n'
        + '[[population]]\nname = "h"\nrole = "healer"\ncount = 1\nwatches = "w"\n'
        + f'[[fault]]\nat = {rng.integers(0, 8)}\nkind = "crash"\npopulation = "w"\n'
        + f"fraction = {rng.uniform(0, 1):.2f}\nduration = {rng.integers(1, 6)}\n"
        + f'[[fault]]\nat = {rng.integers(0, 8)}\nkind = "degrade"\npopulation = "w"\n'
        + f"fraction = {rng.uniform(0, 1):.2f}\nseverity = 0.5\nduration = 4\n"
        + f'[[fault]]\nat = {rng.integers(0, 8)}\nkind = "loss_burst"\nloss = 0.9\nduration = 2\n'
    )
    if len(regions) > 1:
        text += (
            f'[[fault]]\nat = {rng.integers(0, 8)}\nkind = "partition"\n'
            f'groups = [["{regions[0]}"], {regions[1:]!r}]\nduration = 5\n'.replace("'", '"')
        )
    return text


@pytest.mark.parametrize("seed", range(6))
def test_random_worlds_give_one_run_in_both_forms(seed):
    text = random_gpu_scenario(seed)
    worlds = [TensorWorld(parse(text), fused=f) for f in (True, False)]
    for _ in range(16):
        rows = [w.step() for w in worlds]
        assert rows[0] == rows[1], (seed, worlds[0].tick)
    assert worlds[0].subsystem_hashes() == worlds[1].subsystem_hashes()
    assert worlds[0].conserved()
