"""Requests from outside a running world, as recorded inputs: an operator's faults and proposals,
seats' stakes and votes.

``agora serve``'s operator can inject a fault of any of the scenario's kinds or open a governance
proposal, and a seat can stake or unstake credits or vote on an open proposal, while the world
runs. Each takes effect at the start of the next tick, in the order the server accepted them. A
scenario that names an outside inputs file (``record.outside_inputs``) reads the entries so far
from it and applies each at the start of its tick exactly as the served run did, so a replay or a
resumed run makes the same world with nobody outside.

Entries: ``{"at": tick, "fault": {...}}`` (a ``[[fault]]`` table without ``at``) and
``{"at": tick, "stake": {"account": id, "micro": n}}`` (``n > 0`` stakes, ``n < 0`` unstakes; the
ledger refuses what the account cannot cover, and the event log says so),
``{"at": tick, "proposal": {...}}`` (a ``[[proposal]]`` table without ``at``: it opens at that
tick, after the scenario's own proposals of the tick) and ``{"at": tick, "vote": {"account": id,
"proposal": n, "support": true}}`` (``n`` is the proposal's id in the event log; the organisation
refuses a vote it cannot take, and the event log says why).

:class:`OutsideInputs` keeps, in the world's saved state, only the entries already applied: a
checkpoint taken before a request is the same whether or not the request is yet to come.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from economy.ops import OpKind
from runtime.kernel.scenario import FaultConfig, ProposalConfig

if TYPE_CHECKING:
    from runtime.kernel.world import World

OUTSIDE_KIND = "agora-outside-inputs"
KINDS = ("fault", "stake", "proposal", "vote")  # what an entry holds


class OutsideInputs:
    """Entries by tick: recorded ones (from a file) and live ones (from a server)."""

    def __init__(self, recorded: list[dict[str, Any]] | None = None) -> None:
        self.recorded = list(recorded or [])  # entries to replay
        self.pending: list[dict[str, Any]] = []  # live entries for a coming tick
        self.applied: list[dict[str, Any]] = []

    def __getstate__(self) -> dict[str, Any]:
        """What a checkpoint keeps: the entries applied so far."""
        return {"applied": self.applied}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["applied"])  # type: ignore[misc]
        self.applied = list(state["applied"])

    def inject(self, fault: dict[str, Any], at: int) -> None:
        """Add ``fault`` (a ``[[fault]]`` table without ``at``) to start at tick ``at``."""
        # Keys in sorted order, as the file holds them: a replay's entries are the same objects.
        self.pending.append({"at": at, "fault": dict(sorted(fault.items()))})

    def stake(self, account: int, micro: int, at: int) -> None:
        """Stake (``micro > 0``) or unstake (``micro < 0``) for ``account`` at tick ``at``."""
        assert micro != 0
        self.pending.append({"at": at, "stake": {"account": account, "micro": micro}})

    def propose(self, proposal: dict[str, Any], at: int) -> None:
        """Open ``proposal`` (a ``[[proposal]]`` table without ``at``) at tick ``at``."""
        self.pending.append({"at": at, "proposal": dict(sorted(proposal.items()))})

    def vote(self, account: int, proposal: int, support: bool, at: int) -> None:
        """``account``'s vote on ``proposal`` (its id) at tick ``at``."""
        vote = {"account": account, "proposal": proposal, "support": support}
        self.pending.append({"at": at, "vote": vote})

    def apply_due(self, world: World, tick: int) -> None:
        """Apply the entries due at ``tick``, in order (before the tick's faults and steps)."""
        # Ticks only go forward, so an entry is due once: recorded ones on replay, pending ones
        # live (a restored world's recorded entries all lie before its next tick).
        due = [e for e in (*self.recorded, *self.pending) if e["at"] == tick]
        self.pending = [e for e in self.pending if e["at"] > tick]
        faults = list(world.scenario.fault)
        for entry in due:
            self.applied.append(entry)
            if "fault" in entry:
                faults.append(FaultConfig(**{**entry["fault"], "at": tick}))
                continue
            if "proposal" in entry or "vote" in entry:
                org = world.organisation
                if org is None:
                    world.emit("outside_refused", "serve", detail="the world has no governance")
                elif "proposal" in entry:
                    org.add_proposal(ProposalConfig(**{**entry["proposal"], "at": tick}))
                else:
                    vote = entry["vote"]
                    org.outside_vote(
                        int(vote["account"]), int(vote["proposal"]), bool(vote["support"]), tick
                    )
                continue
            account, micro = int(entry["stake"]["account"]), int(entry["stake"]["micro"])
            kind = OpKind.STAKE if micro > 0 else OpKind.UNSTAKE
            one = np.array([account], dtype=np.int64)
            done_ok = world.execute_by_home(kind, one, one, np.array([abs(micro)], np.int64))
            world.emit(
                "outside_stake" if done_ok[0] else "outside_stake_refused",
                "serve",
                agent=account,
                amount=micro,
            )
        if len(faults) > len(world.scenario.fault):
            world.reconfigure(world.scenario.model_copy(update={"fault": faults}))


def read_outside_inputs(path: Path) -> list[dict[str, Any]]:
    """An outside inputs file's entries; ValueError naming what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not an outside inputs file ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != OUTSIDE_KIND:
        raise ValueError(f"{path}: not an outside inputs file (kind {OUTSIDE_KIND!r})")
    entries = data.get("entries")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("at"), int)
        and sum(isinstance(e.get(kind), dict) for kind in KINDS) == 1
        for e in entries
    ):
        raise ValueError(
            f"{path}: entries must be a list of {{'at': tick, one of {', '.join(KINDS)}: {{...}}}}"
        )
    for i, e in enumerate(entries):
        where = f"{path}: entries[{i}]"
        if "proposal" in e:
            try:
                ProposalConfig(**{**e["proposal"], "at": e["at"]})
            except (ValidationError, TypeError) as exc:
                raise ValueError(f"{where}.proposal: not a [[proposal]] table ({exc})") from None
        if "vote" in e:
            v = e["vote"]
            if not (
                set(v) == {"account", "proposal", "support"}
                and all(type(v[k]) is int and v[k] >= 0 for k in ("account", "proposal"))
                and isinstance(v["support"], bool)
            ):
                raise ValueError(
                    f"{where}.vote: expected {{'account': id, 'proposal': id, 'support': bool}}"
                )
    return entries


def write_outside_inputs(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write ``entries`` whole or not at all (the same bytes for the same entries)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"kind": OUTSIDE_KIND, "entries": entries}, sort_keys=True) + "\n")
    os.replace(tmp, path)
