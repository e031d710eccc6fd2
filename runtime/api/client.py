"""Clients of a served world (``agora serve``), importable as ``agora.client``.

* :class:`Client` -- one seat, synchronous: ``view()``, ``act(action)``, ``stake(micro)``,
  ``ticks()`` (each tick's message from the seat's WebSocket).
* :class:`AsyncClient` -- the same with ``async``/``await``; ``stream()`` opens the seat's
  WebSocket for both directions (:class:`SeatStream`): tick messages in, actions out, each
  acknowledged on the socket, so one connection does both.
* :class:`RemoteSeatEnv` -- the seat as a ``gymnasium.Env``: ``step`` sends the action and waits
  for the tick that applied it, so a policy trained in ``agora/Scenario-v0`` acts unchanged.
* :class:`ServeError` -- a refusal from the server: its HTTP status, the field and the reason.

Any language can do what these do: the routes are plain HTTP and JSON (``/openapi.json``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from economy import MICRO


class ServeError(Exception):
    """A request the server refused (4xx): ``status``, ``field`` and ``reason``."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(f"HTTP {status}: {field}: {reason}")
        self.status, self.field, self.reason = status, field, reason


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            raise ServeError(response.status_code, str(error["field"]), str(error["reason"]))
        except (ValueError, KeyError, TypeError):
            raise ServeError(response.status_code, "response", response.text[:200]) from None
    return response.json()  # type: ignore[no-any-return]


def _refusal(exc: Exception) -> None:
    """Raise ServeError for a feed the server refused (close codes 4400-4499: 4000 + status)."""
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None and 4400 <= rcvd.code < 4500:
        raise ServeError(rcvd.code - 4000, "token", rcvd.reason) from None


def _ws_url(url: str, seat: str, token: str) -> str:
    base = url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return f"{base}/api/v1/seats/{quote(seat)}/stream?token={quote(token)}"


def _action_body(action: Any) -> list[float]:
    return [float(x) for x in np.asarray(action, dtype=np.float64).reshape(-1)]


class Client:
    """Seat ``seat`` of the world served at ``url``, acting with ``token``."""

    def __init__(self, url: str, seat: str, token: str, timeout: float = 10.0) -> None:
        self.url, self.seat, self._token = url.rstrip("/"), seat, token
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def world(self) -> dict[str, Any]:
        """The run's progress, the price and the seats."""
        return _answer(self._http.get("/api/v1/world"))

    def view(self) -> dict[str, Any]:
        """The seat's observation, balance, stake, reputation and action space."""
        return _answer(self._http.get(f"/api/v1/seats/{quote(self.seat)}"))

    def act(self, action: Any, key: str | None = None) -> dict[str, Any]:
        """Send the seat's action for its next tick; the answer names the tick it applies at.
        ``key`` (default: a fresh one) makes a resend safe: the server answers it once."""
        body = json.dumps({"action": _action_body(action)})
        headers = {"Idempotency-Key": key or uuid.uuid4().hex, "Content-Type": "application/json"}
        return _answer(
            self._http.post(
                f"/api/v1/seats/{quote(self.seat)}/action", content=body, headers=headers
            )
        )

    def stake(self, micro: int, key: str | None = None) -> dict[str, Any]:
        """Stake (``micro > 0``) or unstake (``micro < 0``) micro-credits at the next tick."""
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return _answer(
            self._http.post(
                f"/api/v1/seats/{quote(self.seat)}/stake", json={"micro": micro}, headers=headers
            )
        )

    def cancel(self) -> dict[str, Any]:
        """Withdraw the seat's pending action (at its next tick it acts as its role's
        baseline)."""
        return _answer(self._http.delete(f"/api/v1/seats/{quote(self.seat)}/action"))

    def proposals(self) -> list[dict[str, Any]]:
        """The organisation's proposals with their state and tally, as of the last tick."""
        return list(_answer(self._http.get("/api/v1/proposals"))["proposals"])

    def vote(self, proposal: int, support: bool, key: str | None = None) -> dict[str, Any]:
        """Vote on open ``proposal`` (its id) at the next tick; the seat must be a member."""
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return _answer(
            self._http.post(
                f"/api/v1/seats/{quote(self.seat)}/vote",
                json={"proposal": proposal, "support": support},
                headers=headers,
            )
        )

    def ticks(self) -> Iterator[dict[str, Any]]:
        """The seat's messages: its view now, then one per tick, until the run finishes."""
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        try:
            with connect(_ws_url(self.url, self.seat, self._token)) as ws:
                for raw in ws:
                    message = json.loads(raw)
                    yield message
                    if message.get("finished"):
                        return
        except ConnectionClosed as exc:
            _refusal(exc)
            raise

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient:
    """:class:`Client` for asyncio."""

    def __init__(self, url: str, seat: str, token: str, timeout: float = 10.0) -> None:
        self.url, self.seat, self._token = url.rstrip("/"), seat, token
        self._http = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def world(self) -> dict[str, Any]:
        """The run's progress, the price and the seats."""
        return _answer(await self._http.get("/api/v1/world"))

    async def view(self) -> dict[str, Any]:
        """The seat's observation, balance, stake, reputation and action space."""
        return _answer(await self._http.get(f"/api/v1/seats/{quote(self.seat)}"))

    async def act(self, action: Any, key: str | None = None) -> dict[str, Any]:
        """Send the seat's action for its next tick (see :meth:`Client.act`)."""
        body = json.dumps({"action": _action_body(action)})
        headers = {"Idempotency-Key": key or uuid.uuid4().hex, "Content-Type": "application/json"}
        return _answer(
            await self._http.post(
                f"/api/v1/seats/{quote(self.seat)}/action", content=body, headers=headers
            )
        )

    async def stake(self, micro: int, key: str | None = None) -> dict[str, Any]:
        """Stake (``micro > 0``) or unstake (``micro < 0``) micro-credits at the next tick."""
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return _answer(
            await self._http.post(
                f"/api/v1/seats/{quote(self.seat)}/stake", json={"micro": micro}, headers=headers
            )
        )

    async def cancel(self) -> dict[str, Any]:
        """:meth:`Client.cancel`."""
        return _answer(await self._http.delete(f"/api/v1/seats/{quote(self.seat)}/action"))

    async def proposals(self) -> list[dict[str, Any]]:
        """:meth:`Client.proposals`."""
        return list(_answer(await self._http.get("/api/v1/proposals"))["proposals"])

    async def vote(self, proposal: int, support: bool, key: str | None = None) -> dict[str, Any]:
        """:meth:`Client.vote`."""
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return _answer(
            await self._http.post(
                f"/api/v1/seats/{quote(self.seat)}/vote",
                json={"proposal": proposal, "support": support},
                headers=headers,
            )
        )

    async def ticks(self) -> AsyncIterator[dict[str, Any]]:
        """The seat's messages: its view now, then one per tick, until the run finishes."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        try:
            async with connect(_ws_url(self.url, self.seat, self._token)) as ws:
                async for raw in ws:
                    message = json.loads(raw)
                    yield message
                    if message.get("finished"):
                        return
        except ConnectionClosed as exc:
            _refusal(exc)
            raise

    def stream(self) -> SeatStream:
        """The seat's WebSocket for ticks and actions: ``async with client.stream() as s``."""
        return SeatStream(_ws_url(self.url, self.seat, self._token))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


