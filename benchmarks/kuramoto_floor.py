"""What bounds one Kuramoto step on the marketplace's coupling graph: the same edges, three ways.

    python -m benchmarks.kuramoto_floor 1000000   # agents (the scaled default scenario, to tick 12)

Builds the scaled marketplace (``benchmarks.marketplace``), runs it to tick 12 so the coupling
graph exists, then times on one thread, per pass over every stored edge:

* ``in order``: the weighted sum of neighbours' sines and cosines with the neighbours sorted (reads
  in memory order), no rows;
* ``random``: the same sum in the graph's own order (random reads), no rows;
* ``rows``: the same, row by row as the kernel does (a sum per node, so a loop end per row);

and then the kernel itself (``Oscillators.step``) per step, on all threads and on one. The gaps say
what the step pays for: random reads, then the row structure (most rows hold one or two edges).
Then other parts of the coordination: ``economy.portable_math``'s sine and cosine against numba's
``np.sin``/``np.cos`` for every phase, the CSR build against ``np.lexsort``, and
one tension reading of the graph's 2-core (``tension_of_edges``), alone and beside a pure-Python
loop on another thread (whether it leaves the GIL to the populations while it runs).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from benchmarks.timing import milliseconds_per_call
from economy.portable_math import sincos

Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int64]


@njit(cache=True)
def _edges(indices: Indices, weights: Floats, s: Floats, c: Floats) -> float:
    a = 0.0
    b = 0.0
    for k in range(indices.shape[0]):
        j = indices[k]
        a += weights[k] * s[j]
        b += weights[k] * c[j]
    return a + b


@njit(cache=True)
def _trig(theta: Floats, s: Floats, c: Floats) -> None:
    for i in range(theta.shape[0]):
        s[i], c[i] = sincos(theta[i])


@njit(cache=True)
def _libm(theta: Floats, s: Floats, c: Floats) -> None:
    for i in range(theta.shape[0]):
        s[i] = np.sin(theta[i])
        c[i] = np.cos(theta[i])


@njit(cache=True)
def _rows(
    indptr: Indices, indices: Indices, weights: Floats, s: Floats, c: Floats, out: Floats
) -> None:
    for i in range(indptr.shape[0] - 1):
        a = 0.0
        b = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            a += weights[k] * s[j]
            b += weights[k] * c[j]
        out[i] = a + b


def main(argv: list[str]) -> int:
    """Print the timings for the scaled marketplace of ``argv[0]`` agents; 2 on a bad argument."""
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1000:
        print(
            "usage: python -m benchmarks.kuramoto_floor AGENTS   (an integer >= 1000)",
            file=sys.stderr,
        )
        return 2
    from benchmarks.marketplace import SCENARIO, scaled_text
    from runtime.kernel.scenario import parse
    from runtime.kernel.world import World

    world = World(parse(scaled_text(int(argv[0])), base=SCENARIO.parent), base=SCENARIO.parent)
    world.run(12)
    assert world.coordination is not None
    _print_edge_passes(world.coordination.osc)
    _print_graph_builds(world.coordination)
    _print_tension(world.coordination)
    return 0


def _print_edge_passes(osc: Any) -> None:
    """Milliseconds per pass over the edges, read three ways, then per step of the kernel."""
    csr = osc.csr
    n, e = csr.n, csr.indices.size
    rng = np.random.default_rng(0)
    s, c, out = rng.random(n), rng.random(n), np.empty(n)
    in_order = np.sort(csr.indices)
    print(f"{n:,} nodes, {e:,} stored edges; ms per pass over the edges, one thread:")
    passes = {
        "in order, no rows": lambda: _edges(in_order, csr.weights, s, c),
        "random, no rows": lambda: _edges(csr.indices, csr.weights, s, c),
        "random, row by row": lambda: _rows(csr.indptr, csr.indices, csr.weights, s, c, out),
    }
    for label, step in passes.items():
        print(f"  {label:<20}{milliseconds_per_call(step, 5):8.1f}")
    theta = osc.theta.copy()
    kernel = {
        "all threads (sines and cosines included)": lambda: osc.step(1),
        "one thread": lambda: osc.step(1, serial=True),
    }
    for label, step in kernel.items():
        print(f"  the kernel, one step, {label:<41}{milliseconds_per_call(step, 5):8.1f}")
    osc.theta[:] = theta
    print("ms, one thread, every phase:")
    phases = {
        "economy.portable_math sin and cos": lambda: _trig(theta, s, c),
        "numba np.sin and np.cos": lambda: _libm(theta, s, c),
    }
    for label, step in phases.items():
        print(f"  {label:<36}{milliseconds_per_call(step, 5):8.1f}")


def _print_graph_builds(coordination: Any) -> None:
    """Milliseconds to build the coupling graph's CSR: counting sort against ``np.lexsort``."""
    from runtime.coordination.kuramoto import CSR

    u, v, w = coordination._edges()
    n = coordination.osc.csr.n

    def lexsort_build() -> None:
        src, dst = np.concatenate([u, v]), np.concatenate([v, u])
        order = np.lexsort((dst, src))
        _ = dst[order], np.concatenate([w, w])[order], np.bincount(src, minlength=n)

    print("ms, building the coupling graph's CSR from its edges:")
    counting_sort = milliseconds_per_call(lambda: CSR.from_edges(n, u, v, w), 3)
    print(f"  counting sort (CSR.from_edges)  {counting_sort:8.1f}")
    print(f"  np.lexsort                      {milliseconds_per_call(lexsort_build, 3):8.1f}")


def _print_tension(coordination: Any) -> None:
    """One tension reading of the 2-core, alone and beside a pure-Python loop on another thread."""
    from runtime.coordination.tension import tension_of_edges

    cu, cv, cw = coordination._core()
    start = time.perf_counter()
    reading = tension_of_edges(cu, cv, cw)
    alone = time.perf_counter() - start
    print(
        f"one tension reading of the 2-core ({cu.size:,} edges): {alone:.2f} s "
        f"({reading.method}, cut {reading.cut:g})"
    )
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
    print(
        f"  beside a pure-Python loop on a second thread: loop {loop_beside:.2f} s "
        f"(alone {loop_alone:.2f} s), both done after {both:.2f} s "
        f"(one after the other: {alone + loop_alone:.2f} s)"
    )


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
