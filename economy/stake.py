"""Stake with an unbonding period, and slashing, on top of a ledger replica.

Agents stake to take work. Unstaking starts an unbonding period of ``unbonding_ticks``; stake in
unbonding still backs the agent's past work and can be slashed. Every movement is a ledger op at
the account's home replica, so the ledger stays the single source of truth for amounts.
"""

from __future__ import annotations

from dataclasses import dataclass

from economy.errors import LedgerError
from economy.ledger import Replica
from economy.ops import Op


@dataclass
class Unbonding:
    """Stake on its way out: ``amount`` micro-credits of ``account``, free at ``release_tick``."""

    account: int
    amount: int
    release_tick: int


class StakeBook:
    """Stake, unbonding and slashing for the accounts whose home is ``replica``."""

    def __init__(self, replica: Replica, unbonding_ticks: int) -> None:
        if unbonding_ticks < 0:
            raise LedgerError(f"unbonding_ticks must be >= 0, got {unbonding_ticks}")
        self.replica = replica
        self.unbonding_ticks = unbonding_ticks
        self.queue: list[Unbonding] = []
        self.slashed_total = 0

    def unbonding(self, account: int) -> int:
        """Stake of ``account`` already on its way out."""
        return sum(u.amount for u in self.queue if u.account == account)

    def bonded(self, account: int) -> int:
        """Stake of ``account`` that can still back new work."""
        return int(self.replica.staked(account)) - self.unbonding(account)

    def stake(self, account: int, amount: int) -> Op:
        """Lock ``amount`` of ``account``'s credits."""
        return self.replica.stake(account, amount)

    def request_unstake(self, account: int, amount: int, now: int) -> Unbonding:
        """Start unbonding ``amount``; it becomes liquid at ``now + unbonding_ticks``."""
        if amount <= 0 or amount > self.bonded(account):
            raise LedgerError(f"account {account} can unbond 1..{self.bonded(account)} micro-credits, asked {amount}")
        entry = Unbonding(account, amount, now + self.unbonding_ticks)
        self.queue.append(entry)
        return entry

    def release(self, now: int) -> list[Op]:
        """Unstake every unbonding entry whose time has come; return the ledger ops."""
        ops, keep = [], []
        for u in self.queue:
            if u.release_tick <= now:
                ops.append(self.replica.unstake(u.account, u.amount))
            else:
                keep.append(u)
        self.queue = keep
        return ops

    def slash(self, account: int, fraction: float) -> Op | None:
        """Destroy ``floor(fraction * stake)`` of ``account``'s stake, unbonding included."""
        if not 0 <= fraction <= 1:
            raise LedgerError(f"slash fraction must be in [0, 1], got {fraction}")
        amount = int(int(self.replica.staked(account)) * fraction)
        if amount == 0:
            return None
        op = self.replica.slash(account, amount)
        self.slashed_total += amount
        # Unbonding entries cannot exceed what is left; trim the newest first.
        excess = self.unbonding(account) - int(self.replica.staked(account))
        for u in reversed(self.queue):
            if excess <= 0:
                break
            if u.account == account:
                cut = min(u.amount, excess)
                u.amount -= cut
                excess -= cut
        self.queue = [u for u in self.queue if u.amount > 0]
        return op
