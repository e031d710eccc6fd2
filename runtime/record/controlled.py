"""A recorded run in which some populations' seats are driven from outside.

The scenario environments (one learning population) and ``agora serve`` (seats of several
populations, driven by network clients) both record this way. The run directory is a normal one:
its ``scenario.toml`` names an *inputs file* for each controlled population -- as the population's
``core`` when its role has a learned core, with the ``inputs`` key otherwise -- and a replay drives
the same seats with the same actions, so ``agora replay --verify`` reproduces the run bit for bit
with no client present.

The inputs files are rewritten at every checkpoint (:meth:`ControlledRun.flush`), so a run killed
part way leaves the actions up to its last checkpoint beside that checkpoint, and ``agora run
--resume`` goes on from there with the seats acting as the role's scripted baseline.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tomli_w

from runtime.kernel import roles
from runtime.kernel.control import (
    INPUTS_DIR,
    SCRIPTED,
    Control,
    inputs_fallback_core,
    is_inputs_file,
    write_inputs,
)
from runtime.kernel.errors import ScenarioError
from runtime.kernel.outside_inputs import write_outside_inputs
from runtime.kernel.scenario import Scenario, parse
from runtime.kernel.world import World

OUTSIDE_FILE = f"{INPUTS_DIR}/outside.json"  # a served run's injected faults


def write_controls(world: World, run_dir: Path) -> None:
    """Write each driven population's actions so far to the inputs file its scenario names (the
    population's ``core``, or its ``inputs`` key), whole or not at all.

    A run resumed from a checkpoint calls this as it ends: its inputs files then hold the actions
    the resumed run took, which a replay takes again, whatever a killed run had written past its
    last checkpoint."""
    operator = world.outside
    if operator is not None and world.scenario.record.outside_inputs is not None:
        write_outside_inputs(run_dir / world.scenario.record.outside_inputs, operator.applied)
    for pop in world.populations:
        control = getattr(pop, "control", None)
        if control is None:
            continue
        name = pop.cfg.core if is_inputs_file(run_dir / str(pop.cfg.core)) else None
        name = name or pop.cfg.params.get("inputs")
        if name is None:
            continue
        path = run_dir / name
        write_inputs(path, pop, control.seats, control.recording(), inputs_fallback_core(path))


def parse_data(data: dict[str, Any], base: Path) -> Scenario:
    """A scenario from its TOML tables (ScenarioError naming the problems)."""
    return parse(tomli_w.dumps(data), "<scenario>", base)


class ControlledRun:
    """Record a run of ``data`` into ``out`` with ``seats[name]`` of each named population driven
    from outside.

    Args:
        data: the scenario's TOML tables (not changed: a copy is edited).
        base: the folder the scenario's file names are relative to.
        out: the run directory (prepared as ``agora run --out`` prepares it).
        seed: the run's seed.
        ticks: ticks to run.
        seats: population name -> seat indices, for each controlled population.
        realtime: wall seconds per tick (SimPy's realtime clock), or None: as fast as it goes.
        overwrite: replace an existing run directory at ``out``.

    After construction :attr:`world` is built (tick 0 not yet run) and :attr:`controls` holds a
    live :class:`Control` per population, which the driver feeds before each tick.
    """

    def __init__(
        self,
        data: dict[str, Any],
        base: Path,
        out: Path,
        seed: int,
        ticks: int,
        seats: dict[str, npt.NDArray[np.int64]],
        realtime: float | None = None,
        overwrite: bool = True,
    ) -> None:
        from runtime.record import recording

        data = copy.deepcopy(data)
        data.setdefault("world", {})["seed"] = int(seed)
        data["world"]["ticks"] = int(ticks)
        live = parse_data(data, base)
        names = [p.name for p in live.population]
        self.out, self.ticks, self.seats = out, ticks, seats
        self.inputs: dict[str, tuple[Path, str]] = {}
        for name in seats:
            index = names.index(name)
            cfg, table = live.population[index], data["population"][index]
            if roles.resolve(cfg.role, base).cls.has_core:
                fallback = cfg.core or "learned"
                if fallback not in ("learned", "baseline"):
                    raise ScenarioError(
                        [
                            f"population {name!r}: core {fallback!r}: a recorded run keeps its "
                            "outside actions as the core, so a driven population's own core must "
                            "be 'learned' or 'baseline'"
                        ]
                    )
                inputs = f"{INPUTS_DIR}/{name}.npz"
                table["core"] = inputs
            else:
                if "inputs" in table:
                    raise ScenarioError(
                        [
                            f"population {name!r} already replays inputs {table['inputs']!r}; "
                            "drive a population without the inputs key"
                        ]
                    )
                fallback, inputs = SCRIPTED, f"{INPUTS_DIR}/{name}.npz"
                table["inputs"] = inputs
            self.inputs[name] = (out / inputs, fallback)
        # The operator's injected faults, recorded inputs too (runtime.kernel.outside_inputs).
        data.setdefault("record", {})["outside_inputs"] = OUTSIDE_FILE
        self.raw = tomli_w.dumps(data).encode()
        recording.prepare_out(out, overwrite=overwrite, keep=(base,))
        write_outside_inputs(out / OUTSIDE_FILE, [])
        (out / recording.SCENARIO_COPY).write_bytes(self.raw)
        recording._copy_references(live, base, out)
        for name, (path, fallback) in self.inputs.items():
            cfg = live.population[names.index(name)]
            probe = roles.resolve(cfg.role, base).cls(cfg, np.arange(cfg.count, dtype=np.int64), 1)
            dim = int(np.prod(probe.control_form().action_space.shape))  # type: ignore[attr-defined]
            write_inputs(path, probe, seats[name], np.zeros((0, seats[name].size, dim)), fallback)
        self.manifest = {
            "format": recording.FORMAT,
            "seed": int(seed),
            "ticks": int(ticks),
            "device": "cpu",
            "realtime_factor": realtime,
            "cores": "as written",
            "parent": None,
            "signed": None,
        }
        recording.write_manifest(out, self.manifest)
        # Built as its replay builds it: from the run's own scenario and files.
        self.world: World = recording.build(
            parse_data(data, out), out, out, seed, ticks, realtime, on_checkpoint=self._checkpoint
        )
        self.controls: dict[str, Control] = {}
        for pop in self.world.populations:
            if pop.name in seats:
                control = pop.control  # type: ignore[attr-defined]
                assert control is not None, f"{pop.name}: the inputs file was not read"
                control.go_live()
                self.controls[pop.name] = control
        self.start = time.perf_counter()
        self.finished: Path | None = None

    def _checkpoint(self, _checkpoint: Any) -> None:
        self.flush()

    def flush(self) -> None:
        """Write every controlled population's actions so far to its inputs file."""
        write_controls(self.world, self.out)

    def finish(self) -> Path:
        """Run to the last tick (seats without actions act as the role's scripted baseline), write
        the inputs files, settle the replicas and write the summary; the run directory."""
        if self.finished is not None:
            return self.finished
        from runtime.record import recording

        world = self.world
        world.run(self.ticks)
        self.flush()
        world.settled = world.settle()
        world.close()
        wall = time.perf_counter() - self.start
        recording.summarize(world, self.out, self.raw, self.manifest, wall)
        self.finished = self.out
        return self.out
