"""Mean episode returns on ``agora/Market-v0`` for a policy, a uniform-random action or ZI-C.

One protocol for ``agora train``'s final evaluation and the ``envs`` benchmark: for each held-out
seed ``s``, ``episodes`` episodes reset with seeds ``1000·s + e``; the figure per seed is the mean
undiscounted return. Every contender meets the same markets (costs, values, peers' draws) up to
the point where its own asks change what happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from economy import MICRO
from environments.market import MarketEnv

RANDOM = "random"  # a uniform action in [-1, 1] each period: a uniform shade
ZIC = "zi-c"  # the learner's seat asks as its ZI-C peers do: a fresh uniform ask every round

Actor = Callable[[npt.NDArray[np.float32]], Any]


def mean_returns(
    policy: Actor | str, seeds: Sequence[int], episodes: int, **env_kwargs: Any
) -> list[float]:
    """Mean return per seed of ``policy`` on Market-v0 made with ``env_kwargs``.

    Args:
        policy: a function from an observation ``float32[4]`` to an action in the box
            (``float32[1]``), or :data:`RANDOM`, or :data:`ZIC`.
        seeds: held-out seeds, one figure each.
        episodes: episodes per seed.
        env_kwargs: :class:`environments.market.MarketEnv`'s arguments.

    Returns:
        ``len(seeds)`` mean returns, in credits.
    """
    if episodes < 1 or not seeds:
        raise ValueError(f"need at least one seed and one episode, got {len(seeds)} and {episodes}")
    if isinstance(policy, str) and policy not in (RANDOM, ZIC):
        raise ValueError(f"policy {policy!r}: expected a function, {RANDOM!r} or {ZIC!r}")
    env = MarketEnv(**env_kwargs)
    means = []
    for seed in seeds:
        draws = np.random.default_rng(seed)  # the random contender's stream, apart from the env's
        total = 0.0
        for e in range(episodes):
            obs, _ = env.reset(seed=1000 * seed + e)
            if policy == ZIC:
                total += _zic_episode(env)
                continue
            done = False
            while not done:
                action = (
                    draws.uniform(-1.0, 1.0, 1).astype(np.float32)
                    if policy == RANDOM
                    else policy(obs)
                )  # type: ignore[operator]
                obs, reward, terminated, truncated, _ = env.step(action)
                total += reward
                done = terminated or truncated
        means.append(total / episodes)
    assert len(means) == len(seeds)
    return means


def scenario_returns(
    policy: Actor | str,
    scenario: Any,
    learner: str,
    seeds: Sequence[int],
    episodes: int,
    **env_kwargs: Any,
) -> list[float]:
    """Mean return per seed of ``policy`` in seat 0 of population ``learner`` of ``scenario``
    (:class:`environments.scenario_env.ScenarioEnv`'s reward), the World seeded ``1000·s + e``
    for episode ``e`` of seed ``s``. :data:`ZIC` lets the seat trade as the role's scripted
    baseline (a negotiator: a ZI-C ask drawn afresh every round)."""
    from environments.scenario_runner import ScenarioRunner

    if episodes < 1 or not seeds:
        raise ValueError(f"need at least one seed and one episode, got {len(seeds)} and {episodes}")
    runner = ScenarioRunner(scenario, learner, [0], **env_kwargs)
    means = []
    for seed in seeds:
        draws = np.random.default_rng(seed)
        total = 0.0
        for e in range(episodes):
            obs = runner.reset(1000 * seed + e)[0]
            while True:
                if policy == ZIC:
                    action = np.full((1, 1), np.nan)
                elif policy == RANDOM:
                    action = draws.uniform(-1.0, 1.0, (1, 1))
                else:
                    action = runner.form.check(np.asarray(policy(obs))[None], lambda _: learner)  # type: ignore[operator]
                obs_all, reward, left, over = runner.step(action)
                obs = obs_all[0]
                total += float(reward[0])
                if left[0] or over:
                    break
        means.append(total / episodes)
    return means


def _zic_episode(env: MarketEnv) -> float:
    """One episode with the learner's seat scripted as ZI-C (its action is not used), from a reset
    ``env``; the return in credits."""
    market = env.market
    everyone = np.ones(market.n, dtype=np.bool_)
    unused = np.zeros((1, market.n))
    total = 0.0
    for _ in range(market.periods):
        gain, bankrupt, done = market.step(unused, everyone)
        total += float(gain[0, 0]) / MICRO
        if bankrupt[0, 0] or done[0]:
            break
    return total
