"""Environment throughput, learners on ``agora/Market-v0``, the trained negotiator in a scenario.

Throughput: ``market_v0`` through its parallel API at 10, 100 and 1,000 negotiators (env steps/s
and agent-steps/s, our timing loop around ``env.step``), the same through the AEC API with
PettingZoo's own ``performance_benchmark`` (turns = agent-steps), ``agora/Market-v0`` with
Gymnasium's ``benchmark_step``, and the native vector env. The peer for the market's kernel is the
project's own direct auction (each post scans the standing orders) against the heap auction the
environments use, on the same posts.

Learners: Stable-Baselines3's PPO and SAC with their defaults (``MlpPolicy``, default
hyperparameters, no wrappers) for 50,000 steps on the registered env, seeded, against a
uniform-random action, ZI-C in the learner's seat (a fresh uniform ask between cost and ceiling in
every round, as the scripted peers ask), ``agora train``'s PPO (the shipped policy and a run of
the same 50,000 steps), the best constant shade of a grid chosen on other seeds, and the constant
action 0 (shade 0.5: the mean of an untrained Gaussian policy, the middle of the box). Every
contender is evaluated deterministically on held-out seeds 1001..1005, 10 episodes each
(:mod:`environments.evaluation`): mean return per seed, and margins taken seed by seed.

Policy: ``scenarios/trained_negotiators.toml`` (5 of 40 contractors use the PPO policy shipped in
``scenarios/policies/``, 35 are ZI-C, one auction) on held-out seeds 101..105: profit per
contractor of each group.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SEEDS = (101, 102, 103, 104, 105)
EVAL_SEEDS = (1001, 1002, 1003, 1004, 1005)
EVAL_EPISODES = 10
LEARN_STEPS = 50_000
LEARN_SEED = 0
GRID_SEEDS = (11, 12, 13, 14, 15)  # where the constant-shade reference is chosen: not evaluated on
SHIPPED = Path("scenarios/policies/market_ppo.npz")
MARKETPLACE = Path("scenarios/marketplace.toml")
SCENARIO_POLICY = Path("scenarios/policies/marketplace_negotiator_ppo.npz")  # agora train in it


def parallel_rates(n: int, seconds: float) -> tuple[float, float]:
    from environments import market_v0

    env = market_v0.parallel_env(n_agents=n)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.0, 1.0, (64, n)).astype(np.float32)
    plans = [
        {a: actions[k, i : i + 1] for i, a in enumerate(env.possible_agents)} for k in range(64)
    ]
    steps = agent_steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if not env.agents:
            env.reset()
        plan = plans[steps % 64]
        live = env.agents
        env.step({a: plan[a] for a in live} if len(live) < n else plan)
        steps += 1
        agent_steps += len(live)
    wall = time.perf_counter() - start
    return steps / wall, agent_steps / wall


def scenario_rates(n: int, seconds: float) -> tuple[float, float, float, float]:
    """The default scenario with ``n`` negotiators, every one a learner (``make_parallel_env``):
    ticks/s, agent-steps/s, the share of the time spent in the World's tick, and the seconds to
    build the world (one reset)."""
    from environments.scenario_parallel import make_parallel_env

    env = make_parallel_env(
        MARKETPLACE, "negotiators", settings={"population.negotiators.count": n}
    )
    start = time.perf_counter()
    env.reset(seed=0)
    build = time.perf_counter() - start
    world_run = env.runner.world.run
    in_world = 0.0

    def timed(until: int) -> None:
        nonlocal in_world
        t = time.perf_counter()
        world_run(until)
        in_world += time.perf_counter() - t

    env.runner.world.run = timed  # type: ignore[method-assign]
    action = np.zeros(1, dtype=np.float32)
    steps = agent_steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and env.agents:
        live = env.agents
        env.step({a: action for a in live})
        steps += 1
        agent_steps += len(live)
    wall = time.perf_counter() - start
    return steps / wall, agent_steps / wall, in_world / wall, build


# How the shipped scenario policy was trained (agora train), and the settings it is scored under.
SCENARIO_TRAINING = (
    "agora train scenarios/marketplace.toml --learner negotiators --reward profit "
    "--set population.negotiators.core=baseline --seats-per-world 20 --num-envs 40 "
    "--num-steps 100 --total-steps 100000 --seed 1"
)
SCENARIO_KWARGS: dict[str, Any] = {
    "reward": "profit",
    "settings": {"population.negotiators.core": "baseline"},
}


def scenario_rows(quick: bool) -> list[tuple[str, ...]]:
    """The negotiator trained in the default scenario against ZI-C in the same seat, among ZI-C
    contractors, on held-out seeds: profit per episode (the reward it was trained on)."""
    from agents.shade_policy import ShadePolicy
    from environments.evaluation import ZIC, scenario_returns

    if not SCENARIO_POLICY.is_file():
        return [(f"{SCENARIO_POLICY} not found: {SCENARIO_TRAINING}", "", "", "")]
    seeds = EVAL_SEEDS[:1] if quick else EVAL_SEEDS
    episodes = 1 if quick else 2
    policy = ShadePolicy(SCENARIO_POLICY)
    kwargs = dict(SCENARIO_KWARGS)
    if quick:
        kwargs.update(settings={**SCENARIO_KWARGS["settings"], "fault": []}, ticks=40)
    trained = scenario_returns(
        _actor(policy), MARKETPLACE, "negotiators", seeds, episodes, **kwargs
    )
    zic = scenario_returns(ZIC, MARKETPLACE, "negotiators", seeds, episodes, **kwargs)
    rows = [
        (str(s), f"{a:.2f}", f"{b:.2f}", f"{a - b:+.2f}")
        for s, a, b in zip(seeds, trained, zic, strict=True)
    ]
    rows.append(
        (
            "mean",
            f"{np.mean(trained):.2f}",
            f"{np.mean(zic):.2f}",
            f"{np.mean(trained) - np.mean(zic):+.2f}",
        )
    )
    return rows


def _aec(n: int) -> float:
    from pettingzoo.test import performance_benchmark

    from environments import market_v0

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        performance_benchmark(market_v0.env(n_agents=n))
    found = re.search(r"([0-9.e+]+) turns per second", buf.getvalue())
    return float(found.group(1)) if found else float("nan")


def _vector(num_envs: int, seconds: float) -> float:
    from environments.market import MarketVectorEnv

    env = MarketVectorEnv(num_envs=num_envs)
    env.reset(seed=0)
    actions = np.full((num_envs, 1), 0.3)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions)
        steps += 1
    return steps * num_envs / (time.perf_counter() - start)


def _kernels(n: int) -> tuple[float, float]:
    from agents.auction import arrival_orders, double_auction, double_auction_fast

    rng = np.random.default_rng(1)
    is_buyer = np.arange(2 * n) >= n
    limit = np.concatenate([rng.uniform(0.5, 1.5, n), rng.uniform(1, 2, n)])
    posts = np.concatenate(
        [limit[:n] + rng.random((30, n)) * (2 - limit[:n]), rng.random((30, n)) * limit[n:]], axis=1
    )
    order = arrival_orders(rng.random((30, 2 * n)))
    out = []
    for f in (double_auction_fast, double_auction):
        f(is_buyer, limit, posts, order)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 0.5:
            f(is_buyer, limit, posts, order)
            reps += 1
        out.append(reps / (time.perf_counter() - start))
    return out[0], out[1]


def run(quick: bool) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Throughput rows, trained-policy rows (the scenario) and learner rows (Market-v0)."""
    import gymnasium
    from gymnasium.utils.performance import benchmark_step

    from environments import register_envs

    register_envs()

    seconds = 0.5 if quick else 3.0
    rows: list[tuple[str, ...]] = []
    for n in (10, 100, 1000):
        sps, aps = parallel_rates(n, seconds)
        rows.append((f"market_v0 parallel_env, {n} agents", f"{sps:,.0f}", f"{aps:,.0f}"))
    for n in (10, 100, 1000):
        tps, aps, share, build = scenario_rates(n, seconds)
        rows.append(
            (
                f"agora.make_parallel_env(marketplace.toml, 'negotiators'), {n} learners "
                f"(World tick {share:.0%} of the time; build {build:.1f} s)",
                f"{tps:,.1f}",
                f"{aps:,.0f}",
            )
        )
    for n in (10,) if quick else (10, 100, 1000):
        turns = _aec(n)
        rows.append(
            (
                f"market_v0 env() (AEC), {n} agents, PettingZoo performance_benchmark",
                f"{turns / n:,.0f}",
                f"{turns:,.0f}",
            )
        )
    single = benchmark_step(
        gymnasium.make("agora/Market-v0").unwrapped, target_duration=1 if quick else 3, seed=0
    )
    rows.append(
        (
            "agora/Market-v0, 8 agents (1 learner), Gymnasium benchmark_step",
            f"{single:,.0f}",
            f"{single * 8:,.0f}",
        )
    )
    for num_envs in (16, 256):
        sps = _vector(num_envs, seconds)
        rows.append((f"MarketVectorEnv, {num_envs} markets of 8", f"{sps:,.0f}", f"{sps * 8:,.0f}"))
    for n in (10, 100, 1000):
        fast, direct = _kernels(n)
        rows.append(
            (
                f"one auction period, {n} sellers + {n} buyers: heap kernel / direct kernel",
                f"{fast:,.0f} / {direct:,.0f} (x{fast / direct:.1f})",
                f"{fast * n:,.0f} / {direct * n:,.0f}",
            )
        )
    return rows, policy_rows(quick), learning_rows(quick), scenario_rows(quick)


