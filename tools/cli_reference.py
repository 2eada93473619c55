"""Write (or check) docs/cli.md, the command reference, from the CLI's own definitions.

    python tools/cli_reference.py          # rewrite docs/cli.md
    python tools/cli_reference.py --check  # exit 1 when docs/cli.md differs from the CLI

``tests/test_cli_reference.py`` runs the check, so the reference cannot drift from ``--help``: every
command, its help text, its arguments and options (with their help and defaults) come from the
command objects typer builds, the same ones ``cxrsearch COMMAND --help`` prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import typer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"


def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        out.append((path, command))
        if hasattr(command, "commands"):
            out.extend(_commands(command, path))
    return out


# click parameter type names (typer's own click: "int", "int range", "float", "path", "str", ...)
_KINDS = {"int": "INTEGER", "integer": "INTEGER", "float": "FLOAT", "path": "PATH"}


def _param(param: Any) -> str:
    if param.param_type_name == "argument":
        name = param.metavar or str(param.name).upper()
        text = f"- `{name}`" + (" (required)" if param.required else "")
        return text + (f": {' '.join(param.help.split())}" if getattr(param, "help", None) else "")
    flags = " / ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])
    kind = _KINDS.get(str(getattr(param.type, "name", "")).split(" ")[0], "TEXT")  # "int range" -> int
    metavar = "" if param.is_flag else f" {param.metavar or kind}"
    text = f"- {flags}{metavar}"
    if param.help:
        text += f": {' '.join(param.help.split())}"
    if param.required:
        text += " (required)"
    elif param.show_default is not False and param.default not in (None, False, (), "") and not param.is_flag:
        text += f" (default: `{param.default}`)"
    return text


def _help(command: Any) -> str:
    raw = (command.help or "").split("\f")[0]
    paragraphs = [" ".join(p.split()) for p in raw.strip().split("\n\n") if p.strip()]
    return "\n\n".join(paragraphs)


def render() -> str:
    from cxrsearch.cli.main import app

    root = typer.main.get_command(app)
    lines = [
        "# Command reference",
        "",
        "Generated from the CLI by `python tools/cli_reference.py`; `make test` fails when it drifts from",
        "`cxrsearch COMMAND --help`. Every command also takes `--help`.",
        "",
    ]
    for path, command in _commands(root, "cxrsearch"):
        lines += [f"## `{path}`", ""]
        if _help(command):
            lines += [_help(command), ""]
        params = [p for p in command.params if p.name != "help"]
        if hasattr(command, "commands"):
            lines += ["Subcommands: " + ", ".join(f"`{name}`" for name in sorted(command.commands)), ""]
        elif params:
            lines += [_param(p) for p in params] + [""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/cli.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python tools/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
