"""The negotiators' policy: a shared two-layer network with a rank-2 MicroLoRA adapter per agent.

For agent ``n`` with features ``x_n: float64[2]``::

    W_n    = w1 + ALPHA · A_n @ B_n           (w1: [2, HIDDEN], A_n: [2, 2], B_n: [2, HIDDEN])
    h_n    = tanh(x_n @ W_n + b1)             ([HIDDEN])
    logit  = h_n · w2 + b2

A REINFORCE step with per-agent advantage ``a_n``, Gaussian exploration ``noise_n`` and its
deviation ``sigma`` moves the shared weights by the population's mean gradient and each adapter
``A_n`` by its own agent's gradient (``B_n`` stays fixed, as in LoRA with a frozen projection).

Two forms with one interface: :class:`Policy` on the CPU runs numba kernels that sum in a fixed
order (per-agent work in parallel, the population's sums over fixed chunks added in order), so the
same seed gives the same bits on every processor at any thread count; :class:`TorchPolicy` runs
the same arithmetic as torch tensors on a GPU (``agora run --device cuda``), equal to rounding.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from economy.portable_math import tanh_scalar

HIDDEN = 8
ALPHA = 0.1  # MicroLoRA scale
CHUNKS = 64  # the population's sums: this many fixed slices, each summed in order, then in order


@njit(cache=True, parallel=True, error_model="numpy")
def _forward(x, w1, b1, w2, b2, a, b, logits, hidden):  # type: ignore[no-untyped-def]
    """Fill ``logits[n]`` and ``hidden[n, HIDDEN]`` for every agent (module docstring)."""
    n, width = hidden.shape
    for i in prange(n):
        for k in range(width):
            w_0k = w1[0, k] + ALPHA * (a[i, 0, 0] * b[i, 0, k] + a[i, 0, 1] * b[i, 1, k])
            w_1k = w1[1, k] + ALPHA * (a[i, 1, 0] * b[i, 0, k] + a[i, 1, 1] * b[i, 1, k])
            hidden[i, k] = tanh_scalar(x[i, 0] * w_0k + x[i, 1] * w_1k + b1[k])
        acc = 0.0
        for k in range(width):
            acc += hidden[i, k] * w2[k]
        logits[i] = acc + b2


@njit(cache=True, parallel=True, error_model="numpy")
def _gradients(x, hidden, w2, g_out, g_hidden, partial):  # type: ignore[no-untyped-def]
    """Per agent: ``g_hidden[n, k] = g_out[n]·w2[k]·(1 − h²)``; per chunk of agents, in
    ``partial[c]``: the sums of ``h·g_out`` (w2), ``g_out`` (b2), ``g_hidden`` (b1) and
    ``x ⊗ g_hidden`` (w1), laid out as ``[w2 | b2 | b1 | w1 row 0 | w1 row 1]``."""
    n, width = hidden.shape
    for i in prange(n):
        for k in range(width):
            g_hidden[i, k] = g_out[i] * w2[k] * (1.0 - hidden[i, k] * hidden[i, k])
    chunks = partial.shape[0]
    size = (n + chunks - 1) // chunks
    for c in prange(chunks):
        for j in range(partial.shape[1]):
            partial[c, j] = 0.0
        for i in range(c * size, min(n, (c + 1) * size)):
            for k in range(width):
                partial[c, k] += hidden[i, k] * g_out[i]
                partial[c, width + 1 + k] += g_hidden[i, k]
                partial[c, 2 * width + 1 + k] += x[i, 0] * g_hidden[i, k]
                partial[c, 3 * width + 1 + k] += x[i, 1] * g_hidden[i, k]
            partial[c, width] += g_out[i]


@njit(cache=True, parallel=True, error_model="numpy")
def _adapt(x, g_hidden, b, a, mask, scale):  # type: ignore[no-untyped-def]
    """Each masked agent's adapter: ``A_n += scale · (x_n ⊗ g_hidden_n) @ B_nᵀ``."""
    n, width = g_hidden.shape
    for i in prange(n):
        if not mask[i]:
            continue
        for r in range(2):
            for j in range(2):
                acc = 0.0
                for k in range(width):
                    acc += x[i, r] * g_hidden[i, k] * b[i, j, k]
                a[i, r, j] += scale * acc


