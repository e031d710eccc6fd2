"""Agora's agent roles. Each role is a :class:`runtime.kernel.population.Population` stepped as
arrays.

The marketplace's two roles: requesters post tasks, workers do them for credits. The five roles
of an agent economy: negotiator (``negotiator.py``), critic (``critic.py``), refactor
(``refactor.py``),
world-model (``world_model.py``) and healing (``healing.py``).

Each registers under the ``agora.roles`` entry points (``pyproject.toml``); the registry
(:mod:`runtime.kernel.roles`) is the one list of roles, and imports a role's module only when a
scenario
names it, so this package imports none of them itself.
"""
