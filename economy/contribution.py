"""The contribution multiplier: early contributors to a small network earn up to ten times more.

``multiplier(c) = 1 + (MAX_BONUS - 1) * exp(-c / DECAY)`` with ``c`` the network's total compute in
CPU-hours. At 500K CPU-hours it gives about 6.5, at 1M about 4.3, and it tends to 1.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from economy.errors import LedgerError
from economy.portable_math import exp

MAX_BONUS: float = 10.0
DECAY_CPU_HOURS: float = 1_000_000.0


def contribution_multiplier(
    network_compute_cpu_hours: float | npt.NDArray[np.float64],
    max_bonus: float = MAX_BONUS,
    decay: float = DECAY_CPU_HOURS,
) -> float | npt.NDArray[np.float64]:
    """Reward multiplier at the given network compute (CPU-hours, >= 0); 10.0 at 0, tending to 1."""
    c = np.asarray(network_compute_cpu_hours, dtype=np.float64)
    if np.any(~np.isfinite(c)) or np.any(c < 0):
        raise LedgerError(
            f"network compute must be finite and >= 0 CPU-hours, got {network_compute_cpu_hours!r}"
        )
    if decay <= 0 or max_bonus < 1:
        raise LedgerError(
            f"need decay > 0 and max_bonus >= 1, got decay={decay!r}, max_bonus={max_bonus!r}"
        )
    m = 1.0 + (max_bonus - 1.0) * np.asarray(exp(-c / decay))
    return float(m) if m.ndim == 0 else m
