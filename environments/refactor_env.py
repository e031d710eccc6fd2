"""``agora/Refactor-v0``: one refactor agent improving a simulated codebase on a budget.

:class:`RefactorEnv`'s docstring is the environment's page.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from agents.refactor import ACTIONS, COST_PER_SIZE, REWARD_PER_QUALITY, Codebase, apply_action
from economy.rates import MICRO


class RefactorEnv(gym.Env[npt.NDArray[np.float32], npt.NDArray[np.int64]]):
    """A codebase of ``modules`` modules, a budget in credits, ``steps`` actions at most.

    ## Description

    The codebase is the refactor role's (:class:`agents.refactor.Codebase`: a networkx DAG of
    modules, each with a size, a complexity and a test coverage), and actions have the role's
    effects and costs (:func:`agents.refactor.apply_action`). A replacement that would make the
    dependency graph cyclic is refused by the critic's z3 check and costs nothing.

    ## Action Space

    ``MultiDiscrete([modules, 3])``: a module, then refactor (0), replace (1) or rollback (2).
    An action outside the space raises ``ValueError`` naming the action and the space.

    ## Observation Space

    ``Box(0, 1, (3·modules + 1,), float32)``, every feature already on a unit scale:

    | Num                    | Observation                        | Min | Max |
    |------------------------|------------------------------------|-----|-----|
    | 0 … modules−1          | each module's complexity / 10      | 0.1 | 1   |
    | modules … 2·modules−1  | each module's test coverage        | 0   | 1   |
    | 2·modules … 3·modules−1| each module dirty (tests broken)   | 0   | 1   |
    | 3·modules              | share of the budget left           | 0   | 1   |

    ## Rewards

    What the role earns and pays, in credits: the noisy benchmark's change × 10, minus the
    action's cost (0.1, 1 or 0.05 credit per size unit for refactor, replace, rollback). The
    budget itself is kept in integer micro-credits. Costs dominate: an episode that spends the
    budget returns about ``-budget``.

    ## Starting State

    A fresh codebase drawn from the seed, the whole budget.

    ## Episode End

    * Termination: the budget cannot pay for the cheapest action (a rollback of the smallest
      module).
    * Truncation: after ``steps`` actions.

    Stepping an episode that ended raises ``RuntimeError``.

    ## Arguments

    ``gymnasium.make("agora/Refactor-v0", modules=20, budget=100.0, steps=100,
    render_mode=None)``.

    ## Version History

    * v0: the current version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        modules: int = 20,
        budget: float = 100.0,
        steps: int = 100,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode {render_mode!r}: this environment renders 'ansi' only")
        if modules < 2:
            raise ValueError(f"modules: need at least 2, got {modules}")
        self.render_mode = render_mode
        self.modules, self.budget, self.steps = modules, budget, steps
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3 * modules + 1,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([modules, len(ACTIONS)])
        self.code: Codebase | None = None
        self.budget_micro = int(round(budget * MICRO))
        self.left = self.budget_micro  # micro-credits: credits are integers
        self.t = 0
        self.start_quality = 0.0
        self._last = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """A fresh codebase and budget; ``seed`` makes the episode reproducible."""
        super().reset(seed=seed)
        self.code = Codebase(self.modules, self.np_random)
        self.left, self.t, self._last = self.budget_micro, 0, ""
        self.start_quality = self.code.quality()
        return self._obs(), self._info()

    def step(
        self, action: Any
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Pay for and apply one action."""
        if self.code is None:
            raise RuntimeError("call reset() before step()")
        arr = np.asarray(action)
        if (
            arr.shape != (2,)
            or arr.dtype.kind not in "iu"
            or not self.action_space.contains(arr.astype(np.int64))
        ):
            raise ValueError(
                f"agora/Refactor-v0: action {action!r} is not in {self.action_space}"
                f" (need integers: a module in 0..{self.modules - 1} and an action "
                f"in 0..{len(ACTIONS) - 1})"
            )
        if self._done():
            raise RuntimeError("the budget is spent: call reset() before stepping again")
        if self.t >= self.steps:
            raise RuntimeError(
                f"the episode ended after {self.steps} steps: call reset() before stepping again"
            )
        m, a = int(arr[0]), int(arr[1])
        name = ACTIONS[a]
        cost = self._cost(name, m)
        if cost > self.left:
            self._last = (
                f"{name} {m}: {cost / MICRO:.2f} credits, only {self.left / MICRO:.2f} left"
            )
            self.t += 1
            done = self._done()
            return self._obs(), 0.0, done, self.t >= self.steps and not done, self._info()
        self.left -= cost
        before = self.code.quality() + self.np_random.normal(0, 0.002)
        refused = apply_action(self.code, m, name, self.np_random)
        if refused:
            self.left += cost  # a refused plan is not carried out and not paid for
            cost = 0
        after = self.code.quality() + self.np_random.normal(0, 0.002)
        reward = (after - before) * REWARD_PER_QUALITY - cost / MICRO
        self.t += 1
        outcome = refused or f"benchmark {after - before:+.4f}, cost {cost / MICRO:.2f}"
        self._last = f"{name} {m}: {outcome}"
        terminated = self._done()
        truncated = self.t >= self.steps and not terminated
        return self._obs(), float(reward), terminated, truncated, self._info()

    def _cost(self, name: str, m: int) -> int:
        assert self.code is not None
        return int(round(COST_PER_SIZE[name] * float(self.code.size[m]) * MICRO))

    def _done(self) -> bool:
        assert self.code is not None
        return self.left < self._cost("rollback", int(np.argmin(self.code.size)))

    def _obs(self) -> npt.NDArray[np.float32]:
        assert self.code is not None
        c = self.code
        return np.concatenate(
            [
                c.complexity / 10.0,
                np.clip(c.coverage, 0, 1),
                c.dirty.astype(np.float64),
                [self.left / self.budget_micro],
            ]
        ).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        assert self.code is not None
        return {
            "quality": self.code.quality(),
            "quality_gained": self.code.quality() - self.start_quality,
            "budget_left": self.left / MICRO,
        }

    def render(self) -> str | None:
        """One line: step, quality, budget left, last action."""
        if self.render_mode != "ansi" or self.code is None:
            return None
        return (
            f"step {self.t}/{self.steps}  quality {self.code.quality():+.4f}  budget "
            f"{self.left / MICRO:.2f}  "
            f"last: {self._last or '-'}"
        )
