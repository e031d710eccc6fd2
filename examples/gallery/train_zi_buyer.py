"""Train a buyer of the Gode & Sunder market (examples/gallery/zi_constrained.toml) with
Stable-Baselines3's PPO, through agora.make_env with no glue code, and score it against ZI-C in
the same seat on held-out seeds.

    python examples/gallery/train_zi_buyer.py --steps 30000

Seat 0 of population "traders" (the buyer with values 190, 150, 110) learns one shade per trading
period; the other eleven traders stay ZI-C. The reward is the period's profit: value less price.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import agora
from environments.evaluation import RANDOM, ZIC, scenario_returns

SCENARIO = Path(__file__).resolve().parent / "zi_constrained.toml"
HELD_OUT = (1001, 1002, 1003, 1004, 1005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000, help="PPO environment steps")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per held-out seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the scores here as JSON")
    args = parser.parse_args()
    import gymnasium
    from stable_baselines3 import PPO

    env = agora.make_env(SCENARIO, learner="traders", seat=0, reward="profit")
    # Profits run to a hundred credits a period: scaled to about 1, as PPO's defaults expect.
    env = gymnasium.wrappers.TransformReward(env, lambda r: r / 100.0)
    start = time.perf_counter()
    model = PPO("MlpPolicy", env, seed=args.seed, device="cpu", n_steps=512, batch_size=128)
    model.learn(total_timesteps=args.steps)
    seconds = time.perf_counter() - start

    def policy(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    scores = {
        name: scenario_returns(who, SCENARIO, "traders", HELD_OUT, args.episodes, reward="profit")
        for name, who in (("trained", policy), ("zi-c", ZIC), ("random", RANDOM))
    }
    for name, values in scores.items():
        print(f"{name:8s} mean {np.mean(values):9.1f}  per seed {[round(v, 1) for v in values]}")
    print(f"trained in {seconds:.0f} s ({args.steps} steps)")
    if args.out is not None:
        args.out.write_text(json.dumps({**scores, "steps": args.steps, "seconds": seconds}) + "\n")


if __name__ == "__main__":
    main()
