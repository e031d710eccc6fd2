"""A trained negotiator policy: a saved Market-v0 actor, evaluated with numpy.

``agora train`` (PPO on ``agora/Market-v0``) writes it as ``policy.npz``; a scenario's negotiators
load it with ``core = "path/to/policy.npz"``. The actor maps a negotiator's observation -- ``[cost,
last clearing price, credits / starting credits (capped at 10), share of the episode left]``, cost
and price in units of the task's posted price -- to a shade in [0, 1] (sigmoid of the actor's
mean: the deterministic policy); the negotiator asks ``cost + shade·(2 − cost)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from economy.portable_math import matmul, sigmoid, tanh

POLICY_KIND = "market-v0-ppo"
OBS_DIM = 4


def is_shade_policy(path: Path) -> bool:
    """Whether ``path`` is a policy file written by ``agora train``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return "kind" in data.files and str(data["kind"]) == POLICY_KIND
    except (OSError, ValueError):
        return False


class ShadePolicy:
    """A saved Market-v0 actor, evaluated with numpy: observation ``[n, 4]`` -> shade ``[n]`` (deterministic)."""

    def __init__(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data.get("kind", "")) != POLICY_KIND:
                    raise ValueError(f"not a {POLICY_KIND} policy file")
                self.layers = [(data[f"actor_{i}_weight"].astype(np.float64), data[f"actor_{i}_bias"].astype(np.float64))
                               for i in (0, 2, 4)]
        except (OSError, KeyError, ValueError, TypeError, EOFError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if self.layers[0][0].shape[1] != OBS_DIM:
            raise ValueError(f"{path}: the actor takes {self.layers[0][0].shape[1]} inputs, Market-v0 has {OBS_DIM}")

    def __call__(self, obs: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        h = np.asarray(obs, dtype=np.float64)
        for k, (w, b) in enumerate(self.layers):
            h = matmul(h, w.T) + b  # fixed-order sums and portable tanh: the same bits on any CPU
            if k < 2:
                h = tanh(h)
        return sigmoid(h[:, 0])  # type: ignore[no-any-return]
