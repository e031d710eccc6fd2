"""Requesters, workers and critics offer control forms, as negotiators do.

For each role: the Gymnasium form passes Gymnasium's checker and the parallel form PettingZoo's
parallel API test; the same seed gives the same trajectory; a recorded episode replays bit for bit
with ``agora replay --verify``; a bad action raises ``ValueError`` naming the value and the seat;
and a control whose every action is NaN leaves the run exactly as the scripted rule makes it (the
same checkpoint hashes as a run without a control: observing draws nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test
from typer.testing import CliRunner

import agora
from runtime.cli import app
from runtime.kernel.scenario import parse
from runtime.kernel.world import World

# A small market with cheats and a critic (no ledger proofs, to stay fast).
SCENARIO: dict[str, Any] = {
    "world": {"name": "control_forms", "seed": 3, "ticks": 12, "checkpoint_every": 4},
    "network": {"regions": ["eu", "us"], "links": [{"a": "eu", "b": "us", "latency": 0.05}]},
    "population": [
        {
            "name": "requesters",
            "role": "requester",
            "count": 24,
            "initial_credits": 60,
            "income": 0.5,
            "post_rate": 0.5,
            "task_units": 3,
        },
        {
            "name": "workers",
            "role": "worker",
            "count": 8,
            "stake": 5,
            "cheat_fraction": 0.25,
        },
        {
            "name": "critics",
            "role": "critic",
            "count": 3,
            "watches": "workers",
            "check_budget": 0.3,
            "review_ledger": False,
        },
    ],
}
LEARNERS = {"requesters": (2, 4), "workers": (2, 5), "critics": (1, 4)}  # action, observation sizes
OWN_REWARD = {"requesters": "delivered", "workers": "profit", "critics": "audit"}


@pytest.fixture(params=sorted(LEARNERS))
def learner(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_control_form_has_the_documented_spaces(learner: str):
    env = agora.make_env(SCENARIO, learner)
    action_dim, obs_dim = LEARNERS[learner]
    assert env.action_space.shape == (action_dim,) and env.observation_space.shape == (obs_dim,)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    assert (env.observation_space.low == -1).all() and (env.observation_space.high == 1).all()


def test_the_gymnasium_form_passes_gymnasiums_checker(learner: str):
    check_env(agora.make_env(SCENARIO, learner, ticks=6))


def test_the_parallel_form_passes_pettingzoos_api_test(learner: str):
    parallel_api_test(agora.make_parallel_env(SCENARIO, learner, ticks=6), num_cycles=8)


def trajectory(learner: str, seed: int) -> list[tuple[Any, ...]]:
    env = agora.make_env(SCENARIO, learner)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out: list[tuple[Any, ...]] = [(obs.tolist(),)]
    over = False
    while not over:
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        out.append((obs.tolist(), reward, terminated, truncated))
        over = terminated or truncated
    return out


def test_the_same_seed_gives_the_same_trajectory(learner: str):
    first = trajectory(learner, 5)
    assert first == trajectory(learner, 5)
    assert len(first) == SCENARIO["world"]["ticks"] + 1  # no seat leaves: every tick is played


def test_a_recorded_episode_replays_bit_for_bit(learner: str, tmp_path: Path):
    env = agora.make_parallel_env(SCENARIO, learner, seats=[0, 1], record_dir=tmp_path)
    env.reset(seed=11)
    for agent in env.possible_agents:
        env.action_space(agent).seed(0)
    while env.agents:
        env.step({a: env.action_space(a).sample() for a in env.agents})
    env.close()
    run = tmp_path / "episode_0000"
    result = CliRunner().invoke(app, ["replay", str(run), "--verify"])
    assert result.exit_code == 0, result.output


def test_a_bad_action_raises_naming_the_value_and_the_seat(learner: str):
    env = agora.make_env(SCENARIO, learner, seat=1 if learner != "critics" else 0)
    env.reset(seed=0)
    bad = np.full(env.action_space.shape, 0.0, dtype=np.float32)
    bad[-1] = 1.5
    with pytest.raises(ValueError, match=rf"{learner}_\d: action 1.5 is outside Box"):
        env.step(bad)
    with pytest.raises(ValueError, match=r"need a float array of shape"):
        env.step(np.zeros(env.action_space.shape[0] + 1, dtype=np.float32))
    with pytest.raises(ValueError, match=r"action nan is outside"):
        env.step(np.full(env.action_space.shape, np.nan, dtype=np.float32))


def checkpoint_hashes(learner: str | None) -> list[dict[str, str]]:
    scenario = parse(tomli_w.dumps(SCENARIO), "<scenario>", Path("."))
    world = World(scenario, base=Path("."), seed=SCENARIO["world"]["seed"])
    if learner is not None:
        pop = next(p for p in world.populations if p.name == learner)
        seats = np.arange(pop.n, dtype=np.int64)
        control = pop.attach_control(world, seats)
        for tick in range(world.scenario.world.ticks):
            pop.observe(world, seats)  # observing reads the world and draws nothing
            control.set_actions(np.full((seats.size, LEARNERS[learner][0]), np.nan))
            world.run(tick + 1)
    else:
        world.run(world.scenario.world.ticks)
    return [cp.hashes for cp in world.checkpoints]


def test_a_control_of_nan_actions_acts_as_the_scripted_rule(learner: str):
    assert checkpoint_hashes(learner) == checkpoint_hashes(None)


def test_the_actions_move_the_roles_own_reward(learner: str):
    env = agora.make_parallel_env(SCENARIO, learner, reward=OWN_REWARD[learner])
    env.reset(seed=2)
    total = 0.0
    while env.agents:
        _, rewards, *_ = env.step(
            {a: np.ones(env.action_space(a).shape, np.float32) for a in env.agents}
        )
        total += sum(rewards.values())
    env.reset(seed=2)
    other = 0.0
    while env.agents:
        _, rewards, *_ = env.step(
            {a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents}
        )
        other += sum(rewards.values())
    assert total != other
