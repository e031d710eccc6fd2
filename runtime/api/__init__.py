"""Agora's public Python API, importable as ``agora``.

* :class:`Simulation` -- build a world from a scenario file, a TOML string or a dict; ``step()``,
  ``run(until)``; read populations, balances and metrics as polars DataFrames; record the run as
  ``agora run`` does when given an output folder.
* :class:`World`, :class:`Population`, :class:`RoleParams` -- the runtime and the agent API, for
  writing your own roles (``docs/tutorials/write-your-own-role.md``).
* :func:`roles`, :func:`resolve_role` -- the role registry.
* :func:`load_scenario`, :func:`parse_scenario` -- scenario files in, typed scenarios out.
* :func:`open_run` -- a recorded run (:class:`RunData`) as tables, its state at any tick, SQL
  over it.
* For roles: :class:`WorldAPI` (what a role may call on the world, for type hints),
  :class:`PopulationConfig` (a population's table in the scenario), :class:`OpKind` (ledger
  operations), :class:`Stream` (a named random stream), :func:`contribution_multiplier` (the
  contribution curve 1 + 9 exp(-c / 10^6)).
* For outside control: :class:`ControlForm` (what a role offers: spaces, action meaning,
  rewards) and :class:`Control` (the seats a driver sets actions for, recorded as inputs);
  :func:`save_recording` and :func:`inputs_problem` for a role that keeps its recorded inputs.
* :func:`make_env`, :func:`make_vec_env`, :func:`make_parallel_env`, :func:`make_aec_env` -- a
  scenario's population as Gymnasium and PettingZoo environments (``docs/howto/
  train-in-a-scenario.md``).
* :data:`MICRO` -- micro-credits per credit: every balance and amount is an integer of
micro-credits.
"""

from __future__ import annotations

from typing import Any as _Any

from economy import MICRO
from economy.contribution import contribution_multiplier
from economy.ops import OpKind
from runtime.api.simulation import Simulation
from runtime.kernel.control import Control, ControlForm, inputs_problem, save_recording
from runtime.kernel.errors import RoleFailure, RunDirError, ScenarioError
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.rng import Stream
from runtime.kernel.roles import registered as roles
from runtime.kernel.roles import resolve as resolve_role
from runtime.kernel.scenario import PopulationConfig, Scenario
from runtime.kernel.scenario import load as load_scenario
from runtime.kernel.scenario import parse as parse_scenario
from runtime.kernel.world import World
from runtime.kernel.world_api import WorldAPI
from runtime.record.run_data import RunData, open_run


def _environment(name: str) -> _Any:
    """Function ``name`` of the environments, found through the ``agora.environments`` entry points
    (the runtime does not import the environments package: it depends on the runtime)."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="agora.environments", name=name))
    if not found:
        raise ImportError(
            f"agora.{name}: the environments are not installed (entry point "
            f"agora.environments: {name}); install Agora from its source tree: pip install -e ."
        )
    return found[0].load()


def make_env(scenario: _Any, learner: str, **kwargs: _Any) -> _Any:
    """A Gymnasium env: one seat of population ``learner`` of ``scenario`` learns, every other
    agent acts as the scenario says (:class:`environments.scenario_env.ScenarioEnv`)."""
    make = _environment("make_env")
    return make(scenario, learner, **kwargs)


def make_vec_env(scenario: _Any, learner: str, num_envs: int = 4, **kwargs: _Any) -> _Any:
    """``num_envs`` worlds of :func:`make_env` in one Gymnasium vector env."""
    make = _environment("make_vec_env")
    return make(scenario, learner, num_envs, **kwargs)


def make_parallel_env(scenario: _Any, learners: str, **kwargs: _Any) -> _Any:
    """A PettingZoo ParallelEnv over every agent of population ``learners`` (or ``seats=[...]``)
    (:class:`environments.scenario_parallel.ScenarioParallelEnv`)."""
    make = _environment("make_parallel_env")
    return make(scenario, learners, **kwargs)


def make_aec_env(scenario: _Any, learners: str, **kwargs: _Any) -> _Any:
    """The AEC form of :func:`make_parallel_env`."""
    make = _environment("make_aec_env")
    return make(scenario, learners, **kwargs)


__all__ = [
    "MICRO",
    "Control",
    "ControlForm",
    "OpKind",
    "Population",
    "PopulationConfig",
    "RoleFailure",
    "RoleParams",
    "RunData",
    "RunDirError",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "Stream",
    "World",
    "WorldAPI",
    "contribution_multiplier",
    "inputs_problem",
    "load_scenario",
    "make_aec_env",
    "make_env",
    "make_parallel_env",
    "make_vec_env",
    "open_run",
    "parse_scenario",
    "resolve_role",
    "roles",
    "save_recording",
]
