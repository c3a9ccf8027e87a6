"""MCP tools in LangGraph: a real MCP server (tests/mcp_server.py, the official SDK) started
over stdio, its tools loaded with langchain-mcp-adapters and used by a real create_agent
through the fence. The server writes every call it receives to a file, so a refused call is
proven never to have reached it."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from langgraph.checkpoint.memory import InMemorySaver

from agentfence import Fence, MemoryLog
from agentfence.errors import ToolSpecError
from agentfence.testing import ScriptedChatModel, tool_call
from tests.conftest import signed

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "mcp_server.py"
POLICIES = ROOT / "fixtures" / "mcp_policies"
CONFIG = {"configurable": {"thread_id": "mcp-1", "agentfence_principal": 'User::"alice"'}}


def client_for(calls: Path, mode: str = "") -> MultiServerMCPClient:
    """A client that starts tests/mcp_server.py over stdio, recording calls to ``calls``."""
    env = {"AGENTFENCE_TEST_MCP_CALLS": str(calls), "AGENTFENCE_TEST_MCP_MODE": mode}
    return MultiServerMCPClient(
        {
            "notes": {
                "command": sys.executable,
                "args": [str(SERVER)],
                "transport": "stdio",
                "env": env,
            }
        }
    )


def received(calls: Path) -> list[dict[str, Any]]:
    """The calls the server received."""
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


def with_tools(calls: Path, body: Callable[[list[BaseTool]], Awaitable[Any]]) -> Any:
    """Run ``body`` with the server's tools loaded over one live stdio session."""

    async def main() -> Any:
        async with client_for(calls).session("notes") as session:
            return await body(await load_mcp_tools(session))

    return asyncio.run(main())


def agent_for(fence: Fence, tools: list[BaseTool], calls: list[dict[str, Any]]) -> Any:
    model = ScriptedChatModel(
        responses=[AIMessage(content="", tool_calls=calls), AIMessage(content="finished")]
    )
    return create_agent(model, tools, middleware=[fence.middleware()], checkpointer=InMemorySaver())


def results(output: dict[str, Any]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in output["messages"] if isinstance(m, ToolMessage)}


