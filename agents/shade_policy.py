"""A trained negotiator policy: a saved ``agora/Market-v0`` actor, evaluated with numpy.

This module holds the interface that ``agora/Market-v0`` and a scenario's negotiators share, so the
two cannot drift apart:

* :func:`market_observation` -- the four observation features, each scaled to ``[-1, 1]``;
* :func:`shade_from_action` -- the action in ``[-1, 1]`` to the shade in ``[0, 1]``:
  ``shade = (action + 1) / 2``; the negotiator asks ``cost + shade·(2 − cost)``;
* :class:`ShadePolicy` -- a policy file (``docs/reference/policy-files.md``): an MLP actor whose
  output is squashed into the action box, then mapped to a shade.

``agora train`` writes policy files, and so does :mod:`environments.convert_sb3` from a
Stable-Baselines3 model; a scenario's negotiators load one with ``core = "path/to/policy.npz"``.
The forward pass uses :mod:`economy.portable_math` (fixed-order sums, portable ``tanh``), so a run
whose contractors use a policy gives the same bits on every CPU.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from economy.portable_math import matmul, tanh

POLICY_KIND = "agora-shade-policy"
POLICY_FORMAT = 1  # bumped when a reader of an older format could misread a newer file
LEGACY_KIND = "market-v0-ppo"  # raw observations and a sigmoid shade: refused with a message
ENV_ID = "agora/Market-v0"
OBS_DIM = 4  # cost, last clearing price, credits, time left
CREDITS_RATIO_CAP = 10.0  # credits over starting credits is capped here before scaling
ACTIVATIONS = ("tanh", "relu")
SQUASHES = ("clip", "tanh")


def market_observation(
    cost: npt.ArrayLike,
    last_price: npt.ArrayLike,
    credits_ratio: npt.ArrayLike,
    share_left: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Market-v0's observation, ``float64[..., 4]``, from a negotiator's quantities (broadcast).

    Args:
        cost: the negotiator's cost for this period's task, in units of the task's posted price
            (0.5 to 1.5); feature ``2·(cost − 1)``.
        last_price: the mean clearing price of the last period in the same unit, 0 when nothing
            traded; feature ``last_price − 1`` clipped to ``[-1, 1]`` (-1: no trade).
        credits_ratio: credits over starting credits (0 or more); feature ``(r − 1)/(r + 1)`` with
            ``r`` capped at 10: 0 at the start, towards -1 near bankruptcy, 9/11 at the cap.
        share_left: the share of the episode (or run) still to come, 1 to 0; feature
            ``2·share_left − 1``.

    Notes:
        Only additions, multiplications, divisions and comparisons: the same bits on every CPU.
    """
    ratio = np.clip(np.asarray(credits_ratio, dtype=np.float64), 0.0, CREDITS_RATIO_CAP)
    columns = np.broadcast_arrays(
        2.0 * (np.asarray(cost, dtype=np.float64) - 1.0),
        np.clip(np.asarray(last_price, dtype=np.float64) - 1.0, -1.0, 1.0),
        (ratio - 1.0) / (ratio + 1.0),
        2.0 * np.asarray(share_left, dtype=np.float64) - 1.0,
    )
    obs = np.stack(columns, axis=-1)
    assert obs.shape[-1] == OBS_DIM
    return obs


