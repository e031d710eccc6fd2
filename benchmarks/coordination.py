"""Kuramoto step benchmarks: the numba CSR kernel beside a numpy (bincount) version, a pure-Python
loop at small size, the torch kernel on a GPU when one is present, and the O(N) mean-field path.

Random graphs with ``E`` stored (directed) entries: ``E/2`` undirected edges between uniform nodes.
"""

from __future__ import annotations

import time

import numpy as np

from runtime.kuramoto import CSR, Oscillators

K, DT = 2.0, 0.01


def _graph(n: int, e: int, seed: int = 0) -> CSR:
    rng = np.random.default_rng(seed)
    return CSR.from_edges(n, rng.integers(0, n, e // 2), rng.integers(0, n, e // 2))


def _rate(step, repeat: int) -> float:  # type: ignore[no-untyped-def]
    step()  # warm up (compilation, caches)
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return repeat / (time.perf_counter() - start)


def numpy_step(theta, omega, rows, csr, inv_deg):  # type: ignore[no-untyped-def]
    """The same Euler step with numpy: gather, sine, bincount per row."""
    contrib = np.sin(theta[csr.indices] - theta[rows]) * csr.weights
    total = np.bincount(rows, weights=contrib, minlength=theta.shape[0])
    return theta + DT * (omega + K * total * inv_deg)


def python_step(theta, omega, csr):  # type: ignore[no-untyped-def]
    """The same Euler step as a plain Python loop over lists."""
    ip, ix, w = csr.indptr.tolist(), csr.indices.tolist(), csr.weights.tolist()
    out = []
    import math

    for i in range(len(theta)):
        s = d = 0.0
        for k in range(ip[i], ip[i + 1]):
            s += w[k] * math.sin(theta[ix[k]] - theta[i])
            d += w[k]
        out.append(theta[i] + DT * (omega[i] + (K * s / d if d else 0.0)))
    return out


def _gpu_rate(omega, theta0, csr: CSR, repeat: int) -> tuple[str, float] | None:  # type: ignore[no-untyped-def]
    """Steps/s of the torch kernel on the first CUDA GPU, or None where there is none."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from runtime.kuramoto_torch import TorchOscillators

    dev = TorchOscillators(omega, K, DT, theta0, csr, device="cuda")

    def gpu_step() -> None:
        dev.step()
        dev.synchronize()

    return f"torch on {torch.cuda.get_device_name(0)}", _rate(gpu_step, repeat)


def run(quick: bool) -> list[tuple[str, ...]]:
    """Rows: (N, E, implementation, steps/s, edge updates/s, Agora is)."""
    rows: list[tuple[str, ...]] = []
    sizes = [(10_000, 100_000), (100_000, 1_000_000)] if quick else [(10_000, 100_000), (1_000_000, 10_000_000)]
    for n, e in sizes:
        csr = _graph(n, e)
        rng = np.random.default_rng(1)
        omega, theta0 = rng.normal(0, 0.5, n), rng.uniform(0, 2 * np.pi, n)
        osc = Oscillators(omega, K, DT, theta0, csr)
        repeat = 50 if n <= 10_000 else 10
        agora = _rate(lambda: osc.step(), repeat)  # noqa: B023
        results = {"Agora numba CSR": agora}
        counts = np.diff(csr.indptr)
        rows_idx = np.repeat(np.arange(n), counts)
        deg = np.bincount(rows_idx, weights=csr.weights, minlength=n)
        inv_deg = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
        state = {"theta": theta0.copy()}

        def np_step() -> None:
            state["theta"] = numpy_step(state["theta"], omega, rows_idx, csr, inv_deg)  # noqa: B023

        results["numpy bincount"] = _rate(np_step, max(3, repeat // 5))
        if n <= 10_000:
            th, om = theta0.tolist(), omega.tolist()
            results["pure-Python loop"] = _rate(lambda: python_step(th, om, csr), 1)  # noqa: B023
        gpu = _gpu_rate(omega, theta0, csr, repeat * 5)
        if gpu is not None:
            results[gpu[0]] = gpu[1]
        for name, rate in results.items():
            rows.append((f"{n:,}", f"{e:,}", name, f"{rate:,.1f}", f"{rate * e:,.3g}", f"{agora / rate:,.2f}x"))
        mf = Oscillators(omega, K, DT, theta0)
        rate = _rate(lambda: mf.step(), repeat)  # noqa: B023
        rows.append((f"{n:,}", "all-to-all", "Agora mean field O(N)", f"{rate:,.1f}", "-", "-"))
    return rows
