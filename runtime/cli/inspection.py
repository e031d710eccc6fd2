"""agora replay (--verify, --at), agora analyze, agora query: what a recorded run holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.output import Table, app, err, fail, out, progress
from runtime.kernel.errors import RunDirError, ScenarioError


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by agora run.")],
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help=(
                "Re-execute the run and compare every file it made, byte for byte, every figure "
                "of its summary and the state hashes at every checkpoint."
            ),
        ),
    ] = False,
    at: Annotated[
        int | None,
        typer.Option(
            "--at",
            help=(
                "Rebuild the state after this tick from the recorded state (nearest checkpoint "
                "snapshot + deltas; no re-simulation)."
            ),
        ),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=(
                "With --at: write the state table to this .parquet or .csv file (prices go to "
                "<name>.prices.csv beside a CSV, into the metadata of a Parquet file)."
            ),
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help=(
                "With --verify: the key a run was signed with (agora run --sign-key): also prove "
                "that a holder of it made the run."
            ),
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Replay a recorded run. --verify: exit 0 identical, 1 diverged or tampered (naming what). --at
    TICK: the state then.

    Without --key, a verified run is proven consistent (exactly what its scenario and seed make),
    not proven to come from anyone in particular.
    """
    from runtime.record.recording import RUN_FILE, read_key
    from runtime.record.replay import verify as do_verify

    if verify == (at is not None):
        fail(["give exactly one of --verify or --at TICK"])
    if at is not None:
        if key is not None:
            fail(["--key goes with --verify"])
        _state_at(run_dir, at, export)
        return
    try:
        secret = read_key(key) if key is not None else None
        ticks = _manifest_ticks(run_dir / RUN_FILE)
        bar, callback = progress(ticks, quiet, "replay")
        if bar is not None:
            with bar:
                verdict = do_verify(run_dir, callback, secret)
        else:
            verdict = do_verify(run_dir, None, secret)
    except RunDirError as exc:
        fail([str(exc)])
    for line in verdict.lines:
        (out if verdict.exit_code == 0 else err).print(f"{verdict.status}: {line}", markup=False)
    raise typer.Exit(verdict.exit_code)