def shade_from_action(action: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The shade in ``[0, 1]`` for an action in Market-v0's box ``[-1, 1]``:
    ``(action + 1) / 2``."""
    a = np.asarray(action, dtype=np.float64)
    assert not (np.abs(a) > 1.0).any(), "actions are checked against the box before they are mapped"
    return (a + 1.0) / 2.0


def _str(data: Any, name: str) -> str:
    if name not in data.files:
        raise ValueError(f"missing the array {name!r}")
    return str(data[name])


def is_shade_policy(path: Path) -> bool:
    """Whether ``path`` is a Market-v0 policy file (this format or the legacy one, which
    :class:`ShadePolicy` refuses with a message saying how to replace it)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return "kind" in data.files and str(data["kind"]) in (POLICY_KIND, LEGACY_KIND)
    except (OSError, ValueError, EOFError):
        return False


class ShadePolicy:
    """A policy file's actor, evaluated with numpy: observation ``[n, 4]`` -> shade ``float64[n]``.

    The hidden layers apply ``activation``; the last layer's output ``u`` becomes an action in
    ``[-1, 1]`` by ``squash`` (``clip``: ``min(max(u, -1), 1)``, what Stable-Baselines3 does with a
    Gaussian policy's mean; ``tanh``: ``tanh(u)``), and the shade is ``(action + 1) / 2``. The
    policy is deterministic.

    Raises:
        ValueError: ``path`` is not a readable policy file of this format (the message says why).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self._read(data)
        except (OSError, KeyError, ValueError, TypeError, EOFError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def _read(self, data: Any) -> None:
        kind = _str(data, "kind")
        if kind == LEGACY_KIND:
            raise ValueError(
                f"kind {kind!r} is a policy for Market-v0's former spaces (raw "
                "observations, shade = sigmoid); train it again with `agora train` or "
                "convert a Stable-Baselines3 model with `python -m "
                "environments.convert_sb3` (docs/reference/policy-files.md)"
            )
        if kind != POLICY_KIND:
            raise ValueError(f"kind {kind!r}: expected {POLICY_KIND!r}")
        version = int(data["format"]) if "format" in data.files else -1
        if version != POLICY_FORMAT:
            raise ValueError(f"format {version}: this Agora reads format {POLICY_FORMAT}")
        self.activation, self.squash = _str(data, "activation"), _str(data, "squash")
        self.source = _str(data, "source") if "source" in data.files else ""
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r}: expected one of {ACTIVATIONS}")
        if self.squash not in SQUASHES:
            raise ValueError(f"squash {self.squash!r}: expected one of {SQUASHES}")
        self.layers = _read_layers(data)

    def action(self, obs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The deterministic action in ``[-1, 1]`` for observations ``[n, 4]``:
        ``float64[n, 1]``."""
        h = np.asarray(obs, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != OBS_DIM:
            raise ValueError(
                f"observations of shape {h.shape}: expected (n, {OBS_DIM}), "
                "Market-v0's observation per row"
            )
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            h = matmul(h, w.T) + b  # fixed-order sums and portable tanh: the same bits on any CPU
            if k < last:
                h = tanh(h) if self.activation == "tanh" else np.maximum(h, 0.0)
        out = np.clip(h, -1.0, 1.0) if self.squash == "clip" else np.asarray(tanh(h))
        assert out.shape == (h.shape[0], 1)
        return out

    def __call__(self, obs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The shade in ``[0, 1]`` for observations ``[n, 4]``: ``float64[n]``."""
        shade = shade_from_action(self.action(obs)[:, 0])
        assert ((shade >= 0.0) & (shade <= 1.0)).all()
        return shade


def _read_layers(data: Any) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """``weight_k``/``bias_k`` for k = 0, 1, ... as float64, checked to chain from 4 inputs to 1."""
    layers = []
    while f"weight_{len(layers)}" in data.files:
        k = len(layers)
        w, b = data[f"weight_{k}"], data[f"bias_{k}"]
        if w.dtype not in (np.float32, np.float64) or b.dtype != w.dtype:
            raise ValueError(
                f"weight_{k}/bias_{k}: dtypes {w.dtype}/{b.dtype}, expected "
                "float32 or float64, the same for both"
            )
        inputs = OBS_DIM if k == 0 else layers[-1][0].shape[0]
        if w.ndim != 2 or w.shape[1] != inputs or b.shape != (w.shape[0],):
            raise ValueError(
                f"weight_{k} {w.shape} / bias_{k} {b.shape}: expected (out, {inputs}) / (out,)"
            )
        layers.append((w.astype(np.float64), b.astype(np.float64)))
    if not layers or layers[-1][0].shape[0] != 1:
        raise ValueError(
            "the last layer must have one output (the action); found "
            f"{layers[-1][0].shape[0] if layers else 'no weight_0'}"
        )
    return layers


def save_policy_file(
    path: str | Path,
    weights: Sequence[npt.NDArray[np.floating[Any]]],
    biases: Sequence[npt.NDArray[np.floating[Any]]],
    activation: str,
    squash: str,
    source: str,
) -> None:
    """Write a policy file (the format of ``docs/reference/policy-files.md``) and check it loads.

    Args:
        path: the ``.npz`` file to write.
        weights: ``[out, in]`` per layer, first layer ``in = 4``, last ``out = 1``; float32 or
            float64 (stored as given).
        biases: ``[out]`` per layer, the weights' dtype.
        activation: the hidden layers' activation, ``tanh`` or ``relu``.
        squash: how the last layer's output becomes an action in ``[-1, 1]``: ``clip`` or ``tanh``.
        source: what wrote the file (free text, kept in the file).
    """
    if len(weights) != len(biases) or not weights:
        raise ValueError(
            f"{len(weights)} weights and {len(biases)} biases: need one of each per "
            "layer, at least one layer"
        )
    arrays: dict[str, Any] = {
        "kind": np.array(POLICY_KIND),
        "format": np.array(POLICY_FORMAT, dtype=np.int64),
        "env_id": np.array(ENV_ID),
        "agora_role": np.array("negotiator"),
        "activation": np.array(activation),
        "squash": np.array(squash),
        "source": np.array(source),
    }
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        arrays[f"weight_{k}"], arrays[f"bias_{k}"] = np.asarray(w), np.asarray(b)
    buf = io.BytesIO()  # np.savez given a path would add '.npz' to a name without it
    np.savez(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())
    ShadePolicy(Path(path))  # refuses what it could not read back
