"""A role written in the user's own folder: used from a scenario, recorded, verified, resumed,
listed; mistakes in it named; a failure in its code reported with the user's traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.record.checkpoints import SNAPSHOT_DIR, snapshot_name
from runtime.record.recorder import read_stream

RUNNER = CliRunner()

ROLE = '''
"""Savers: each tick a share of them gives a little of what it holds to another saver."""

from typing import ClassVar

import numpy as np
from pydantic import Field

from economy.ops import OpKind
from runtime.kernel.population import Population, RoleParams


class SaverParams(RoleParams):
    """A saver population's own keys."""

    give_rate: float = Field(0.3, ge=0, le=1, description="Share of savers that give each tick.")
    gift: int = Field(2, ge=1, le=1000, description="Credits given.")


class Saver(Population):
    """Savers that give to each other through the ledger."""

    role: ClassVar[str] = "saver"
    Params: ClassVar[type[RoleParams]] = SaverParams

    def __init__(self, cfg, ids, n_regions):
        super().__init__(cfg, ids, n_regions)
        self.given = np.zeros(self.n, dtype=np.int64)

    def setup(self, world):
        savings = self.cfg.initial_credits * world.MICRO
        world.mint(self.ids, np.full(self.n, savings, dtype=np.int64), "savings")

    def step(self, world, tick):
        rng = world.streams(f"population/{self.name}")
        givers = np.flatnonzero(rng.random(self.n) < self.params.give_rate)
        if FAIL_AT is not None and tick == FAIL_AT:
            raise ZeroDivisionError("a bug in the user's role")
        if givers.size == 0:
            return
        takers = rng.integers(0, self.n, size=givers.size)
        amounts = np.full(givers.size, self.params.gift * world.MICRO, dtype=np.int64)
        ok = world.execute_by_home(OpKind.TRANSFER, self.ids[givers], self.ids[takers], amounts)
        self.given[givers[ok]] += amounts[ok]
        world.gauge(f"{self.name}/gifts", float(ok.sum()))

    def state_arrays(self):
        return {"alive": self.alive, "given": self.given}


