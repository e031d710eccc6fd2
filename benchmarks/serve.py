"""Load on a served world: 1,000 outside agents acting at once over loopback.

``agora serve`` runs in its own process (a scenario whose 1,000 negotiators are all seats, one tick
a second); 1,000 clients in this process each keep one HTTP/1.1 connection and send a bounded
number of actions, paced to stay under their seat's rate limit, and a share of them also hold the
seat's WebSocket. Reported: actions acknowledged per second, the latency from sending an action to
its acknowledgement (p50, p99), WebSocket messages delivered per tick, connections dropped, and
acknowledged actions missing from the recorded inputs (each seat's last acknowledged action for a
tick must be the one the run took; this must be 0).

Clients and server share this machine's cores, so the figures are a floor for the server alone.
On a machine with more cores, ``AGORA_SERVE_BENCH_CPUS=SERVER:CLIENTS`` (CPU lists such as
``0-1:2-15``) pins the server and the clients to separate CPUs, and the rows say so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import Rows

SCENARIO = """
[world]
name = "served-load"
seed = 11
ticks = {ticks}
checkpoint_every = 20

[[population]]
name = "requesters"
role = "requester"
count = 2000
initial_credits = 60
income = 0.5
post_rate = 0.5
task_units = 3

[[population]]
name = "workers"
role = "worker"
count = 200

