"""agora fuzz: a seeded swarm of random worlds and faults, checked after every tick."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.output import app, fail, out, progress_bar


@app.command("fuzz")
def fuzz_command(
    seeds: Annotated[int, typer.Option(help="How many seeds to run: START, START+1, ...")] = 100,
    start: Annotated[int, typer.Option(help="The first seed.")] = 0,
    size: Annotated[
        str,
        typer.Option(
            help="small (20-40 ticks, tens of agents) or medium (60-120 ticks, hundreds of agents)."
        ),
    ] = "small",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for failing seeds: seed-S.toml (the scenario, which `agora run` "
            "reproduces) and seed-S.json (the violation). Default: runs/fuzz.",
        ),
    ] = None,
    plant: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="Plant a known bug for this run only (skip-escrow), to show the swarm finds it.",
        ),
    ] = None,
) -> None:
    """Run a seeded fault swarm: random worlds under random faults and byzantine traffic, checked
    after every tick.

    Each seed draws a whole scenario (regions, bus faults, every role, crashes, partitions, loss
    bursts, byzantine traffic), runs it and checks after every tick that credits are conserved,
    nothing is negative, no op is applied twice and every byzantine item is refused; then that the
    replicas settle to one state within K = 12 anti-entropy rounds. Exit 0 when every check held, 1
    when a seed failed (its scenario file is written to --out with the command that reproduces it),
    2 for bad arguments.
    """
    from runtime.faults.fuzz import _argument_problems, _reporter, _table, _Tally, fuzz

    out_folder = out_dir if out_dir is not None else Path("runs") / "fuzz"
    problems = _argument_problems(seeds, start, size, out_folder, plant)
    if problems:
        fail(problems)
    tally = _Tally()
    began = time.perf_counter()
    bar = None
    if sys.stderr.isatty():
        bar = progress_bar("fuzz", "seeds")
    report = _reporter(seeds, out_folder, size, plant, tally, bar)
    with bar if bar is not None else contextlib.nullcontext():
        fuzz(seeds, start, size, plant, report)
    out.print(_table(tally, start, size, time.perf_counter() - began, plant))
    if tally.failed:
        raise typer.Exit(1)
