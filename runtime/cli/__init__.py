"""The ``agora`` command line: one module per group of commands, each importing the simulator only
when a command runs, so ``agora --help`` starts at once."""

from __future__ import annotations

# Each module registers its commands on the app when imported.
from runtime.cli import runs, scenarios, inspection, training, sweeping, fuzzing, benchmarking  # noqa: F401, I001
from runtime.cli.output import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
