"""agora bench: the benchmark suite, found through its entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.cli.output import app, fail, out


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Smaller sizes (seconds instead of minutes).")
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(
            help=(
                "Run these suites only, comma-separated (an unknown name lists them all): e.g. "
                "startup, kernel, exchange, cores, envs."
            )
        ),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            help=(
                "Also write each suite's tables to DIR/<suite>.txt, headed by the command, the "
                "date and the machine (CPU, cores, versions)."
            ),
            metavar="DIR",
        ),
    ] = None,
) -> None:
    """Run the benchmark suite and print tables with the peers side by side."""
    suites = _benchmarks()
    names, run_all = suites.SUITES, suites.run_all
    if only is not None:
        unknown = [name for name in only.split(",") if name not in names]
        if unknown:
            fail(
                [
                    f"--only {only!r}: {unknown[0]!r} is not a suite; expected one or more of "
                    f"{', '.join(names)} (comma-separated)"
                ]
            )
    run_all(quick=quick, only=only, console=out, save=save)


def _benchmarks() -> Any:
    """The benchmark suite, found through the ``agora.benchmarks`` entry point (the runtime does not
    import the benchmarks package: it depends on the runtime, not the other way round)."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="agora.benchmarks", name="suites"))
    if not found:
        fail(
            [
                "the benchmark suite is not installed (entry point agora.benchmarks: suites); "
                "install Agora from its source tree: pip install -e ."
            ]
        )
    return found[0].load()