def _sum_chunks(partial: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The chunks' partial sums added in chunk order (a fixed order, whatever the thread count)."""
    total = np.zeros(partial.shape[1])
    for row in partial:
        total = total + row
    return total


class Policy:
    """The policy on the CPU: numpy arrays stepped by fixed-order numba kernels (module docstring).

    ``rng`` draws the initial weights (a :class:`runtime.kernel.rng.Stream`: normal draws that are
    the
    same bits everywhere). ``forward`` and ``learn`` keep the torch form's signatures.
    """

    def __init__(self, n_agents: int, rng: Any, device: str = "cpu") -> None:
        assert device == "cpu", "the CPU policy; TorchPolicy runs on a GPU"
        assert n_agents >= 0
        self.w1 = np.asarray(rng.normal(0, 0.5, size=(2, HIDDEN)), dtype=np.float64)
        self.b1 = np.zeros(HIDDEN)
        self.w2 = np.asarray(rng.normal(0, 0.1, size=HIDDEN), dtype=np.float64)
        self.b2 = np.float64(-1.0)  # start shading ~27%
        self.A = np.zeros((n_agents, 2, 2))  # adapter: W1_i = w1 + ALPHA * A_i @ B_i
        self.B = np.asarray(rng.normal(0, 0.1, size=(n_agents, 2, HIDDEN)), dtype=np.float64)

    def arrays(self) -> dict[str, npt.NDArray[np.float64]]:
        """Every parameter as a host array (for hashing and saving)."""
        return {
            "w1": self.w1.copy(),
            "b1": self.b1.copy(),
            "w2": self.w2.copy(),
            "b2": np.array(self.b2),
            "A": self.A.copy(),
            "B": self.B.copy(),
        }

    def set_shared(
        self,
        w1: npt.NDArray[np.float64],
        b1: npt.NDArray[np.float64],
        w2: npt.NDArray[np.float64],
        b2: float,
    ) -> None:
        """Replace the shared weights (a loaded policy file)."""
        self.w1, self.b1, self.w2, self.b2 = (
            np.array(w1, dtype=np.float64),
            np.array(b1, np.float64),
            np.array(w2, dtype=np.float64),
            np.float64(b2),
        )

    def forward(
        self, x: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Shade logits ``float64[n]`` for features ``x: float64[n, 2]``, and the hidden layer."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        assert x.shape == (self.A.shape[0], 2), f"features must be [agents, 2], got {x.shape}"
        logits = np.empty(x.shape[0])
        hidden = np.empty((x.shape[0], HIDDEN))
        _forward(x, self.w1, self.b1, self.w2, float(self.b2), self.A, self.B, logits, hidden)
        return logits, hidden

    def learn(
        self,
        x: npt.NDArray[np.float64],
        h: npt.NDArray[np.float64],
        advantage: Any,
        noise: Any,
        sigma: float,
        lr_base: float,
        lr_adapter: float,
        agents_only: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """REINFORCE step on the shade logits; the base learns from everyone, each adapter from its
        agent."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        n = x.shape[0]
        g_out = np.ascontiguousarray(np.asarray(advantage, dtype=np.float64) * noise / sigma)
        g_hidden = np.empty((n, HIDDEN))
        partial = np.empty((CHUNKS, 4 * HIDDEN + 1))
        _gradients(x, np.ascontiguousarray(h), self.w2, g_out, g_hidden, partial)
        total = _sum_chunks(partial) / max(n, 1)
        mask = (
            np.ones(n, dtype=np.bool_) if agents_only is None else np.asarray(agents_only, np.bool_)
        )
        # Adapters first: their gradient uses B only, which the base step leaves alone.
        _adapt(x, g_hidden, self.B, self.A, mask, lr_adapter * ALPHA)
        self.w2 = self.w2 + lr_base * total[:HIDDEN]
        self.b2 = np.float64(self.b2 + lr_base * total[HIDDEN])
        self.b1 = self.b1 + lr_base * total[HIDDEN + 1 : 2 * HIDDEN + 1]
        self.w1 = self.w1 + lr_base * total[2 * HIDDEN + 1 :].reshape(2, HIDDEN)

    def save(self, path: Path) -> None:
        """Write the shared weights to an .npz file (written to bytes first: the same bytes every
        run)."""
        save_shared(path, self.arrays())

    def load(self, path: Path) -> None:
        """Read shared weights saved by :meth:`save`; raise ValueError naming what does not fit."""
        self.set_shared(*load_shared(path, self.w1.shape, self.w2.shape))


class TorchPolicy:
    """The same policy as torch tensors on ``device`` (a GPU): equal to :class:`Policy` to
    rounding."""

    def __init__(self, n_agents: int, rng: Any, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        host = Policy(n_agents, rng)  # the same draws as the CPU form, then moved
        for name, value in host.arrays().items():
            setattr(self, name, self.put(value))

    def put(self, a: Any) -> Any:
        """A float64 tensor on the policy's device."""
        return self.torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device)

    def arrays(self) -> dict[str, npt.NDArray[np.float64]]:
        """Every parameter as a host array (for hashing and saving)."""
        return {
            k: getattr(self, k).detach().cpu().numpy() for k in ("w1", "b1", "w2", "b2", "A", "B")
        }

    def save(self, path: Path) -> None:
        """Write the shared weights to an .npz file."""
        save_shared(path, self.arrays())

    def load(self, path: Path) -> None:
        """Read shared weights saved by :meth:`save`; raise ValueError naming what does not fit."""
        w1, b1, w2, b2 = load_shared(path, tuple(self.w1.shape), tuple(self.w2.shape))
        self.w1, self.b1, self.w2, self.b2 = self.put(w1), self.put(b1), self.put(w2), self.put(b2)

    def forward(self, x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], Any]:
        """Shade logits ``float64[n]`` (host array) for features ``x: float64[n, 2]``, and the
        hidden layer."""
        torch = self.torch
        xt = self.put(x)
        w = self.w1[None] + ALPHA * torch.einsum("nij,njk->nik", self.A, self.B)
        h = torch.tanh(torch.einsum("ni,nik->nk", xt, w) + self.b1)
        return (h @ self.w2 + self.b2).cpu().numpy(), h

    def learn(
        self,
        x: Any,
        h: Any,
        advantage: Any,
        noise: Any,
        sigma: float,
        lr_base: float,
        lr_adapter: float,
        agents_only: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """REINFORCE step on the shade logits (as :meth:`Policy.learn`)."""
        torch = self.torch
        xt = self.put(x)
        g_out = self.put(np.asarray(advantage) * noise / sigma)
        g_h = torch.outer(g_out, self.w2) * (1 - h**2)
        g_w = torch.einsum("ni,nk->nik", xt, g_h)
        g_a = torch.einsum("nik,njk->nij", g_w, self.B)
        self.w2 = self.w2 + lr_base * (h * g_out[:, None]).mean(0)
        self.b2 = self.b2 + lr_base * g_out.mean()
        self.b1 = self.b1 + lr_base * g_h.mean(0)
        self.w1 = self.w1 + lr_base * torch.einsum("ni,nk->ik", xt, g_h) / xt.shape[0]
        mask = np.ones(x.shape[0], dtype=bool) if agents_only is None else agents_only
        step = torch.zeros_like(self.A)
        idx = torch.as_tensor(np.flatnonzero(mask), device=self.device)
        step[idx] = lr_adapter * ALPHA * g_a[idx]
        self.A = self.A + step


def make_policy(n_agents: int, rng: Any, device: str) -> Policy | TorchPolicy:
    """The policy for ``device``: the fixed-order CPU form, or the torch form on a GPU."""
    return Policy(n_agents, rng) if device == "cpu" else TorchPolicy(n_agents, rng, device)


def save_shared(path: Path, arrays: dict[str, npt.NDArray[np.float64]]) -> None:
    """Write a policy's shared weights (w1, b1, w2, b2) to ``path`` as .npz bytes."""
    buf = io.BytesIO()
    np.savez(buf, w1=arrays["w1"], b1=arrays["b1"], w2=arrays["w2"], b2=np.atleast_1d(arrays["b2"]))
    path.write_bytes(buf.getvalue())


def load_shared(
    path: Path, w1_shape: tuple[int, ...], w2_shape: tuple[int, ...]
) -> tuple[Any, Any, Any, float]:
    """Read shared weights written by :func:`save_shared`; ValueError naming what does not fit."""
    try:
        with np.load(path, allow_pickle=False) as data:
            w1, b1, w2, b2 = data["w1"], data["b1"], data["w2"], data["b2"]
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a negotiator policy file ({exc})") from None
    arrays = (w1, b1, w2, b2)
    if any(a.dtype.kind != "f" for a in arrays):
        raise ValueError(
            f"{path}: policy weights must be floats, got {[str(a.dtype) for a in arrays]}"
        )
    if (
        w1.shape != w1_shape
        or b1.shape != (w1_shape[1],)
        or w2.shape != w2_shape
        or b2.shape != (1,)
    ):
        raise ValueError(
            f"{path}: policy shapes {w1.shape}/{b1.shape}/{w2.shape}/{b2.shape} do not fit "
            f"{w1_shape}/{(w1_shape[1],)}/{w2_shape}/(1,)"
        )
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"{path}: policy weights must be finite (found NaN or infinity)")
    return w1, b1, w2, float(b2[0])
