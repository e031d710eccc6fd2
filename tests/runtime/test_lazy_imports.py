"""Heavy packages are imported only when a role needs them: the CLI and a plain world stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "z3", "gymnasium", "pettingzoo", "polars", "ray")

PLAIN = """
[world]
seed = 1
ticks = 3
[[population]]
name = "requesters"
role = "requester"
count = 20
[[population]]
name = "workers"
role = "worker"
count = 5
"""


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(done.stdout.splitlines()[-1].split()) if done.stdout.strip() else set()


def test_agora_help_imports_no_heavy_package():
    code = (
        "import sys\nfrom runtime.cli import main\nsys.argv = ['agora', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert _imported_after(code + "\nprint()") == set()


def test_a_world_without_learned_cores_imports_no_heavy_package(tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text(PLAIN)
    loaded = _imported_after(
        f"from runtime.kernel.world import World\nfrom runtime.kernel.scenario import load\n"
        f"scenario_config, _ = load({str(path)!r})\nWorld(scenario_config).run()"
    )
    assert loaded == set(), loaded
    # the probe can see a heavy import: the negotiator's policy file loader brings torch along
    assert "torch" in _imported_after("import torch")
