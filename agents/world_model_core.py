"""The world model's core: an ensemble of small MLPs trained online by Adam.

Member ``m`` maps inputs ``x: float64[inputs]`` to ``tanh(x @ w1 + b1) @ w2 + b2``
(``w1: [inputs, hidden]``, ``w2: [hidden, outputs]``); the ensemble predicts the members' mean.
A learning step takes the mean squared error of the ensemble over a batch and moves every weight by
Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8: the defaults of torch's Adam, with its bias corrections).

Two forms with one interface: :class:`Ensemble` on the CPU keeps every weight in one float64 array
and steps it with a numba kernel whose sums run in a fixed order, so the same seed gives the same
bits on every processor; :class:`TorchEnsemble` runs the same model with ``torch.optim.Adam`` on a
GPU (``agora run --device cuda``), equal to rounding. Both start from the same weights, drawn from
the population's :class:`runtime.kernel.rng.Stream`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from economy.portable_math import tanh_scalar

BETA1 = 0.9
BETA2 = 0.999
EPSILON = 1e-8
NAMES = ("w1", "b1", "w2", "b2")


def _layout(inputs: int, hidden: int, outputs: int) -> list[tuple[str, tuple[int, ...]]]:
    """Each member's parameters, in their order in the flat array: name and shape."""
    return [
        ("w1", (inputs, hidden)),
        ("b1", (hidden,)),
        ("w2", (hidden, outputs)),
        ("b2", (outputs,)),
    ]


@njit(cache=True, error_model="numpy")
def _predict(params, members, inputs, hidden, outputs, x, out, hid):  # type: ignore[no-untyped-def]
    """``out[b, o]``: the ensemble's mean prediction; ``hid[m, b, k]``: each member's hidden
    layer."""
    size = inputs * hidden + hidden + hidden * outputs + outputs
    batch = x.shape[0]
    for b in range(batch):
        for o in range(outputs):
            out[b, o] = 0.0
    for m in range(members):
        base = m * size
        w1 = base
        b1 = w1 + inputs * hidden
        w2 = b1 + hidden
        b2 = w2 + hidden * outputs
        for b in range(batch):
            for k in range(hidden):
                acc = params[b1 + k]
                for i in range(inputs):
                    acc += x[b, i] * params[w1 + i * hidden + k]
                hid[m, b, k] = tanh_scalar(acc)
            for o in range(outputs):
                acc = params[b2 + o]
                for k in range(hidden):
                    acc += hid[m, b, k] * params[w2 + k * outputs + o]
                out[b, o] += acc
    for b in range(batch):
        for o in range(outputs):
            out[b, o] /= members


@njit(cache=True, error_model="numpy")
def _gradient(params, members, inputs, hidden, outputs, x, y, grad):  # type: ignore[no-untyped-def]
    """``grad``: d(mean squared error of the ensemble over the batch)/d(params)."""
    size = inputs * hidden + hidden + hidden * outputs + outputs
    batch = x.shape[0]
    pred = np.empty((batch, outputs))
    hid = np.empty((members, batch, hidden))
    _predict(params, members, inputs, hidden, outputs, x, pred, hid)
    g_pred = np.empty((batch, outputs))  # d loss / d member output (the mean's 1/members included)
    scale = 2.0 / (batch * outputs * members)
    for b in range(batch):
        for o in range(outputs):
            g_pred[b, o] = scale * (pred[b, o] - y[b, o])
    g_z = np.empty(hidden)
    for p in range(grad.shape[0]):
        grad[p] = 0.0
    for m in range(members):
        w1 = m * size
        b1 = w1 + inputs * hidden
        w2 = b1 + hidden
        b2 = w2 + hidden * outputs
        for b in range(batch):
            for k in range(hidden):
                acc = 0.0
                for o in range(outputs):
                    acc += g_pred[b, o] * params[w2 + k * outputs + o]
                    grad[w2 + k * outputs + o] += hid[m, b, k] * g_pred[b, o]
                g_z[k] = acc * (1.0 - hid[m, b, k] * hid[m, b, k])
                grad[b1 + k] += g_z[k]
                for i in range(inputs):
                    grad[w1 + i * hidden + k] += x[b, i] * g_z[k]
            for o in range(outputs):
                grad[b2 + o] += g_pred[b, o]


@njit(cache=True, error_model="numpy")
def _adam(params, first, second, grad, lr, bias1, bias2):  # type: ignore[no-untyped-def]
    """One Adam update of every parameter; ``bias1``/``bias2`` are ``1 − β^t`` for this step
    ``t``."""
    step = lr / bias1
    root2 = np.sqrt(bias2)
    for p in range(params.shape[0]):
        first[p] = BETA1 * first[p] + (1.0 - BETA1) * grad[p]
        second[p] = BETA2 * second[p] + (1.0 - BETA2) * grad[p] * grad[p]
        params[p] -= step * first[p] / (np.sqrt(second[p]) / root2 + EPSILON)


def initial_weights(
    rng: Any, members: int, inputs: int, hidden: int, outputs: int
) -> list[dict[str, npt.NDArray[np.float64]]]:
    """Each member's starting weights: ``w1 ~ N(0, 1/inputs')``, ``w2 ~ N(0, 0.01/hidden)``, zero
    biases (``inputs' = inputs − 1``: the window's length, without the pressure input)."""
    out = []
    for _ in range(members):
        w1 = np.asarray(rng.normal(0.0, 1.0, size=(inputs, hidden))) * (1.0 / (inputs - 1)) ** 0.5
        w2 = np.asarray(rng.normal(0.0, 1.0, size=(hidden, outputs))) * (1.0 / hidden) ** 0.5 * 0.1
        out.append({"w1": w1, "b1": np.zeros(hidden), "w2": w2, "b2": np.zeros(outputs)})
    return out


