"""Beta reputation with decay: each agent's success probability, and how well it predicts.

An agent's record is ``(alpha, beta)``, pseudo-counts of successes and failures on top of a prior.
Each tick the evidence decays toward the prior by ``decay`` so old behaviour fades. The score
``alpha / (alpha + beta)`` is the predicted probability that the agent's next task succeeds; the
book scores that prediction against every outcome it is told (accuracy at threshold 0.5, Brier).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from economy.errors import LedgerError
from economy.scatter import add_at


class BetaReputation:
    """Reputation of ``n_agents``: float64[n] alpha and beta arrays."""

    def __init__(
        self, n_agents: int, prior: tuple[float, float] = (1.0, 1.0), decay: float = 0.99
    ) -> None:
        if n_agents < 1 or min(prior) <= 0 or not 0 < decay <= 1:
            raise LedgerError(
                f"need n_agents >= 1, prior > 0, decay in (0, 1]; got {n_agents}, {prior}, {decay}"
            )
        self.prior = prior
        self.decay = decay
        self.alpha = np.full(n_agents, prior[0], dtype=np.float64)
        self.beta = np.full(n_agents, prior[1], dtype=np.float64)
        self.predictions = 0
        self.correct = 0
        self.brier_sum = 0.0

    def score(self, agents: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.float64]:
        """Predicted success probability of ``agents`` (all when None)."""
        if agents is None:
            return self.alpha / (self.alpha + self.beta)
        return self.alpha[agents] / (self.alpha[agents] + self.beta[agents])

    def observe(self, agents: npt.NDArray[np.int64], success: npt.NDArray[np.bool_]) -> None:
        """Record outcomes (scoring the prediction made before each), then update the evidence."""
        agents = np.asarray(agents, dtype=np.int64)
        success = np.asarray(success, dtype=np.bool_)
        if agents.shape != success.shape:
            raise LedgerError(f"agents {agents.shape} and outcomes {success.shape} differ in shape")
        p = self.score(agents)
        self.predictions += int(agents.size)
        self.correct += int(((p >= 0.5) == success).sum())
        self.brier_sum += float(((p - success) ** 2).sum())
        add_at(self.alpha, agents, success.astype(np.float64))
        add_at(self.beta, agents, (~success).astype(np.float64))

    def step(self) -> None:
        """Decay every agent's evidence toward the prior by one tick."""
        a0, b0 = self.prior
        self.alpha = a0 + (self.alpha - a0) * self.decay
        self.beta = b0 + (self.beta - b0) * self.decay

    @property
    def accuracy(self) -> float:
        """Fraction of outcomes the score predicted (threshold 0.5); NaN before any."""
        return self.correct / self.predictions if self.predictions else float("nan")

    @property
    def brier(self) -> float:
        """Mean squared error of the predicted probability; NaN before any outcome."""
        return self.brier_sum / self.predictions if self.predictions else float("nan")
