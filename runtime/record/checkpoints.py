"""Whole-world checkpoints: a world saved at the end of a checkpoint tick, and loaded to go on.

At each checkpoint tick of a recorded run the world is saved to ``checkpoints/world_<tick>.npz``
(:mod:`runtime.record.snapshot`): every population's arrays and learned cores, the ledger replicas
with their pending ops, the market, reputation, task board, governance and coordination, each random
stream's position, the clock's time and the messages in flight (the SimPy queue), and where each log
of the run ends at that tick. A world loaded from it and run on writes what the uninterrupted run
would have written, byte for byte (``agora run --resume``, ``agora fork``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.record import snapshot
from runtime.record.snapshot import SnapshotError

if TYPE_CHECKING:
    from runtime.kernel.world import World

SNAPSHOT_DIR = "checkpoints"
FORMAT = "agora-world-checkpoint-1"
_NAME = re.compile(r"world_(\d{8})\.npz")
LIBRARY_MODULES = ("networkx",)  # graphs (the region graph, a refactor role's codebase): plain data


def snapshot_name(tick: int) -> str:
    """The file name of the world saved at the end of ``tick``."""
    assert 0 <= tick < 10**8
    return f"world_{tick:08d}.npz"


def snapshot_ticks(run_dir: Path) -> list[int]:
    """Ticks with a saved world in ``run_dir``, rising (temporary files of a killed write are
    not)."""
    folder = run_dir / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name)))


def allowed_modules(populations: list[Any]) -> tuple[str, ...]:
    """Modules whose classes a world's snapshot may hold: Agora's, plain-data libraries', and the
    modules of the world's own roles (a user's role class lives in the user's module)."""
    own = sorted({type(pop).__module__ for pop in populations})
    return (*snapshot.AGORA_MODULES, *LIBRARY_MODULES, *own)


def log_positions(world: World, pending: bool = False) -> dict[str, Any]:
    """Where each of ``world``'s logs stands (flushed): what a world restored with them writes on
    from. ``pending``: also the events emitted since the event log's last batch (a sharded
    world's barrier may fall after some); without it the world must be between ticks."""
    logs: dict[str, Any] = {}
    if world.log is not None:
        logs["events"] = world.log.cut() if pending else world.log.position()
    if world.metrics is not None:
        logs["metrics"] = world.metrics.position()
    if world.state_log is not None:
        logs["state"] = world.state_log.position()
    return logs


def save_world(world: World, path: Path) -> str:
    """Save ``world`` (between ticks, its logs flushed) to ``path``; return the file's SHA-256."""
    root = {"format": FORMAT, "tick": world.tick, "world": world, "logs": log_positions(world)}
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = snapshot.save(path, root, allowed_modules(world.populations))
    if world.scenario.record.snapshots == "last":  # the newest replaces the ones before
        for tick in snapshot_ticks(path.parent.parent):
            if tick != world.tick:
                (path.parent / snapshot_name(tick)).unlink(missing_ok=True)
    return digest


def load_world(path: Path, role_modules: tuple[str, ...] = ()) -> tuple[World, dict[str, Any]]:
    """The world saved in ``path`` and its logs' positions; SnapshotError when it cannot be used.

    ``role_modules``: the modules of the scenario's own roles, whose classes the file may hold.
    """
    from runtime.kernel.world import World

    root = snapshot.load(path, (*snapshot.AGORA_MODULES, *LIBRARY_MODULES, *role_modules))
    if (
        not isinstance(root, dict)
        or root.get("format") != FORMAT
        or not isinstance(root.get("world"), World)
    ):
        raise SnapshotError(f"{path}: not a saved world (expected format {FORMAT})")
    world, logs = root["world"], root.get("logs")
    if root.get("tick") != world.tick or not isinstance(logs, dict):
        raise SnapshotError(f"{path}: the saved tick and the world's tick disagree")
    return world, logs
