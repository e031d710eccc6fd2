"""Load on a served world: 1,000 outside agents acting at once over loopback.

``agora serve`` runs in its own process (a scenario whose 1,000 negotiators are all seats, one tick
a second); 1,000 clients in this process each keep one HTTP/1.1 connection and send a bounded
number of actions, paced to stay under their seat's rate limit, and a share of them also hold the
seat's WebSocket. Reported: actions acknowledged per second, the latency from sending an action to
its acknowledgement (p50, p99), WebSocket messages delivered per tick, connections dropped, and
acknowledged actions missing from the recorded inputs (each seat's last acknowledged action for a
tick must be the one the run took; this must be 0).

Clients and server share this machine's cores, so the figures are a floor for the server alone.
"""

from __future__ import annotations

import asyncio
import json
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
    """One agent: a keep-alive connection, ``actions`` POSTs ``gap`` seconds apart."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats.dropped += 1
        return
    head = (
        f"POST /api/v1/seats/{seat}/action HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    )
    await asyncio.sleep(gap * (row % 97) / 97)  # spread the clients over the first gap
    try:
        for i in range(actions):
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
            await asyncio.sleep(gap)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        stats.dropped += 1
    finally:
        writer.close()


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
    port: int, tokens: dict[str, str], actions: int, gap: float, watchers: int, stats: Stats
) -> float:
    seats = sorted(s for s in tokens if s != "admin")
    stop = asyncio.Event()
    watch = [
        asyncio.create_task(_watch(port, seat, tokens[seat], stats, stop))
        for seat in seats[:watchers]
    ]
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, int(seat.rsplit("-", 1)[1]), seat, tokens[seat], actions, gap, stats)
            for seat in seats
        )
    )
    wall = time.perf_counter() - start
    stop.set()
    for task in watch:
        task.cancel()
    await asyncio.gather(*watch, return_exceptions=True)
    return wall


def measure(clients: int, seconds: float, watchers: int) -> dict[str, Any]:
    """Serve a world with ``clients`` seats for about ``seconds`` and load it."""
    ticks = int(seconds) + 5
    rate = 5.0  # actions a second per client: 1,000 clients offer 5,000 actions/s
    actions = int(seconds * rate)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "load.toml").write_text(SCENARIO.format(ticks=ticks, clients=clients))
        port = _free_port()
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
        )
        try:
            deadline = time.monotonic() + 120
            while not (folder / "tokens.txt").exists() or not _listening(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"agora serve did not start: {server.stderr.read()}")  # type: ignore[union-attr]
                time.sleep(0.05)
            tokens = dict(
                line.split(" ", 1) for line in (folder / "tokens.txt").read_text().splitlines()
            )
            first_tick = _tick(port)
            stats = Stats()
            wall = _run(_load(port, tokens, actions, 1.0 / rate, watchers, stats))
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
    loads = [(100, 10.0, 20)] if quick else [(100, 60.0, 100), (1000, 60.0, 200)]
    rows: Rows = []
    for clients, seconds, watchers in loads:
        m = measure(clients, seconds, watchers)
        rows.append(
            (
                f"{clients:,} clients x {int(seconds * 5)} actions (5/s each), "
                f"{watchers} on WebSocket",
                f"{m['acked'] / m['wall']:,.0f}",
                f"{m['p50']:.1f} / {m['p99']:.1f}",
                f"{m['ws_per_tick']:.0f} of {watchers}",
                str(m["dropped"]),
                ", ".join(f"{k}: {v}" for k, v in sorted(m["refused"].items())) or "0",
                f"{m['missing']} of {m['distinct']}",
            )
        )
    return rows
