"""``agora/Market-v0``: one learning negotiator among scripted ZI-C peers, for Gymnasium.

:class:`MarketEnv` is the environment (its docstring is its documentation page);
:class:`MarketVectorEnv` is the native batched form (Gymnasium's vector API, next-step autoreset):
``num_envs`` markets cleared by one kernel call per step. The observation and the action-to-shade
map are defined once, in :mod:`agents.shade_policy`, which a scenario's negotiators use too.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from agents.shade_policy import ENV_ID, OBS_DIM, shade_from_action
from economy import MICRO
from environments.market_core import MarketBatch

ACTION_HINT = "an action in [-1, 1] (shade = (action + 1)/2); rescale it, or clip it to the box"


def observation_space(num_envs: int | None = None) -> spaces.Box:
    """What a negotiator sees: four features, each in ``[-1, 1]`` (:class:`MarketEnv`'s table);
    ``[num_envs, 4]`` when ``num_envs`` is given."""
    shape = (OBS_DIM,) if num_envs is None else (num_envs, OBS_DIM)
    return spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32)


def action_space(num_envs: int | None = None) -> spaces.Box:
    """A negotiator's action in ``[-1, 1]``, ``shape (1,)`` (``(num_envs, 1)`` when given)."""
    shape = (1,) if num_envs is None else (num_envs, 1)
    return spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32)


def make_market(
    n_markets: int,
    n_agents: int,
    periods: int,
    fee: float,
    initial_credits: float,
    render_mode: str | None = None,
) -> MarketBatch:
    """The markets behind an environment, after checking its arguments (ValueError naming the
    bad one)."""
    if render_mode not in (None, "ansi"):
        raise ValueError(f"render_mode {render_mode!r}: this environment renders 'ansi' only")
    if fee < 0:
        raise ValueError(f"fee: must be >= 0 credits, got {fee}")
    if initial_credits <= 0:
        raise ValueError(f"initial_credits: must be > 0, got {initial_credits}")
    return MarketBatch(
        n_markets, n_agents, periods, int(round(fee * MICRO)), int(round(initial_credits * MICRO))
    )


def check_action(space: spaces.Box, action: Any, who: str) -> np.float64:
    """The action's value in ``[-1, 1]``, or ValueError naming the action, the space and the fix
    (never a silent clip)."""
    arr = np.asarray(action)
    if arr.dtype.kind not in "fiu" or arr.shape not in ((1,), ()):  # booleans, strings: no
        raise ValueError(
            f"{who}: action {action!r} is not in {space}: need a float array of "
            f"shape (1,) holding {ACTION_HINT}"
        )
    value = float(arr.reshape(()))
    if not np.isfinite(value) or not -1.0 <= value <= 1.0:
        raise ValueError(f"{who}: action {value!r} is outside {space}: need {ACTION_HINT}")
    return np.float64(value)


