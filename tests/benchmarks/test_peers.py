"""The benchmarks' peers compute the same thing as Agora (so their ratios compare like with like),
and the bench command refuses an unknown suite."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from benchmarks import coordination, kernel
from economy import Keyring, Replica
from economy.reference_ledger import DictReplica
from runtime.cli import app
from runtime.coordination.kuramoto import Oscillators


def test_kuramoto_peers_take_the_same_step():
    csr = coordination._graph(500, 4000)
    rng = np.random.default_rng(0)
    omega, theta = rng.normal(0, 0.5, 500), rng.uniform(0, 2 * np.pi, 500)
    osc = Oscillators(omega, coordination.COUPLING, coordination.TIME_STEP, theta, csr)
    osc.step()
    rows = np.repeat(np.arange(500), np.diff(csr.indptr))
    deg = np.bincount(rows, weights=csr.weights, minlength=500)
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    by_numpy = np.mod(coordination.numpy_step(theta, omega, rows, csr, inv), 2 * np.pi)
    by_python = np.mod(
        np.array(coordination.python_step(theta.tolist(), omega.tolist(), csr)), 2 * np.pi
    )
    assert np.allclose(osc.theta, by_numpy, atol=1e-12) and np.allclose(
        osc.theta, by_python, atol=1e-12
    )


def test_trivial_population_peers_count_the_same_steps():
    assert (
        kernel.mesa_ticker(200, 3) > 0
        and kernel.simpy_ticker(200, 3) > 0
        and kernel.python_ticker(200, 3) > 0
    )
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
    result = CliRunner().invoke(app, ["bench", "--only", "nosuchsuite"])
    assert result.exit_code == 2 and "expected one or more of" in result.output
    result = CliRunner().invoke(app, ["bench", "--only", "exchange,nosuchsuite"])
    assert result.exit_code == 2 and "'nosuchsuite' is not a suite" in result.output


def test_bench_prints_tables_to_stdout_and_progress_to_stderr():
    import io

    from rich.console import Console

    from benchmarks import run_all

    out, err = io.StringIO(), io.StringIO()
    run_all(
        quick=True,
        only="kernel",
        console=Console(file=out, width=120),
        status=Console(file=err, width=120),
    )
    assert (
        "kernel: per-tick overhead, no agents" in out.getvalue() and "done in" not in out.getvalue()
    )
    assert "kernel: done in" in err.getvalue() and "per-tick overhead" not in err.getvalue()


def test_exchange_peers_do_the_same_work():
    from benchmarks import exchange

    wealth, _ = exchange.mesa_run(300, 5)
    assert sum(wealth) == 300 and min(wealth) >= 0
    wealth, _, acted = exchange.simpy_run(300, 5)
    assert sum(wealth) == 300 and min(wealth) >= 0
    assert acted == [5] * 300  # every agent takes exactly one turn per step
    assert exchange.agora(1000, 3) > 0 and exchange.numba_loop(1000, 3) > 0


def test_scaled_marketplace_has_n_agents_and_every_role():
    from benchmarks.marketplace import scaled_text
    from runtime.kernel.scenario import parse

    for n in (10_000, 123_457):
        scenario_config = parse(scaled_text(n))
        assert (
            abs(sum(p.count for p in scenario_config.population) - n) <= 2
        )  # rounding of four populations
        roles = {p.role for p in scenario_config.population}
        assert roles == {
            "requester",
            "worker",
            "healer",
            "critic",
            "world_model",
            "refactor",
            "negotiator",
        }
        assert (
            next(p for p in scenario_config.population if p.role == "critic").params[
                "review_ledger"
            ]
            is False
        )
        assert len(scenario_config.fault) == 4 and scenario_config.coordination is not None


def test_mesa_marketplace_peer_does_the_marketplace_work_and_conserves_credits():
    from benchmarks.marketplace import scaled_text
    from benchmarks.mesa_marketplace import (
        Critic,
        Healer,
        MesaMarketplace,
        Negotiator,
        Requester,
        Worker,
    )
    from runtime.kernel.scenario import parse

    model = MesaMarketplace(2_000, seed=3)
    agora = {}
    for p in parse(scaled_text(2_000)).population:
        agora[p.role] = agora.get(p.role, 0) + p.count
    counts = {
        t: len(model.agents_by_type[t]) for t in (Requester, Worker, Negotiator, Healer, Critic)
    }
    assert counts == {
        Requester: agora["requester"],
        Worker: agora["worker"],
        Negotiator: agora["negotiator"],
        Healer: agora["healer"],
        Critic: agora["critic"],
    }
    minted_before = sum(sum(r.minted.values()) for r in model.ledgers)
    contracts = paid = 0
    for _ in range(12):
        model.step()
        paid += len(model.results)
        contracts += sum(1 for n in model.negotiators if any(n.A.ravel()))
    assert paid > 1000 and contracts > 0  # workers were paid and negotiators learned from trades
    # Once every replica has merged every other's state: credits held = minted - burned (slashes).
    for a in model.ledgers:
        for b in model.ledgers:
            a.merge(b)
    minted = sum(model.ledgers[0].minted.values())
    burned = sum(model.ledgers[0].burned.values())
    assert minted > minted_before
    assert model.credits() == minted - burned
    assert any(w.alive for w in model.workers) and 0 < min(model.prices)


def test_profiling_scripts_refuse_bad_arguments_with_exit_2(capsys):
    from benchmarks import kuramoto_floor, profile_tick, tick_window

    assert tick_window.main(["12"]) == 2 and tick_window.main([]) == 2
    assert kuramoto_floor.main(["ten"]) == 2
    assert profile_tick.main(["1000", "5", "tpu"]) == 2 and profile_tick.main(["1000"]) == 2
    assert capsys.readouterr().err.count("usage:") == 5


def test_every_suite_has_the_entry_its_runner_calls():
    import importlib
    import inspect

    from benchmarks import SUITE_TABLES

    for name, suite in SUITE_TABLES.items():
        module = importlib.import_module(f"benchmarks.{suite.module}")
        run = getattr(module, "run", None)
        assert callable(run), f"benchmarks.{suite.module} has no run(quick) for suite {name!r}"
        takes = set(inspect.signature(run).parameters)
        assert "quick" in takes and (not suite.takes_progress or "progress" in takes), name
