"""The HTTP and WebSocket interface of a served world (FastAPI, served by uvicorn).

Routes (the OpenAPI schema is at ``/openapi.json``, its pages at ``/docs``):

* ``GET /`` -- the dashboard, one self-contained page.
* ``GET /api/v1/world`` -- the run's progress, the price and the seats (no token).
* ``GET /api/v1/series`` -- the dashboard's per-tick rows (no token).
* ``GET /api/v1/seats/{seat}`` -- a seat's observation, balance, stake, reputation and action
  space (its token).
* ``POST /api/v1/seats/{seat}/action`` -- the seat's action for its next tick (its token; an
  ``Idempotency-Key`` header makes resends safe); ``DELETE`` withdraws it.
* ``POST /api/v1/seats/{seat}/stake`` -- stake or unstake at the next tick (its token).
* ``GET /api/v1/proposals`` -- the organisation's proposals, their state and tally (no token).
* ``POST /api/v1/seats/{seat}/vote`` -- a member seat's vote on an open proposal (its token).
* ``WS /api/v1/seats/{seat}/stream?token=...`` -- each tick's observation and the events naming
  the seat; the seat may send its actions on it too (``{"action": [...], "key": ...}``, answered
  by ``{"ack": {...}, "key": ...}`` or ``{"error": {...}, "key": ...}``), as it would POST them.
* ``WS /api/v1/stream`` -- each tick's dashboard row.
* ``POST /api/v1/admin/pause``, ``/resume``, ``/speed``, ``/fault``, ``/proposal`` -- the
  operator (the admin token).

Every refusal is a 4xx with ``{"error": {"field": ..., "reason": ...}}``; a request is applied
whole or not at all.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.serve.host import Host, Message, Refused

MAX_BODY = 16 * 1024  # bytes: a larger request body is refused with 413
QUEUE = 64  # messages a subscriber may fall behind before it loses the oldest


def _error(
    status: int, field: str, reason: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"field": field, "reason": reason}}, status_code=status, headers=headers
    )


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def make_app(host: Host, *, run_loop: bool = True) -> Front:
    """The ASGI application serving ``host`` (:class:`Front` before the FastAPI app); with
    ``run_loop`` the world's ticks start with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        task = asyncio.create_task(host.run_loop()) if run_loop else None
        app.state.loop_task = task
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass

    app = FastAPI(
        title="Agora served world",
        version="1",
        description="Outside agents join a running Agora world: each seat acts with its own "
        "token; actions that arrive during tick t apply at tick t+1 and are recorded inputs.",
        lifespan=lifespan,
    )

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return _error(exc.status, exc.field, exc.reason, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ["body"], "msg": "invalid request"}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return _error(422, loc, str(first.get("msg", "invalid")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "path", str(exc.detail))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        page = resources.files("runtime.serve").joinpath("dashboard.html").read_text()
        return HTMLResponse(page)

    @app.get("/api/v1/world", summary="The run's progress, the price and the seats")
    async def world() -> dict[str, Any]:
        return host.world_view()

    @app.get("/api/v1/series", summary="The dashboard's per-tick rows")
    async def series(since: int = 0) -> dict[str, Any]:
        return {"rows": [r for r in host.series if r["tick"] >= since]}

    @app.get("/api/v1/seats/{seat_id}", summary="A seat's view (its token)")
    async def seat_view(seat_id: str, request: Request) -> dict[str, Any]:
        seat = host.seat(seat_id, _bearer(request))
        host.throttle(seat)
        return host.seat_view(seat)

    @app.post(
        "/api/v1/seats/{seat_id}/action",
        status_code=202,
        summary="The seat's action for its next tick (its token)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["action"],
                            "properties": {
                                "action": {"type": "array", "items": {"type": "number"}}
                            },
                        }
                    }
                },
            }
        },
    )
    async def act(seat_id: str, request: Request) -> dict[str, Any]:
        # Requests reach this route only where the app runs without its front (Front below
        # answers the route first); both call act_on().
        return act_on(
            host,
            seat_id,
            _bearer(request),
            request.headers.get("idempotency-key"),
            await request.body(),
        )

    @app.delete(
        "/api/v1/seats/{seat_id}/action",
        summary="Withdraw the seat's pending action: it acts as its role's baseline (its token)",
    )
    async def cancel(seat_id: str, request: Request) -> dict[str, Any]:
        seat = host.seat(seat_id, _bearer(request))
        host.throttle(seat)
        return host.cancel(seat)

    @app.get("/api/v1/proposals", summary="The organisation's proposals, as of the last tick")
    async def proposals() -> dict[str, Any]:
        org = host.world.organisation
        return {
            "members": None if org is None else org.cfg.members,
            "tick": host.world.tick,
            "proposals": host.proposals,
        }

    @app.post(
        "/api/v1/seats/{seat_id}/vote",
        status_code=202,
        summary="A member seat's vote on an open proposal, cast at its next tick (its token)",
    )
    async def vote(seat_id: str, request: Request) -> dict[str, Any]:
        seat = host.seat(seat_id, _bearer(request))
        host.throttle(seat)
        body = await request.body()
        return host.vote(seat, parse_json(body), request.headers.get("idempotency-key"), body)

    @app.post(
        "/api/v1/seats/{seat_id}/stake",
        status_code=202,
        summary="Stake (micro > 0) or unstake (micro < 0) at the next tick (the seat's token)",
    )
    async def stake(seat_id: str, request: Request) -> dict[str, Any]:
        seat = host.seat(seat_id, _bearer(request))
        host.throttle(seat)
        body = await request.body()
        payload = parse_json(body)
        if not isinstance(payload, dict) or set(payload) != {"micro"}:
            raise Refused(422, "body", 'expected {"micro": whole micro-credits}')
        return host.stake(seat, payload["micro"], request.headers.get("idempotency-key"), body)

    @app.post("/api/v1/admin/pause", summary="Hold the clock (admin token)")
    async def pause(request: Request) -> dict[str, Any]:
        host.admin(_bearer(request))
        host.pause(True)
        return host.world_view()

    @app.post("/api/v1/admin/resume", summary="Let the clock go on (admin token)")
    async def resume(request: Request) -> dict[str, Any]:
        host.admin(_bearer(request))
        host.pause(False)
        return host.world_view()

    @app.post("/api/v1/admin/speed", summary="Wall seconds per unit of virtual time (admin token)")
    async def speed(request: Request) -> dict[str, Any]:
        host.admin(_bearer(request))
        payload = parse_json(await request.body())
        if not isinstance(payload, dict) or set(payload) != {"factor"}:
            raise Refused(422, "body", 'expected {"factor": seconds}')
        factor = payload["factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise Refused(422, "factor", "must be a number of seconds from 0.0001 to 3600")
        host.set_speed(factor)
        return host.world_view()

    @app.post(
        "/api/v1/admin/fault",
        summary="Inject a fault of the scenario's kinds at the next tick (admin token)",
    )
    async def fault(request: Request) -> dict[str, Any]:
        host.admin(_bearer(request))
        body = await request.body()
        return host.inject_fault(parse_json(body), request.headers.get("idempotency-key"), body)

    @app.post(
        "/api/v1/admin/proposal",
        summary="Open a governance proposal at the next tick (admin token)",
    )
    async def propose(request: Request) -> dict[str, Any]:
        host.admin(_bearer(request))
        body = await request.body()
        return host.open_proposal(parse_json(body), request.headers.get("idempotency-key"), body)

    @app.websocket("/api/v1/seats/{seat_id}/stream")
    async def seat_stream(websocket: WebSocket, seat_id: str) -> None:
        token = websocket.query_params.get("token")
        try:
            seat = host.seat(seat_id, token)
        except Refused as exc:  # accepted only to say why: 4401, 4403 or 4404 and the reason
            await websocket.accept()
            await websocket.close(code=4000 + exc.status, reason=exc.reason[:120])
            return
        await websocket.accept()
        q: asyncio.Queue[Message] = asyncio.Queue(QUEUE)
        seat.queues.add(q)
        try:
            await websocket.send_json({"tick": host.world.tick, **host.seat_view(seat)})
            await _pump(websocket, q, partial(_socket_action, host, seat_id, token))
        finally:
            seat.queues.discard(q)

    @app.websocket("/api/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        q: asyncio.Queue[Message] = asyncio.Queue(QUEUE)
        host.watchers.add(q)
        try:
            await websocket.send_json({"world": host.world_view()})
            await _pump(websocket, q)
        finally:
            host.watchers.discard(q)

    return Front(app, host)


def parse_json(body: bytes) -> Any:
    """``body`` as JSON, or Refused (400) naming why not -- depth bombs and numbers too long to
    read included."""
    try:
        return json.loads(body.decode("utf-8"))  # UTF-8 only, as JSON on the wire is
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise Refused(400, "body", f"not JSON ({str(exc)[:120]})") from None


def _socket_action(host: Host, seat_id: str, token: str | None, text: str) -> dict[str, Any]:
    """The answer to a message a seat sent on its stream: an action, as ``POST .../action``
    takes it (the same checks, rate limit and idempotency keys), echoing the message's ``key``."""
    key = None
    try:
        body = text.encode("utf-8", "surrogatepass")
        if len(body) > MAX_BODY:
            raise Refused(413, "body", f"larger than {MAX_BODY} bytes")
        message = parse_json(body)
        if isinstance(message, dict):
            key = message.pop("key", None)
            if key is not None and not isinstance(key, str):
                key = None
                raise Refused(422, "key", "must be a string (the action's idempotency key)")
        # The message's text is the body a reused key is compared with (the key is in both).
        return {"ack": act(host, seat_id, token, key, body, message), "key": key}
    except Refused as exc:
        error = {"status": exc.status, "field": exc.field, "reason": exc.reason}
        if exc.retry_after is not None:
            error["retry_after"] = exc.retry_after
        # A key too long to be one is not echoed: a refusal is never larger than its reason.
        return {"error": error, "key": key if key is None or len(key) <= 200 else None}


def act_on(
    host: Host, seat_id: str, token: str | None, key: str | None, body: bytes
) -> dict[str, Any]:
    """``POST /api/v1/seats/{seat_id}/action``: check, then accept (Refused otherwise)."""
    if len(body) > MAX_BODY:
        raise Refused(413, "body", f"larger than {MAX_BODY} bytes")
    return act(host, seat_id, token, key, body, None)


def act(
    host: Host, seat_id: str, token: str | None, key: str | None, body: bytes, payload: Any
) -> dict[str, Any]:
    """A seat's action, from a request ``body`` (parsed here unless ``payload`` is given)."""
    seat = host.seat(seat_id, token)
    host.throttle(seat)
    if payload is None:
        payload = parse_json(body)
    if not isinstance(payload, dict) or set(payload) - {"action"} or "action" not in payload:
        raise Refused(422, "body", 'expected {"action": [numbers]}')
    action = payload["action"]
    if not isinstance(action, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in action
    ):
        raise Refused(422, "action", "expected a list of numbers")
    return host.act(seat, action, key, body)


ACTION_PATH = re.compile(r"^/api/v1/seats/([^/]+)/action$")


class Front:
    """The ASGI application ``agora serve`` runs: every request body is held to ``MAX_BODY``
    (413), and seats' actions -- the one route under load -- are answered here, without the
    framework's per-request machinery; everything else goes to the FastAPI app."""

    def __init__(self, app: FastAPI, host: Host) -> None:
        self.app, self.host = app, host

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            status, field = (413, "body") if length.isdigit() else (400, "Content-Length")
            reason = f"larger than {MAX_BODY} bytes" if status == 413 else "not a whole number"
            await _send_error(send, status, field, reason)
            return
        # Every body is read here, whole and bounded, before anything acts on it: a body over
        # the limit (chunked ones too) is refused, and one whose client left part way is dropped.
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await _send_error(send, 413, "body", f"larger than {MAX_BODY} bytes")
                return
        if length is not None and len(body) != int(length):
            await _send_error(send, 400, "body", "shorter than its Content-Length")
            return
        match = ACTION_PATH.match(scope["path"])
        if match is None or scope["method"] != "POST":
            await self.app(scope, _replay(body), send)
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        try:
            answer = act_on(self.host, match.group(1), bearer, headers.get("idempotency-key"), body)
        except Refused as exc:
            await _send_error(send, exc.status, exc.field, exc.reason, exc.retry_after)
            return
        await _send_json(send, 202, answer)


def _replay(body: bytes) -> Any:
    """A ``receive`` that gives the app the body already read, then waits for the disconnect."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the app asks again only to learn of a disconnect
        return {"type": "http.disconnect"}

    return receive


async def _send_error(
    send: Any, status: int, field: str, reason: str, retry_after: float | None = None
) -> None:
    extra = [] if retry_after is None else [(b"retry-after", str(retry_after).encode())]
    await _send_json(send, status, {"error": {"field": field, "reason": reason}}, extra)


async def _send_json(
    send: Any, status: int, content: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(content, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


SEND_TIMEOUT = 10.0  # seconds a client may take to read what it is sent before it is dropped


async def _send_or_drop(websocket: WebSocket, text: str) -> None:
    """Send ``text``; a client that does not read it within ``SEND_TIMEOUT`` is disconnected
    (ConnectionError), so it can hold neither the socket nor the server's shutdown."""
    try:
        await asyncio.wait_for(websocket.send_text(text), SEND_TIMEOUT)
    except TimeoutError:
        raise ConnectionError("the client stopped reading") from None


async def _pump(
    websocket: WebSocket,
    q: asyncio.Queue[Message],
    answer: Callable[[str], dict[str, Any]] | None = None,
) -> None:
    """Send queued messages until the client leaves, the server stops, or the run finishes; with
    ``answer``, each text message the client sends is answered with ``answer(text)``."""
    lock = asyncio.Lock()  # one message at a time on the socket: tick messages and answers

    async def send() -> None:
        while True:
            message = await q.get()
            async with lock:
                if isinstance(message, str):  # a tick's message, encoded off the loop's thread
                    await _send_or_drop(websocket, message)
                    continue
                await _send_or_drop(websocket, json.dumps(message, separators=(",", ":")))
            if message.get("finished"):
                await websocket.close()
                return

    async def listen() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if answer is None:
                continue  # a watcher only listens
            text = message.get("text")
            reply = (
                answer(text)
                if text is not None
                else {
                    "error": {"status": 400, "field": "message", "reason": "send text (JSON)"},
                    "key": None,
                }
            )
            async with lock:
                await _send_or_drop(websocket, json.dumps(reply, separators=(",", ":")))

    tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(listen())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
