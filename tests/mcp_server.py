"""A real MCP server for the tests, written with the official SDK (FastMCP), run over stdio.

Every tool call that reaches it is appended, one JSON line, to the file named by
``AGENTFENCE_TEST_MCP_CALLS``, so a test can prove that a refused call never arrived.
``AGENTFENCE_TEST_MCP_MODE=malformed`` serves ``delete_note`` with an input schema that is
not valid JSON Schema.

    python tests/mcp_server.py     # speaks MCP on stdin/stdout
"""

from __future__ import annotations

import json
import os
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

server = FastMCP("notes")
NOTES = {"todo": "buy milk", "plan": "ship the fence"}


def _record(tool: str, args: dict[str, Any]) -> None:
    path = os.environ.get("AGENTFENCE_TEST_MCP_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "args": args}, sort_keys=True) + "\n")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
def read_note(name: str) -> str:
    """Read a note by name."""
    _record("read_note", {"name": name})
    return NOTES.get(name, f"no note named {name}")


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
def delete_note(name: str) -> str:
    """Delete a note by name."""
    _record("delete_note", {"name": name})
    return f"deleted {name}"


@server.tool(annotations=ToolAnnotations(destructiveHint=False, idempotentHint=False))
def transfer(account: str, amount: float, memo: str = "") -> str:
    """Move money to an account."""
    _record("transfer", {"account": account, "amount": amount, "memo": memo})
    return f"sent {amount} to {account}"


@server.tool(annotations=ToolAnnotations(destructiveHint=False))
def crash() -> str:
    """Stop the server process at once (an upstream that dies mid-call)."""
    _record("crash", {})
    os._exit(3)


if os.environ.get("AGENTFENCE_TEST_MCP_MODE") == "malformed":
    # A server whose tool definition is broken: "type" must be a JSON type name.
    tool = server._tool_manager.get_tool("delete_note")
    if tool is not None:
        tool.parameters = {"type": "object", "properties": {"name": {"type": "text"}}}


if __name__ == "__main__":
    server.run("stdio")
