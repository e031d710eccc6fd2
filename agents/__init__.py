"""Agora's agent roles. Each role is a :class:`runtime.population.Population` stepped as arrays.

The marketplace's two roles: requesters post tasks, workers do them for credits. Of the five roles
of DESIGN.md, healing (``healing.py``) and critic (``critic.py``) are built; negotiator, refactor and
world-model are not built yet.
"""

from agents.critic import CriticPopulation
from agents.healing import HealerPopulation
from agents.requester import RequesterPopulation
from agents.worker import WorkerPopulation

ROLES = {"requester": RequesterPopulation, "worker": WorkerPopulation, "healer": HealerPopulation,
         "critic": CriticPopulation}

__all__ = ["ROLES", "CriticPopulation", "HealerPopulation", "RequesterPopulation", "WorkerPopulation"]
