"""Mutated scenario files: every one is either run or refused with one line per problem (exit 2),
never a traceback; what validate accepts, run accepts too."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.kernel.errors import RoleFailure, ScenarioError
from runtime.kernel.scenario import parse
from runtime.kernel.world import World

from .conftest import SMALL

ROLES_TEXT = """
[world]
ticks = 5
checkpoint_every = 2
[network]
regions = ["a", "b"]
[[population]]
name = "req"
role = "requester"
count = 20
initial_credits = 10
forecasts_from = "wm"
[[population]]
name = "work"
role = "worker"
count = 8
stake = 2
cheat_fraction = 0.2
[[population]]
name = "heal"
role = "healer"
count = 1
watches = "work"
[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"
[[population]]
name = "wm"
role = "world_model"
count = 1
horizon = 2
[[population]]
name = "neg"
role = "negotiator"
count = 4
initial_credits = 100
[[population]]
name = "ref"
role = "refactor"
count = 1
initial_credits = 100
modules = 5
[[fault]]
at = 1
kind = "partition"
groups = [["a"], ["b"]]
duration = 2
[[fault]]
at = 2
kind = "byzantine"
count = 3
[coordination]
graph_every = 2
tension_every = 2
[governance]
members = "neg"
[[proposal]]
at = 1
changes = { fee_rate = 0.02 }
"""

BASES = [tomllib.loads(SMALL), tomllib.loads(ROLES_TEXT)]

WILD = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, -1, 2**31, 2**53, 2**62, 2**63 - 1, 10**12, 2_000_000_000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -0.0, 5e-324]),
    st.text(max_size=12),
    st.sampled_from(
        [
            "[/x]",
            "",
            "worker",
            "critic",
            "world_model",
            "no_such:Role",
            "../../etc/passwd",
            "a" * 300,
        ]
    ),
    st.booleans(),
    st.lists(st.integers(-5, 5), max_size=4),
    st.lists(st.lists(st.text(max_size=3), max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-3, 3), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A base scenario with one to three keys changed, removed or added."""
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        parent: Any = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        key = path[-1]
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[
                draw(
                    st.sampled_from(["extra", "stake", "count", "quality", "watches", "role", "at"])
                )
            ] = draw(WILD)
        else:
            parent[key] = draw(WILD)
    try:
        return tomli_w.dumps(data)
    except (TypeError, ValueError):
        return "[world]\nseed = -1\n"  # a value TOML cannot hold: the file a user could still write


def _outcome(text: str, tmp: Path, run: bool) -> str:
    try:
        scenario = parse(text, "fuzz.toml", tmp)
    except ScenarioError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return "refused"
    if not run or sum(p.count for p in scenario.population) > 5_000:
        return "valid"
    try:
        world = World(scenario, base=tmp)
        world.run(min(2, scenario.world.ticks))
    except ScenarioError:
        pytest.fail(f"validate accepted what building the world refused:\n{text}")
    except RoleFailure as exc:
        pytest.fail(f"a built-in role failed on a valid scenario: {exc}: {exc.__cause__!r}\n{text}")
    return "ran"


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=mutated())
def test_mutated_scenarios_validate_or_are_refused_in_one_line_each(text, tmp_path):
    _outcome(text, tmp_path, run=False)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=mutated())
def test_what_validates_also_builds_and_runs(text, tmp_path):
    _outcome(text, tmp_path, run=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[world]\nname = "[/x]"\nticks = 2\n', None),
        ("[world]\ntick_length = inf\n", "world.tick_length"),
        ("[economy]\ntask_unit_credits = 9223372036854\n", "economy.task_unit_credits"),
        (
            '[[population]]\nname = "r"\nrole = "requester"\ncount = 10\ninitial_credits = '
            "2000000000\n",
            "population[0].initial_credits",
        ),
        (
            '[[population]]\nname = "w"\nrole = "worker"\ncount = 10\nrestart_ticks = '
            "9223372036854775807\n",
            "population[0].restart_ticks",
        ),
        (
            '[[population]]\nname = "r"\nrole = "requester"\ncount = 10\nforecast_fee = inf\n',
            "population[0].forecast_fee",
        ),
        (
            '[governance]\nmembers = "w"\ntemperature = nan\n[[population]]\nname = "w"\nrole = '
            '"worker"\ncount = 2\n',
            "governance.temperature",
        ),
        (
            "[network]\nregions = [" + ", ".join(f'"r{i}"' for i in range(300)) + "]\n",
            "network.regions",
        ),
        (
            '[[population]]\nname = "w"\nrole = "worker"\ncount = 40000000\nstake = 1000000000\n',
            "(credits)",
        ),
        (
            "[world]\nticks = 1000000\n[economy]\nuptime_millicredits_per_hour = 1000000000\n"
            '[[population]]\nname = "w"\nrole = "worker"\ncount = 1000\n',
            "(credits)",
        ),
    ],
)
def test_numbers_that_could_overflow_are_refused_by_the_schema(text, message, tmp_path):
    if message is None:
        assert _outcome(text, tmp_path, run=True) == "ran"
        return
    with pytest.raises(ScenarioError) as info:
        parse(text, "s.toml", tmp_path)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_a_graph_file_must_be_a_sane_region_graph(tmp_path):
    import networkx as nx

    for name, build, message in (
        (
            "negative.graphml",
            lambda g: g.add_edge("a", "b", latency=-1.0),
            "must be a finite number",
        ),
        ("text.graphml", lambda g: g.add_edge("a", "b", latency="soon"), "is not a number"),
        ("empty.graphml", lambda g: None, "has 0 regions"),
    ):
        g = nx.Graph()
        build(g)
        nx.write_graphml(g, tmp_path / name)
        with pytest.raises(ScenarioError) as info:
            parse(f'[network]\ngraph_file = "{name}"\n', "s.toml", tmp_path)
        assert any(message in p for p in info.value.problems), info.value.problems
    (tmp_path / "junk.graphml").write_text("<not xml")
    with pytest.raises(ScenarioError, match="not a readable GraphML graph"):
        parse('[network]\ngraph_file = "junk.graphml"\n', "s.toml", tmp_path)
    with pytest.raises(ScenarioError, match="inside the scenario's folder"):
        parse('[network]\ngraph_file = "../elsewhere.graphml"\n', "s.toml", tmp_path)
