"""Classic economies written as Agora roles, and the measures they share.

Each module of this package is one model from the agent-based economics canon, written only with
Agora's public role API (:class:`agora.Population`, :class:`agora.RoleParams`, the world of
:class:`agora.WorldAPI`). A scenario beside this folder names a role as
``"classics.<module>:<Class>"``. A recorded run keeps a copy of each role's module and of the
modules of this folder it imports, so it replays from its own directory.

A *trade tape* is how a market role shows the trades it made this tick to other roles (a tax
authority, say): three int64 arrays of equal length, ``tape_payer`` and ``tape_payee`` (ledger
accounts) and ``tape_amount`` (micro-credits), replaced each tick by the role that trades.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TAPE_FIELDS = ("tape_payer", "tape_payee", "tape_amount")
"""The attributes a market role fills with this tick's trades (module docstring)."""


def gini(holdings: npt.NDArray[np.int64]) -> float:
    """The Gini coefficient of ``holdings: int64[n]`` (micro-credits, each >= 0): 0 when all hold
    the same, towards 1 when one holds everything; 0.0 when nobody holds anything.

    Computed from the sorted holdings' running sums as one exact integer ratio,
    ``((n + 1)·total − 2·Σ running sums) / (n·total)``, rounded once: the same bits on every
    machine.
    """
    x = np.sort(np.asarray(holdings, dtype=np.int64))
    assert x.ndim == 1, f"holdings must be one-dimensional, got shape {x.shape}"
    assert x.size == 0 or x[0] >= 0, f"holdings must be >= 0, the least is {x[0] if x.size else 0}"
    n = int(x.size)
    total = int(x.sum(dtype=np.int64)) if n else 0
    if total == 0:
        return 0.0
    running = sum(np.cumsum(x, dtype=np.int64).tolist())  # a Python int: no overflow
    value = ((n + 1) * total - 2 * running) / (n * total)
    assert -1e-12 <= value < 1.0, f"a Gini coefficient lies in [0, 1), got {value}"
    return max(0.0, value)
