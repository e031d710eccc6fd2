"""What every command shares: the Typer app, the consoles, tables whose strings are data, failure
lines and progress bars. User mistakes exit 2 with one line each; a role's failure exits 1."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable

from runtime.kernel.errors import RoleFailure

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=(
        "Agora: a runtime and simulator for economies of autonomous agents.\n\n"
        "Run a scenario file into a recorded run directory (agora run; --resume, agora fork), "
        "check "
        "scenario files and roles (agora validate, agora schema, agora roles), prove a run "
        "replays bit "
        "for bit (agora replay --verify), analyse runs (agora analyze, agora replay --at, "
        "agora query), "
        "train a negotiator with PPO (agora train), run parameter sweeps on local processes or Ray "
        "(agora sweep), test the ledger under random faults (agora fuzz) and measure (agora bench)."
    ),
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class Table(RichTable):
    """A rich table whose strings are data, never markup: a scenario named "[/x]" prints as
    itself."""

    def __init__(self, *args: Any, title: str | None = None, **kwargs: Any) -> None:
        from rich.text import Text

        super().__init__(*args, title=None if title is None else Text(title), **kwargs)

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:
        from rich.text import Text

        super().add_column(Text(header) if isinstance(header, str) else header, *args, **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        from rich.text import Text

        super().add_row(
            *[Text(cell) if isinstance(cell, str) else cell for cell in cells], **kwargs
        )


def role_failed(exc: RoleFailure) -> None:
    """A role's own code raised: its traceback, then one line naming population, role and tick; exit
    1."""
    import traceback

    cause = exc.__cause__
    if cause is not None:
        err.print(
            "".join(traceback.format_exception(cause)).rstrip(), markup=False, highlight=False
        )
    err.print(
        f"error: {exc}: {type(cause).__name__}: {cause}" if cause else f"error: {exc}", markup=False
    )
    err.print(
        "the run's logs are readable up to that tick; fix the role and run again", markup=False
    )
    raise typer.Exit(1)


def fail(lines: list[str], code: int = 2) -> NoReturn:
    """Print each line as an error on stderr and exit with ``code`` (2: a usage mistake)."""
    for line in lines:
        err.print(f"error: {line}", markup=False)
    raise typer.Exit(code)


def progress_bar(label: str, unit: str, *extra: ProgressColumn) -> Progress:
    """A bar on stderr that vanishes when done: ``label``, the bar, done/total ``unit``, the
    ``extra`` columns, then the time left."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        *extra,
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def progress(total: int, quiet: bool, label: str) -> tuple[Any, Any]:
    """A tick bar of ``total`` ticks and the callback that moves it, or ``(None, None)`` when
    ``quiet`` or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        return None, None
    bar = progress_bar(label, "ticks")
    task = bar.add_task(label, total=total)
    return bar, (lambda tick: bar.update(task, completed=tick))
