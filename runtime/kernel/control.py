"""Outside control: the seam through which a population's decisions come from outside the World.

A role that makes decisions offers a *control form* (:class:`ControlForm`): per agent, an
observation space and an action space (Gymnasium spaces), how an action maps onto the agent's
world calls, and the rewards it can be scored by. Whoever drives the world -- a learner through
:mod:`environments.scenario_env` today, a network client tomorrow -- attaches a :class:`Control`
to the population naming the *seats* it drives, reads observations between ticks, and sets one
action per seat before each tick. The kernel knows nothing of it: the population reads its
pending actions in its own ``step``.

Outside actions are recorded inputs. A :class:`Control` keeps every tick's actions; written to an
inputs file (:func:`write_inputs`) and named as the population's ``core`` in a run's scenario, they
drive the same seats again when the run is replayed (:meth:`Control.replaying`), so a recorded
episode replays bit for bit. A row of NaN means "no outside action this tick": the seat then acts
as the role's scripted baseline (a learner that left the episode, say).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from runtime.kernel.array_files import npz_bytes

if TYPE_CHECKING:
    from runtime.kernel.population import Population
    from runtime.kernel.world import World

INPUTS_KIND = "agora-control-inputs"
INPUTS_FORMAT = 1
INPUTS_DIR = "inputs"  # where a recorded run keeps its inputs files, one per controlled population

Reward = Callable[
    ["World", "Population", npt.NDArray[np.int64], npt.NDArray[np.float64]], npt.NDArray[np.float64]
]
"""A reward: ``(world, population, seats, before) -> float64[len(seats)]``, credits. ``before`` is
what :func:`wealth_micro` gave for the seats before the tick."""


def wealth_micro(
    world: World, pop: Population, seats: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Balance plus stake of each seat's agent at its home replica: int64[len(seats)],
    micro-credits."""
    accounts = pop.ids[seats]
    out = np.zeros(accounts.size, dtype=np.int64)
    homes = world.home(accounts)
    for r, ledger in enumerate(world.ledgers):
        sel = np.flatnonzero(homes == r)
        if sel.size and ledger is not None:
            out[sel] = ledger.rights_of(accounts[sel]) + ledger.staked_of(accounts[sel])
    assert out.shape == seats.shape
    return out


