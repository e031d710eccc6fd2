"""The agent API as a contract: the world offers every name of WorldAPI, and every built-in role
uses only those names of the world it is given."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from runtime.kernel.roles import registered
from runtime.kernel.world_api import MEMBERS, WorldAPI

from .conftest import SMALL


def test_the_world_offers_every_name_of_the_protocol():
    from runtime.kernel.scenario import parse
    from runtime.kernel.world import World

    world = World(parse(SMALL))
    missing = sorted(name for name in MEMBERS if not hasattr(world, name))
    assert not missing, f"World lacks {missing}"
    for name in MEMBERS:
        if callable(getattr(WorldAPI, name, None)):
            declared = inspect.signature(getattr(WorldAPI, name))
            actual = inspect.signature(getattr(type(world), name))
            assert list(declared.parameters) == list(actual.parameters), name


def _world_names(source: str) -> set[str]:
    """Attributes read of a parameter called ``world`` anywhere in a module."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "world"
        ):
            names.add(node.attr)
    return names


@pytest.mark.parametrize("role", sorted(registered()))
def test_each_built_in_role_uses_only_the_protocol(role):
    cls = registered()[role].cls
    source = Path(inspect.getsourcefile(cls)).read_text()
    outside = sorted(_world_names(source) - MEMBERS)
    assert not outside, (
        f"{role} ({cls.__module__}) uses world.{outside} outside runtime.kernel.world_api.WorldAPI"
    )
