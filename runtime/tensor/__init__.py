"""The gpu engine: the whole tick as integer tensor steps on one device.

A scenario selects it with ``[world] engine = "gpu"``.

Every quantity that reaches recorded state is an integer, and every random draw comes from a
counter-based hash of (seed, stream, tick, agent), so the engine gives the same integers on a CPU
(torch) and on a CUDA GPU: a run recorded on a GPU replays bit for bit on a CPU. The model choices
that make the tick data-parallel are listed in :mod:`runtime.tensor.world` and in the docs
(``docs/howto/gpu.md``).
"""
