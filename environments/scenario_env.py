"""``agora/Scenario-v0``: one seat of a scenario's population learns; the World runs everything
else.

:class:`ScenarioEnv` is the environment (its docstring is its documentation page); :func:`make_env`
and :func:`make_vec_env` build it and a Gymnasium vector env of many worlds. The PettingZoo forms,
every agent of the population at once, are in :mod:`environments.scenario_parallel`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from environments.scenario_runner import SEED_MAX, ScenarioRunner
from runtime.kernel.control import Reward

ENV_ID = "agora/Scenario-v0"
DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "small_market.toml"


class ScenarioEnv(gym.Env[npt.NDArray[np.float32], npt.NDArray[np.float32]]):
    """One agent of a scenario's population, driven by a learner, in a full World of the scenario.

    ## Description

    Each episode builds the scenario's World with a fresh seed and runs it tick by tick: one
    ``step`` is one tick. The agent in seat ``seat`` of population ``learner`` takes its decisions
    from the actions given; every other agent (its population's other seats included) acts as the
    scenario says, and faults, the network, the ledger replicas and the market run as in
    ``agora run``.

    ## Action Space

    The learner role's control form (``role.control_form().action_space``). Negotiators:
    ``Box(-1, 1, (1,), float32)``, the shade ``(a + 1)/2`` of the ask held in every round of the
    tick's auction, as in ``agora/Market-v0``. An action outside the box, NaN, or of another shape
    raises ``ValueError`` naming the value and the space; nothing is clipped.

    ## Observation Space

    The control form's observation space. Negotiators: Market-v0's ``Box(-1, 1, (4,), float32)``
    -- the cost of this tick's task, last tick's mean contract price, credits over starting
    credits, the share of the run left -- so a policy trained here loads back as the
    population's core (``core = "policy.npz"``, ``docs/reference/policy-files.md``).

    ## Rewards

    ``reward="wealth"`` (default): the change over the tick of the agent's balance plus stake at
    its home replica, in credits. A role adds its own (negotiators: ``"profit"``, price minus
    cost of the tick's contract, credits); a callable ``(world, population, seats,
    wealth_before_micro) -> credits`` is taken as it is.

    ## Episode End

    * Termination: the agent crashed (a fault took it down) or its balance plus stake is zero
      (bankrupt).
    * Truncation: the scenario's last tick (``ticks``) has run.

    Stepping an episode that ended, or one never reset, raises ``RuntimeError``.

    ## Arguments

    ``make_env(scenario, learner, seat=0, reward="wealth", ticks=None, settings=None,
    record_dir=None)``: the scenario file (or its tables as a dict), the learning population, the
    agent's index in it, the reward, ticks per episode, scenario keys to override
    (``{"population.negotiators.count": 100}``), and a folder where each episode is recorded as a
    run (``agora replay --verify`` reproduces it: the actions are recorded inputs). Registered as
    ``gymnasium.make("agora/Scenario-v0", scenario=..., learner=...)``.

    ## Version History

    * v0: the first version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: str | Path | dict[str, Any] = DEFAULT_SCENARIO,
        learner: str = "negotiators",
        seat: int = 0,
        reward: str | Reward = "wealth",
        ticks: int | None = None,
        settings: dict[str, Any] | None = None,
        record_dir: str | Path | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode {render_mode!r}: this environment renders 'ansi' only")
        if not isinstance(seat, (int, np.integer)) or isinstance(seat, bool):
            raise ValueError(f"seat {seat!r}: expected the index of one agent of {learner!r}")
        self.runner = ScenarioRunner(
            scenario, learner, [int(seat)], reward, ticks, settings, record_dir
        )
        self.render_mode = render_mode
        self.observation_space = self.runner.form.observation_space
        self.action_space = self.runner.form.action_space
        self.name = f"{learner}_{int(seat)}"
        self._over = True
        self._last_reward = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Start an episode in a fresh World; ``seed`` makes it reproducible."""
        super().reset(seed=seed)
        obs = self.runner.reset(int(self.np_random.integers(SEED_MAX)))
        self._over = False
        self._last_reward = 0.0
        return obs[0], self._info()

    def step(
        self, action: Any
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """One tick with the learner's ``action``."""
        if self._over:
            raise RuntimeError(
                f"{ENV_ID}: the episode is over (the agent left, or the ticks ran "
                "out), or has not started: call reset() before stepping"
            )
        row = self.runner.form.check(np.asarray(action)[None], lambda _: self.name)
        obs, reward, left, over = self.runner.step(row)
        terminated = bool(left[0])
        truncated = over and not terminated
        self._over = terminated or truncated
        if self._over:
            self.runner.finish()
        self._last_reward = float(reward[0])
        return obs[0], self._last_reward, terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        world = self.runner.world
        assert world is not None
        return {"tick": world.tick, "wealth_micro": int(self.runner._wealth[0])}

    def render(self) -> str | None:
        """One line: tick, wealth, last reward."""
        if self.render_mode != "ansi":
            return None
        info = self._info()
        return (
            f"tick {info['tick']}/{self.runner.ticks}  {self.name}  wealth "
            f"{info['wealth_micro'] / 1e6:.3f}  reward {self._last_reward:+.3f}"
        )

    def close(self) -> None:
        """Finish a recorded episode under way."""
        self.runner.finish()


def make_env(scenario: str | Path | dict[str, Any], learner: str, **kwargs: Any) -> ScenarioEnv:
    """A Gymnasium env in which one seat of population ``learner`` of ``scenario`` learns
    (:class:`ScenarioEnv`'s arguments)."""
    return ScenarioEnv(scenario, learner, **kwargs)


def make_vec_env(
    scenario: str | Path | dict[str, Any],
    learner: str,
    num_envs: int = 4,
    seats_per_world: int = 1,
    **kwargs: Any,
) -> gym.vector.VectorEnv:  # type: ignore[type-arg]
    """``num_envs`` learning seats of ``scenario`` in one Gymnasium vector env (next-step
    autoreset).

    With ``seats_per_world`` 1, each sub-env is a World of its own with one learning seat (a
    ``SyncVectorEnv`` of :class:`ScenarioEnv`; ``record_dir`` gets one folder per world, ``env_0``,
    ``env_1``, ...). Above 1, seats ``0..seats_per_world-1`` of each World learn together, sharing
    the policy: ``num_envs / seats_per_world`` Worlds
    (:class:`environments.scenario_seats.SeatsVectorEnv`; not recorded).
    """
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs {num_envs!r}: expected a whole number >= 1")
    if not isinstance(seats_per_world, int) or seats_per_world < 1:
        raise ValueError(f"seats_per_world {seats_per_world!r}: expected a whole number >= 1")
    if seats_per_world > 1:
        from environments.scenario_seats import SeatsVectorEnv

        if num_envs % seats_per_world:
            raise ValueError(
                f"num_envs {num_envs}: expected a multiple of seats_per_world {seats_per_world} "
                "(each World gives that many sub-envs)"
            )
        if kwargs.get("record_dir") is not None:
            raise ValueError(
                "record_dir: a vector of shared seats is not recorded; use "
                "seats_per_world=1 to record episodes"
            )
        kwargs.pop("record_dir", None)
        return SeatsVectorEnv(
            scenario, learner, num_envs // seats_per_world, seats_per_world, **kwargs
        )
    record = kwargs.pop("record_dir", None)

    def one(i: int) -> Any:
        folder = None if record is None else Path(record) / f"env_{i}"
        return lambda: ScenarioEnv(scenario, learner, record_dir=folder, **kwargs)

    return gym.vector.SyncVectorEnv([one(i) for i in range(num_envs)])
