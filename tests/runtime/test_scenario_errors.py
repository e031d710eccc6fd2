"""Broken scenario files: each gives exit 2 and one line per problem, naming file and key, no
traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.kernel.scenario import parse, schema

from .conftest import SMALL

POP = '[[population]]\nname = "w"\nrole = "worker"\n'
BROKEN = {
    "bad_toml": ("[world\nseed = 1", "not valid TOML"),
    "empty_file": ("", "empty"),
    "unknown_key": ("[world]\nsead = 3\n", "world.sead: unknown key; did you mean 'seed'?"),
    "unknown_section": ("[wrld]\nseed = 3\n", "wrld: unknown key; did you mean 'world'?"),
    "unknown_fault_key": (
        '[[fault]]\nat = 0\nkind = "heal"\nduraton = 3\n',
        "fault[0].duraton: unknown key; did you mean 'duration'?",
    ),
    "unknown_key_far_from_any": ("[bus]\nzzz = 3\n", "bus.zzz: unknown key (check the spelling"),
    "wrong_type": ('[world]\nticks = "many"\n', "world.ticks: Input should be a valid integer"),
    "negative_count": (
        POP + "count = -5\n",
        "population[0].count: Input should be greater than or equal to 0",
    ),
    "probability_out_of_range": (
        "[bus]\nloss = 1.5\n",
        "bus.loss: Input should be less than or equal to 1",
    ),
    "missing_referenced_file": (
        '[network]\ngraph_file = "nowhere.graphml"\n',
        "network.graph_file: file not found",
    ),
    "unknown_role": (
        '[[population]]\nname = "x"\nrole = "banker"\ncount = 1\n',
        "population[0].role",
    ),
    "fault_unknown_population": (
        POP + 'count = 2\n[[fault]]\nat = 1\nkind = "crash"\npopulation = "ghosts"\n',
        "fault[0].population: unknown population 'ghosts'",
    ),
    "link_unknown_region": (
        '[network]\nregions = ["a"]\nlinks = [{a = "a", b = "zz"}]\n',
        "network.links[0]: unknown region 'zz'",
    ),
    "fault_after_end": (
        '[world]\nticks = 10\n[[fault]]\nat = 10\nkind = "heal"\n',
        "fault[0].at: tick 10 is past",
    ),
    "missing_required": (
        '[[population]]\nrole = "worker"\ncount = 1\n',
        "population[0].name: Field required",
    ),
    "partition_needs_groups": ('[[fault]]\nat = 0\nkind = "partition"\n', "needs 'groups'"),
    "proposal_without_governance": (
        "[[proposal]]\nat = 1\nchanges = { fee_rate = 0.02 }\n",
        "proposal: needs a [governance] table",
    ),
    "governance_unknown_members": (
        POP + 'count = 2\n[governance]\nmembers = "ghosts"\n',
        "governance.members: unknown population 'ghosts'",
    ),
    "proposal_unknown_parameter": (
        POP + 'count = 2\n[governance]\nmembers = "w"\n'
        "[[proposal]]\nat = 1\nchanges = { fee = 0.02 }\n",
        "proposal[0].changes.fee: not a governed parameter",
    ),
    "proposer_out_of_range": (
        POP
        + 'count = 2\n[governance]\nmembers = "w"\n[[proposal]]\nat = 1\nproposer = 5\nchanges = '
        "{ fee_rate = 0.02 }\n",
        "proposal[0].proposer: member 5 out of range",
    ),
    "unbonding_ticks_is_not_a_parameter": (
        "[economy]\nunbonding_ticks = 3\n",
        "unbonding_ticks is not a parameter",
    ),
    "constitution_unknown_parameter": (
        POP
        + 'count = 2\n[governance]\nmembers = "w"\n[governance.constitution]\nfees = { max = 0.1 '
        "}\n",
        "governance.constitution.fees: not a governed quantity",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_scenario_exits_2_with_a_one_line_reason(case, tmp_path):
    text, expected = BROKEN[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert any(expected in ln and str(path) in ln for ln in lines), lines
    assert "Traceback" not in result.output
    assert len(lines) <= 3


def test_missing_scenario_file_and_run_of_broken_file_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "absent.toml")])
    assert r.exit_code == 2 and "no such scenario file" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[world]\nticks = 0\n")
    r = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "world.ticks" in r.output
    assert not (tmp_path / "run").exists(), (
        "nothing is written for a scenario that does not validate"
    )


def test_cli_argument_mistakes_exit_2(tmp_path, small_scenario):
    r = CliRunner().invoke(app, ["run", str(small_scenario), "--seed", "-1"])
    assert r.exit_code == 2
    r = CliRunner().invoke(
        app, ["run", str(small_scenario), "--device", "tpu", "--out", str(tmp_path / "x")]
    )
    assert r.exit_code == 2 and "--device" in r.output
    r = CliRunner().invoke(app, ["replay", str(tmp_path / "nothing"), "--verify"])
    assert r.exit_code == 2 and "no such run directory" in r.output


def test_a_real_process_prints_no_traceback_for_a_bad_file(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[world]\nsteps = 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: {path}: world.steps: unknown key (check the spelling; `agora schema` lists "
        "every key)"
    )


def test_every_problem_is_listed(tmp_path):
    path = tmp_path / "many.toml"
    path.write_text("[world]\nseed = -1\nticks = 0\n[bus]\nloss = 2.0\n")
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 2
    assert {"world.seed", "world.ticks", "bus.loss"} <= {
        ln.split(": ")[2] for ln in r.output.splitlines() if ln.startswith("error")
    }


def test_shipped_scenarios_validate_and_schema_describes_every_key():
    for path in sorted(Path("scenarios").glob("*.toml")):
        r = CliRunner().invoke(app, ["validate", str(path)])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["schema"])
    assert r.exit_code == 0
    sch = json.loads(r.output)
    roles = sch.pop("x-agora-roles")
    assert sch == json.loads(json.dumps(schema()))
    assert "world" in sch["properties"] and sch["additionalProperties"] is False
    assert {
        "requester",
        "worker",
        "healer",
        "critic",
        "world_model",
        "refactor",
        "negotiator",
    } <= set(roles)
    assert roles["worker"]["properties"]["stake"]["maximum"] == 10**9
    assert parse(SMALL).world.ticks == 40


def test_graph_file_is_loaded_with_networkx(tmp_path):
    import networkx as nx

    g = nx.Graph()
    g.add_edge("x", "y", latency=0.3)
    g.add_edge("y", "z", latency=0.2)
    nx.write_graphml(g, tmp_path / "net.graphml")
    path = tmp_path / "g.toml"
    path.write_text('[network]\ngraph_file = "net.graphml"\n[world]\nticks = 3\n')
    from runtime.kernel.scenario import load
    from runtime.kernel.world import World

    scenario, _ = load(path)
    w = World(scenario, base=tmp_path)
    assert w.network.names == ["x", "y", "z"]
    assert w.network.latency[0, 2] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            'kind = "treasury"\ntarget = 0\n',
            "proposal[0].credits: a treasury proposal needs credits > 0",
        ),
        ('kind = "admit"\ntarget = 9\n', "proposal[0].target: member 9 out of range"),
        (
            'kind = "expel"\ntarget = 0\nchanges = { fee_rate = 0.1 }\n',
            "proposal[0].changes: a params proposal needs changes, other kinds take none",
        ),
    ],
)
def test_bad_governance_proposals_exit_2(extra, expected, tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(POP + 'count = 2\n[governance]\nmembers = "w"\n[[proposal]]\nat = 1\n' + extra)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and expected in result.output, result.output


@pytest.mark.parametrize(
    "text, expected",
    [
        (POP + 'count = 2\ncore = "learned"\n', "population[0].core: role 'worker' has no core"),
        (
            '[[population]]\nname = "h"\nrole = "healer"\ncount = 1\nwatches = "nobody"\n',
            "population[0].watches: a healer watches a worker population",
        ),
        ('[[fault]]\nat = 0\nkind = "degrade"\n', "a degrade fault needs 'population'"),
        (
            POP + 'count = 2\n[[population]]\nname = "h"\nrole = "healer"\ncount = 1\nwatches = '
            '"w"\ncore = "magic"\n',
            "population[1].core",
        ),
    ],
)
def test_bad_role_settings_exit_2(text, expected, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and expected in result.output, result.output
