"""Kuramoto step benchmarks: the numba CSR kernel beside a numpy (bincount) version, a pure-Python
loop at small size, the torch kernel on a GPU when one is present, and the O(N) mean-field path.

Random graphs of ``N`` oscillators with ``E`` stored (directed) entries: ``E/2`` undirected edges
between uniform nodes.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from benchmarks.timing import rate
from runtime.coordination.kuramoto import CSR, Oscillators

COUPLING = 2.0  # the coupling strength K of the Kuramoto model
TIME_STEP = 0.01  # the Euler step dt

Phases = npt.NDArray[np.float64]


def _graph(n: int, e: int, seed: int = 0) -> CSR:
    rng = np.random.default_rng(seed)
    return CSR.from_edges(n, rng.integers(0, n, e // 2), rng.integers(0, n, e // 2))


def numpy_step(
    theta: Phases, omega: Phases, rows: npt.NDArray[np.int64], csr: CSR, inv_deg: Phases
) -> Phases:
    """The same Euler step with numpy: gather, sine, bincount per row."""
    contrib = np.sin(theta[csr.indices] - theta[rows]) * csr.weights
    total = np.bincount(rows, weights=contrib, minlength=theta.shape[0])
    return theta + TIME_STEP * (omega + COUPLING * total * inv_deg)


def python_step(theta: list[float], omega: list[float], csr: CSR) -> list[float]:
    """The same Euler step as a plain Python loop over lists."""
    indptr, indices, weights = csr.indptr.tolist(), csr.indices.tolist(), csr.weights.tolist()
    out = []
    for i in range(len(theta)):
        pull = degree = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            pull += weights[k] * math.sin(theta[indices[k]] - theta[i])
            degree += weights[k]
        out.append(
            theta[i] + TIME_STEP * (omega[i] + (COUPLING * pull / degree if degree else 0.0))
        )
    return out


def _gpu_rate(omega: Phases, theta0: Phases, csr: CSR, repeat: int) -> tuple[str, float] | None:
    """Steps/s of the torch kernel on the first CUDA GPU, or None where there is none."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from runtime.coordination.kuramoto_torch import TorchOscillators

    dev = TorchOscillators(omega, COUPLING, TIME_STEP, theta0, csr, device="cuda")

    def gpu_step() -> None:
        dev.step()
        dev.synchronize()

    return f"torch on {torch.cuda.get_device_name(0)}", rate(gpu_step, repeat=repeat)


def _size_rows(n: int, e: int) -> list[tuple[str, ...]]:
    """The rows of one graph size: every implementation, then the mean-field path."""
    csr = _graph(n, e)
    rng = np.random.default_rng(1)
    omega, theta0 = rng.normal(0, 0.5, n), rng.uniform(0, 2 * np.pi, n)
    osc = Oscillators(omega, COUPLING, TIME_STEP, theta0, csr)
    repeat = 50 if n <= 10_000 else 10
    agora = rate(osc.step, repeat=repeat)
    results = {"Agora numba CSR": agora}
    rows_idx = np.repeat(np.arange(n), np.diff(csr.indptr))
    deg = np.bincount(rows_idx, weights=csr.weights, minlength=n)
    inv_deg = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    state = {"theta": theta0.copy()}

    def np_step() -> None:
        state["theta"] = numpy_step(state["theta"], omega, rows_idx, csr, inv_deg)

    results["numpy bincount"] = rate(np_step, repeat=max(3, repeat // 5))
    if n <= 10_000:
        theta_list, omega_list = theta0.tolist(), omega.tolist()
        results["pure-Python loop"] = rate(
            lambda: python_step(theta_list, omega_list, csr), repeat=1
        )
    gpu = _gpu_rate(omega, theta0, csr, repeat * 5)
    if gpu is not None:
        results[gpu[0]] = gpu[1]
    rows = [
        (f"{n:,}", f"{e:,}", name, f"{steps:,.1f}", f"{steps * e:,.3g}", f"{agora / steps:,.2f}x")
        for name, steps in results.items()
    ]
    mean_field = Oscillators(omega, COUPLING, TIME_STEP, theta0)
    steps = rate(mean_field.step, repeat=repeat)
    rows.append((f"{n:,}", "all-to-all", "Agora mean field O(N)", f"{steps:,.1f}", "-", "-"))
    return rows


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (N, E, implementation, steps/s, edge updates/s, Agora is)."""
    sizes = (
        [(10_000, 100_000), (100_000, 1_000_000)]
        if quick
        else [(10_000, 100_000), (1_000_000, 10_000_000)]
    )
    return [row for n, e in sizes for row in _size_rows(n, e)]