class SeatStream:
    """A seat's WebSocket, both ways: :meth:`ticks` yields the view at joining and each tick's
    message; :meth:`act` sends an action and returns its acknowledgement (ServeError if refused).
    Use it as ``async with client.stream() as stream``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._ws: Any = None
        self._reader: Any = None
        self._waiting: dict[str, Any] = {}  # key -> future of its answer
        self._ticks: Any = None

    async def __aenter__(self) -> SeatStream:
        import asyncio

        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        try:
            self._ws = await connect(self._url)
        except ConnectionClosed as exc:
            _refusal(exc)
            raise
        self._ticks = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if "ack" in message or "error" in message:
                    future = self._waiting.pop(message.get("key"), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                await self._ticks.put(message)
        except ConnectionClosed as exc:
            try:
                _refusal(exc)
            except ServeError as refused:
                await self._ticks.put(refused)
        finally:
            await self._ticks.put(None)
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("the seat's stream closed"))

    async def act(self, action: Any, key: str | None = None) -> dict[str, Any]:
        """Send the seat's action for its next tick; its acknowledgement (as ``Client.act``)."""
        import asyncio

        key = key or uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        await self._ws.send(json.dumps({"action": _action_body(action), "key": key}))
        answer = await future
        if "error" in answer:
            error = answer["error"]
            raise ServeError(int(error["status"]), str(error["field"]), str(error["reason"]))
        return answer["ack"]  # type: ignore[no-any-return]

    async def ticks(self) -> AsyncIterator[dict[str, Any]]:
        """The view at joining, then one message per tick, until the run finishes."""
        while True:
            message = await self._ticks.get()
            if message is None:
                return
            if isinstance(message, ServeError):
                raise message
            yield message
            if message.get("finished"):
                return

    async def __aexit__(self, *_: object) -> None:
        await self._ws.close()
        if self._reader is not None:
            await self._reader


class RemoteSeatEnv:
    """A served seat as a Gymnasium environment (``gymnasium.Env``'s methods and spaces).

    ``reset()`` joins the seat's feed and returns its current observation; ``step(action)`` sends
    the action, waits for the tick that applied it and returns that tick's observation, the change
    of balance plus stake in credits as the reward, ``terminated=False`` and ``truncated=True`` once
    the run has finished. The world does not restart: an episode is the served run.
    """

    def __init__(self, url: str, seat: str, token: str) -> None:
        import gymnasium

        self.client = Client(url, seat, token)
        view = self.client.view()
        space = view["action_space"]
        self.action_space = gymnasium.spaces.Box(
            np.array(space["low"], dtype=np.float32),
            np.array(space["high"], dtype=np.float32),
            dtype=np.float32,
        )
        shape = tuple(view["observation_space"]["shape"])
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, shape, dtype=np.float32)
        self._feed: Iterator[dict[str, Any]] | None = None
        self._wealth = 0

    def _obs(self, message: dict[str, Any]) -> np.ndarray:  # type: ignore[type-arg]
        self._wealth = int(message["balance_micro"]) + int(message["stake_micro"])
        return np.asarray(message["observation"], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:  # type: ignore[type-arg]
        """Join the seat's feed; its observation now."""
        self._feed = self.client.ticks()
        first = next(self._feed)
        return self._obs(first), {"tick": first["tick"]}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:  # type: ignore[type-arg]
        """Send ``action`` and wait for the tick it applies at."""
        assert self._feed is not None, "reset() first"
        before = self._wealth
        try:
            tick = self.client.act(action)["applies_at_tick"]
        except ServeError as exc:
            if exc.status == 409:  # no tick is left
                return np.zeros(self.observation_space.shape, np.float32), 0.0, False, True, {}
            raise
        for message in self._feed:
            if message.get("finished"):
                return np.zeros(self.observation_space.shape, np.float32), 0.0, False, True, {}
            if message["tick"] >= tick:
                obs = self._obs(message)
                reward = (self._wealth - before) / MICRO
                return obs, reward, False, False, {"tick": message["tick"]}
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, True, {}

    def close(self) -> None:
        """Leave the feed and close the connection pool."""
        self.client.close()
