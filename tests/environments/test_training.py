"""PPO on Market-v0: a short run improves on its first return and beats a random action, the same
seed gives the same policy, the policy file drives negotiators in a scenario, and `agora train`
refuses bad arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from agents.shade_policy import ShadePolicy, is_shade_policy, market_observation
from environments.ppo import Args, train
from runtime.cli import app
from runtime.kernel.scenario import ScenarioError, load, parse
from runtime.kernel.world import World

# Fewer, larger minibatches than the defaults: a short run that learns within a test's time.
SHORT = Args(
    total_steps=16_384,
    minibatches=8,
    update_epochs=4,
    eval_seeds=(1001, 1002),
    eval_episodes=3,
    checkpoint_every=4,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("ppo")
    return train(SHORT, out), out


def test_a_short_run_improves_on_its_first_return_and_beats_a_random_action(trained):
    result, out = trained
    curve = np.genfromtxt(out / "curve.csv", delimiter=",", names=True)
    assert len(curve) == 8
    first, last = curve["mean_return"][:2].mean(), curve["mean_return"][-2:].mean()
    assert last > first + 0.5  # credits per 50-period episode
    assert curve["mean_shade"][-1] < curve["mean_shade"][0]  # towards the best shade, about 0.4
    assert np.mean(result["trained"]) > np.mean(result["random"]) + 2.0
    assert set(result) >= {"trained", "scripted", "random", "seeds", "first_return", "last_return"}
    for name in (
        "curve.png",
        "policy.npz",
        "eval.json",
        "checkpoints/iter_0004.pt",
        "checkpoints/iter_0008.pt",
    ):
        assert (out / name).is_file(), name
    state = torch.load(out / "checkpoints" / "iter_0008.pt", weights_only=False)
    assert state["iteration"] == 8 and "agent" in state and "optimizer" in state


def test_the_same_seed_trains_the_same_policy(trained, tmp_path):
    _, out = trained
    again = Args(**{**SHORT.__dict__, "total_steps": 4096})
    a = train(again, tmp_path / "a")
    b = train(again, tmp_path / "b")
    first, second = (tmp_path / "a" / "policy.npz"), (tmp_path / "b" / "policy.npz")
    assert first.read_bytes() == second.read_bytes()
    assert a["trained"] == b["trained"]


def test_the_policy_file_is_a_tanh_squashed_float64_actor(trained):
    _, out = trained
    policy = ShadePolicy(out / "policy.npz")
    assert (policy.activation, policy.squash) == ("tanh", "tanh")
    assert [w.shape for w, _ in policy.layers] == [(64, 4), (64, 64), (1, 64)]
    with np.load(out / "policy.npz") as data:
        assert data["weight_0"].dtype == np.float64 and str(data["env_id"]) == "agora/Market-v0"
    state = torch.load(sorted((out / "checkpoints").iterdir())[-1], weights_only=False)["agent"]
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 4))
    actor = torch.nn.Sequential(
        torch.nn.Linear(4, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 1),
    ).double()
    actor.load_state_dict(
        {k.removeprefix("actor."): v for k, v in state.items() if k.startswith("actor.")}
    )
    expected = torch.tanh(actor(torch.from_numpy(obs))).detach().numpy()
    assert np.allclose(policy.action(obs), expected, atol=1e-12)
    assert np.allclose(policy(obs), (expected[:, 0] + 1) / 2, atol=1e-12)


def test_the_policy_file_drives_a_scenarios_negotiators(trained, tmp_path):
    _, out = trained
    assert is_shade_policy(out / "policy.npz")
    (tmp_path / "p.npz").write_bytes((out / "policy.npz").read_bytes())
    scenario = Path("scenarios/trained_negotiators.toml").read_text()
    text = scenario.replace("policies/market_ppo.npz", "p.npz")
    text = text.replace("ticks = 150", "ticks = 20")
    (tmp_path / "s.toml").write_text(text)
    scenario_config, _ = load(tmp_path / "s.toml")
    world = World(scenario_config, base=tmp_path)
    neg = world.populations[2]
    assert neg.core == "trained" and neg.seat.sum() == 5
    world.run()
    m = neg.role_metrics()
    assert m["profit_per_core_agent_credits"] > 0 and m["profit_per_zic_agent_credits"] > 0
    # The seats' asks are the policy's: cost + shade x (2 - cost), the same in every round.
    rng = np.random.default_rng(0)
    cost = rng.uniform(0.5, 1.5, neg.n)
    asks, _ = neg.seller_posts(rng, cost)
    policy = ShadePolicy(tmp_path / "p.npz")
    obs = market_observation(cost, neg.last_price, neg.obs_credits, neg.obs_left)
    assert obs.shape == (neg.n, 4) and (np.abs(obs) <= 1).all()
    expected = cost + policy(obs) * (2.0 - cost)
    # The policy's ask, held in every round; ZI-C seats draw afresh each round.
    assert np.allclose(asks[:, neg.seat], expected[neg.seat])
    assert not np.allclose(asks[0, ~neg.seat], asks[-1, ~neg.seat])


def test_core_share_needs_a_trained_policy():
    scenario = Path("scenarios/trained_negotiators.toml").read_text()
    text = scenario.replace('core = "policies/market_ppo.npz"\n', "")
    with pytest.raises(ScenarioError, match="core_share: .*needs a policy file"):
        World(parse(text))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "agora/Refactor-v0"], "--env 'agora/Refactor-v0'"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--total-steps", "0"], "--total-steps"),
        (["--init-policy", "no-such-policy.npz"], "--init-policy no-such-policy.npz: no such file"),
        (
            ["--init-policy", "scenarios/marketplace.toml"],
            "--init-policy scenarios/marketplace.toml",
        ),
    ],
)
def test_agora_train_refuses_bad_arguments_with_exit_2(args, message, tmp_path):
    proc = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "t"), *args])
    assert proc.exit_code == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "t").exists()


def test_agora_train_will_not_overwrite_a_folder_unasked(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "keep.txt").write_text("mine")
    proc = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "t")])
    assert proc.exit_code == 2 and "--overwrite" in proc.stderr
    assert (tmp_path / "t" / "keep.txt").read_text() == "mine"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_the_gpu_learns_too(tmp_path):
    result = train(Args(**{**SHORT.__dict__, "device": "cuda"}), tmp_path)
    assert np.mean(result["trained"]) > np.mean(result["random"]) + 2.0


POLICY = Path(__file__).resolve().parents[2] / "scenarios" / "policies" / "market_ppo.npz"


def test_a_warm_start_begins_from_the_policy_files_actor(tmp_path):
    """A learning rate of 0 moves nothing: the policy written is the one training began from."""
    args = Args(
        total_steps=128,
        num_envs=2,
        num_steps=64,
        lr=0.0,
        eval_seeds=(1001,),
        eval_episodes=1,
        init_policy=str(POLICY),
    )
    train(args, tmp_path)
    start, end = ShadePolicy(POLICY), ShadePolicy(tmp_path / "policy.npz")
    assert len(start.layers) == len(end.layers) == 3
    for (w0, b0), (w1, b1) in zip(start.layers, end.layers, strict=True):
        assert np.array_equal(w0, w1) and np.array_equal(b0, b1)
    fresh = Args(**{**args.__dict__, "init_policy": None})
    train(fresh, tmp_path / "fresh")
    assert not np.array_equal(
        ShadePolicy(tmp_path / "fresh" / "policy.npz").layers[0][0], start.layers[0][0]
    )
