"""The role registry: the one list of the roles a scenario can name, built-in and the user's own.

A population's ``role`` is either a registered name (``"worker"``) or
``"package.module:ClassName"``,
a :class:`runtime.kernel.population.Population` subclass in the user's own code. Registered names
come from the entry-point group ``agora.roles``: Agora's built-in roles register there
(``pyproject.toml``), and so can any installed package::

    [project.entry-points."agora.roles"]
    tax_authority = "mypackage.tax:TaxAuthority"

A ``module:Class`` role is imported from the scenario file's folder first (``role =
"my_roles:Trader"`` with ``my_roles.py`` beside the scenario), then from the Python path. The
kernel never imports a role by name: every role comes through here.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.kernel.errors import ScenarioError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from runtime.kernel.population import Population

GROUP = "agora.roles"


@dataclass(frozen=True)
class Role:
    """A role a scenario can name: what it is called, its class and where it comes from."""

    name: str
    cls: type[Population]
    origin: (
        str  # "agora", an installed package's name, or the file a module:Class role was found in
    )

    @property
    def params(self) -> type[BaseModel]:
        """The role's parameter model (a pydantic model: its fields are the population's own
        keys)."""
        return self.cls.Params


def registered() -> dict[str, Role]:
    """Every role registered under the ``agora.roles`` entry points, by name (each loaded once a
    process)."""
    return {name: _load(name) for name in _names()}


@functools.cache
def _names() -> dict[str, EntryPoint]:
    """The registered names and their entry points, without importing any role's module."""
    found = {ep.name: ep for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name)}
    if not found:
        raise ScenarioError(
            [
                "no roles are registered (entry points agora.roles): install Agora from its "
                "source tree with pip install -e ."
            ]
        )
    return found


@functools.cache
def _load(name: str) -> Role:
    """One registered role, importing only its own module (a scenario pays for the roles it
    names)."""
    ep = _names()[name]
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plug-in: name it, do not hide the others
        raise ScenarioError(
            [
                f"role {name!r} (entry point {ep.value}): cannot be loaded: "
                f"{type(exc).__name__}: {exc}"
            ]
        ) from None
    dist = getattr(ep, "dist", None)
    origin = (
        "agora" if dist is not None and dist.name == "agora" else (dist.name if dist else ep.value)
    )
    return Role(name, _checked(cls, name), origin)


def _checked(cls: object, name: str) -> type[Population]:
    from runtime.kernel.population import Population

    if not (isinstance(cls, type) and issubclass(cls, Population)):
        raise ScenarioError(
            [
                f"role {name!r}: {cls!r} is not a Population subclass "
                "(a role is a class deriving from runtime.kernel.population.Population)"
            ]
        )
    return cls


def _import(module: str, base: Path | None) -> object:
    """Import ``module``, looking in ``base`` (the scenario's folder) before the Python path. A
    module of that name imported before from another folder is imported again from this one."""
    top = module.split(".")[0]
    if base is None or not (
        (base / (top + ".py")).is_file() or (base / top / "__init__.py").is_file()
    ):
        return importlib.import_module(module)
    folder = base.resolve()
    cached = sys.modules.get(module)
    if (
        cached is not None
        and folder in Path(getattr(cached, "__file__", "") or "/").resolve().parents
    ):
        return cached
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[name]  # another folder's module of the same name
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))


def resolve(role: str, base: Path | None = None) -> Role:
    """The role a population names (a registered name, or ``module:Class`` from the user's code);
    ScenarioError naming what is wrong, with the nearest registered name for a typo."""
    if ":" not in role:
        known = _names()
        if role in known:
            return _load(role)
        near = difflib.get_close_matches(role, list(known), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ScenarioError(
            [
                f"role {role!r} is not registered{hint} Roles: {', '.join(known)}, or "
                '"package.module:ClassName" for your own (agora roles lists them)'
            ]
        )
    module, _, qualname = role.partition(":")
    if not module or not qualname:
        raise ScenarioError([f'role {role!r}: expected "package.module:ClassName"'])
    try:
        found = _import(module, base)
    except Exception as exc:  # the user's module failed to import: say why in one line
        raise ScenarioError(
            [
                f"role {role!r}: module {module!r} cannot be imported: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ]
        ) from None
    obj: object = found
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ScenarioError([f"role {role!r}: module {module!r} has no {qualname!r}"])
    where = getattr(found, "__file__", None) or module
    return Role(role, _checked(obj, role), str(where))


def role_modules(roles: list[str], base: Path | None = None) -> tuple[str, ...]:
    """The modules that hold these roles' classes (those a world's checkpoint may hold)."""
    return tuple(sorted({resolve(r, base).cls.__module__ for r in roles}))


def params_schemas(roles: dict[str, Role]) -> dict[str, object]:
    """Each role's own keys as a JSON Schema (its parameter model's), by role name."""
    out: dict[str, object] = {}
    for name, role in roles.items():
        doc = role.params.model_json_schema()
        doc["description"] = (
            (role.cls.__doc__ or "").strip().splitlines()[0] if role.cls.__doc__ else name
        )
        out[name] = doc
    return out
