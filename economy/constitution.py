"""The constitution: bounds on governed parameters, checked with z3 before any change executes.

A constitution maps parameter names to closed intervals. :meth:`Constitution.verify` asserts the
parameters a proposal would produce, as exact rationals, and asks z3 whether each bound can hold
with them; every bound that is unsatisfiable is named in the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from economy.errors import LedgerError


@dataclass(frozen=True)
class Verdict:
    """Whether a parameter set satisfies the constitution, and which bounds it breaks."""

    ok: bool
    violated: tuple[str, ...]

    @property
    def reason(self) -> str:
        """One line for the record."""
        return "satisfies the constitution" if self.ok else "violates " + ", ".join(self.violated)


@dataclass(frozen=True)
class Constitution:
    """``bounds[name] = (low, high)``; either side may be None (unbounded)."""

    bounds: dict[str, tuple[float | None, float | None]]

    def __post_init__(self) -> None:
        for name, (low, high) in self.bounds.items():
            if low is not None and high is not None and low > high:
                raise LedgerError(f"constitution bound {name}: low {low} > high {high}")

    def verify(self, params: dict[str, float]) -> Verdict:
        """Check ``params`` (the state a proposal would produce) against every bound with z3."""
        import z3  # a second to import: only worlds that vote pay for it

        solver = z3.Solver()
        for name, value in sorted(params.items()):
            solver.add(z3.Real(name) == z3.RealVal(str(Fraction(str(value)))))
        violated = []
        for name, (low, high) in sorted(self.bounds.items()):
            var = z3.Real(name)
            for op, bound in ((">=", low), ("<=", high)):
                if bound is None:
                    continue
                limit = z3.RealVal(str(Fraction(str(bound))))
                solver.push()
                solver.add(var >= limit if op == ">=" else var <= limit)
                if solver.check() == z3.unsat:
                    violated.append(f"{name} {op} {bound}")
                solver.pop()
        return Verdict(not violated, tuple(violated))
