"""The MCP side of agentfence: ``agentfence mcp serve``, a fence in front of MCP servers.

:class:`McpProxy` is an MCP server (the official ``mcp`` SDK) that fronts one or more upstream
MCP servers started over stdio, and puts every ``tools/call`` through the same pipeline as a
LangGraph tool call: Cedar policy, the signed log, approvals. Needs the ``mcp`` extra
(``pip install 'agentfence[mcp]'``); ``import agentfence`` never loads this package.

MCP tools used inside LangGraph (loaded with langchain-mcp-adapters) need nothing from here:
the fence recognises them (``docs/mcp-guide.md``).
"""

from __future__ import annotations

from agentfence.mcp.proxy import McpProxy, ProxyConfig, Upstream

__all__ = ["McpProxy", "ProxyConfig", "Upstream"]
