"""The economy's exception types: one family, each message naming the value, the expectation,
the fix."""


class LedgerError(ValueError):
    """A ledger operation or state that cannot be accepted."""


class OpRejected(LedgerError):
    """An operation was refused as a whole; nothing of it was applied."""

    def __init__(self, op_id: str, reason: str) -> None:
        super().__init__(f"op {op_id} rejected: {reason}")
        self.op_id = op_id
        self.reason = reason


class DeltaRejected(OpRejected):
    """A state delta (or a whole-state merge) was refused as a whole; nothing of it was merged.

    Raised for a delta whose tag does not verify under its source replica's key, whose source is
    unknown or is the receiving replica itself, or whose arrays do not fit the ledger.
    ``op_id`` is ``"delta <source>@<version>"``.
    """

    def __init__(self, delta_id: str, reason: str) -> None:
        LedgerError.__init__(self, f"{delta_id} rejected: {reason}")
        self.op_id = delta_id
        self.reason = reason


class CorruptStateError(LedgerError):
    """Serialised replica bytes failed their checksum or structure check."""