[[population]]
name = "negotiators"
role = "negotiator"
count = {clients}
initial_credits = 100
seats = {clients}
"""


CPUS_VARIABLE = "AGORA_SERVE_BENCH_CPUS"


def _cpu_list(text: str) -> set[int]:
    """``"0-1,4"`` -> ``{0, 1, 4}``."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def pinning() -> tuple[set[int], set[int]] | None:
    """The server's and the clients' CPUs, from ``AGORA_SERVE_BENCH_CPUS``; None when unset."""
    value = os.environ.get(CPUS_VARIABLE, "").strip()
    if not value:
        return None
    try:
        server, clients = value.split(":")
        return _cpu_list(server), _cpu_list(clients)
    except ValueError:
        raise SystemExit(
            f"{CPUS_VARIABLE}={value!r}: expected SERVER:CLIENTS CPU lists, such as 0-1:2-15"
        ) from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stats:
    """What the clients saw."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.acks: dict[tuple[int, int], float] = {}  # (seat row, tick) -> last acknowledged value
        self.refused: dict[int, int] = {}
        self.dropped = 0
        self.ws_messages = 0


async def _client(
    port: int, row: int, seat: str, token: str, actions: int, gap: float, stats: Stats
) -> None:
    """One agent: a keep-alive connection, ``actions`` POSTs on a fixed schedule ``gap`` seconds
    apart (a late answer does not push the next send back, so the offered rate holds; a send
    whose time has passed goes as soon as the answer before it is in)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats.dropped += 1
        return
    head = (
        f"POST /api/v1/seats/{seat}/action HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    )
    loop = asyncio.get_running_loop()
    start = loop.time() + gap * (row % 97) / 97  # spread the clients over the first gap
    try:
        for i in range(actions):
            await asyncio.sleep(max(0.0, start + i * gap - loop.time()))
            value = round(-0.9 + 1.8 * ((row * 31 + i * 7) % 101) / 100, 6)
            body = json.dumps({"action": [value]}).encode()
            request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
            sent = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answer = json.loads(await reader.readexactly(length)) if length else {}
            stats.latencies.append(time.perf_counter() - sent)
            status = int(status_line.split()[1]) if status_line else 0
            if status == 202:
                stats.acks[(row, int(answer["applies_at_tick"]))] = value
            else:
                stats.refused[status] = stats.refused.get(status, 0) + 1
                if status in (0, 409):
                    break
    except (OSError, asyncio.IncompleteReadError, ValueError):
        stats.dropped += 1
    finally:
        writer.close()


async def _socket_client(
    port: int, row: int, seat: str, token: str, actions: int, gap: float, stats: Stats
) -> None:
    """One agent acting on its seat's WebSocket: ``actions`` messages on a fixed schedule, each
    acknowledged on the socket, while the socket also brings each tick's message."""
    from websockets.asyncio.client import connect

    sent: dict[str, tuple[float, float]] = {}  # key -> (send time, value)
    done = asyncio.Event()

    async def read(ws: Any) -> None:
        answered = 0
        async for raw in ws:
            message = json.loads(raw)
            if "ack" in message or "error" in message:
                at, value = sent.pop(message["key"])
                stats.latencies.append(time.perf_counter() - at)
                if "ack" in message:
                    stats.acks[(row, int(message["ack"]["applies_at_tick"]))] = value
                else:
                    status = int(message["error"]["status"])
                    stats.refused[status] = stats.refused.get(status, 0) + 1
                answered += 1
                if answered == actions:
                    done.set()
            elif "tick" in message and "observation" in message:
                stats.ws_messages += 1

    try:
        async with connect(
            f"ws://127.0.0.1:{port}/api/v1/seats/{seat}/stream?token={token}",
            compression=None,
        ) as ws:
            await ws.recv()  # the view at joining
            reader = asyncio.ensure_future(read(ws))
            loop = asyncio.get_running_loop()
            start = loop.time() + gap * (row % 97) / 97
            for i in range(actions):
                await asyncio.sleep(max(0.0, start + i * gap - loop.time()))
                value = round(-0.9 + 1.8 * ((row * 31 + i * 7) % 101) / 100, 6)
                key = f"{row}-{i}"
                sent[key] = (time.perf_counter(), value)
                await ws.send(json.dumps({"action": [value], "key": key}))
            await asyncio.wait_for(done.wait(), 60)
            reader.cancel()
    except (TimeoutError, OSError, ValueError, KeyError):
        stats.dropped += 1
    except Exception:  # noqa: BLE001 -- a dropped socket is counted, whatever broke it
        stats.dropped += 1


async def _watch(port: int, seat: str, token: str, stats: Stats, stop: asyncio.Event) -> None:
    """Hold the seat's WebSocket and count the tick messages."""
    from websockets.asyncio.client import connect

    try:
        async with connect(f"ws://127.0.0.1:{port}/api/v1/seats/{seat}/stream?token={token}") as ws:
            await ws.recv()  # the view at joining
            while not stop.is_set():
                message = json.loads(await ws.recv())
                if message.get("finished"):
                    return
                stats.ws_messages += 1
    except Exception:  # noqa: BLE001 -- a dropped feed is counted, whatever broke it
        if not stop.is_set():
            stats.dropped += 1


async def _load(
    port: int,
    tokens: dict[str, str],
    actions: int,
    gap: float,
    watching: list[str],
    stats: Stats,
    channel: str,
) -> float:
    seats = sorted(s for s in tokens if s != "admin")
    client = _socket_client if channel == "websocket" else _client
    stop = asyncio.Event()
    watch = [
        asyncio.create_task(_watch(port, seat, tokens[seat], stats, stop))
        for seat in (watching if channel == "http" else [])
    ]
    start = time.perf_counter()
    await asyncio.gather(
        *(
            client(port, int(seat.rsplit("-", 1)[1]), seat, tokens[seat], actions, gap, stats)
            for seat in seats
        )
    )
    wall = time.perf_counter() - start
    stop.set()
    for task in watch:
        task.cancel()
    await asyncio.gather(*watch, return_exceptions=True)
    return wall


RATE = 6.0  # actions a second per client: 1,000 clients offer 6,000 actions/s


def _client_process(
    port: int,
    tokens: dict[str, str],
    actions: int,
    gap: float,
    watching: list[str],
    channel: str,
    cpus: set[int],
) -> tuple[Stats, float]:
    """A share of the clients, in this process on ``cpus``: what they saw and the wall time."""
    os.sched_setaffinity(0, cpus)
    stats = Stats()
    wall = _run(_load(port, tokens, actions, gap, watching, stats, channel))
    return stats, wall


def measure(clients: int, seconds: float, watchers: int, channel: str = "http") -> dict[str, Any]:
    """Serve a world with ``clients`` seats for about ``seconds`` and load it: actions over HTTP
    (``watchers`` of the clients also hold their WebSocket), or over each client's WebSocket
    (``channel="websocket"``: every client holds one, so ``watchers`` is every client)."""
    if channel == "websocket":
        watchers = clients
    ticks = int(seconds) + 8
    rate = RATE
    actions = int(seconds * rate)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "load.toml").write_text(SCENARIO.format(ticks=ticks, clients=clients))
        port = _free_port()
        pinned = pinning()
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "runtime.cli", "serve", str(folder / "load.toml")),
                *("--port", str(port), "--out", str(folder / "run"), "--realtime", "1"),
                *("--tokens", str(folder / "tokens.txt"), "--rate", "20", "--burst", "20"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=None if pinned is None else lambda: os.sched_setaffinity(0, pinned[0]),
        )
        mine = os.sched_getaffinity(0)
        try:
            deadline = time.monotonic() + 120
            while not (folder / "tokens.txt").exists() or not _listening(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"agora serve did not start: {server.stderr.read()}")  # type: ignore[union-attr]
                time.sleep(0.05)
            tokens = dict(
                line.split(" ", 1) for line in (folder / "tokens.txt").read_text().splitlines()
            )
            # The first ticks compile the World's kernels (numba's cache may be cold): the load
            # starts once two ticks have run.
            while _tick(port) < 2:
                if server.poll() is not None or time.monotonic() > deadline + 120:
                    raise RuntimeError(f"agora serve stopped: {server.stderr.read()}")  # type: ignore[union-attr]
                time.sleep(0.05)
            first_tick = _tick(port)
            seats = sorted(s for s in tokens if s != "admin")
            watching = seats[:watchers]
            cpus = sorted(pinned[1]) if pinned is not None else sorted(mine)
            # One client process per client CPU (at most 8), each with its share of the seats:
            # a single process of 1,000 WebSocket clients would measure itself, not the server.
            groups = max(1, min(len(cpus), 8)) if pinned is not None else 1
            jobs = [
                (
                    port,
                    {s: tokens[s] for s in seats[g::groups]},
                    actions,
                    1.0 / rate,
                    [s for s in watching if s in seats[g::groups]],
                    channel,
                    {cpus[g % len(cpus)]} if pinned is not None else set(mine),
                )
                for g in range(groups)
            ]
            if groups == 1:
                results = [_client_process(*jobs[0])]
            else:
                spawn = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(groups, mp_context=spawn) as pool:
                    results = list(pool.map(_client_process, *zip(*jobs, strict=True)))
            stats = Stats()
            for part, _ in results:
                stats.latencies += part.latencies
                stats.acks.update(part.acks)
                for status, count in part.refused.items():
                    stats.refused[status] = stats.refused.get(status, 0) + count
                stats.dropped += part.dropped
                stats.ws_messages += part.ws_messages
            wall = max(w for _, w in results)
            os.sched_setaffinity(0, mine)
            ticks_seen = _tick(port) - first_tick
            server.wait(timeout=ticks + 60)
        finally:
            if server.poll() is None:
                server.kill()
        recorded = np.load(folder / "run" / "inputs" / "negotiators.npz")["actions"][:, :, 0]
        missing = sum(
            1
            for (row, tick), value in stats.acks.items()
            if tick >= recorded.shape[0] or recorded[tick, row] != value
        )
    lat = np.array(stats.latencies) * 1000
    return {
        "clients": clients,
        "wall": wall,
        "acked": len(stats.latencies) - sum(stats.refused.values()),
        "refused": stats.refused,
        "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "ws_per_tick": stats.ws_messages / max(ticks_seen, 1),
        "watchers": watchers,
        "dropped": stats.dropped,
        "missing": missing,
        "distinct": len(stats.acks),
    }


