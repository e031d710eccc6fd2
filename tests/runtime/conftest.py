"""Shared fixtures: a small marketplace scenario that runs in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL = """
[world]
name = "small"
seed = 5
ticks = 40
checkpoint_every = 10

[network]
regions = ["a", "b", "c"]
links = [{ a = "a", b = "b", latency = 0.1 }, { a = "b", b = "c", latency = 0.2 }]

[bus]
loss = 0.05
duplication = 0.05

[economy]
anti_entropy_every = 3

[[population]]
name = "req"
role = "requester"
count = 60
initial_credits = 20
post_rate = 0.3

[[population]]
name = "work"
role = "worker"
count = 30

[[fault]]
at = 10
kind = "crash"
population = "work"
fraction = 0.5
duration = 5

[[fault]]
at = 20
kind = "partition"
groups = [["a"], ["b", "c"]]
duration = 6
"""


@pytest.fixture
def small_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path
