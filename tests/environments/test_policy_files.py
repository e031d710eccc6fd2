"""Policy files: the format round-trips, the forward pass is the documented one, malformed and
legacy files are refused with a reason, the observation is one definition for the environment
and the negotiators, and the examples of docs/reference/policy-files.md run."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.shade_policy import (
    POLICY_KIND,
    ShadePolicy,
    is_shade_policy,
    market_observation,
    save_policy_file,
)
from environments.market import MarketEnv

DOC = Path("docs/reference/policy-files.md")
RNG = np.random.default_rng(4)


def reference(
    obs: np.ndarray, weights: list, biases: list, activation: str, squash: str
) -> np.ndarray:
    """The documented forward pass, in plain numpy."""
    h = obs.astype(np.float64)
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w.astype(np.float64).T + b
        if k < len(weights) - 1:
            h = np.tanh(h) if activation == "tanh" else np.maximum(h, 0.0)
    return np.clip(h, -1, 1) if squash == "clip" else np.tanh(h)


@pytest.mark.parametrize(
    ("activation", "squash", "dtype"),
    [("tanh", "clip", np.float32), ("relu", "tanh", np.float64), ("tanh", "tanh", np.float64)],
)
def test_a_written_file_loads_and_computes_the_documented_forward_pass(
    tmp_path, activation, squash, dtype
):
    sizes = [4, 16, 8, 1]
    weights = [RNG.normal(0, 1.5, (o, i)).astype(dtype) for i, o in itertools.pairwise(sizes)]
    biases = [RNG.normal(0, 0.5, o).astype(dtype) for o in sizes[1:]]
    save_policy_file(tmp_path / "p.npz", weights, biases, activation, squash, source="test")
    assert is_shade_policy(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as data:
        assert str(data["kind"]) == POLICY_KIND and int(data["format"]) == 1
        assert data["weight_1"].dtype == dtype and data["bias_2"].shape == (1,)
    policy = ShadePolicy(tmp_path / "p.npz")
    obs = RNG.uniform(-1, 1, (64, 4))
    expected = reference(obs, weights, biases, activation, squash)
    assert np.allclose(policy.action(obs), expected, atol=1e-12)
    assert np.allclose(policy(obs), (expected[:, 0] + 1) / 2, atol=1e-12)
    assert (policy(obs) >= 0).all() and (policy(obs) <= 1).all()


def test_one_linear_layer_clipped_is_a_policy_too(tmp_path):
    # action = clip(2·feature_0 − 0.5): the cost feature alone sets the shade.
    save_policy_file(
        tmp_path / "p.npz",
        [np.array([[2.0, 0.0, 0.0, 0.0]])],
        [np.array([-0.5])],
        "tanh",
        "clip",
        source="hand-written",
    )
    policy = ShadePolicy(tmp_path / "p.npz")
    obs = np.array([[-1.0, 0, 0, 0], [0.0, 0, 0, 0], [0.25, 0, 0, 0], [1.0, 0, 0, 0]])
    assert policy.action(obs)[:, 0].tolist() == [-1.0, -0.5, 0.0, 1.0]
    assert policy(obs).tolist() == [0.0, 0.25, 0.5, 1.0]


def good_arrays() -> dict:
    return {
        "kind": np.array(POLICY_KIND),
        "format": np.array(1),
        "activation": np.array("tanh"),
        "squash": np.array("clip"),
        "weight_0": np.zeros((3, 4)),
        "bias_0": np.zeros(3),
        "weight_1": np.zeros((1, 3)),
        "bias_1": np.zeros(1),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": np.array("market-v0-ppo")}, "former spaces.*agora train.*convert_sb3"),
        ({"kind": np.array("something")}, "kind 'something': expected 'agora-shade-policy'"),
        ({"format": np.array(2)}, "format 2: this Agora reads format 1"),
        ({"activation": np.array("gelu")}, "activation 'gelu': expected one of"),
        ({"squash": np.array("sigmoid")}, "squash 'sigmoid': expected one of"),
        ({"weight_0": np.zeros((3, 5))}, r"weight_0 \(3, 5\) / bias_0 \(3,\): expected \(out, 4\)"),
        (
            {"weight_1": np.zeros((2, 3)), "bias_1": np.zeros(2)},
            "the last layer must have one output",
        ),
        ({"weight_0": np.zeros((3, 4), dtype=np.int64)}, "dtypes int64/float64"),
        ({"bias_0": None}, "bias_0"),
    ],
)
def test_a_malformed_or_legacy_file_is_refused_with_the_reason(tmp_path, change, message):
    arrays = {k: v for k, v in {**good_arrays(), **change}.items() if v is not None}
    np.savez(tmp_path / "p.npz", **arrays)
    with pytest.raises(ValueError, match=rf"p.npz: .*{message}"):
        ShadePolicy(tmp_path / "p.npz")


def test_other_files_are_not_policy_files_and_bad_writes_are_refused(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    for name in ("text.npz", "other.npz", "missing.npz"):
        assert not is_shade_policy(tmp_path / name)
    with pytest.raises(ValueError, match="1 weights and 0 biases"):
        save_policy_file(tmp_path / "w.npz", [np.zeros((1, 4))], [], "tanh", "clip", "test")
    save_policy_file(tmp_path / "w.npz", [np.zeros((1, 4))], [np.zeros(1)], "tanh", "clip", "t")
    with pytest.raises(ValueError, match=r"observations of shape \(3,\): expected \(n, 4\)"):
        ShadePolicy(tmp_path / "w.npz").action(np.zeros(3))


def test_the_environment_observes_what_market_observation_computes():
    env = MarketEnv()
    obs, _ = env.reset(seed=9)
    for _ in range(20):
        m = env.market
        expected = market_observation(
            m.cost[0, 0], m.last_price[0], m.credits[0, 0] / m.initial, 1 - m.t[0] / m.periods
        ).astype(np.float32)
        assert np.array_equal(obs, expected)
        obs, *_ = env.step(np.array([-0.3], dtype=np.float32))


def test_market_observation_scales_each_feature_to_the_unit_box():
    obs = market_observation(
        cost=[0.5, 1.0, 1.5],
        last_price=[0.0, 1.0, 2.5],
        credits_ratio=[0.0, 1.0, 50.0],
        share_left=[1.0, 0.5, 0.0],
    )
    assert obs.tolist() == [
        [-1.0, -1.0, -1.0, 1.0],
        [0.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, 9.0 / 11.0, -1.0],
    ]


def test_the_shipped_policy_is_a_current_policy_file_and_small():
    shipped = Path("scenarios/policies/market_ppo.npz")
    policy = ShadePolicy(shipped)
    assert shipped.stat().st_size < 64_000 and "agora train" in policy.source
    shades = policy(market_observation(np.linspace(0.5, 1.5, 11), 1.3, 1.0, 0.5))
    assert ((shades > 0.05) & (shades < 0.95)).all()  # trades: neither its cost nor the ceiling


def test_the_docs_examples_run(tmp_path, monkeypatch):
    pytest.importorskip("stable_baselines3")
    import torch

    text = DOC.read_text()
    python = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    shell = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    assert len(python) == 2 and len(shell) == 1
    root = Path.cwd()
    (tmp_path / "scenarios").symlink_to(root / "scenarios")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tests run beside other processes: no oversubscribed cores
    try:
        for block in python:
            exec(compile(block, str(DOC), "exec"), {"__name__": "docs"})
    finally:
        torch.set_num_threads(threads)
    paths = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    for line in shell[0].strip().splitlines():
        command = line.split()
        assert command[0] == "python"
        proc = subprocess.run(
            [sys.executable, *command[1:]], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
    assert ShadePolicy(tmp_path / "ppo_market.npz").squash == "clip"
