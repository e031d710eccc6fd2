"""One World of a scenario, with some seats of one population driven from outside, tick by tick.

:class:`ScenarioRunner` is what the scenario environments (:mod:`environments.scenario_env`,
:mod:`environments.scenario_parallel`) step: it loads the scenario once, builds a fresh World per
episode, attaches a :class:`runtime.kernel.control.Control` to the learning population, and per
tick sets the seats' actions, runs the tick, and reads observations, rewards and who left.

With ``record_dir`` each episode is a normal run directory (``agora analyze`` and ``agora replay
--verify`` read it): the seats' actions are written to an inputs file that the run's
``scenario.toml`` names, so a replay drives the same seats with the same actions and reproduces the
run bit for bit. A role with a learned core (negotiators, critics) names it as the population's
``core`` (``inputs/<population>.npz``); a scripted role (requesters, workers) names it with its
``inputs`` key, and the file is the population's ``cores/<population>.npz``, which the run saves
again as it ends, so a replay makes the same file. A recorded episode that ends early (every
learner left) runs on to the scenario's last tick with the departed seats acting as the role's
scripted baseline.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tomli_w

from runtime.kernel import roles
from runtime.kernel.control import (
    Control,
    ControlForm,
    Reward,
    wealth_micro,
)
from runtime.kernel.errors import ScenarioError
from runtime.kernel.scenario import Scenario, parse
from runtime.kernel.world import World
from runtime.record.controlled import ControlledRun

SEED_MAX = 2**31 - 1  # episode seeds drawn by the environments lie in 0..SEED_MAX


def scenario_data(scenario: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A scenario's TOML tables and keys, and the folder its file names are relative to."""
    if isinstance(scenario, dict):
        return copy.deepcopy(scenario), Path(".")
    path = Path(scenario)
    try:
        return tomllib.loads(path.read_text()), path.parent
    except OSError as exc:
        raise ValueError(
            f"scenario {str(scenario)!r}: cannot read it ({exc.strerror}); expected a "
            "scenario file such as scenarios/marketplace.toml"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"scenario {str(scenario)!r}: not TOML ({exc})") from None