class Ensemble:
    """The ensemble on the CPU: one flat float64 array of weights and Adam's two moments."""

    def __init__(self, weights: list[dict[str, npt.NDArray[np.float64]]], lr: float) -> None:
        assert weights, "an ensemble needs at least one member"
        self.members = len(weights)
        self.inputs, self.hidden = weights[0]["w1"].shape
        self.outputs = weights[0]["w2"].shape[1]
        self.lr = float(lr)
        self.params = np.concatenate([m[n].ravel() for m in weights for n in NAMES]).astype(
            np.float64
        )
        self.first = np.zeros_like(self.params)
        self.second = np.zeros_like(self.params)
        self.steps = 0
        self.bias1 = 1.0  # β₁^t and β₂^t, kept as running products: no pow
        self.bias2 = 1.0

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The ensemble's mean prediction ``float64[batch, outputs]`` for ``x: float64[batch,
        inputs]``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        assert x.ndim == 2 and x.shape[1] == self.inputs, (
            f"inputs must be [batch, {self.inputs}], got {x.shape}"
        )
        out = np.empty((x.shape[0], self.outputs))
        hid = np.empty((self.members, x.shape[0], self.hidden))
        _predict(self.params, self.members, self.inputs, self.hidden, self.outputs, x, out, hid)
        return out

    def learn(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], steps: int) -> None:
        """``steps`` Adam steps on the mean squared error of the ensemble over ``(x, y)``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        assert x.shape[0] == y.shape[0] and y.shape[1] == self.outputs
        grad = np.empty_like(self.params)
        for _ in range(steps):
            _gradient(self.params, self.members, self.inputs, self.hidden, self.outputs, x, y, grad)
            self.steps += 1
            self.bias1 *= BETA1
            self.bias2 *= BETA2
            _adam(
                self.params,
                self.first,
                self.second,
                grad,
                self.lr,
                1.0 - self.bias1,
                1.0 - self.bias2,
            )

    def weights(self) -> dict[str, npt.NDArray[np.float64]]:
        """Every member's weights, named ``m<i>_<w1|b1|w2|b2>`` (copies)."""
        out, at = {}, 0
        for m in range(self.members):
            for name, shape in _layout(self.inputs, self.hidden, self.outputs):
                size = int(np.prod(shape))
                out[f"m{m}_{name}"] = self.params[at : at + size].reshape(shape).copy()
                at += size
        return out

    def set_weights(self, arrays: dict[str, npt.NDArray[np.float64]]) -> None:
        """Take up saved weights (names as :meth:`weights`)."""
        self.params = np.concatenate(
            [
                np.asarray(arrays[f"m{m}_{n}"], dtype=np.float64).ravel()
                for m in range(self.members)
                for n in NAMES
            ]
        )

    def flat(self) -> npt.NDArray[np.float64]:
        """Every weight in one array (for the state hash)."""
        return self.params.copy()


class TorchEnsemble:
    """The same ensemble as torch tensors on a GPU, trained by ``torch.optim.Adam``."""

    def __init__(
        self, weights: list[dict[str, npt.NDArray[np.float64]]], lr: float, device: str
    ) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = [
            [
                torch.as_tensor(m[n], dtype=torch.float64).to(self.device).requires_grad_()
                for n in NAMES
            ]
            for m in weights
        ]
        self.opt = torch.optim.Adam([p for member in self.model for p in member], lr=lr)

    def _forward(self, x: Any) -> Any:
        torch = self.torch
        outs = [torch.tanh(x @ w1 + b1) @ w2 + b2 for w1, b1, w2, b2 in self.model]
        return torch.stack(outs).mean(0)

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The ensemble's mean prediction as a host array."""
        with self.torch.no_grad():
            out = self._forward(self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return out.cpu().numpy()  # type: ignore[no-any-return]

    def learn(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], steps: int) -> None:
        """``steps`` Adam steps on the mean squared error of the ensemble."""
        xt = self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        yt = self.torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
        for _ in range(steps):
            self.opt.zero_grad()
            loss = ((self._forward(xt) - yt) ** 2).mean()
            loss.backward()
            self.opt.step()

    def weights(self) -> dict[str, npt.NDArray[np.float64]]:
        """Every member's weights as host arrays, named as :meth:`Ensemble.weights`."""
        return {
            f"m{i}_{n}": p.detach().cpu().numpy()
            for i, member in enumerate(self.model)
            for n, p in zip(NAMES, member, strict=True)
        }

    def set_weights(self, arrays: dict[str, npt.NDArray[np.float64]]) -> None:
        """Copy saved weights into the ensemble."""
        with self.torch.no_grad():
            for i, member in enumerate(self.model):
                for n, p in zip(NAMES, member, strict=True):
                    p.copy_(self.torch.from_numpy(np.asarray(arrays[f"m{i}_{n}"])).to(self.device))

    def flat(self) -> npt.NDArray[np.float64]:
        """Every weight in one host array, in :class:`Ensemble`'s order."""
        return np.concatenate([p.detach().cpu().numpy().ravel() for m in self.model for p in m])


def make_ensemble(
    rng: Any, members: int, inputs: int, hidden: int, outputs: int, lr: float, device: str
) -> Ensemble | TorchEnsemble:
    """The ensemble for ``device``, from weights drawn on the host: the same start anywhere."""
    weights = initial_weights(rng, members, inputs, hidden, outputs)
    return Ensemble(weights, lr) if device == "cpu" else TorchEnsemble(weights, lr, device)
