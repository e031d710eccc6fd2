"""Agora's agent roles. Each role is a :class:`runtime.population.Population` stepped as arrays.

So far the marketplace's two roles exist: requesters post tasks, workers do them for credits.
The five roles of DESIGN.md (negotiator, critic, refactor, world-model, healing) are not built yet.
"""

from agents.requester import RequesterPopulation
from agents.worker import WorkerPopulation

ROLES = {"requester": RequesterPopulation, "worker": WorkerPopulation}

__all__ = ["ROLES", "RequesterPopulation", "WorkerPopulation"]
