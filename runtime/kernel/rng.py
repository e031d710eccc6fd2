"""Named random streams from one seed, with draws that are the same bits on every CPU.

``streams("bus")`` is the bus's :class:`Stream`: the same seed and name give the same draws, and
adding a subsystem never shifts another's. Each stream wraps a numpy ``Generator`` over Philox.

Uniform draws (``random``, ``integers``, ``uniform``, ``choice``, ``permutation``, ``shuffle``) are
numpy's own: they are integer arithmetic and one exact scaling, the same everywhere. numpy's other
distributions are not: ``normal``, ``lognormal``, ``gamma``, ``beta`` and their kin call the C
library's ``log`` and ``exp``, whose FMA and plain variants round differently on different
processors. So a :class:`Stream` draws those here, from its uniforms, with
:mod:`economy.portable_math`:

* ``normal``: Box–Muller, two normals per pair of uniforms ``(u1, u2)`` (the first and second
  halves of a block of ``2·ceil(n/2)``):
  ``sqrt(−2·log(1 − u1))·(cos, sin)(2π·u2)``;
* ``lognormal``: ``exp`` of a normal;
* ``exponential``: ``−log(1 − u)``;
* ``gamma``: Marsaglia and Tsang's squeeze-free method (a normal and a uniform per try; shapes
  below 1 take one more uniform, ``u^(1/shape)``);
* ``beta``: ``X/(X + Y)`` of two gammas.

They are not numpy's draws (the same seed gives other numbers than ``Generator.normal``), and a
stream offers no other distribution: asking for one raises ``AttributeError`` naming what it has.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from economy.portable_math import exp_scalar, log_scalar, sincos

TWO_PI = 2.0 * math.pi
PORTABLE = (
    "random",
    "integers",
    "uniform",
    "choice",
    "permutation",
    "shuffle",
    "bytes",
    "normal",
    "standard_normal",
    "lognormal",
    "exponential",
    "gamma",
    "beta",
)


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


@njit(cache=True, error_model="numpy")
def _box_muller(u: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None:
    """Standard normals ``out[0:2m]`` from ``2m`` uniforms in [0, 1): the pair from ``(u[p],
    u[m + p])`` goes to ``out[p]`` and ``out[m + p]`` (halves, not neighbours: the loop
    vectorises)."""
    m = out.shape[0] // 2
    for p in range(m):
        radius = math.sqrt(-2.0 * log_scalar(1.0 - u[p]))
        s, c = sincos(TWO_PI * u[m + p])
        out[p] = radius * c
        out[m + p] = radius * s


@njit(cache=True, error_model="numpy")
def _gamma_fill(
    shape: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
    start: int,
    u: npt.NDArray[np.float64],
) -> tuple[int, int]:
    """Fill ``out[start:]`` with Gamma(``shape[i]``, 1) draws from the uniforms ``u``; return where
    it stopped: the next index to fill and the uniforms used (it stops when ``u`` runs short)."""
    used = 0
    i = start
    while i < out.shape[0]:
        a = shape[i]
        boost = a < 1.0
        d = (a + 1.0 if boost else a) - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        if used + 4 + (1 if boost else 0) > u.shape[0]:
            return i, used
        while True:
            if used + 4 + (1 if boost else 0) > u.shape[0]:
                return i, used
            radius = math.sqrt(-2.0 * log_scalar(1.0 - u[used]))
            s, cz = sincos(TWO_PI * u[used + 1])
            z = radius * cz
            accept_u = 1.0 - u[used + 2]
            used += 3
            v = 1.0 + c * z
            if v <= 0.0:
                continue
            v = v * v * v
            if log_scalar(accept_u) < 0.5 * z * z + d - d * v + d * log_scalar(v):
                break
        x = d * v
        if boost:  # Gamma(a) = Gamma(a + 1)·U^(1/a)
            x = x * exp_scalar(log_scalar(1.0 - u[used]) / a)
            used += 1
        out[i] = x
        i += 1
    return i, used


def _size(size: int | tuple[int, ...] | None) -> tuple[int, tuple[int, ...] | None]:
    if size is None:
        return 1, None
    shape = (int(size),) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if any(s < 0 for s in shape):
        raise ValueError(f"size must not be negative, got {size!r}")
    return int(np.prod(shape, dtype=np.int64)), shape


def _shaped(flat: npt.NDArray[np.float64], shape: tuple[int, ...] | None) -> Any:
    return float(flat[0]) if shape is None else flat.reshape(shape)


class Stream:
    """One named random stream: numpy's uniform draws and the portable distributions (module
    docstring). ``generator`` is the wrapped ``numpy.random.Generator``."""

    def __init__(self, generator: np.random.Generator) -> None:
        self.generator = generator
        self.bit_generator = generator.bit_generator

    # Uniform draws: numpy's own, the same bits everywhere.
    def random(self, size: Any = None) -> Any:
        """Floats uniform in [0, 1) (``Generator.random``)."""
        return self.generator.random(size)

    def integers(self, *args: Any, **kwargs: Any) -> Any:
        """Integers (``Generator.integers``)."""
        return self.generator.integers(*args, **kwargs)

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None) -> Any:
        """Floats uniform in [low, high) (``Generator.uniform``: ``low + (high − low)·u``)."""
        return self.generator.uniform(low, high, size)

    def choice(self, *args: Any, **kwargs: Any) -> Any:
        """A sample of ``a`` (``Generator.choice``)."""
        return self.generator.choice(*args, **kwargs)

    def permutation(self, x: Any) -> Any:
        """A permuted copy, or a permuted ``arange`` (``Generator.permutation``)."""
        return self.generator.permutation(x)

    def shuffle(self, x: Any) -> None:
        """Shuffle ``x`` in place (``Generator.shuffle``)."""
        self.generator.shuffle(x)

    def bytes(self, length: int) -> bytes:
        """Random bytes (``Generator.bytes``)."""
        return self.generator.bytes(length)

    # Portable distributions, drawn from the uniforms above.
    def standard_normal(self, size: Any = None) -> Any:
        """Standard normal draws (Box–Muller): a float, or an array of ``size``."""
        n, shape = _size(size)
        pairs = (n + 1) // 2
        out = np.empty(2 * pairs)
        if pairs:
            _box_muller(self.generator.random(2 * pairs), out)
        return _shaped(out[:n], shape)

    def normal(self, loc: Any = 0.0, scale: Any = 1.0, size: Any = None) -> Any:
        """Normal draws with mean ``loc`` and deviation ``scale`` (broadcast to ``size``)."""
        if size is None and (np.ndim(loc) or np.ndim(scale)):
            size = np.broadcast(np.asarray(loc), np.asarray(scale)).shape
        z = self.standard_normal(size)
        return loc + scale * z

    def lognormal(self, mean: Any = 0.0, sigma: Any = 1.0, size: Any = None) -> Any:
        """``exp`` of normal draws with mean ``mean`` and deviation ``sigma``."""
        from economy.portable_math import exp

        return exp(self.normal(mean, sigma, size))

    def exponential(self, scale: Any = 1.0, size: Any = None) -> Any:
        """Exponential draws of mean ``scale``: ``−scale·log(1 − u)``."""
        from economy.portable_math import log

        n, shape = _size(size)
        draws = _shaped(-log(1.0 - self.generator.random(n)), shape)
        return draws * scale

    def gamma(self, shape: Any, scale: Any = 1.0, size: Any = None) -> Any:
        """Gamma draws of ``shape`` (> 0) and ``scale`` (broadcast to ``size``)."""
        shapes = np.asarray(shape, dtype=np.float64)
        if size is None and (shapes.ndim or np.ndim(scale)):
            size = np.broadcast(shapes, np.asarray(scale)).shape
        n, out_shape = _size(size)
        flat = np.ascontiguousarray(np.broadcast_to(shapes, out_shape or ()).reshape(-1))
        if flat.size and not (flat > 0).all():
            raise ValueError(f"gamma: every shape must be > 0, got {shape!r}")
        out = np.empty(n)
        filled = 0
        while filled < n:  # each pass fills at least one draw: a try is accepted with p > 0.95
            block = self.generator.random(4 * (n - filled) + 64)
            filled, _ = _gamma_fill(flat, out, filled, block)
        return _shaped(out, out_shape) * scale

    def beta(self, a: Any, b: Any, size: Any = None) -> Any:
        """Beta(``a``, ``b``) draws: ``X/(X + Y)`` with ``X ~ Gamma(a)``, ``Y ~ Gamma(b)``."""
        if size is None:
            size = np.broadcast(np.asarray(a), np.asarray(b)).shape or None
        x = np.asarray(self.gamma(a, 1.0, size), dtype=np.float64)
        y = np.asarray(self.gamma(b, 1.0, size), dtype=np.float64)
        out = x / (x + y)
        return float(out) if size is None else out

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"Stream has no {name!r}: a stream offers {', '.join(PORTABLE)}, which give the same "
            "bits "
            "on every CPU; numpy's other distributions call the C library's log and exp, whose "
            "last "
            "bits differ between processors. Build the draw from these (see runtime.kernel.rng)."
        )


class Streams:
    """``streams("bus")`` is the bus's :class:`Stream`; same seed and name give the same draws."""

    def __init__(self, seed: int, domain: str = "") -> None:
        self.seed = seed
        self.domain = domain  # a shard's streams: "shard1of2/" (empty for a world in one process)
        self._streams: dict[str, Stream] = {}

    def __call__(self, name: str) -> Stream:
        stream = self._streams.get(name)
        if stream is None:
            seq = np.random.SeedSequence(entropy=self.seed, spawn_key=(_key(self.domain + name),))
            stream = Stream(np.random.Generator(np.random.Philox(seq)))
            self._streams[name] = stream
        return stream

    def state_digest(self) -> bytes:
        """Hash of every stream's position (part of the checkpoint state)."""
        h = hashlib.sha256()
        for name in sorted(self._streams):
            h.update(name.encode() + repr(self._streams[name].bit_generator.state).encode())
        return h.digest()