class ScenarioRunner:
    """Episodes of ``scenario`` with ``seats`` of population ``learner`` driven from outside.

    Args:
        scenario: a scenario file, or its tables as a dict.
        learner: the name of the population whose seats are driven (its role has a control form).
        seats: which agents of it (0-based indices); None: all of them.
        reward: a reward name of the role's control form (``"wealth"`` by default: the change of
            balance plus stake, credits), or a callable.
        ticks: ticks per episode (default: the scenario's ``world.ticks``).
        settings: scenario keys to override, ``{"population.negotiators.count": 100}`` (the keys of
            ``agora sweep --set``).
        record_dir: a folder; each episode is recorded as a run into ``record_dir/episode_NNNN``.
    """

    def __init__(
        self,
        scenario: str | Path | dict[str, Any],
        learner: str,
        seats: list[int] | npt.NDArray[np.int64] | None = None,
        reward: str | Reward = "wealth",
        ticks: int | None = None,
        settings: dict[str, Any] | None = None,
        record_dir: str | Path | None = None,
    ) -> None:
        from runtime.kernel.settings import SettingError, override

        self.data, self.base = scenario_data(scenario)
        try:
            for key, value in (settings or {}).items():
                override(self.data, key, value)
        except SettingError as exc:
            raise ValueError(exc.problems[0].replace("--set ", "settings: ")) from None
        if ticks is not None:
            if not isinstance(ticks, int) or ticks < 1:
                raise ValueError(f"ticks: {ticks!r}: expected a whole number of ticks >= 1")
            self.data.setdefault("world", {})["ticks"] = ticks
        self.scenario = self._parse(self.data)
        self.ticks = self.scenario.world.ticks
        names = [p.name for p in self.scenario.population]
        if learner not in names:
            raise ValueError(
                f"learner {learner!r}: the scenario has no such population; its "
                f"populations are {names}"
            )
        self.learner = learner
        self.index = names.index(learner)
        cfg = self.scenario.population[self.index]
        cls = roles.resolve(cfg.role, self.base).cls
        if not hasattr(cls, "control_form"):
            raise ValueError(
                f"learner {learner!r}: role {cfg.role!r} takes no outside control "
                "(it has no control_form); choose a population of a role that does"
            )
        probe = cls(cfg, np.arange(cfg.count, dtype=np.int64), 1)
        self.form: ControlForm = probe.control_form()  # type: ignore[attr-defined]
        self.seats = self._seats(seats, cfg.count)
        self.reward_fn = self.form.reward(reward)
        self.action_dim = int(np.prod(self.form.action_space.shape))
        self.record_dir = None if record_dir is None else Path(record_dir)
        self.episodes = 0
        self.world: World | None = None
        self.pop: Any = None
        self.control: Control | None = None
        self._wealth = np.zeros(self.seats.size, dtype=np.int64)
        self._recording: ControlledRun | None = None

    def _parse(self, data: dict[str, Any], base: Path | None = None) -> Scenario:
        try:
            return parse(tomli_w.dumps(data), "<scenario>", self.base if base is None else base)
        except ScenarioError as exc:
            raise ValueError(f"scenario: {exc.problems[0]}") from None

    def _seats(self, seats: Any, count: int) -> npt.NDArray[np.int64]:
        if seats is None:
            return np.arange(count, dtype=np.int64)
        arr = np.asarray(seats)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise ValueError(f"seats {seats!r}: expected a non-empty list of agent indices")
        bad = arr[(arr < 0) | (arr >= count)]
        if bad.size:
            raise ValueError(
                f"seats: {int(bad[0])} is not an agent of population {self.learner!r}; "
                f"its agents are 0..{count - 1}"
            )
        if np.unique(arr).size != arr.size:
            raise ValueError(f"seats {arr.tolist()}: a seat is listed twice")
        return arr.astype(np.int64)

    # ------------------------------------------------------------------ episodes
    def reset(self, seed: int) -> npt.NDArray[np.float32]:
        """Finish the episode under way, build a fresh world with ``seed``; the seats' first
        observations ``float32[k, ...]``."""
        assert 0 <= seed <= 2**63 - 1
        self.finish()
        data = copy.deepcopy(self.data)
        data.setdefault("world", {})["seed"] = int(seed)
        if self.record_dir is None:
            live = self._parse(data)
            world = World(live, base=self.base, seed=seed)
            world.final_tick = self.ticks - 1
        else:
            world = self._record_start(data, seed)
        self.world = world
        self.pop = next(p for p in world.populations if p.name == self.learner)
        if (
            self.pop.control is not None
        ):  # recorded: the world took its (empty) inputs file as its core
            self.control = self.pop.control
            self.control.go_live()
        else:
            self.control = self.pop.attach_control(world, self.seats)
        self._wealth = wealth_micro(world, self.pop, self.seats)
        self.episodes += 1
        return self.observe()

    def observe(self) -> npt.NDArray[np.float32]:
        """Every seat's observation for the coming tick."""
        assert self.world is not None
        return self.pop.observe(self.world, self.seats)  # type: ignore[no-any-return]

    def step(
        self, actions: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.bool_], bool]:
        """One tick with the seats' ``actions`` (``float64[k, action_dim]``, checked; NaN rows: the
        seat acts as the role's scripted baseline). Returns observations, rewards (credits), which
        seats left (crashed, or wealth at zero: bankrupt) and whether the episode reached its last
        tick."""
        world, control = self.world, self.control
        assert world is not None and control is not None, "reset() first"
        control.set_actions(actions)
        world.run(world.tick + 1)
        reward = self.reward_fn(world, self.pop, self.seats, self._wealth.astype(np.float64))
        self._wealth = wealth_micro(world, self.pop, self.seats)
        left = ~self.pop.alive[self.seats]
        if self.form.bankrupt_leaves:
            left |= self._wealth <= 0
        over = world.tick >= self.ticks
        return self.observe(), np.asarray(reward, dtype=np.float64), left, over

    # ------------------------------------------------------------------ recording
    def _record_start(self, data: dict[str, Any], seed: int) -> World:
        """A recorded world: a run directory whose scenario names the inputs file (as the core, or
        with the ``inputs`` key)."""
        assert self.record_dir is not None
        out = self.record_dir / f"episode_{self.episodes:04d}"
        try:
            run = ControlledRun(data, self.base, out, seed, self.ticks, {self.learner: self.seats})
        except ScenarioError as exc:
            raise ValueError(f"record_dir: {exc.problems[0]}") from None
        self._recording = run
        return run.world

    def finish(self) -> Path | None:
        """End the episode under way; a recorded one runs to its last tick (departed seats as the
        scripted baseline) and is written out. Returns its run directory (None: not recorded)."""
        run, self._recording = self._recording, None
        return None if run is None else run.finish()
