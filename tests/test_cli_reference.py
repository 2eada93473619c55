"""docs/cli.md is generated from the CLI (tools/cli_reference.py): it must match the commands as they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_reference_matches_the_cli():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + " (regenerate: python tools/cli_reference.py)"


def test_every_command_of_the_cli_is_in_the_reference():
    import typer

    from cxrsearch.cli.main import app

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"## `cxrsearch {name}`" in text
        for sub in getattr(command, "commands", {}):
            assert f"## `cxrsearch {name} {sub}`" in text