def policy_rows(
    quick: bool, scenario: Path = Path("scenarios/trained_negotiators.toml")
) -> list[tuple[str, ...]]:
    """Profit per contractor, trained-policy seats vs ZI-C seats in the same auction, per seed."""
    from runtime.kernel.scenario import load
    from runtime.kernel.world import World

    scenario_config, _ = load(scenario)
    rows = []
    core, zic = [], []
    for seed in SEEDS[:2] if quick else SEEDS:
        world = World(scenario_config, base=scenario.parent, seed=seed)
        world.run(60 if quick else None)
        m = next(p for p in world.populations if p.role == "negotiator").role_metrics()
        core.append(m["profit_per_core_agent_credits"])
        zic.append(m["profit_per_zic_agent_credits"])
        rows.append((str(seed), f"{core[-1]:.2f}", f"{zic[-1]:.2f}", f"{m['efficiency']:.3f}"))
    rows.append(("mean", f"{np.mean(core):.2f}", f"{np.mean(zic):.2f}", ""))
    return rows


def _contender(
    name: str, training: str, seconds: float | None, returns: list[float]
) -> dict[str, Any]:
    return {"name": name, "training": training, "seconds": seconds, "returns": np.array(returns)}


def _evaluate(policy: Any, seeds: tuple[int, ...], episodes: int) -> list[float]:
    from environments.evaluation import mean_returns

    return mean_returns(policy, seeds, episodes)


