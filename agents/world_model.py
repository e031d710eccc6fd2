"""World-model agents: learn the market's price dynamics online, forecast prices, sell forecasts,
answer what-ifs.

Core ``learned``: an ensemble of small MLPs (:mod:`agents.world_model_core`: fixed-order numba
kernels on the CPU, torch on the GPU with ``agora run --device cuda``), shared across skills, maps
the last ``WINDOW`` log-price changes of a skill and its latest market
pressure (public: demand against served and idle supply) to its next ``horizon`` cumulative
log-price changes; each tick it takes a few Adam steps on windows drawn from the history it has
seen. The forecast it issues combines the ensemble with persistence, with the weight that would
have minimised the squared error of recent scored forecasts (from EWMAs of their errors), so it
leans on whichever has been right lately. Core ``baseline``: the persistence forecast (the price
stays where it is).
Forecasts are scored online when their time comes: mean absolute percentage error (MAPE) at 1
tick and at ``horizon`` ticks.

Forecasts are sold: a requester population with ``forecasts_from`` naming this population buys the
next tick's price of its task's skill for ``forecast_fee`` credits, paid to a forecaster through
the ledger, and defers posting by a tick when the forecast says the price will fall
(:mod:`agents.requester`). What-if rollouts: :meth:`WorldModelPopulation.what_if` predicts the mean
price change over the horizon if ``price_elasticity`` changed, by running the learned model with
the pressure input scaled by the new over the old elasticity (the market moves prices by elasticity
× pressure); governance records the answer when such a proposal opens. Other parameters have no
input in the model, and the answer says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from agents.world_model_core import Ensemble, TorchEnsemble, make_ensemble
from economy.ops import OpKind
from economy.portable_math import exp, log
from runtime.kernel.population import Population, RoleParams
from runtime.kernel.scenario import PopulationConfig

if TYPE_CHECKING:
    from runtime.kernel.world import World

WINDOW = 8
MEMBERS = 3
HIDDEN = 32


class WorldModelParams(RoleParams):
    """A world model's own keys."""

    horizon: int = Field(5, ge=1, le=50, description="The k of its k-step forecasts.")
    setup_only: ClassVar[frozenset[str]] = frozenset({"horizon"})


