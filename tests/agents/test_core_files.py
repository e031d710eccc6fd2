"""Every role with a learned core saves it to the run's cores/ folder, and a scenario can start a
population from such a file (``core = "path.npz"``); a file of the wrong role or shape, or not a
core file at all, is a scenario error naming the population and the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.kernel.scenario import ScenarioError, load
from runtime.kernel.world import World
from runtime.record.recording import record

SCENARIO = """
[world]
ticks = 40
seed = 8
[[population]]
name = "req"
role = "requester"
count = 200
initial_credits = 500
post_rate = 0.4
[[population]]
name = "work"
role = "worker"
count = 50
stake = 5
cheat_fraction = 0.2
[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"{crit}
[[population]]
name = "heal"
role = "healer"
count = 1
watches = "work"{heal}
[[population]]
name = "wm"
role = "world_model"
count = 1
horizon = 3{wm}
[[population]]
name = "ref"
role = "refactor"
count = 2
initial_credits = 500
modules = 20{ref}
"""
ROLES = ("crit", "heal", "wm", "ref")


def scenario(tmp: Path, **cores: str) -> Path:
    fill = {r: (f'\ncore = "{cores[r]}"' if r in cores else "") for r in ROLES}
    path = tmp / f"s{len(list(tmp.glob('s*.toml')))}.toml"
    path.write_text(SCENARIO.format(**fill))
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cores")
    summary = record(scenario(tmp), tmp / "run")
    assert set(summary["cores_saved"]) == set(ROLES)
    return tmp


def test_each_role_starts_from_its_saved_core(saved: Path):
    path = scenario(saved, **{r: f"run/cores/{r}.npz" for r in ROLES})
    scenario_config, _ = load(path)
    world = World(scenario_config, base=saved)
    for pop in world.populations[2:]:
        with np.load(saved / "run" / "cores" / f"{pop.name}.npz") as data:
            for key, value in pop.core_state().items():
                assert np.array_equal(value, data[key]), (pop.name, key)
        assert pop.core == "learned"
    fresh = World(load(scenario(saved))[0], base=saved)
    assert not np.array_equal(
        fresh.populations[5].q, world.populations[5].q
    )  # a fresh Q-table is zeros
    world.run(5)  # and it runs on from there


def test_a_core_of_another_role_is_refused(saved: Path):
    path = scenario(saved, ref="run/cores/crit.npz")
    with pytest.raises(
        ScenarioError,
        match=r"population\[5\]\.core: .*crit.npz: a core of role 'critic', not 'refactor'",
    ):
        load(path)  # refused when the scenario is validated, before any world is built


def test_a_core_of_the_wrong_shape_is_refused(saved: Path):
    path = scenario(saved, crit="run/cores/crit.npz")
    path.write_text(path.read_text().replace("count = 50", "count = 60"))
    with pytest.raises(
        ScenarioError, match=r"'bad' has shape \(50,\), this population needs \(60,\)"
    ):
        World(load(path)[0], base=saved)


def test_a_file_that_is_not_a_core_exits_2_with_one_line(saved: Path):
    (saved / "junk.npz").write_bytes(b"not a zip file")
    path = scenario(saved, wm="junk.npz")
    proc = CliRunner().invoke(app, ["run", str(path), "--out", str(saved / "junk-run")])
    assert proc.exit_code == 2
    assert "population[4].core:" in proc.stderr and "not an .npz file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (saved / "junk-run").exists()  # nothing half-made is left behind
