"""The Boltzmann wealth exchange as an Agora population (role ``exchange``), for benchmarks and
teaching.

Each tick every agent, in a shuffled order, gives one unit of its wealth to a uniformly random agent
(itself included) if it has any -- exact sequential semantics: an agent that received a unit earlier
in the tick can give it away later in the same tick. Random numbers are counter-based (Philox-4x32,
keyed by the seed): the draw for (tick, position) is a pure function of them, so the result does
not depend on threads, backend or how the work is split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from numba import njit, uint32, uint64

from runtime.kernel.population import Population
from runtime.kernel.scenario import PopulationConfig

if TYPE_CHECKING:
    from runtime.kernel.world import World

_M0 = uint64(0xD2511F53)
_M1 = uint64(0xCD9E8D57)
_W0 = uint32(0x9E3779B9)
_W1 = uint32(0xBB67AE85)
_MASK = uint64(0xFFFFFFFF)

Word = int | np.uint32
"""A 32-bit word of the Philox counter or key (a Python int or a numba/numpy uint32)."""


@njit(cache=True, inline="always")
def philox(
    c0: Word, c1: Word, c2: Word, c3: Word, key0: Word, key1: Word
) -> tuple[Word, Word, Word, Word]:
    """Philox-4x32-10: four 32-bit words of randomness from a counter and a key (Salmon et al.
    2011)."""
    for _ in range(10):
        p0 = _M0 * uint64(c0)
        p1 = _M1 * uint64(c2)
        n0 = uint32((p1 >> uint64(32)) ^ uint64(c1) ^ uint64(key0))
        n1 = uint32(p1 & _MASK)
        n2 = uint32((p0 >> uint64(32)) ^ uint64(c3) ^ uint64(key1))
        n3 = uint32(p0 & _MASK)
        c0, c1, c2, c3 = n0, n1, n2, n3
        key0 = uint32(key0 + _W0)
        key1 = uint32(key1 + _W1)
    return c0, c1, c2, c3


@njit(cache=True, inline="always")
def _below(word: Word, n: int) -> np.int64:
    """A 32-bit random word mapped to 0..n-1 (multiply-shift; bias below n / 2^32)."""
    return np.int64((uint64(word) * uint64(n)) >> uint64(32))


@njit(cache=True)
def exchange_tick(
    wealth: npt.NDArray[np.int64], order: npt.NDArray[np.int64], tick: Word, key0: Word, key1: Word
) -> None:
    """One tick: shuffle ``order`` (Fisher-Yates), then each agent in it gives one unit to a random
    agent."""
    n = wealth.shape[0]
    for i in range(n - 1, 0, -1):
        r = philox(uint32(i), uint32(tick), uint32(0), uint32(0), key0, key1)
        j = _below(r[0], i + 1)
        order[i], order[j] = order[j], order[i]
    for pos in range(n):
        a = order[pos]
        if wealth[a] > 0:
            r = philox(uint32(pos), uint32(tick), uint32(1), uint32(0), key0, key1)
            b = _below(r[0], n)
            wealth[a] -= 1
            wealth[b] += 1


class ExchangePopulation(Population):
    """``count`` agents, each starting with ``initial_credits`` units (1 when 0), exchanging every
    tick."""

    role: ClassVar[str] = "exchange"

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.wealth = np.full(self.n, max(1, cfg.initial_credits), dtype=np.int64)
        self.order = np.arange(self.n, dtype=np.int64)
        self.key = (np.uint32(0), np.uint32(0))

    def setup(self, world: World) -> None:
        """Key the counter-based generator from the population's seeded stream."""
        k = world.streams(f"population/{self.name}").integers(0, 2**32, size=2, dtype=np.uint64)
        self.key = (np.uint32(k[0]), np.uint32(k[1]))

    def step(self, world: World, tick: int) -> None:
        """One exchange tick (numba, sequential)."""
        exchange_tick(self.wealth, self.order, np.uint32(tick), self.key[0], self.key[1])

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags and wealth."""
        return {"alive": self.alive, "wealth": self.wealth}


# ---------------------------------------------------------------------------------------------
# The synchronous rule: every agent with wealth at the start of the tick gives one unit to a random
# agent, all at once. Unlike the sequential rule it has no order, so it runs in parallel -- on the
# CPU and on a GPU -- and, with counter-based draws and integer sums, gives the same integers on
# both.


@njit(cache=True)
def sync_targets(n: int, tick: int, key0: Word, key1: Word) -> npt.NDArray[np.int64]:
    """The receiver of each agent's unit at ``tick`` (draw (agent, tick, 2, 0) of the Philox
    stream)."""
    out = np.empty(n, dtype=np.int64)
    for a in range(n):
        r = philox(uint32(a), uint32(tick), uint32(2), uint32(0), key0, key1)
        out[a] = _below(r[0], n)
    return out


@njit(cache=True)
def exchange_sync_tick(wealth: npt.NDArray[np.int64], tick: int, key0: Word, key1: Word) -> None:
    """One synchronous tick on the CPU: givers decided on start-of-tick wealth, then the units
    move."""
    n = wealth.shape[0]
    target = sync_targets(n, tick, key0, key1)
    give = wealth > 0
    for a in range(n):
        if give[a]:
            wealth[a] -= 1
    for a in range(n):
        if give[a]:
            wealth[target[a]] += 1


def _mulhilo(a: Any, m: int) -> tuple[Any, Any]:
    """High and low 32 bits of ``a * m`` for 32-bit ``a`` (int64 tensor) and constant ``m``, in
    16-bit limbs so no intermediate leaves int64's range."""
    m1, m0 = m >> 16, m & 0xFFFF
    a1, a0 = a >> 16, a & 0xFFFF
    p00, p01, p10, p11 = a0 * m0, a0 * m1, a1 * m0, a1 * m1
    mid = (p00 >> 16) + (p01 & 0xFFFF) + (p10 & 0xFFFF)
    lo = ((mid & 0xFFFF) << 16) | (p00 & 0xFFFF)
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    return hi, lo


