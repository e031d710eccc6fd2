"""The gallery as a user's code: its roles keep to the agent API and to the determinism rules,
every scenario validates and runs with ``agora run``, and a recorded run replays bit for bit from
wherever its directory is moved."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.kernel.world_api import MEMBERS

from .conftest import GALLERY

RUNNER = CliRunner()
SCENARIOS = sorted(GALLERY.glob("*.toml"))
MODULES = sorted((GALLERY / "classics").glob("*.py"))
# numpy's transcendental functions, reductions over floats and matrix products may round
# differently on different processors; numpy's own random generators are not the world's streams.
NOT_PORTABLE = {
    "exp",
    "log",
    "log1p",
    "expm1",
    "tanh",
    "sin",
    "cos",
    "power",
    "mean",
    "dot",
    "matmul",
    "random",
    "average",
    "var",
    "std",
}
NOT_IMPORTED = {"random", "time", "os", "threading"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_the_roles_use_only_the_world_api(module):
    used = {
        node.attr
        for node in ast.walk(_tree(module))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "world"
    }
    assert not used - MEMBERS, f"{module.name} uses world.{sorted(used - MEMBERS)}"


@pytest.mark.parametrize("module", MODULES, ids=[m.stem for m in MODULES])
def test_the_roles_compute_floats_in_a_fixed_order(module):
    tree = _tree(module)
    calls = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "np"
    }
    assert not calls & NOT_PORTABLE, f"{module.name} calls np.{sorted(calls & NOT_PORTABLE)}"
    methods = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not methods & {"mean", "dot", "std", "var"}, f"{module.name} reduces floats with numpy"
    assert not any(
        isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) for node in ast.walk(tree)
    ), f"{module.name} multiplies matrices with @"
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & NOT_IMPORTED, f"{module.name} imports {sorted(imported & NOT_IMPORTED)}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.stem for s in SCENARIOS])
def test_each_scenario_validates_and_runs_with_agora_run(scenario, tmp_path):
    done = RUNNER.invoke(app, ["validate", str(scenario)])
    assert done.exit_code == 0, done.output
    done = RUNNER.invoke(
        app,
        ["run", str(scenario), "--out", str(tmp_path / "run"), "--until", "3", "--seed", "5", "-q"],
    )
    assert done.exit_code == 0, done.output
    assert (tmp_path / "run" / "classics" / "__init__.py").is_file()  # the measures travel too


def test_a_gallery_run_replays_bit_for_bit_from_another_folder(tmp_path):
    run = tmp_path / "run"
    agora = [sys.executable, "-m", "runtime.cli"]
    done = subprocess.run(
        [
            *agora,
            "run",
            str(GALLERY / "redistribution.toml"),
            "--out",
            str(run),
            "--until",
            "60",
            "--seed",
            "8",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    done = subprocess.run(
        [*agora, "replay", str(moved), "--verify", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=moved.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical" in done.stdout


def test_the_readme_shows_every_scenario():
    readme = (GALLERY / "README.md").read_text()
    named = set(re.findall(r"examples/gallery/(\w+)\.toml", readme))
    assert named == {s.stem for s in SCENARIOS}
