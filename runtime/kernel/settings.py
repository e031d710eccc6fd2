"""Settings: ``KEY=VALUE`` changes to a scenario's data, as ``agora sweep --set``, ``agora fork
--set`` and the environments' ``settings`` spell them (``economy.price_elasticity=0.3``,
``population.workers.stake=2``, ``fault.0.at=40``)."""

from __future__ import annotations

import tomllib
from typing import Any


class SettingError(Exception):
    """A setting that cannot apply to the scenario (user mistake: exit 2), one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read_value(raw: str) -> Any:
    """A ``--set`` value: the TOML value ``raw`` spells (``3``, ``0.5``, ``true``, ``"eu"``), or
    ``raw`` itself as a string when it is not a TOML value (``broken.npz``)."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted; ``population.NAME.field`` addresses a population by name,
    ``fault.0.at`` a list entry by index) in the scenario's TOML data; SettingError naming the key
    if it does not exist."""
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            named = [e for e in node if isinstance(e, dict) and e.get("name") == part]
            if not named:
                names = [e.get("name") for e in node if isinstance(e, dict)]
                raise SettingError(
                    [
                        f"--set {key}: {where}: no entry named {part!r} "
                        f"(names: {names}; or an index 0..{len(node) - 1})"
                    ]
                )
            node = named[0]
        elif isinstance(node, dict):
            sections = ("world", "network", "bus", "economy", "record")
            node = node.setdefault(part, {}) if part in sections else node.get(part)
            if node is None:
                raise SettingError([f"--set {key}: the scenario has no {where!r} section"])
        else:
            raise SettingError([f"--set {key}: {where} is a value, not a section"])
    if not isinstance(node, dict):
        raise SettingError(
            [
                f"--set {key}: {'.'.join(parts[:-1])} is a list; name an entry, "
                "e.g. population.workers.stake"
            ]
        )
    node[parts[-1]] = value