def _sb3(algorithm: str, steps: int, seeds: tuple[int, ...], episodes: int) -> dict[str, Any]:
    """SB3's ``algorithm`` with its defaults on the registered env, then its deterministic
    ``predict`` on the held-out seeds."""
    import gymnasium
    import stable_baselines3
    import torch

    from environments import register_envs

    register_envs()

    torch.set_num_threads(1)  # one thread: the same run on this machine, run after run
    start = time.perf_counter()
    kind = getattr(stable_baselines3, algorithm)
    model = kind("MlpPolicy", gymnasium.make("agora/Market-v0"), seed=LEARN_SEED, device="cpu")
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    returns = _evaluate(lambda obs: model.predict(obs, deterministic=True)[0], seeds, episodes)
    # PPO learns in whole rollouts of 2,048 steps, so it may take a few more steps than asked.
    return _contender(
        f"SB3 {algorithm} (defaults, MlpPolicy)",
        f"{model.num_timesteps:,} steps, seed {LEARN_SEED}",
        seconds,
        returns,
    )


def _agora_train(steps: int, seeds: tuple[int, ...], episodes: int) -> dict[str, Any]:
    """``agora train``'s PPO with its defaults for ``steps`` steps, seed 1."""
    from agents.shade_policy import ShadePolicy
    from environments.ppo import Args, train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = train(Args(total_steps=steps, eval_seeds=seeds[:1], eval_episodes=1), Path(folder))
        seconds = time.perf_counter() - start
        policy = ShadePolicy(Path(folder) / "policy.npz")
    returns = _evaluate(_actor(policy), seeds, episodes)
    # Whole rollouts of 2,048 steps: a few steps fewer than asked.
    return _contender("agora train PPO", f"{result['env_steps']:,} steps, seed 1", seconds, returns)


