"""``agora/Market-v0``: one learning negotiator among scripted ZI-C peers, as a Gymnasium environment.

Spaces (documented here and in the README):

* observation ``Box(4,) float32``: ``[cost, last clearing price, credits / starting credits (capped
  at 10), share of the episode left]`` -- cost and price in units of the task's posted price;
* action ``Box(1,) float32`` in ``[0, 1]``: the shade; the negotiator asks ``cost + shade·(2 − cost)``;
* reward: this period's profit minus the participation fee, in credits;
* terminated when the negotiator goes bankrupt (cannot pay the next fee), truncated after
  ``periods`` periods.

An action outside the space raises ``ValueError`` naming the action and the space; nothing is
clipped. :class:`MarketVectorEnv` is the native batched form (Gymnasium's vector API, next-step
autoreset): ``num_envs`` markets cleared by one kernel call per step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from environments.market_core import OBS_DIM, UNIT, MarketBatch

OBS_LOW = np.array([0.5, 0.0, 0.0, 0.0], dtype=np.float32)
OBS_HIGH = np.array([1.5, 2.0, 10.0, 1.0], dtype=np.float32)


def observation_space() -> spaces.Box:
    """What a negotiator sees (see the module docstring)."""
    return spaces.Box(OBS_LOW, OBS_HIGH, shape=(OBS_DIM,), dtype=np.float32)


def action_space() -> spaces.Box:
    """A negotiator's shade in [0, 1]."""
    return spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)


def make_market(n_markets: int, n_agents: int, periods: int, fee: float, initial_credits: float,
                render_mode: str | None = None) -> MarketBatch:
    """The markets behind an environment, after checking its arguments (ValueError naming the bad one)."""
    if render_mode not in (None, "ansi"):
        raise ValueError(f"render_mode {render_mode!r}: this environment renders 'ansi' only")
    if fee < 0:
        raise ValueError(f"fee: must be >= 0 credits, got {fee}")
    if initial_credits <= 0:
        raise ValueError(f"initial_credits: must be > 0, got {initial_credits}")
    return MarketBatch(n_markets, n_agents, periods, int(round(fee * UNIT)), int(round(initial_credits * UNIT)))


def check_action(space: spaces.Box, action: Any, who: str) -> np.float64:
    """The shade in ``action``, or ValueError naming what is wrong (never a silent clip)."""
    arr = np.asarray(action)
    if arr.dtype.kind not in "fiu" or arr.shape not in ((1,), ()):  # booleans and strings are not shades
        raise ValueError(f"{who}: action {action!r} is not in {space} (need a float array of shape (1,))")
    value = float(arr.reshape(()))
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{who}: action {value!r} is outside {space}: a shade must lie in [0, 1]")
    return np.float64(value)


class MarketEnv(gym.Env[npt.NDArray[np.float32], npt.NDArray[np.float32]]):
    """One learning negotiator (seat 0) among ``n_agents − 1`` ZI-C negotiators and ``n_agents`` requesters."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, n_agents: int = 8, periods: int = 50, fee: float = 0.05, initial_credits: float = 2.0,
                 render_mode: str | None = None) -> None:
        self.market = make_market(1, n_agents, periods, fee, initial_credits, render_mode)
        self.render_mode = render_mode
        self.scripted = np.arange(n_agents) > 0
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._last_reward = 0.0
        self._over = True  # until the first reset(), and again once an episode ends

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Start an episode; ``seed`` makes it reproducible."""
        super().reset(seed=seed)
        self.market.reset(0, int(self.np_random.integers(2**63 - 1)))
        self._last_reward = 0.0
        self._over = False
        return self.market.observe()[0, 0], self._info()

    def step(self, action: Any) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """One trading period."""
        if self._over:
            raise RuntimeError("agora/Market-v0: the episode is over (the negotiator went bankrupt, or the "
                               "periods ran out), or has not started: call reset() before stepping")
        shade = np.zeros((1, self.market.n))
        shade[0, 0] = check_action(self.action_space, action, "agora/Market-v0")
        gain, bankrupt, done = self.market.step(shade, self.scripted)
        self._last_reward = float(gain[0, 0]) / UNIT
        terminated, truncated = bool(bankrupt[0, 0]), bool(done[0]) and not bankrupt[0, 0]
        self._over = terminated or truncated
        return self.market.observe()[0, 0], self._last_reward, terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        m = self.market
        return {"credits": int(m.credits[0, 0]), "efficiency": float(m.surplus[0] / m.best[0]) if m.best[0] else 0.0,
                "period": int(m.t[0])}

    def render(self) -> str | None:
        """One line: period, cost, last price, credits, last reward."""
        if self.render_mode != "ansi":
            return None
        m = self.market
        return (f"period {int(m.t[0])}/{m.periods}  cost {m.cost[0, 0]:.3f}  last price {m.last_price[0]:.3f}  "
                f"credits {m.credits[0, 0] / UNIT:.3f}  reward {self._last_reward:+.3f}")


