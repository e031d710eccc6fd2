"""agora serve: a running world that outside agents join over HTTP and WebSocket."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.output import app, err, fail, out


@app.command()
def serve(
    scenario: Annotated[
        Path,
        typer.Argument(
            help="A scenario file whose populations declare seats (seats = N) for outside agents."
        ),
    ],
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on: 127.0.0.1 (this machine only) unless you mean otherwise."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 8765,
    realtime: Annotated[
        float,
        typer.Option(
            min=0.0001,
            max=3600.0,
            help="FACTOR wall seconds per unit of virtual time (SimPy's realtime clock); the "
            "operator can change it while the world runs.",
        ),
    ] = 1.0,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Run directory (agora replay --verify reads it).")
    ] = Path("runs/served"),
    tokens: Annotated[
        Path | None,
        typer.Option(
            help="Write the seat tokens and the admin token to this file (mode 0600) instead of "
            "printing them.",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**63 - 1, help="Seed (default: the scenario's).")
    ] = None,
    ticks: Annotated[
        int | None, typer.Option(min=1, help="Ticks to run (default: the scenario's).")
    ] = None,
    rate: Annotated[
        float, typer.Option(min=0.1, help="Requests per second each seat may make on average.")
    ] = 50.0,
    burst: Annotated[
        float, typer.Option(min=1.0, help="Requests a seat may make at once above its rate.")
    ] = 100.0,
    paused: Annotated[
        bool,
        typer.Option(
            "--paused",
            help="Start with the clock held: seats can join and act before tick 0, and the "
            "operator resumes it (the dashboard, or POST /api/v1/admin/resume).",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out directory.")] = False,
) -> None:
    """Serve SCENARIO: outside agents drive its seats over HTTP and WebSocket while every other
    agent acts as the scenario says; the dashboard is at http://HOST:PORT/.

    Actions that arrive during tick t apply at tick t+1 and are recorded inputs, so
    agora replay --verify OUT reproduces the run with no client. The server stops when the run's
    last tick has run and its summary is written.
    """
    problems = []
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            problems.append(f"--host {host!r}: expected an IP address such as 127.0.0.1")
    if not scenario.is_file():
        problems.append(f"SCENARIO {scenario}: no such file")
    if tokens is not None and tokens.exists():
        problems.append(f"--tokens {tokens}: exists; tokens are written to a new file only")
    elif tokens is not None and tokens.resolve().is_relative_to(out_dir.resolve()):
        problems.append(
            f"--tokens {tokens}: inside the run directory --out {out_dir}; keep tokens apart from "
            "the run (a run directory holds only what a replay makes)"
        )
    elif tokens is not None and not tokens.parent.is_dir():
        problems.append(f"--tokens {tokens}: no folder {tokens.parent} to write it in")
    if problems:
        fail(problems)
    import asyncio

    import uvicorn

    from runtime.kernel.errors import RunDirError, ScenarioError
    from runtime.serve.app import MAX_BODY, make_app
    from runtime.serve.host import Host

    # The world's tick runs in a worker thread beside the event loop; a short switch interval
    # lets the loop take the interpreter back within half a millisecond to answer a request,
    # instead of the default five.
    sys.setswitchinterval(0.0005)

    async def main() -> None:
        try:
            served = Host(
                scenario,
                out_dir,
                realtime=realtime,
                seed=seed,
                ticks=ticks,
                overwrite=overwrite,
                rate=rate,
                burst=burst,
                paused=paused,
            )
        except ScenarioError as exc:
            fail(exc.problems)
        except RunDirError as exc:
            fail([str(exc)])
        lines = [f"admin {served.admin_token}"] + [
            f"{seat} {token}" for seat, token in served.tokens.items()
        ]
        served.tokens.clear()
        if tokens is None:
            out.print("\n".join(lines), markup=False)
        else:
            fd = os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("\n".join(lines) + "\n")
        config = uvicorn.Config(
            make_app(served),
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            http="httptools",
            ws_per_message_deflate=False,  # the tick messages are small: compressing costs more
            ws_max_size=MAX_BODY,  # a larger message on a seat's stream closes it (1009)
            timeout_graceful_shutdown=5,  # a client that holds a socket open cannot hold the exit
        )
        server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(_without_client_tracebacks)

        async def stop_when_finished() -> None:
            while not served.finished:
                await asyncio.sleep(0.05)
            server.should_exit = True

        watcher = asyncio.create_task(stop_when_finished())
        err.print(
            f"serving {scenario} on http://{host}:{port}/ ({len(served.seats)} seats, "
            f"{served.ticks} ticks); run directory {out_dir}",
            markup=False,
        )
        await server.serve()
        watcher.cancel()
        if served.summary_path is not None:
            err.print(f"run written to {served.summary_path}", markup=False)

    try:  # uvloop: the faster event loop, where it is installed (not on Windows)
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def _without_client_tracebacks(record: logging.LogRecord) -> bool:
    """Keep uvicorn's line about a client that sent invalid UTF-8 (it closes the socket with
    1007), without the traceback: the client was at fault, not the server."""
    if record.getMessage().startswith("Invalid UTF-8"):
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True
