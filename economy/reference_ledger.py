"""The same ledger CRDT written the straightforward way: Python dicts, one op at a time.

It is the oracle the property tests compare :class:`economy.ledger.Replica` against, and the
pure-Python baseline the benchmarks measure it beside. State-based only: no op authentication,
no causal delivery, no Merkle tree.
"""

from __future__ import annotations

from collections import defaultdict


class DictReplica:
    """One replica: ``{(account, replica): micro-credits}`` dicts for every counter."""

    def __init__(self, replica_id: int, n_replicas: int) -> None:
        self.id = replica_id
        self.n_replicas = n_replicas
        self.earned: defaultdict[tuple[int, int], int] = defaultdict(int)
        self.spent_p: defaultdict[tuple[int, int], int] = defaultdict(int)
        self.spent_n: defaultdict[tuple[int, int], int] = defaultdict(int)
        self.lent: defaultdict[tuple[int, int], int] = defaultdict(int)
        self.returned: defaultdict[tuple[int, int], int] = defaultdict(int)
        self.stake_in: defaultdict[int, int] = defaultdict(int)
        self.stake_out: defaultdict[int, int] = defaultdict(int)
        self.minted: defaultdict[int, int] = defaultdict(int)
        self.burned: defaultdict[int, int] = defaultdict(int)

    def balance(self, a: int) -> int:
        """Liquid balance of ``a``."""
        return sum(
            self.earned.get((a, r), 0) - self.spent_p.get((a, r), 0) + self.spent_n.get((a, r), 0)
            for r in range(self.n_replicas)
        )

    def staked(self, a: int) -> int:
        """Stake of ``a``."""
        return self.stake_in.get(a, 0) - self.stake_out.get(a, 0)

    def rights(self, a: int) -> int:
        """Spending rights of ``a`` held by this replica."""
        own_replica = self.id
        v = (
            self.earned.get((a, own_replica), 0)
            - self.spent_p.get((a, own_replica), 0)
            + self.spent_n.get((a, own_replica), 0)
        )
        if a % self.n_replicas == own_replica:
            v += sum(
                self.returned.get((a, s), 0) - self.lent.get((a, s), 0)
                for s in range(self.n_replicas)
            )
        else:
            v += self.lent.get((a, own_replica), 0) - self.returned.get((a, own_replica), 0)
        return v

    def mint(self, a: int, x: int) -> bool:
        """Create credits for ``a`` here."""
        self.earned[(a, self.id)] += x
        self.minted[self.id] += x
        return True

    def _debit(self, a: int, x: int) -> bool:
        if self.rights(a) < x:
            return False
        self.spent_p[(a, self.id)] += x
        return True

    def transfer(self, a: int, b: int, x: int) -> bool:
        """Move ``x`` from ``a`` to ``b``; False when rights are short."""
        if not self._debit(a, x):
            return False
        self.earned[(b, self.id)] += x
        return True

    def burn(self, a: int, x: int) -> bool:
        """Destroy ``x`` of ``a``'s credits; False when rights are short."""
        if not self._debit(a, x):
            return False
        self.burned[self.id] += x
        return True

    def stake(self, a: int, x: int) -> bool:
        """Lock ``x`` as stake (home replica only)."""
        if a % self.n_replicas != self.id or not self._debit(a, x):
            return False
        self.stake_in[a] += x
        return True

    def slash(self, a: int, x: int) -> bool:
        """Destroy ``x`` of stake (home replica only)."""
        if a % self.n_replicas != self.id or self.staked(a) < x:
            return False
        self.stake_out[a] += x
        self.burned[self.id] += x
        return True

    def lend(self, a: int, to: int, x: int) -> bool:
        """Home replica lends ``x`` rights to replica ``to``."""
        if a % self.n_replicas != self.id or to == self.id or self.rights(a) < x:
            return False
        self.lent[(a, to)] += x
        return True

    def give_back(self, a: int, x: int) -> bool:
        """Return ``x`` rights to the home replica."""
        if a % self.n_replicas == self.id or self.rights(a) < x:
            return False
        self.returned[(a, self.id)] += x
        return True

    def merge_owned(self, other: DictReplica) -> None:
        """Key-wise max of the counters ``other`` owns (what :meth:`economy.ledger.Replica.merge`
        takes from a peer): its column of the per-replica counters, its own totals, and the lent
        and stake counters of the accounts it is home to."""
        o = other.id
        for name in ("earned", "spent_p", "spent_n", "returned"):
            mine = getattr(self, name)
            for (account, column), value in getattr(other, name).items():
                if column == o and value > mine.get((account, column), 0):
                    mine[(account, column)] = value
        for (account, replica), value in other.lent.items():
            if account % self.n_replicas == o and value > self.lent.get((account, replica), 0):
                self.lent[(account, replica)] = value
        for name in ("stake_in", "stake_out"):
            mine = getattr(self, name)
            for account, value in getattr(other, name).items():
                if account % self.n_replicas == o and value > mine.get(account, 0):
                    mine[account] = value
        for name in ("minted", "burned"):
            mine = getattr(self, name)
            if getattr(other, name).get(o, 0) > mine.get(o, 0):
                mine[o] = getattr(other, name)[o]

    def merge(self, other: DictReplica) -> None:
        """Key-wise max of every counter."""
        for name in (
            "earned",
            "spent_p",
            "spent_n",
            "lent",
            "returned",
            "stake_in",
            "stake_out",
            "minted",
            "burned",
        ):
            mine, theirs = getattr(self, name), getattr(other, name)
            for key, value in theirs.items():
                if value > mine.get(key, 0):
                    mine[key] = value
