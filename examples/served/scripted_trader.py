"""A scripted outside agent for `agora serve`: it asks close to its cost when its cost is high and
shades its ask up when its cost is low.

    python examples/served/scripted_trader.py --url http://127.0.0.1:8765 \
        --seat negotiators-0 --tokens tokens.txt

The tokens file is the one `agora serve --tokens FILE` wrote: one "SEAT TOKEN" line per seat.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agora.client import Client, ServeError


def token_for(tokens: Path, seat: str) -> str:
    """The token of ``seat`` in a tokens file written by agora serve --tokens."""
    for line in tokens.read_text().splitlines():
        name, _, token = line.partition(" ")
        if name == seat:
            return token
    raise SystemExit(f"{tokens}: no token for seat {seat!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--seat", default="negotiators-0")
    parser.add_argument("--tokens", type=Path, required=True)
    args = parser.parse_args()
    traded = 0
    with Client(args.url, args.seat, token_for(args.tokens, args.seat)) as client:
        for message in client.ticks():
            if message.get("finished"):
                break
            cost = message["observation"][0]  # this tick's cost, scaled to [-1, 1]
            action = [-0.8 if cost > 0.0 else -0.3]  # shade: 0.1 of the way to the ceiling, or 0.35
            try:
                client.act(action)
            except ServeError as exc:
                if exc.status == 409:  # the run's last tick has begun
                    break
                raise
            traded += sum(e["kind"] == "contract" for e in message.get("events", []))
    print(f"{args.seat}: {traded} contracts")


if __name__ == "__main__":
    main()
