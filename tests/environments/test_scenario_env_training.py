"""Training in a scenario: Stable-Baselines3 learns on the Gymnasium form with no glue, and a
policy trained by ``agora train SCENARIO --learner negotiators`` loads back as the core."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

import agora

SMALL = "scenarios/small_market.toml"
TINY = {
    "world.ticks": 6,
    "world.checkpoint_every": 3,
    "population.requesters.count": 12,
    "population.workers.count": 4,
    "population.negotiators.count": 4,
}


def test_stable_baselines3_ppo_trains_on_the_gymnasium_form():
    stable_baselines3 = pytest.importorskip("stable_baselines3")
    env = agora.make_env(SMALL, "negotiators", settings=TINY)
    model = stable_baselines3.PPO(
        "MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert env.action_space.shape == np.shape(action)


def test_a_policy_trained_in_the_scenario_loads_back_as_the_populations_core(tmp_path: Path):
    from environments.ppo import Args, train

    data = tomllib.loads(Path(SMALL).read_text())
    for p in data["population"]:
        p["count"] = {"requesters": 12, "workers": 4, "negotiators": 4}[p["name"]]
    data["world"].update(ticks=6, checkpoint_every=3)
    result = train(
        Args(
            total_steps=32,
            num_envs=1,
            num_steps=16,
            minibatches=2,
            update_epochs=1,
            scenario=data,
            eval_seeds=(1001,),
            eval_episodes=1,
        ),
        tmp_path / "train",
    )
    assert len(result["trained"]) == len(result["scripted"]) == 1
    shutil.copyfile(tmp_path / "train" / "policy.npz", tmp_path / "policy.npz")
    negotiators = next(p for p in data["population"] if p["name"] == "negotiators")
    negotiators.update(core="policy.npz", core_share=0.5)
    sim = agora.Simulation.from_dict(data, base=tmp_path)
    sim.run()
    pop = next(p for p in sim.world.populations if p.name == "negotiators")
    assert pop.core == "trained" and pop.seat.sum() == 2
    assert "profit_per_core_agent_credits" in pop.role_metrics()


def test_training_a_role_without_a_shade_policy_form_is_refused():
    from environments.ppo import Args, make_envs

    with pytest.raises(ValueError, match="shade policy; this population's role is 'requester'"):
        make_envs(Args(num_envs=1, scenario=SMALL, learner="requesters"))
