"""Counter-based random words on int64 tensors: the same bits on every device.

A draw is the SplitMix64 finaliser of ``key + agent·G1 + tick·G2 + stream·G3`` (all mod 2⁶⁴), so it
needs no generator state: any agent's draw at any tick is computed on its own, on any device, in
any order. Multiplication and addition of int64 tensors wrap modulo 2⁶⁴ on the CPU and on CUDA
alike; right shifts are made logical with a mask.
"""

from __future__ import annotations

from typing import Any

MASK64 = (1 << 64) - 1
G1, G2, G3 = 0x9E3779B97F4A7C15, 0xD1B54A32D192ED03, 0xABC98388FB8FAC03
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def signed(x: int) -> int:
    """``x`` mod 2⁶⁴ as a signed int64 (what a tensor holds)."""
    x &= MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def _shr(x: Any, k: int) -> Any:
    """Logical right shift of an int64 tensor."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix(z: Any) -> Any:
    """The SplitMix64 finaliser of an int64 tensor (bits as unsigned)."""
    z = (z ^ _shr(z, 30)) * signed(M1)
    z = (z ^ _shr(z, 27)) * signed(M2)
    return z ^ _shr(z, 31)


def mix_int(z: int) -> int:
    """:func:`mix` of one Python integer (the host's draws); the same bits."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, name: str) -> int:
    """The key of a named stream: a hash of the seed and the name, so adding a stream shifts no
    other."""
    z = mix_int(seed)
    for byte in name.encode():
        z = mix_int(z ^ byte)
    return signed(z)


def words(agents: Any, key: int, tick: Any, stream: int = 0) -> Any:
    """One 64-bit word per agent (an int64 tensor of agent indices). ``tick`` is an int or a
    0-dimensional int64 tensor on the agents' device (so a captured tick reads it at replay); both
    give the same bits."""
    if isinstance(tick, int):
        return mix(agents * signed(G1) + signed(key + tick * G2 + stream * G3))
    return mix(agents * signed(G1) + (tick * signed(G2) + signed(key + stream * G3)))


def u32(agents: Any, key: int, tick: Any, stream: int = 0) -> tuple[Any, Any]:
    """Two uniform 32-bit words per agent, in [0, 2³²) as int64 (the word's high and low halves)."""
    w = words(agents, key, tick, stream)
    return _shr(w, 32), w & 0xFFFFFFFF


def host_u32(key: int, tick: int, stream: int, index: int) -> int:
    """A uniform 32-bit word for one host-side decision (a message's loss, ...); the same bits as
    the high half of :func:`u32`."""
    return mix_int(index * G1 + key + tick * G2 + stream * G3) >> 32


def threshold(p: float) -> int:
    """A probability as a 32-bit threshold: a word ``u`` is a success when ``u < threshold(p)``."""
    return min(1 << 32, int(p * (1 << 32)))


def below(u: Any, n: Any) -> Any:
    """A uniform integer in ``[0, n)`` from a 32-bit word (``n < 2³¹``)."""
    return (u * n) >> 32


def below_wide(u: Any, n: int) -> Any:
    """:func:`below` for ``n < 2⁴⁰``: the same ``(u·n) >> 32``, computed in 16-bit parts of ``n``
    so no product leaves int64."""
    return ((u * (n >> 16)) + ((u * (n & 0xFFFF)) >> 16)) >> 16
