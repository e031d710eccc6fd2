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

from runtime.tensor.counts import count_keys
from runtime.tensor.cpu_kernels import group_sort
from runtime.tensor.draws import G1, G2, G3, mix, signed


@dataclass
class _Tick:
    """The entries one tick made, (account, amount, origin) columns sorted by (origin, applied at
    once, home replica of the account), so each batch is one slice and its entries for one
    replica a slice within it: ``bounds[g]`` is where group ``g = o·2R + local·R + home`` starts
    (the ``origin`` column holds ``o`` for an entry still to deliver, ``o + R`` for one its
    origin applied at once)."""

    account: Any
    amount: Any
    origin: Any
    bounds: list[int] = field(default_factory=list)
    seen: list[set[int]] = field(default_factory=list)  # per origin: the replicas that applied it
    tags: list[bytes] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)

    def batch(self, origin: int, replicas: int) -> tuple[int, int]:
        """Start and end of origin ``origin``'s batch."""
        return self.bounds[origin * 2 * replicas], self.bounds[(origin + 1) * 2 * replicas]

    def remote(self, origin: int, replica: int, replicas: int) -> tuple[int, int]:
        """Start and end of the entries of ``origin``'s batch that ``replica`` applies."""
        g = origin * 2 * replicas + replica
        return self.bounds[g], self.bounds[g + 1]


