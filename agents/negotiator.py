"""Negotiators: contractors who bid for the requesters' tasks in a continuous double auction.

Each tick, up to one posted task per negotiator is auctioned before the workers see the board.
Each requester values its task at 1–2 times the task's posted price (at most what it can pay) and
bids for a contractor as a zero-intelligence-constrained trader; each negotiator draws a private
cost of 0.5–1.5 times it and
asks. The market is a continuous double auction (Gode & Sunder's rules): agents arrive in random
order and post a price;
a post that crosses the best standing order on the other side trades at the standing order's
price, otherwise it replaces the agent's standing order; untraded agents post again, for
``ROUNDS`` rounds. Allocative efficiency is realised surplus over the maximum surplus.

Core ``baseline``: zero-intelligence-constrained asks, uniform between the cost and the price
ceiling. Core ``learned``: a small policy network (:mod:`agents.negotiator_core`: fixed-order numba
kernels on the CPU, torch on the GPU with ``agora run --device cuda``) shared by the population maps
(cost relative to the posted price, side) to a markup; each agent adds a rank-2 MicroLoRA adapter to
the first layer
(``W = W_base + α·A·B``, α = 0.1). Asks are cost × (1 + markup) with exploration noise,
conceding toward the cost round by round; after each period the base network learns from the
population's profits and
each agent's adapter from its own (REINFORCE with a running baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from agents.auction import (
    CEILING,
    ROUNDS,
    arrival_orders,
    clear,
    max_surplus,
)
from agents.negotiator_core import HIDDEN, Policy, TorchPolicy, load_shared, make_policy
from agents.shade_policy import OBS_DIM, ShadePolicy, is_shade_policy, market_observation
from economy.ops import OpKind
from economy.portable_math import sigmoid
from runtime.kernel.control import Control, ControlForm, inputs_fallback_core, is_inputs_file
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import PopulationConfig, Probability, ScenarioError

if TYPE_CHECKING:
    from runtime.kernel.scenario import Scenario
    from runtime.kernel.world import World


class NegotiatorParams(RoleParams):
    """A negotiator population's own keys."""

    core_share: Probability = Field(
        1.0,
        description=(
            "With a policy file from `agora train` as the core: the share of contractors (a "
            "seeded random subset) that use it; the rest trade as ZI-C in the same auction, and "
            "the summary shows both groups' profit."
        ),
    )
    setup_only: ClassVar[frozenset[str]] = frozenset({"core_share"})


