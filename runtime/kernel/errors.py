"""The errors a user's input raises: each becomes one line per problem and exit code 2.

Kept apart from the modules that raise them, so that the command line can tell a user mistake
from a bug without importing the simulator.
"""

from __future__ import annotations


class ScenarioError(Exception):
    """A scenario file that cannot be run; ``problems`` holds one ``file: key: reason`` line
    each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class RunDirError(Exception):
    """A path that is not a usable run directory (user mistake: exit 2)."""


class RoleFailure(Exception):
    """A role's own code raised: the run stops (exit 1) naming the population, its role and the tick
    (-1: while the world was built); the role's exception is the ``__cause__``."""

    def __init__(self, population: str, role: str, tick: int) -> None:
        when = "while the world was built" if tick < 0 else f"at tick {tick}"
        super().__init__(f"population {population!r} (role {role!r}) failed {when}")
        self.population = population
        self.role = role
        self.tick = tick
