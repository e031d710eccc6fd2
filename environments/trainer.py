"""The trainer behind ``agora train``, found through the ``agora.trainers`` entry point ``ppo``.

The command line checks its own options, then calls :func:`problems` and :func:`train` with the
training settings as keyword arguments (the fields of :class:`environments.ppo.Args`). It does not
import this package: the runtime does not depend on the environments, so the trainer is a plug-in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from environments import ppo


def problems(
    *,
    scenario: str | None,
    learner: str,
    ticks: int | None,
    init_policy: str | None = None,
    seats_per_world: int = 1,
    reward: str = "wealth",
    settings: dict[str, Any] | None = None,
) -> list[str]:
    """Why one seat of ``learner`` in ``scenario`` cannot be trained, or training cannot start
    from ``init_policy`` (empty when it can).

    Without a scenario the trainer uses ``agora/Market-v0``, which always can.
    """
    if init_policy is not None:
        try:
            ppo.load_actor(ppo.Agent().double(), init_policy)
        except ValueError as exc:
            return [f"--init-policy {exc}"]
    if scenario is None:
        return []
    try:
        ppo.make_envs(
            ppo.Args(
                num_envs=seats_per_world,
                scenario=scenario,
                learner=learner,
                ticks=ticks,
                seats_per_world=seats_per_world,
                reward=reward,
                settings=settings,
            )
        ).close()
    except ValueError as exc:
        return [str(exc)]
    return []


def train(
    out_dir: Path,
    on_iteration: Callable[[int, int, float], None] | None,
    **settings: Any,
) -> dict[str, Any]:
    """Train a shade policy with PPO into ``out_dir``; return its evaluation (``eval.json``).

    Args:
        out_dir: the folder for ``curve.csv``, ``curve.png``, ``checkpoints/``, ``policy.npz`` and
            ``eval.json``.
        on_iteration: called after each iteration with (iteration, iterations, mean return).
        settings: fields of :class:`environments.ppo.Args`; an unknown name raises ``TypeError``.
    """
    return ppo.train(ppo.Args(**settings), out_dir, on_iteration)
