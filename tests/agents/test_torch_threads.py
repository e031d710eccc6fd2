"""The roles' networks run on one CPU thread at every use, whatever set torch's thread count last
(numba's OpenMP pool may set it to every core when it starts: agents.torch_threads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents import world_model
from agents.negotiator import Policy
from runtime.scenario import parse
from runtime.world import World

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "marketplace.toml"


@pytest.fixture
def torch_threads():  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_negotiators_and_forecasters_use_one_thread_each_tick(monkeypatch, torch_threads):  # type: ignore[no-untyped-def]
    seen: dict[str, list[int]] = {"forward": [], "learn": [], "forecast": []}

    def spy(owner, name, key):  # type: ignore[no-untyped-def]
        inner = getattr(owner, name)

        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            out = inner(*args, **kwargs)
            seen[key].append(torch.get_num_threads())  # the count the call's tensor ops ran with
            return out

        monkeypatch.setattr(owner, name, wrapped)

    spy(Policy, "forward", "forward")
    spy(Policy, "learn", "learn")
    spy(world_model.WorldModelPopulation, "_predict", "forecast")
    world = World(parse(SCENARIO.read_text(), base=SCENARIO.parent), base=SCENARIO.parent)
    torch.set_num_threads(2)  # what numba's pool can leave behind on two cores
    world.run(20)
    assert all(seen.values()), {k: len(v) for k, v in seen.items()}  # each network ran
    assert {k: set(v) for k, v in seen.items()} == {k: {1} for k in seen}
