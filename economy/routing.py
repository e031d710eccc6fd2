"""Routing tasks to agents: hash routing, and a learned top-k gate with a capacity limit.

The gate works like a mixture-of-experts router: each task scores every agent by the dot product
of their skill vectors plus a learned per-agent bias, takes its top ``k`` agents, and an agent
past its capacity ``ceil(capacity_factor * tasks * k / agents)`` drops further tasks. The bias
learns from outcomes (logistic gradient toward agents whose work succeeds) and from load (pushed
down for overloaded agents, as in auxiliary-loss-free load balancing). :class:`RouteStats` reports
what an MoE router reports: load-balance standard deviation, utilisation and drop rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from economy.errors import LedgerError
from economy.portable_math import matmul, sigmoid
from economy.scatter import add_at

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def hash_route(
    task_ids: npt.NDArray[np.int64], n_agents: int, salt: int = 0
) -> npt.NDArray[np.int64]:
    """Agent for each task id by a splitmix64 hash: stateless, uniform, deterministic."""
    if n_agents < 1:
        raise LedgerError(f"n_agents must be >= 1, got {n_agents}")
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the hash
        z = np.asarray(task_ids, dtype=np.int64).astype(np.uint64) + np.uint64(salt) * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_agents)).astype(np.int64)


@dataclass(frozen=True)
class RouteStats:
    """Load per agent for one routing round and its summary figures."""

    load: npt.NDArray[np.int64]
    dropped: int
    requested: int

    @property
    def load_std(self) -> float:
        """Standard deviation of tasks per agent."""
        return float(self.load.std())

    @property
    def utilisation(self) -> float:
        """Fraction of agents that received at least one task."""
        return float((self.load > 0).mean())


@njit(cache=True)
def _assign(
    logits: npt.NDArray[np.float64], capacity: int, k: int, overflow: bool
) -> npt.NDArray[np.int64]:
    """Greedy assignment, slot by slot: each task takes its best agent not yet tried for it (ties to
    the lower index); without ``overflow`` a full agent drops the slot, with it the best agent with
    room is taken. O(tasks · agents · k), no sort."""
    m, n = logits.shape
    assignment = np.full((m, k), -1, dtype=np.int64)
    tried = np.full((m, k), -1, dtype=np.int64)
    load = np.zeros(n, dtype=np.int64)
    for slot in range(k):  # first choices claim capacity before second choices
        for t in range(m):
            best = -1
            best_v = -np.inf
            for a in range(n):
                v = logits[t, a]
                if v == -np.inf or v <= best_v:
                    continue
                if overflow and load[a] >= capacity:
                    continue
                seen = False
                for q in range(slot):
                    if tried[t, q] == a:
                        seen = True
                if not seen:
                    best = a
                    best_v = v
            if best < 0:
                continue
            tried[t, slot] = best
            if load[best] < capacity:
                load[best] += 1
                assignment[t, slot] = best
    return assignment


@njit(cache=True)
def _assign_onehot(
    task_skill: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    n_valid: npt.NDArray[np.int64],
    capacity: int,
    overflow: bool,
    n_agents: int,
) -> npt.NDArray[np.int64]:
    """:func:`_assign` for k = 1 when every task needs exactly one skill: O(tasks + agents ·
    skills).

    ``order[s]`` lists the agents by falling score for skill ``s`` (ties to the lower index), the
    first ``n_valid[s]`` of them available. A full agent stays full, so each skill's pointer only
    moves forward: with ``overflow`` a task takes the first agent with room, without it the first
    agent or nothing -- the same choices as the dense greedy pass.
    """
    m = task_skill.shape[0]
    assignment = np.full((m, 1), -1, dtype=np.int64)
    load = np.zeros(n_agents, dtype=np.int64)
    ptr = np.zeros(order.shape[0], dtype=np.int64)
    for t in range(m):
        s = task_skill[t]
        if overflow:
            while ptr[s] < n_valid[s] and load[order[s, ptr[s]]] >= capacity:
                ptr[s] += 1
        if ptr[s] >= n_valid[s]:
            continue
        a = order[s, ptr[s]]
        if load[a] < capacity:
            load[a] += 1
            assignment[t, 0] = a
    return assignment


@njit(cache=True)
def _merged_orders(
    skills: npt.NDArray[np.float64],
    levels: npt.NDArray[np.float64],
    orders: npt.NDArray[np.int64],
    bias: npt.NDArray[np.float64],
    k: int,
) -> npt.NDArray[np.int64]:
    """The first ``k`` agents of each skill's list by falling score ``skills[a, s] + bias[a]``
    (ties to the lower index), from one list per distinct skill value: ``orders[d]`` holds the valid
    agents sorted by falling ``levels[d] + bias`` (ties to the lower index); skill ``s``'s list
    merges, for every ``d``, the agents whose ``skills[a, s]`` is ``levels[d]``. ``int64[skills,
    k]``."""
    n_skills = skills.shape[1]
    n_levels = levels.shape[0]
    nv = orders.shape[1]
    out = np.empty((n_skills, k), dtype=np.int64)
    ptr = np.zeros(n_levels, dtype=np.int64)
    for s in range(n_skills):
        for d in range(n_levels):
            ptr[d] = 0
            while ptr[d] < nv and skills[orders[d, ptr[d]], s] != levels[d]:
                ptr[d] += 1
        for pos in range(k):
            best = -1
            best_key = 0.0
            best_a = 0
            for d in range(n_levels):
                if ptr[d] < nv:
                    a = orders[d, ptr[d]]
                    key = -(levels[d] + bias[a])
                    if best < 0 or key < best_key or (key == best_key and a < best_a):
                        best, best_key, best_a = d, key, a
            out[s, pos] = best_a
            ptr[best] += 1
            while ptr[best] < nv and skills[orders[best, ptr[best]], s] != levels[best]:
                ptr[best] += 1
    return out


def load_stats(assignment: npt.NDArray[np.int64], n_agents: int) -> RouteStats:
    """Stats of an assignment ``int64[tasks, k]`` (-1 = dropped)."""
    flat = assignment.ravel()
    load = np.bincount(flat[flat >= 0], minlength=n_agents).astype(np.int64)
    return RouteStats(load, int((flat < 0).sum()), int(flat.size))


class TopKGate:
    """Learned top-k router over agent skills ``float64[n_agents, d]``.

    With ``overflow=False`` a slot whose chosen agent is at capacity is dropped, as in a
    mixture-of-experts layer; with ``overflow=True`` it goes to the next-best agent with room, as a
    task market would offer it on.
    """

    def __init__(
        self,
        skills: npt.NDArray[np.float64],
        k: int = 1,
        capacity_factor: float = 1.25,
        lr: float = 0.1,
        balance_rate: float = 0.01,
        overflow: bool = False,
    ) -> None:
        skills = np.asarray(skills, dtype=np.float64)
        if skills.ndim != 2 or not 1 <= k <= skills.shape[0] or capacity_factor <= 0:
            raise LedgerError(
                "need skills [agents, d], 1 <= k <= agents, capacity_factor > 0; got "
                f"{skills.shape}, k={k}, {capacity_factor}"
            )
        self.skills = skills
        self.k = k
        self.capacity_factor = capacity_factor
        self.lr = lr
        self.balance_rate = balance_rate
        self.overflow = (
            overflow  # False: a full agent drops the slot (MoE); True: the next-best agent takes it
        )
        self.bias = np.zeros(skills.shape[0], dtype=np.float64)
        self._levels: npt.NDArray[np.float64] | None = (
            None  # distinct skill values, found on first use
        )

    def scores(self, task_skills: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Gate logits ``float64[tasks, agents]``."""
        return matmul(np.asarray(task_skills, dtype=np.float64), self.skills.T) + self.bias

    def route(
        self,
        task_skills: npt.NDArray[np.float64],
        available: npt.NDArray[np.bool_] | None = None,
        capacity: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], RouteStats]:
        """Assign each task its top-k agents within capacity; ``-1`` marks a dropped slot.

        ``available: bool[n_agents]`` excludes agents (crashed, quarantined, unwilling); by default
        capacity is ``ceil(capacity_factor · tasks · k / available agents)``, or ``capacity`` per
        agent.
        """
        task_skills = np.asarray(task_skills, dtype=np.float64)
        m, n = task_skills.shape[0], self.skills.shape[0]
        n_avail = n if available is None else max(1, int(available.sum()))
        if capacity is None:
            capacity = int(np.ceil(self.capacity_factor * m * self.k / n_avail))
        onehot = (
            self.k == 1
            and m > 0
            and bool(((task_skills == 0.0) | (task_skills == 1.0)).all())
            and bool((task_skills.sum(axis=1) == 1.0).all())
            and bool(np.isfinite(self.skills).all())
        )
        if onehot:
            return self._route_by_skill(
                np.argmax(task_skills, axis=1).astype(np.int64), available, capacity
            )
        else:
            logits = self.scores(task_skills)
            if available is not None:
                logits[:, ~available] = -np.inf
            assignment = _assign(logits, capacity, self.k, self.overflow)
        stats = load_stats(assignment, n)
        self.bias -= self.balance_rate * np.sign(stats.load - stats.load.mean())
        return assignment, stats

    def route_skills(
        self,
        task_skill: npt.NDArray[np.int64],
        available: npt.NDArray[np.bool_] | None = None,
        capacity: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], RouteStats]:
        """:meth:`route` for tasks that each need one skill, given as skill indices ``int64[tasks]``
        instead of one-hot rows: the same assignment, without building and checking the one-hot
        matrix."""
        task_skill = np.asarray(task_skill)
        d = self.skills.shape[1]
        if task_skill.ndim != 1 or (
            task_skill.size
            and (
                not np.issubdtype(task_skill.dtype, np.integer)
                or task_skill.min() < 0
                or task_skill.max() >= d
            )
        ):
            raise LedgerError(f"task skills must be integers in [0, {d}), one per task")
        m, n = task_skill.shape[0], self.skills.shape[0]
        if self.k != 1 or m == 0 or not np.isfinite(self.skills).all():  # the general path
            onehot = np.zeros((m, d))
            onehot[np.arange(m), task_skill] = 1.0
            return self.route(onehot, available, capacity)
        if capacity is None:
            n_avail = n if available is None else max(1, int(available.sum()))
            capacity = int(np.ceil(self.capacity_factor * m * self.k / n_avail))
        return self._route_by_skill(task_skill.astype(np.int64, copy=False), available, capacity)

    def _route_by_skill(
        self,
        task_skill: npt.NDArray[np.int64],
        available: npt.NDArray[np.bool_] | None,
        capacity: int,
    ) -> tuple[npt.NDArray[np.int64], RouteStats]:
        # Each task's scores are one column of skills + bias: sort agents once per skill instead
        # of scoring every (task, agent) pair. Same values, same ties, same assignment.
        n = self.skills.shape[0]
        valid = (
            np.ones(n, dtype=np.bool_)
            if available is None
            else np.asarray(available, dtype=np.bool_)
        )
        valid = valid & np.isfinite(self.bias)
        order = self._skill_orders(valid, task_skill.shape[0], capacity)
        n_valid = np.full(order.shape[0], order.shape[1], dtype=np.int64)
        assignment = _assign_onehot(task_skill, order, n_valid, capacity, self.overflow, n)
        stats = load_stats(assignment, n)
        self.bias -= self.balance_rate * np.sign(stats.load - stats.load.mean())
        return assignment, stats

    def _skill_orders(
        self, valid: npt.NDArray[np.bool_], m: int, capacity: int
    ) -> npt.NDArray[np.int64]:
        """Each skill's valid agents by falling score (ties to the lower index), as far as ``m``
        tasks at ``capacity`` can reach: a skill's pointer passes only full agents, and at most ``m
        // capacity`` agents fill up, so the first ``m // capacity + 1`` places are all the walk
        reads."""
        agents = np.flatnonzero(valid)
        k = min(agents.size, m // max(capacity, 1) + 2)
        if self._levels is None:
            self._levels = np.unique(self.skills)
        if self._levels.size <= 4:
            # Few distinct skill values (a main skill and the rest): one sort per value, merged per
            # skill.
            orders = np.empty((self._levels.size, agents.size), dtype=np.int64)
            for d, level in enumerate(self._levels):
                orders[d] = agents[np.argsort(-(level + self.bias[agents]), kind="stable")]
            merged: npt.NDArray[np.int64] = _merged_orders(
                self.skills, self._levels, orders, self.bias, k
            )
            return merged
        values = (
            self.skills[agents].T + self.bias[agents]
        )  # [skills, valid agents], the dense logits' entries
        return agents[np.argsort(-values, axis=1, kind="stable")[:, :k]]

    def learn(self, agents: npt.NDArray[np.int64], success: npt.NDArray[np.bool_]) -> None:
        """Move each agent's bias toward its observed success (logistic gradient on the bias)."""
        agents = np.asarray(agents, dtype=np.int64)
        p = sigmoid(self.bias[agents])
        add_at(self.bias, agents, self.lr * (np.asarray(success, dtype=np.float64) - p))
