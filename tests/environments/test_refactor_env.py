"""Refactor-v0: seeded episodes repeat, bad actions are refused, money and quality add up."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import environments
from agents.refactor import COST_PER_SIZE
from environments.refactor_env import RefactorEnv

environments.register_envs()  # the agora/ ids, as importing the package does


def test_a_seed_reproduces_an_episode_and_rewards_add_up_to_quality_minus_cost():
    def episode(seed: int) -> tuple[list[float], dict]:
        env = gymnasium.make("agora/Refactor-v0", modules=10, budget=30.0)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        rewards, info = [], {}
        for _ in range(60):
            _, r, term, trunc, info = env.step(env.action_space.sample())
            rewards.append(r)
            if term or trunc:
                break
        return rewards, info

    a, info = episode(7)
    assert a == episode(7)[0] and a != episode(8)[0]
    spent = 30.0 - info["budget_left"]
    assert spent > 0
    # Rewards are benchmark changes × 10 minus costs; benchmark noise is small, so they sum to
    # about quality gained × 10 − credits spent.
    assert sum(a) == pytest.approx(info["quality_gained"] * 10 - spent, abs=0.1)


@pytest.mark.parametrize(
    "bad", [np.array([10, 0]), np.array([0, 3]), np.array([-1, 0]), np.array([0.5, 1.0]), [1]]
)
def test_an_action_outside_the_space_is_refused(bad):
    env = RefactorEnv(modules=10)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="agora/Refactor-v0: action"):
        env.step(bad)


def test_the_budget_ends_the_episode():
    env = RefactorEnv(modules=5, budget=3.0, steps=500)
    env.reset(seed=1)
    small = int(np.argmin(env.code.size))
    for _ in range(500):
        # Refactor the smallest module until broke.
        _, _, term, trunc, info = env.step(np.array([small, 0]))
        if term or trunc:
            break
    assert term and not trunc
    assert info["budget_left"] < COST_PER_SIZE["rollback"] * env.code.size.min()
    with pytest.raises(RuntimeError, match="budget is spent"):
        env.step(np.array([0, 2]))


def test_a_step_after_the_last_one_is_an_error():
    env = RefactorEnv(modules=5, budget=100.0, steps=3)
    env.reset(seed=0)
    for _ in range(3):
        _, _, term, trunc, _ = env.step(np.array([0, 2]))  # rollbacks: the cheapest action
    assert trunc and not term
    with pytest.raises(RuntimeError, match="ended after 3 steps: call reset"):
        env.step(np.array([0, 2]))
