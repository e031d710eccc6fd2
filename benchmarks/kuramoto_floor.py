"""What bounds one Kuramoto step on the marketplace's coupling graph: the same edges read three ways.

    python -m benchmarks.kuramoto_floor 1000000     # agents (the scaled default scenario, run to tick 12)

Builds the scaled marketplace (``benchmarks.marketplace``), runs it to tick 12 so the coupling
graph exists, then times on one thread, per pass over every stored edge:

* ``in order``: the weighted sum of neighbours' sines and cosines with the neighbours sorted (reads
  in memory order), no rows;
* ``random``: the same sum in the graph's own order (random reads), no rows;
* ``rows``: the same, row by row as the kernel does (a sum per node, so a loop end per row);

and then the kernel itself (``Oscillators.step``) per step, on all threads and on one. The gaps say
what the step pays for: random reads, then the row structure (most rows hold one or two edges).
Then other parts of the coordination: ``economy.portable_math``'s sine and cosine against numba's ``np.sin``/``np.cos`` for every phase, the CSR build against ``np.lexsort``, and
one tension reading of the graph's 2-core (``tension_of_edges``), alone and beside a pure-Python
loop on another thread (whether it leaves the GIL to the populations while it runs).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from numba import njit

from economy.portable_math import sincos


@njit(cache=True)
def _edges(indices, weights, s, c):  # type: ignore[no-untyped-def]
    a = 0.0
    b = 0.0
    for k in range(indices.shape[0]):
        j = indices[k]
        a += weights[k] * s[j]
        b += weights[k] * c[j]
    return a + b


@njit(cache=True)
def _trig(theta, s, c):  # type: ignore[no-untyped-def]
    for i in range(theta.shape[0]):
        s[i], c[i] = sincos(theta[i])


@njit(cache=True)
def _libm(theta, s, c):  # type: ignore[no-untyped-def]
    for i in range(theta.shape[0]):
        s[i] = np.sin(theta[i])
        c[i] = np.cos(theta[i])


@njit(cache=True)
def _rows(indptr, indices, weights, s, c, out):  # type: ignore[no-untyped-def]
    for i in range(indptr.shape[0] - 1):
        a = 0.0
        b = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            a += weights[k] * s[j]
            b += weights[k] * c[j]
        out[i] = a + b


def _ms(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return 1000 * (time.perf_counter() - start) / repeat


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1000:
        print("usage: python -m benchmarks.kuramoto_floor AGENTS   (an integer >= 1000)", file=sys.stderr)
        return 2
    from benchmarks.marketplace import SCENARIO, scaled_text
    from runtime.scenario import parse
    from runtime.world import World

    world = World(parse(scaled_text(int(argv[0])), base=SCENARIO.parent), base=SCENARIO.parent)
    world.run(12)
    assert world.coordination is not None
    osc = world.coordination.osc
    csr = osc.csr
    n, e = csr.n, csr.indices.size
    rng = np.random.default_rng(0)
    s, c, out = rng.random(n), rng.random(n), np.empty(n)
    in_order = np.sort(csr.indices)
    print(f"{n:,} nodes, {e:,} stored edges; ms per pass over the edges, one thread:")
    print(f"  in order, no rows   {_ms(lambda: _edges(in_order, csr.weights, s, c)):8.1f}")
    print(f"  random, no rows     {_ms(lambda: _edges(csr.indices, csr.weights, s, c)):8.1f}")
    print(f"  random, row by row  {_ms(lambda: _rows(csr.indptr, csr.indices, csr.weights, s, c, out)):8.1f}")
    theta = osc.theta.copy()
    print(f"  the kernel, one step, all threads (sines and cosines included) {_ms(lambda: osc.step(1)):8.1f}")
    print(f"  the kernel, one step, one thread                               {_ms(lambda: osc.step(1, serial=True)):8.1f}")
    osc.theta[:] = theta
    print("ms, one thread, every phase:")
    print(f"  economy.portable_math sin and cos   {_ms(lambda: _trig(theta, s, c)):8.1f}")
    print(f"  numba np.sin and np.cos    {_ms(lambda: _libm(theta, s, c)):8.1f}")
    from runtime.kuramoto import CSR
    from runtime.tension import tension_of_edges

    u, v, w = world.coordination._edges()

    def lexsort_build() -> None:
        src, dst = np.concatenate([u, v]), np.concatenate([v, u])
        order = np.lexsort((dst, src))
        _ = dst[order], np.concatenate([w, w])[order], np.bincount(src, minlength=n)

    print("ms, building the coupling graph's CSR from its edges:")
    print(f"  counting sort (CSR.from_edges)  {_ms(lambda: CSR.from_edges(n, u, v, w), 3):8.1f}")
    print(f"  np.lexsort                      {_ms(lexsort_build, 3):8.1f}")
    cu, cv, cw = world.coordination._core()
    start = time.perf_counter()
    reading = tension_of_edges(cu, cv, cw)
    alone = time.perf_counter() - start
    print(f"one tension reading of the 2-core ({cu.size:,} edges): {alone:.2f} s ({reading.method}, cut {reading.cut:g})")
    # Does a reading leave the GIL to the populations? Beside it, a pure-Python loop (which holds
    # the GIL whenever it runs) that takes about as long alone: if the reading held the GIL, the two
    # together would take the sum of their times.
    start = time.perf_counter()
    loops = _python_loop(alone)
    loop_alone = time.perf_counter() - start
    beside = threading.Thread(target=tension_of_edges, args=(cu, cv, cw))
    start = time.perf_counter()
    beside.start()
    _python_loop(alone, loops)
    loop_beside = time.perf_counter() - start
    beside.join()
    both = time.perf_counter() - start
    print(f"  beside a pure-Python loop on a second thread: loop {loop_beside:.2f} s (alone {loop_alone:.2f} s), "
          f"both done after {both:.2f} s (one after the other: {alone + loop_alone:.2f} s)")
    return 0


def _python_loop(seconds: float, loops: int = 0) -> int:
    """Busy Python for about ``seconds`` (or exactly ``loops`` rounds); returns the rounds run."""
    rounds = 0
    end = time.perf_counter() + seconds
    while (rounds < loops) if loops else (time.perf_counter() < end):
        total = 0
        for i in range(10_000):
            total += i * i
        rounds += 1
    return rounds


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