def _manifest_ticks(path: Path) -> int:
    """The ticks a run's run.json names (0 when it cannot be read: the bar then has no total)."""
    try:
        ticks = json.loads(path.read_text()).get("ticks", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return (
        ticks if isinstance(ticks, int) and not isinstance(ticks, bool) and 0 < ticks < 10**9 else 0
    )


def _skill_prices(prices: dict[str, int]) -> dict[int, int]:
    """Each skill's price (micro-credits) from the metrics columns ``price_<k>_micro``."""
    from runtime.record.run_data import PRICE_COLUMN

    return {int(m.group(1)): v for k, v in prices.items() if (m := PRICE_COLUMN.fullmatch(k))}


def _state_at(run_dir: Path, tick: int, export: Path | None) -> None:
    import time

    from runtime.record.replay import open as open_run

    if export is not None and export.suffix not in (".parquet", ".csv"):
        fail([f"--out {export}: the file name must end in .parquet or .csv"])
    if export is not None and export.is_dir():
        fail([f"--out {export}: is a directory; give a file name ending in .parquet or .csv"])
    start = time.perf_counter()
    try:
        run = open_run(run_dir)
        table, facts = run.state_at(tick)
    except (RunDirError, ScenarioError) as exc:
        fail([str(exc)] if isinstance(exc, RunDirError) else exc.problems)
    wall = time.perf_counter() - start
    alive = table.column("alive").to_numpy(zero_copy_only=False)
    balance = table.column("balance_micro").to_numpy()
    summary = Table(title=f"state after tick {tick}: {run_dir}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("accounts", f"{table.num_rows:,} ({int(alive.sum()):,} alive)")
    summary.add_row("balances", f"{balance.sum() / 1e6:,.6f} credits in all")
    summary.add_row(
        "stakes", f"{table.column('stake_micro').to_numpy().sum() / 1e6:,.6f} credits in all"
    )
    prices = _skill_prices(facts["prices_micro"])
    summary.add_row("prices (credits)", ", ".join(f"{k}: {v / 1e6:.4f}" for k, v in prices.items()))
    summary.add_row(
        "rebuilt from",
        f"snapshot of tick {facts['from_snapshot']}" if facts["from_snapshot"] >= 0 else "tick 0",
    )
    live = (
        "matches the live run"
        if facts["matches_live"]
        else f"DIFFERS from the live run: {str(facts['recorded_hash'])[:16]}"
    )
    summary.add_row("state hash", f"{facts['state_hash'][:16]} ({live})")
    summary.add_row("time", f"{wall:.3f} s")
    out.print(summary)
    if export is not None:
        import pyarrow as pa
        import pyarrow.csv
        import pyarrow.parquet as pq

        try:
            export.parent.mkdir(parents=True, exist_ok=True)
            if export.suffix == ".parquet":
                meta = {b"agora": json.dumps({k: v for k, v in facts.items()}).encode()}
                pq.write_table(table.replace_schema_metadata(meta), export)
            else:
                pa.csv.write_csv(table, export)
                by_skill = _skill_prices(facts["prices_micro"])
                prices = pa.table({"skill": list(by_skill), "price_micro": list(by_skill.values())})
                pa.csv.write_csv(prices, export.with_name(export.stem + ".prices.csv"))
        except (OSError, pa.ArrowException) as exc:
            fail([f"--out {export}: cannot write it ({getattr(exc, 'strerror', None) or exc})"])
        out.print(f"wrote {export}", markup=False)
    if not facts["matches_live"]:
        raise typer.Exit(1)


@app.command()
def analyze(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="One run directory, or several side by side (seeds or settings)."),
    ],
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Also write a self-contained HTML report with plots to this file."
        ),
    ] = None,
    fmt_: Annotated[str, typer.Option("--format", help="table (default) or json.")] = "table",
) -> None:
    """A run's indicators (wealth inequality, prices, volume, efficiency, slashes, ledger
    convergence, synchronisation, tension, healing, forecasts) and each role against its baseline.

    With several runs: side by side, the difference from the first, and the mean with a 95%
    confidence interval (for seeds of one scenario). A fork (agora fork) beside its parent: the tick
    they part at, and a plot of it. A sweep's folder (agora sweep): the outcomes by parameter value,
    with 95% intervals across the seeds of each value. --report writes a self-contained HTML page
    with plots.
    """
    from runtime.analysis.report import fmt, report_html
    from runtime.analysis.runs import analyze as run_analysis
    from runtime.analysis.runs import compare, parting, role_rows, scalar_rows
    from runtime.record.replay import open as open_run

    if fmt_ not in ("table", "json"):
        fail([f"--format {fmt_!r}: expected table or json"])
    if len(run_dirs) == 1 and (run_dirs[0] / "results.parquet").is_file():
        _analyze_sweep(run_dirs[0], fmt_)
        return
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        fail([f"--report {report}: the file name must end in .html"])
    if report is not None and report.is_dir():
        fail([f"--report {report}: is a directory; give a file name ending in .html"])
    analyses, splits = [], []
    try:
        runs = [open_run(d) for d in run_dirs]
        for run_ in runs:
            analyses.append(run_analysis(run_))
        splits = [
            split
            for parent in runs
            for child in runs
            if (split := parting(parent, child)) is not None
        ]
    except RunDirError as exc:
        fail([str(exc)])
    except ScenarioError as exc:
        fail(exc.problems)
    if report is not None:
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(report_html(analyses, splits))
        except OSError as exc:
            fail([f"--report {report}: cannot write it ({exc.strerror})"])
    if fmt_ == "json":
        payload = (
            analyses[0]
            if len(analyses) == 1
            else {"runs": analyses, "comparison": compare(analyses), "forks": splits}
        )
        out.print_json(json.dumps(payload, default=float))
        return
    for split in splits:
        where = (
            f"they part at tick {split['parts_at']} "
            f"({', '.join(split['first_differing'][:4])} differ first)"
            if split["parts_at"] is not None
            else "their metrics are the same from the fork on"
        )
        out.print(
            f"{split['fork']} forks {split['parent']} at tick {split['fork_tick']}"
            + (f" with {', '.join(split['sets'])}" if split["sets"] else "")
            + f": {where}",
            markup=False,
        )
    names = [str(d) for d in run_dirs]
    table = Table(title="indicators" if len(analyses) == 1 else "indicators, side by side")
    table.add_column("indicator")
    for n in names:
        table.add_column(n)
    if len(analyses) > 1:
        table.add_column("mean [95% CI]")
        for row in compare(analyses)["rows"]:
            diffs = row["diff_from_first"]
            cells = [
                fmt(v) + (f" ({d:+.3g})" if i and isinstance(d, (int, float)) else "")
                for i, (v, d) in enumerate(zip(row["values"], diffs, strict=True))
            ]
            table.add_row(
                row["indicator"],
                *cells,
                f"{fmt(row['mean'])} [{fmt(row['ci95'][0])}, {fmt(row['ci95'][1])}]",
            )
    else:
        for label, value in scalar_rows(analyses[0]):
            table.add_row(label, fmt(value))
    out.print(table)
    for a, n in zip(analyses, names, strict=True):
        rows = role_rows(a)
        if rows:
            t = Table(
                title=f"roles: {n}" + (" (baseline from DIR/baseline)" if a.get("baseline") else "")
            )
            for col in ("population", "metric", "learned", "baseline"):
                t.add_column(col)
            for p, k, v, b in rows:
                t.add_row(p, k, fmt(v), fmt(b))
            out.print(t)
    if report is not None:
        out.print(f"wrote {report}", markup=False)


