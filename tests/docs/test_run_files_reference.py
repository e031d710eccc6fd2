"""docs/reference/run-files.md documents every column of every table a run records or Agora builds.

Two runs are recorded: one with a population of every built-in role, coordination and every kind
of fault, and the shipped governance scenario. Every column of their events, metrics and state
tables, every event kind, every key of their summaries and every column of the tables built from
them must appear in the reference, in backticks. Event kinds and metrics columns named literally
in the code are checked too, so a kind or a counter no test run makes is not missed. Money columns
must carry their unit: recorded files hold exact ``_micro`` integers, tables for people add
``_credits`` beside them.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest

import agora
from runtime.analysis.runs import OUTCOMES, outcomes
from runtime.record.recorder import read_stream
from runtime.record.recording import record
from runtime.record.run_data import open_run
from runtime.scale.sweep import summary_row

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference" / "run-files.md"
GOVERNANCE = ROOT / "scenarios" / "governance.toml"

EVERY_ROLE = """
[world]
name = "every-role"
seed = 3
ticks = 30
checkpoint_every = 10

[network]
regions = ["a", "b", "c"]
links = [{ a = "a", b = "b", latency = 0.1 }, { a = "b", b = "c", latency = 0.2 }]

[bus]
loss = 0.02

[coordination]
coupling = 6.0
sync_threshold = 0.5
tension_every = 5

[[population]]
name = "req"
role = "requester"
count = 80
initial_credits = 40
post_rate = 0.4
forecasts_from = "fc"

[[population]]
name = "work"
role = "worker"
count = 30
stake = 5
cheat_fraction = 0.2

[[population]]
name = "neg"
role = "negotiator"
count = 6
initial_credits = 100

