"""The benchmarks' peers compute the same thing as Agora (so their ratios compare like with like),
and the bench command refuses an unknown suite."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from benchmarks import coordination, kernel
from economy import Keyring, Replica
from economy.reference_ledger import DictReplica
from runtime.cli import app
from runtime.kuramoto import Oscillators


def test_kuramoto_peers_take_the_same_step():
    csr = coordination._graph(500, 4000)
    rng = np.random.default_rng(0)
    omega, theta = rng.normal(0, 0.5, 500), rng.uniform(0, 2 * np.pi, 500)
    osc = Oscillators(omega, coordination.K, coordination.DT, theta, csr)
    osc.step()
    rows = np.repeat(np.arange(500), np.diff(csr.indptr))
    deg = np.bincount(rows, weights=csr.weights, minlength=500)
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    by_numpy = np.mod(coordination.numpy_step(theta, omega, rows, csr, inv), 2 * np.pi)
    by_python = np.mod(np.array(coordination.python_step(theta.tolist(), omega.tolist(), csr)), 2 * np.pi)
    assert np.allclose(osc.theta, by_numpy, atol=1e-12) and np.allclose(osc.theta, by_python, atol=1e-12)


def test_trivial_population_peers_count_the_same_steps():
    assert kernel.mesa_ticker(200, 3) > 0 and kernel.simpy_ticker(200, 3) > 0 and kernel.python_ticker(200, 3) > 0
    assert kernel.agora_ticker(200, 3) > 0


def test_dict_ledger_baseline_agrees_with_the_array_ledger():
    kr = Keyring.derive(2, b"peer")
    array, ref = Replica(0, 2, 10, kr), DictReplica(0, 2)
    rng = np.random.default_rng(3)
    for _ in range(300):
        a, b, x = int(rng.integers(10)), int(rng.integers(10)), int(rng.integers(1, 50))
        if rng.random() < 0.3:
            array.mint(a, x)
            ref.mint(a, x)
        else:
            ok = ref.transfer(a, b, x)
            try:
                array.transfer(a, b, x)
                assert ok
            except Exception:
                assert not ok
    assert [array.balance(a) for a in range(10)] == [ref.balance(a) for a in range(10)]


def test_unknown_suite_exits_2():
    result = CliRunner().invoke(app, ["bench", "--only", "gpu"])
    assert result.exit_code == 2 and "expected one of" in result.output


def test_exchange_peers_do_the_same_work():
    from benchmarks import exchange

    wealth, _ = exchange.mesa_run(300, 5)
    assert sum(wealth) == 300 and min(wealth) >= 0
    wealth, _, acted = exchange.simpy_run(300, 5)
    assert sum(wealth) == 300 and min(wealth) >= 0
    assert acted == [5] * 300  # every agent takes exactly one turn per step
    assert exchange.agora(1000, 3) > 0 and exchange.numba_loop(1000, 3) > 0
