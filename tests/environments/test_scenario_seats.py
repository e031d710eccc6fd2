"""Shared seats: many seats of one World as the sub-envs of a Gymnasium vector env, and agora train
learning through it; bad settings are refused with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from environments.scenario_env import make_vec_env
from environments.scenario_seats import SeatsVectorEnv
from runtime.cli import app

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small_market.toml"


def rollout(envs, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(0)
    seen, rewards = [obs], []
    for _ in range(steps):
        action = rng.uniform(-1, 1, (envs.num_envs, 1)).astype(np.float32)
        obs, reward, term, trunc, _ = envs.step(action)
        seen.append(obs)
        rewards.append(reward)
    return np.array(seen), np.array(rewards)


def test_seats_of_two_worlds_step_together_and_reproduce():
    envs = make_vec_env(SMALL, "negotiators", num_envs=8, seats_per_world=4, ticks=6)
    assert isinstance(envs, SeatsVectorEnv) and envs.num_envs == 8
    assert envs.observation_space.shape == (8, 4) and envs.action_space.shape == (8, 1)
    obs_a, rew_a = rollout(envs, 14, seed=3)
    obs_b, rew_b = rollout(envs, 14, seed=3)
    assert np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)
    assert not np.array_equal(obs_a[:, :4], obs_a[:, 4:])  # two Worlds, two seeds
    assert np.abs(rew_a).sum() > 0


def test_a_world_ends_and_resets_on_the_next_step():
    envs = make_vec_env(SMALL, "negotiators", num_envs=2, seats_per_world=2, ticks=3)
    envs.reset(seed=1)
    flags = []
    for _ in range(5):
        _, reward, term, trunc, _ = envs.step(np.zeros((2, 1), np.float32))
        flags.append((bool(trunc.all()), bool(term.any()), float(np.abs(reward).sum())))
    assert [f[0] for f in flags] == [False, False, True, False, False]
    assert flags[3][2] == 0.0  # the autoreset step carries no reward


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_envs": 6, "seats_per_world": 4}, "multiple of seats_per_world"),
        ({"num_envs": 18, "seats_per_world": 9}, "not an agent of population"),
        ({"num_envs": 4, "seats_per_world": 2, "record_dir": "x"}, "not recorded"),
        ({"num_envs": 4, "seats_per_world": 0}, "seats_per_world 0"),
    ],
)
def test_bad_shared_seats_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_vec_env(SMALL, "negotiators", **kwargs)


def test_an_action_outside_the_box_names_its_sub_env():
    envs = make_vec_env(SMALL, "negotiators", num_envs=4, seats_per_world=2, ticks=3)
    envs.reset(seed=0)
    bad = np.zeros((4, 1), np.float32)
    bad[3, 0] = 2.0
    with pytest.raises(ValueError, match="sub-env 3"):
        envs.step(bad)


def agora_train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "train", *args, "--out", str(tmp_path / "t"), "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seats-per-world", "4"], "--seats-per-world: needs a SCENARIO"),
        (
            [str(SMALL), "--seats-per-world", "3", "--num-envs", "4"],
            "multiple of --seats-per-world",
        ),
        ([str(SMALL), "--set", "nonsense"], "expected KEY=VALUE"),
        ([str(SMALL), "--set", "population.nobody.count=3"], "no entry named 'nobody'"),
        ([str(SMALL), "--reward", "fame"], "reward 'fame'"),
        (["--reward", "profit"], "need a SCENARIO"),
    ],
)
def test_agora_train_refuses_bad_settings_with_exit_2(tmp_path, args, message):
    # In this process: refused before anything runs (agora_train below trains in a child).
    done = CliRunner().invoke(app, ["train", *args, "--out", str(tmp_path / "t"), "-q"])
    assert done.exit_code == 2, done.output
    assert message in done.stderr and "Traceback" not in done.stderr


def test_agora_train_learns_with_shared_seats_and_a_role_reward(tmp_path):
    done = agora_train(
        tmp_path,
        str(SMALL),
        *("--seats-per-world", "4", "--num-envs", "8", "--num-steps", "20"),
        *("--total-steps", "320", "--reward", "profit", "--ticks", "10"),
        *("--set", "population.negotiators.core=baseline", "--eval-seeds", "1"),
        *("--eval-episodes", "1"),
    )
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads((tmp_path / "t" / "eval.json").read_text())
    assert result["args"]["seats_per_world"] == 4 and result["args"]["reward"] == "profit"
    assert result["env_steps"] == 320 and len(result["trained"]) == 1
