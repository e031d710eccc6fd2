"""The agent API: a population is a named set of agents held as arrays and stepped once per tick.

Agents are identified by global account ids (``ids``); an agent's region, and so its home ledger
replica, is ``id % n_regions``. Per-agent Python objects (:class:`AgentView`) exist for inspection
only; the hot path is :meth:`Population.step` over whole arrays.

A role is a subclass of :class:`Population` with a ``Params`` model (:class:`RoleParams`) holding
its own scenario keys; the common keys of every population (name, role, count, initial_credits,
core) stay on :class:`runtime.kernel.scenario.PopulationConfig`. Roles are found through
:mod:`runtime.kernel.roles`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from economy.ops import OpKind
from runtime.kernel.array_files import ArrayFileError, npz_bytes, read_npz
from runtime.kernel.errors import ScenarioError
from runtime.kernel.scenario import PopulationConfig

if TYPE_CHECKING:
    from runtime.kernel.scenario import Scenario
    from runtime.kernel.world import World


class RoleParams(BaseModel):
    """A role's own scenario keys: subclass it with one field per key (a default and a description
    each; numbers bounded). ``setup_only`` names the keys read only when the world is built, which a
    fork cannot change mid-run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    setup_only: ClassVar[frozenset[str]] = frozenset()


class Population(ABC):
    """Structure-of-arrays state for ``n`` agents of one role."""

    role: ClassVar[str]
    Params: ClassVar[type[RoleParams]] = RoleParams  # the role's own keys (none by default)
    phase: ClassVar[int] = 0  # populations step in phase order, then scenario order
    reviews_batches: ClassVar[bool] = False  # True: the world sends it every ledger batch first
    has_core: ClassVar[bool] = (
        False  # a learned core and a baseline (`core = ...`, --compare-baseline)
    )
    # State arrays that hold money, by name, and their unit: "micro" (int64 micro-credits) or
    # "credits" (floats). Tables for people (agora.Simulation.population) name the unit.
    money_arrays: ClassVar[dict[str, str]] = {}

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        self.cfg = cfg
        self.params = type(self).Params.model_validate(cfg.params)
        self.name = cfg.name
        self.ids = ids
        self.n = int(ids.shape[0])
        self.alive = np.ones(self.n, dtype=np.bool_)
        # Health, set by faults and healers: extra failure probability, and quarantine (not routed
        # to).
        self.degraded = np.zeros(self.n, dtype=np.float64)
        self.quarantined = np.zeros(self.n, dtype=np.bool_)

    @abstractmethod
    def step(self, world: World, tick: int) -> None:
        """Advance every agent one tick with array operations."""

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """Problems a population of this role has in ``scenario`` (references to other populations,
        say; files it names are relative to ``base``), one ``label: population[index].key: reason``
        line each; none by default."""
        return []

    @classmethod
    def credits_minted_at_most(cls, cfg: PopulationConfig, scenario: Scenario) -> int:
        """An upper bound on the credits this population mints over a run of ``scenario`` (checked
        against the ledger's bound before the world is built): its starting credits by default."""
        return cfg.count * cfg.initial_credits

    @classmethod
    def check_core_file(cls, path: Path) -> str | None:
        """Why ``path`` cannot be this role's core file (None when it can): an .npz of numbers
        written by :meth:`save_core` for this role."""
        try:
            arrays = read_npz(path, strings=True)
        except ArrayFileError as exc:
            return str(exc)
        role = str(arrays.get("agora_role", np.array("")))
        if role != cls.role:
            return f"{path}: a core of role {role or 'unknown'!r}, not {cls.role!r}"
        bad = [k for k, v in arrays.items() if k != "agora_role" and v.dtype.kind not in "fiub"]
        if bad:
            return f"{path}: {bad[0]!r} holds {arrays[bad[0]].dtype} values, not numbers"
        return None

    def setup(self, world: World) -> None:
        """Called once before tick 0 (mint initial credits, build routers, ...).

        An optional hook: a population with nothing to set up keeps this one, which does nothing.
        """
        return None

    def core_state(self) -> dict[str, npt.NDArray[np.generic]] | None:
        """What a saved core holds (roles with a learned core); None when there is nothing to
        save."""
        return None

    def set_core_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """Take up a saved core (arrays checked against :meth:`core_state`'s names and shapes)."""
        raise NotImplementedError(f"role {self.role!r} has no core to load")

    def save_core(self, folder: Path) -> Path | None:
        """Write the role's learned core to ``folder/<name>.npz``; return its path (None: nothing
        to save).

        The file holds the role's name and the arrays of :meth:`core_state`, written to bytes
        first so one run always writes the same bytes.
        """
        state = self.core_state()
        if state is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.npz"
        path.write_bytes(npz_bytes({"agora_role": np.array(self.role), **state}))
        return path

    def load_core(self, path: Path) -> None:
        """Load a core file written by :meth:`save_core` for this role; ScenarioError naming what
        does not fit."""
        template = self.core_state()
        where = f"population {self.name!r}: core: {path}"
        try:
            arrays = read_npz(path, strings=True)
        except ArrayFileError as exc:
            raise ScenarioError([f"{where}: not a core file ({exc})"]) from None
        role = str(arrays.pop("agora_role", ""))
        if role != self.role:
            raise ScenarioError(
                [f"{where}: a core of role {role or 'unknown'!r}, not {self.role!r}"]
            )
        assert template is not None, "roles that load cores describe them in core_state()"
        for key, want in template.items():
            if key not in arrays:
                raise ScenarioError([f"{where}: has no {key!r}"])
            if arrays[key].shape != want.shape:
                raise ScenarioError(
                    [
                        f"{where}: {key!r} has shape {arrays[key].shape}, this population needs "
                        f"{want.shape}"
                    ]
                )
            if arrays[key].dtype.kind not in "fiub" or (
                arrays[key].dtype.kind == "f" and not np.isfinite(arrays[key]).all()
            ):
                raise ScenarioError([f"{where}: {key!r} must hold finite numbers"])
        self.set_core_state({k: arrays[k].astype(template[k].dtype) for k in template})

    def review_batch(
        self,
        world: World,
        replica: int,
        kind: OpKind,
        accounts: npt.NDArray[np.int64],
        others: npt.NDArray[np.int64],
        amounts: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.bool_], str]:
        """For a reviewing population: the entries of a batch that may execute, and why others may
        not."""
        raise NotImplementedError(f"role {self.role!r} does not review ledger batches")

    def role_metrics(self) -> dict[str, float | int | None]:
        """The role's own scores for the run summary (empty for roles without any)."""
        return {}

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Arrays that make up this population's state (hashed at checkpoints)."""
        return {"alive": self.alive}

    def digest(self) -> bytes:
        """SHA-256 over :meth:`state_arrays`, in name order."""
        h = hashlib.sha256(self.degraded.tobytes() + self.quarantined.tobytes())
        for name, arr in sorted(self.state_arrays().items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.digest()

    def agent(self, i: int) -> AgentView:
        """A read-only view of agent ``i`` (0-based within this population)."""
        if not 0 <= i < self.n:
            raise IndexError(f"population {self.name!r} has {self.n} agents; no agent {i}")
        return AgentView(self, i)


@dataclass(frozen=True)
class AgentView:
    """One agent of a population, for inspection (Mesa users: the ``Agent`` you would print)."""

    population: Population
    index: int

    @property
    def unique_id(self) -> int:
        """Global id, also the agent's ledger account."""
        return int(self.population.ids[self.index])

    def __getattr__(self, name: str) -> object:
        arrays = self.population.state_arrays()
        if name in arrays:
            return arrays[name][self.index]
        raise AttributeError(f"agent has no field {name!r}; fields are {sorted(arrays)}")


class TickerPopulation(Population):
    """The trivial population: each live agent adds one to its counter every tick (for
    benchmarks)."""

    role: ClassVar[str] = "ticker"

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.counter = np.zeros(self.n, dtype=np.int64)

    def step(self, world: World, tick: int) -> None:
        """Increment every live counter."""
        self.counter += self.alive

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and counters."""
        return {"alive": self.alive, "counter": self.counter}
