"""PPO for ``agora/Market-v0``, in one readable file (the CleanRL layout: arguments, agent, rollout, update).

The agent is an actor-critic pair of small MLPs. The actor outputs the mean of a Gaussian over a raw
action ``u``; the shade the environment receives is ``sigmoid(u)``, so every action is inside the
space by construction (the environment refuses anything else; nothing is clipped). Log-probabilities
are taken on ``u``. Rollouts come from :class:`environments.market.MarketVectorEnv` (``num_envs``
markets stepped by one batched kernel call), with generalised advantage estimation and the clipped
surrogate objective. With a seed, CPU training is bit-for-bit reproducible (one torch thread).

What a run writes to ``out``: ``curve.csv`` (iteration, env steps, mean return of the episodes that
ended, mean shade), ``curve.png`` (the learning curve), ``checkpoints/iter_NNNN.pt`` (agent and
optimiser state), ``policy.npz`` (the actor, loadable as a negotiator's core in a scenario) and
``eval.json`` (the trained policy against the scripted ZI-C negotiator on held-out seeds).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from agents.shade_policy import POLICY_KIND, ShadePolicy
from environments.market import MarketEnv, MarketVectorEnv
from environments.market_core import OBS_DIM

HIDDEN = 64


@dataclass
class Args:
    """Training settings (``agora train --help`` lists them)."""

    total_steps: int = 200_000  # environment steps, summed over the vector's markets
    num_envs: int = 16
    num_steps: int = 128  # steps per market per rollout
    n_agents: int = 8  # negotiators per market (one learns, the rest are ZI-C)
    periods: int = 50
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    minibatches: int = 4
    update_epochs: int = 4
    clip: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    seed: int = 1
    device: str = "cpu"
    checkpoint_every: int = 10  # iterations
    eval_seeds: tuple[int, ...] = (1001, 1002, 1003, 1004, 1005)
    eval_episodes: int = 20


def layer(i: int, o: int, std: float = 2**0.5) -> nn.Linear:
    """A linear layer with orthogonal weights and zero bias (CleanRL's initialisation)."""
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.constant_(lin.bias, 0.0)
    return lin


class Agent(nn.Module):
    """Actor (mean of the raw action) and critic, separate two-layer tanh MLPs; a learned log-std."""

    def __init__(self) -> None:
        super().__init__()
        self.critic = nn.Sequential(layer(OBS_DIM, HIDDEN), nn.Tanh(), layer(HIDDEN, HIDDEN), nn.Tanh(), layer(HIDDEN, 1, 1.0))
        self.actor = nn.Sequential(layer(OBS_DIM, HIDDEN), nn.Tanh(), layer(HIDDEN, HIDDEN), nn.Tanh(), layer(HIDDEN, 1, 0.01))
        self.log_std = nn.Parameter(torch.zeros(1, 1))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def act(self, x: torch.Tensor, u: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw action (sampled unless given), its log-prob, the entropy and the value."""
        mean = self.actor(x)
        dist = torch.distributions.Normal(mean, self.log_std.expand_as(mean).exp())
        if u is None:
            u = dist.sample()
        return u, dist.log_prob(u).sum(1), dist.entropy().sum(1), self.critic(x)


def shade_of(u: torch.Tensor) -> npt.NDArray[np.float64]:
    """The environment action for raw actions ``u``: sigmoid, always inside [0, 1]."""
    return torch.sigmoid(u).double().cpu().numpy()


def save_policy(agent: Agent, path: Path) -> None:
    """Write the actor as a policy file a scenario's negotiators can load (``core = "policy.npz"``)."""
    weights = {f"actor_{k.replace('.', '_')}": v.detach().cpu().double().numpy() for k, v in agent.actor.state_dict().items()}
    buf = io.BytesIO()
    np.savez(buf, agora_role=np.array("negotiator"), kind=np.array(POLICY_KIND), **weights)
    path.write_bytes(buf.getvalue())


def evaluate(policy: Callable[[npt.NDArray[np.float32]], float] | None, args: Args) -> list[float]:
    """Mean episode return per held-out seed for ``policy`` (None: the scripted ZI-C shade, uniform)."""
    means = []
    for seed in args.eval_seeds:
        env = MarketEnv(n_agents=args.n_agents, periods=args.periods)
        rng = np.random.default_rng(seed)
        total = 0.0
        for e in range(args.eval_episodes):
            obs, _ = env.reset(seed=seed * 1000 + e)
            done = False
            while not done:
                shade = rng.random() if policy is None else policy(obs)
                obs, r, term, trunc, _ = env.step(np.array([shade], dtype=np.float32))
                total += r
                done = term or trunc
        means.append(total / args.eval_episodes)
    return means


def train(args: Args, out: Path, progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Train, write the run's files to ``out`` and return the evaluation."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(1)
    device = torch.device(args.device)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    envs = MarketVectorEnv(num_envs=args.num_envs, n_agents=args.n_agents, periods=args.periods)
    agent = Agent().double().to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)
    T, N = args.num_steps, args.num_envs
    batch = T * N
    iterations = max(1, args.total_steps // batch)
    obs_buf = torch.zeros((T, N, OBS_DIM), dtype=torch.float64, device=device)
    u_buf = torch.zeros((T, N, 1), dtype=torch.float64, device=device)
    logp_buf = torch.zeros((T, N), dtype=torch.float64, device=device)
    rew_buf = torch.zeros((T, N), dtype=torch.float64, device=device)
    done_buf = torch.zeros((T, N), dtype=torch.float64, device=device)
    val_buf = torch.zeros((T, N), dtype=torch.float64, device=device)
    valid_buf = torch.zeros((T, N), dtype=torch.float64, device=device)  # 0 where the step was an autoreset

    obs_np, _ = envs.reset(seed=args.seed)
    obs = torch.from_numpy(obs_np.astype(np.float64)).to(device)
    done = torch.zeros(N, dtype=torch.float64, device=device)
    ep_return = np.zeros(N)
    rows = []
    steps = 0
    for it in range(1, iterations + 1):
        for g in optimizer.param_groups:
            g["lr"] = args.lr * (1.0 - (it - 1) / iterations)
        finished: list[float] = []
        shades = []
        for t in range(T):
            obs_buf[t] = obs
            done_buf[t] = done
            valid_buf[t] = 1.0 - done  # a step taken after an episode ended only resets the market
            with torch.no_grad():
                u, logp, _, v = agent.act(obs)
            u_buf[t], logp_buf[t], val_buf[t] = u, logp, v.flatten()
            shade = shade_of(u)
            shades.append(shade.mean())
            obs_np, reward, term, trunc, _ = envs.step(shade)
            steps += N
            ep_return += reward
            ended = term | trunc
            finished += ep_return[ended].tolist()
            ep_return[ended] = 0.0
            rew_buf[t] = torch.from_numpy(reward).to(device)
            obs = torch.from_numpy(obs_np.astype(np.float64)).to(device)
            done = torch.from_numpy(ended.astype(np.float64)).to(device)
        with torch.no_grad():
            next_value = agent.value(obs).flatten()
            adv = torch.zeros_like(rew_buf)
            last = torch.zeros(N, dtype=torch.float64, device=device)
            for t in reversed(range(T)):
                nonterminal = 1.0 - (done if t == T - 1 else done_buf[t + 1])
                nv = next_value if t == T - 1 else val_buf[t + 1]
                delta = rew_buf[t] + args.gamma * nv * nonterminal - val_buf[t]
                last = delta + args.gamma * args.gae_lambda * nonterminal * last
                # An autoreset step carries no learning signal: its advantage chain restarts.
                last = last * valid_buf[t]
                adv[t] = last
            returns = adv + val_buf
        b_obs, b_u = obs_buf.reshape(-1, OBS_DIM), u_buf.reshape(-1, 1)
        b_logp, b_adv, b_ret = logp_buf.reshape(-1), adv.reshape(-1), returns.reshape(-1)
        b_valid = valid_buf.reshape(-1) > 0
        idx_all = torch.arange(batch, device=device)[b_valid]
        mb = max(1, idx_all.numel() // args.minibatches)
        gen = torch.Generator().manual_seed(args.seed * 100_003 + it)
        for _ in range(args.update_epochs):
            perm = idx_all[torch.randperm(idx_all.numel(), generator=gen).to(device)]
            for start in range(0, perm.numel(), mb):
                ix = perm[start : start + mb]
                _, newlogp, entropy, newv = agent.act(b_obs[ix], b_u[ix])
                ratio = (newlogp - b_logp[ix]).exp()
                a = b_adv[ix]
                a = (a - a.mean()) / (a.std() + 1e-8)
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
                vloss = 0.5 * ((newv.flatten() - b_ret[ix]) ** 2).mean()
                loss = pg - args.ent_coef * entropy.mean() + args.vf_coef * vloss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        mean_return = float(np.mean(finished)) if finished else float("nan")
        rows.append({"iteration": it, "env_steps": steps, "mean_return": mean_return, "episodes": len(finished),
                     "mean_shade": float(np.mean(shades))})
        if it % args.checkpoint_every == 0 or it == iterations:
            torch.save({"agent": agent.state_dict(), "optimizer": optimizer.state_dict(), "iteration": it,
                        "args": asdict(args)}, out / "checkpoints" / f"iter_{it:04d}.pt")
        if progress is not None:
            progress(it, iterations, mean_return)
    _write_curve(rows, out)
    save_policy(agent, out / "policy.npz")
    policy = ShadePolicy(out / "policy.npz")
    trained = evaluate(lambda o: float(policy(o[None])[0]), args)
    scripted = evaluate(None, args)
    result = {"seeds": list(args.eval_seeds), "episodes_per_seed": args.eval_episodes, "trained": trained,
              "scripted": scripted, "first_return": rows[0]["mean_return"], "last_return": rows[-1]["mean_return"],
              "iterations": iterations, "env_steps": steps, "args": asdict(args)}
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _write_curve(rows: list[dict[str, Any]], out: Path) -> None:
    with (out / "curve.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["env_steps"] for r in rows], [r["mean_return"] for r in rows], lw=1.5)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return (credits)")
    ax.set_title("PPO on agora/Market-v0")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)
