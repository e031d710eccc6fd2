"""The scenario environments: a population of a World as Gymnasium and PettingZoo environments.

They pass Gymnasium's checker and PettingZoo's API, parallel-API and seed tests; the same seed
gives the same trajectory; agents that crash or go bankrupt leave; bad actions are refused, naming
the value; a recorded episode replays bit for bit with ``agora replay --verify``."""

from __future__ import annotations

import tomllib
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

import agora
import environments

environments.register_envs()  # the agora/ ids, as importing the package does

SMALL = "scenarios/small_market.toml"
TINY = {
    "world.ticks": 6,
    "world.checkpoint_every": 3,
    "population.requesters.count": 12,
    "population.workers.count": 4,
    "population.negotiators.count": 4,
}


def tiny_env(**kwargs):
    return agora.make_env(SMALL, "negotiators", **{"settings": TINY, **kwargs})


def tiny_parallel(**kwargs):
    return agora.make_parallel_env(SMALL, "negotiators", **{"settings": TINY, **kwargs})


def test_the_gymnasium_form_passes_gymnasiums_checker():
    check_env(tiny_env(render_mode="ansi"), skip_render_check=False)


def test_the_registered_id_takes_scenario_and_learner():
    env = gymnasium.make("agora/Scenario-v0", scenario=SMALL, learner="negotiators", settings=TINY)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)


def test_the_parallel_form_passes_pettingzoos_api_tests():
    parallel_api_test(tiny_parallel(), num_cycles=10)
    parallel_seed_test(tiny_parallel)


def test_the_aec_form_passes_pettingzoos_api_and_seed_tests():
    api_test(agora.make_aec_env(SMALL, "negotiators", settings=TINY), num_cycles=10)
    seed_test(lambda: agora.make_aec_env(SMALL, "negotiators", settings=TINY), num_cycles=10)


def _trajectory(seed: int) -> list[tuple]:
    env = tiny_env()
    obs, _ = env.reset(seed=seed)
    out = [tuple(obs.tolist())]
    for k in range(6):
        obs, reward, term, trunc, _ = env.step(np.array([0.5 - 0.2 * k], dtype=np.float32))
        out.append((*obs.tolist(), reward, term, trunc))
    return out


def test_the_same_seed_gives_the_same_trajectory():
    assert _trajectory(3) == _trajectory(3)
    assert _trajectory(3) != _trajectory(4)


def test_a_vector_env_steps_many_worlds():
    envs = agora.make_vec_env(SMALL, "negotiators", num_envs=2, settings=TINY)
    obs, _ = envs.reset(seed=5)
    assert obs.shape == (2, 4)
    obs, reward, term, trunc, _ = envs.step(np.zeros((2, 1), dtype=np.float32))
    assert reward.shape == (2,) and not term.any()


@pytest.mark.parametrize(
    "action, says",
    [
        (np.array([1.5], dtype=np.float32), "1.5"),
        (np.array([np.nan], dtype=np.float32), "nan"),
        (np.array([0.1, 0.2], dtype=np.float32), "shape"),
        (np.array(["a"]), "not in"),
    ],
)
def test_a_bad_action_raises_naming_the_value_and_the_space(action, says):
    env = tiny_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=says) as err:
        env.step(action)
    assert "Box(-1.0, 1.0" in str(err.value) and "negotiators_0" in str(err.value)


def test_the_parallel_env_refuses_bad_and_missing_actions():
    env = tiny_parallel()
    env.reset(seed=0)
    acts = {a: np.zeros(1, dtype=np.float32) for a in env.agents}
    with pytest.raises(ValueError, match="negotiators_2.*2.0"):
        env.step({**acts, "negotiators_2": np.array([2.0], dtype=np.float32)})
    with pytest.raises(ValueError, match="no action for"):
        env.step({"negotiators_0": np.zeros(1, dtype=np.float32)})
    with pytest.raises(ValueError, match="not a live agent"):
        env.step({**acts, "negotiators_9": np.zeros(1, dtype=np.float32)})


def test_stepping_an_ended_episode_raises():
    env = tiny_env()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, dtype=np.float32))


def test_crashed_agents_leave_the_episode():
    env = tiny_parallel(
        settings={
            **TINY,
            "fault": [{"at": 2, "kind": "crash", "population": "negotiators", "fraction": 0.5}],
        }
    )
    env.reset(seed=0)
    for _ in range(2):
        _, _, term, _, _ = env.step({a: np.zeros(1, dtype=np.float32) for a in env.agents})
    assert not any(term.values())
    _, _, term, trunc, _ = env.step({a: np.zeros(1, dtype=np.float32) for a in env.agents})
    assert [a for a, t in term.items() if t] == ["negotiators_0", "negotiators_1"]
    assert env.agents == ["negotiators_2", "negotiators_3"]


def test_bankrupt_agents_leave_the_episode():
    # Contractors who start with nothing and ask the ceiling never trade: bankrupt after one tick.
    env = tiny_parallel(settings={**TINY, "population.negotiators.initial_credits": 0})
    env.reset(seed=0)
    _, _, term, _, _ = env.step({a: np.ones(1, dtype=np.float32) for a in env.agents})
    assert all(term.values()) and env.agents == []
    with pytest.raises(RuntimeError, match="over"):
        env.step({})


def test_unknown_learner_seat_reward_and_setting_are_refused():
    with pytest.raises(ValueError, match="no such population.*negotiators"):
        agora.make_env(SMALL, "traders")
    healers = {"name": "healers", "role": "healer", "count": 1, "watches": "workers"}
    data = tomllib.loads(Path(SMALL).read_text())
    data["population"].append(healers)
    with pytest.raises(ValueError, match="role 'healer' takes no outside control"):
        agora.make_env(data, "healers")
    with pytest.raises(ValueError, match="seats: 9"):
        agora.make_parallel_env(SMALL, "negotiators", seats=[0, 9])
    with pytest.raises(ValueError, match="reward 'gold'.*profit.*wealth"):
        agora.make_env(SMALL, "negotiators", reward="gold")
    with pytest.raises(ValueError, match="no entry named 'nobody'"):
        agora.make_env(SMALL, "negotiators", settings={"population.nobody.count": 3})
    with pytest.raises(ValueError, match="cannot read it"):
        agora.make_env("no/such.toml", "negotiators")


def test_a_recorded_episode_replays_bit_for_bit(tmp_path: Path):
    from typer.testing import CliRunner

    from runtime.cli import app

    env = tiny_env(record_dir=tmp_path)
    env.reset(seed=2)
    done, k = False, 0
    while not done:
        _, _, term, trunc, _ = env.step(np.array([np.sin(k)], dtype=np.float32))
        done, k = term or trunc, k + 1
    run = tmp_path / "episode_0000"
    assert (run / "inputs" / "negotiators.npz").is_file()
    result = CliRunner().invoke(app, ["replay", str(run), "--verify"])
    assert result.exit_code == 0, result.output
    # The actions are what the run is made of: other actions, another run.
    inputs = run / "inputs" / "negotiators.npz"
    with np.load(inputs) as data:
        arrays = dict(data)
    arrays["actions"] = arrays["actions"] * 0.5
    np.savez(inputs, **arrays)
    assert CliRunner().invoke(app, ["replay", str(run), "--verify"]).exit_code == 1
