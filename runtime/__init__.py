"""Agora's runtime: the kernel (runtime.kernel), faults, coordination, recording and replay,
analysis, scale-out, the command line (runtime.cli) and the public API (runtime.api, installed as
``agora``)."""