FAIL_AT = None
'''

SCENARIO = """
[world]
name = "savers"
seed = 4
ticks = 40
checkpoint_every = 10

[network]
regions = ["a", "b"]

[[population]]
name = "req"
role = "requester"
count = 30
initial_credits = 20

[[population]]
name = "work"
role = "worker"
count = 10

[[population]]
name = "savers"
role = "my_roles:Saver"
count = 25
initial_credits = 50
give_rate = 0.4
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "my_roles.py").write_text(ROLE)
    (tmp_path / "s.toml").write_text(SCENARIO)
    return tmp_path


def _agora(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_a_users_role_runs_records_replays_anywhere_and_resumes(folder, tmp_path_factory):
    done = _agora("run", str(folder / "s.toml"), "--out", str(folder / "run"), "-q", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (
        folder / "run" / "my_roles.py"
    ).read_text() == ROLE  # the role's source travels with the run
    table, _ = read_stream(folder / "run" / "metrics.arrows")
    assert (
        "savers/gifts" in table.column_names and sum(table.column("savers/gifts").to_pylist()) > 0
    )
    # Moved elsewhere, without the original folder, the run still replays bit for bit.
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "run"
    shutil.copytree(folder / "run", elsewhere)
    shutil.rmtree(folder)
    done = _agora("replay", str(elsewhere), "--verify", "-q", cwd=elsewhere.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical" in done.stdout
    # A run killed after its checkpoint of tick 29 resumes to the same bytes.
    killed = elsewhere.parent / "killed"
    shutil.copytree(elsewhere, killed)
    (killed / "summary.json").unlink()
    (killed / SNAPSHOT_DIR / snapshot_name(39)).unlink()
    done = _agora("run", "--resume", str(killed), "-q", cwd=elsewhere.parent)
    assert done.returncode == 0, done.stderr
    for path in sorted(elsewhere.rglob("*")):
        if path.is_file() and path.name != "summary.json":
            assert path.read_bytes() == (killed / path.relative_to(elsewhere)).read_bytes(), path


def test_roles_and_schema_show_the_users_role(folder, monkeypatch):
    from runtime.cli.output import out

    monkeypatch.setattr(out, "size", (1000, 50))  # wide enough for the role module's whole path
    done = RUNNER.invoke(app, ["roles", str(folder / "s.toml")])
    assert done.exit_code == 0, done.output
    line = next(ln for ln in done.output.splitlines() if "my_roles:Saver" in ln)
    assert "my_roles.py" in line and "give_rate=0.3" in line and "gift=2" in line
    done = RUNNER.invoke(app, ["schema", str(folder / "s.toml")])
    doc = json.loads(done.output)
    keys = doc["x-agora-roles"]["my_roles:Saver"]["properties"]
    assert set(keys) == {"give_rate", "gift"} and keys["gift"]["maximum"] == 1000


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("give_rate = 0.4", "give_rat = 0.4"),
            "population[2].give_rat: not a key of population 'savers' (role 'my_roles:Saver'); "
            "did you mean 'give_rate'?",
        ),
        (
            ("give_rate = 0.4", "give_rate = 7.0"),
            "population[2].give_rate: Input should be less than or equal to 1",
        ),
        (
            ("give_rate = 0.4", "give_rate = 0.4\npost_rate = 0.3"),
            "population[2].post_rate: not a key of population 'savers'",
        ),
        (("my_roles:Saver", "my_roles:Spender"), "module 'my_roles' has no 'Spender'"),
        (
            ("my_roles:Saver", "no_such_module:Saver"),
            "module 'no_such_module' cannot be imported: ModuleNotFoundError",
        ),
        (
            ('role = "requester"', 'role = "requestor"'),
            "role 'requestor' is not registered; did you mean 'requester'?",
        ),
        (("initial_credit", "initial_credit"), None),
    ],
)
def test_mistakes_in_roles_and_their_keys_exit_2_naming_them(folder, edit, message):
    if message is None:  # a typo of a common key gets the near match too
        text = SCENARIO.replace("initial_credits = 20", "initial_credit = 20")
        message = (
            "population[0].initial_credit: not a key of population 'req' (role 'requester'); "
            "did you mean 'initial_credits'?"
        )
    else:
        text = SCENARIO.replace(*edit)
    (folder / "s.toml").write_text(text)
    done = RUNNER.invoke(app, ["validate", str(folder / "s.toml")])
    assert done.exit_code == 2 and message in done.output, done.output
    assert "Traceback" not in done.output


def test_a_module_that_fails_to_import_is_named_with_its_error(folder):
    (folder / "my_roles.py").write_text(
        "raise ImportError('needs a package that is not installed')\n"
    )
    done = RUNNER.invoke(app, ["validate", str(folder / "s.toml")])
    assert done.exit_code == 2
    assert (
        "module 'my_roles' cannot be imported: ImportError: needs a package that is not installed"
        in done.output
    )


def test_a_failure_in_the_users_code_stops_the_run_with_its_traceback(folder):
    (folder / "my_roles.py").write_text(ROLE.replace("FAIL_AT = None\n", "FAIL_AT = 17\n"))
    done = _agora("run", str(folder / "s.toml"), "--out", str(folder / "run"), "-q", cwd=folder)
    assert done.returncode == 1
    assert (
        "Traceback" in done.stderr
        and "my_roles.py" in done.stderr
        and "ZeroDivisionError" in done.stderr
    )
    assert "population 'savers' (role 'my_roles:Saver') failed at tick 17" in done.stderr
    events, _ = read_stream(folder / "run" / "events.arrows")
    assert max(events.column("tick").to_pylist()) >= 16  # the log is readable up to that tick
    assert not (folder / "run" / "summary.json").exists()


def test_a_role_spread_over_modules_of_its_folder_travels_with_the_run(folder, tmp_path_factory):
    # savers/ is a package: the role imports a sibling module relatively and a helper at the top
    # level
    package = folder / "savers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "amounts.py").write_text("def gift(params):\n    return params.gift\n")
    (package / "role.py").write_text(
        ROLE.replace(
            "from economy.ops import OpKind",
            "from economy.ops import OpKind\nfrom .amounts import gift\nimport helpers",
        ).replace("self.params.gift * world.MICRO", "gift(self.params) * helpers.MICRO")
    )
    (folder / "helpers.py").write_text("MICRO = 1_000_000\n")
    (folder / "unrelated.py").write_text("raise SystemExit('never imported')\n")
    (folder / "my_roles.py").unlink()
    (folder / "s.toml").write_text(SCENARIO.replace("my_roles:Saver", "savers.role:Saver"))
    done = _agora("run", str(folder / "s.toml"), "--out", str(folder / "run"), "-q", cwd=folder)
    assert done.returncode == 0, done.stderr
    copied = sorted(
        p.relative_to(folder / "run").as_posix() for p in (folder / "run").rglob("*.py")
    )
    assert copied == ["helpers.py", "savers/__init__.py", "savers/amounts.py", "savers/role.py"]
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "run"
    shutil.copytree(folder / "run", elsewhere)
    shutil.rmtree(folder)
    done = _agora("replay", str(elsewhere), "--verify", "-q", cwd=elsewhere.parent)
    assert done.returncode == 0, done.stdout + done.stderr
