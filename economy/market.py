"""Task prices per skill that move with supply and demand, bounded per tick, in micro-credits."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from economy.errors import LedgerError
from economy.portable_math import exp


class Market:
    """Prices ``int64[n_skills]`` updated each tick from demand (tasks posted) and supply
    (capacity).

    ``price *= exp(elasticity * (demand - supply) / (demand + supply))``, the factor clipped to
    ``[1 - max_step, 1 + max_step]``, rounded to whole micro-credits, never below ``floor``.
    """

    def __init__(
        self,
        n_skills: int,
        base_price: int,
        elasticity: float = 0.5,
        max_step: float = 0.05,
        floor: int = 1,
    ) -> None:
        if (
            n_skills < 1
            or base_price < floor
            or floor < 1
            or elasticity < 0
            or not 0 <= max_step < 1
        ):
            raise LedgerError(
                "market needs n_skills >= 1, base_price >= floor >= 1, elasticity >= 0, 0 <= "
                "max_step < 1; "
                f"got {n_skills}, {base_price}, {floor}, {elasticity}, {max_step}"
            )
        self.prices = np.full(n_skills, base_price, dtype=np.int64)
        self.elasticity = elasticity
        self.max_step = max_step
        self.floor = floor
        self.pressure = np.zeros(n_skills, dtype=np.float64)  # of the last update, in [-1, 1]

    def update(
        self, demand: npt.NDArray[np.int64], supply: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Move prices one tick; return the new prices."""
        d = np.asarray(demand, dtype=np.float64)
        s = np.asarray(supply, dtype=np.float64)
        if d.shape != self.prices.shape or s.shape != self.prices.shape:
            raise LedgerError(
                f"demand {d.shape} and supply {s.shape} must match prices {self.prices.shape}"
            )
        pressure = (d - s) / np.maximum(d + s, 1.0)
        self.pressure = pressure
        factor = np.clip(exp(self.elasticity * pressure), 1.0 - self.max_step, 1.0 + self.max_step)
        self.prices = np.maximum(np.rint(self.prices * factor).astype(np.int64), self.floor)
        return self.prices
