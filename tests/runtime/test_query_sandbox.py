"""`agora query` runs one read-only query in a sandbox: statements that write or reach out are
refused before anything runs, files outside the run cannot be read, links and special files in the
run are refused by name, and query output is printed as data, never as rich markup."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner, Result

from runtime.cli import app
from runtime.record.recording import RunDirError, record
from runtime.record.replay import open as open_run
from runtime.record.run_data import QueryRefused, regular_file, sandbox

from .conftest import SMALL

REPO = Path(__file__).resolve().parents[2]
MARKER = "only-outside-the-run-7f3a"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-tick marketplace run with its state table, recorded once for the module."""
    tmp = tmp_path_factory.mktemp("query")
    (tmp / "small.toml").write_text(SMALL)
    record(tmp / "small.toml", tmp / "run", until=3)
    return tmp / "run"


@pytest.fixture
def run(recorded: Path, tmp_path: Path) -> Path:
    """A private copy of the recorded run, free to damage."""
    return Path(shutil.copytree(recorded, tmp_path / "run"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the run holding one file whose contents must never come back."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.csv").write_text(f"token\n{MARKER}\n")
    return folder


def query(run_dir: Path, sql: str, *options: str) -> Result:
    """`agora query RUN SQL [OPTIONS]` in this process."""
    return CliRunner().invoke(app, ["query", str(run_dir), sql, *options])


def guarded_query(run_dir: Path, sql: str) -> subprocess.CompletedProcess[str]:
    """`agora query` in a child process under a wall-clock and an address-space ceiling, so a reader
    that blocks on a FIFO or reads /dev/zero without end fails the test instead of hanging it."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "query", str(run_dir), sql],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        preexec_fn=limit_memory,
    )


def refusal(exit_code: int, stdout: str, stderr: str) -> str:
    """The one line of a refusal; asserts exit 2, nothing on stdout, no traceback."""
    lines = stderr.splitlines()
    assert exit_code == 2, (exit_code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert stdout == "" and "Traceback" not in stderr
    return lines[0]


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_ordinary_queries_over_events_metrics_and_state_deltas_still_run(run: Path):
    data = open_run(run)
    events, metrics, deltas = data.events(), data.metrics(), data.state_deltas()
    assert events.num_rows > 0 and metrics.num_rows == 3 and deltas.num_rows > 0
    kinds = data.query("select kind, count(*) as n from events group by kind order by kind")
    expected = events.group_by("kind").aggregate([("kind", "count")]).sort_by("kind")
    assert kinds.column("kind").to_pylist() == expected.column("kind").to_pylist()
    assert kinds.column("n").to_pylist() == expected.column("kind_count").to_pylist()
    cte = data.query(
        "with per_tick as (select tick, count(*) as n from state_deltas group by tick)"
        " select sum(n) as total, count(*) as ticks from per_tick"
    )
    ticks = len(set(deltas.column("tick").to_pylist()))
    assert cte.to_pylist() == [{"total": deltas.num_rows, "ticks": ticks}] and ticks > 1
    volume = data.query("select sum(volume_micro) as v, max(tick) as last from metrics")
    assert volume.to_pylist() == [{"v": pc.sum(metrics.column("volume_micro")).as_py(), "last": 2}]
    assert data.query("values (1, 'a'), (2, 'b')").num_rows == 2
    described = data.query("describe events").column("column_name").to_pylist()
    assert described == events.column_names
    ticks_listed = data.query("from metrics select tick order by tick").column("tick")
    assert ticks_listed.to_pylist() == [0, 1, 2]
    table = query(run, "select kind, count(*) as n from events group by kind order by kind")
    assert table.exit_code == 0 and "task_posted" in table.stdout, table.output


def test_the_sandbox_reads_back_locked_with_no_outside_access():
    con = sandbox({"t": pa.table({"x": [1, 2, 3]})})
    try:
        settings = dict(
            con.execute(
                "select name, value from duckdb_settings() where name in "
                "('enable_external_access', "
                "'lock_configuration', 'autoload_known_extensions', "
                "'autoinstall_known_extensions', "
                "'allow_community_extensions', 'python_enable_replacements')"
            ).fetchall()
        )
        assert con.sql("select sum(x) from t").fetchall() == [(6,)]
    finally:
        con.close()
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false",
        "allow_community_extensions": "false",
        "python_enable_replacements": "false",
    }


SANDBOX_DENIES = {
    "copy_to_a_file": ("copy (select 1 as x) to '{outside}/copied.csv'", "copied.csv"),
    "attach": ("attach '{outside}/attached.db' as a", "attached.db"),
    "export_database": ("export database '{outside}/exported'", "exported"),
    "install_httpfs": ("install httpfs", None),
    "load_httpfs": ("load httpfs", None),
    "turn_external_access_on": ("set enable_external_access = true", None),
    "unlock": ("reset lock_configuration", None),
    "read_text": ("select * from read_text('{outside}/secret.csv')", None),
    "read_csv": ("select * from read_csv('{outside}/secret.csv')", None),
    "glob": ("select * from glob('{outside}/*')", None),
    "a_file_by_name": ("select * from '{outside}/secret.csv'", None),
}


@pytest.mark.parametrize("case", sorted(SANDBOX_DENIES))
def test_the_sandbox_denies_what_the_statement_check_would_let_through(case: str, outside: Path):
    """The second layer on its own: the locked connection, with no statement check in front."""
    sql, written = SANDBOX_DENIES[case]
    before = sorted(p.name for p in outside.iterdir())
    con = sandbox({"t": pa.table({"x": [1]})})
    try:
        with pytest.raises(duckdb.Error) as denied:
            rows = con.execute(sql.format(outside=outside)).fetchall()
            assert MARKER not in str(rows)
        access = con.execute("select current_setting('enable_external_access')").fetchall()
        assert access == [(False,)]
    finally:
        con.close()
    assert "Permission Error" in str(denied.value) or "locked" in str(denied.value), denied.value
    assert MARKER not in str(denied.value)
    assert sorted(p.name for p in outside.iterdir()) == before
    assert written is None or not (outside / written).exists()


def test_a_name_in_sql_never_reaches_a_python_variable():
    _hidden = pa.table({"token": [MARKER]})  # what a replacement scan would find
    con = sandbox({"t": pa.table({"x": [1]})})
    try:
        with pytest.raises(duckdb.CatalogException):
            con.sql("select * from hidden").fetchall()
    finally:
        con.close()


REFUSED = {
    "copy_to_a_file": ("copy (select 1 as x) to '{outside}/copied.csv'", "COPY"),
    "copy_over_the_event_log": (
        "copy (select 1 as x) to '{run}/events.arrows' (format csv)",
        "COPY",
    ),
    "attach": ("attach '{outside}/attached.db' as a", "ATTACH"),
    "export_database": ("export database '{outside}/exported'", "EXPORT"),
    "install_httpfs": ("install httpfs", "INSTALL"),
    "load_httpfs": ("load httpfs", "LOAD"),
    "turn_external_access_on": ("set enable_external_access = true", "SET"),
    "create_table": ("create table t as select 1", "CREATE"),
    "explain_analyze_runs_what_it_wraps": (
        "explain analyze copy (select 1) to '{outside}/x.csv'",
        "EXPLAIN",
    ),
    "two_statements": ("select 1; copy (select 1) to '{outside}/second.csv'", "2 statements"),
    "no_statement": ("  -- nothing here\n", "no statement"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_statements_other_than_one_read_only_query_are_refused(case: str, run: Path, outside: Path):
    sql, named = REFUSED[case]
    run_before, outside_before = digests(run), digests(outside)
    result = query(run, sql.format(run=run, outside=outside))
    line = refusal(result.exit_code, result.stdout, result.stderr)
    assert line.startswith("error: SQL: ") and named in line, line
    assert digests(run) == run_before, "the run's files are unchanged, byte for byte"
    assert digests(outside) == outside_before, "nothing was written outside the run"


def test_a_refusal_comes_before_any_table_is_read(run: Path):
    (run / "events.arrows").unlink()
    (run / "events.arrows").mkdir()  # reading the tables first would raise RunDirError instead
    with pytest.raises(QueryRefused, match="COPY"):
        open_run(run).query("copy (select 1) to 'x.csv'")
    with pytest.raises(RunDirError, match="events.arrows"):
        open_run(run).query("select 1")


READS_OUTSIDE = {
    "read_text": "select * from read_text('{outside}/secret.csv')",
    "read_csv": "select * from read_csv('{outside}/secret.csv')",
    "read_blob": "select * from read_blob('{outside}/secret.csv')",
    "a_file_by_name": "select * from '{outside}/secret.csv'",
    "glob": "select * from glob('{outside}/*')",
    "read_csv_etc_passwd": "select * from read_csv('/etc/passwd', sep = ':')",
    "glob_etc": "select * from glob('/etc/*')",
}


@pytest.mark.parametrize("case", sorted(READS_OUTSIDE))
def test_files_outside_the_run_are_not_read(case: str, run: Path, outside: Path):
    result = query(run, READS_OUTSIDE[case].format(outside=outside))
    line = refusal(result.exit_code, result.stdout, result.stderr)
    assert line.startswith("error: SQL: Permission Error"), line
    assert MARKER not in line and "root:" not in line


RUN_FILES = [
    "summary.json",
    "scenario.toml",
    "events.arrows",
    "metrics.arrows",
    "state/deltas.arrows",
    "state",
]


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_run_file_linked_elsewhere_is_refused_by_name(name: str, run: Path, tmp_path: Path):
    target = tmp_path / "elsewhere" / name.replace("/", "_")
    target.parent.mkdir()
    shutil.move(run / name, target)
    (run / name).symlink_to(target)
    result = query(run, "select count(*) from events")
    line = refusal(result.exit_code, result.stdout, result.stderr)
    assert f"{run / name}: is a symbolic link" in line, line


def test_a_log_linked_to_dev_zero_is_refused_not_read(run: Path):
    (run / "events.arrows").unlink()
    (run / "events.arrows").symlink_to("/dev/zero")
    proc = guarded_query(run, "select count(*) from events")
    line = refusal(proc.returncode, proc.stdout, proc.stderr)
    assert f"{run / 'events.arrows'}: is a symbolic link" in line, line


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_fifo_or_directory_in_place_of_the_metrics_is_refused(kind: str, run: Path):
    (run / "metrics.arrows").unlink()
    if kind == "fifo":
        os.mkfifo(run / "metrics.arrows")
    else:
        (run / "metrics.arrows").mkdir()
    proc = guarded_query(run, "select count(*) from metrics")
    line = refusal(proc.returncode, proc.stdout, proc.stderr)
    expected = "a FIFO" if kind == "fifo" else "a directory"
    assert f"{run / 'metrics.arrows'}: is {expected}, expected a regular file" in line, line


def test_state_at_refuses_a_linked_snapshot(run: Path, tmp_path: Path):
    snapshot = run / "state" / "full_000002.arrow"
    shutil.move(snapshot, tmp_path / "snapshot.arrow")
    snapshot.symlink_to(tmp_path / "snapshot.arrow")
    with pytest.raises(RunDirError, match="full_000002.arrow: is a symbolic link"):
        open_run(run).state_at(2)


def test_regular_file_names_what_it_found(tmp_path: Path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert regular_file(plain) == plain and regular_file(plain, within=tmp_path) == plain
    (tmp_path / "link").symlink_to(plain)
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "linked_dir").symlink_to(tmp_path / "real")
    found = {
        "link": "a symbolic link",
        "folder": "a directory",
        "fifo": "a FIFO",
        "absent": "no such file",
    }
    for name, words in found.items():
        with pytest.raises(RunDirError, match=words):
            regular_file(tmp_path / name)
    with pytest.raises(RunDirError, match="character device"):
        regular_file(Path("/dev/null"))
    assert regular_file(tmp_path / "linked_dir" / "f") == tmp_path / "linked_dir" / "f"
    with pytest.raises(RunDirError, match="linked_dir: is a symbolic link, expected a directory"):
        regular_file(tmp_path / "linked_dir" / "f", within=tmp_path)


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_query_output_is_data_never_markup(fmt: str, run: Path):
    result = query(run, """select '[/x]' as "[bold]c", ':smile: [red]r' as e""", "--format", fmt)
    assert result.exit_code == 0 and result.stderr == "", result.output
    for literal in ("[/x]", "[bold]c", ":smile: [red]r"):
        assert literal in result.stdout, (literal, result.stdout)


def test_the_row_count_note_and_duplicate_column_names_print_as_they_are(run: Path):
    result = query(run, "select '[/x]' as a, 2 as a from range(3)", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("[/x]") == 1 and "│ 2 " in result.stdout, result.stdout
    assert "(3 rows; showing 1: use --limit or --format csv)" in result.stdout


@pytest.mark.parametrize(
    "sql, words",
    [
        ("selec 1", "Parser Error"),
        ("select nope from events", "Binder Error"),
        ("select 1 / 'x'", "Error"),
    ],
)
def test_sql_mistakes_are_one_line(sql: str, words: str, run: Path):
    result = query(run, sql)
    line = refusal(result.exit_code, result.stdout, result.stderr)
    assert line.startswith("error: SQL: ") and words in line, line
