"""agora serve: outside agents drive seats over HTTP and WebSocket; the served run is recorded and
replays bit for bit with no client; every bad request gets a 4xx naming the field and changes
nothing."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import agora
from runtime.cli import app as agora_cli
from runtime.kernel.errors import ScenarioError
from runtime.record.replay import verify
from runtime.serve.app import MAX_BODY, make_app
from runtime.serve.host import TOKEN_BYTES, Host

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = (ROOT / "scenarios" / "small_market.toml").read_text()


def served(tmp_path: Path, seats: str = "seats = 2", extra: str = "") -> Path:
    """small_market with ``seats`` on its negotiators (and ``extra`` appended)."""
    text = SCENARIO.replace("initial_credits = 100\n", f"initial_credits = 100\n{seats}\n", 1)
    path = tmp_path / "served.toml"
    path.write_text(text + extra)
    return path


def wait_until(predicate, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_two_outside_agents_trade_and_the_run_replays_without_them(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02)
    tokens = dict(host.tokens)
    sent: dict[tuple[str, int], float] = {}
    with TestClient(make_app(host)) as client:
        for seat, token in tokens.items():
            assert client.get(f"/api/v1/seats/{seat}", headers=bearer(token)).status_code == 200
        while not host.finished:
            for i, (seat, token) in enumerate(tokens.items()):
                action = [-0.5 + 0.5 * i]
                r = client.post(
                    f"/api/v1/seats/{seat}/action", json={"action": action}, headers=bearer(token)
                )
                if r.status_code == 409:  # the run ended between two requests
                    break
                assert r.status_code == 202, r.text
                sent[(seat, r.json()["applies_at_tick"])] = action[0]
            time.sleep(0.01)
        wait_until(lambda: host.summary_path is not None)
    recorded = np.load(tmp_path / "run" / "inputs" / "negotiators.npz")["actions"]
    # Every acknowledged action is in the recorded inputs, at the tick its answer named.
    for (seat, tick), value in sent.items():
        row = int(seat.rsplit("-", 1)[1])
        assert recorded[tick, row, 0] == value
    assert np.isfinite(recorded[:, :, 0]).sum() >= 10
    verdict = verify(tmp_path / "run")
    assert verdict.status == "identical", verdict


def test_tokens_are_random_hashed_and_act_only_for_their_seat(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02)
    tokens = dict(host.tokens)
    assert len(set(tokens.values()) | {host.admin_token}) == 3
    assert all(len(t) >= TOKEN_BYTES * 4 // 3 for t in tokens.values())  # >= 128 bits, base64
    host.tokens.clear()
    kept = pickle.dumps([host.seats, host.__dict__.get("_admin_hash")])
    assert not any(t.encode() in kept for t in tokens.values())
    a, b = tokens["negotiators-0"], tokens["negotiators-1"]
    with TestClient(make_app(host, run_loop=False)) as client:
        cases = [
            (client.get("/api/v1/seats/negotiators-0"), 401, "authorization"),
            (client.get("/api/v1/seats/negotiators-0", headers=bearer("x" * 43)), 401, None),
            (client.get("/api/v1/seats/negotiators-1", headers=bearer(a)), 403, "seat"),
            (client.get("/api/v1/seats/negotiators-7", headers=bearer(a)), 404, "seat"),
            (client.post("/api/v1/admin/pause", headers=bearer(a)), 403, "authorization"),
            (client.post("/api/v1/admin/pause"), 401, "authorization"),
            (
                client.post(
                    "/api/v1/seats/negotiators-1/action", json={"action": [0.1]}, headers=bearer(a)
                ),
                403,
                "seat",
            ),
        ]
        for response, status, field in cases:
            assert response.status_code == status, response.text
            body = response.json()["error"]
            assert body["reason"] and (field is None or body["field"] == field)
        assert client.get("/api/v1/seats/negotiators-1", headers=bearer(b)).status_code == 200
        assert np.isnan(host.pending["negotiators"]).all()  # nothing was applied


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b'"a string"', 422, "body"),
        (b"{}", 422, "body"),
        (b'{"action": [0.1], "extra": 1}', 422, "body"),
        (b'{"action": "0.1"}', 422, "action"),
        (b'{"action": [true]}', 422, "action"),
        (b'{"action": [0.1, 0.2]}', 422, "action"),
        (b'{"action": [-5]}', 422, "action"),
        (b'{"action": [1e308]}', 422, "action"),
        (b'{"action": [NaN]}', 422, "action"),
        (b'{"action": [Infinity]}', 422, "action"),
        (b'{"action": [' + b"0," * (MAX_BODY // 2) + b"0]}", 413, "body"),
        (b'{"action": [' + b"9" * 5000 + b"]}", 400, "body"),  # too long to read as a number
        (b"[" * 5000, 400, "body"),  # a depth bomb
        (b'{"action": [' + b"9" * 4000 + b"]}", 422, "action"),
        ('{"action": [0.1]}'.encode("utf-16"), 400, "body"),
    ],
)
def test_a_bad_action_gets_a_4xx_naming_the_field_and_changes_nothing(
    tmp_path, body, status, field
):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02)
    token = host.tokens["negotiators-0"]
    with TestClient(make_app(host, run_loop=False)) as client:
        r = client.post(
            "/api/v1/seats/negotiators-0/action",
            content=body,
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        assert r.status_code == status, r.text
        assert r.json()["error"]["field"] == field
    assert np.isnan(host.pending["negotiators"]).all() and host.accepted == 0


def asgi(app, path: str, chunks: list[bytes], headers: dict[str, str], leave: bool = False):
    """Call the ASGI app with a body in ``chunks`` (and the client leaving after them when
    ``leave``); the response's status and body (None: no response)."""
    import asyncio

    sent: list[dict] = []
    messages = [
        {"type": "http.request", "body": c, "more_body": i + 1 < len(chunks) or leave}
        for i, c in enumerate(chunks)
    ] + ([{"type": "http.disconnect"}] if leave else [])

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "query_string": b"",
    }
    asyncio.run(app(scope, receive, send))
    if not sent:
        return None, None
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_body_cut_short_or_chunked_past_the_limit_is_refused_and_applies_nothing(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02)
    app = make_app(host, run_loop=False)
    seat = bearer(host.tokens["negotiators-0"])
    url = "/api/v1/seats/negotiators-0/action"
    # The client leaves part way: nothing is answered, nothing applied.
    assert asgi(app, url, [b'{"action": [-0.7]'], seat, leave=True) == (None, None)
    # A Content-Length longer than the body that came.
    status, _ = asgi(app, url, [b'{"action": [-0.7]}'], {**seat, "Content-Length": "26"})
    assert status == 400
    # Chunked past the limit, on the action route and on an operator route.
    admin = bearer(host.admin_token)
    big = [b'{"factor": 0.5' + b" " * 4096] + [b" " * 4096] * 4 + [b"}"]
    assert asgi(app, "/api/v1/admin/speed", big, admin)[0] == 413
    assert asgi(app, url, [b'{"action": [0.1]' + b" " * 9000, b" " * 9000 + b"}"], seat)[0] == 413
    assert np.isnan(host.pending["negotiators"]).all() and host.accepted == 0
    assert host.factor == 0.02


