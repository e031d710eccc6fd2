"""The gpu engine's replicated ledger: one base the replicas agree on, plus what each has not
yet shared.

Every account has a home replica (``account mod R``). Every debit of an account is made at its
home replica (a payment by the payer's home, a burn by the account's), so the balance an
account's home holds for it never exceeds its balance in any complete view, and a check against
that balance can never let an account overdraw, whatever is lost, late or partitioned.

A tick's entries are grouped into one *batch* per origin replica (the replica that made them).
The origin applies its batch at once; every other replica applies it when the batch reaches it
(the bus, ``deliver``) or when anti-entropy brings it (``anti_entropy``). Applying a batch at
replica ``q`` adds its entries for the accounts whose home is ``q`` to ``view``, the balance each
account's home holds. A batch that every replica has applied is folded into ``base`` and dropped.
Rule-based entries (mints, burns, stake released), which every replica computes from the same
state, go into ``base`` and ``view`` at once and travel in no batch. So the engine holds one
``base`` and one ``view`` (16 bytes per account) plus the batches in flight, instead of R full
replicas. A replica's state is ``base`` plus the batches it has applied; two replicas agree
exactly when they have applied the same batches, which is how their digests are formed.

Batches are authenticated as a whole, not entry by entry: the origin computes a fingerprint of
the batch's columns on the device (a 64-bit hash) and one HMAC-SHA256 tag over it; a replica that
receives the batch checks the tag and that the columns still have that fingerprint before
applying it. The fingerprint detects a batch changed in flight; it is not collision-resistant
against an adversary who chooses entries (the gpu engine has no byzantine faults).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.tensor.draws import G1, G2, G3, mix, signed


@dataclass
class _Tick:
    """The remote entries one tick made: (account, amount, origin replica) columns."""

    account: Any
    amount: Any
    origin: Any
    seen: list[set[int]] = field(default_factory=list)  # per origin: the replicas that applied it
    tags: list[bytes] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)
    fingerprint: Any = None


class Ledger:
    """``n`` accounts over ``regions`` replicas on ``device``."""

    def __init__(self, n: int, regions: int, device: Any, key: bytes) -> None:
        import torch

        self.torch = torch
        self.n, self.R = n, regions
        self.device = device
        self.base = torch.zeros(n, dtype=torch.int64, device=device)
        self.view = torch.zeros(n, dtype=torch.int64, device=device)
        self.home = torch.arange(n, dtype=torch.int64, device=device) % regions
        self.key = key
        self.ticks: dict[int, _Tick] = {}
        self._acc: list[Any] = []
        self._amt: list[Any] = []
        self._org: list[Any] = []
        self._local: list[tuple[Any, Any]] = []
        self.rejected_tags = 0
        self._rejected = torch.zeros((), dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ entries of this tick
    def transfer(self, payer: Any, payee: Any, amount: Any) -> None:
        """Move ``amount`` (>= 0; 0 where nothing moves) from each payer to its payee, made at the
        payer's home replica. The caller has checked ``amount <= view[payer]`` for every payer
        (one payment per payer in a call)."""
        origin = self.home[payer]
        self.view.index_add_(0, payer, -amount)
        self._local.append((payer, -amount))
        local = self.home[payee] == origin
        zero = self.torch.zeros_like(amount)
        self.view.index_add_(0, payee, self.torch.where(local, amount, zero))
        self._local.append((payee, self.torch.where(local, amount, zero)))
        self._acc.append(payee)
        self._amt.append(self.torch.where(local, zero, amount))
        self._org.append(origin)

    def credit(self, account: Any, amount: Any) -> None:
        """Credit ``amount`` to each account on every replica at once: a rule-based entry (a mint,
        or stake released to it) that every replica computes from the same state, so it travels in
        no batch. The caller counts where it came from."""
        self.view.index_add_(0, account, amount)
        self.base.index_add_(0, account, amount)

    def debit(self, account: Any, amount: Any) -> None:
        """Debit ``amount`` (at most what the home's view holds) from each account on every
        replica at once (a rule-based burn); the caller counts it."""
        self.view.index_add_(0, account, -amount)
        self.base.index_add_(0, account, -amount)

    def end_tick(self, tick: int) -> Any:
        """Close this tick's batches: the origin has applied them; the rest wait for the bus.
        Returns the batches' fingerprints (a device tensor, one per origin) for :meth:`seal`."""
        torch = self.torch
        # Every entry is folded into the base once every replica holds its batch; the local
        # entries (applied at their own home) are part of their origin's batch as well.
        acc = [a for a, _ in self._local] + self._acc
        amt = [m for _, m in self._local] + self._amt
        org = [self.home[a] for a, _ in self._local] + self._org
        # Local entries are marked by origin + R, so delivery skips them (already in the view).
        org = [o + self.R for o in org[: len(self._local)]] + org[len(self._local) :]
        if acc:
            t = _Tick(torch.cat(acc), torch.cat(amt), torch.cat(org))
        else:
            empty = torch.zeros(0, dtype=torch.int64, device=self.device)
            t = _Tick(empty, empty, empty)
        t.seen = [{o} for o in range(self.R)]
        t.fingerprint = self._fingerprints(t)
        self.ticks[tick] = t
        self._acc, self._amt, self._org, self._local = [], [], [], []
        self._fold()
        return t.fingerprint

    def seal(self, tick: int, fingerprints: list[int]) -> None:
        """Tag each of the tick's batches with one HMAC-SHA256 over its tick, origin and
        fingerprint (read back from the device with the tick's other figures)."""
        t = self.ticks.get(tick)
        if t is not None:
            t.claimed = list(fingerprints)
            t.tags = [self._tag(tick, o, f) for o, f in enumerate(fingerprints)]

    def _fingerprints(self, t: _Tick) -> Any:
        """Per origin, a 64-bit fingerprint of its batch's columns, computed on the device: the
        wrapping sum of a hash of each entry (account, amount, position); integer sums do not
        depend on their order, so every device gives the same bits."""
        torch = self.torch
        pos = torch.arange(t.account.shape[0], dtype=torch.int64, device=self.device)
        h = mix(t.account * signed(G1) + t.amount * signed(G2) + pos * signed(G3))
        zero = torch.zeros_like(h)
        sums = [
            torch.where((t.origin == o) | (t.origin == o + self.R), h, zero).sum()
            for o in range(self.R)
        ]
        return torch.stack(sums)

    def _tag(self, tick: int, origin: int, fingerprint: int) -> bytes:
        """The batch's one HMAC-SHA256 tag, over its tick, origin and fingerprint."""
        msg = f"{tick}:{origin}:{fingerprint}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).digest()

    # ------------------------------------------------------------------ sharing
    def apply(self, tick: int, origin: int, replica: int, tag: bytes | None = None) -> bool:
        """Replica ``replica`` applies the batch of ``origin`` made at ``tick`` (once; a duplicate
        or an unknown batch changes nothing). With ``tag`` (a batch off the bus) the tag must
        verify over the fingerprint the batch claims (on the host), and the fingerprint of the
        columns as they arrive must equal it (on the device, as a mask, so nothing waits for the
        device): a batch that fails either check applies nothing and is counted as rejected."""
        t = self.ticks.get(tick)
        if t is None or replica in t.seen[origin]:
            return False
        torch = self.torch
        mask = (t.origin == origin) & (self.home[t.account] == replica)
        if tag is not None:
            if not hmac.compare_digest(tag, self._tag(tick, origin, t.claimed[origin])):
                self.rejected_tags += 1
                return False
            same = self._fingerprints(t)[origin] == t.claimed[origin]
            mask = mask & same
            self._rejected = self._rejected + (~same).to(torch.int64)
        self.view.index_add_(0, t.account, torch.where(mask, t.amount, torch.zeros_like(t.amount)))
        t.seen[origin].add(replica)
        return True

    @property
    def rejected(self) -> int:
        """Batches off the bus that failed their tag or fingerprint check."""
        return self.rejected_tags + int(self._rejected)

    def deliver(self, tick: int, origin: int, replica: int) -> bool:
        """A batch arriving over the bus (tag checked)."""
        t = self.ticks.get(tick)
        return t is not None and self.apply(tick, origin, replica, t.tags[origin])

    def anti_entropy(self, groups: list[list[int]]) -> int:
        """Every replica of each group applies every batch another member has: returns how many
        batches moved."""
        moved = 0
        for tick in sorted(self.ticks):
            t = self.ticks[tick]
            for origin in range(self.R):
                for group in groups:
                    if any(r in t.seen[origin] for r in group):
                        for r in group:
                            moved += self.apply(tick, origin, r)
        self._fold()
        return moved

    def _fold(self) -> None:
        """Fold every batch that all replicas hold into the base; drop ticks wholly folded."""
        torch = self.torch
        full = set(range(self.R))
        for tick in sorted(self.ticks):
            t = self.ticks[tick]
            for origin in range(self.R):
                if t.seen[origin] == full:
                    mask = (t.origin == origin) | (t.origin == origin + self.R)
                    self.base.index_add_(
                        0, t.account, torch.where(mask, t.amount, torch.zeros_like(t.amount))
                    )
                    t.seen[origin] = {-1, *full}  # folded
            if all(-1 in s for s in t.seen):
                del self.ticks[tick]

    # ------------------------------------------------------------------ reading
    def applied(self, replica: int) -> list[tuple[int, int]]:
        """The batches replica ``replica`` holds beyond the base."""
        return [
            (tick, o)
            for tick, t in sorted(self.ticks.items())
            for o in range(self.R)
            if replica in t.seen[o] and -1 not in t.seen[o]
        ]

    def distinct_states(self) -> int:
        """How many different states the replicas hold."""
        return len({tuple(self.applied(r)) for r in range(self.R)})

    def pending_batches(self) -> int:
        """Batches some replica still lacks."""
        return sum(1 for t in self.ticks.values() for s in t.seen if -1 not in s)

    def digests(self) -> dict[str, str]:
        """SHA-256 of the base, and of each replica's state (the base's digest and the batches it
        holds beyond it)."""
        base = hashlib.sha256(self.base.cpu().numpy().astype(np.int64).tobytes()).hexdigest()
        out = {"ledger/base": base}
        for r in range(self.R):
            h = hashlib.sha256(base.encode())
            h.update(repr(self.applied(r)).encode())
            out[f"ledger/replica{r}"] = h.hexdigest()
        return out

    def pending_total(self) -> int:
        """Credits in batches not yet folded into the base (0: a batch holds transfers only, each
        moving credits from one account to another; computed, not assumed)."""
        torch = self.torch
        total = torch.zeros((), dtype=torch.int64, device=self.device)
        for t in self.ticks.values():
            for origin in range(self.R):
                if -1 not in t.seen[origin]:
                    mask = (t.origin == origin) | (t.origin == origin + self.R)
                    total = total + torch.where(mask, t.amount, torch.zeros_like(t.amount)).sum()
        return int(total)
