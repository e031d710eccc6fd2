"""Messages between regions with latency, loss, duplication and partitions, on the SimPy clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import simpy
from simpy.events import NORMAL, URGENT

from runtime.kernel.network import Network
from runtime.kernel.rng import Stream


@dataclass(frozen=True)
class Message:
    """A payload travelling from region ``src`` to region ``dst`` on ``topic``.

    ``src_agent``/``dst_agent`` are the agents' ids for agent-to-agent messages, -1 for messages
    between regions' services (ledger replicas); ``gain`` in [0, 1] is how strongly the receiver
    should weigh the message (the senders' phase coherence).
    """

    src: int
    dst: int
    topic: str
    payload: Any
    sent_at: float
    src_agent: int = -1
    dst_agent: int = -1
    gain: float = 1.0  # phase coherence of the two agents when coordination is on


class Delivery:
    """The callback that hands one message to the bus when its time comes (data, so a checkpoint
    can list the messages in flight)."""

    __slots__ = ("bus", "msg")

    def __init__(self, bus: MessageBus, msg: Message) -> None:
        self.bus = bus
        self.msg = msg

    def __call__(self, _event: object) -> None:
        self.bus._deliver(self.msg)


class MessageBus:
    """Delivers each message after the path latency (plus jitter) unless lost or partitioned.

    Every send draws exactly three uniforms from the bus stream, whatever happens to the message,
    so one message's fate never shifts another's draws.
    """

    def __init__(
        self,
        env: simpy.Environment,
        network: Network,
        rng: Stream,
        loss: float,
        duplication: float,
        jitter: float,
    ) -> None:
        self.env = env
        self.network = network
        self.rng = rng
        self.loss = loss
        self.duplication = duplication
        self.jitter = jitter
        self.handlers: dict[str, Callable[[Message], None]] = {}
        self.counts = {"sent": 0, "delivered": 0, "lost": 0, "duplicated": 0, "blocked": 0}
        # A shard of a sharded world: regions held elsewhere, and what is leaving for them
        # (arrival time, message), shipped by the driver at the next tick barrier.
        self.remote: frozenset[int] = frozenset()
        self.outbox: list[tuple[float, Message]] = []

    def subscribe(self, topic: str, handler: Callable[[Message], None]) -> None:
        """Call ``handler`` for every message delivered on ``topic``."""
        self.handlers[topic] = handler

    def send(
        self,
        src: int,
        dst: int,
        topic: str,
        payload: Any,
        src_agent: int = -1,
        dst_agent: int = -1,
        gain: float = 1.0,
    ) -> None:
        """Send ``payload`` from region ``src`` to region ``dst`` (optionally between two
        agents)."""
        if topic not in self.handlers:
            raise KeyError(
                f"no handler subscribed to topic {topic!r}; topics are {sorted(self.handlers)}"
            )
        u_loss, u_dup, u_jit = self.rng.random(3)
        self.counts["sent"] += 1
        if not self.network.reachable(src, dst):
            self.counts["blocked"] += 1
            return
        if u_loss < self.loss:
            self.counts["lost"] += 1
            return
        msg = Message(src, dst, topic, payload, self.env.now, src_agent, dst_agent, gain)
        delay = float(self.network.latency[src, dst]) + u_jit * self.jitter
        copies = 2 if u_dup < self.duplication else 1
        self.counts["duplicated"] += copies - 1
        for _ in range(copies):
            if dst in self.remote:
                self.outbox.append((float(self.env.now) + delay, msg))
            else:
                self.env.timeout(delay).callbacks.append(Delivery(self, msg))

    def inject(self, arrives: float, msg: Message) -> None:
        """Deliver a message from another shard at ``arrives``, or now if that has passed (before
        anything else due now: it was due at the last tick barrier)."""
        delay = max(0.0, arrives - float(self.env.now))
        # A message due at the barrier goes before the tick that starts there (the tick's process
        # starts URGENT too, and after this).
        event = self.env.event()
        event.callbacks.append(Delivery(self, msg))
        event._ok = True
        event._value = None
        self.env.schedule(event, URGENT if delay == 0 else NORMAL, delay)

    def __getstate__(self) -> dict[str, Any]:
        # The clock is the world's; the world lists the messages in flight and sets it again.
        return {k: v for k, v in self.__dict__.items() if k != "env"}

    def _deliver(self, msg: Message) -> None:
        if not self.network.reachable(msg.src, msg.dst):
            self.counts["blocked"] += 1
            return
        self.counts["delivered"] += 1
        self.handlers[msg.topic](msg)
