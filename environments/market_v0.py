"""``environments.market_v0``: every negotiator learns at once, as a PettingZoo environment.

``parallel_env()`` is the native form (all negotiators act each period); ``raw_env()`` is its AEC
form and ``env()`` the AEC form with PettingZoo's order-enforcing wrapper, as PettingZoo's own
environments are laid out. :class:`MarketParallelEnv`'s docstring is the environment's page.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from pettingzoo import ParallelEnv
from pettingzoo.utils import conversions, wrappers

from agents.shade_policy import shade_from_action
from economy import MICRO
from environments.market import action_space, check_action, make_market, observation_space


def env(**kwargs: Any) -> Any:
    """The AEC environment with PettingZoo's order-enforcing wrapper."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))


def raw_env(**kwargs: Any) -> Any:
    """The AEC environment (the parallel one, converted), refusing a bad action when it is
    given."""
    return _CheckedAEC(parallel_env(**kwargs))


class _CheckedAEC(conversions.parallel_to_aec_wrapper):  # type: ignore[misc]
    """PettingZoo's conversion of the parallel market, which checks each action as it arrives: the
    conversion alone holds actions until the last agent of the round has acted, so a NaN given
    first would only be refused then."""

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if action is not None and not (self.terminations.get(agent) or self.truncations.get(agent)):
            check_action(self.action_space(agent), action, agent)  # raises, naming the agent
        super().step(action)


def parallel_env(**kwargs: Any) -> MarketParallelEnv:
    """The native parallel environment."""
    return MarketParallelEnv(**kwargs)


class MarketParallelEnv(ParallelEnv):  # type: ignore[type-arg]
    """``n_agents`` learning negotiators and as many ZI-C requesters in one task auction per period.

    ## Description

    The market of ``agora/Market-v0`` (:class:`environments.market.MarketEnv`) with every
    negotiator seat learning: agents ``negotiator_0 … negotiator_{n−1}`` each choose a shade per
    period and hold its ask for the period's 30 rounds; requesters bid as ZI-C traders.

    ## Action Space

    Per agent ``Box(-1, 1, (1,), float32)``: shade ``(a + 1)/2``, ask
    ``cost + shade·(2 − cost)``, as in Market-v0. An action outside the box, for an agent that
    is not in ``agents``, or missing for a live agent raises ``ValueError`` naming the agent;
    nothing is clipped.

    ## Observation Space

    Per agent Market-v0's ``Box(-1, 1, (4,), float32)``: cost, last clearing price, credits and
    share of the episode left, each scaled to ``[-1, 1]`` (the table in
    :class:`environments.market.MarketEnv`).

    ## Rewards

    Per agent the period's net gain in credits (one credit is a task's posted price): profit if
    it traded, minus the fee.

    ## Episode End

    A negotiator that cannot pay the next period's fee is bankrupt: it is terminated that period
    and leaves ``agents``; the others go on. All are truncated after ``periods`` periods.
    Stepping with no agents left raises ``RuntimeError``.

    ## Arguments

    ``parallel_env(n_agents=8, periods=50, fee=0.05, initial_credits=2.0, render_mode=None)``
    (``env()`` and ``raw_env()`` take the same).

    ## Version History

    * market_v0: spaces as Market-v0 v0 (action ``Box(-1, 1)``, observations in ``[-1, 1]``);
      development builds of Agora 0.1.0 before this used ``Box(0, 1)`` shades and unscaled
      observations under the same name.
    """

    metadata = {"name": "market_v0", "render_modes": ["ansi"], "is_parallelizable": True}

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
        self.possible_agents = [f"negotiator_{i}" for i in range(n_agents)]
        self.index = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self._live_set: set[str] = set()
        self._scripted = np.zeros(n_agents, dtype=np.bool_)
        self._seed_rng = np.random.default_rng()
        # One space object per agent, as PettingZoo expects.
        self._observation_spaces = {a: observation_space() for a in self.possible_agents}
        self._action_spaces = {a: action_space() for a in self.possible_agents}

    def observation_space(self, agent: str) -> Any:
        """Market-v0's observation space."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> Any:
        """Market-v0's action space."""
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, npt.NDArray[np.float32]], dict[str, dict[str, Any]]]:
        """Start an episode with every negotiator; ``seed`` makes it reproducible."""
        if seed is not None:
            self._seed_rng = np.random.default_rng(seed)
        self.market.reset(0, int(self._seed_rng.integers(2**63 - 1)))
        self.agents = list(self.possible_agents)
        self._live_set = set(self.agents)
        obs = self.market.observe()[0]
        return {a: obs[self.index[a]] for a in self.agents}, {a: {} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, Any],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """One period: every live negotiator's shade in, everyone's outcome out."""
        if not self.agents:
            raise RuntimeError("market_v0: the episode is over; call reset()")
        shade = np.zeros((1, self.market.n))
        live_set = self._live_set
        seats = np.empty(len(actions), dtype=np.int64)
        values = np.empty(len(actions))
        for k, (agent, action) in enumerate(actions.items()):
            if agent not in live_set:
                raise ValueError(
                    f"market_v0: {agent!r} is not a live agent (live: "
                    f"{len(self.agents)}); send actions for env.agents only"
                )
            arr = np.asarray(action)
            if arr.size != 1 or arr.dtype.kind not in "fiu":
                check_action(self.action_space(agent), action, agent)  # raises, naming the agent
            seats[k] = self.index[agent]
            values[k] = arr.flat[0]
        bad = ~np.isfinite(values) | (np.abs(values) > 1.0)
        if bad.any():  # the first offender, named as check_action names it
            first = int(np.argmax(bad))
            name = self.possible_agents[seats[first]]
            check_action(self.action_space(name), values[first], name)
        if len(actions) != len(live_set):
            missing = sorted(live_set - set(actions))
            more = " ..." if len(missing) > 3 else ""
            raise ValueError(
                f"market_v0: no action for {missing[:3]}{more}; every agent in "
                "env.agents acts each period"
            )
        shade[0, seats] = shade_from_action(values)
        gain, bankrupt, done = self.market.step(shade, self._scripted)
        obs_all = self.market.observe()[0]
        live = self.agents
        idx = np.fromiter((self.index[a] for a in live), dtype=np.int64, count=len(live))
        ended = bool(done[0])
        term_l = bankrupt[0, idx].tolist()
        obs = dict(zip(live, obs_all[idx], strict=True))
        rewards = dict(zip(live, (gain[0, idx] / MICRO).tolist(), strict=True))
        terminations = dict(zip(live, term_l, strict=True))
        truncations = {a: ended and not t for a, t in zip(live, term_l, strict=True)}
        credits = self.market.credits[0, idx].tolist()
        infos = {a: {"credits": c} for a, c in zip(live, credits, strict=True)}
        self.agents = [a for a, t in zip(live, term_l, strict=True) if not (t or ended)]
        self._live_set = set(self.agents)
        return obs, rewards, terminations, truncations, infos

    def render(self) -> str | None:
        """One line: period, live agents, last price, efficiency so far."""
        if self.render_mode != "ansi":
            return None
        m = self.market
        eff = m.surplus[0] / m.best[0] if m.best[0] else 0.0
        return (
            f"period {int(m.t[0])}/{m.periods}  live {len(self.agents)}  last price "
            f"{m.last_price[0]:.3f}  efficiency {eff:.3f}"
        )

    def close(self) -> None:
        """Nothing to release."""
