"""Agora's agent roles. Each role is a :class:`runtime.population.Population` stepped as arrays.

The marketplace's two roles: requesters post tasks, workers do them for credits. Of the five roles
of DESIGN.md, healing is built (``healing.py``); negotiator, critic, refactor and world-model are
not built yet.
"""

from agents.healing import HealerPopulation
from agents.requester import RequesterPopulation
from agents.worker import WorkerPopulation

ROLES = {"requester": RequesterPopulation, "worker": WorkerPopulation, "healer": HealerPopulation}

__all__ = ["ROLES", "HealerPopulation", "RequesterPopulation", "WorkerPopulation"]