[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"

[[population]]
name = "heal"
role = "healer"
count = 1
watches = "work"

[[population]]
name = "fc"
role = "world_model"
count = 1
horizon = 2

[[population]]
name = "ref"
role = "refactor"
count = 2
initial_credits = 300
modules = 10

[[fault]]
at = 2
kind = "degrade"
population = "work"
fraction = 0.3
duration = 8

[[fault]]
at = 4
kind = "crash"
population = "work"
fraction = 0.2
duration = 3

[[fault]]
at = 6
kind = "partition"
groups = [["a"], ["b", "c"]]
duration = 3

[[fault]]
at = 8
kind = "loss_burst"
loss = 0.3
duration = 2

[[fault]]
at = 5
kind = "byzantine"
count = 8
"""

# Concrete names -> the placeholder the reference writes for them.
PLACEHOLDERS = [
    (re.compile(r"price_\d+_micro"), "price_<k>_micro"),
    (re.compile(r"r_region/.+"), "r_region/<region>"),
    (re.compile(r"(persistence_mape|mape|forecasts)_\d+"), r"\1_<h>"),
]


@pytest.fixture(scope="module")
def reference() -> str:
    return REFERENCE.read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("runs")
    (folder / "every.toml").write_text(EVERY_ROLE)
    record(folder / "every.toml", folder / "every")
    record(GOVERNANCE, folder / "governance")
    return [folder / "every", folder / "governance"]


def documented(name: str, reference: str, populations: set[str] = frozenset()) -> bool:
    """Whether the reference names ``name``, in backticks, or the placeholder form of it."""
    for pattern, placeholder in PLACEHOLDERS:
        name = pattern.sub(placeholder, name)
    head, slash, tail = name.partition("/")
    if slash and head in populations:
        name = f"<population>/{tail}"
    return f"`{name}`" in reference


def _populations(run: Path) -> set[str]:
    return {g.name for g in open_run(run).groups}


def _tables(run: Path) -> dict[str, pa.Table]:
    tables = {
        "events.arrows": read_stream(run / "events.arrows")[0],
        "metrics.arrows": read_stream(run / "metrics.arrows")[0],
        "state/deltas.arrows": read_stream(run / "state" / "deltas.arrows")[0],
    }
    for path in sorted((run / "state").glob("full_*.arrow")):
        with pa.memory_map(str(path)) as source:
            tables[f"state/{path.name}"] = pa.ipc.open_file(source).read_all()
    return tables


def test_the_check_can_fail(reference):
    assert not documented("no_such_column", reference)
    assert not documented("balance", reference) and not documented("volume", reference)
    assert documented("price_3_micro", reference) and documented("mape_7", reference)
    assert documented("neg/contracts", reference, {"neg"})
    assert not documented("neg/contracts", reference)


def test_every_column_of_every_recorded_table_is_documented(runs, reference):
    for run in runs:
        pops = _populations(run)
        for name, table in _tables(run).items():
            missing = [c for c in table.column_names if not documented(c, reference, pops)]
            assert not missing, f"{run.name}/{name}: {missing} are not in {REFERENCE.name}"


def test_recorded_money_is_exact_and_names_its_unit(runs):
    old = {
        "supply_held",
        "supply_issued",
        "mean_price",
        "volume",
        "fees",
        "minted",
        "amount",
        "balance",
        "stake",
        "price_0",
    }
    for run in runs:
        for name, table in _tables(run).items():
            assert not old & set(table.column_names), name
            assert not [c for c in table.column_names if c.endswith("_credits")], name
            for column in table.column_names:
                if column.endswith("_micro") and column != "mean_price_micro":
                    assert table.schema.field(column).type == pa.int64(), (name, column)
    metrics = _tables(runs[0])["metrics.arrows"]
    assert {
        "supply_held_micro",
        "volume_micro",
        "fees_micro",
        "minted_micro",
        "price_0_micro",
    } <= set(metrics.column_names)
    assert metrics.schema.field("mean_price_micro").type == pa.float64()
    deltas = _tables(runs[0])["state/deltas.arrows"]
    assert deltas.column_names == [
        "tick",
        "account",
        "balance_micro",
        "stake_micro",
        "reputation",
        "alive",
    ]


def test_every_event_kind_recorded_is_documented(runs, reference):
    for run in runs:
        kinds = set(read_stream(run / "events.arrows")[0].column("kind").to_pylist())
        missing = sorted(k for k in kinds if not documented(k, reference))
        assert not missing, f"{run.name}: event kinds {missing} are not in {REFERENCE.name}"


def _on_the_world(func: ast.Attribute) -> bool:
    """``world.x``, ``w.x``, ``self.x`` (in the world) or ``self.world.x``."""
    owner = func.value
    return (isinstance(owner, ast.Name) and owner.id in ("world", "w", "self")) or (
        isinstance(owner, ast.Attribute) and owner.attr == "world"
    )


def _literal_calls(methods: set[str]) -> set[str]:
    """The first arguments of the world's ``methods`` written as string literals in the runtime and
    the built-in roles (an f-string's fields become ``{}``)."""
    names = set()
    sources = [*sorted((ROOT / "runtime").rglob("*.py")), *sorted((ROOT / "agents").glob("*.py"))]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in methods
                and _on_the_world(node.func)
                and node.args
            ):
                continue
            arg = node.args[0]
            options = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
            for option in options:
                if isinstance(option, ast.Constant) and isinstance(option.value, str):
                    names.add(option.value)
                elif isinstance(option, ast.JoinedStr):
                    parts = [
                        v.value if isinstance(v, ast.Constant) else "{}" for v in option.values
                    ]
                    names.add("".join(parts))
    return names


def test_every_event_kind_and_metrics_column_in_the_code_is_documented(reference):
    kinds = _literal_calls({"emit", "emit_many", "_emit"})  # _emit: the organisation's
    assert {"task_done", "minted", "member_expelled", "proposal_{}"} <= kinds  # the scan finds them
    kinds.discard("proposal_{}")  # proposal_queued, proposal_rejected, proposal_blocked
    for event in ("queued", "rejected", "blocked"):
        assert documented(f"proposal_{event}", reference)
    assert not sorted(k for k in kinds if not documented(k, reference))
    columns = {
        name.replace("{}/", "<population>/", 1).replace("r_region/{}", "r_region/<region>")
        for name in _literal_calls({"count", "gauge"})
    }
    assert {"minted_micro", "fees_micro", "<population>/contracts", "r_members"} <= columns
    assert not sorted(c for c in columns if not documented(c, reference))


def test_summary_and_run_json_keys_are_documented(runs, reference):
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        manifest = json.loads((run / "run.json").read_text())
        assert not [k for k in manifest if not documented(k, reference)]
        assert not [k for k in summary if not documented(k, reference)]
        assert not [k for k in summary["totals"] if f"`totals.{k}`" not in reference]
        for health in summary["totals"]["health"]:
            assert f"`{health}`" in reference, health
        for name, metrics in summary["totals"]["roles"].items():
            missing = [m for m in metrics if not documented(m, reference)]
            assert not missing, f"{run.name}: role metrics of {name}: {missing}"


def test_the_sweep_table_is_documented(runs, reference):
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        row = {**summary_row(summary), **outcomes(open_run(run))}
        assert set(OUTCOMES) <= set(row)
        for column in row:
            prefix, dot, rest = column.partition(".")
            if not dot:
                assert documented(column, reference), column
            elif prefix == "roles":
                assert documented("roles.<population>.<metric>", reference)
                assert documented(rest.partition(".")[2], reference), column
            elif prefix == "wealth_credits":
                assert documented("wealth_credits.<population>", reference), column
            else:  # messages.<count>, params.<name>, health.<name>
                assert f"`{prefix}." in reference and documented(rest, reference), column


def test_the_tables_built_for_people_are_documented_and_carry_both_units(runs, reference):
    run = open_run(runs[0])
    table, facts = run.state_at(12)
    assert not [c for c in table.column_names if not documented(c, reference)]
    assert not [k for k in facts if not documented(k, reference)]
    micro = np.asarray(table.column("balance_micro"))
    assert table.schema.field("balance_micro").type == pa.int64()
    assert (np.asarray(table.column("balance_credits")) == micro / 1e6).all()
    sim = agora.Simulation.from_toml(EVERY_ROLE, until=5)
    sim.run()
    frames = [sim.balances(), sim.metrics(), *(sim.population(g.name) for g in run.groups)]
    populations = {g.name for g in run.groups}
    for frame in frames:
        for column in frame.columns:
            twin = column.removesuffix("_credits") + "_micro"
            if column.endswith("_credits") and twin in frame.columns:
                continue  # the credits twin of a documented _micro column
            assert documented(column, reference, populations), column
    negotiators = sim.population("neg").columns
    assert "profit_credits" in negotiators and "profit" not in negotiators
    sim.close()


def test_the_reference_sql_runs(runs, reference):
    sql = re.search(r"```sql\n(.*?)```", reference, re.S).group(1)
    result = open_run(runs[0]).query(sql)
    assert set(result.column("kind").to_pylist()) == {"task_done", "minted", "slashed"}
