"""Refactor agents: improve a simulated codebase -- a networkx DAG of modules -- for credits.

Each module has a size, a complexity (1..10) and a test coverage (0..1); the codebase's true
quality is the size-weighted mean of ``coverage − 0.1 × complexity``, and its benchmark is that plus
noise. Each tick every agent picks a module and an action:

* ``refactor`` (cost 0.1 credit per size unit): with probability ``0.3 + 0.7 × coverage`` the
  complexity drops by one; otherwise the change breaks tests (coverage −0.2, the module is dirty);
* ``replace`` (1 credit per size unit): a rewrite -- complexity 1..4, coverage 0.3 -- that also adds
a
  dependency; the critic's z3 check refuses plans that would make the dependency graph cyclic;
* ``rollback`` (0.05 credit per size unit): restores the module's state before its last change.

Core ``learned``: tabular Q-learning shared by the agents over (complexity bucket, coverage bucket,
dirty) × action, ε-greedy, rewarded by the benchmark change minus the cost. Core ``baseline``:
uniformly random module and action. An action whose benchmark improves earns the agent credits
(10 per unit of benchmark gained). Metric: true quality gained per credit spent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import networkx as nx
import numpy as np
import numpy.typing as npt
from pydantic import Field

from agents.critic import plan_keeps_acyclic
from economy.ops import OpKind
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import PopulationConfig

if TYPE_CHECKING:
    from runtime.kernel.world import World

ACTIONS = ("refactor", "replace", "rollback")
COST_PER_SIZE = {"refactor": 0.1, "replace": 1.0, "rollback": 0.05}  # credits
REWARD_PER_QUALITY = 10.0  # credits per unit of benchmark gained


class Codebase:
    """Modules as arrays plus the dependency DAG (networkx)."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.size = rng.integers(1, 10, size=n).astype(np.float64)
        self.complexity = rng.integers(3, 11, size=n).astype(np.float64)
        self.coverage = rng.uniform(0.2, 0.8, size=n)
        self.dirty = np.zeros(n, dtype=np.bool_)
        self.previous: dict[int, tuple[float, float, bool]] = {}
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(range(n))
        for i in range(n):
            for j in range(i + 1, n):
                if rng.random() < 2.0 / n:
                    self.graph.add_edge(i, j)

    def quality(self) -> float:
        """True quality: size-weighted mean of coverage − 0.1 × complexity."""
        return float(np.sum((self.coverage - 0.1 * self.complexity) * self.size) / self.size.sum())

    def state(self, m: int) -> int:
        """Discrete Q-table state of module ``m``: complexity bucket × coverage bucket × dirty."""
        c = min(4, int((self.complexity[m] - 1) // 2))
        v = min(4, int(self.coverage[m] * 5))
        return (c * 5 + v) * 2 + int(self.dirty[m])


def apply_action(code: Codebase, m: int, action: str, rng: np.random.Generator) -> str:
    """Apply ``action`` to module ``m``; return "" or why the critic refused the plan (nothing
    changed)."""
    snapshot = (code.complexity[m], code.coverage[m], bool(code.dirty[m]))
    if action == "refactor":
        code.previous[m] = snapshot
        if rng.random() < 0.3 + 0.7 * code.coverage[m]:
            code.complexity[m] = max(1.0, code.complexity[m] - 1)
        else:
            code.coverage[m] = max(0.0, code.coverage[m] - 0.2)
            code.dirty[m] = True
    elif action == "replace":
        other = int(rng.integers(code.size.shape[0]))
        ok, reason = plan_keeps_acyclic(list(code.graph.edges), [(m, other)] if other != m else [])
        if not ok:
            return reason
        code.previous[m] = snapshot
        code.complexity[m] = float(rng.integers(1, 5))
        code.coverage[m] = 0.3
        code.dirty[m] = False
        if other != m:
            code.graph.add_edge(m, other)
    elif m in code.previous:
        code.complexity[m], code.coverage[m], code.dirty[m] = code.previous.pop(m)
    return ""


class RefactorParams(RoleParams):
    """A refactor population's own keys."""

    modules: int = Field(40, ge=2, le=10_000, description="Modules in the simulated codebase.")
    setup_only: ClassVar[frozenset[str]] = frozenset({"modules"})


class RefactorPopulation(Population):
    """Refactor agents sharing one codebase and one Q-table."""

    role: ClassVar[str] = "refactor"
    Params: ClassVar[type[RoleParams]] = RefactorParams
    has_core: ClassVar[bool] = True
    phase: ClassVar[int] = 4

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.q = np.zeros((50, len(ACTIONS)))
        self.code: Codebase | None = None
        self.start_quality = 0.0
        self.spent = 0
        self.earned = 0
        self.refused_plans = 0

    def setup(self, world: World) -> None:
        """Build the codebase and give the agents their starting credits."""
        self.code = Codebase(self.params.modules, world.streams(f"population/{self.name}/codebase"))
        self.start_quality = self.code.quality()
        if self.core not in ("baseline", "learned"):
            self.load_core(world.base / self.core)  # start from a saved Q-table, and keep learning
            self.core = "learned"
        world.mint(
            self.ids,
            np.full(self.n, self.cfg.initial_credits * world.MICRO, dtype=np.int64),
            "refactor budget",
        )

    def _choose(self, rng: np.random.Generator) -> tuple[int, int]:
        code = self.code
        assert code is not None
        n = code.size.shape[0]
        if self.core == "baseline" or rng.random() < 0.1:
            return int(rng.integers(n)), int(rng.integers(len(ACTIONS)))
        states = np.array([code.state(m) for m in range(n)])
        values = self.q[states]  # [modules, actions]
        best = np.flatnonzero(values.ravel() == values.max())
        pick = int(best[rng.integers(best.size)])
        return pick // len(ACTIONS), pick % len(ACTIONS)

    def step(self, world: World, tick: int) -> None:
        """Every live agent with credits for it takes one action on the codebase."""
        code = self.code
        assert code is not None
        rng = world.streams(f"population/{self.name}")
        for i in np.flatnonzero(self.alive):
            agent = int(self.ids[i])
            m, a = self._choose(rng)
            action = ACTIONS[a]
            cost = int(COST_PER_SIZE[action] * code.size[m] * world.MICRO)
            home = int(world.home(np.array([agent]))[0])
            if not world.execute(
                home, OpKind.SPEND, np.array([agent]), np.zeros(1, np.int64), np.array([cost])
            )[0]:
                continue  # out of credits
            self.spent += cost
            state = code.state(m)
            before = code.quality() + rng.normal(0, 0.002)
            self._apply(world, code, m, action, rng)
            after = code.quality() + rng.normal(0, 0.002)
            gain = after - before
            if gain > 0:
                reward = int(gain * REWARD_PER_QUALITY * world.MICRO)
                if reward > 0:
                    world.mint(np.array([agent]), np.array([reward]), "refactor reward")
                    self.earned += reward
            if self.core == "learned":
                target = (
                    gain * 100
                    - COST_PER_SIZE[action] * code.size[m] / 10
                    + 0.9 * self.q[code.state(m)].max()
                )
                self.q[state, a] += 0.2 * (target - self.q[state, a])
            world.emit("code_change", self.name, agent, m, cost, gain, detail=action)

    def _apply(
        self, world: World, code: Codebase, m: int, action: str, rng: np.random.Generator
    ) -> None:
        reason = apply_action(code, m, action, rng)
        if reason:
            self.refused_plans += 1
            world.emit("plan_refused", self.name, other=m, detail=reason)

    def role_metrics(self) -> dict[str, float | int | None]:
        """True quality gained per credit spent, and the totals behind it."""
        assert self.code is not None
        gained = self.code.quality() - self.start_quality
        spent = self.spent / 1e6
        return {
            "quality_gained": gained,
            "spent_credits": spent,
            "quality_per_credit": gained / spent if spent else None,
            "plans_refused": self.refused_plans,
            "acyclic": nx.is_directed_acyclic_graph(self.code.graph),
        }

    def core_state(self) -> dict[str, npt.NDArray[np.generic]] | None:
        """The Q-table (learned core)."""
        return {"q": self.q} if self.core != "baseline" else None

    def set_core_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """Start from a saved Q-table."""
        self.q = arrays["q"].astype(np.float64).copy()

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, the Q-table and the codebase."""
        assert self.code is not None
        edges = np.array(sorted(self.code.graph.edges), dtype=np.int64).reshape(-1, 2)
        return {
            "alive": self.alive,
            "q": self.q,
            "complexity": self.code.complexity,
            "coverage": self.code.coverage,
            "dirty": self.code.dirty,
            "edges": edges,
        }
