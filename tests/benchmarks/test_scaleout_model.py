"""The scale-out model: fitted on points it generated, it gives back its own parameters, and it
predicts the oversubscribed and the cluster cases as its formula says."""

from __future__ import annotations

import pytest

from benchmarks.scaleout import CORES, Model, Point, fit


def test_the_fit_recovers_the_model_that_made_the_points():
    truth = Model(a=2e-6, b=5e-7, h=0.01, beta=100.0)
    points = [
        Point(scaling, n, k, 1.0, truth.tick(n, k, CORES), truth.beta * n * (k - 1) / k, True)
        for scaling, n, k in (
            ("strong", 200_000, 1),
            ("strong", 200_000, 2),
            ("strong", 200_000, 4),
            ("weak", 50_000, 1),
            ("weak", 100_000, 2),
        )
    ]
    got = fit(points)
    assert got.a == pytest.approx(truth.a, rel=1e-6) and got.b == pytest.approx(truth.b, rel=1e-6)
    assert got.h == pytest.approx(truth.h, rel=1e-6)
    assert got.beta == pytest.approx(truth.beta, rel=1e-9)
    # Four shards on two cores take twice the own agents' work of four cores; the rest stays.
    assert truth.tick(200_000, 4, 2) - truth.tick(200_000, 4, 4) == pytest.approx(
        truth.a * 200_000 / 4
    )
    # Past a / b shards, adding shards buys nothing: every shard still pays b per agent.
    assert truth.tick(10**6, 1000, 1000) > truth.b * 10**6
    wire = truth.tick(10**6, 4, 4, bandwidth=1e9) - truth.tick(10**6, 4, 4)
    assert wire == pytest.approx(100.0 * 10**6 * 3 / 4 / 4 / 1e9)


def test_the_fit_never_makes_a_cost_negative():
    noisy = [
        Point("strong", 20_000, 1, 1.0, 0.020, 0.0, True),
        Point("strong", 20_000, 2, 1.0, 0.021, 1e6, True),
        Point("weak", 5_000, 1, 1.0, 0.011, 0.0, True),
        Point("weak", 10_000, 2, 1.0, 0.018, 5e5, True),
    ]
    got = fit(noisy)
    assert got.a >= 0 and got.b >= 0 and got.h >= 0
