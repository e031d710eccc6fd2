"""Agora's agent roles. Each role is a :class:`runtime.population.Population` stepped as arrays.

The marketplace's two roles: requesters post tasks, workers do them for credits. Of the five roles
of DESIGN.md, healing (``healing.py``), critic (``critic.py``) and world-model (``world_model.py``)
are built; negotiator and refactor are not built yet.
"""

from agents.critic import CriticPopulation
from agents.healing import HealerPopulation
from agents.requester import RequesterPopulation
from agents.worker import WorkerPopulation
from agents.world_model import WorldModelPopulation

ROLES = {"requester": RequesterPopulation, "worker": WorkerPopulation, "healer": HealerPopulation,
         "critic": CriticPopulation, "world_model": WorldModelPopulation}

__all__ = ["ROLES", "CriticPopulation", "HealerPopulation", "RequesterPopulation", "WorkerPopulation",
           "WorldModelPopulation"]