class MarketEnv(gym.Env[npt.NDArray[np.float32], npt.NDArray[np.float32]]):
    """One learning negotiator (seat 0) among ``n_agents − 1`` ZI-C negotiators and ``n_agents``
    requesters, trading task contracts in a continuous double auction each period.

    ## Description

    Each period every negotiator draws a private cost for a task (0.5 to 1.5 times the task's
    posted price, which is one credit) and every requester a value (1 to 2 times); they trade in
    a 30-round continuous double auction (Gode & Sunder's rules, the negotiator role's auction:
    :mod:`environments.market_core`). Requesters bid as zero-intelligence-constrained (ZI-C)
    traders, uniformly up to their value in each round; the scripted negotiators ask as ZI-C
    traders, uniformly between their cost and the ceiling of 2 in each round. The learner chooses
    one ask per period and holds it for all 30 rounds. Each live negotiator pays a participation
    fee per period.

    ## Action Space

    ``Box(-1, 1, (1,), float32)``. The action ``a`` sets the shade ``s = (a + 1) / 2`` in
    ``[0, 1]`` (:func:`agents.shade_policy.shade_from_action`), and the negotiator asks
    ``cost + s·(2 − cost)``: ``a = -1`` asks its cost, ``a = 1`` the ceiling (never trades).
    The map is linear, so a uniform action is a uniform shade. An action outside the box (or NaN,
    or of another shape) raises ``ValueError`` naming the action and the space; nothing is
    clipped. Libraries that sample unbounded Gaussian actions (Stable-Baselines3's PPO) clip them
    to the box themselves before ``step``.

    ## Observation Space

    ``Box(-1, 1, (4,), float32)``, each feature scaled to ``[-1, 1]``
    (:func:`agents.shade_policy.market_observation`); prices are in units of the task's posted
    price.

    | Num | Observation                                    | Min | Max  |
    |-----|------------------------------------------------|-----|------|
    | 0   | cost of this period's task: ``2·(cost − 1)``   | -1  | 1    |
    | 1   | last period's mean clearing price: ``p − 1``   | -1  | 1    |
    | 2   | credits: ``(r − 1)/(r + 1)``                   | -1  | 9/11 |
    | 3   | share of the episode left: ``2·share − 1``     | -1  | 1    |

    The cost is 0.5 to 1.5 task prices. The last price is clipped to the box and is -1 when
    nothing traded (and in the first period). ``r`` is the credits over the starting credits,
    capped at 10: the feature is 0 at the start and falls towards -1 as the negotiator nears
    bankruptcy. The share left is 1 in the first period.

    ## Rewards

    The period's net gain in credits: ``price − cost`` if the negotiator traded (rounded down to
    a micro-credit), minus the fee. A credit is one task's posted price, so a reward lies in
    ``[-fee, 1.5 − fee]`` and a 50-period return is of order 1 to 10 (``benchmarks/results/
    envs.txt`` lists the returns of random, ZI-C and trained negotiators).

    ## Starting State

    Credits ``initial_credits``, a fresh cost, no last price (feature 1 is -1), all periods left.

    ## Episode End

    * Termination: the negotiator cannot pay the next period's fee (bankrupt).
    * Truncation: after ``periods`` periods.

    Stepping an episode that ended, or one never reset, raises ``RuntimeError``.

    ## Arguments

    ``gymnasium.make("agora/Market-v0", n_agents=8, periods=50, fee=0.05, initial_credits=2.0,
    render_mode=None)``: negotiators per market (the learner and ``n_agents − 1`` ZI-C peers),
    periods per episode, the fee per period and the starting credits (both in credits), and
    ``"ansi"`` for a one-line text render.

    ## Version History

    * v0: the action is ``Box(-1, 1)`` with shade ``(a + 1)/2``, and observations are scaled to
      ``[-1, 1]``. Development builds of Agora 0.1.0 before this took the shade itself
      (``Box(0, 1)``) and unscaled observations under the same id, which no release carried;
      policy files written for them (kind ``market-v0-ppo``) are refused on loading with a
      message (``docs/reference/policy-files.md``).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        n_agents: int = 8,
        periods: int = 50,
        fee: float = 0.05,
        initial_credits: float = 2.0,
        render_mode: str | None = None,
    ) -> None:
        self.market = make_market(1, n_agents, periods, fee, initial_credits, render_mode)
        self.render_mode = render_mode
        self.scripted = np.arange(n_agents) > 0
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._last_reward = 0.0
        self._over = True  # until the first reset(), and again once an episode ends

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Start an episode; ``seed`` makes it reproducible."""
        super().reset(seed=seed)
        self.market.reset(0, int(self.np_random.integers(2**63 - 1)))
        self._last_reward = 0.0
        self._over = False
        return self.market.observe()[0, 0], self._info()

    def step(
        self, action: Any
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """One trading period at the shade ``(action + 1)/2``."""
        if self._over:
            raise RuntimeError(
                f"{ENV_ID}: the episode is over (the negotiator went bankrupt, or "
                "the periods ran out), or has not started: call reset() before "
                "stepping"
            )
        shade = np.zeros((1, self.market.n))
        shade[0, 0] = shade_from_action(check_action(self.action_space, action, ENV_ID))
        gain, bankrupt, done = self.market.step(shade, self.scripted)
        self._last_reward = float(gain[0, 0]) / MICRO
        terminated = bool(bankrupt[0, 0])
        truncated = bool(done[0]) and not terminated
        self._over = terminated or truncated
        obs = self.market.observe()[0, 0]
        return obs, self._last_reward, terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        m = self.market
        efficiency = float(m.surplus[0] / m.best[0]) if m.best[0] else 0.0
        return {"credits": int(m.credits[0, 0]), "efficiency": efficiency, "period": int(m.t[0])}

    def render(self) -> str | None:
        """One line: period, cost, last price, credits, last reward."""
        if self.render_mode != "ansi":
            return None
        m = self.market
        return (
            f"period {int(m.t[0])}/{m.periods}  cost {m.cost[0, 0]:.3f}  last price "
            f"{m.last_price[0]:.3f}  credits {m.credits[0, 0] / MICRO:.3f}  reward "
            f"{self._last_reward:+.3f}"
        )


class MarketVectorEnv(VectorEnv):  # type: ignore[type-arg]
    """``num_envs`` independent Market-v0 episodes stepped by one batched call (next-step
    autoreset); spaces, rewards and episode ends are :class:`MarketEnv`'s, batched."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 16,
        n_agents: int = 8,
        periods: int = 50,
        fee: float = 0.05,
        initial_credits: float = 2.0,
    ) -> None:
        self.num_envs = num_envs
        self.market = make_market(num_envs, n_agents, periods, fee, initial_credits)
        self.scripted = np.arange(n_agents) > 0
        self.single_observation_space = observation_space()
        self.single_action_space = action_space()
        self.observation_space = observation_space(num_envs)
        self.action_space = action_space(num_envs)
        self._needs_reset = np.zeros(num_envs, dtype=np.bool_)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Reset every sub-environment; an int ``seed`` seeds sub-environment ``i`` with
        ``seed + i``."""
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
        if seeds is not None and len(seeds) != self.num_envs:
            raise ValueError(f"reset: {len(seeds)} seeds for {self.num_envs} environments")
        for b in range(self.num_envs):
            one = None if seeds is None or seeds[b] is None else int(seeds[b])
            self.market.reset(b, one)
        self._needs_reset[:] = False
        return self.market.observe()[:, 0], {}

    def step(
        self, actions: Any
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float64],
        npt.NDArray[np.bool_],
        npt.NDArray[np.bool_],
        dict[str, Any],
    ]:
        """One period in every market; a market whose episode ended last step is reset instead."""
        shade = np.zeros((self.num_envs, self.market.n))
        shade[:, 0] = shade_from_action(self._checked(actions)[:, 0])
        resetting = self._needs_reset.copy()
        gain, bankrupt, done = self.market.step(shade, self.scripted)
        reward = gain[:, 0] / MICRO
        terminated = bankrupt[:, 0] & ~resetting
        truncated = done & ~terminated & ~resetting & self.market.alive[:, 0]
        for b in np.flatnonzero(resetting):
            self.market.reset(int(b), None)
        reward[resetting] = 0.0
        self._needs_reset = terminated | truncated
        # Learners that went bankrupt keep no seat in the next period; the market keeps stepping
        # its peers until the next-step reset, which is what Gymnasium's next-step autoreset
        # expects.
        return self.market.observe()[:, 0], reward, terminated, truncated, {}

    def _checked(self, actions: Any) -> npt.NDArray[np.float64]:
        """``actions`` as float64 ``[num_envs, 1]`` in the box, or ValueError saying what is
        wrong."""
        raw = np.asarray(actions)
        need = f"need shape ({self.num_envs}, 1), each {ACTION_HINT}"
        if raw.dtype.kind not in "fiu":  # strings, booleans, objects: not actions
            raise ValueError(f"actions of dtype {raw.dtype} are not in {self.action_space}: {need}")
        arr = raw.astype(np.float64)
        if arr.shape != (self.num_envs, 1):
            raise ValueError(f"actions of shape {arr.shape} are not in {self.action_space}: {need}")
        bad = ~np.isfinite(arr[:, 0]) | (np.abs(arr[:, 0]) > 1.0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"action {float(arr[i, 0])!r} of sub-environment {i} is outside "
                f"{self.action_space}: {need}"
            )
        return arr
