"""The torch graph step equals the numba kernel bit for bit: on the CPU always, on the GPU when one
exists."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from economy.portable_math import sin_cos as sincos_array
from runtime.coordination.kuramoto import CSR, Oscillators
from runtime.coordination.kuramoto_torch import TorchOscillators, torch_mod_2pi, torch_sincos

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_sincos_and_mod_are_the_cpu_bits(device):
    x = np.concatenate(
        [
            np.random.default_rng(0).uniform(-30, 30, 100_000),
            [0.0, -0.0, 2 * np.pi, -2 * np.pi, -1e-300],
        ]
    )
    s, c = torch_sincos(torch, torch.as_tensor(x, device=device))
    s_ref, c_ref = sincos_array(x)
    assert np.array_equal(s.cpu().numpy(), s_ref) and np.array_equal(c.cpu().numpy(), c_ref)
    m = torch_mod_2pi(torch, torch.as_tensor(x, device=device)).cpu().numpy()
    ref = np.mod(x, 2 * np.pi)
    assert np.array_equal(m, ref) and np.array_equal(np.signbit(m), np.signbit(ref))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_step_equals_numba_bit_for_bit(device):
    rng = np.random.default_rng(2)
    n = 3000
    g = nx.gnm_random_graph(n, 12_000, seed=4)
    for u, v in g.edges:
        g[u][v]["weight"] = 1.0 + (u + v) % 3
    g.add_edges_from(
        (int(h), int(j), {"weight": 1.0}) for h in range(5) for j in rng.integers(5, n, 150)
    )  # long rows
    csr = CSR.from_networkx(g)
    omega, theta = rng.normal(0, 0.3, n), rng.uniform(0, 2 * np.pi, n)
    ref = Oscillators(omega, 3.0, 0.02, theta, csr)
    dev = TorchOscillators(omega, 3.0, 0.02, theta, csr, device=device)
    for _ in range(3):
        ref.step(7)
        dev.step(7)
        assert np.array_equal(dev.theta, ref.theta)
    # A new graph (as the coordination rebuilds it), with duplicate edges, self-loops and zero
    # weights.
    src, dst = rng.integers(0, n, 5000), rng.integers(0, n, 5000)
    csr2 = CSR.from_edges(n, src, dst, rng.integers(0, 3, 5000).astype(np.float64))
    ref.csr = dev.csr = csr2
    ref.step(5)
    dev.step(5)
    assert np.array_equal(dev.theta, ref.theta)
    assert np.array_equal(dev.phases(), ref.theta)


def test_bad_graph_or_parameters_are_refused():
    csr = CSR.from_networkx(nx.path_graph(3))
    with pytest.raises(ValueError, match="graph has 3 nodes"):
        TorchOscillators(np.zeros(4), 1.0, 0.1, np.zeros(4), csr, device="cpu")
    with pytest.raises(ValueError, match="dt > 0"):
        TorchOscillators(np.zeros(3), 1.0, 0.0, np.zeros(3), csr, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_is_used():
    csr = CSR.from_networkx(nx.path_graph(3))
    dev = TorchOscillators(np.zeros(3), 1.0, 0.1, np.zeros(3), csr, device="cuda")
    assert dev.theta_t.is_cuda


def test_a_hub_longer_than_the_longest_row_steps_on_the_host_with_the_same_bits(monkeypatch):
    import runtime.coordination.kuramoto_torch as kt

    monkeypatch.setattr(kt, "LONGEST_ROW", 64)  # so a small hub is "long"
    rng = np.random.default_rng(9)
    n = 400
    hub = np.zeros(200, dtype=np.int64)
    src = np.concatenate([hub, rng.integers(1, n, 600)])
    dst = np.concatenate([rng.integers(1, n, 200), rng.integers(1, n, 600)])
    csr = CSR.from_edges(n, src, dst)
    omega, theta = rng.normal(0, 0.3, n), rng.uniform(0, 2 * np.pi, n)
    ref = Oscillators(omega, 2.0, 0.05, theta, csr)
    dev = kt.TorchOscillators(omega, 2.0, 0.05, theta, csr, device="cpu")
    assert dev._on_host is not None
    ref.step(9)
    dev.step(9)
    assert np.array_equal(dev.theta, ref.theta) and np.array_equal(dev.phases(), ref.theta)
    small = CSR.from_edges(n, rng.integers(0, n, 300), rng.integers(0, n, 300))
    ref.csr = dev.csr = small  # a graph without a hub goes back to the device path
    assert dev._on_host is None
    ref.step(4)
    dev.step(4)
    assert np.array_equal(dev.theta, ref.theta)
