"""Earning and spending rates, in integer micro-credits (the economy's defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from economy.errors import LedgerError

MICRO = 1_000_000


@dataclass(frozen=True)
class Rates:
    """Prices of work and resources. Every field is micro-credits (per unit named)."""

    task_unit: int = MICRO  # earned per compute task unit (1 credit)
    uptime_hour: int = MICRO // 10  # earned per hour of uptime (0.1 credit)
    priority_factor: int = 2  # priority execution costs this many times the normal price
    storage_mb_day: int = MICRO // 100  # spent per MB per day of storage (0.01 credit)

    def __post_init__(self) -> None:
        for name in ("task_unit", "uptime_hour", "priority_factor", "storage_mb_day"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise LedgerError(f"rate {name} must be a non-negative integer, got {value!r}")

    def task_reward(self, units: int, multiplier: float = 1.0) -> int:
        """Micro-credits earned for ``units`` task units at a contribution ``multiplier`` (rounded down)."""
        if units < 0 or multiplier < 0:
            raise LedgerError(f"units and multiplier must be >= 0, got {units!r}, {multiplier!r}")
        return int(units * self.task_unit * multiplier)

    def uptime_reward(self, hours: int) -> int:
        """Micro-credits earned for ``hours`` whole hours of uptime."""
        if hours < 0:
            raise LedgerError(f"hours must be >= 0, got {hours!r}")
        return hours * self.uptime_hour

    def execution_cost(self, units: int, priority: bool = False) -> int:
        """Micro-credits a requester pays for ``units`` task units (``priority`` multiplies)."""
        if units < 0:
            raise LedgerError(f"units must be >= 0, got {units!r}")
        return units * self.task_unit * (self.priority_factor if priority else 1)

    def storage_cost(self, megabytes: int, days: int) -> int:
        """Micro-credits spent storing ``megabytes`` for ``days``."""
        if megabytes < 0 or days < 0:
            raise LedgerError(f"megabytes and days must be >= 0, got {megabytes!r}, {days!r}")
        return megabytes * days * self.storage_mb_day
