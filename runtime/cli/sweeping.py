"""agora sweep: a grid of parameter values x seeds, on local processes or Ray."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.cli.output import Table, app, err, fail, out, progress_bar
from runtime.kernel.errors import ScenarioError


@app.command()
def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file to sweep.")],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help=(
                "KEY=V1,V2,...: a parameter and its values (repeat for a grid). KEY is dotted: "
                "economy.price_elasticity, world.ticks, population.workers.stake (a population by "
                "name), fault.0.at (a list entry by index)."
            ),
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(min=1, help="Seeds per combination: the scenario's seed, seed+1, ...")
    ] = 1,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=(
                "Folder of the sweep: a run directory per run, and results.parquet (default: "
                "runs/sweep-<scenario name>)."
            ),
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help=(
                "local (processes on this machine) or ray (a Ray cluster; needs the ray extra: "
                "pip install -e '.\\[ray]')."
            )
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --backend ray: the cluster's address (default: start Ray on this machine)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Runs at a time (default: this machine's CPU count).")
    ] = None,
    until: Annotated[
        int | None,
        typer.Option(min=1, help="Run this many ticks instead of each scenario's world.ticks."),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bar and no table; print the results file."),
    ] = False,
) -> None:
    """Run a grid of a scenario's parameter values x seeds; each run a recorded run directory, plus
    results.parquet.

    Re-running the same command resumes: finished runs are kept and not redone. A failed run (or one
    whose
    worker dies) is tried once more, then reported; the exit status is 1 if any run failed.
    """
    from runtime.scale.sweep import RESULTS, SweepError, parse_sets, plan
    from runtime.scale.sweep import sweep as do_sweep

    if backend not in ("local", "ray"):
        fail([f"--backend {backend!r}: expected local or ray"])
    if backend == "local" and address is not None:
        fail(["--address: only with --backend ray"])
    if backend == "ray":
        if importlib.util.find_spec("ray") is None:
            fail(
                ["--backend ray: Ray is not installed; install the extra: pip install -e '.[ray]'"]
            )
    target = out_dir if out_dir is not None else Path("runs") / f"sweep-{scenario.stem}"
    try:
        specs = plan(scenario, parse_sets(sets or []), seeds, target, until)
    except (ScenarioError, SweepError) as exc:
        fail(exc.problems)
    show = not quiet and sys.stderr.isatty()
    bar = progress_bar("sweep", "runs") if show else None
    task = bar.add_task("sweep", total=len(specs)) if bar is not None else None

    def report(outcome: Any) -> None:
        if bar is not None:
            bar.update(task, advance=1)
        elif not quiet:
            err.print(
                f"{outcome.status}: {outcome.spec.run_id}"
                + (f" ({outcome.error})" if outcome.error else ""),
                markup=False,
            )

    try:
        if bar is not None:
            with bar:
                outcomes = do_sweep(specs, backend, workers, address, report)
        else:
            outcomes = do_sweep(specs, backend, workers, address, report)
    except SweepError as exc:
        fail(exc.problems)
    failed = [o for o in outcomes if o.status == "failed"]
    if not quiet:
        table = Table(title=f"agora sweep: {len(specs)} runs, {backend}")
        for col in ("run", "status", "tries", "final state"):
            table.add_column(col)
        from runtime.record.recording import read_summary

        for o in outcomes:
            state = (
                read_summary(target / o.spec.run_id)[0]["final_state_hash"][:16]
                if o.status != "failed"
                else o.error
            )
            table.add_row(o.spec.run_id, o.status, str(o.attempts), state)
        out.print(table)
    out.print(str(target / RESULTS), markup=False)
    if failed:
        for o in failed:
            err.print(f"error: run {o.spec.run_id} failed twice: {o.error}", markup=False)
        raise typer.Exit(1)
