"""The Python API (`import agora`): build, step, read as DataFrames, record as `agora run` does."""

from __future__ import annotations

import runpy
import tomllib
from pathlib import Path

import polars as pl
import pytest

import agora
from runtime.record.recording import record

from .conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]


def test_a_file_a_toml_string_and_a_dict_build_the_same_world(small_scenario):
    a = agora.Simulation.from_file(small_scenario)
    b = agora.Simulation.from_toml(SMALL)
    c = agora.Simulation.from_dict(tomllib.loads(SMALL))
    for sim in (a, b, c):
        sim.step()
        sim.run(15)
    assert a.world.hashes() == b.world.hashes() == c.world.hashes()
    assert a.tick == 15


def test_tables_have_one_row_per_agent_with_units_in_the_names(small_scenario):
    sim = agora.Simulation.from_file(small_scenario)
    sim.run(12)
    work = sim.population("work")
    assert work.height == 30 and {
        "account",
        "balance_credits",
        "balance_micro",
        "stake_credits",
        "alive",
        "quality",
        "done",
    } <= set(work.columns)
    assert (work["balance_micro"].to_numpy() / 1e6 == work["balance_credits"].to_numpy()).all()
    assert work["balance_micro"].dtype == pl.Int64 and work["stake_micro"].dtype == pl.Int64
    # a role's money arrays carry their unit: a worker's cost per task unit
    assert "cost" not in work.columns and work["cost_micro"].dtype == pl.Int64
    assert (work["cost_micro"].to_numpy() / 1e6 == work["cost_credits"].to_numpy()).all()
    home, seen = sim.balances(), sim.balances(replica=1)
    assert home.height == seen.height == 91 and home["population"][-1] == "treasury"
    assert home["stake_micro"].dtype == pl.Int64
    assert (home["stake_micro"].to_numpy() / 1e6 == home["stake_credits"].to_numpy()).all()
    metrics = sim.metrics()
    assert metrics.height == 12 and metrics["tick"].to_list() == list(range(12))
    money = [c for c in metrics.columns if c.endswith("_micro")]
    assert {
        "supply_held_micro",
        "supply_issued_micro",
        "mean_price_micro",
        "price_0_micro",
        "volume_micro",
        "fees_micro",
        "minted_micro",
    } <= set(money)
    for name in money:  # every money column has its figure in credits right after it
        credits = name.removesuffix("_micro") + "_credits"
        assert metrics.columns[metrics.columns.index(name) + 1] == credits
        assert (metrics[name].to_numpy() / 1e6 == metrics[credits].to_numpy()).all()
    assert metrics["volume_micro"].dtype == pl.Int64 and metrics["volume_micro"].sum() > 0
    assert not {"supply_held", "mean_price", "volume", "price_0"} & set(metrics.columns)


def test_with_an_output_folder_the_run_is_recorded_as_agora_run_records_it(
    small_scenario, tmp_path
):
    record(small_scenario, tmp_path / "cli")
    with agora.Simulation.from_file(small_scenario, out=tmp_path / "api") as sim:
        while sim.tick < 40:
            sim.step()
    assert sim.summary is not None
    for path in sorted((tmp_path / "cli").rglob("*")):
        if path.is_file() and path.name != "summary.json":
            assert (
                path.read_bytes()
                == (tmp_path / "api" / path.relative_to(tmp_path / "cli")).read_bytes()
            ), path
    assert (
        sim.summary["final_state_hash"]
        == __import__("json").loads((tmp_path / "cli" / "summary.json").read_text())[
            "final_state_hash"
        ]
    )


def test_mistakes_are_named(small_scenario):
    sim = agora.Simulation.from_file(small_scenario, until=5)
    with pytest.raises(KeyError, match="no population 'nobody'; populations are"):
        sim.population("nobody")
    with pytest.raises(ValueError, match="outside this simulation's ticks"):
        sim.run(6)
    with pytest.raises(ValueError, match="replica: 7"):
        sim.balances(replica=7)
    sim.close()
    with pytest.raises(RuntimeError, match="closed"):
        sim.step()
    with pytest.raises(agora.ScenarioError, match="world.ticks"):
        agora.Simulation.from_dict({"world": {"ticks": -1}})


def test_the_notebook_example_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "notebook_quickstart.py"), run_name="__main__")
    assert "replicas agree: True" in capsys.readouterr().out