def test_mcp_tools_are_allowed_denied_and_held_by_their_annotations(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    log = MemoryLog()

    async def body(tools: list[BaseTool]) -> tuple[Fence, dict[str, Any]]:
        fence = Fence.from_directory(POLICIES, tools=tools, log=log)
        agent = agent_for(
            fence,
            tools,
            [
                tool_call("read_note", {"name": "todo"}, "read"),
                tool_call("delete_note", {"name": "todo"}, "delete"),
                tool_call("transfer", {"account": "acc-9", "amount": 5000}, "large"),
            ],
        )
        paused = await agent.ainvoke({"messages": [("user", "go")]}, CONFIG)
        seen: dict[str, Any] = {"paused": paused, "before_answer": received(calls)}
        [waiting] = fence.approvals.list(thread="mcp-1")
        seen["waiting"] = waiting
        fence.approvals.submit(
            waiting.request.request_id, signed(waiting.request), now_us=waiting.request.created_us
        )
        seen["resumed"] = await fence.aresume(agent, CONFIG)
        return fence, seen

    fence, seen = with_tools(calls, body)
    # The turn's held call pauses it (one LangChain HITL request) before any call runs.
    [pause] = seen["paused"]["__interrupt__"]
    [action] = pause.value["action_requests"]
    assert action["name"] == "transfer"
    assert action["agentfence"]["reasons"] == ["transfers over 100 need finance"]
    assert seen["waiting"].request.tool == "transfer"
    assert seen["before_answer"] == []
    by_id = results(seen["resumed"])
    assert by_id["read"].status == "success"
    assert "buy milk" in str(by_id["read"].content)
    assert by_id["delete"].status == "error"
    assert "tools the server marks destructive never run" in str(by_id["delete"].content)
    assert by_id["large"].status == "success"
    # The allowed and the approved call reached the server; the denied one never did.
    assert received(calls) == [
        {"tool": "read_note", "args": {"name": "todo"}},
        # The server gets the arguments as bound and decided: the schema's default memo too.
        {"tool": "transfer", "args": {"account": "acc-9", "amount": 5000.0, "memo": ""}},
    ]
    groups = {e.name: e.spec.groups for e in fence.engine.catalog}
    assert groups["read_note"] == ("mcp", "mcp_read_only")
    assert groups["delete_note"] == ("mcp", "mcp_destructive", "mcp_open_world")


def test_mcp_argument_the_input_schema_does_not_declare_is_refused(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"

    async def body(tools: list[BaseTool]) -> dict[str, Any]:
        fence = Fence.from_directory(POLICIES, tools=tools, log=MemoryLog())
        agent = agent_for(
            fence,
            tools,
            [
                tool_call(
                    "transfer", {"account": "acc-9", "amount": 5, "reroute_to": "evil"}, "smuggle"
                ),
                tool_call("transfer", {"account": "acc-9", "amount": "5"}, "string-amount"),
            ],
        )
        return dict(await agent.ainvoke({"messages": [("user", "go")]}, CONFIG))

    by_id = results(with_tools(calls, body))
    assert by_id["smuggle"].status == "error"
    assert "'reroute_to' was unexpected" in str(by_id["smuggle"].content)
    assert "policy would not see them" in str(by_id["smuggle"].content)
    assert by_id["string-amount"].status == "error"
    assert "'5' is not of type 'number'" in str(by_id["string-amount"].content)
    assert received(calls) == []


def test_mcp_small_transfer_runs_on_the_server_with_what_was_decided(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    log = MemoryLog()

    async def body(tools: list[BaseTool]) -> dict[str, Any]:
        fence = Fence.from_directory(POLICIES, tools=tools, log=log)
        agent = agent_for(
            fence, tools, [tool_call("transfer", {"account": "acc-9", "amount": 12.5}, "small")]
        )
        return dict(await agent.ainvoke({"messages": [("user", "go")]}, CONFIG))

    by_id = results(with_tools(calls, body))
    assert by_id["small"].status == "success"
    assert "sent 12.5 to acc-9" in str(by_id["small"].content)
    assert received(calls) == [
        {"tool": "transfer", "args": {"account": "acc-9", "amount": 12.5, "memo": ""}}
    ]


def test_malformed_mcp_input_schema_is_a_clear_error_naming_the_tool(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"

    async def main() -> None:
        async with client_for(calls, mode="malformed").session("notes") as session:
            tools = await load_mcp_tools(session)
        with pytest.raises(ToolSpecError) as caught:
            Fence.from_directory(POLICIES, tools=tools, log=MemoryLog())
        message = str(caught.value)
        assert "tool 'delete_note'" in message
        assert "not a valid JSON Schema" in message
        assert "'text' is not valid" in message

    asyncio.run(main())
    assert received(calls) == []


def test_held_mcp_call_runs_on_the_server_once_an_approver_says_yes(tmp_path: Path) -> None:
    from agentfence.approvals import StoredApproval
    from agentfence.inbox.views import now_us
    from tests.conftest import signed

    calls = tmp_path / "calls.jsonl"

    async def body(tools: list[BaseTool]) -> dict[str, Any]:
        fence = Fence.from_directory(POLICIES, tools=tools, log=MemoryLog())
        agent = agent_for(
            fence, tools, [tool_call("transfer", {"account": "acc-9", "amount": 5000}, "large")]
        )

        def approve(waiting: list[StoredApproval]) -> None:
            assert received(calls) == []  # held: nothing reached the server yet
            for item in waiting:
                envelope = signed(item.request)
                fence.approvals.submit(item.request.request_id, envelope, now_us=now_us())

        return dict(
            await fence.arun(
                agent, {"messages": [("user", "go")]}, CONFIG, on_pending=approve, timeout=60
            )
        )

    by_id = results(with_tools(calls, body))
    assert by_id["large"].status == "success"
    assert "sent 5000.0 to acc-9" in str(by_id["large"].content)
    assert received(calls) == [
        {"tool": "transfer", "args": {"account": "acc-9", "amount": 5000.0, "memo": ""}}
    ]
