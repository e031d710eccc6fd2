"""Stable-Baselines3 on agora/Market-v0 with no glue code: its checker passes without a warning,
PPO trains on the env as registered, and the converter turns an SB3 actor into a policy file that
gives SB3's own deterministic actions and drives a scenario's negotiators."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

import environments
from agents.shade_policy import ShadePolicy, shade_from_action
from environments import convert_sb3
from runtime.kernel.scenario import ScenarioError, load
from runtime.kernel.world import World

sb3 = pytest.importorskip("stable_baselines3")
check_env = pytest.importorskip("stable_baselines3.common.env_checker").check_env

environments.register_envs()  # the agora/ ids, as importing the package does

TINY_SCENARIO = """
[world]
name = "tiny-trained-negotiators"
seed = 3
ticks = 15

[economy]
n_skills = 2

[[population]]
name = "requesters"
role = "requester"
count = 120
initial_credits = 60
post_rate = 0.25
task_units = 3

[[population]]
name = "workers"
role = "worker"
count = 20

[[population]]
name = "negotiators"
role = "negotiator"
count = 8
initial_credits = 1000
core = "CORE"
core_share = 0.5
"""


@pytest.fixture(scope="module")
def ppo() -> object:
    """SB3 PPO with its defaults on the registered env, as made: one rollout of 2,048 steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tests run beside other processes: no oversubscribed cores
    try:
        model = sb3.PPO("MlpPolicy", gymnasium.make("agora/Market-v0"), seed=0, device="cpu")
        model.learn(total_timesteps=2_048)
        return model
    finally:
        torch.set_num_threads(threads)


def observations(n: int = 300) -> np.ndarray:
    """Observations from real episodes and from all over the box, float32[n, 4]."""
    env = gymnasium.make("agora/Market-v0")
    obs, _ = env.reset(seed=11)
    seen = [obs]
    for _ in range(n // 2 - 1):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        seen.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    spread = np.random.default_rng(5).uniform(-1, 1, (n - len(seen), 4)).astype(np.float32)
    return np.concatenate([np.array(seen), spread])


@pytest.mark.parametrize("env_id", sorted(k for k in gymnasium.registry if k.startswith("agora/")))
def test_sb3s_env_checker_passes_with_no_warning(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gymnasium.make(env_id).unwrapped)
        check_env(gymnasium.make(env_id))
    assert [str(w.message) for w in caught] == []


def test_sb3_ppo_trains_on_the_env_as_registered(ppo):
    model = ppo
    assert model.num_timesteps == 2_048
    assert model.action_space == gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)


def test_the_converted_ppo_actor_gives_sb3s_deterministic_actions(ppo, tmp_path):
    model = ppo
    model.save(tmp_path / "ppo.zip")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "environments.convert_sb3",
            str(tmp_path / "ppo.zip"),
            str(tmp_path / "ppo.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    policy = ShadePolicy(tmp_path / "ppo.npz")
    assert (policy.activation, policy.squash) == ("tanh", "clip")
    assert [w.shape for w, _ in policy.layers] == [(64, 4), (64, 64), (1, 64)]
    assert "stable-baselines3 2." in policy.source and "PPO" in policy.source
    obs = observations()
    actions, _ = model.predict(obs, deterministic=True)
    assert np.allclose(policy.action(obs), actions, atol=1e-6)
    assert np.allclose(policy(obs), shade_from_action(actions[:, 0]), atol=1e-6)


def test_clipped_and_squashed_actors_match_sb3_at_the_edges_of_the_box(tmp_path):
    env = gymnasium.make("agora/Market-v0")
    obs = observations()
    kinds = ((sb3.PPO, "clip", {}), (sb3.SAC, "tanh", {"buffer_size": 100}))
    for algorithm, squash, extra in kinds:
        model = algorithm("MlpPolicy", env, seed=1, device="cpu", **extra)
        last = model.policy.action_net if algorithm is sb3.PPO else model.actor.mu
        wide = np.random.default_rng(2).normal(0.0, 6.0, tuple(last.weight.shape))
        with torch.no_grad():  # outputs far past the box: SB3 clips or saturates them
            last.weight.copy_(torch.from_numpy(wide))
        convert_sb3.convert(model, tmp_path / f"{squash}.npz")
        policy = ShadePolicy(tmp_path / f"{squash}.npz")
        actions, _ = model.predict(obs, deterministic=True)
        assert policy.squash == squash
        # The edges of the box and its inside are both exercised.
        assert (np.abs(actions) > 0.999).mean() > 0.1 and (np.abs(actions) < 0.99).any()
        # SB3 computes in float32, and these outputs are large: so is its rounding.
        assert np.allclose(policy.action(obs), actions, atol=2e-5)


def test_a_converted_policy_drives_a_scenarios_negotiators_reproducibly(ppo, tmp_path):
    model = ppo
    convert_sb3.convert(model, tmp_path / "sb3.npz")
    (tmp_path / "tiny.toml").write_text(TINY_SCENARIO.replace("CORE", "sb3.npz"))
    scenario_config, _ = load(tmp_path / "tiny.toml")

    def run() -> object:
        world = World(scenario_config, base=tmp_path)
        world.run()
        return next(p for p in world.populations if p.role == "negotiator")

    neg = run()
    assert neg.core == "trained" and neg.seat.sum() == 4
    metrics = neg.role_metrics()
    assert metrics["profit_per_core_agent_credits"] is not None and metrics["efficiency"] > 0
    assert np.array_equal(neg.profit, run().profit)  # the same bits, run after run


def test_the_converter_refuses_a_model_of_other_spaces_and_non_models(tmp_path, capsys):
    from gymnasium.wrappers import RescaleAction

    low, high = np.zeros(1, np.float32), np.ones(1, np.float32)
    shade_box = RescaleAction(gymnasium.make("agora/Market-v0"), low, high)
    model = sb3.PPO("MlpPolicy", shade_box, seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"acts in Box\(0.0, 1.0.*action space is Box\(-1.0, 1.0"):
        convert_sb3.convert(model, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    for path in (tmp_path / "junk.zip", tmp_path / "missing.zip"):
        # The command's own function, in this process (the test above runs it with python -m).
        code = convert_sb3.main([str(path), str(tmp_path / "y.npz")])
        stderr = capsys.readouterr().err
        assert code == 2 and str(path) in stderr
        assert "Traceback" not in stderr
    assert convert_sb3.main(["only-one-argument"]) == 2


def test_a_scenario_naming_a_legacy_policy_file_fails_with_the_reason(tmp_path):
    np.savez(tmp_path / "old.npz", kind=np.array("market-v0-ppo"), actor_0_weight=np.zeros((64, 4)))
    (tmp_path / "tiny.toml").write_text(TINY_SCENARIO.replace("CORE", "old.npz"))
    with pytest.raises(ScenarioError, match=r"core: .*old.npz: kind 'market-v0-ppo'.*agora train"):
        scenario_config, _ = load(tmp_path / "tiny.toml")
        World(scenario_config, base=tmp_path)
    assert Path(tmp_path / "old.npz").is_file()
