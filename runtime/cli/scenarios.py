"""agora validate, agora schema, agora roles: scenario files and the roles they name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.cli.output import Table, app, fail, out
from runtime.kernel.errors import RoleFailure, ScenarioError


@app.command()
def validate(
    scenarios: Annotated[list[Path], typer.Argument(help="One or more scenario files.")],
) -> None:
    """Check scenario files as agora run does -- every key, every file they name, and the world
    built
    (no tick run): exit 0, or exit 2 with one line per problem (file: key: reason)."""
    from runtime.kernel.scenario import load
    from runtime.kernel.world import World

    problems: list[str] = []
    for path in scenarios:
        try:
            parsed, _ = load(path)
            if parsed.world.engine == "gpu":
                from runtime.tensor.world import TensorWorld

                TensorWorld(parsed, base=path.parent)
            else:
                World(
                    parsed, base=path.parent
                )  # what run builds before tick 0: the roles' own set-up too
            out.print(f"{path}: ok", markup=False)
        except ScenarioError as exc:
            problems += exc.problems
        except RoleFailure as exc:
            problems.append(f"{path}: {exc}: {type(exc.__cause__).__name__}: {exc.__cause__}")
    if problems:
        fail(problems)


@app.command()
def schema(
    scenarios: Annotated[
        list[Path] | None,
        typer.Argument(help="Scenario files whose own roles (module:Class) to describe too."),
    ] = None,
) -> None:
    """Print the JSON Schema of scenario files (for editor completion and checking), with each
    role's own keys under x-agora-roles."""
    from runtime.kernel.roles import params_schemas
    from runtime.kernel.scenario import schema as make

    try:
        found = _found_roles(scenarios or [])
        doc = make()
        doc["x-agora-roles"] = params_schemas(found)
    except ScenarioError as exc:
        fail(exc.problems)
    out.print_json(json.dumps(doc))


@app.command()
def roles(
    scenarios: Annotated[
        list[Path] | None,
        typer.Argument(help="Scenario files whose own roles (module:Class) to list too."),
    ] = None,
) -> None:
    """List every role Agora can find: the registered ones (built-in, and installed packages'
    agora.roles entry points) and those the scenario files name, with where each comes from and its
    own keys."""
    from rich.text import Text

    try:
        found = _found_roles(scenarios or [])
    except ScenarioError as exc:
        fail(exc.problems)
    table = Table(title="roles")
    for col in ("role", "from", "core", "its own keys (default)"):
        table.add_column(col)
    for role in found.values():
        keys = (
            ", ".join(
                f"{name}={field.default!r}" for name, field in role.params.model_fields.items()
            )
            or "-"
        )
        table.add_row(
            Text(role.name),
            Text(role.origin),
            "learned / baseline" if role.cls.has_core else "-",
            Text(keys),
        )
    out.print(table)
    out.print(
        "every population also takes name, role, count, initial_credits and core; `agora schema` "
        "describes each key",
        markup=False,
    )


def _found_roles(scenarios: list[Path]) -> dict[str, Any]:
    """The registered roles, and those the scenario files name (module:Class roles from their
    folders)."""
    from runtime.kernel.roles import registered, resolve
    from runtime.kernel.scenario import load

    found = dict(registered())
    for path in scenarios:
        parsed, _ = load(path)
        for p in parsed.population:
            if p.role not in found:
                found[p.role] = resolve(p.role, path.parent)
    return found
