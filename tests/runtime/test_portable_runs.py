"""The default scenario gives the same checkpoint hashes on other processors, emulated on this one.

Each variant reruns the default scenario in a child process whose libraries are told to behave as
on another CPU: torch's generic kernels (``ATEN_CPU_CAPABILITY=default``), numpy without its SIMD
kernels (``NPY_DISABLE_CPU_FEATURES``), a CPU without FMA or AVX for the C library's math
(``GLIBC_TUNABLES``) with numba compiling for a generic x86-64 and OpenBLAS's oldest kernels, and
one thread everywhere. Every checkpoint's hashes must equal the native run's (the session's
``default_run``, a child process with this process's environment, which ``test_golden_run.py``
pins). Each child also hashes a canary computed by the library it perturbs (``np.exp``,
``math.exp``), so the test shows that the emulation really changed the library's bits where this
CPU has the features it turns off.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import record_default


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _numpy_targets() -> str:
    """numpy's dispatch targets (names differ between numpy versions): all of them, to turn off."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    return " ".join(__cpu_dispatch__)


VARIANTS = {
    "torch generic kernels": {"ATEN_CPU_CAPABILITY": "default"},
    "numpy without SIMD": {"NPY_DISABLE_CPU_FEATURES": _numpy_targets()},
    "no FMA, generic x86-64": {
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX,-AVX512F",
        "NUMBA_CPU_NAME": "generic",
        "OPENBLAS_CORETYPE": "Prescott",
    },
    "one thread": {
        "NUMBA_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    },
}


def _run(name: str, extra: dict[str, str], tmp: Path) -> dict:
    env = {**os.environ, **extra, "PYTHONHASHSEED": "0"}
    return record_default(tmp / name.replace(" ", "_"), env, name)


@pytest.mark.slow
def test_checkpoint_hashes_are_the_same_on_emulated_processors(default_run, tmp_path):
    with ThreadPoolExecutor(2) as pool:  # two children at a time: one per core of a small machine
        futures = {
            name: pool.submit(_run, name, extra, tmp_path) for name, extra in VARIANTS.items()
        }
        results = {name: f.result() for name, f in futures.items()}
    native = default_run
    assert len(native["checkpoints"]) == 8
    for name in VARIANTS:
        for want, got in zip(native["checkpoints"], results[name]["checkpoints"], strict=True):
            differing = sorted(
                k for k in want["hashes"] if want["hashes"][k] != got["hashes"].get(k)
            )
            assert not differing, (
                f"{name}: checkpoint at tick {want['tick']} differs in {differing}"
            )
        assert results[name]["final"] == native["final"], name
    # The emulation is real: the perturbed libraries give other bits than natively, on a CPU that
    # has the features turned off (so the hashes above were compared under a real change).
    flags = _cpu_flags()
    if {"avx2", "fma"} <= flags:
        assert results["numpy without SIMD"]["canary"]["numpy"] != native["canary"]["numpy"]
        assert results["no FMA, generic x86-64"]["canary"]["libm"] != native["canary"]["libm"]
