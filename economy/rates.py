"""Earning and spending rates, in integer micro-credits (the economy's defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from economy.errors import LedgerError

MICRO: int = 1_000_000
"""Micro-credits per credit: every amount inside Agora is an int64 count of micro-credits."""


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
