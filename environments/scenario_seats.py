"""Many seats of one World as the sub-environments of one Gymnasium vector env.

Parameter sharing, as multi-agent trainers use it: ``k`` seats of a population learn one policy
together, so one World tick gives ``k`` agent-steps instead of one. :class:`SeatsVectorEnv` drives
seats ``0..k-1`` of population ``learner`` in each of ``worlds`` Worlds; sub-env ``w·k + i`` is
seat ``i`` of World ``w``. :func:`environments.scenario_env.make_vec_env` builds it when
``seats_per_world`` is above 1.

Episodes are runs, so a World's seats start and end together. The vector autoresets on the next
step (Gymnasium's ``NEXT_STEP`` mode): the step after a World's last tick resets that World and
gives its seats' first observations with zero reward, and the actions passed for them are not
used. A seat that leaves before the end (crashed or bankrupt) reports ``terminated`` on the tick
it leaves and on every later tick of that episode (zero reward, its actions unused: it acts as the
role's scripted baseline), so a trainer masks those steps as it masks autoreset steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from environments.scenario_runner import SEED_MAX, ScenarioRunner
from runtime.kernel.control import Reward


class SeatsVectorEnv(gym.vector.VectorEnv):  # type: ignore[type-arg]
    """``seats_per_world`` seats of ``learner`` in each of ``worlds`` Worlds of ``scenario``.

    Args:
        scenario: a scenario file, or its tables as a dict.
        learner: the population whose seats learn.
        worlds: how many Worlds step together.
        seats_per_world: seats ``0..seats_per_world-1`` of ``learner`` in each World.
        reward, ticks, settings: as for :class:`environments.scenario_env.ScenarioEnv`.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        scenario: str | Path | dict[str, Any],
        learner: str,
        worlds: int = 1,
        seats_per_world: int = 8,
        reward: str | Reward = "wealth",
        ticks: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(worlds, int) or worlds < 1:
            raise ValueError(f"worlds {worlds!r}: expected a whole number >= 1")
        if not isinstance(seats_per_world, int) or seats_per_world < 1:
            raise ValueError(f"seats_per_world {seats_per_world!r}: expected a whole number >= 1")
        self.runners = [
            ScenarioRunner(scenario, learner, list(range(seats_per_world)), reward, ticks, settings)
            for _ in range(worlds)
        ]
        form = self.runners[0].form
        self.k = seats_per_world
        self.num_envs = worlds * seats_per_world
        self.single_observation_space = form.observation_space
        self.single_action_space = form.action_space
        self.observation_space = gym.vector.utils.batch_space(form.observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(form.action_space, self.num_envs)
        self._rng = np.random.default_rng()
        self._needs_reset = np.ones(worlds, dtype=np.bool_)
        self._gone = np.zeros(self.num_envs, dtype=np.bool_)  # seats that left this episode

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Start an episode in every World; ``seed`` (one int) makes them reproducible."""
        if seed is not None:
            if not isinstance(seed, (int, np.integer)):
                raise ValueError(f"seed {seed!r}: this vector env takes one int seed")
            self._rng = np.random.default_rng(int(seed))
        obs = [self._reset_world(w) for w in range(len(self.runners))]
        return np.concatenate(obs), {}

    def _reset_world(self, w: int) -> npt.NDArray[np.float32]:
        self._needs_reset[w] = False
        self._gone[w * self.k : (w + 1) * self.k] = False
        return self.runners[w].reset(int(self._rng.integers(SEED_MAX)))

    def step(
        self, actions: Any
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float64],
        npt.NDArray[np.bool_],
        npt.NDArray[np.bool_],
        dict[str, Any],
    ]:
        """One tick of every World with its seats' actions (one row per sub-env)."""
        runner0 = self.runners[0]
        rows = runner0.form.check(
            np.asarray(actions).reshape(self.num_envs, *self.single_action_space.shape),
            lambda i: f"sub-env {i} ({runner0.learner} seat {i % self.k})",
        )
        n = self.num_envs
        obs = np.zeros((n, *self.single_observation_space.shape), dtype=np.float32)
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        for w, runner in enumerate(self.runners):
            part = slice(w * self.k, (w + 1) * self.k)
            if self._needs_reset[w]:
                obs[part] = self._reset_world(w)
                continue
            act = rows[part].copy()
            act[self._gone[part]] = np.nan  # a departed seat acts as the scripted baseline
            o, r, left, over = runner.step(act)
            obs[part] = o
            reward[part] = np.where(self._gone[part], 0.0, r)
            self._gone[part] |= left
            terminated[part] = self._gone[part]
            truncated[part] = over & ~self._gone[part]
            if over:
                runner.finish()
                self._needs_reset[w] = True
        return obs, reward, terminated, truncated, {}

    def close_extras(self, **kwargs: Any) -> None:
        """Finish the episodes under way."""
        for runner in self.runners:
            runner.finish()
