"""A trained policy acting over the network: the PPO negotiator from `agora train`, driving a seat
of a served world through agora.client.RemoteSeatEnv (a gymnasium.Env), unchanged.

    python examples/served/ppo_negotiator.py --url http://127.0.0.1:8765 \
        --seat negotiators-1 --tokens tokens.txt --policy scenarios/policies/market_ppo.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.shade_policy import ShadePolicy
from agora.client import RemoteSeatEnv

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--seat", default="negotiators-1")
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--policy", type=Path, default=ROOT / "scenarios/policies/market_ppo.npz")
    args = parser.parse_args()
    token = next(
        t
        for s, _, t in (ln.partition(" ") for ln in args.tokens.read_text().splitlines())
        if s == args.seat
    )
    policy = ShadePolicy(args.policy)
    env = RemoteSeatEnv(args.url, args.seat, token)
    obs, _ = env.reset()
    total, steps, truncated = 0.0, 0, False
    while not truncated:
        obs, reward, _, truncated, _ = env.step(policy.action(obs[None])[0])
        total += reward
        steps += 1
    env.close()
    print(f"{args.seat}: {steps} ticks, {total:.3f} credits gained")


if __name__ == "__main__":
    main()