class NegotiatorPopulation(Population):
    """Contractors who bid for the requesters' posted tasks in a continuous double auction each
    tick."""

    role: ClassVar[str] = "negotiator"
    Params: ClassVar[type[RoleParams]] = NegotiatorParams
    has_core: ClassVar[bool] = True
    phase: ClassVar[int] = 1  # after requesters post, before workers take what is left
    money_arrays: ClassVar[dict[str, str]] = {"profit": "credits"}

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.policy: Policy | TorchPolicy | None = None
        self.reward_baseline = 0.0
        self.surplus = 0.0
        self.max_surplus = 0.0
        self.profit = np.zeros(self.n)
        self.trained: ShadePolicy | None = None
        self.seat = np.ones(self.n, dtype=np.bool_)
        self.last_price = (
            0.0  # mean contract price last tick, in units of the posted price (0: none)
        )
        # Outside control (runtime.kernel.control): the seats it drives see their next cost before
        # the tick, so with a control every contractor's cost comes from a stream drawn a tick
        # ahead.
        self.control: Control | None = None
        self.next_cost = np.zeros(self.n)
        self.tick_profit = np.zeros(self.n)  # each contractor's profit in the last tick, credits

    @classmethod
    def check_core_file(cls, path: Path) -> str | None:
        """A negotiator's core file: a policy from ``agora train`` (or converted from another
        trainer), or the shared weights a learned core saved."""
        try:
            if is_inputs_file(path):
                return None  # a recorded episode's outside actions: read when the world is built
            if is_shade_policy(path):
                ShadePolicy(path)
            else:
                load_shared(path, (2, HIDDEN), (HIDDEN,))
        except ValueError as exc:
            return str(exc)
        return None

    @classmethod
    def check_scenario(
        cls, scenario: Scenario, index: int, params: RoleParams, base: Path, label: str
    ) -> list[str]:
        """``core_share`` below 1 needs a trained policy file (or the baseline) as the core."""
        assert isinstance(params, NegotiatorParams)
        core = scenario.population[index].core
        trained = core == "baseline" or (
            core not in (None, "learned") and is_shade_policy(base / core)
        )
        if params.core_share < 1.0 and not trained:
            return [
                f"{label}: population[{index}].core_share: {params.core_share} needs a policy file "
                'from `agora train` as the core (or core = "baseline")'
            ]
        return []

    def setup(self, world: World) -> None:
        """Build the policy (or load a saved one); mint the contractors' starting credits."""
        self.policy = make_policy(
            self.n, world.streams(f"population/{self.name}/init"), world.device
        )
        if self.core not in ("baseline", "learned"):
            path = world.base / self.core
            try:
                if is_inputs_file(
                    path
                ):  # a recorded episode: its outside actions drive their seats again
                    self.control = Control.replaying(path, self)
                    self.core = inputs_fallback_core(path)
                    self._draw_next_cost(world)
                elif is_shade_policy(
                    path
                ):  # trained by `agora train` on agora/Market-v0: a fixed policy
                    self.trained = ShadePolicy(path)
                    self.core = "trained"
                else:
                    self.policy.load(path)
                    self.core = "learned"
            except ValueError as exc:
                raise ScenarioError([f"population {self.name!r}: core: {exc}"]) from None
        self.seat = np.ones(
            self.n, dtype=np.bool_
        )  # which contractors use the core (the rest: ZI-C)
        if self.params.core_share < 1.0:
            k = int(np.ceil(self.params.core_share * self.n))
            pick = world.streams(f"population/{self.name}/seats").choice(
                self.n, size=k, replace=False
            )
            self.seat[:] = False
            self.seat[pick] = True
        world.mint(
            self.ids,
            np.full(self.n, self.cfg.initial_credits * world.MICRO, dtype=np.int64),
            "negotiator budget",
        )

    def seller_posts(self, rng: np.random.Generator, cost: npt.NDArray[np.float64]) -> tuple:  # type: ignore[type-arg]
        """Each contractor's ask in each round, costs relative to the tasks' posted price (and,
        learned
        core, what learning needs)."""
        if self.core == "baseline":
            u = rng.random((ROUNDS, self.n))
            return cost + u * (CEILING - cost), None
        if self.trained is not None:  # Market-v0's observation, then one ask held for every round
            shade = self.trained(
                market_observation(
                    cost, self.last_price, self.obs_credits, np.full(self.n, self.obs_left)
                )
            )
            asks = np.repeat((cost + shade * (CEILING - cost))[None, :], ROUNDS, axis=0)
            if not self.seat.all():  # the other contractors trade as ZI-C
                u = rng.random((ROUNDS, self.n))
                asks[:, ~self.seat] = (cost + u * (CEILING - cost))[:, ~self.seat]
            return asks, None
        assert self.policy is not None
        x = np.column_stack([cost - 1.0, np.full(self.n, -1.0)])
        logit, h = self.policy.forward(x)
        sigma = 0.3
        noise = rng.normal(0, sigma, size=self.n)
        shade = sigmoid(logit + noise)
        ask = cost * (1 + shade)
        # Each round an untraded contractor concedes a little toward its cost.
        concede = np.linspace(1.0, 0.0, ROUNDS)[:, None]
        return cost + (ask - cost) * concede, (x, h, noise, sigma)

    # ------------------------------------------------------------------ outside control
    def control_form(self) -> ControlForm:
        """One contractor driven from outside: Market-v0's observation and action (the module
        :mod:`agents.shade_policy`), so a policy trained this way loads back as the core."""
        from gymnasium import spaces

        return ControlForm(
            observation_space=spaces.Box(-1.0, 1.0, shape=(OBS_DIM,), dtype=np.float32),
            action_space=spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
            action_meaning="an action in [-1, 1]: shade = (action + 1)/2, ask = cost + "
            f"shade·({CEILING} − cost) in every round of the tick's auction",
            rewards={"profit": lambda world, pop, seats, before: pop.tick_profit[seats].copy()},
        )

    def attach_control(self, world: World, seats: npt.NDArray[np.int64]) -> Control:
        """Drive ``seats`` from outside from the next tick on (before tick 0)."""
        assert self.control is None, "one control per population"
        self.control = Control.live(seats, 1)
        self._draw_next_cost(world)
        return self.control

    def observe(self, world: World, seats: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Each seat's observation for the coming tick, ``float32[len(seats), 4]``: its cost, last
        tick's mean contract price, its credits over its starting credits, the share of the run
        left."""
        start = max(1, self.cfg.initial_credits * world.MICRO)
        credits = world.rights_at_home(self.ids[seats]) / start
        left = 1.0 - world.tick / (world.final_tick + 1)
        obs = market_observation(self.next_cost[seats], self.last_price, credits, left)
        return obs.astype(np.float32)

    def _draw_next_cost(self, world: World) -> None:
        self.next_cost = world.streams(f"population/{self.name}/control").uniform(
            0.5, 1.5, size=self.n
        )

    def step(self, world: World, tick: int) -> None:
        """Auction this tick's tasks among the contractors; contracts are paid, the rest go to
        workers."""
        self.tick_profit = np.zeros(self.n)
        if self.control is None:
            self._auction(world, tick, None)
            return
        actions = self.control.take(tick)[:, 0]
        try:
            self._auction(world, tick, actions)
        finally:
            self._draw_next_cost(world)  # whatever happened, the seats see next tick's cost

    def _auction(self, world: World, tick: int, actions: npt.NDArray[np.float64] | None) -> None:
        board = world.task_board
        world.count(f"{self.name}/contracts", 0)
        m = min(len(board), self.n)
        if m == 0 or not self.alive.any():
            return
        rng = world.streams(f"population/{self.name}")
        take = np.sort(rng.choice(len(board), size=m, replace=False))
        ref = board.price[take].astype(np.float64)  # the posted (market) price of each task
        # Prices in units of each task's posted price: a requester values its task at 1..2 times the
        # posted price; a contractor's cost for it is 0.5..1.5 times.
        value = rng.uniform(1.0, 2.0, size=m)
        # A requester cannot bid past what it can pay (budget-constrained, as ZI-C traders are).
        budget = world.rights_at_home(board.requester[take]) / ref
        value = np.minimum(value, budget)
        cost = rng.uniform(0.5, 1.5, size=self.n) if actions is None else self.next_cost
        if self.trained is not None:
            start = max(1, self.cfg.initial_credits * world.MICRO)
            self.obs_credits = np.minimum(world.rights_at_home(self.ids) / start, 10.0)
            self.obs_left = 1.0 - tick / world.scenario.world.ticks
        asks, learning = self.seller_posts(rng, cost)
        if actions is not None:
            asks = self._controlled_asks(rng, asks, cost, actions)
        u = rng.random((ROUNDS, m))
        bids = (
            u * value
        )  # requesters bid as zero-intelligence-constrained traders, whatever the core
        is_buyer = np.concatenate([np.ones(m, dtype=np.bool_), np.zeros(self.n, dtype=np.bool_)])
        limit = np.concatenate([value, cost])
        posts = np.concatenate([bids, asks], axis=1)
        order = arrival_orders(rng.random((ROUNDS, m + self.n)))
        partner, price = clear(world.scenario.market.mechanism, is_buyer, limit, posts, order)
        tasks = np.flatnonzero(partner[:m] >= 0)
        if tasks.size:
            # A requester whose rights fall short of the contract price cannot sign: that task stays
            # on the board for the workers, and the contract does not count.
            amounts = (price[tasks] * ref[tasks]).astype(np.int64)
            paid = world.execute_by_home(
                OpKind.TRANSFER, board.requester[take[tasks]], self.ids[partner[tasks] - m], amounts
            )
            tasks, amounts = tasks[paid], amounts[paid]
        sellers = partner[tasks] - m
        # Surplus in credits: each task's prices scale with its posted price; contractor j serves
        # task i.
        scale = ref[tasks] / world.MICRO
        self.surplus += float(((value[tasks] - cost[sellers]) * scale).sum())
        self.max_surplus += max_surplus(is_buyer, limit) * float(ref.mean()) / world.MICRO
        profit = np.zeros(self.n)
        profit[sellers] = (price[tasks] - cost[sellers]) * scale
        self.profit += profit
        self.tick_profit = profit
        if tasks.size:
            world.emit_many(
                "contract",
                self.name,
                self.ids[sellers],
                board.requester[take[tasks]],
                amounts,
                price[tasks],
            )
            keep = np.ones(len(board), dtype=np.bool_)
            keep[take[tasks]] = False
            board.take(keep)
        world.count(f"{self.name}/contracts", int(tasks.size))
        self.last_price = float(price[tasks].mean()) if tasks.size else 0.0
        if learning is not None:
            assert self.policy is not None
            x, h, noise, sigma = learning
            relative = np.zeros(self.n)
            relative[sellers] = price[tasks] - cost[sellers]
            if actions is not None:  # the core did not choose the driven seats' asks
                relative[self.control.seats] = 0.0  # type: ignore[union-attr]
            self.reward_baseline += 0.05 * (relative.mean() - self.reward_baseline)
            self.policy.learn(x, h, relative - self.reward_baseline, noise, sigma, 0.3, 1.0)

    def _controlled_asks(
        self,
        rng: np.random.Generator,
        asks: npt.NDArray[np.float64],
        cost: npt.NDArray[np.float64],
        actions: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """``asks`` with the driven seats' columns set from their actions: one ask held for every
        round; a seat with no action (NaN) asks as a ZI-C trader."""
        assert self.control is not None
        seats = self.control.seats
        asks = np.array(asks, dtype=np.float64)
        zic = cost[seats] + rng.random((ROUNDS, seats.size)) * (CEILING - cost[seats])
        acting = ~np.isnan(actions)
        shade = (np.where(acting, actions, 0.0) + 1.0) / 2.0
        held = cost[seats] + shade * (CEILING - cost[seats])
        asks[:, seats] = np.where(acting[None, :], held[None, :], zic)
        return asks

    def save_core(self, folder: Path) -> Path | None:
        """Save the shared policy (not the per-agent adapters) for another scenario to load as its
        core."""
        if self.core != "learned" or self.policy is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.npz"
        self.policy.save(path)
        return path

    def role_metrics(self) -> dict[str, float | int | None]:
        """Allocative efficiency over the run and each agent's profit over the run, in credits
        (mean over the population; with ``core_share`` below 1, over the core's and the ZI-C
        traders' seats apart)."""
        out: dict[str, float | int | None] = {
            "efficiency": self.surplus / self.max_surplus if self.max_surplus else None,
            "profit_per_agent_credits": float(self.profit.mean()),
        }
        if not self.seat.all():
            out["profit_per_core_agent_credits"] = float(self.profit[self.seat].mean())
            out["profit_per_zic_agent_credits"] = float(self.profit[~self.seat].mean())
        return out

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, profits and (learned core) the policy's weights and adapters."""
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "alive": self.alive,
            "profit": self.profit,
            "last_price": np.array([self.last_price]),
        }
        if self.policy is not None:
            arrays.update(self.policy.arrays())
        return arrays