def wealth_change(
    world: World, pop: Population, seats: npt.NDArray[np.int64], before: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The default reward: the change over the tick of balance plus stake, in credits."""
    after = wealth_micro(world, pop, seats)
    return (after - before.astype(np.int64)) / world.MICRO


REWARDS: dict[str, Reward] = {"wealth": wealth_change}
"""Rewards every control form offers, by name (a role adds its own in
:attr:`ControlForm.rewards`)."""


@dataclass(frozen=True)
class ControlForm:
    """What a role offers for outside control, per agent.

    Attributes:
        observation_space: a ``gymnasium.spaces.Box`` of one agent's observation.
        action_space: a ``gymnasium.spaces.Box`` of one agent's action.
        action_meaning: one line on how an action becomes the agent's world calls (error messages
            quote it).
        rewards: the role's own rewards by name, beside :data:`REWARDS`.
        bankrupt_leaves: whether a seat whose balance plus stake reaches zero leaves the episode
            (False for roles that act without credits, such as workers and critics).
    """

    observation_space: Any
    action_space: Any
    action_meaning: str
    rewards: dict[str, Reward] = field(default_factory=dict)
    bankrupt_leaves: bool = True

    def reward(self, name: str | Reward) -> Reward:
        """The reward called ``name`` (or ``name`` itself, a callable); ValueError listing the
        names."""
        if callable(name):
            return name
        known = {**REWARDS, **self.rewards}
        if name not in known:
            raise ValueError(
                f"reward {name!r}: expected one of {sorted(known)}, or a callable "
                "(world, population, seats, wealth_before_micro) -> credits"
            )
        return known[name]

    def check(self, actions: Any, who: Callable[[int], str]) -> npt.NDArray[np.float64]:
        """``actions`` (one row per seat) as float64 ``[k, action_dim]`` inside the action space,
        or ValueError naming the first bad value, its seat, and what was expected (nothing is
        clipped)."""
        space = self.action_space
        raw = np.asarray(actions)
        shape = tuple(space.shape)
        if raw.dtype.kind not in "fiu" or raw.shape[1:] != shape:  # booleans, strings, objects: no
            raise ValueError(
                f"{who(0)}: action {actions!r} is not in {space}: need a float array "
                f"of shape {shape}, {self.action_meaning}"
            )
        arr = raw.astype(np.float64).reshape(raw.shape[0], -1)
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        bad = ~np.isfinite(arr) | (arr < low) | (arr > high)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"{who(int(row))}: action {float(arr[row, col])!r} is outside {space}: "
                f"need {self.action_meaning}"
            )
        return arr


class Control:
    """Outside decisions for ``seats`` of one population: pending actions in, a record out.

    Live (:meth:`live`), the driver calls :meth:`set_actions` before each tick; the population
    reads :meth:`take` once in its step, which records the row. Replaying (:meth:`replaying`),
    :meth:`take` returns the recorded row of that tick instead.
    """

    def __init__(
        self,
        seats: npt.NDArray[np.int64],
        action_dim: int,
        recorded: npt.NDArray[np.float64] | None = None,
    ) -> None:
        assert seats.ndim == 1 and action_dim >= 1
        assert np.unique(seats).size == seats.size, "each seat is driven once"
        self.seats = np.asarray(seats, dtype=np.int64)
        self.action_dim = action_dim
        self.pending = np.full((seats.size, action_dim), np.nan)
        self.history: list[npt.NDArray[np.float64]] = []
        self.recorded = recorded  # [ticks, k, action_dim] when replaying

    @classmethod
    def live(cls, seats: npt.NDArray[np.int64], action_dim: int) -> Control:
        """A control driven from outside, tick by tick."""
        return cls(seats, action_dim)

    @classmethod
    def replaying(cls, path: Path, pop: Population) -> Control:
        """A control that plays back an inputs file's actions (:func:`read_inputs`)."""
        seats, actions = read_inputs(path, pop)
        return cls(seats, actions.shape[2], actions)

    def go_live(self) -> None:
        """Take actions from :meth:`set_actions` from now on (a recording starts from an inputs file
        with no actions yet, so the world it builds is the one its replay builds)."""
        self.recorded = None

    def set_actions(self, actions: npt.NDArray[np.float64]) -> None:
        """The next tick's actions, ``float64[k, action_dim]`` (checked by the control form;
        NaN rows: no outside action)."""
        assert actions.shape == self.pending.shape, (actions.shape, self.pending.shape)
        self.pending = actions

    def take(self, tick: int) -> npt.NDArray[np.float64]:
        """This tick's actions, ``float64[k, action_dim]``; called once per tick by the
        population."""
        nothing = np.full((self.seats.size, self.action_dim), np.nan)
        while len(self.history) < tick:  # ticks before a restored checkpoint, or not stepped in
            done = len(self.history)
            recorded = self.recorded
            self.history.append(
                recorded[done] if recorded is not None and done < recorded.shape[0] else nothing
            )
        if self.recorded is not None:
            row = self.recorded[tick] if tick < self.recorded.shape[0] else nothing
        else:
            row, self.pending = self.pending, nothing
        self.history.append(row)
        return row

    def __getstate__(self) -> dict[str, Any]:
        """What a checkpoint keeps: the seats and the actions taken so far, the same whether they
        came live or from an inputs file."""
        return {"seats": self.seats, "action_dim": self.action_dim, "taken": self.recording()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A restored control plays back the actions taken before the checkpoint."""
        self.__init__(state["seats"], state["action_dim"], state["taken"])  # type: ignore[misc]

    def recording(self) -> npt.NDArray[np.float64]:
        """Every tick's actions so far, ``float64[ticks, k, action_dim]``."""
        if not self.history:
            return np.zeros((0, self.seats.size, self.action_dim))
        return np.stack(self.history)

    def acting(self, actions: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Which rows of ``actions`` (one of :meth:`take`) carry an outside action: bool[k]."""
        assert actions.shape == (self.seats.size, self.action_dim)
        return np.asarray(~np.isnan(actions).any(axis=1), dtype=np.bool_)


CREDITS_RATIO_CAP = 10.0  # a ratio feature caps its ratio here before scaling


def ratio_feature(ratio: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A ratio ``r >= 0`` as an observation feature in ``[-1, 1)``: ``(r − 1)/(r + 1)`` with ``r``
    capped at 10 -- 0 at a ratio of 1, towards -1 near 0, 9/11 at the cap."""
    r = np.clip(np.asarray(ratio, dtype=np.float64), 0.0, CREDITS_RATIO_CAP)
    out = (r - 1.0) / (r + 1.0)
    assert not (np.abs(out) > 1.0).any()
    return out


def share_feature(share: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A share in ``[0, 1]`` as an observation feature in ``[-1, 1]``: ``2·share − 1``."""
    s = np.clip(np.asarray(share, dtype=np.float64), 0.0, 1.0)
    return 2.0 * s - 1.0


def share_left(world: World) -> float:
    """The share of the run still to come before the coming tick, 1 to 0."""
    left = 1.0 - world.tick / (world.final_tick + 1)
    assert -1e-12 <= left <= 1.0
    return left


SCRIPTED = "scripted"  # the fallback core of a role whose agents follow a fixed rule


def save_recording(folder: Path, pop: Population, control: Control) -> Path:
    """Write ``control``'s actions so far as ``folder/<population>.npz`` (:func:`write_inputs`):
    how a role without a learned core keeps its recorded inputs among a run's cores."""
    path = folder / f"{pop.name}.npz"
    write_inputs(path, pop, control.seats, control.recording(), SCRIPTED)
    assert path.is_file()
    return path


def inputs_problem(path: Path, role: str) -> str | None:
    """Why ``path`` cannot be a ``role`` population's inputs file (None when it can)."""
    if not path.is_file():
        return f"inputs file not found: {path}"
    try:
        with np.load(path, allow_pickle=False) as data:
            kind = str(data["kind"]) if "kind" in data.files else ""
            owner = str(data["agora_role"]) if "agora_role" in data.files else ""
    except (OSError, ValueError, EOFError) as exc:
        return f"{path}: not an inputs file ({exc})"
    if kind != INPUTS_KIND:
        return f"{path}: not an inputs file (the outside actions of a recorded episode)"
    if owner != role:
        return f"{path}: inputs of role {owner!r}, not {role!r}"
    return None


def write_inputs(
    path: Path,
    pop: Population,
    seats: npt.NDArray[np.int64],
    actions: npt.NDArray[np.float64],
    fallback_core: str,
) -> None:
    """Write an inputs file: ``actions: float64[ticks, len(seats), action_dim]`` for ``seats`` of
    ``pop`` (the same bytes for the same actions); ``fallback_core``: the core of its other
    agents."""
    assert actions.ndim == 3 and actions.shape[1] == seats.size
    arrays = {
        "kind": np.array(INPUTS_KIND),
        "format": np.array(INPUTS_FORMAT, dtype=np.int64),
        "agora_role": np.array(pop.role),
        "population": np.array(pop.name),
        "fallback_core": np.array(fallback_core),
        "seats": np.asarray(seats, dtype=np.int64),
        "actions": np.asarray(actions, dtype=np.float64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # No wall-clock stamps: the same bytes for the same actions. Written whole, then renamed: a
    # process killed while writing leaves the file it had.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(npz_bytes(arrays))
    os.replace(tmp, path)


def is_inputs_file(path: Path) -> bool:
    """Whether ``path`` is an inputs file (:func:`write_inputs`)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return "kind" in data.files and str(data["kind"]) == INPUTS_KIND
    except (OSError, ValueError, EOFError):
        return False


def inputs_fallback_core(path: Path) -> str:
    """The core an inputs file's population uses for the agents it does not drive."""
    with np.load(path, allow_pickle=False) as data:
        return str(data["fallback_core"])


def read_inputs(
    path: Path, pop: Population
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """An inputs file's seats ``int64[k]`` and actions ``float64[ticks, k, action_dim]``;
    ValueError naming what does not fit ``pop``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            role, fmt = str(data["agora_role"]), int(data["format"])
            seats, actions = data["seats"], data["actions"]
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not an inputs file ({exc})") from None
    if fmt != INPUTS_FORMAT or role != pop.role:
        raise ValueError(
            f"{path}: inputs of format {fmt} for role {role!r}; this population is a "
            f"{pop.role!r} reading format {INPUTS_FORMAT}"
        )
    if (
        seats.dtype.kind != "i"
        or seats.ndim != 1
        or (seats.size and not ((seats >= 0).all() and (seats < pop.n).all()))
    ):
        raise ValueError(f"{path}: seats must be indices 0..{pop.n - 1} of population {pop.name!r}")
    if actions.dtype != np.float64 or actions.ndim != 3 or actions.shape[1] != seats.size:
        raise ValueError(
            f"{path}: actions must be float64[ticks, {seats.size}, action_dim], "
            f"got {actions.dtype}{list(actions.shape)}"
        )
    return seats.astype(np.int64), actions