def test_an_idempotency_key_returns_the_first_answer_and_refuses_another_body(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02)
    headers = {**bearer(host.tokens["negotiators-0"]), "Idempotency-Key": "order-1"}
    with TestClient(make_app(host, run_loop=False)) as client:
        url = "/api/v1/seats/negotiators-0/action"
        first = client.post(url, json={"action": [0.25]}, headers=headers)
        again = client.post(url, json={"action": [0.25]}, headers=headers)
        other = client.post(url, json={"action": [0.75]}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == {**first.json(), "replayed": True}
    assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
    assert host.accepted == 1 and host.pending["negotiators"][0, 0] == 0.25


def test_a_seat_over_its_rate_gets_429_with_retry_after(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02, rate=1.0, burst=3.0)
    headers = bearer(host.tokens["negotiators-0"])
    with TestClient(make_app(host, run_loop=False)) as client:
        codes = [
            client.get("/api/v1/seats/negotiators-0", headers=headers).status_code for _ in range(5)
        ]
        last = client.get("/api/v1/seats/negotiators-0", headers=headers)
        other = client.get(
            "/api/v1/seats/negotiators-1", headers=bearer(host.tokens["negotiators-1"])
        )
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    assert last.status_code == 429 and last.headers["Retry-After"]
    assert last.json()["error"]["field"] == "rate"
    assert other.status_code == 200  # the limit is per seat


def test_the_operator_pauses_resumes_and_changes_the_speed(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02)
    admin = bearer(host.admin_token)
    with TestClient(make_app(host)) as client:
        wait_until(lambda: host.world.tick >= 2)
        assert client.post("/api/v1/admin/pause", headers=admin).json()["paused"] is True
        wait_until(lambda: host.running is None)  # a tick under way finishes
        held = host.world.tick
        time.sleep(0.3)
        assert host.world.tick == held  # the clock holds between ticks
        for body, field in [
            ({"factor": -1}, "factor"),
            ({"factor": True}, "factor"),
            ({"factor": 10**400}, "factor"),
            ({"factor": "fast"}, "factor"),
            ({"factor": 0.5, "x": 1}, "body"),
            ({}, "body"),
        ]:
            bad = client.post("/api/v1/admin/speed", json=body, headers=admin)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field, bad.text
        assert host.factor == 0.02
        assert client.post("/api/v1/admin/speed", json={"factor": 0.01}, headers=admin).json()[
            "realtime_factor"
        ] == pytest.approx(0.01)
        client.post("/api/v1/admin/resume", headers=admin)
        wait_until(lambda: host.summary_path is not None)
    log = (tmp_path / "run" / "served" / "operator.jsonl").read_text().splitlines()
    assert [line.split('"action": ')[1].split('"')[1] for line in log] == [
        "pause",
        "speed",
        "resume",
    ]
    assert verify(tmp_path / "run").status == "identical"


def test_a_seat_streams_its_ticks_and_the_dashboard_its_rows(tmp_path):
    import json

    import httpx
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from agora.client import AsyncClient, Client, ServeError

    port, tokens = free_port(), tmp_path / "tokens.txt"
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime.cli", "serve", str(served(tmp_path))),
            *("--out", str(tmp_path / "run"), "--port", str(port), "--realtime", "0.05"),
            *("--tokens", str(tokens), "--paused"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: _up(httpx, url) or server.poll() is not None, 120)
        lines = dict(line.split(" ", 1) for line in tokens.read_text().splitlines())
        # Actions on a seat's stream get the checks a POST gets, answered on the socket (the
        # clock is held: no tick message comes between).
        stream = f"ws://127.0.0.1:{port}/api/v1/seats/negotiators-1/stream"
        with connect(f"{stream}?token={lines['negotiators-1']}") as ws:
            assert json.loads(ws.recv())["seat"] == "negotiators-1"
            ws.send(json.dumps({"action": [0.25], "key": "a-1"}))
            first = json.loads(ws.recv())
            assert first["key"] == "a-1" and first["ack"]["applies_at_tick"] == 0
            ws.send(json.dumps({"action": [0.25], "key": "a-1"}))  # a resend: the first answer
            assert json.loads(ws.recv())["ack"]["replayed"] is True
            for message, status, field in [
                ({"action": [0.5], "key": "a-1"}, 409, "Idempotency-Key"),
                ({"action": [7.0]}, 422, "action"),
                ({"action": "up"}, 422, "action"),
                ({"order": [0.1]}, 422, "body"),
                ({"action": [0.1], "key": 5}, 422, "key"),
            ]:
                ws.send(json.dumps(message))
                error = json.loads(ws.recv())["error"]
                assert error["status"] == status and error["field"] == field, (message, error)
            ws.send("{not json")
            assert json.loads(ws.recv())["error"]["status"] == 400
            ws.send(b"\x00")
            binary = json.loads(ws.recv())
            assert binary["error"]["field"] == "message" and binary["key"] is None
            ws.send(json.dumps({"action": [0.1], "key": "k" * 5000}))  # not echoed back
            long_key = json.loads(ws.recv())
            assert long_key["error"]["field"] == "Idempotency-Key" and long_key["key"] is None
        # Invalid UTF-8 in a text frame: the socket closes with 1007, and the server's log holds
        # no traceback for the client's fault (checked at the end).
        assert _invalid_utf8_closes_with_1007(port, "negotiators-0", lines["negotiators-0"])
        pending = httpx.get(
            f"{url}/api/v1/seats/negotiators-1", headers=bearer(lines["negotiators-1"])
        ).json()["pending_action"]
        assert pending == [0.25]
        with Client(url, "negotiators-0", lines["negotiators-0"]) as client:
            feed = client.ticks()
            first = next(feed)
            assert first["seat"] == "negotiators-0" and len(first["observation"]) == 4
            with connect(f"ws://127.0.0.1:{port}/api/v1/stream") as board:
                assert "world" in json.loads(board.recv())
                httpx.post(f"{url}/api/v1/admin/resume", headers=bearer(lines["admin"]))
                ticks = [next(feed)["tick"] for _ in range(3)]
                message = json.loads(board.recv())
                while "row" not in message:  # the operator's resume comes first
                    message = json.loads(board.recv())
            feed.close()
        assert ticks == sorted(ticks) and len(set(ticks)) == 3

        async def both_ways() -> tuple[dict, dict]:
            async with AsyncClient(url, "negotiators-1", lines["negotiators-1"]) as seat:
                async with seat.stream() as stream:
                    messages = stream.ticks()
                    joined = await anext(messages)
                    ack = await stream.act([0.3])
                    with pytest.raises(ServeError) as bad:
                        await stream.act([9.0])
                    assert bad.value.status == 422 and bad.value.field == "action"
                    later = await anext(messages)
                    while later["tick"] < ack["applies_at_tick"]:
                        later = await anext(messages)
                    assert later["tick"] >= joined["tick"]
                    return ack, later

        ack, applied = asyncio.run(both_ways())
        assert ack["seat"] == "negotiators-1" and applied["tick"] == ack["applies_at_tick"]
        # A message past the size limit closes the stream (1009), whatever it holds.
        stream_url = f"ws://127.0.0.1:{port}/api/v1/seats/negotiators-0/stream"
        with connect(f"{stream_url}?token={lines['negotiators-0']}") as ws:
            ws.recv()
            ws.send(json.dumps({"action": [0.1] * 5000}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        row = message["row"]
        assert {"tick", "price", "volume", "held", "issued", "wealth_hist", "seats"} <= set(row)
        with pytest.raises(ServeError) as refused:  # a wrong token: 4401 and the reason
            next(Client(url, "negotiators-0", "nope").ticks())
        assert refused.value.status == 401
        schema = httpx.get(f"{url}/openapi.json").json()
        assert "/api/v1/seats/{seat_id}/action" in schema["paths"]
        assert httpx.get(url).text.startswith("<!doctype html>")
    finally:
        server.kill()
        server.wait(30)
    assert server.stderr is not None and "Traceback" not in server.stderr.read().decode()


def _invalid_utf8_closes_with_1007(port: int, seat: str, token: str) -> bool:
    import base64
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            f"GET /api/v1/seats/{seat}/stream?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:  # the frame goes once the socket is a WebSocket
            data += s.recv(65536)
        payload, mask = b"\xff\xfe{}", b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    close = data.rfind(b"\x88")
    return close >= 0 and data[close + 2 : close + 4] == (1007).to_bytes(2, "big")


def test_a_scenario_without_usable_seats_is_refused_naming_the_problem(tmp_path):
    with pytest.raises(ScenarioError, match="no population declares seats"):
        Host(served(tmp_path, seats=""), tmp_path / "a")
    with pytest.raises(ScenarioError, match="9 seats, but the population has 8"):
        Host(served(tmp_path, seats="seats = 9"), tmp_path / "b")
    bad = served(tmp_path, seats="")
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "serve", str(bad), "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no population declares seats" in done.stderr
    assert "Traceback" not in done.stderr
    good = served(tmp_path)
    for tokens, message in [
        (tmp_path / "nowhere" / "t.txt", "no folder"),
        (tmp_path / "d" / "t.txt", "inside the run directory"),
        (good, "exists"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "runtime.cli", "serve", str(good), "--out", str(tmp_path / "d")]
            + ["--tokens", str(tokens)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "d").exists()


@pytest.mark.parametrize("kill_after", [4, 14])  # before the first checkpoint, and after it
def test_a_killed_server_with_acting_seats_resumes_and_verifies(tmp_path, kill_after):
    import httpx

    text = (
        served(tmp_path).read_text().replace("task_units = 3\n", "task_units = 3\nseats = 2\n", 1)
    )  # seats on the requesters too: a scripted role, its inputs under its inputs key
    scenario = tmp_path / "served.toml"
    scenario.write_text(text)
    out, tokens, port = tmp_path / "run", tmp_path / "tokens.txt", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime.cli", "serve", str(scenario)),
            *("--out", str(out), "--port", str(port), "--realtime", "0.15"),
            *("--tokens", str(tokens)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _up(httpx, url) or proc.poll() is not None, 120)
        assert oct(os.stat(tokens).st_mode & 0o777) == "0o600"
        seats = dict(line.split(" ", 1) for line in tokens.read_text().splitlines()[1:])
        i = 0
        while httpx.get(f"{url}/api/v1/world").json()["tick"] < kill_after:
            for seat, token in seats.items():
                size = 1 if seat.startswith("negotiators") else 2
                action = [round(-0.9 + 0.1 * (i % 19), 2)] * size
                r = httpx.post(
                    f"{url}/api/v1/seats/{seat}/action",
                    json={"action": action},
                    headers=bearer(token),
                )
                assert r.status_code == 202, r.text
            i += 1
            time.sleep(0.03)
        if kill_after > 10:  # an operator's fault too, injected after the first checkpoint
            admin = tokens.read_text().splitlines()[0].split()[1]
            r = httpx.post(
                f"{url}/api/v1/admin/fault",
                json={"kind": "crash", "population": "workers", "fraction": 0.3},
                headers=bearer(admin),
            )
            assert r.status_code == 200, r.text
            r = httpx.post(
                f"{url}/api/v1/seats/negotiators-0/stake",
                json={"micro": 10_000_000},
                headers=bearer(seats["negotiators-0"]),
            )
            assert r.status_code == 202, r.text
            wait_until(lambda: httpx.get(f"{url}/api/v1/world").json()["tick"] > kill_after + 1)
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (out / "summary.json").exists() and i >= 1
    done = CliRunner().invoke(agora_cli, ["run", "--resume", str(out), "-q"])
    assert done.exit_code == 0, done.output
    verdict = verify(out)
    assert verdict.status == "identical", verdict.lines


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_example_agents_trade_through_a_served_world_that_then_replays(tmp_path):
    port, out, tokens = free_port(), tmp_path / "run", tmp_path / "tokens.txt"
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime.cli", "serve"),
            str(ROOT / "scenarios" / "served_market.toml"),
            *("--out", str(out), "--port", str(port), "--realtime", "0.1"),
            *("--tokens", str(tokens), "--ticks", "30", "--paused"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: tokens.exists() or server.poll() is not None, 120)
        import httpx

        wait_until(lambda: _up(httpx, url) or server.poll() is not None, 120)
        agents = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "examples" / "served" / script),
                    "--url",
                    url,
                    "--seat",
                    seat,
                    "--tokens",
                    str(tokens),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for script, seat in (
                ("scripted_trader.py", "negotiators-0"),
                ("ppo_negotiator.py", "negotiators-1"),
            )
        ]
        # The clock starts held: once both agents follow their seats, the operator lets it go.
        wait_until(lambda: httpx.get(f"{url}/api/v1/world").json()["seats_streaming"] == 2, 120)
        admin = tokens.read_text().splitlines()[0].split()[1]
        httpx.post(f"{url}/api/v1/admin/resume", headers=bearer(admin)).raise_for_status()
        outputs = [a.communicate(timeout=300) for a in agents]
        assert [a.returncode for a in agents] == [0, 0], outputs
        assert server.wait(120) == 0, server.stderr.read() if server.stderr else ""
    finally:
        for p in (server,):
            if p.poll() is None:
                p.kill()
    assert "contracts" in outputs[0][0] and "credits gained" in outputs[1][0]
    actions = np.load(out / "inputs" / "negotiators.npz")["actions"][:, :, 0]
    assert np.isfinite(actions[:, 0]).sum() >= 25 and np.isfinite(actions[:, 1]).sum() >= 25
    assert verify(out).status == "identical"


def _up(httpx, url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/world", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_operator_injects_a_fault_that_replays_and_bad_ones_are_refused(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02, paused=True)
    admin = bearer(host.admin_token)
    with TestClient(make_app(host)) as client:
        url = "/api/v1/admin/fault"
        for body, field in [
            ({"kind": "meteor"}, "kind"),
            ({"kind": "crash", "population": "nobody", "fraction": 0.5}, "fault"),
            ({"kind": "crash", "at": 3}, "body"),
            ({"kind": "crash", "fraction": 7}, "fraction"),
            ([1, 2], "body"),
        ]:
            r = client.post(url, json=body, headers=admin)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
        seat = bearer(host.tokens["negotiators-0"])
        assert client.post(url, json={"kind": "crash"}, headers=seat).status_code == 403
        assert host.world.outside is not None and host.world.outside.pending == []
        client.post("/api/v1/admin/resume", headers=admin)
        wait_until(lambda: host.world.tick >= 5)
        r = client.post(
            url,
            json={"kind": "crash", "population": "workers", "fraction": 0.5, "duration": 4},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        at = r.json()["applies_at_tick"]
        wait_until(lambda: host.summary_path is not None)
    workers = next(p for p in host.world.populations if p.name == "workers")
    assert host.world.scenario.fault[-1].at == at and workers.alive.all()  # restarted after 4
    entries = (tmp_path / "run" / "inputs" / "outside.json").read_text()
    assert f'"at": {at}' in entries and '"crash"' in entries
    assert verify(tmp_path / "run").status == "identical"


def test_a_seat_stakes_and_unstakes_through_the_ledger_and_the_run_replays(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02, paused=True)
    token = bearer(host.tokens["negotiators-1"])
    url = "/api/v1/seats/negotiators-1/stake"
    with TestClient(make_app(host)) as client:
        for body, status, field in [
            ({"micro": 0}, 422, "micro"),
            ({"micro": 1.5}, 422, "micro"),
            ({"micro": True}, 422, "micro"),
            ({"micro": 10**30}, 422, "micro"),
            ({"micro": 200_000_000}, 422, "micro"),  # an overdraft: it holds 100 credits
            ({"micro": -1}, 422, "micro"),  # nothing staked yet
            ({"credits": 5}, 422, "body"),
        ]:
            r = client.post(url, json=body, headers=token)
            assert r.status_code == status and r.json()["error"]["field"] == field, r.text
        assert host.world.outside is not None and host.world.outside.pending == []
        other = bearer(host.tokens["negotiators-0"])
        assert client.post(url, json={"micro": 5}, headers=other).status_code == 403
        first = client.post(url, json={"micro": 60_000_000}, headers=token)
        assert first.status_code == 202 and first.json()["applies_at_tick"] == 0
        # What is queued counts: a second stake past what is left is an overdraft.
        assert client.post(url, json={"micro": 50_000_000}, headers=token).status_code == 422
        client.post("/api/v1/admin/resume", headers=bearer(host.admin_token))
        wait_until(lambda: host.world.tick >= 3)
        view = client.get("/api/v1/seats/negotiators-1", headers=token).json()
        assert view["stake_micro"] == 60_000_000
        assert client.post(url, json={"micro": -20_000_000}, headers=token).status_code == 202
        wait_until(lambda: host.summary_path is not None)
    events = agora.open_run(tmp_path / "run").events().to_pylist()
    stakes = [e["amount_micro"] for e in events if e["kind"] == "outside_stake"]
    assert sorted(stakes) == [-20_000_000, 60_000_000]
    assert verify(tmp_path / "run").status == "identical"


def test_member_seats_vote_and_the_operator_opens_proposals_and_the_run_replays(tmp_path):
    host = Host(
        ROOT / "scenarios" / "served_market.toml",
        tmp_path / "run",
        realtime=0.02,
        ticks=24,
        paused=True,
    )
    admin = bearer(host.admin_token)
    w0, w1 = bearer(host.tokens["workers-0"]), bearer(host.tokens["workers-1"])
    negotiator = bearer(host.tokens["negotiators-0"])
    propose = "/api/v1/admin/proposal"
    vote0, vote1 = "/api/v1/seats/workers-0/vote", "/api/v1/seats/workers-1/vote"
    with TestClient(make_app(host)) as client:
        for body, field in [
            ({"changes": {"nonsense": 1.0}}, "changes.nonsense"),
            ({"changes": {"temperature": 1e-308}}, "changes.temperature"),
            ({"changes": {"voting_period": 1.5}}, "changes.voting_period"),
            ({"changes": {"voting_period": 1}}, "changes.voting_period"),
            ({"changes": {"price_elasticity": -3.0}}, "changes.price_elasticity"),
            ({"changes": {"slash_fraction": 5.0}}, "changes.slash_fraction"),
            ({"changes": {"fee_rate": 0.04}, "credits": 77}, "credits"),
            ({"changes": {"fee_rate": 0.02}, "at": 3}, "body"),
            ({"kind": "coup"}, "kind"),
            ({"changes": {"fee_rate": 0.02}, "proposer": 99}, "proposer"),
            ({"kind": "treasury", "target": 99, "credits": 5}, "target"),
            ({"changes": {"fee_rate": 0.02}, "turnout": 2}, "turnout"),
            ({"kind": "admit", "target": 3}, "proposal"),  # already a member
            ("fee_rate", "body"),
        ]:
            r = client.post(propose, json=body, headers=admin)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, (body, r.text)
        assert (
            client.post(propose, json={"changes": {"fee_rate": 0.02}}, headers=w0).status_code
            == 403
        )
        assert host.world.outside is not None and host.world.outside.pending == []
        # No proposal is open yet; a negotiator is not a member.
        r = client.post(vote0, json={"proposal": 0, "support": True}, headers=w0)
        assert r.status_code == 404 and r.json()["error"]["field"] == "proposal"
        r = client.post(
            "/api/v1/seats/negotiators-0/vote",
            json={"proposal": 0, "support": True},
            headers=negotiator,
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "seat"
        # The operator's proposal: nobody votes by the scenario's dice (turnout 0).
        r = client.post(
            propose, json={"changes": {"fee_rate": 0.03}, "turnout": 0.0}, headers=admin
        )
        assert r.status_code == 200 and r.json()["applies_at_tick"] == 0, r.text
        # A withdrawn action leaves nothing pending.
        client.post("/api/v1/seats/workers-0/action", json={"action": [0.5, -1.0]}, headers=w0)
        assert client.delete("/api/v1/seats/workers-0/action", headers=w0).json()["cancelled"]
        assert not client.delete("/api/v1/seats/workers-0/action", headers=w0).json()["cancelled"]
        assert client.get("/api/v1/seats/workers-0", headers=w0).json()["pending_action"] is None
        client.post("/api/v1/admin/resume", headers=admin)
        wait_until(lambda: len(host.proposals) >= 1)
        client.post("/api/v1/admin/pause", headers=admin)
        assert client.get("/api/v1/seats/workers-0", headers=w0).json()["can_vote_on"] == [0]
        for body, status, field in [
            ({"proposal": 0}, 422, "body"),
            ({"proposal": "0", "support": True}, 422, "proposal"),
            ({"proposal": 0, "support": "yes"}, 422, "support"),
            ({"proposal": 7, "support": True}, 404, "proposal"),
        ]:
            r = client.post(vote0, json=body, headers=w0)
            assert r.status_code == status and r.json()["error"]["field"] == field, r.text
        assert (
            client.post(vote1, json={"proposal": 0, "support": True}, headers=w0).status_code == 403
        )
        assert (
            client.post(vote0, json={"proposal": 0, "support": True}, headers=w0).status_code == 202
        )
        r = client.post(vote0, json={"proposal": 0, "support": False}, headers=w0)
        assert r.status_code == 409 and "already voted" in r.json()["error"]["reason"]
        assert (
            client.post(vote1, json={"proposal": 0, "support": True}, headers=w1).status_code == 202
        )
        client.post("/api/v1/admin/resume", headers=admin)
        wait_until(lambda: len(host.proposals) >= 2)  # the scenario's own, at tick 5
        r = client.post(vote0, json={"proposal": 1, "support": False}, headers=w0)
        assert r.status_code == 202, r.text
        wait_until(lambda: host.proposals[0]["state"] != "open")
        r = client.post(vote1, json={"proposal": 0, "support": True}, headers=w1)
        assert r.status_code == 409 and "closed" in r.json()["error"]["reason"]
        wait_until(lambda: host.summary_path is not None)
        listed = client.get("/api/v1/proposals").json()
        r = client.post(vote1, json={"proposal": 1, "support": True}, headers=w1)
        assert r.status_code == 409 and r.json()["error"]["field"] == "tick"  # no tick is left
    assert listed["members"] == "workers" and len(listed["proposals"]) == 2
    nao = host.world.organisation.nao
    # Two of ten members voted on the operator's proposal: short of the quorum.
    assert nao.proposals[0].votes == {0: True, 1: True}
    assert nao.proposals[0].state == "rejected" and "quorum" in nao.proposals[0].reason
    # On the scenario's proposal the dice voted for the other members, never for the seats.
    assert nao.proposals[1].votes[0] is False and 1 not in nao.proposals[1].votes
    assert len(nao.proposals[1].votes) > 2
    events = agora.open_run(tmp_path / "run").events().to_pylist()
    votes = [(e["agent"], e["other"], e["value"]) for e in events if e["kind"] == "outside_vote"]
    accounts = [host.seats["workers-0"].account, host.seats["workers-1"].account]
    assert sorted(votes) == sorted(
        [(accounts[0], 0, 1.0), (accounts[1], 0, 1.0), (accounts[0], 1, 0.0)]
    )
    entries = (tmp_path / "run" / "inputs" / "outside.json").read_text()
    assert '"vote"' in entries and '"proposal"' in entries
    operator = (tmp_path / "run" / "served" / "operator.jsonl").read_text()
    assert '"action": "proposal"' in operator
    assert verify(tmp_path / "run").status == "identical"


def test_a_world_without_governance_refuses_votes_and_proposals(tmp_path):
    host = Host(served(tmp_path), tmp_path / "run", realtime=0.02, paused=True)
    seat = bearer(host.tokens["negotiators-0"])
    with TestClient(make_app(host)) as client:
        r = client.post(
            "/api/v1/seats/negotiators-0/vote", json={"proposal": 0, "support": True}, headers=seat
        )
        assert r.status_code == 404 and "no governance" in r.json()["error"]["reason"]
        r = client.post(
            "/api/v1/admin/proposal",
            json={"changes": {"fee_rate": 0.02}},
            headers=bearer(host.admin_token),
        )
        assert r.status_code == 404 and "no governance" in r.json()["error"]["reason"]
        assert client.get("/api/v1/proposals").json() == {
            "members": None,
            "tick": 0,
            "proposals": [],
        }
    assert host.world.outside is not None and host.world.outside.pending == []


@pytest.mark.parametrize(
    "entries, named",
    [
        ([{"at": 1, "vote": {"account": 3, "proposal": 0}}], "vote"),
        ([{"at": 1, "vote": {"account": -3, "proposal": 0, "support": True}}], "vote"),
        ([{"at": 1, "proposal": {"changes": {"fee_rate": "high"}}}], "proposal"),
        ([{"at": 1, "proposal": {"kind": "coup"}}], "proposal"),
        ([{"at": 1, "vote": {}, "stake": {}}], "one of"),
    ],
)
def test_a_tampered_outside_inputs_file_is_named_before_any_tick(tmp_path, entries, named):
    (tmp_path / "outside.json").write_text(
        json.dumps({"kind": "agora-outside-inputs", "entries": entries})
    )
    scenario = served(tmp_path, extra='\n[record]\noutside_inputs = "outside.json"\n')
    with pytest.raises(ScenarioError, match=f"record.outside_inputs: .*{named}"):
        agora.Simulation.from_file(scenario)


def test_what_the_running_tick_has_taken_still_counts_until_its_views_show_it(tmp_path):
    host = Host(
        ROOT / "scenarios" / "served_market.toml", tmp_path / "run", realtime=0.02, paused=True
    )
    admin = bearer(host.admin_token)
    seat = host.seats["workers-0"]
    with TestClient(make_app(host)) as client:
        client.post("/api/v1/admin/resume", headers=admin)
        wait_until(lambda: len(host.proposals) >= 1)
        client.post("/api/v1/admin/pause", headers=admin)
        wait_until(lambda: host.running is None)
        vote = "/api/v1/seats/workers-0/vote"
        assert (
            client.post(
                vote,
                json={"proposal": 0, "support": True},
                headers=bearer(host.tokens["workers-0"]),
            ).status_code
            == 202
        )
        liquid = host.views["workers"]["balance"][seat.row]
        stake = "/api/v1/seats/workers-0/stake"
        token = bearer(host.tokens["workers-0"])
        assert client.post(stake, json={"micro": liquid}, headers=token).status_code == 202
        # The hand-over to a tick: the tick takes the entries before its views show them.
        outside = host.world.outside
        assert outside is not None
        host._applying, outside.pending = list(outside.pending), []
        r = client.post(vote, json={"proposal": 0, "support": False}, headers=token)
        assert r.status_code == 409 and "already voted" in r.json()["error"]["reason"]
        assert client.post(stake, json={"micro": 1}, headers=token).status_code == 422
        view = client.get("/api/v1/seats/workers-0", headers=token).json()
        assert 0 not in view["can_vote_on"]
        outside.pending, host._applying = host._applying, []


def test_an_operators_resent_request_opens_one_proposal(tmp_path):
    host = Host(
        ROOT / "scenarios" / "served_market.toml", tmp_path / "run", realtime=0.02, paused=True
    )
    headers = {**bearer(host.admin_token), "Idempotency-Key": "raise-fee"}
    url = "/api/v1/admin/proposal"
    with TestClient(make_app(host)) as client:
        first = client.post(url, json={"changes": {"fee_rate": 0.03}}, headers=headers)
        again = client.post(url, json={"changes": {"fee_rate": 0.03}}, headers=headers)
        assert first.status_code == again.status_code == 200 and again.json()["replayed"]
        other = client.post(url, json={"changes": {"fee_rate": 0.04}}, headers=headers)
        assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
        fault = client.post(
            "/api/v1/admin/fault",
            json={"kind": "crash", "population": "workers", "fraction": 0.5},
            headers={**headers, "Idempotency-Key": "crash-1"},
        )
        assert fault.status_code == 200
    assert host.world.outside is not None
    assert [sorted(e) for e in host.world.outside.pending] == [["at", "proposal"], ["at", "fault"]]