def _actor(policy: Any) -> Callable[[Any], Any]:
    return lambda obs: policy.action(obs[None])[0].astype(np.float32)


def _best_constant(seeds: tuple[int, ...], episodes: int, quick: bool) -> dict[str, Any]:
    """The constant shade of a 0.05 grid with the best mean return on :data:`GRID_SEEDS`."""
    grid = np.round(np.arange(0.0, 1.0001, 0.1 if quick else 0.05), 2)
    grid_seeds = GRID_SEEDS[:2] if quick else GRID_SEEDS
    tried = {float(s): np.mean(_evaluate(_constant(s), grid_seeds, episodes)) for s in grid}
    best = max(tried, key=lambda s: tried[s])
    return _contender(
        f"constant shade {best:.2f} (reference)",
        f"best of a {grid[1]:.2f} grid on seeds {grid_seeds[0]}-{grid_seeds[-1]}",
        None,
        _evaluate(_constant(best), seeds, episodes),
    )


def _constant(shade: float) -> Callable[[Any], Any]:
    action = np.array([2.0 * shade - 1.0], dtype=np.float32)
    return lambda obs: action


def learning_rows(quick: bool) -> list[tuple[str, ...]]:
    """SB3 PPO and SAC (defaults) against random, ZI-C, ``agora train`` and a constant shade."""
    from agents.shade_policy import ShadePolicy
    from environments.evaluation import RANDOM, ZIC

    seeds = EVAL_SEEDS[:2] if quick else EVAL_SEEDS
    episodes = 3 if quick else EVAL_EPISODES
    steps = (
        {"PPO": 2_048, "SAC": 1_000, "agora": 4_096}
        if quick
        else {"PPO": LEARN_STEPS, "SAC": LEARN_STEPS, "agora": LEARN_STEPS}
    )
    random = _contender("uniform-random action", "-", None, _evaluate(RANDOM, seeds, episodes))
    zic = _contender("ZI-C in the learner's seat", "-", None, _evaluate(ZIC, seeds, episodes))
    shipped = _contender(
        "agora train PPO (shipped policy)",
        "300,000 steps, seed 1",
        None,
        _evaluate(_actor(ShadePolicy(SHIPPED)), seeds, episodes),
    )
    rows = [random, zic, shipped, _agora_train(steps["agora"], seeds, episodes)]
    if importlib.util.find_spec("stable_baselines3") is None:
        missing = "stable-baselines3 not installed: pip install stable-baselines3==2.9.2"
        return [_row(c, random, zic, shipped) for c in rows] + [(missing,) + ("",) * 7]
    rows += [_sb3("PPO", steps["PPO"], seeds, episodes), _sb3("SAC", steps["SAC"], seeds, episodes)]
    middle = _contender(
        "action 0, shade 0.50 (reference)",
        "an untrained policy's mean",
        None,
        _evaluate(_constant(0.5), seeds, episodes),
    )
    rows += [_best_constant(seeds, episodes, quick), middle]
    return [_row(c, random, zic, shipped) for c in rows]


def _row(
    c: dict[str, Any], random: dict[str, Any], zic: dict[str, Any], shipped: dict[str, Any]
) -> tuple[str, ...]:
    r = c["returns"]
    over = r - random["returns"]  # the same seeds: margins are paired seed by seed
    return (
        c["name"],
        c["training"],
        "-" if c["seconds"] is None else f"{c['seconds']:.0f}",
        f"{r.mean():.2f}",
        f"{r.min():.2f}..{r.max():.2f}",
        f"{over.mean():+.2f} ({over.min():+.2f}..{over.max():+.2f})",
        f"{(r - zic['returns']).mean():+.2f}",
        f"{(r - shipped['returns']).mean():+.2f}",
    )
