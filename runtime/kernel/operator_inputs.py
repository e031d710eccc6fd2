"""An operator's changes to a running world, as recorded inputs: faults injected at a tick.

``agora serve``'s operator can inject a fault of any of the scenario's kinds while the world runs.
The fault takes effect at the start of the next tick. A scenario that names an operator inputs file
(``record.operator_inputs``) reads the faults injected so far from it, and each is added to the
world's fault schedule at the start of its tick, exactly as the served run added it. So a replay
or a resumed run makes the same world without an operator present.

:class:`OperatorInputs` keeps, in the world's saved state, only the faults already applied: a
checkpoint taken before an injection is the same whether or not the injection is yet to come.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.kernel.scenario import FaultConfig

if TYPE_CHECKING:
    from runtime.kernel.world import World

OPERATOR_KIND = "agora-operator-inputs"


class OperatorInputs:
    """Faults to inject by tick: recorded ones (from a file) and live ones (from an operator)."""

    def __init__(self, recorded: list[dict[str, Any]] | None = None) -> None:
        self.recorded = list(recorded or [])  # entries {"at": tick, "fault": {...}} to replay
        self.pending: list[dict[str, Any]] = []  # live entries for the next tick
        self.applied: list[dict[str, Any]] = []

    def __getstate__(self) -> dict[str, Any]:
        """What a checkpoint keeps: the faults applied so far."""
        return {"applied": self.applied}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["applied"])  # type: ignore[misc]
        self.applied = list(state["applied"])

    def inject(self, fault: dict[str, Any], at: int) -> None:
        """Add ``fault`` (a ``[[fault]]`` table without ``at``) to start at tick ``at``."""
        # Keys in sorted order, as the file holds them: a replay's entries are the same objects.
        self.pending.append({"at": at, "fault": dict(sorted(fault.items()))})

    def apply_due(self, world: World, tick: int) -> None:
        """Add the faults due at ``tick`` to the world's schedule (before it applies them)."""
        done = {json.dumps(e, sort_keys=True) for e in self.applied}
        due = [
            e
            for e in (*self.recorded, *self.pending)
            if e["at"] == tick and json.dumps(e, sort_keys=True) not in done
        ]
        self.pending = [e for e in self.pending if e["at"] > tick]
        if not due:
            return
        faults = list(world.scenario.fault)
        for entry in due:
            faults.append(FaultConfig(**{**entry["fault"], "at": tick}))
            self.applied.append(entry)
        world.reconfigure(world.scenario.model_copy(update={"fault": faults}))


def read_operator_inputs(path: Path) -> list[dict[str, Any]]:
    """An operator inputs file's entries; ValueError naming what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not an operator inputs file ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != OPERATOR_KIND:
        raise ValueError(f"{path}: not an operator inputs file (kind {OPERATOR_KIND!r})")
    entries = data.get("entries")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("at"), int) and isinstance(e.get("fault"), dict)
        for e in entries
    ):
        raise ValueError(f"{path}: entries must be a list of {{'at': tick, 'fault': {{...}}}}")
    return entries


def write_operator_inputs(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write ``entries`` whole or not at all (the same bytes for the same entries)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"kind": OPERATOR_KIND, "entries": entries}, sort_keys=True) + "\n")
    os.replace(tmp, path)
