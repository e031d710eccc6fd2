"""The shipped default scenario's run, pinned: its final state hash on every machine and version.

The same scenario and seed must give the same state on every x86-64 CPU (Intel or AMD, with or
without AVX-512) and at any thread count: ``test_portable_runs.py`` emulates other processors on one
machine, and compares them with the run checked here (the session's ``default_run``, recorded once
in a child process). A change that moves this hash changes what the default run computes. If that
is intended, say why in the commit and in CHANGELOG.md, and update it here and in the README.
"""

from __future__ import annotations

FINAL = "9396257b763b97def40b9515f25c0ba4efad16980e3d0b01da8de8550aaf6033"


def test_the_default_scenario_ends_in_its_published_state(default_run):
    assert default_run["ticks"] == 200 and len(default_run["checkpoints"]) == 8
    assert default_run["final"] == FINAL, (
        "the default scenario's final state moved: if on purpose, update FINAL and the README's "
        "hash"
    )
