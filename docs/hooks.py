"""MkDocs hooks: pages generated from the software itself when the site is built.

A page holds a marker where generated text goes:

* ``<!-- agora:scenario-reference -->``: every table and key of a scenario file, from the schema
  (``agora schema``), and every registered role's own keys;
* ``<!-- agora:cli-reference -->``: every command of ``agora``, its arguments and options, from the
  Typer app;
* ``<!-- agora:include PATH -->``: the text of the repository file PATH (a benchmark's saved output
  goes in a code block, a Markdown file as it is, its links from the repository's root made links
  within the site: so the home page is the README).

So the reference pages cannot drift from the code: they are the code's own descriptions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- agora:(scenario-reference|cli-reference|include) ?([^ ]*) ?-->")


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each marker of a page with what it names."""
    return MARKER.sub(lambda m: _expand(m.group(1), m.group(2)), markdown)


def _expand(kind: str, argument: str) -> str:
    if kind == "scenario-reference":
        return scenario_reference()
    if kind == "cli-reference":
        return cli_reference()
    path = ROOT / argument
    if not path.is_file():
        raise FileNotFoundError(f"agora:include names {argument}, which does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        text = re.sub(r"\A# [^\n]*\n", "", text)  # the page has its own title
        # links written from the repository's root (the README's) point into the site
        return text.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
    return f"```text\n{text.rstrip()}\n```"


# -- the scenario reference ----------------------------------------------------------------------


def _type(prop: dict[str, Any]) -> str:
    """A property's type in words: ``integer``, ``list of string``, ``number or null``..."""
    if "$ref" in prop:
        return "table"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return "list of " + _type(prop.get("items", {}))
    if (
        kind == "object"
        and "additionalProperties" in prop
        and isinstance(prop["additionalProperties"], dict)
    ):
        return "table of " + _type(prop["additionalProperties"])
    return str(kind)


def _bounds(prop: dict[str, Any]) -> str:
    parts = []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
        ("maxLength", "length <="),
        ("maxItems", "items <="),
    ):
        if key in prop:
            parts.append(
                f"{sign} {prop[key]:,}" if isinstance(prop[key], int) else f"{sign} {prop[key]}"
            )
    for sub in prop.get("anyOf", []):
        inner = _bounds(sub)
        if inner:
            parts.append(inner)
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _keys_table(model: dict[str, Any], required: set[str]) -> list[str]:
    lines = ["| key | type | default | range | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, prop in model.get("properties", {}).items():
        default = (
            "required"
            if name in required
            else (f"`{json.dumps(prop['default'])}`" if "default" in prop else "")
        )
        lines.append(
            f"| `{name}` | {_cell(_type(prop))} | {_cell(default)} | {_cell(_bounds(prop))} | "
            f"{_cell(prop.get('description', ''))} |"
        )
    return lines


def _schema() -> dict[str, Any]:
    """What ``agora schema`` prints: the scenario files' JSON Schema, each role's keys under
    ``x-agora-roles`` (read through the command line, the contract, not the modules behind it)."""
    from typer.testing import CliRunner

    from runtime.cli import app

    result = CliRunner().invoke(app, ["schema"])
    if result.exit_code != 0:
        raise RuntimeError(f"agora schema exited {result.exit_code}: {result.output[-2000:]}")
    return json.loads(result.stdout)


def scenario_reference() -> str:
    """Markdown for every table and key of a scenario file, and each registered role's keys."""
    doc = _schema()
    defs = doc.get("$defs", {})
    out: list[str] = []
    for section, prop in doc["properties"].items():
        ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
        many = prop.get("type") == "array"
        header = f"[[{section}]]" if many else f"[{section}]"
        out += [f"### `{header}`", "", _cell(prop.get("description", "")), ""]
        if ref is None:
            out += [f"Type: {_type(prop)}.", ""]
            continue
        model = defs[ref.rsplit("/", 1)[-1]]
        if model.get("description"):
            out += [model["description"], ""]
        out += [*_keys_table(model, set(model.get("required", []))), ""]
        for name, sub in model.get("properties", {}).items():  # tables inside the table
            inner = sub.get("$ref") or sub.get("items", {}).get("$ref")
            if inner:
                inner_model = defs[inner.rsplit("/", 1)[-1]]
                out += [
                    f"#### `{section}.{name}`",
                    "",
                    inner_model.get("description", ""),
                    "",
                    *_keys_table(inner_model, set(inner_model.get("required", []))),
                    "",
                ]
    out += [
        "## Each role's own keys",
        "",
        "A population takes the keys above and its role's own keys, written in the same table.",
        "",
    ]
    for name, role_doc in doc.get("x-agora-roles", {}).items():
        out += [f'### `role = "{name}"`', "", _cell(str(role_doc.get("description", ""))), ""]
        if role_doc.get("properties"):
            out += [*_keys_table(role_doc, set(role_doc.get("required", []))), ""]
        else:
            out += ["No keys of its own.", ""]
    return "\n".join(out)


# -- the command-line reference ------------------------------------------------------------------


def cli_reference() -> str:
    """Markdown for every ``agora`` command: its help, arguments and options.

    Typer builds the commands on its own copy of click, so they are read by their attributes
    (``commands``, ``params``, ``param_type_name``), not checked against the ``click`` package.
    """
    import typer
    import typer.main

    from runtime.cli import app

    group = typer.main.get_command(app)
    commands = getattr(group, "commands", None)
    assert isinstance(commands, dict) and commands, "the agora app has no subcommands"
    out: list[str] = []
    for name, command in commands.items():
        usage = " ".join(command.collect_usage_pieces(typer.Context(command, info_name=name)))
        out += [
            f"## `agora {name}`",
            "",
            (command.help or "").strip(),
            "",
            "```text",
            f"agora {name} {usage}",
            "```",
            "",
        ]
        rows = ["| argument or option | default | meaning |", "| --- | --- | --- |"]
        for param in command.params:
            if param.name == "help":
                continue
            if param.param_type_name == "argument":
                label = f"`{(param.metavar or param.name or '').upper()}`"
            else:
                label = ", ".join(f"`{opt}`" for opt in param.opts)
            meaning = getattr(param, "help", None) or ""
            default = (
                "" if param.default in (None, False) or param.required else f"`{param.default}`"
            )
            rows.append(f"| {label} | {_cell(default)} | {_cell(meaning)} |")
        out += [*rows, ""]
    return "\n".join(out)
