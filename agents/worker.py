"""Workers: take tasks routed to them by skill, do them (or fail), and are paid by the requester.

Routing is the economy's learned top-k gate (k = 1) over skill vectors with a capacity limit (a task
whose best worker is full goes to the next best); the
outcome feeds the workers' Beta reputation and the gate's learned bias. Live workers also earn the
uptime reward each tick, scaled by the contribution multiplier of the network's total compute.

Workers offer a control form (:meth:`WorkerPopulation.control_form`): a learner decides, per seat
and tick, the least price at which the seat takes work and how often it claims a task done without
doing it; the class docstring gives the spaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from economy.contribution import MAX_BONUS, contribution_multiplier
from economy.ops import OpKind
from economy.portable_math import log
from economy.routing import TopKGate
from economy.scatter import add_at
from runtime.kernel.control import (
    Control,
    ControlForm,
    inputs_problem,
    ratio_feature,
    save_recording,
    share_feature,
    share_left,
)
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import MAX_CREDITS, PopulationConfig, Probability, ScenarioError

if TYPE_CHECKING:
    from runtime.kernel.scenario import Scenario
    from runtime.kernel.world import World

MAX_ATTEMPTS = (
    3  # a task is done at most this many times (the first try and two redos after rejections)
)


class WorkerParams(RoleParams):
    """A worker's own keys."""

    quality: Probability = Field(
        0.9, description="Mean probability of completing a task in its main skill."
    )
    capacity_factor: float = Field(
        1.25, gt=0, le=100, description="Router capacity factor (as in a mixture of experts)."
    )
    stake: int = Field(
        0,
        ge=0,
        le=MAX_CREDITS,
        description="Credits each worker stakes at tick 0 (what a critic can slash).",
    )
    cheat_fraction: Probability = Field(0.0, description="Fraction of workers that cheat.")
    cheat_probability: Probability = Field(
        0.5, description="Probability a cheater claims a task done without doing it."
    )
    inputs: str | None = Field(
        None,
        max_length=1024,
        description=(
            "An inputs file of a recorded episode (its cores/<population>.npz), relative to the "
            "scenario file: its outside actions drive the same seats again."
        ),
    )
    setup_only: ClassVar[frozenset[str]] = frozenset(
        {"quality", "stake", "cheat_fraction", "inputs"}
    )


