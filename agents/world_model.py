"""World-model agents: learn the market's price dynamics online and forecast prices 1 and k ticks ahead.

Core ``learned``: an ensemble of small torch MLPs (CPU, or the GPU with ``agora run --device cuda``),
shared across skills, maps the last
``WINDOW`` log-price changes of a skill and its latest market pressure (public: demand against
served and idle supply) to its next ``horizon`` cumulative log-price changes; each tick it takes a few Adam steps on windows drawn from the history it has seen. Core
``baseline``: the persistence forecast (the price stays where it is). Forecasts are scored online
when their time comes: mean absolute percentage error (MAPE) at 1 tick and at ``horizon`` ticks.
Not built yet: selling forecasts for credits and what-if rollouts for governance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from runtime.population import Population
from runtime.scenario import PopulationConfig

if TYPE_CHECKING:
    from runtime.world import World

WINDOW = 8
MEMBERS = 3
HIDDEN = 32


class WorldModelPopulation(Population):
    """Forecasters sharing one model of the market's prices."""

    role: ClassVar[str] = "world_model"
    phase: ClassVar[int] = 4  # after the market moved this tick

    def __init__(self, cfg: PopulationConfig, ids: npt.NDArray[np.int64], n_regions: int) -> None:
        super().__init__(cfg, ids, n_regions)
        self.core = cfg.core or "learned"
        self.horizon = cfg.horizon
        self.history: list[npt.NDArray[np.float64]] = []  # log prices per tick, float64[n_skills]
        self.pressures: list[npt.NDArray[np.float64]] = []  # market pressure per tick, float64[n_skills]
        self.pending: list[tuple[int, int, npt.NDArray[np.float64]]] = []  # (due tick, h, predicted prices)
        self.errors = {1: [0.0, 0], cfg.horizon: [0.0, 0]}
        self.model = None

    def setup(self, world: World) -> None:
        """Build the ensemble (learned core) from the population's seeded stream."""
        if self.core != "learned":
            return
        import torch

        if world.device == "cpu":
            torch.set_num_threads(1)  # one thread: the same updates in the same order on every run
        self.device = torch.device(world.device)
        seed = int(world.streams(f"population/{self.name}/init").integers(2**31))
        gen = torch.Generator().manual_seed(seed)  # weights drawn on the CPU, then moved: same start on any device
        layers = []
        for _ in range(MEMBERS):
            w1 = torch.randn(WINDOW + 1, HIDDEN, generator=gen, dtype=torch.float64) * (1 / WINDOW) ** 0.5
            w2 = torch.randn(HIDDEN, self.horizon, generator=gen, dtype=torch.float64) * (1 / HIDDEN) ** 0.5 * 0.1
            params = [w1, torch.zeros(HIDDEN, dtype=torch.float64), w2, torch.zeros(self.horizon, dtype=torch.float64)]
            layers.append([p.to(self.device).requires_grad_() for p in params])
        self.model = layers
        self.opt = torch.optim.Adam([p for member in layers for p in member], lr=3e-3)
        self.torch = torch

    def _predict(self, x: object) -> object:
        torch = self.torch
        outs = [torch.tanh(x @ w1 + b1) @ w2 + b2 for w1, b1, w2, b2 in self.model]  # type: ignore[union-attr]
        return torch.stack(outs).mean(0)

    def step(self, world: World, tick: int) -> None:
        """Score forecasts that came due, learn from the newest windows, forecast the next ticks."""
        prices = world.market.prices.astype(np.float64)
        for due, h, predicted in [p for p in self.pending if p[0] == tick]:
            err = float(np.mean(np.abs(predicted - prices) / prices))
            self.errors[h][0] += err
            self.errors[h][1] += 1
        self.pending = [p for p in self.pending if p[0] > tick]
        self.history.append(np.log(prices))
        self.pressures.append(world.market.pressure.copy())
        logp = np.array(self.history)
        if self.core == "baseline" or len(self.history) < WINDOW + self.horizon + 2:
            for h in {1, self.horizon}:
                self.pending.append((tick + h, h, prices.copy()))
            return
        torch = self.torch
        diffs = np.diff(logp, axis=0)  # [t, skills]
        rng = world.streams(f"population/{self.name}")
        # Training windows: WINDOW changes in, the next `horizon` cumulative changes out.
        n_win = diffs.shape[0] - WINDOW - self.horizon + 1
        starts = rng.integers(0, n_win, size=32)
        skills = rng.integers(0, diffs.shape[1], size=32)
        press = np.array(self.pressures)  # press[t] drove the change into history[t]
        xs = np.stack([np.append(diffs[s : s + WINDOW, k], press[s + WINDOW, k]) for s, k in zip(starts, skills, strict=True)])
        ys = np.stack([np.cumsum(diffs[s + WINDOW : s + WINDOW + self.horizon, k]) for s, k in zip(starts, skills, strict=True)])
        x, y = torch.from_numpy(xs).to(self.device), torch.from_numpy(ys).to(self.device)
        for _ in range(3):
            self.opt.zero_grad()
            loss = ((self._predict(x) - y) ** 2).mean()
            loss.backward()
            self.opt.step()
        with torch.no_grad():
            recent = torch.from_numpy(np.ascontiguousarray(np.column_stack([diffs[-WINDOW:].T, press[-1]]))).to(self.device)
            ahead = self._predict(recent).cpu().numpy()  # cumulative log change, [skills, horizon]
        for h in {1, self.horizon}:
            self.pending.append((tick + h, h, prices * np.exp(ahead[:, h - 1])))

    def role_metrics(self) -> dict[str, float | int | None]:
        """MAPE of the forecasts at 1 tick and at the horizon, and how many were scored."""
        out: dict[str, float | int | None] = {}
        for h, (total, count) in sorted(self.errors.items()):
            out[f"mape_{h}"] = total / count if count else None
            out[f"forecasts_{h}"] = count
        return out

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Alive flags, the price history and (learned core) the ensemble's weights."""
        arrays: dict[str, npt.NDArray[np.generic]] = {"alive": self.alive}
        if self.history:
            arrays["history"] = np.array(self.history)
        if self.pressures:
            arrays["pressures"] = np.array(self.pressures)
        if self.model is not None:
            arrays["weights"] = np.concatenate([p.detach().cpu().numpy().ravel() for m in self.model for p in m])
        return arrays