def philox_torch(
    c0: Any, c1: Any, c2: Any, c3: Any, key0: int, key1: int
) -> tuple[Any, Any, Any, Any]:
    """Philox-4x32-10 on int64 tensors holding 32-bit words (any device): the same words as
    :func:`philox`."""
    for _ in range(10):
        hi0, lo0 = _mulhilo(c0, 0xD2511F53)
        hi1, lo1 = _mulhilo(c2, 0xCD9E8D57)
        c0, c1, c2, c3 = hi1 ^ c1 ^ key0, lo1, hi0 ^ c3 ^ key1, lo0
        key0 = (key0 + 0x9E3779B9) & 0xFFFFFFFF
        key1 = (key1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0, c1, c2, c3


def exchange_sync_torch(wealth: Any, tick: int, key0: int, key1: int) -> None:
    """:func:`exchange_sync_tick` for an int64 torch tensor, on its device."""
    import torch

    n = wealth.shape[0]
    agents = torch.arange(n, dtype=torch.int64, device=wealth.device)
    zeros = torch.zeros_like(agents)
    r0, _, _, _ = philox_torch(agents, zeros + tick, zeros + 2, zeros, key0, key1)
    target = (r0 * n) >> 32
    give = (wealth > 0).to(torch.int64)
    wealth.sub_(give)
    wealth.index_add_(0, target, give)  # non-givers add 0; integer sums do not depend on order


def compiled_exchange_sync(key0: int, key1: int) -> Callable[[Any, int], None]:
    """:func:`exchange_sync_torch` with its draws and givers fused by ``torch.compile`` (one kernel
    instead of some 250 elementwise launches on a GPU): a step ``(wealth, tick) -> None`` for the
    key ``(key0, key1)``, giving the same integers. The tick is passed as a tensor, so one
    compilation serves every tick."""
    import torch

    def targets_and_give(wealth: Any, tick: Any) -> tuple[Any, Any]:
        n = wealth.shape[0]
        agents = torch.arange(n, dtype=torch.int64, device=wealth.device)
        zeros = torch.zeros_like(agents)
        r0, _, _, _ = philox_torch(agents, zeros + tick, zeros + 2, zeros, key0, key1)
        return (r0 * n) >> 32, (wealth > 0).to(torch.int64)

    core = torch.compile(targets_and_give, dynamic=False)

    def step(wealth: Any, tick: int) -> None:
        target, give = core(wealth, torch.tensor(tick, dtype=torch.int64, device=wealth.device))
        wealth.sub_(give)
        wealth.index_add_(0, target, give)

    return step
