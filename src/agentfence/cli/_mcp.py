"""``agentfence mcp serve``: the fence as an MCP server in front of other MCP servers.

The ``mcp`` SDK and langchain-mcp-adapters (the ``mcp`` extra) are imported only when the
command runs. Errors leave through ``agentfence.cli.main`` (exit 2).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from agentfence.errors import ConfigurationError

__all__ = ["register"]

mcp_app = typer.Typer(
    help="Serve MCP: a fence in front of MCP servers (every tools/call decided and recorded).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``mcp`` group to ``app``."""
    app.add_typer(mcp_app, name="mcp")


@mcp_app.command("serve")
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML file: a fence table and one servers.NAME table per upstream "
            "(docs/mcp-guide.md).",
        ),
    ] = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            "--upstream",
            help="An upstream MCP server started over stdio, NAME=COMMAND ARGS (repeatable).",
        ),
    ] = None,
    policies: Annotated[
        Path | None,
        typer.Option(
            "--policies", help="Policy directory (default: $AGENTFENCE_POLICY_DIR or ./policies)."
        ),
    ] = None,
    log: Annotated[
        str | None,
        typer.Option("--log", help="The decision log, sqlite:///PATH (default: $AGENTFENCE_LOG)."),
    ] = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            help="The log's checkpoint signing key (default: $AGENTFENCE_SIGNING_KEY).",
        ),
    ] = None,
    principal: Annotated[
        str | None,
        typer.Option(
            "--principal",
            help="Who every call acts for, e.g. 'User::\"alice\"' (none: every call is denied).",
        ),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="The agent name decisions record.")
    ] = None,
) -> None:
    """Serve MCP on stdin/stdout, fronting the upstream servers: each tools/call is decided
    by the policies and recorded in the signed log, then forwarded, refused, or held for an
    approver (answer with `agentfence approvals`, then make the same call again)."""
    try:
        import anyio

        from agentfence.mcp.proxy import McpProxy, ProxyConfig, Upstream
    except ImportError as exc:
        raise ConfigurationError(
            f"agentfence mcp serve needs the mcp extra ({exc}); install it with "
            "pip install 'agentfence[mcp]'"
        ) from exc
    settings = ProxyConfig.load(config) if config is not None else ProxyConfig(upstreams=())
    extra = tuple(Upstream.parse(text) for text in upstream or ())
    settings = dataclasses.replace(
        settings,
        upstreams=settings.upstreams + extra,
        policies=str(policies) if policies is not None else settings.policies,
        log=log if log is not None else settings.log,
        signing_key=str(signing_key) if signing_key is not None else settings.signing_key,
        principal=principal if principal is not None else settings.principal,
        agent=agent if agent is not None else settings.agent,
    )

    async def main() -> None:
        async with McpProxy.open(settings) as proxy:
            await proxy.serve_stdio()

    anyio.run(main)
