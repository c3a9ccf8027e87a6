"""The ``agentfence`` command: a thin layer over the public API.

Subcommands mirror the API (``policy validate`` loads a :class:`PolicyEngine`, ``policy test``
calls :meth:`Fence.decide`); ``--json`` prints machine-readable output; every error leaves
through one path that prints what went wrong and what to do, with exit code 2.

Each command group lives in its own module (``_policy``, ``_demo``, ``_log``, ``_evidence``,
``_approvals``, ``_inbox``) over what they share (``_common``, and ``_audit`` for the
auditor's); this module assembles them into one app.
"""

from __future__ import annotations

import sys

import typer

from agentfence.cli import _approvals, _demo, _evidence, _inbox, _log, _policy
from agentfence.cli._common import Exit, err
from agentfence.errors import AgentfenceError

__all__ = ["app", "main"]

app = typer.Typer(
    name="agentfence",
    help="Govern LangGraph agents: Cedar policy on every tool call, recorded before it runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _group in (_policy, _demo, _log, _evidence, _approvals, _inbox):
    _group.register(app)


def main() -> None:
    """Entry point of the ``agentfence`` console script."""
    try:
        app(standalone_mode=False)
    except Exit as exc:
        sys.exit(exc.code)
    except AgentfenceError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True)
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