class MarketVectorEnv(VectorEnv):  # type: ignore[type-arg]
    """``num_envs`` independent Market-v0 episodes stepped by one batched call (next-step autoreset)."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 16, n_agents: int = 8, periods: int = 50, fee: float = 0.05,
                 initial_credits: float = 2.0) -> None:
        self.num_envs = num_envs
        self.market = make_market(num_envs, n_agents, periods, fee, initial_credits)
        self.scripted = np.arange(n_agents) > 0
        self.single_observation_space = observation_space()
        self.single_action_space = action_space()
        self.observation_space = spaces.Box(np.tile(OBS_LOW, (num_envs, 1)), np.tile(OBS_HIGH, (num_envs, 1)),
                                            dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(num_envs, 1), dtype=np.float32)
        self._needs_reset = np.zeros(num_envs, dtype=np.bool_)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Reset every sub-environment; an int ``seed`` seeds sub-environment ``i`` with ``seed + i``."""
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
        if seeds is not None and len(seeds) != self.num_envs:
            raise ValueError(f"reset: {len(seeds)} seeds for {self.num_envs} environments")
        for b in range(self.num_envs):
            self.market.reset(b, None if seeds is None else int(seeds[b]) if seeds[b] is not None else None)
        self._needs_reset[:] = False
        return self.market.observe()[:, 0], {}

    def step(self, actions: Any) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.bool_],
                                          npt.NDArray[np.bool_], dict[str, Any]]:
        """One period in every market; a market whose episode ended last step is reset instead."""
        raw = np.asarray(actions)
        if raw.dtype.kind not in "fiu":  # strings, booleans, objects: not shades
            raise ValueError(f"actions of dtype {raw.dtype} are not in {self.action_space}: need float shades in "
                             f"[0, 1], shape ({self.num_envs}, 1)")
        arr = raw.astype(np.float64)
        if arr.shape != (self.num_envs, 1) or not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
            raise ValueError(f"actions of shape {arr.shape} are not in {self.action_space}: need shades in [0, 1], "
                             f"shape ({self.num_envs}, 1)")
        resetting = self._needs_reset.copy()
        shade = np.zeros((self.num_envs, self.market.n))
        shade[:, 0] = arr[:, 0]
        gain, bankrupt, done = self.market.step(shade, self.scripted)
        reward = gain[:, 0] / UNIT
        terminated = bankrupt[:, 0] & ~resetting
        truncated = done & ~terminated & ~resetting & self.market.alive[:, 0]
        for b in np.flatnonzero(resetting):
            self.market.reset(int(b), None)
        reward[resetting] = 0.0
        self._needs_reset = terminated | truncated
        # Learners that went bankrupt keep no seat in the next period; the market keeps stepping its
        # peers until the next-step reset, which is what Gymnasium's next-step autoreset expects.
        return self.market.observe()[:, 0], reward, terminated, truncated, {}
