"""Named random streams from one seed: adding a subsystem never shifts another's draws."""

from __future__ import annotations

import hashlib

import numpy as np


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


class Streams:
    """``streams("bus")`` is the bus's generator; same seed and name give the same draws."""

    def __init__(self, seed: int, domain: str = "") -> None:
        self.seed = seed
        self.domain = domain  # a shard's streams: "shard1of2/" (empty for a world in one process)
        self._gens: dict[str, np.random.Generator] = {}

    def __call__(self, name: str) -> np.random.Generator:
        gen = self._gens.get(name)
        if gen is None:
            seq = np.random.SeedSequence(entropy=self.seed, spawn_key=(_key(self.domain + name),))
            gen = np.random.Generator(np.random.Philox(seq))
            self._gens[name] = gen
        return gen

    def state_digest(self) -> bytes:
        """Hash of every stream's position (part of the checkpoint state)."""
        h = hashlib.sha256()
        for name in sorted(self._gens):
            h.update(name.encode() + repr(self._gens[name].bit_generator.state).encode())
        return h.digest()