class WorkerPopulation(Population):
    """Workers with a main skill, a quality (probability of success in it) and a reservation
    price.

    ## Action Space

    ``Box(-1, 1, (2,), float32)`` per seat (:meth:`control_form`):

    | Num | Action | Mapping |
    |-----|--------|---------|
    | 0 | reservation | takes work this tick when its skill's price >= ``cost·(1 + a)`` |
    | 1 | cheat | claims each task it takes done without doing it with probability ``(a + 1)/2`` |

    ``a0 = 0`` is the scripted rule, -1 takes any price, 1 asks twice the cost. A row of NaN:
    the seat works as the scripted rule says (cheating at ``cheat_probability`` only if it is a
    cheater). The driven seats' decisions reuse the scripted rule's own draws.

    ## Observation Space

    ``Box(-1, 1, (5,), float32)`` per seat:

    | Num | Observation | Feature |
    |-----|-------------|---------|
    | 0 | its skill's task-unit price over its cost, ``p`` | ``(p − 1)/(p + 1)``, capped at 10 |
    | 1 | its reputation (predicted success) | ``2·score − 1`` |
    | 2 | balance over starting credits plus stake (at least 1 credit), ``r`` | ``(r−1)/(r+1)`` |
    | 3 | share of its stake not slashed (1 with no stake) | ``2·share − 1`` |
    | 4 | share of the run left | ``2·share − 1`` |

    ## Rewards

    ``"wealth"`` (the change of balance plus stake, credits) and ``"profit"``: what the seat was
    paid this tick less its cost for the task units, credits. Being broke does not end a seat's
    episode: workers work without credits.
    """

    role: ClassVar[str] = "worker"
    Params: ClassVar[type[RoleParams]] = WorkerParams
    phase: ClassVar[int] = 2
    money_arrays: ClassVar[dict[str, str]] = {"cost": "micro", "rework_price": "micro"}

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.main_skill = np.zeros(self.n, dtype=np.int64)
        self.quality = np.zeros(self.n, dtype=np.float64)
        self.cost = np.zeros(self.n, dtype=np.int64)
        self.done = np.zeros(self.n, dtype=np.int64)
        # This tick's telemetry, what a healer can see: tasks taken and tasks failed per worker.
        self.tel_tasks = np.zeros(self.n, dtype=np.int64)
        self.tel_failed = np.zeros(self.n, dtype=np.int64)
        self.tel_latency = np.zeros(
            self.n, dtype=np.float64
        )  # summed task latency, virtual seconds
        self.heartbeat = np.zeros(self.n, dtype=np.bool_)  # heartbeat received this tick
        self.speed = np.ones(self.n, dtype=np.float64)  # seconds per task unit when healthy
        self.cheater = np.zeros(self.n, dtype=np.bool_)
        # This tick's paid results, what a critic can check: worker index, requester, price, and the
        # hidden truth of whether the work was really done.
        self.results = _empty_results()
        self.rework = (
            _empty_results()
        )  # results a critic sent back, redone by their producer next tick
        self.failed = np.zeros(self.n, dtype=np.int64)
        self.gate: TopKGate | None = None
        self.control: Control | None = None  # outside control of some seats (control_form)
        self.cheat_rate = np.full(self.n, np.nan)  # this tick's driven cheat rates (NaN: scripted)

    @classmethod
    def credits_minted_at_most(cls, cfg: PopulationConfig, scenario: Scenario) -> int:
        """Starting credits, stakes, and uptime rewards at the largest contribution multiplier."""
        params = cls.Params.model_validate(cfg.params)
        assert isinstance(params, WorkerParams)
        per_tick = (
            scenario.economy.uptime_millicredits_per_hour
            / 1000
            * scenario.world.tick_length
            * MAX_BONUS
        )
        uptime = int(np.ceil(cfg.count * scenario.world.ticks * per_tick))
        return cfg.count * (cfg.initial_credits + params.stake) + uptime

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``inputs`` must name a workers' inputs file."""
        assert isinstance(params, WorkerParams)
        if params.inputs is not None and (
            problem := inputs_problem(base / params.inputs, cls.role)
        ):
            return [f"{label}: population[{index}].inputs: {problem}"]
        return []

    def setup(self, world: World) -> None:
        """Draw skills and qualities; build the router."""
        rng = world.streams(f"population/{self.name}/setup")
        n_skills = world.market.prices.shape[0]
        self.main_skill = rng.integers(0, n_skills, size=self.n)
        self.quality = np.clip(rng.normal(self.params.quality, 0.05, size=self.n), 0.0, 1.0)
        # Reservation price per task unit: a worker takes work only when its skill's price covers
        # it.
        base = int(world.market.prices[0])
        self.cost = (base * rng.uniform(0.2, 1.5, size=self.n)).astype(np.int64)
        self.cheater = rng.random(self.n) < self.params.cheat_fraction
        self.speed = rng.lognormal(log(60.0), 0.3, size=self.n)
        if self.params.stake > 0:
            amounts = np.full(self.n, self.params.stake * world.MICRO, dtype=np.int64)
            world.mint(self.ids, amounts, "worker stake")
            world.execute_by_home(OpKind.STAKE, self.ids, np.zeros(self.n, np.int64), amounts)
        skills = np.full((self.n, n_skills), 0.1)
        skills[np.arange(self.n), self.main_skill] = 1.0
        if self.n:  # an empty population routes nothing
            self.gate = TopKGate(
                skills, k=1, capacity_factor=self.params.capacity_factor, overflow=True
            )
        if self.params.inputs is not None:
            # A recorded episode: its outside actions drive their seats again.
            try:
                self.control = Control.replaying(world.base / self.params.inputs, self)
            except ValueError as exc:
                raise ScenarioError([f"population {self.name!r}: inputs: {exc}"]) from None

    def step(self, world: World, tick: int) -> None:
        """Serve the board, settle payments, update reputation and prices, earn uptime."""
        assert self.gate is not None or self.n == 0, "setup() runs before the first step"
        rng = world.streams(f"population/{self.name}")
        board = world.task_board
        n_skills = world.market.prices.shape[0]
        reservation = self._reservation(tick)
        for counter in ("tasks_done", "tasks_failed", "volume_micro", "fees_micro", "cheats"):
            world.count(counter, 0)
        world.gauge(f"{self.name}/route_load_std", 0.0)
        world.gauge(f"{self.name}/route_utilisation", 0.0)
        # Prices rise with tasks left unserved and fall with workers left idle, per skill.
        demand = np.bincount(board.skill, minlength=n_skills)
        served_n = np.zeros(n_skills, dtype=np.int64)
        busy = np.zeros(self.n, dtype=np.bool_)
        self.tel_tasks[:] = 0
        self.tel_failed[:] = 0
        self.tel_latency[:] = 0.0
        # A live worker sends a heartbeat each tick; the network loses it like any message.
        beat_rng = world.streams(f"population/{self.name}/heartbeat")
        self.heartbeat = self.alive & (beat_rng.random(self.n) >= world.bus.loss)
        self.results = _empty_results()
        world.count("rework_done", 0)
        world.count("rework_abandoned", 0)
        if self.rework["worker"].size:
            # Tasks the critic sent back are redone first by their producer, if it is up.
            sent_back, self.rework = self.rework, _empty_results()
            up = self.alive[sent_back["worker"]] & ~self.quarantined[sent_back["worker"]]
            world.count("rework_abandoned", int((~up).sum()))
            world.count("rework_done", int(up.sum()))
            self._do(
                world,
                rng,
                sent_back["worker"][up],
                sent_back["requester"][up],
                sent_back["price"][up],
                sent_back["units"][up],
                sent_back["skill"][up],
                sent_back["attempt"][up] + 1,
            )
            busy[sent_back["worker"][up]] = True
        willing = (
            self.alive & ~self.quarantined & (world.market.prices[self.main_skill] >= reservation)
        )
        if len(board) and willing.any() and self.gate is not None:
            # A worker's capacity per tick is set by the whole live workforce, not by who is
            # willing.
            capacity = int(
                np.ceil(self.params.capacity_factor * len(board) / max(1, int(self.alive.sum())))
            )
            assignment, stats = self.gate.route_skills(
                board.skill, available=willing, capacity=capacity
            )
            world.gauge(f"{self.name}/route_load_std", stats.load_std)
            world.gauge(f"{self.name}/route_utilisation", stats.utilisation)
            chosen = assignment[:, 0]
            served = chosen >= 0
            takers = chosen[served]
            skill = board.skill[served]
            self._do(
                world,
                rng,
                takers,
                board.requester[served],
                board.price[served],
                board.units[served],
                skill,
                np.zeros(len(takers), np.int64),
            )
            board.take(~served)
            served_n = np.bincount(skill, minlength=n_skills)
            busy[takers] = True
        idle = np.bincount(self.main_skill[willing & ~busy], minlength=n_skills)
        self._earn_uptime(world)
        world.market.update(demand, served_n + idle)

    def _do(
        self,
        world: World,
        rng: np.random.Generator,
        takers: npt.NDArray[np.int64],
        requester: npt.NDArray[np.int64],
        price: npt.NDArray[np.int64],
        units: npt.NDArray[np.int64],
        skill: npt.NDArray[np.int64],
        attempt: npt.NDArray[np.int64],
    ) -> None:
        """Workers ``takers`` do one task each: succeed, fail or cheat; get paid; the paid results
        join :attr:`results`."""
        if takers.size == 0:
            return
        p_success = np.where(
            skill == self.main_skill[takers], self.quality[takers], self.quality[takers] * 0.5
        )
        success = rng.random(len(takers)) < p_success * (1.0 - self.degraded[takers])
        # A cheater sometimes claims a task done without doing it: paid, but invalid.
        draw = rng.random(len(takers))
        cheats = self.cheater[takers] & (draw < self.params.cheat_probability)
        if self.control is not None:  # driven seats cheat at their own rate
            rate = self.cheat_rate[takers]
            driven = ~np.isnan(rate)
            cheats[driven] = draw[driven] < rate[driven]
        valid = success & ~cheats
        success = success | cheats
        add_at(self.tel_tasks, takers, 1)
        add_at(self.tel_failed, takers, ~success)
        # Task latency: the worker's speed per unit, slowed by degradation, with noise.
        latency = (
            self.speed[takers]
            * units
            * (1.0 + 3.0 * self.degraded[takers])
            * rng.lognormal(0.0, 0.2, len(takers))
        )
        add_at(self.tel_latency, takers, latency / units)
        lost = (~success) & (self.degraded[takers] > 0)
        world.health.credits_lost += int(price[lost].sum())
        paid = self._settle(world, takers, requester, price, units, success)
        new = {
            "worker": takers[paid],
            "requester": requester[paid],
            "price": price[paid],
            "valid": valid[paid],
            "units": units[paid],
            "skill": skill[paid],
            "attempt": attempt[paid],
        }
        self.results = {k: np.concatenate([self.results[k], v]) for k, v in new.items()}
        world.count("cheats", int((paid & ~valid & success).sum()))

    def _reservation(self, tick: int) -> npt.NDArray[np.int64] | npt.NDArray[np.float64]:
        """The least price of its skill at which each worker takes work this tick: its cost, or a
        driven seat's ``cost·(1 + a0)``; sets the driven seats' cheat rates for this tick."""
        if self.control is None:
            return self.cost
        actions = self.control.take(tick)
        acting = self.control.acting(actions)
        seats = self.control.seats[acting]
        reservation = self.cost.astype(np.float64)
        reservation[seats] = self.cost[seats] * (1.0 + actions[acting, 0])
        self.cheat_rate = np.full(self.n, np.nan)
        self.cheat_rate[seats] = (actions[acting, 1] + 1.0) / 2.0
        assert (reservation >= 0).all() and (self.cheat_rate[seats] <= 1.0).all()
        return reservation

    # ------------------------------------------------------------------ outside control
    def control_form(self) -> ControlForm:
        """One worker driven from outside: its reservation price and its cheating (the class
        docstring)."""
        from gymnasium import spaces

        return ControlForm(
            observation_space=spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32),
            action_space=spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            action_meaning="two actions in [-1, 1]: take work when the skill's price >= "
            "cost·(1 + a0); claim a task done without doing it with probability (a1 + 1)/2",
            rewards={"profit": work_profit},
            bankrupt_leaves=False,
        )

    def attach_control(self, world: World, seats: npt.NDArray[np.int64]) -> Control:
        """Drive ``seats`` from outside from the next tick on (before tick 0)."""
        assert self.control is None, "one control per population"
        self.control = Control.live(seats, 2)
        return self.control

    def observe(self, world: World, seats: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Each seat's observation for the coming tick, ``float32[len(seats), 5]`` (the class
        docstring); reads the world, draws nothing."""
        accounts = self.ids[seats]
        price = world.market.prices[self.main_skill[seats]] / np.maximum(self.cost[seats], 1)
        start = max(1, self.cfg.initial_credits + self.params.stake) * world.MICRO
        staked = np.zeros(seats.size, dtype=np.int64)
        homes = world.home(accounts)
        for r, ledger in enumerate(world.ledgers):
            sel = np.flatnonzero(homes == r)
            if sel.size and ledger is not None:
                staked[sel] = ledger.staked_of(accounts[sel])
        kept = staked / (self.params.stake * world.MICRO) if self.params.stake else 1.0
        columns = [
            ratio_feature(price),
            share_feature(world.reputation.score(accounts)),
            ratio_feature(world.rights_at_home(accounts) / start),
            share_feature(np.broadcast_to(kept, seats.shape)),
            np.full(seats.size, share_feature(share_left(world))),
        ]
        obs = np.column_stack(columns)
        assert obs.shape == (seats.size, 5)
        return obs.astype(np.float32)

    def save_core(self, folder: Path) -> Path | None:
        """With outside control, its actions so far (an inputs file the ``inputs`` key replays);
        nothing otherwise: workers have no learned core."""
        return None if self.control is None else save_recording(folder, self, self.control)

    def send_back(self, rows: npt.NDArray[np.int64], reason: str) -> None:
        """A critic rejected these rows of :attr:`results` (the requester was refunded): redo them
        next tick.

        A task sent back ``MAX_ATTEMPTS`` times is dropped.
        """
        again = rows[self.results["attempt"][rows] + 1 < MAX_ATTEMPTS]
        self.rework = {
            k: np.concatenate([self.rework[k], v[again]]) for k, v in self.results.items()
        }

    def _settle(
        self,
        world: World,
        w: npt.NDArray[np.int64],
        requester: npt.NDArray[np.int64],
        price: npt.NDArray[np.int64],
        units: npt.NDArray[np.int64],
        success: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.bool_]:
        """Pay claimed successes, charge the fee, record outcomes; return which tasks were paid."""
        worker_ids = self.ids[w]
        paid = np.zeros(len(w), dtype=np.bool_)
        if success.any():
            s = np.flatnonzero(success)
            paid[s] = world.execute_by_home(OpKind.TRANSFER, requester[s], worker_ids[s], price[s])
        ok = success & paid
        fee_rate = world.params["fee_rate"]
        if fee_rate > 0 and ok.any():
            # The worker pays the governed fee to the treasury out of the payment, at the replica
            # that paid it.
            s = np.flatnonzero(ok)
            fees = (price[s] * fee_rate).astype(np.int64)
            s, fees = s[fees > 0], fees[fees > 0]
            homes = world.home(requester[s])
            for r in range(len(world.ledgers)):
                sel = homes == r
                if sel.any():
                    world.execute(
                        r,
                        OpKind.TRANSFER,
                        worker_ids[s[sel]],
                        np.full(int(sel.sum()), world.treasury, np.int64),
                        fees[sel],
                    )
            world.count("fees_micro", int(fees.sum()))
        world.interact(worker_ids[ok], requester[ok])
        add_at(self.done, w[ok], 1)
        add_at(self.failed, w[~success], 1)
        world.emit_many(
            "task_done",
            self.name,
            worker_ids[ok],
            requester[ok],
            price[ok],
            units[ok].astype(np.float64),
        )
        world.emit_many(
            "task_failed",
            self.name,
            worker_ids[~success],
            requester[~success],
            price[~success],
            units[~success].astype(np.float64),
        )
        world.count("tasks_done", int(ok.sum()))
        world.count("tasks_failed", int((~success).sum()))
        world.count("volume_micro", int(price[ok].sum()))
        world.network_compute += float(units[ok].sum())
        world.reputation.observe(worker_ids, success)
        if self.gate is not None:
            self.gate.learn(w, success)
        return ok

    def _earn_uptime(self, world: World) -> None:
        live = self.ids[self.alive]
        if live.size == 0:
            return
        multiplier = contribution_multiplier(world.network_compute)
        reward = int(world.rates.uptime_hour * world.scenario.world.tick_length * multiplier)
        if reward > 0:
            world.mint(live, np.full(live.size, reward, dtype=np.int64), "uptime")

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, skills, qualities, costs (micro-credits per task unit), cheaters, counts,
        the router's learned bias and the tasks sent back for rework."""
        bias = self.gate.bias if self.gate is not None else np.zeros(0)
        return {
            "alive": self.alive,
            "main_skill": self.main_skill,
            "quality": self.quality,
            "cost": self.cost,
            "cheater": self.cheater,
            "done": self.done,
            "failed": self.failed,
            "gate_bias": bias,
            **{f"rework_{k}": v for k, v in self.rework.items()},
        }


def work_profit(
    world: World,
    pop: Population,
    seats: npt.NDArray[np.int64],
    before: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The ``"profit"`` reward: each seat's pay this tick less its cost for the task units it was
    paid for, ``float64[len(seats)]``, credits."""
    assert isinstance(pop, WorkerPopulation)
    res = pop.results
    margin = (res["price"] - pop.cost[res["worker"]] * res["units"]).astype(np.float64)
    out = np.bincount(res["worker"], weights=margin, minlength=pop.n)[seats] / world.MICRO
    assert out.shape == seats.shape
    return out


def _empty_results() -> dict[str, npt.NDArray[np.generic]]:
    return {
        "worker": np.empty(0, np.int64),
        "requester": np.empty(0, np.int64),
        "price": np.empty(0, np.int64),
        "valid": np.empty(0, np.bool_),
        "units": np.empty(0, np.int64),
        "skill": np.empty(0, np.int64),
        "attempt": np.empty(0, np.int64),
    }
