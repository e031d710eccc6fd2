"""Market-v0 and market_v0 pass Gymnasium's and PettingZoo's own checks, seeding is reproducible,
agents that go bankrupt leave without breaking the API, actions in [-1, 1] map to shades, and bad
actions are refused, not clipped."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

import environments
from agents.shade_policy import shade_from_action
from environments import market_v0
from environments.market import MarketEnv, MarketVectorEnv

environments.register_envs()  # the agora/ ids, as importing the package does


@pytest.mark.parametrize("env_id", sorted(k for k in gymnasium.registry if k.startswith("agora/")))
def test_every_registered_env_passes_gymnasiums_checker(env_id):
    env = gymnasium.make(env_id).unwrapped
    check_env(env, skip_render_check=False)


def test_make_finds_the_env_through_its_module_prefix():
    env = gymnasium.make("environments:agora/Market-v0", render_mode="ansi")
    env.reset(seed=0)
    assert "period 0/50" in env.render()


def test_reset_with_a_seed_reproduces_an_episode():
    def episode(seed: int) -> list[float]:
        env = MarketEnv()
        env.reset(seed=seed)
        return [env.step(np.array([-0.4], dtype=np.float32))[1] for _ in range(30)]

    assert episode(4) == episode(4)
    assert episode(4) != episode(5)


@pytest.mark.parametrize(
    "bad",
    [
        np.array([1.5], dtype=np.float32),
        np.array([-1.0001], dtype=np.float32),
        np.array([np.nan], dtype=np.float32),
        np.array([0.1, 0.2]),
        "high",
        np.array([True]),
    ],
)
def test_an_action_outside_the_space_is_an_error_not_a_clip(bad):
    env = MarketEnv()
    env.reset(seed=0)
    space = r"Box\(-1.0, 1.0, \(1,\), float32\)"
    hint = r"shade = \(action \+ 1\)/2"
    with pytest.raises(ValueError, match=rf"agora/Market-v0: action .*{space}.*{hint}"):
        env.step(bad)


def test_the_action_box_is_symmetric_and_maps_linearly_to_the_shade():
    env = MarketEnv()
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    assert env.observation_space == gymnasium.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
    assert shade_from_action(np.array([-1.0, -0.5, 0.0, 0.5, 1.0])).tolist() == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    # The edges are inside the box: action -1 asks the cost, 1 the ceiling (shade 0 and 1).
    env.reset(seed=2)
    received = []
    original = env.market.step
    env.market.step = lambda shade, peers: received.append(shade[0, 0]) or original(shade, peers)
    for a in (-1.0, -0.5, 0.0, 1.0):
        env.step(np.array([a], dtype=np.float32))
    assert received == [0.0, 0.25, 0.5, 1.0]


def test_an_action_gives_the_same_period_as_its_shade_in_the_market_core():
    env = MarketEnv()
    env.reset(seed=7)
    twin = MarketEnv()
    twin.reset(seed=7)
    for a in (-0.6, 0.2, 0.9):
        _, reward, _, _, _ = env.step(np.array([a], dtype=np.float32))
        shade = (float(np.float32(a)) + 1.0) / 2.0
        gain, _, _ = twin.market.step(np.array([[shade] + [0.0] * 7]), twin.scripted)
        assert reward == gain[0, 0] / 1e6


def test_observations_are_scaled_to_the_unit_box():
    env = MarketEnv()
    obs, _ = env.reset(seed=3)
    m = env.market
    assert obs[0] == np.float32(2.0 * (m.cost[0, 0] - 1.0))
    # No trade yet, the starting credits, the whole episode left.
    assert obs[1] == -1.0 and obs[2] == 0.0 and obs[3] == 1.0
    seen = [obs]
    for _ in range(49):
        obs, *_ = env.step(np.array([-0.2], dtype=np.float32))
        seen.append(obs)
    seen = np.array(seen)
    assert env.observation_space.contains(seen[-1]) and (np.abs(seen) <= 1.0).all()
    assert seen[:, 0].min() < -0.9 and seen[:, 0].max() > 0.9  # costs span the box
    assert seen[-1, 3] == np.float32(2.0 * (1 / 50) - 1.0)
    assert seen[-1, 2] > 0.5  # a trading negotiator ends with several times its starting credits
    ratio = m.credits[0, 0] / m.initial
    assert seen[-1, 2] == np.float32((ratio - 1.0) / (ratio + 1.0))


def test_a_bankrupt_negotiator_terminates_its_episode():
    env = MarketEnv(fee=0.5, initial_credits=1.0)
    env.reset(seed=1)
    for _ in range(50):
        # Action 1 asks the ceiling: it never trades.
        _, _, terminated, truncated, info = env.step(np.array([1.0], dtype=np.float32))
        if terminated or truncated:
            break
    assert terminated and not truncated and info["credits"] < 500_000
    with pytest.raises(RuntimeError, match="bankrupt"):
        env.step(np.array([0.0], dtype=np.float32))


def test_the_vector_env_matches_single_envs_seeded_alike_and_autoresets():
    vec = MarketVectorEnv(num_envs=3, periods=5)
    obs, _ = vec.reset(seed=10)
    singles = [MarketEnv(periods=5) for _ in range(3)]
    # A sub-environment is a Market-v0 market seeded directly with seed + i.
    for i, s in enumerate(singles):
        s.market.reset(0, 10 + i)
        assert np.array_equal(obs[i], s.market.observe()[0, 0])
    actions = np.full((3, 1), -0.6)  # shade 0.2
    for _ in range(5):
        obs, reward, terminated, truncated, _ = vec.step(actions)
        for i, s in enumerate(singles):
            gain, _, _ = s.market.step(np.array([[0.2] + [0.0] * 7]), s.scripted)
            assert reward[i] == gain[0, 0] / 1e6
    assert truncated.all()
    obs, reward, terminated, truncated, _ = vec.step(actions)  # next-step autoreset
    assert (reward == 0).all() and not truncated.any() and (obs[:, 3] == 1.0).all()
    assert vec.observation_space.contains(obs)
    with pytest.raises(ValueError, match=r"action 2.0 of sub-environment 1 is outside Box\(-1"):
        vec.step(np.array([[0.0], [2.0], [0.0]]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        vec.step(np.zeros(3))


def test_pettingzoo_api_tests_pass():
    api_test(market_v0.env(), num_cycles=60)
    parallel_api_test(market_v0.parallel_env(), num_cycles=60)


def test_pettingzoo_seed_tests_pass():
    seed_test(market_v0.env, num_cycles=40)
    parallel_seed_test(market_v0.parallel_env)


def test_agents_that_go_bankrupt_leave_and_the_api_stays_correct():
    env = market_v0.parallel_env(n_agents=6, fee=0.1, initial_credits=1.0)
    obs, _ = env.reset(seed=3)
    left = []
    for _ in range(50):
        # Half the agents ask the ceiling (action 1) and never trade, so they run out of credits.
        actions = {
            a: np.array([1.0 if int(a[-1]) % 2 else -0.8], dtype=np.float32) for a in env.agents
        }
        obs, rewards, term, trunc, infos = env.step(actions)
        assert set(obs) == set(rewards) == set(term) == set(trunc) == set(actions)
        left += [a for a in term if term[a]]
        assert not set(left) & set(env.agents)
        if not env.agents:
            break
    # Those that never trade leave first; the others may follow later, when fees outrun profits.
    assert sorted(left[:3]) == ["negotiator_1", "negotiator_3", "negotiator_5"]
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step({})


def test_pettingzoo_refuses_actions_for_departed_or_unknown_agents_and_bad_values():
    env = market_v0.parallel_env(n_agents=3)
    env.reset(seed=0)
    ok = {a: np.array([0.5], dtype=np.float32) for a in env.agents}
    with pytest.raises(ValueError, match="'ghost' is not a live agent"):
        env.step({**ok, "ghost": np.array([0.5], dtype=np.float32)})
    with pytest.raises(ValueError, match="negotiator_1: action 7.0 is outside"):
        env.step({**ok, "negotiator_1": np.array([7.0], dtype=np.float32)})
    with pytest.raises(ValueError, match=r"negotiator_2: action -1.5 is outside Box\(-1.0, 1.0"):
        env.step({**ok, "negotiator_2": np.array([-1.5], dtype=np.float32)})
    with pytest.raises(ValueError, match="no action for"):
        env.step({"negotiator_0": ok["negotiator_0"]})


def test_the_batched_clearing_is_the_negotiators_auction_market_by_market():
    from agents.auction import double_auction
    from environments.market_core import clear

    rng = np.random.default_rng(2)
    B, R, n = 4, 30, 6
    cost, value = rng.uniform(0.5, 1.5, (B, n)), rng.uniform(1.0, 2.0, (B, n))
    asks = cost[:, None, :] + rng.random((B, R, n)) * (2.0 - cost[:, None, :])
    bids = rng.random((B, R, n)) * value[:, None, :]
    order = np.argsort(rng.random((B, R, 2 * n)), axis=2).astype(np.int64)
    alive = np.ones((B, n), dtype=np.bool_)
    alive[1, :3] = False  # departed seats post nothing that can trade
    price, traded = np.zeros((B, n)), np.zeros((B, n), dtype=np.bool_)
    s, best = np.zeros(B), np.zeros(B)
    clear(asks, bids, alive, cost, value, order, price, traded, s, best)
    is_buyer = np.arange(2 * n) >= n
    for b in range(B):
        posts = np.concatenate([np.where(alive[b], asks[b], np.inf), bids[b]], axis=1)
        partner, p = double_auction(is_buyer, np.concatenate([cost[b], value[b]]), posts, order[b])
        assert traded[b].tolist() == (partner[:n] >= 0).tolist()
        assert np.array_equal(price[b], p[:n])
    assert not traded[1, :3].any()
    assert (s <= best + 1e-12).all() and (s > 0).all()


def test_make_vec_builds_the_native_vector_env():
    vec = gymnasium.make_vec("agora/Market-v0", num_envs=4, vectorization_mode="vector_entry_point")
    assert isinstance(vec, MarketVectorEnv) and vec.num_envs == 4
    obs, _ = vec.reset(seed=1)
    assert obs.shape == (4, 4) and vec.observation_space.contains(obs)
    assert vec.action_space == gymnasium.spaces.Box(-1.0, 1.0, (4, 1), np.float32)
    _, reward, _, _, _ = vec.step(np.full((4, 1), 0.2))
    assert reward.shape == (4,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fee": -1.0}, "fee"),
        ({"initial_credits": 0.0}, "initial_credits"),
        ({"n_agents": 0}, "at least one"),
        ({"render_mode": "human"}, "render_mode 'human'"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, message):
    for make in (MarketEnv, market_v0.parallel_env):
        with pytest.raises(ValueError, match=message):
            make(**kwargs)


def test_market_v0_refuses_a_step_after_the_episode_ended():
    env = gymnasium.make("agora/Market-v0", periods=3).unwrapped
    env.reset(seed=1)
    truncated = terminated = False
    while not (truncated or terminated):
        _, _, terminated, truncated, _ = env.step(np.array([0.5], dtype=np.float32))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.array([0.5], dtype=np.float32))
    fresh = gymnasium.make("agora/Market-v0").unwrapped
    with pytest.raises(RuntimeError, match="has not started"):
        fresh.step(np.array([0.5], dtype=np.float32))


def test_aec_refuses_a_nan_action_at_once_and_the_vector_env_refuses_non_numbers():
    aec = market_v0.env(n_agents=3)
    aec.reset(seed=2)
    first = aec.agent_selection
    with pytest.raises(ValueError, match=first):
        aec.step(np.array([np.nan], dtype=np.float32))
    vec = MarketVectorEnv(num_envs=2)
    vec.reset(seed=3)
    for bad in (np.array([["0.5"], ["0.5"]]), np.array([[True], [False]])):
        with pytest.raises(ValueError, match="dtype"):
            vec.step(bad)