def _short(figure: str) -> str:
    """A column header for a figure of results.parquet: ``roles.critics.catch_rate`` -> ``catch_rate
    (critics)``, ``wealth_credits.workers`` -> ``wealth of workers (credits)``."""
    parts = figure.split(".")
    if parts[0] == "roles" and len(parts) == 3:
        return f"{parts[2]} ({parts[1]})"
    if parts[0] == "wealth_credits" and len(parts) == 2:
        return f"wealth of {parts[1]} (credits)"
    return figure


def _analyze_sweep(folder: Path, fmt_: str) -> None:
    """agora analyze SWEEP_DIR: a table per indicator group, a row per combination of swept
    values."""
    import pyarrow.parquet as pq

    from runtime.analysis.report import fmt
    from runtime.analysis.runs import sweep_summary

    try:
        summary = sweep_summary(pq.read_table(folder / "results.parquet"))
    except (OSError, ValueError) as exc:
        fail([f"{folder / 'results.parquet'}: cannot be read ({exc})"])
    if fmt_ == "json":
        out.print_json(json.dumps(summary, default=float))
        return
    shown = [
        f
        for f in summary["figures"]
        if not f.startswith("roles.")
        or f.split(".")[-1]
        in ("efficiency", "catch_rate", "mape_1", "quality_per_credit", "precision", "recall")
    ]
    for start in range(0, len(shown), 4):  # four indicators a table: readable at 100 columns
        table = Table(
            title=f"sweep {folder}: mean [95% interval across seeds], by value"
            if start == 0
            else None
        )
        table.add_column("values", no_wrap=True)
        table.add_column("seeds")
        for name in shown[start : start + 4]:
            table.add_column(_short(name))
        for group in summary["groups"]:
            cells = []
            for name in shown[start : start + 4]:
                stat = group["figures"].get(name)
                cells.append(
                    "n/a"
                    if stat is None
                    else f"{fmt(stat['mean'])} [{fmt(stat['ci95'][0])}, {fmt(stat['ci95'][1])}]"
                )
            table.add_row(group["label"], str(group["seeds"]), *cells)
        out.print(table)
    if summary["failed"]:
        out.print(f"{summary['failed']} run(s) failed and are left out", markup=False)


@app.command()
def query(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    sql: Annotated[
        str, typer.Argument(help="DuckDB SQL over the tables events, metrics and state_deltas.")
    ],
    fmt_: Annotated[str, typer.Option("--format", help="table (default), csv or json.")] = "table",
    limit: Annotated[int, typer.Option(min=1, help="Most rows to print as a table.")] = 50,
) -> None:
    """Run SQL over a recorded run, e.g. agora query runs/a "select kind, count(*) from events group
    by kind".

    One read-only query runs (SELECT, WITH, VALUES, FROM, DESCRIBE, SHOW, SUMMARIZE), in a sandbox
    that reads the run's tables and no other file, network or extension.
    """
    import duckdb
    from rich.text import Text

    from runtime.record.replay import open as open_run
    from runtime.record.run_data import QueryRefused

    if fmt_ not in ("table", "csv", "json"):
        fail([f"--format {fmt_!r}: expected table, csv or json"])
    try:
        result = open_run(run_dir).query(sql)
    except RunDirError as exc:
        fail([str(exc)])
    except ScenarioError as exc:
        fail(exc.problems)
    except QueryRefused as exc:
        fail([f"SQL: {exc}"])
    except duckdb.Error as exc:  # a mistake in the SQL, or an access the sandbox denies
        fail([f"SQL: {_first_line(exc)}"])
    if fmt_ == "csv":
        import pyarrow.csv

        buf = __import__("io").BytesIO()
        pyarrow.csv.write_csv(result, buf)
        sys.stdout.write(buf.getvalue().decode())
        return
    if fmt_ == "json":
        out.print_json(json.dumps(result.to_pylist(), default=str))
        return
    # Text, not str: a cell or a column name such as "[/x]" is data, never rich markup.
    table = Table()
    for name in result.column_names:
        table.add_column(Text(name))
    shown = result.slice(0, limit)
    # by column, not to_pylist()'s dicts, which keep one of two columns with the same name
    for row in zip(*(column.to_pylist() for column in shown.columns), strict=True):
        table.add_row(*[Text(str(value)) for value in row])
    out.print(table)
    if result.num_rows > limit:
        out.print(
            f"({result.num_rows:,} rows; showing {limit}: use --limit or --format csv)",
            markup=False,
        )


def _first_line(exc: Exception) -> str:
    """The first non-blank line of an error's message (DuckDB's run on with context lines)."""
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
