"""Gymnasium and PettingZoo environments on Agora's task market.

Importing this package registers ``agora/Market-v0`` and ``agora/Refactor-v0`` with Gymnasium;
``gymnasium.make("environments:agora/Market-v0")`` imports it for you. ``environments.market_v0``
is the PettingZoo environment (``env()``, ``parallel_env()``, ``raw_env()``).
``agora/Scenario-v0`` (:mod:`environments.scenario_env`) and :mod:`environments.scenario_parallel`
put learners into a full World of any scenario (``agora.make_env``, ``agora.make_parallel_env``).
``environments.convert_sb3`` turns a Stable-Baselines3 model into a policy file.
"""

from __future__ import annotations

import gymnasium


def register_envs() -> None:
    """Register Agora's Gymnasium environments (idempotent)."""
    if "agora/Market-v0" not in gymnasium.registry:
        gymnasium.register(
            id="agora/Market-v0",
            entry_point="environments.market:MarketEnv",
            vector_entry_point="environments.market:MarketVectorEnv",
        )
    if "agora/Scenario-v0" not in gymnasium.registry:
        gymnasium.register(
            id="agora/Scenario-v0", entry_point="environments.scenario_env:ScenarioEnv"
        )
    if "agora/Refactor-v0" not in gymnasium.registry:
        gymnasium.register(
            id="agora/Refactor-v0", entry_point="environments.refactor_env:RefactorEnv"
        )


register_envs()
