"""The ``agora`` command line: one module per group of commands, each importing the simulator only
when a command runs, so ``agora --help`` starts at once."""

from __future__ import annotations

from runtime.cli import (
    benchmarking,
    fuzzing,
    inspection,
    runs,
    scenarios,
    serving,
    sweeping,
    training,
)
from runtime.cli.output import app

# Each module registers its commands on the app when imported.
COMMAND_MODULES = (
    benchmarking,
    fuzzing,
    inspection,
    runs,
    scenarios,
    serving,
    sweeping,
    training,
)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
