"""Tampering with a recorded run: verify names every forged, damaged, missing or extra artifact.

Each test copies one honest run, makes one attack on the copy and checks that ``agora replay
--verify`` exits 1 naming what was altered (and never trusts the run's own list of files), or,
for a signed run, that only the key's holder passes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.record.recorder import EVENT_SCHEMA, read_stream
from runtime.record.recording import _canonical, record
from runtime.record.replay import verify

RUNNER = CliRunner()

SCENARIO = """
[world]
name = "tamper"
seed = 9
ticks = 30
checkpoint_every = 10

[network]
regions = ["a", "b"]

[[population]]
name = "req"
role = "requester"
count = 40
initial_credits = 20

[[population]]
name = "work"
role = "worker"
count = 15
stake = 2

[[population]]
name = "wm"
role = "world_model"
count = 1
horizon = 2

[[population]]
name = "crit"
role = "critic"
count = 1
watches = "work"
"""


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("honest")
    (folder / "s.toml").write_text(SCENARIO)
    record(folder / "s.toml", folder / "run")
    return folder / "run"


@pytest.fixture
def run(honest: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(honest, target)
    return target


def _resign(run: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit summary.json and recompute its self-hash, as a forger would."""
    summary = json.loads((run / "summary.json").read_text())
    edit(summary)
    summary["summary_sha256"] = hashlib.sha256(_canonical(summary)).hexdigest()
    (run / "summary.json").write_text(json.dumps(summary))


def _tampered(run: Path, *needles: str) -> None:
    verdict = verify(run)
    assert verdict.status in ("tampered", "diverged") and verdict.exit_code == 1, verdict.lines
    text = "\n".join(verdict.lines)
    for needle in needles:
        assert needle in text, text


def test_the_honest_run_is_identical(honest):
    verdict = verify(honest)
    assert verdict.status == "identical", verdict.lines
    assert "not who made it" in verdict.lines[-1]


def test_a_forged_log_and_summary_with_a_recomputed_self_hash_are_caught(run):
    # The attack: more credits minted in the log, the log dropped from the summary's file list, the
    # final hash and a role metric edited, and the summary's own hash recomputed.
    table, _ = read_stream(run / "events.arrows")
    amounts = table.column("amount_micro").to_numpy().copy()
    kinds = np.asarray(table.column("kind").to_pylist())
    amounts[np.flatnonzero(kinds == "minted")[0]] += 10**12
    column = table.schema.get_field_index("amount_micro")
    table = table.set_column(column, "amount_micro", pa.array(amounts))
    with (
        pa.OSFile(str(run / "events.arrows"), "wb") as sink,
        pa.ipc.new_stream(sink, EVENT_SCHEMA) as writer,
    ):
        writer.write_table(table)

    def edit(s: dict) -> None:
        del s["files"]["events.arrows"]
        s["final_state_hash"] = "deadbeef" * 8
        s["totals"]["roles"]["crit"]["catch_rate"] = 1.0

    _resign(run, edit)
    _tampered(
        run,
        "events.arrows: different bytes",
        "summary.json: final_state_hash",
        "summary.json: totals.roles.crit.catch_rate",
        "summary.json: files.events.arrows",
    )


def test_a_truncated_metrics_table_is_caught(run):
    data = (run / "metrics.arrows").read_bytes()
    (run / "metrics.arrows").write_bytes(data[: len(data) // 2])
    _resign(run, lambda s: s["files"].pop("metrics.arrows"))
    _tampered(run, "metrics.arrows: different bytes")


def test_a_deleted_state_folder_and_edited_totals_are_caught(run):
    shutil.rmtree(run / "state")
    _resign(run, lambda s: s["totals"].update(supply_held_micro=1))
    _tampered(run, "state/deltas.arrows: missing", "summary.json: totals.supply_held_micro")


@pytest.mark.parametrize("attack", ["flip", "nan", "delete"])
def test_core_files_are_compared(run, attack):
    core = run / "cores" / "wm.npz"
    if attack == "flip":
        data = bytearray(core.read_bytes())
        data[-40] ^= 0x01
        core.write_bytes(bytes(data))
    elif attack == "nan":
        arrays = dict(np.load(core))
        arrays["m0_w1"] = np.full_like(arrays["m0_w1"], np.nan)
        np.savez(core, **arrays)
    else:
        shutil.rmtree(run / "cores")
    _tampered(run, "cores/wm.npz: " + ("missing" if attack == "delete" else "different bytes"))


def test_a_junk_snapshot_is_caught_and_replay_at_says_so(run):
    (run / "state" / "full_000019.arrow").write_bytes(b"junk" * 100)
    _tampered(run, "state/full_000019.arrow: different bytes")
    done = RUNNER.invoke(app, ["replay", str(run), "--at", "25"])
    assert done.exit_code in (1, 2) and "Traceback" not in done.output, done.output


def test_extra_files_and_links_are_reported_by_name(run, tmp_path):
    (run / "notes.txt").write_text("not the run's")
    (tmp_path / "elsewhere").write_bytes((run / "metrics.arrows").read_bytes())
    (run / "metrics.arrows").unlink()
    (run / "metrics.arrows").symlink_to(tmp_path / "elsewhere")
    _tampered(run, "notes.txt: extra", "metrics.arrows: a symbolic link")


def test_a_checkpoint_file_is_compared(run):
    path = run / "checkpoints" / "world_00000009.npz"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    _tampered(run, "checkpoints/world_00000009.npz: different bytes")


def test_signed_runs_prove_who_made_them_and_keep_the_key_out(tmp_path):
    (tmp_path / "s.toml").write_text(SCENARIO)
    key = tmp_path / "secret.key"
    done = RUNNER.invoke(
        app,
        [
            "run",
            str(tmp_path / "s.toml"),
            "--out",
            str(tmp_path / "signed"),
            "-q",
            "--sign-key",
            str(key),
        ],
    )
    assert done.exit_code == 0, done.output
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    secret = key.read_bytes()
    for path in (tmp_path / "signed").rglob("*"):
        assert not path.is_file() or secret not in path.read_bytes(), path
    done = RUNNER.invoke(app, ["replay", str(tmp_path / "signed"), "--verify", "--key", str(key)])
    assert done.exit_code == 0 and "made by a holder of that key" in done.output, done.output
    other = tmp_path / "other.key"
    other.write_bytes(b"x" * 32)
    done = RUNNER.invoke(app, ["replay", str(tmp_path / "signed"), "--verify", "--key", str(other)])
    assert done.exit_code == 1 and "does not verify with this key" in done.output, done.output
    done = RUNNER.invoke(app, ["replay", str(tmp_path / "signed"), "--verify"])
    assert done.exit_code == 2 and "pass --key FILE" in done.output, done.output
    # A forger without the key cannot re-sign an edited summary.
    _resign(tmp_path / "signed", lambda s: s["totals"].update(tasks_posted=1))
    done = RUNNER.invoke(app, ["replay", str(tmp_path / "signed"), "--verify", "--key", str(key)])
    assert done.exit_code == 1 and "does not verify with this key" in done.output
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    done = RUNNER.invoke(
        app,
        ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "x"), "--sign-key", str(short)],
    )
    assert done.exit_code == 2 and "at least 32 bytes" in done.output


def test_a_signed_runs_ledger_keys_are_not_the_seeds(tmp_path):
    from runtime.kernel.scenario import parse
    from runtime.kernel.world import World

    plain = World(parse(SCENARIO))
    signed = World(parse(SCENARIO), key_secret=b"k" * 32)
    op = plain.ledgers[0].mint(0, 5)
    assert signed.ledgers[1].keyring.verify(op) is False
