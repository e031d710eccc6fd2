"""Shared by the gallery's tests: where the gallery lives, and its scenarios run on other seeds."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import agora

GALLERY = Path(__file__).resolve().parents[2] / "examples" / "gallery"
"""The folder of the gallery's scenarios (its roles are the package ``classics`` inside it)."""


def simulate(
    scenario: str, seed: int, ticks: int | None = None, **populations: dict[str, Any]
) -> agora.Simulation:
    """A world of the gallery's ``<scenario>.toml`` on ``seed``, with ``ticks`` ticks (default: the
    scenario's) and the keys of ``populations[name]`` set on the population of that name."""
    data = tomllib.loads((GALLERY / f"{scenario}.toml").read_text())
    assert data["world"]["seed"] != seed, f"{scenario}: test on a seed other than the shipped one"
    if ticks is not None:
        data["world"]["ticks"] = ticks
        data["world"]["checkpoint_every"] = min(data["world"]["checkpoint_every"], ticks)
    for name, keys in populations.items():
        table = next((p for p in data["population"] if p["name"] == name), None)
        assert table is not None, f"{scenario}.toml has no population {name!r}"
        table.update(keys)
    return agora.Simulation.from_dict(data, base=GALLERY, seed=seed)
