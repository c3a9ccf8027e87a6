"""A real create_agent agent with the fence as middleware."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver

from agentfence import Fence, MemoryLog
from agentfence.testing import ScriptedChatModel, tool_call
from tests.conftest import Ran

CONFIG = {"configurable": {"thread_id": "agent-1", "agentfence_principal": 'User::"alice"'}}


def agent_for(fence: Fence, tools: list[BaseTool], calls: list[dict[str, Any]]) -> Any:
    model = ScriptedChatModel(
        responses=[AIMessage(content="", tool_calls=calls), AIMessage(content="finished")]
    )
    return create_agent(model, tools, middleware=[fence.middleware()], checkpointer=InMemorySaver())


def test_middleware_allows_denies_and_holds(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    log = MemoryLog()
    agent = agent_for(
        # One pause per held call, raised as the call runs: the other calls have run by then.
        make_fence(log=log, interrupt_mode="request_per_call"),
        tools,
        [
            tool_call("pay", {"account": "acc-9", "amount": 12.5}, "small"),
            tool_call("pay", {"account": "acc-9", "amount": 5000}, "large"),
            tool_call("wipe", {"path": "/"}, "wipe"),
        ],
    )
    result = agent.invoke({"messages": [("user", "pay")]}, CONFIG)
    # The large payment paused the thread for a finance approver; the others were decided.
    [pause] = result["__interrupt__"]
    assert pause.value["action_requests"][0]["name"] == "pay"
    assert pause.value["agentfence"]["approvers"] == ["finance"]
    assert ran.calls == [("pay", {"account": "acc-9", "amount": 12.5})]
    records = {r.tool_call_id: r for r in log.decisions()}
    assert records["large"].effect == "REQUIRE_APPROVAL"
    assert records["large"].approvers == ["finance"]
    assert records["small"].resource == 'Account::"acc-9"'
    assert records["small"].principal == 'User::"alice"'
    assert records["small"].step == 2
    messages = {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}
    assert messages["small"].status == "success"
    assert messages["wipe"].status == "error"


def test_middleware_async(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    agent = agent_for(
        make_fence(),
        tools,
        [
            tool_call("read_record", {"record_id": "r1"}, "a"),
            tool_call("send_email", {"to": "x@outside.test", "body": "hi"}, "b"),
        ],
    )
    result = asyncio.run(agent.ainvoke({"messages": [("user", "go")]}, CONFIG))
    messages = {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}
    assert ran.names() == ["read_record"]
    assert "default deny" in str(messages["b"].content)


def test_middleware_is_named_agentfence(make_fence: Callable[..., Fence]) -> None:
    assert make_fence().middleware().name == "agentfence"
