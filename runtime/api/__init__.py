"""Agora's public Python API, importable as ``agora``.

* :class:`Simulation` -- build a world from a scenario file, a TOML string or a dict; ``step()``,
  ``run(until)``; read populations, balances and metrics as polars DataFrames; record the run as
  ``agora run`` does when given an output folder.
* :class:`World`, :class:`Population`, :class:`RoleParams` -- the runtime and the agent API, for
  writing your own roles (``docs/tutorials/write-your-own-role.md``).
* :func:`roles`, :func:`resolve_role` -- the role registry.
* :func:`load_scenario`, :func:`parse_scenario` -- scenario files in, typed scenarios out.
* :func:`open_run` -- a recorded run as tables, its state at any tick, SQL over it.
* For roles: :class:`WorldAPI` (what a role may call on the world, for type hints),
  :class:`PopulationConfig` (a population's table in the scenario), :class:`OpKind` (ledger
  operations), :class:`Stream` (a named random stream), :func:`contribution_multiplier` (the
  contribution curve 1 + 9 exp(-c / 10^6)).
"""

from __future__ import annotations

from economy.contribution import contribution_multiplier
from economy.ops import OpKind
from runtime.api.simulation import Simulation
from runtime.errors import RoleFailure, RunDirError, ScenarioError
from runtime.population import Population, RoleParams
from runtime.roles import registered as roles
from runtime.rng import Stream
from runtime.roles import resolve as resolve_role
from runtime.run_data import open_run
from runtime.scenario import PopulationConfig, Scenario
from runtime.scenario import load as load_scenario
from runtime.scenario import parse as parse_scenario
from runtime.world import World
from runtime.world_api import WorldAPI

__all__ = ["OpKind", "Population", "PopulationConfig", "RoleFailure", "RoleParams", "RunDirError",
           "Scenario", "ScenarioError", "Simulation", "Stream", "World", "WorldAPI",
           "contribution_multiplier", "load_scenario", "open_run", "parse_scenario", "resolve_role",
           "roles"]
