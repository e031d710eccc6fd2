"""The market's synchronous tensor step: equal to its plain reference tick, integer-exact,
conserving, deterministic, and the same bits on a GPU (skipped without one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.kernel.market_kernel import MarketKernel, reference_tick


def _pair(**kw):
    return MarketKernel(300, 60, seed=4, n_skills=4, **kw), MarketKernel(
        300, 60, seed=4, n_skills=4, **kw
    )


def test_the_kernel_takes_exactly_the_reference_tick():
    kernel, reference = _pair(post_rate=0.5, initial_credits=3)
    for _ in range(12):
        kernel.step()
        reference_tick(reference)
        for name, a in kernel.arrays().items():
            assert np.array_equal(a, reference.arrays()[name]), (kernel.tick, name)
    # The market did something: tasks ran, some failed, requesters ran short, prices moved.
    a = kernel.arrays()
    assert a["tasks"].sum() > 500 and 0 < a["successes"].sum() < a["tasks"].sum()
    assert (a["credits"][:300] < 3 * 1_000_000).sum() > 150 and len(set(a["prices"].tolist())) > 1


def test_credits_are_conserved_and_never_negative():
    k = MarketKernel(5_000, 1_000, seed=1, initial_credits=5)
    for _ in range(40):
        k.step()
        assert int(k.credits.sum()) == k.credits_issued
        assert int(k.credits.min()) >= 0


def test_same_seed_same_hash_other_seed_other_hash():
    a, b, c = (MarketKernel(2_000, 400, seed=s) for s in (7, 7, 8))
    for k in (a, b, c):
        k.run(10)
    assert a.state_hash() == b.state_hash() != c.state_hash()


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="n_requesters"):
        MarketKernel(0, 10)
    with pytest.raises(ValueError, match="n_skills"):
        MarketKernel(10, 10, n_skills=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_gives_the_cpus_bits():
    cpu, gpu = (
        MarketKernel(100_000, 25_000, seed=3),
        MarketKernel(100_000, 25_000, seed=3, device="cuda"),
    )
    fused = MarketKernel(100_000, 25_000, seed=3, device="cuda")
    fused.compile()  # torch.compile: fused GPU kernels, the same integers
    for _ in range(20):
        cpu.step()
        gpu.step()
        fused.step()
    assert cpu.state_hash() == gpu.state_hash() == fused.state_hash()
    assert int(gpu.credits.sum()) == gpu.credits_issued
