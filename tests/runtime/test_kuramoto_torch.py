"""The torch graph step agrees with the numba kernel: on the CPU always, on the GPU when one exists."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from runtime.kuramoto import CSR, Oscillators, TorchOscillators

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_step_matches_numba(device):
    g = nx.gnm_random_graph(2000, 10_000, seed=4)
    for u, v in g.edges:
        g[u][v]["weight"] = 1.0 + (u + v) % 3
    csr = CSR.from_networkx(g)
    rng = np.random.default_rng(2)
    omega, theta = rng.normal(0, 0.3, 2000), rng.uniform(0, 2 * np.pi, 2000)
    ref = Oscillators(omega, 3.0, 0.02, theta, csr)
    dev = TorchOscillators(omega, 3.0, 0.02, theta, csr, device=device)
    for _ in range(5):
        ref.step(20)
        dev.step(20)
        d = np.angle(np.exp(1j * (dev.phases() - ref.theta)))
        assert np.abs(d).max() < 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine; run on the device machine")
def test_gpu_is_used():
    csr = CSR.from_networkx(nx.path_graph(3))
    dev = TorchOscillators(np.zeros(3), 1.0, 0.1, np.zeros(3), csr, device="cuda")
    assert dev.theta.is_cuda