class WorldModelPopulation(Population):
    """Forecasters sharing one model of the market's prices."""

    role: ClassVar[str] = "world_model"
    Params: ClassVar[type[RoleParams]] = WorldModelParams
    has_core: ClassVar[bool] = True
    phase: ClassVar[int] = 4  # after the market moved this tick
    money_arrays: ClassVar[dict[str, str]] = {"next_price": "micro"}

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.horizon = self.params.horizon
        self.history: list[npt.NDArray[np.float64]] = []  # log prices per tick, float64[n_skills]
        self.pressures: list[
            npt.NDArray[np.float64]
        ] = []  # market pressure per tick, float64[n_skills]
        self.pending: list[
            tuple[int, int, npt.NDArray[np.float64]]
        ] = []  # (due tick, h, predicted prices)
        self.errors = {1: [0.0, 0], self.params.horizon: [0.0, 0]}
        # Persistence's error on the same prices (the learned core's sales move the market, so a
        # baseline run's prices differ; this is the same-path comparison).
        self.persist_errors = {1: 0.0, self.params.horizon: 0.0}
        # Per horizon, EWMAs of b·(b − a) and (b − a)² for the relative errors a (model) and b
        # (persistence): the least-squares weight of the model in the issued forecast is their
        # ratio.
        self.recent = {1: np.zeros(2), self.params.horizon: np.zeros(2)}
        self.next_price = np.zeros(0)  # the issued 1-tick forecast per skill (what buyers get)
        self.sold = 0
        self.revenue = 0
        self.model: Ensemble | TorchEnsemble | None = None

    def setup(self, world: World) -> None:
        """Build the ensemble (learned core) from the population's seeded stream, or from a core
        file."""
        if self.core == "baseline":
            return
        rng = world.streams(
            f"population/{self.name}/init"
        )  # drawn on the host: the same start on any device
        self.model = make_ensemble(
            rng, MEMBERS, WINDOW + 1, HIDDEN, self.horizon, 3e-3, world.device
        )
        if self.core != "learned":
            self.load_core(world.base / self.core)  # start from saved weights, and keep learning
            self.core = "learned"

    def step(self, world: World, tick: int) -> None:
        """Score forecasts that came due, learn from the newest windows, forecast the next ticks."""
        prices = world.market.prices.astype(np.float64)
        for _, h, issued, model, persist in [p for p in self.pending if p[0] == tick]:
            err = float(np.mean(np.abs(issued - prices) / prices))
            self.errors[h][0] += err
            self.errors[h][1] += 1
            self.persist_errors[h] += float(np.mean(np.abs(persist - prices) / prices))
            if model is not None:
                a, b = (model - prices) / prices, (persist - prices) / prices
                self.recent[h] = 0.9 * self.recent[h] + 0.1 * np.array(
                    [np.mean(b * (b - a)), np.mean((b - a) ** 2)]
                )
        self.pending = [p for p in self.pending if p[0] > tick]
        self.history.append(log(prices))
        self.pressures.append(world.market.pressure.copy())
        self.next_price = prices.copy()
        if self.core == "baseline" or len(self.history) < WINDOW + self.horizon + 2:
            for h in {1, self.horizon}:
                self.pending.append((tick + h, h, prices.copy(), None, prices.copy()))
            return
        self._learn(world)
        ahead = self._ahead(1.0)  # cumulative log change, [skills, horizon]
        for h in {1, self.horizon}:
            model = prices * exp(ahead[:, h - 1])
            cross, spread = self.recent[h]
            w = (
                min(1.0, cross / spread) if spread > 0 else 0.0
            )  # least-squares weight of the model...
            w = (
                w if w > 0.5 else 0.0
            )  # ...used only while the model alone has been the better forecast
            issued = w * model + (1.0 - w) * prices
            if h == 1:
                self.next_price = issued
            self.pending.append((tick + h, h, issued, model, prices.copy()))

    def _learn(self, world: World) -> None:
        assert self.model is not None
        logp = np.array(self.history)
        diffs = np.diff(logp, axis=0)  # [t, skills]
        rng = world.streams(f"population/{self.name}")
        # Training windows: WINDOW changes in, the next `horizon` cumulative changes out.
        n_win = diffs.shape[0] - WINDOW - self.horizon + 1
        starts = rng.integers(0, n_win, size=32)
        skills = rng.integers(0, diffs.shape[1], size=32)
        press = np.array(self.pressures)  # press[t] drove the change into history[t]
        xs = np.stack(
            [
                np.append(diffs[s : s + WINDOW, k], press[s + WINDOW, k])
                for s, k in zip(starts, skills, strict=True)
            ]
        )
        ys = np.stack(
            [
                np.cumsum(diffs[s + WINDOW : s + WINDOW + self.horizon, k])
                for s, k in zip(starts, skills, strict=True)
            ]
        )
        self.model.learn(xs, ys, 3)

    def _ahead(self, pressure_scale: float) -> npt.NDArray[np.float64]:
        """The ensemble's cumulative log-price change per skill over the horizon, from now."""
        assert self.model is not None
        diffs = np.diff(np.array(self.history[-WINDOW - 1 :]), axis=0)
        press = self.pressures[-1] * pressure_scale
        return self.model.predict(np.column_stack([diffs.T, press]))

    def ready(self) -> bool:
        """Whether the learned model has seen enough history to forecast."""
        return self.model is not None and len(self.history) >= WINDOW + self.horizon + 2

    def sell(
        self, world: World, buyers: npt.NDArray[np.int64], skills: npt.NDArray[np.int64], fee: int
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
        """Sell each buyer next tick's price of one skill for ``fee`` micro-credits, paid through
        the ledger.

        Returns which buyers paid (and so got a forecast) and the forecasts (micro-credits per
        unit).
        With every forecaster down, or no forecast yet, nothing is sold.
        """
        paid = np.zeros(buyers.size, dtype=np.bool_)
        if buyers.size == 0 or not self.alive.any() or self.next_price.size == 0:
            return paid, np.zeros(buyers.size)
        sellers = self.ids[self.alive]
        payee = sellers[np.arange(buyers.size) % sellers.size]
        paid = world.execute_by_home(
            OpKind.TRANSFER, buyers, payee, np.full(buyers.size, fee, dtype=np.int64)
        )
        self.sold += int(paid.sum())
        self.revenue += int(paid.sum()) * fee
        return paid, self.next_price[skills]

    def what_if(
        self, changes: dict[str, float], current: dict[str, float]
    ) -> tuple[float | None, str]:
        """Predicted change of the mean price over the horizon if ``changes`` took effect now.

        Returns ``(relative change vs no change, one line)``, or ``(None, why not)``.
        """
        if not self.ready():
            return None, "the world model has no learned forecast yet"
        unknown = sorted(k for k in changes if k != "price_elasticity")
        if unknown:
            return None, f"no input in the world model for {', '.join(unknown)}"
        old, new = current["price_elasticity"], changes["price_elasticity"]
        scale = new / old if old else 1.0
        base = float(np.mean(exp(self._ahead(1.0)[:, -1])))
        alt = float(np.mean(exp(self._ahead(scale)[:, -1])))
        change = alt / base - 1.0
        return (
            change,
            f"price_elasticity {old:g} -> {new:g}: mean price {change:+.2%} in {self.horizon} "
            f"ticks vs no change",
        )

    def core_state(self) -> dict[str, npt.NDArray[np.generic]] | None:
        """The ensemble's weights, per member and layer (learned core)."""
        return None if self.model is None else self.model.weights()

    def set_core_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        """Copy saved weights into the ensemble."""
        assert self.model is not None
        self.model.set_weights(arrays)  # type: ignore[arg-type]

    def role_metrics(self) -> dict[str, float | int | None]:
        """MAPE of the forecasts at 1 tick and at the horizon, how many were scored, and sales."""
        out: dict[str, float | int | None] = {}
        for h, (total, count) in sorted(self.errors.items()):
            out[f"mape_{h}"] = total / count if count else None
            out[f"forecasts_{h}"] = count
            out[f"persistence_mape_{h}"] = self.persist_errors[h] / count if count else None
        out["forecasts_sold"] = self.sold
        out["revenue_micro"] = self.revenue
        return out

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, the price history and (learned core) the ensemble's weights."""
        arrays: dict[str, npt.NDArray[np.generic]] = {"alive": self.alive}
        if self.history:
            arrays["history"] = np.array(self.history)
        if self.pressures:
            arrays["pressures"] = np.array(self.pressures)
        arrays["next_price"] = self.next_price
        arrays["recent_errors"] = np.array([self.recent[h] for h in sorted(self.recent)])
        if self.model is not None:
            arrays["weights"] = self.model.flat()
        return arrays
