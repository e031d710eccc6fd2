"""The Kuramoto graph step in torch, on the GPU (or the CPU), with the numba kernel's exact bits.

:class:`TorchOscillators` performs the same IEEE-754 operations in the same order as
``runtime.coordination.kuramoto``'s kernel, one elementwise torch operation at a time (a single
operation is correctly rounded on CPU and GPU alike, and eager torch never fuses two into a
multiply-add):

* sine and cosine: ``economy.portable_math``'s reduction and polynomials, operation by operation;
* each node's neighbour sums in CSR order: nodes are grouped by degree into buckets of powers of
  two, each bucket an ELL matrix ``[rows, D]`` of its neighbours in row order, and the sums add
  column 0, then column 1, ... -- so every row adds its terms in CSR order, as the CPU kernel does;
  columns past a row's degree leave its sums untouched (a select, not an added zero);
* on a GPU one step's kernels are captured as a CUDA graph (per coupling graph) and replayed;
* phases modulo 2π as ``np.mod`` takes them (``fmod``, then + 2π below zero).

So phases equal :class:`runtime.coordination.kuramoto.Oscillators` bit for bit, on every device:
tested on the CPU and on an NVIDIA H200 (tests/runtime/test_kuramoto_torch.py). A World run with
``--device cuda`` steps its oscillators here. Cost: about ``4 D_max`` kernels a step in all
(``D_max`` the longest row); the marketplace's rows are at most a few dozen long. A graph with a row
longer than ``LONGEST_ROW`` (a hub) steps on the host with the numba kernel instead -- the same
bits, none of the GPU's speed -- since summing one long row in order is sequential work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from economy import portable_math as pm
from runtime.coordination.kuramoto import CSR, Oscillators

TWO_PI = 2 * np.pi
LONGEST_ROW = 1024  # a graph with a longer row steps on the host's numba kernel (the same bits)


def torch_sincos(torch: Any, x: Any) -> tuple[Any, Any]:
    """:func:`economy.portable_math.sincos` as elementwise torch operations: the same bits."""
    k = torch.floor(x * pm.TWO_OVER_PI + 0.5)
    r = ((x - k * pm.P1) - k * pm.P2) - k * pm.P3
    z = r * r
    ps = pm.S13 + z * pm.S15
    for coef in (pm.S11, pm.S9, pm.S7, pm.S5, pm.S3):
        ps = coef + z * ps
    s = r + (r * z) * ps
    pc = pm.C14 + z * pm.C16
    for coef in (pm.C12, pm.C10, pm.C8, pm.C6, pm.C4, pm.C2):
        pc = coef + z * pc
    c = 1.0 + z * pc
    q = k - 4.0 * torch.floor(k * 0.25)
    odd = (q == 1.0) | (q == 3.0)
    sin_x = torch.where(odd, c, s)
    cos_x = torch.where(odd, s, c)
    sin_x = torch.where(q >= 2.0, -sin_x, sin_x)
    cos_x = torch.where((q == 1.0) | (q == 2.0), -cos_x, cos_x)
    return sin_x, cos_x


def torch_mod_2pi(torch: Any, x: Any) -> Any:
    """``np.mod(x, 2π)`` in torch: ``fmod``, then + 2π where negative; an exact zero is +0.0."""
    m = torch.fmod(x, TWO_PI)
    m = torch.where(m < 0, m + TWO_PI, m)
    return torch.where(m == 0, torch.zeros_like(m), m)


class _Bucket:
    """Rows whose degree lies in ``(low, high]``, as ELL matrices on the device."""

    def __init__(
        self, torch: Any, device: Any, csr: CSR, rows: npt.NDArray[np.int64], low: int, high: int
    ) -> None:
        counts = np.diff(csr.indptr)[rows]
        cols = np.arange(high)
        valid = cols[None, :] < counts[:, None]
        at = np.where(valid, csr.indptr[rows][:, None] + cols[None, :], 0)
        self.low, self.high = low, high
        self.rows = torch.as_tensor(rows, dtype=torch.int64, device=device)
        self.idx = torch.as_tensor(
            np.where(valid, csr.indices[at], 0), dtype=torch.int64, device=device
        )
        self.w = torch.as_tensor(
            np.where(valid, csr.weights[at], 0.0), dtype=torch.float64, device=device
        )
        self.valid = torch.as_tensor(valid, device=device)
        d = self.w[:, 0] + 0.0
        for k in range(1, high):  # the weighted degree, summed in row order as the CPU kernel does
            d = self.add(torch, k, d, self.w[:, k])
        self.d = d

    def add(self, torch: Any, k: int, acc: Any, term: Any, pair: bool = False) -> Any:
        """``acc + term`` in the rows that have a column ``k``, ``acc`` in the others (every row of
        the bucket has columns ``0..low``). ``pair``: ``acc`` and ``term`` are ``[rows, 2]``."""
        added = acc + term
        if k <= self.low:
            return added
        keep = self.valid[:, k, None] if pair else self.valid[:, k]
        return torch.where(keep, added, acc)


class TorchOscillators:
    """Phases stepped on a graph in torch (``device="cuda"`` for the GPU); equal to
    :class:`runtime.coordination.kuramoto.Oscillators` bit for bit. ``theta`` is a host copy of the
    phases, made when first read after a step."""

    def __init__(
        self,
        omega: npt.NDArray[np.float64],
        coupling: float,
        dt: float,
        theta: npt.NDArray[np.float64],
        csr: CSR,
        device: str = "cuda",
    ) -> None:
        import torch  # heavy; only this path needs it

        if dt <= 0 or coupling < 0:
            raise ValueError(f"need dt > 0 and coupling >= 0, got dt={dt}, coupling={coupling}")
        self.torch = torch
        self.device = torch.device(device)
        self.coupling = float(coupling)
        self.dt = float(dt)
        self.omega_t = torch.as_tensor(np.asarray(omega, dtype=np.float64), device=self.device)
        self.theta_t = torch.as_tensor(
            np.asarray(theta, dtype=np.float64).copy(), device=self.device
        )
        self._host: npt.NDArray[np.float64] | None = None
        self.csr = csr

    @property
    def theta(self) -> npt.NDArray[np.float64]:
        """The phases on the host (copied from the device once per step, when read)."""
        if self._host is None:
            self._host = self.theta_t.cpu().numpy()
        return self._host

    @property
    def csr(self) -> CSR:
        """The coupling graph; setting it rebuilds the device's buckets."""
        return self._csr

    @csr.setter
    def csr(self, csr: CSR) -> None:
        if csr.n != self.omega_t.shape[0]:
            raise ValueError(f"graph has {csr.n} nodes, frequencies {self.omega_t.shape[0]}")
        self._csr = csr
        self._captured: tuple[Any, Any] | None = None  # the CUDA graph of one step, and its phases
        counts = np.diff(csr.indptr)
        self._buckets: list[_Bucket] = []
        low, high = 0, 1
        top = int(counts.max()) if counts.size else 0
        self._on_host: Oscillators | None = None
        if (
            top > LONGEST_ROW
        ):  # sums that long are sequential work: the numba kernel does them, same bits
            self._on_host = Oscillators(
                self.omega_t.cpu().numpy(), self.coupling, self.dt, self.theta, csr
            )
            return
        while low < top:
            rows = np.flatnonzero((counts > low) & (counts <= high))
            if rows.size:
                self._buckets.append(_Bucket(self.torch, self.device, csr, rows, low, high))
            low, high = high, 2 * high

    def _euler(self, theta: Any) -> Any:
        """One Euler step from ``theta``: the new phases, not yet reduced."""
        torch = self.torch
        s, c = torch_sincos(torch, theta)
        sin_cos = torch.stack([s, c], dim=1)
        drift = self.omega_t.clone()
        for b in self._buckets:
            terms = (
                b.w[:, :, None] * sin_cos[b.idx]
            )  # [rows, D, 2]: each product rounded once, as on the CPU
            acc = terms[:, 0] + 0.0  # the CPU kernel starts from 0.0 (so −0.0 becomes +0.0)
            for k in range(1, b.high):
                acc = b.add(torch, k, acc, terms[:, k], pair=True)
            s_i, c_i = s[b.rows], c[b.rows]
            pull = (self.coupling * (acc[:, 0] * c_i - acc[:, 1] * s_i)) / b.d
            o = drift[b.rows]
            drift.index_copy_(0, b.rows, torch.where(b.d > 0.0, o + pull, o))
        return theta + self.dt * drift

    def step(self, n: int = 1) -> None:
        """Advance ``n`` Euler steps on the device (phases then taken mod 2π). On a GPU the step is
        captured once per graph as a CUDA graph and replayed: the same kernels, launched at once."""
        torch = self.torch
        if self._on_host is not None:
            self._on_host.theta[:] = self.theta
            self._on_host.step(n)
            self.theta_t = torch.as_tensor(self._on_host.theta.copy(), device=self.device)
            self._host = None
            return
        if n > 0 and self.device.type == "cuda":
            if self._captured is None:
                static = self.theta_t.clone()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):  # warm-up outside the capture, as CUDA graphs need
                    self._euler(static)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static.copy_(self._euler(static))
                self._captured = (graph, static)
            graph, static = self._captured
            static.copy_(self.theta_t)
            for _ in range(n):
                graph.replay()
            theta = static
        else:
            theta = self.theta_t
            for _ in range(n):
                theta = self._euler(theta)
        self.theta_t = torch_mod_2pi(torch, theta)
        self._host = None

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def phases(self) -> npt.NDArray[np.float64]:
        """Phases copied back to the host."""
        return self.theta_t.detach().cpu().numpy()
