"""docs/cli.md quotes every command's --help exactly; this keeps the two in sync.

To refresh the quoted blocks after changing a command, run
``.venv/bin/python tests/unit/test_cli_help.py --write``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from agentfence.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BLOCK = re.compile(r"```text\n\$ agentfence(?P<words>[^\n]*?) --help\n(?P<body>.*?)```", re.S)


def commands() -> list[tuple[str, ...]]:
    """Every command path of the CLI: the root, each group and each command."""
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found.append(path)
        if hasattr(command, "list_commands"):  # a group (typer vendors its own click)
            context = type(command).context_class(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                if sub is not None and not getattr(sub, "hidden", False):
                    walk(sub, (*path, name))

    walk(root, ())
    return found


def live_help(words: tuple[str, ...]) -> str:
    runner = CliRunner()
    result = runner.invoke(
        app, [*words, "--help"], env={"COLUMNS": "100", "TERM": "dumb"}, terminal_width=100
    )
    assert result.exit_code == 0, result.output
    return result.output


def documented() -> dict[tuple[str, ...], str]:
    return {tuple(m["words"].split()): m["body"] for m in BLOCK.finditer(DOC.read_text())}


def test_every_command_is_documented() -> None:
    missing = [" ".join(("agentfence", *c)) for c in commands() if c not in documented()]
    assert missing == [], f"docs/cli.md lacks --help blocks for: {missing}"


def test_documented_help_matches_the_live_help() -> None:
    stale = [
        " ".join(("agentfence", *words))
        for words, body in documented().items()
        if body.rstrip() != live_help(words).rstrip()
    ]
    assert stale == [], f"docs/cli.md quotes old --help for {stale}; run {__file__} --write"


def test_the_listed_help_of_each_command_is_its_own() -> None:
    """``agentfence --help`` lists commands from a table without loading them; each line
    must be the command's own first line of help."""
    from agentfence.cli import COMMANDS, load

    for name, (_, listed) in COMMANDS.items():
        own = (load(name).help or "").strip().split("\n\n")[0].replace("\n", " ")
        assert listed == own, name


def test_help_loads_no_command_group_cedar_or_a_database_driver() -> None:
    """The root help is for a person at a terminal: it must not import the command groups,
    cedarpy, psycopg or the web stack (this is what keeps `agentfence --help` quick)."""
    import subprocess

    probe = (
        "import sys\n"
        "from agentfence.cli import main\n"
        "sys.argv = ['agentfence', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('cedarpy', 'psycopg', 'starlette', 'agentfence.cli._', 'agentfence.policy')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Commands" in result.stdout
    assert "LOADED ['agentfence.cli._common']" in result.stderr, result.stderr


def write() -> None:
    """Rewrite every quoted block from the live help, appending blocks for new commands."""
    text = DOC.read_text()
    have = documented()

    def replace(match: re.Match[str]) -> str:
        words = tuple(match["words"].split())
        return f"```text\n$ agentfence{match['words']} --help\n{live_help(words)}```"

    text = BLOCK.sub(replace, text)
    for words in commands():
        if words not in have:
            name = " ".join(("agentfence", *words))
            text += f"\n## `{name}`\n\n```text\n$ {name} --help\n{live_help(words)}```\n"
    DOC.write_text(text)


if __name__ == "__main__":
    if "--write" in sys.argv:
        os.environ.setdefault("COLUMNS", "100")
        write()
