"""Agora's economy: CRDT credit ledger, stake and slash, reputation, contribution curve, market.

This package depends on nothing else of Agora's. Credits are int64 micro-credits throughout.
"""

from economy.errors import CorruptStateError, LedgerError, OpRejected
from economy.ledger import Replica
from economy.ops import Keyring, Op, OpKind
from economy.rates import MICRO

__all__ = [
    "MICRO",
    "CorruptStateError",
    "Keyring",
    "LedgerError",
    "Op",
    "OpKind",
    "OpRejected",
    "Replica",
]
