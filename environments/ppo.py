"""PPO for ``agora/Market-v0`` in one readable file (the CleanRL layout: arguments, agent, rollout,
advantages, update).

The agent is an actor-critic pair of small MLPs. The actor outputs the mean of a Gaussian over a
raw action ``u``; the environment receives ``tanh(u)``, inside the action box ``[-1, 1]`` by
construction (the environment refuses anything else; nothing is clipped), so the shade is
``(tanh(u) + 1)/2``. Log-probabilities are taken on ``u``: the squashing is the same for the old
and the new policy, so it cancels in PPO's probability ratio. Rollouts come from
:class:`environments.market.MarketVectorEnv` (``num_envs`` markets stepped by one batched kernel
call), with generalised advantage estimation and the clipped surrogate objective. With a seed,
CPU training is bit-for-bit reproducible (one torch thread).

What a run writes to ``out``: ``curve.csv`` (iteration, env steps, mean return of the episodes
that ended, mean shade), ``curve.png`` (the learning curve), ``checkpoints/iter_NNNN.pt`` (agent
and optimiser state), ``policy.npz`` (the actor as a policy file, ``docs/reference/
policy-files.md``; a scenario's negotiators load it as their core) and ``eval.json`` (the trained
policy against ZI-C and a uniform-random action on held-out seeds).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from agents.shade_policy import OBS_DIM, ShadePolicy, save_policy_file
from environments.evaluation import RANDOM, ZIC, mean_returns
from environments.market import MarketVectorEnv

HIDDEN = 64
# The raw action's starting spread. tanh(N(0, 0.5²)) spreads the first shades over the middle of
# [0, 1]; a standard deviation of 1 would put one in seven within 0.05 of 0 or 1, where tanh
# saturates, and the policy would learn from that noise more than from its shade.
LOG_STD_INIT = math.log(0.5)


@dataclass
class Args:
    """Training settings (``agora train --help`` lists those the command line sets)."""

    total_steps: int = 200_000
    """environment steps in all, summed over the vector's markets"""
    num_envs: int = 16
    """markets stepped together by the native vector env"""
    num_steps: int = 128
    """steps per market per rollout (a rollout is ``num_envs · num_steps`` steps)"""
    n_agents: int = 8
    """negotiators per market: one learns, the others are ZI-C"""
    periods: int = 50
    """periods per episode"""
    lr: float = 3e-4
    """Adam's learning rate at the start, annealed linearly to 0"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    minibatches: int = 32
    """minibatches per update epoch (CleanRL's continuous-action setting)"""
    update_epochs: int = 10
    """passes over each rollout (CleanRL's continuous-action setting)"""
    clip: float = 0.2
    """PPO's clipping coefficient for the probability ratio"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 0.5
    """largest global gradient norm (larger gradients are scaled down)"""
    seed: int = 1
    """seed of torch, the minibatch order and the markets: the same seed gives the same policy"""
    device: str = "cpu"
    """``cpu``, or ``cuda`` for a GPU torch sees"""
    checkpoint_every: int = 10
    """iterations between checkpoints (the last iteration is always saved)"""
    eval_seeds: tuple[int, ...] = (1001, 1002, 1003, 1004, 1005)
    """held-out seeds of the final evaluation"""
    eval_episodes: int = 20
    """episodes per held-out seed in the final evaluation"""
    scenario: str | dict[str, Any] | None = None
    """a scenario file (or its tables) to train in (``agora/Scenario-v0``); None: Market-v0"""
    learner: str = "negotiators"
    """with ``scenario``: the population whose seats learn"""
    reward: str = "wealth"
    """with ``scenario``: the reward of the learner's control form (``wealth``: balance plus stake
    gained; negotiators also ``profit``: price minus cost of the tick's contract)"""
    settings: dict[str, Any] | None = None
    """with ``scenario``: scenario keys to override, as ``agora sweep --set`` spells them"""
    seats_per_world: int = 1
    """with ``scenario``: seats of ``learner`` that learn in each World, sharing the policy
    (``num_envs`` must be a multiple; 1: one World per sub-env)"""
    ticks: int | None = None
    """with ``scenario``: ticks per episode (None: the scenario's own)"""
    init_policy: str | None = None
    """a policy file written by ``agora train`` whose actor starts the training (a warm start);
    None: a fresh actor"""


def layer(i: int, o: int, std: float = 2**0.5) -> nn.Linear:
    """A linear layer with orthogonal weights and zero bias (CleanRL's initialisation)."""
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.constant_(lin.bias, 0.0)
    return lin


def mlp(out: int, std: float) -> nn.Sequential:
    """Two tanh hidden layers of :data:`HIDDEN` units from the observation to ``out`` outputs."""
    return nn.Sequential(
        layer(OBS_DIM, HIDDEN), nn.Tanh(), layer(HIDDEN, HIDDEN), nn.Tanh(), layer(HIDDEN, out, std)
    )


class Agent(nn.Module):
    """Actor (mean of the raw action) and critic, separate two-layer tanh MLPs; a learned
    log-std."""

    def __init__(self) -> None:
        super().__init__()
        self.critic = mlp(1, 1.0)
        self.actor = mlp(1, 0.01)  # a small last layer: the first shades are near 0.5 for all
        self.log_std = nn.Parameter(torch.full((1, 1), LOG_STD_INIT))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """The critic's value of observations ``x[n, 4]``: ``[n, 1]``."""
        value: torch.Tensor = self.critic(x)
        return value

    def act(
        self, x: torch.Tensor, u: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw action (sampled unless given), its log-prob, the entropy and the value."""
        mean = self.actor(x)
        dist = torch.distributions.Normal(mean, self.log_std.expand_as(mean).exp())
        if u is None:
            u = dist.sample()
        return u, dist.log_prob(u).sum(1), dist.entropy().sum(1), self.critic(x)


def action_of(u: torch.Tensor) -> npt.NDArray[np.float64]:
    """The environment actions for raw actions ``u[n, 1]``: ``tanh(u)``, inside ``[-1, 1]``."""
    action: npt.NDArray[np.float64] = torch.tanh(u).double().cpu().numpy()
    return action


def load_actor(agent: Agent, path: str | Path) -> None:
    """Set ``agent``'s actor to the layers of policy file ``path`` (a warm start); ValueError when
    the file's layers, activation or squash are not those of the actor ``agora train`` writes."""
    policy = ShadePolicy(path)
    linears = [m for m in agent.actor if isinstance(m, nn.Linear)]
    shapes = [tuple(m.weight.shape) for m in linears]
    found = [w.shape for w, _ in policy.layers]
    if found != shapes or policy.activation != "tanh" or policy.squash != "tanh":
        raise ValueError(
            f"{path}: layers {found}, {policy.activation}/{policy.squash}; a warm start needs "
            f"the actor agora train writes: layers {shapes}, tanh/tanh"
        )
    with torch.no_grad():
        for module, (weight, bias) in zip(linears, policy.layers, strict=True):
            module.weight.copy_(torch.from_numpy(weight).to(module.weight))
            module.bias.copy_(torch.from_numpy(bias).to(module.bias))


def save_policy(agent: Agent, path: Path) -> None:
    """Write the actor as a policy file (tanh hidden layers, ``tanh`` squash, float64)."""
    linears = [m for m in agent.actor if isinstance(m, nn.Linear)]
    save_policy_file(
        path,
        [m.weight.detach().cpu().double().numpy() for m in linears],
        [m.bias.detach().cpu().double().numpy() for m in linears],
        activation="tanh",
        squash="tanh",
        source="agora train (PPO, environments/ppo.py)",
    )


def evaluate(policy: Callable[[npt.NDArray[np.float32]], Any] | str, args: Args) -> list[float]:
    """Mean episode return per held-out seed (:func:`environments.evaluation.mean_returns`)."""
    return mean_returns(
        policy, args.eval_seeds, args.eval_episodes, n_agents=args.n_agents, periods=args.periods
    )


@dataclass
class Rollout:
    """One rollout's tensors, ``[num_steps, num_envs, ...]``."""

    obs: torch.Tensor
    u: torch.Tensor
    logp: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    value: torch.Tensor
    valid: torch.Tensor  # 0 where the step only reset a market whose episode had ended

    @classmethod
    def zeros(cls, steps: int, markets: int, device: torch.device) -> Rollout:
        """Empty storage for ``steps`` steps of ``markets`` markets (float64)."""

        def z(*trailing: int) -> torch.Tensor:
            return torch.zeros((steps, markets, *trailing), dtype=torch.float64, device=device)

        return cls(z(OBS_DIM), z(1), z(), z(), z(), z(), z())


@dataclass
class Cursor:
    """Where the vector env stands between rollouts."""

    obs: torch.Tensor
    done: torch.Tensor
    ep_return: npt.NDArray[np.float64]
    steps: int = 0


def collect(agent: Agent, envs: Any, roll: Rollout, cur: Cursor) -> tuple[list[float], float]:
    """Fill ``roll`` with one rollout; the returns of the episodes that ended, and the mean
    shade."""
    finished: list[float] = []
    shades = []
    device = roll.obs.device
    for t in range(roll.obs.shape[0]):
        roll.obs[t], roll.done[t] = cur.obs, cur.done
        roll.valid[t] = 1.0 - cur.done  # a step taken after an episode ended only resets it
        with torch.no_grad():
            u, logp, _, v = agent.act(cur.obs)
        roll.u[t], roll.logp[t], roll.value[t] = u, logp, v.flatten()
        action = action_of(u)
        shades.append(float((action.mean() + 1.0) / 2.0))
        obs_np, reward, term, trunc, _ = envs.step(action)
        cur.steps += envs.num_envs
        cur.ep_return += reward
        ended = term | trunc
        finished += cur.ep_return[ended].tolist()
        cur.ep_return[ended] = 0.0
        roll.reward[t] = torch.from_numpy(reward).to(device)
        cur.obs = torch.from_numpy(obs_np.astype(np.float64)).to(device)
        cur.done = torch.from_numpy(ended.astype(np.float64)).to(device)
    return finished, float(np.mean(shades))


def advantages(
    agent: Agent, roll: Rollout, cur: Cursor, args: Args
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and the value targets, ``[num_steps, num_envs]`` each."""
    steps = roll.reward.shape[0]
    with torch.no_grad():
        next_value = agent.value(cur.obs).flatten()
        adv = torch.zeros_like(roll.reward)
        last = torch.zeros_like(next_value)
        for t in reversed(range(steps)):
            nonterminal = 1.0 - (cur.done if t == steps - 1 else roll.done[t + 1])
            value_after = next_value if t == steps - 1 else roll.value[t + 1]
            delta = roll.reward[t] + args.gamma * value_after * nonterminal - roll.value[t]
            last = delta + args.gamma * args.gae_lambda * nonterminal * last
            # An autoreset step carries no learning signal: its advantage chain restarts.
            last = last * roll.valid[t]
            adv[t] = last
    return adv, adv + roll.value


def update(
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    roll: Rollout,
    adv: torch.Tensor,
    returns: torch.Tensor,
    args: Args,
    iteration: int,
) -> None:
    """``update_epochs`` passes of clipped-surrogate minibatch steps over the rollout's valid
    steps."""
    b_obs, b_u = roll.obs.reshape(-1, OBS_DIM), roll.u.reshape(-1, 1)
    b_logp, b_adv, b_ret = roll.logp.reshape(-1), adv.reshape(-1), returns.reshape(-1)
    idx_all = torch.arange(b_logp.numel(), device=b_logp.device)[roll.valid.reshape(-1) > 0]
    mb = max(1, idx_all.numel() // args.minibatches)
    gen = torch.Generator().manual_seed(args.seed * 100_003 + iteration)
    for _ in range(args.update_epochs):
        perm = idx_all[torch.randperm(idx_all.numel(), generator=gen).to(idx_all.device)]
        for start in range(0, perm.numel(), mb):
            ix = perm[start : start + mb]
            if ix.numel() < 2:  # one sample has no spread to normalise its advantage by
                continue
            _, newlogp, entropy, newv = agent.act(b_obs[ix], b_u[ix])
            ratio = (newlogp - b_logp[ix]).exp()
            a = (b_adv[ix] - b_adv[ix].mean()) / (b_adv[ix].std() + 1e-8)
            pg = torch.max(-a * ratio, -a * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
            vloss = 0.5 * ((newv.flatten() - b_ret[ix]) ** 2).mean()
            loss = pg - args.ent_coef * entropy.mean() + args.vf_coef * vloss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()


def _world_settings(args: Args) -> dict[str, Any]:
    """What training and evaluation in a scenario share: ticks per episode, reward, overrides."""
    return {"ticks": args.ticks, "reward": args.reward, "settings": args.settings}


def make_envs(args: Args) -> Any:
    """The vector env a run trains on: Market-v0's native one, or worlds of ``args.scenario``."""
    if args.scenario is None:
        return MarketVectorEnv(num_envs=args.num_envs, n_agents=args.n_agents, periods=args.periods)
    from environments.scenario_env import make_vec_env

    envs = make_vec_env(
        args.scenario, args.learner, args.num_envs, args.seats_per_world, **_world_settings(args)
    )
    runner = (
        cast(Any, envs).runners[0]
        if args.seats_per_world > 1
        else cast(Any, envs.envs[0].unwrapped).runner  # type: ignore[attr-defined]
    )
    role = runner.scenario.population[runner.index].role
    if role != "negotiator":  # a policy file holds a negotiator's shade policy
        envs.close()
        raise ValueError(
            f"learner {args.learner!r}: PPO here trains a negotiator's shade policy; this "
            f"population's role is {role!r} (train it through agora.make_env with a learner "
            "of your own)"
        )
    if envs.single_observation_space.shape != (OBS_DIM,) or envs.single_action_space.shape != (1,):
        raise ValueError(
            f"learner {args.learner!r}: PPO here trains a shade policy (observation "
            f"({OBS_DIM},), action (1,)); this role's control form has "
            f"{envs.single_observation_space.shape} and {envs.single_action_space.shape}"
        )
    return envs


def evaluate_args(policy: Any, args: Args) -> list[float]:
    """Mean return per held-out seed, in Market-v0 or in ``args.scenario`` (one seat learning)."""
    if args.scenario is None:
        return evaluate(policy, args)
    from environments.evaluation import scenario_returns

    return scenario_returns(
        policy,
        args.scenario,
        args.learner,
        args.eval_seeds,
        args.eval_episodes,
        **_world_settings(args),
    )


def train(
    args: Args, out: Path, progress: Callable[[int, int, float], None] | None = None
) -> dict[str, Any]:
    """Train, write the run's files to ``out`` and return the evaluation (``eval.json``)."""
    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(1)  # one thread: the same sums in the same order, run after run
    device = torch.device(args.device)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    envs = make_envs(args)
    agent = Agent().double().to(device)
    if args.init_policy is not None:
        load_actor(agent, args.init_policy)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)
    iterations = max(1, args.total_steps // (args.num_steps * args.num_envs))
    roll = Rollout.zeros(args.num_steps, args.num_envs, device)
    obs_np, _ = envs.reset(seed=args.seed)
    cur = Cursor(
        torch.from_numpy(obs_np.astype(np.float64)).to(device),
        torch.zeros(args.num_envs, dtype=torch.float64, device=device),
        np.zeros(args.num_envs),
    )
    rows = []
    for it in range(1, iterations + 1):
        # Anneal the learning rate linearly to 0 over the run.
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (1.0 - (it - 1) / iterations)
        # Rollout, advantages, then the clipped-surrogate update.
        finished, mean_shade = collect(agent, envs, roll, cur)
        adv, returns = advantages(agent, roll, cur, args)
        update(agent, optimizer, roll, adv, returns, args, it)
        rows.append(_curve_row(args, it, cur.steps, finished, mean_shade))
        if it % args.checkpoint_every == 0 or it == iterations:
            _checkpoint(agent, optimizer, args, it, out)
        if progress is not None:
            progress(it, iterations, rows[-1]["mean_return"])
    _write_curve(rows, out)
    save_policy(agent, out / "policy.npz")
    return _final_evaluation(args, out, rows, iterations, cur.steps)


def _curve_row(
    args: Args, iteration: int, env_steps: int, finished: list[float], mean_shade: float
) -> dict[str, Any]:
    """One row of ``curve.csv``: the iteration's steps so far and its episodes' mean return."""
    row: dict[str, Any] = {
        "iteration": iteration,
        "env_steps": env_steps,
        "mean_return": float(np.mean(finished)) if finished else float("nan"),
        "episodes": len(finished),
        "mean_shade": mean_shade,
    }
    if args.scenario is not None:
        row["scenario"] = (
            Path(args.scenario).name if isinstance(args.scenario, str) else "a scenario"
        )
    return row


def _checkpoint(
    agent: Agent, optimizer: torch.optim.Optimizer, args: Args, iteration: int, out: Path
) -> None:
    """Write ``checkpoints/iter_NNNN.pt``: agent and optimiser state, iteration and settings."""
    torch.save(
        {
            "agent": agent.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": iteration,
            "args": asdict(args),
        },
        out / "checkpoints" / f"iter_{iteration:04d}.pt",
    )


def _final_evaluation(
    args: Args, out: Path, rows: list[dict[str, Any]], iterations: int, steps: int
) -> dict[str, Any]:
    """The saved policy (deterministic) against ZI-C and a uniform-random action; ``eval.json``."""
    policy = ShadePolicy(out / "policy.npz")
    trained = evaluate_args(lambda o: policy.action(o[None])[0].astype(np.float32), args)
    result = {
        "seeds": list(args.eval_seeds),
        "episodes_per_seed": args.eval_episodes,
        "trained": trained,
        "scripted": evaluate_args(ZIC, args),
        "random": evaluate_args(RANDOM, args),
        "first_return": rows[0]["mean_return"],
        "last_return": rows[-1]["mean_return"],
        "iterations": iterations,
        "env_steps": steps,
        "args": asdict(args),
    }
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _write_curve(rows: list[dict[str, Any]], out: Path) -> None:
    """``curve.csv`` and ``curve.png``: mean return of the episodes ended per iteration."""
    with (out / "curve.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib  # imported here: a plotting backend is needed only once a run ends

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["env_steps"] for r in rows], [r["mean_return"] for r in rows], lw=1.5)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return (credits)")
    ax.set_title(
        "PPO on agora/Market-v0"
        if rows[0].get("scenario") is None
        else f"PPO in {rows[0]['scenario']}"
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)
