"""The economy's exception types: one family, each message naming the value, the expectation, the fix."""


class LedgerError(ValueError):
    """A ledger operation or state that cannot be accepted."""


class OpRejected(LedgerError):
    """An operation was refused as a whole; nothing of it was applied."""

    def __init__(self, op_id: str, reason: str) -> None:
        super().__init__(f"op {op_id} rejected: {reason}")
        self.op_id = op_id
        self.reason = reason


class CorruptStateError(LedgerError):
    """Serialised replica bytes failed their checksum or structure check."""
