"""Damaged run directories and CLI edges: one line and exit 1 or 2, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.record.recording import record

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.runtime.conftest import SMALL

    folder = tmp_path_factory.mktemp("honest")
    (folder / "s.toml").write_text(SMALL)
    record(folder / "s.toml", folder / "run")
    record(folder / "s.toml", folder / "run" / "baseline", baseline=True)
    return folder / "run"


def _summary(run: Path, value: object) -> None:
    (run / "summary.json").write_text(json.dumps(value))


def _edit_summary(run: Path, **changes: object) -> None:
    summary = json.loads((run / "summary.json").read_text())
    summary.update(changes)
    _summary(run, summary)


DAMAGE = {
    "empty metrics": lambda r: (r / "metrics.arrows").write_bytes(b""),
    "truncated metrics": lambda r: (r / "metrics.arrows").write_bytes(
        (r / "metrics.arrows").read_bytes()[:300]
    ),
    "missing scenario": lambda r: (r / "scenario.toml").unlink(),
    "summary is a list": lambda r: _summary(r, []),
    "files is a list": lambda r: _edit_summary(r, files=["events.arrows"]),
    "seed is text": lambda r: _edit_summary(r, seed="abc"),
    "null hashes": lambda r: _edit_summary(r, final_state_hash=None, checkpoints=None),
    "ticks is text": lambda r: _edit_summary(r, ticks="many"),
    "deleted log": lambda r: (r / "events.arrows").unlink(),
    "deleted deltas": lambda r: (r / "state" / "deltas.arrows").unlink(),
    "bad baseline summary": lambda r: (r / "baseline" / "summary.json").write_text("[1, 2"),
    "baseline summary is a list": lambda r: (r / "baseline" / "summary.json").write_text("[]"),
    "run.json is text": lambda r: (r / "run.json").write_text("hello"),
}

COMMANDS = {
    "analyze": lambda r: ["analyze", str(r)],
    "analyze json": lambda r: ["analyze", str(r), "--format", "json"],
    "query": lambda r: ["query", str(r), "select count(*) from events"],
    "query metrics": lambda r: ["query", str(r), "select max(tick) from metrics"],
    "state at": lambda r: ["replay", str(r), "--at", "15"],
    "verify": lambda r: ["replay", str(r), "--verify", "-q"],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_damaged_runs_get_one_line_never_a_traceback(honest, tmp_path, damage, command):
    run = tmp_path / "run"
    shutil.copytree(honest, run)
    DAMAGE[damage](run)
    done = RUNNER.invoke(app, COMMANDS[command](run))
    assert done.exception is None or isinstance(done.exception, SystemExit), (
        f"{command} on {damage}: {type(done.exception).__name__}: {done.exception}"
    )
    assert "Traceback" not in done.output
    if done.exit_code != 0:
        assert done.exit_code in (1, 2), done.output
        errors = [line for line in done.output.splitlines() if line.startswith("error:")]
        assert len(errors) <= 3, done.output
    if command == "verify":
        assert done.exit_code != 0, f"verify passed a run with {damage}"


def test_overwrite_replaces_only_an_empty_folder_or_a_run(honest, tmp_path):
    scenario = honest.parent / "s.toml"
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    done = RUNNER.invoke(app, ["run", str(scenario), "--out", str(precious), "--overwrite", "-q"])
    assert done.exit_code == 2 and "not an Agora run directory" in done.output
    assert (precious / "thesis.tex").read_text() == "years of work"
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(scenario, here / "s.toml")
    done = RUNNER.invoke(
        app, ["run", str(here / "s.toml"), "--out", str(here), "--overwrite", "-q"]
    )
    assert done.exit_code == 2 and (here / "s.toml").exists()
    run = tmp_path / "old-run"
    shutil.copytree(honest, run)
    done = RUNNER.invoke(app, ["run", str(scenario), "--out", str(run), "--overwrite", "-q"])
    assert done.exit_code == 0, done.output


def test_cli_edges_get_clear_errors(honest, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = RUNNER.invoke(app, ["analyze", str(honest), "--report", str(folder)])
    assert done.exit_code == 2 and "--report" in done.output, done.output
    done = RUNNER.invoke(
        app, ["analyze", str(honest), "--report", str(tmp_path / "r.html" / "x.html")]
    )
    assert done.exit_code == 0 or (done.exit_code == 2 and "Traceback" not in done.output)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        done = RUNNER.invoke(
            app, ["replay", str(honest), "--at", "5", "--out", str(locked / "sub" / "s.csv")]
        )
        if os.geteuid() != 0:  # root may write anywhere
            assert done.exit_code == 2 and "--out" in done.output, done.output
        assert done.exception is None or isinstance(done.exception, SystemExit)
    finally:
        os.chmod(locked, 0o700)
    done = RUNNER.invoke(app, ["replay", str(honest), "--at", "5", "--out", str(folder)])
    assert done.exit_code == 2 and "--out" in done.output
    for bad in ("inf", "nan", "-1", "0"):
        done = RUNNER.invoke(
            app,
            [
                "run",
                str(honest.parent / "s.toml"),
                "--out",
                str(tmp_path / "rt"),
                "--realtime",
                bad,
            ],
        )
        assert done.exit_code == 2 and "--realtime" in done.output, (bad, done.output)
        assert not (tmp_path / "rt").exists()
