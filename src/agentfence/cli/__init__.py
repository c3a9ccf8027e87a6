"""The ``agentfence`` command: a thin layer over the public API.

Subcommands mirror the API (``policy validate`` loads a :class:`PolicyEngine`, ``policy test``
calls :meth:`Fence.decide`); ``--json`` prints machine-readable output; every error leaves
through one path that prints what went wrong and what to do, with exit code 2.

Each command group lives in its own module (``_policy``, ``_demo``, ``_log``, ``_evidence``,
``_approvals``, ``_inbox``, ``_mcp``) over what they share (``_common``, and ``_audit`` for the
auditor's). This module imports none of them until a command needs it: ``agentfence --help``
lists the commands from :data:`COMMANDS` without loading Cedar, the inbox or a database
driver.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
import typer.core
from rich.markup import escape
from typer import _click

from agentfence.cli._common import Exit, err
from agentfence.errors import AgentfenceError

__all__ = ["COMMANDS", "app", "load", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "agentfence.cli._demo",
        "Run an offline demo agent: decisions, an approval, a verified log.",
    ),
    "replay": (
        "agentfence.cli._evidence",
        "Re-decide every recorded decision through Cedar and show what differs.",
    ),
    "policy": ("agentfence.cli._policy", "Validate, test and inspect Cedar policies."),
    "log": (
        "agentfence.cli._log",
        "Verify, inspect, prove and maintain the signed decision log.",
    ),
    "keys": ("agentfence.cli._evidence", "Create checkpoint signing keys."),
    "evidence": ("agentfence.cli._evidence", "Export and verify self-contained evidence packs."),
    "approvals": (
        "agentfence.cli._approvals",
        "List, inspect and answer approval requests (as an approver, with your own key).",
    ),
    "inbox": (
        "agentfence.cli._inbox",
        "The approvers' web inbox: serve it, and manage who may sign in.",
    ),
    "mcp": (
        "agentfence.cli._mcp",
        "Serve MCP: a fence in front of MCP servers (every tools/call decided and recorded).",
    ),
}
"""Each top-level command: the module whose ``register(app)`` adds it, and its one-line help
(a test holds it equal to the command's own)."""


class _LazyGroup(typer.core.TyperGroup):
    """The root group: a command's module is imported when the command runs (or shows its
    own help), not to list the commands."""

    _listing = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if self._listing:  # the root's help: a name and a line each, nothing imported
            return typer.core.TyperCommand(name=cmd_name, help=COMMANDS[cmd_name][1])
        return load(cmd_name)

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def load(name: str) -> _click.Command:
    """The click command of a top-level command, its module imported and registered."""
    module = importlib.import_module(COMMANDS[name][0])
    holder = typer.Typer(add_completion=False)
    module.register(holder)
    built: Any = typer.main.get_command(holder)
    command = built.commands[name] if isinstance(built, typer.core.TyperGroup) else built
    command.name = name
    return command


app = typer.Typer(
    name="agentfence",
    help="Govern LangGraph agents: Cedar policy on every tool call, recorded before it runs.",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Govern LangGraph agents: Cedar policy on every tool call, recorded before it runs."""


def main() -> None:
    """Entry point of the ``agentfence`` console script."""
    try:
        app(standalone_mode=False)
    except Exit as exc:
        sys.exit(exc.code)
    except AgentfenceError as exc:
        # The message is text, not markup: "[[case]]" or "Group::[...]" must print as written.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "show"):
            exc.show()
            sys.exit(code)
        raise