def _run(coroutine: Any) -> Any:
    """Run the clients on uvloop where it is installed (as the server runs)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tick(port: int) -> int:
    import httpx

    try:
        return int(httpx.get(f"http://127.0.0.1:{port}/api/v1/world", timeout=5).json()["tick"])
    except httpx.HTTPError:
        return 0


def run(quick: bool) -> Rows:
    """One row per load: actions/s, latency, WebSocket messages per tick, drops, missing acks."""
    loads = (
        [(100, 10.0, 20, "http"), (100, 10.0, 100, "websocket")]
        if quick
        else [(100, 60.0, 100, "http"), (1000, 60.0, 200, "http"), (1000, 60.0, 0, "websocket")]
    )
    rows: Rows = []
    pinned = pinning()
    where = (
        "; clients and server share the CPUs"
        if pinned is None
        else f"; server on {len(pinned[0])} CPUs, clients on {len(pinned[1])} others"
    )
    for clients, seconds, watchers, channel in loads:
        m = measure(clients, seconds, watchers, channel)
        watchers = m["watchers"]
        how = (
            f"over HTTP, {watchers} also on WebSocket"
            if channel == "http"
            else "over each client's WebSocket"
        )
        rows.append(
            (
                f"{clients:,} clients x {int(seconds * RATE)} actions ({RATE:g}/s each) "
                f"{how}{where}",
                f"{m['acked'] / m['wall']:,.0f}",
                f"{m['p50']:.1f} / {m['p99']:.1f}",
                f"{m['ws_per_tick']:.0f} of {watchers}",
                str(m["dropped"]),
                ", ".join(f"{k}: {v}" for k, v in sorted(m["refused"].items())) or "0",
                f"{m['missing']} of {m['distinct']}",
            )
        )
    return rows
