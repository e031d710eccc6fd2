"""Every agent of a scenario's population learns at once: PettingZoo's parallel and AEC forms.

:func:`make_parallel_env` gives :class:`ScenarioParallelEnv` (the native form: all seats act each
tick); :func:`make_aec_env` its AEC form with PettingZoo's order-enforcing wrapper, checking each
action as it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pettingzoo import ParallelEnv
from pettingzoo.utils import conversions, wrappers

from environments.scenario_runner import SEED_MAX, ScenarioRunner


class ScenarioParallelEnv(ParallelEnv):  # type: ignore[type-arg]
    """Seats of population ``learners`` of a scenario, each an agent, in one World per episode.

    ## Description

    :class:`environments.scenario_env.ScenarioEnv` with many seats learning: agents
    ``<population>_<index>`` for every agent of the population (or the ``seats`` given); one
    ``step`` is one tick of the World.

    ## Action and Observation Spaces

    Per agent, the role's control form (negotiators: Market-v0's ``Box(-1, 1, (1,))`` action and
    ``Box(-1, 1, (4,))`` observation). An action outside the space, for an agent not in
    ``agents``, or missing for a live agent raises ``ValueError`` naming the agent and the value.

    ## Rewards

    Per agent, as :class:`environments.scenario_env.ScenarioEnv` (``reward="wealth"`` by default).

    ## Episode End

    An agent that crashed or went bankrupt (balance plus stake at zero) is terminated that tick
    and leaves ``agents``; its seat trades on as the role's scripted baseline. Every agent is
    truncated after the scenario's last tick. Stepping with no agents left raises ``RuntimeError``.

    ## Arguments

    ``make_parallel_env(scenario, learners, seats=None, reward="wealth", ticks=None,
    settings=None, record_dir=None)``, as :class:`environments.scenario_env.ScenarioEnv`.
    """

    metadata = {"name": "scenario_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(
        self,
        scenario: str | Path | dict[str, Any],
        learners: str,
        seats: list[int] | None = None,
        reward: Any = "wealth",
        ticks: int | None = None,
        settings: dict[str, Any] | None = None,
        record_dir: str | Path | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode {render_mode!r}: this environment renders 'ansi' only")
        self.runner = ScenarioRunner(scenario, learners, seats, reward, ticks, settings, record_dir)
        self.render_mode = render_mode
        self.possible_agents = [f"{learners}_{int(s)}" for s in self.runner.seats]
        self.index = {a: k for k, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self._live = np.zeros(len(self.possible_agents), dtype=np.bool_)
        self._seed_rng = np.random.default_rng()

    def observation_space(self, agent: str) -> Any:
        """The control form's observation space."""
        return self.runner.form.observation_space

    def action_space(self, agent: str) -> Any:
        """The control form's action space."""
        return self.runner.form.action_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, dict[str, Any]]]:
        """Start an episode in a fresh World with every seat; ``seed`` makes it reproducible."""
        if seed is not None:
            self._seed_rng = np.random.default_rng(seed)
        obs = self.runner.reset(int(self._seed_rng.integers(SEED_MAX)))
        self.agents = list(self.possible_agents)
        self._live[:] = True
        return dict(zip(self.agents, obs, strict=True)), {a: {} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, Any],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """One tick: every live agent's action in, everyone's outcome out."""
        if not self.agents:
            raise RuntimeError("scenario_v0: the episode is over; call reset()")
        form = self.runner.form
        rows = np.full((len(self.possible_agents), int(np.prod(form.action_space.shape))), np.nan)
        names = list(actions)
        seats = np.fromiter(
            (self.index.get(a, -1) for a in names), dtype=np.int64, count=len(names)
        )
        stray = (seats < 0) | ~self._live[np.maximum(seats, 0)]
        if stray.any():
            raise ValueError(
                f"scenario_v0: {names[int(np.argmax(stray))]!r} is not a live agent "
                f"(live: {len(self.agents)}); send actions for env.agents only"
            )
        try:  # one check over every action at once; one by one only to name a misshapen one
            stacked = np.stack([np.asarray(v) for v in actions.values()]) if names else rows[:0]
        except ValueError:
            for agent, action in actions.items():
                form.check(np.asarray(action)[None], lambda _, a=agent: a)
            raise
        rows[seats] = form.check(stacked, lambda r: names[r])
        if len(names) != len(self.agents):
            missing = [a for a in self.agents if a not in actions]
            more = " ..." if len(missing) > 3 else ""
            raise ValueError(
                f"scenario_v0: no action for {missing[:3]}{more}; every agent in "
                "env.agents acts each tick"
            )
        obs_all, reward, left, over = self.runner.step(rows)
        live = np.flatnonzero(self._live)
        names = [self.possible_agents[k] for k in live]
        term = left[live].tolist()
        obs = dict(zip(names, obs_all[live], strict=True))
        rewards = dict(zip(names, reward[live].tolist(), strict=True))
        terminations = dict(zip(names, term, strict=True))
        truncations = {a: over and not t for a, t in zip(names, term, strict=True)}
        infos: dict[str, dict[str, Any]] = {a: {} for a in names}
        self._live[live[np.asarray(term, dtype=np.bool_)]] = False
        if over:
            self._live[:] = False
        self.agents = [self.possible_agents[k] for k in np.flatnonzero(self._live)]
        if not self.agents:
            self.runner.finish()
        return obs, rewards, terminations, truncations, infos

    def render(self) -> str | None:
        """One line: tick and live agents."""
        if self.render_mode != "ansi" or self.runner.world is None:
            return None
        return f"tick {self.runner.world.tick}/{self.runner.ticks}  live {len(self.agents)}"

    def close(self) -> None:
        """Finish a recorded episode under way."""
        self.runner.finish()


class _CheckedAEC(conversions.parallel_to_aec_wrapper):  # type: ignore[misc]
    """PettingZoo's conversion of the parallel env, checking each action as it is given (the
    conversion alone holds actions until the last agent of the tick has acted)."""

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if action is not None and not (self.terminations.get(agent) or self.truncations.get(agent)):
            self.env.runner.form.check(np.asarray(action)[None], lambda _: agent)
        super().step(action)


def make_parallel_env(
    scenario: str | Path | dict[str, Any], learners: str, **kwargs: Any
) -> ScenarioParallelEnv:
    """The PettingZoo parallel env over population ``learners`` of ``scenario``
    (:class:`ScenarioParallelEnv`'s arguments)."""
    return ScenarioParallelEnv(scenario, learners, **kwargs)


def make_aec_env(scenario: str | Path | dict[str, Any], learners: str, **kwargs: Any) -> Any:
    """The AEC form of :func:`make_parallel_env`, with PettingZoo's order-enforcing wrapper."""
    return wrappers.OrderEnforcingWrapper(
        _CheckedAEC(make_parallel_env(scenario, learners, **kwargs))
    )
