"""Agora's agent roles. Each role is a :class:`runtime.population.Population` stepped as arrays.

The marketplace's two roles: requesters post tasks, workers do them for credits. Of the five roles
of DESIGN.md: negotiator (``negotiator.py``), critic (``critic.py``), refactor (``refactor.py``),
world-model (``world_model.py``) and healing (``healing.py``).
"""

from agents.critic import CriticPopulation
from agents.healing import HealerPopulation
from agents.negotiator import NegotiatorPopulation
from agents.refactor import RefactorPopulation
from agents.requester import RequesterPopulation
from agents.worker import WorkerPopulation
from agents.world_model import WorldModelPopulation

ROLES = {"requester": RequesterPopulation, "worker": WorkerPopulation, "healer": HealerPopulation,
         "critic": CriticPopulation, "world_model": WorldModelPopulation, "refactor": RefactorPopulation, "negotiator": NegotiatorPopulation}

__all__ = ["ROLES", "CriticPopulation", "HealerPopulation", "NegotiatorPopulation", "RefactorPopulation",
           "RequesterPopulation", "WorkerPopulation", "WorldModelPopulation"]
