"""The Boltzmann wealth exchange as an Agora population (role ``exchange``), for benchmarks and teaching.

Each tick every agent, in a shuffled order, gives one unit of its wealth to a uniformly random agent
(itself included) if it has any -- exact sequential semantics: an agent that received a unit earlier
in the tick can give it away later in the same tick. Random numbers are counter-based (Philox-4x32,
keyed by the seed): the draw for (tick, position) is a pure function of them, so the result does
not depend on threads, backend or how the work is split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from numba import njit, uint32, uint64

from runtime.population import Population
from runtime.scenario import PopulationConfig

if TYPE_CHECKING:
    from runtime.world import World

_M0 = uint64(0xD2511F53)
_M1 = uint64(0xCD9E8D57)
_W0 = uint32(0x9E3779B9)
_W1 = uint32(0xBB67AE85)
_MASK = uint64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def philox(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10: four 32-bit words of randomness from a counter and a key (Salmon et al. 2011)."""
    for _ in range(10):
        p0 = _M0 * uint64(c0)
        p1 = _M1 * uint64(c2)
        n0 = uint32((p1 >> uint64(32)) ^ uint64(c1) ^ uint64(k0))
        n1 = uint32(p1 & _MASK)
        n2 = uint32((p0 >> uint64(32)) ^ uint64(c3) ^ uint64(k1))
        n3 = uint32(p0 & _MASK)
        c0, c1, c2, c3 = n0, n1, n2, n3
        k0 = uint32(k0 + _W0)
        k1 = uint32(k1 + _W1)
    return c0, c1, c2, c3


@njit(cache=True, inline="always")
def _below(word, n):
    """A 32-bit random word mapped to 0..n-1 (multiply-shift; bias below n / 2^32)."""
    return np.int64((uint64(word) * uint64(n)) >> uint64(32))


@njit(cache=True)
def exchange_tick(wealth, order, tick, k0, k1):
    """One tick: shuffle ``order`` (Fisher-Yates), then each agent in it gives one unit to a random agent."""
    n = wealth.shape[0]
    for i in range(n - 1, 0, -1):
        r = philox(uint32(i), uint32(tick), uint32(0), uint32(0), k0, k1)
        j = _below(r[0], i + 1)
        order[i], order[j] = order[j], order[i]
    for pos in range(n):
        a = order[pos]
        if wealth[a] > 0:
            r = philox(uint32(pos), uint32(tick), uint32(1), uint32(0), k0, k1)
            b = _below(r[0], n)
            wealth[a] -= 1
            wealth[b] += 1


class ExchangePopulation(Population):
    """``count`` agents, each starting with ``initial_credits`` units (1 when 0), exchanging every tick."""

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