class Ledger:
    """``n`` accounts over ``regions`` replicas on ``device``."""

    def __init__(
        self, n: int, regions: int, device: Any, key: bytes, *, compact: bool = False
    ) -> None:
        """``compact``: stage a tick's entries by dropping those that move nothing first and
        sorting the rest with a counting sort on the host (a CPU's form); otherwise every entry
        is staged with fixed shapes, as a captured GPU graph needs. The same staged entries."""
        import torch

        self.torch = torch
        self.n, self.R = n, regions
        self.device = device
        self.compact = compact
        self.base = torch.zeros(n, dtype=torch.int64, device=device)
        self.view = torch.zeros(n, dtype=torch.int64, device=device)
        self.home = torch.arange(n, dtype=torch.int64, device=device) % regions
        self.key = key
        self.ticks: dict[int, _Tick] = {}
        self._acc: list[Any] = []
        self._amt: list[Any] = []
        self._org: list[Any] = []
        self._local: list[tuple[Any, Any]] = []
        self._staged: tuple[Any, Any, Any] | None = None
        self.rejected_tags = 0
        self._rejected = torch.zeros((), dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ entries of this tick
    def transfer(self, payer: Any, payee: Any, amount: Any) -> None:
        """Move ``amount`` (>= 0; 0 where nothing moves) from each payer to its payee, made at the
        payer's home replica. The caller has checked ``amount <= view[payer]`` for every payer
        (one payment per payer in a call)."""
        if self.compact:  # a payment of 0 adds 0 everywhere and stages nothing
            i = self.torch.nonzero(amount).reshape(-1)
            payer, payee, amount = payer[i], payee[i], amount[i]
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

    def stage(self) -> tuple[Any, Any]:
        """Gather this tick's entries into one set of columns, on the device and with fixed
        shapes (a payment that moved nothing is an entry of 0): returns the batches'
        fingerprints (one per origin) and, per (origin code, home replica), the number of entries
        that move credits, for the tick's read-back; :meth:`end_tick` then keeps only those."""
        torch = self.torch
        # Every entry is folded into the base once every replica holds its batch; the local
        # entries (applied at their own home) are part of their origin's batch as well, marked by
        # origin + R so that delivery skips them (they are already in the view).
        acc = [a for a, _ in self._local] + self._acc
        amt = [m for _, m in self._local] + self._amt
        org = [self.home[a] + self.R for a, _ in self._local] + self._org
        if self.compact:
            return self._stage_compact(acc, amt, org)
        if acc:
            columns = (torch.cat(acc), torch.cat(amt), torch.cat(org))
        else:
            empty = torch.zeros(0, dtype=torch.int64, device=self.device)
            columns = (empty, empty, empty)
        account, amount, origin = columns
        self._acc, self._amt, self._org, self._local = [], [], [], []
        groups = 2 * self.R * self.R
        code = torch.where(amount != 0, self._group(account, origin), groups)
        counts = count_keys(code, groups)
        # Sorted by group, entries that move nothing last: the tick's batches are a prefix.
        order = torch.sort(code.to(torch.int32), stable=True).indices  # codes <= 2R², narrow
        self._staged = (account[order], amount[order], origin[order])
        return self._fingerprints(account, amount, origin), counts

    def _stage_compact(self, acc: list[Any], amt: list[Any], org: list[Any]) -> tuple[Any, Any]:
        """:meth:`stage` over the entries that move credits only: they keep their order, and a
        stable counting sort by group puts them where the full stable sort puts them (ahead of
        every entry that moves nothing), so the staged prefix and the counts are the same; the
        fingerprints skip zero entries either way."""
        torch = self.torch
        self._acc, self._amt, self._org, self._local = [], [], [], []
        kept: list[tuple[Any, Any, Any]] = []
        for a, m, o in zip(acc, amt, org, strict=True):
            i = torch.nonzero(m).reshape(-1)
            kept.append((a[i], m[i], o[i]))
        if kept:
            account, amount, origin = (torch.cat([k[j] for k in kept]) for j in range(3))
        else:
            account = amount = origin = torch.zeros(0, dtype=torch.int64)
        groups = 2 * self.R * self.R
        order, counts = group_sort(self._group(account, origin).numpy(), groups)
        index = torch.from_numpy(order)
        self._staged = (account[index], amount[index], origin[index])
        return self._fingerprints(account, amount, origin), torch.from_numpy(counts)

    def _group(self, account: Any, origin: Any) -> Any:
        """Each entry's group: origin, applied at once or not, home replica of the account."""
        R = self.R
        local = origin >= R
        o = origin - local.to(origin.dtype) * R
        return o * 2 * R + local.to(origin.dtype) * R + self.home[account]

    def end_tick(self, tick: int, counts: list[int]) -> None:
        """Close this tick's batches: the staged entries that move credits (``counts``, per
        origin code and home, read back with the tick's figures, so nothing waits for the
        device), already sorted into one slice per batch and replica: the origin has applied
        them; the rest wait for the bus."""
        account, amount, origin = self._staged
        total = sum(counts)
        # Copies: on a GPU the staged columns are the tick graph's outputs, rewritten each tick.
        t = _Tick(*(column[:total].clone() for column in (account, amount, origin)))
        t.bounds = [0]
        for c in counts:
            t.bounds.append(t.bounds[-1] + c)
        t.seen = [{o} for o in range(self.R)]
        self.ticks[tick] = t
        self._staged = None
        self._fold()

    def seal(self, tick: int, fingerprints: list[int]) -> None:
        """Tag each of the tick's batches with one HMAC-SHA256 over its tick, origin and
        fingerprint (read back from the device with the tick's other figures)."""
        t = self.ticks.get(tick)
        if t is not None:
            t.claimed = list(fingerprints)
            t.tags = [self._tag(tick, o, f) for o, f in enumerate(fingerprints)]

    def _fingerprints(
        self, account: Any, amount: Any, origin: Any, origins: list[int] | None = None
    ) -> Any:
        """Per origin (``origins``, default all), a 64-bit fingerprint of its batch: the wrapping
        sum of a hash of each entry that moves credits (account, amount, origin). A sum does not
        depend on the entries' order and the zero entries add nothing, so the staged columns and
        the kept ones, on any device, give the same bits."""
        torch = self.torch
        h = mix(account * signed(G1) + amount * signed(G2) + origin * signed(G3))
        h = torch.where(amount != 0, h, torch.zeros_like(h))
        zero = torch.zeros_like(h)
        sums = [
            torch.where((origin == o) | (origin == o + self.R), h, zero).sum()
            for o in (range(self.R) if origins is None else origins)
        ]
        return torch.stack(sums)

    def _tag(self, tick: int, origin: int, fingerprint: int) -> bytes:
        """The batch's one HMAC-SHA256 tag, over its tick, origin and fingerprint."""
        msg = f"{tick}:{origin}:{fingerprint}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).digest()

    # ------------------------------------------------------------------ sharing
    def apply(self, tick: int, origin: int, replica: int) -> bool:
        """Replica ``replica`` applies the batch of ``origin`` made at ``tick`` from a replica
        that holds it (anti-entropy: no tag to check). Once: a duplicate or an unknown batch
        changes nothing."""
        t = self.ticks.get(tick)
        if t is None or replica in t.seen[origin]:
            return False
        a, b = t.remote(origin, replica, self.R)
        self.view.index_add_(0, t.account[a:b], t.amount[a:b])
        t.seen[origin].add(replica)
        return True

    @property
    def rejected(self) -> int:
        """Batches off the bus that failed their tag or fingerprint check."""
        return self.rejected_tags + int(self._rejected)

    def deliver(self, tick: int, origin: int, replica: int) -> bool:
        """A batch arriving over the bus (tag checked)."""
        return self.deliver_many([(tick, origin, replica)]) == 1

    def deliver_many(self, arrivals: list[tuple[int, int, int]]) -> int:
        """Batches arriving over the bus at once, ``(tick made, origin, replica)`` in order.
        Each arrival's tag is checked on the host; the fingerprints of every batch of a tick are
        taken at once from its columns as they are now, and the arrivals of one tick are applied
        together (a batch whose columns no longer have the fingerprint its tag covers adds 0).
        Returns how many applied."""
        torch = self.torch
        by_tick: dict[int, list[tuple[int, int]]] = {}
        for tick, origin, replica in arrivals:
            t = self.ticks.get(tick)
            if t is None or replica in t.seen[origin]:
                continue
            if not hmac.compare_digest(t.tags[origin], self._tag(tick, origin, t.claimed[origin])):
                self.rejected_tags += 1
                continue
            t.seen[origin].add(replica)
            by_tick.setdefault(tick, []).append((origin, replica))
        groups = 2 * self.R * self.R
        for tick, landed in by_tick.items():
            t = self.ticks[tick]
            h = mix(t.account * signed(G1) + t.amount * signed(G2) + t.origin * signed(G3))
            fresh = torch.zeros(self.R, dtype=torch.int64, device=self.device)
            fresh.index_add_(0, t.origin % self.R, h)
            # Per origin: 1 when its columns still have the fingerprint its tag covers. Per group
            # (taken from the columns the fingerprint covers): 1 for the (origin, replica) slices
            # that landed now. Every other entry adds 0.
            host = np.zeros(self.R + groups, dtype=np.int64)
            host[: self.R] = t.claimed
            for origin, replica in landed:
                host[self.R + origin * 2 * self.R + replica] = 1
            claimed_landed = torch.from_numpy(host).to(self.device)
            same = (fresh == claimed_landed[: self.R]).to(torch.int64)
            group = self._group(t.account, t.origin)
            take = claimed_landed[self.R :][group] * same[t.origin % self.R]
            self.view.index_add_(0, t.account, t.amount * take)
            origins = torch.tensor([o for o, _ in landed], dtype=torch.int64).to(self.device)
            self._rejected = self._rejected + (1 - same[origins]).sum()
        return sum(len(v) for v in by_tick.values())

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
        full = set(range(self.R))
        for tick in sorted(self.ticks):
            t = self.ticks[tick]
            for origin in range(self.R):
                if t.seen[origin] == full:
                    a, b = t.batch(origin, self.R)
                    self.base.index_add_(0, t.account[a:b], t.amount[a:b])
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
                    a, b = t.batch(origin, self.R)
                    total = total + t.amount[a:b].sum()
        return int(total)
