"""The roles' networks on a GPU (``--device cuda``): they run there and learn as on the CPU, to
rounding. Skipped where torch sees no CUDA GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.kernel.scenario import parse
from runtime.kernel.world import World

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SCENARIO = """
[world]
ticks = 80
seed = 12
[[population]]
name = "req"
role = "requester"
count = 200
initial_credits = 100
[[population]]
name = "work"
role = "worker"
count = 60
[[population]]
name = "neg"
role = "negotiator"
count = 40
initial_credits = 1000
[[population]]
name = "wm"
role = "world_model"
count = 1
"""


def test_negotiator_and_world_model_run_on_the_gpu_and_match_the_cpu():
    scenario_config = parse(SCENARIO)
    gpu, cpu = World(scenario_config, device="cuda"), World(scenario_config, device="cpu")
    gpu.run()
    cpu.run()
    assert gpu.populations[2].policy.w1.is_cuda
    assert gpu.populations[3].model.model[0][0].is_cuda
    g, c = gpu.populations[2].role_metrics(), cpu.populations[2].role_metrics()
    assert g["efficiency"] == pytest.approx(c["efficiency"], abs=0.02)
    np.testing.assert_allclose(
        gpu.populations[2].policy.arrays()["w1"],
        cpu.populations[2].policy.arrays()["w1"],
        atol=1e-6,
    )
    wg, wc = gpu.populations[3].role_metrics(), cpu.populations[3].role_metrics()
    assert wg["mape_1"] == pytest.approx(wc["mape_1"], rel=0.1)
