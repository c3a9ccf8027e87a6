"""``on_hold="queue"``: a held call is answered 'held' and queued; the same call made again
once answered runs (once) or hears the refusal. What the MCP proxy uses for callers that
cannot pause; here through the pipeline directly, with requests built outside a graph."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from agentfence import Fence, MemoryLog
from agentfence.errors import ConfigurationError
from agentfence.inbox.views import now_us
from agentfence.langgraph import ToolCallRequest, outside_request, tool_result
from tests.conftest import Ran, signed

CONFIG = {
    "thread_id": "mcp",
    "agentfence_principal": 'User::"alice"',
    "agentfence_on_hold": "queue",
}


def call(
    fence: Fence, tools: list[BaseTool], args: dict[str, Any], call_id: str = "c1"
) -> ToolMessage:
    by_name = {t.name: t for t in tools}

    def execute(request: ToolCallRequest) -> ToolMessage:
        found = request.tool_call
        text = by_name[found["name"]].invoke(found["args"])
        return tool_result(text, name=found["name"], call_id=call_id, error=False)

    result = fence.wrap_tool_call(outside_request("pay", args, call_id, CONFIG), execute)
    assert isinstance(result, ToolMessage)
    return result


def answer(fence: Fence, decision: str = "approve") -> str:
    [waiting] = fence.approvals.list(thread="mcp")
    request = waiting.request
    fence.approvals.submit(request.request_id, signed(request, decision=decision), now_us=now_us())
    return request.request_id


def test_queued_hold_is_answered_held_then_runs_once_approved(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence = make_fence(log=MemoryLog())
    held = call(fence, tools, {"account": "acc-9", "amount": 5000})
    assert held.status == "error"
    assert str(held.content).startswith("held, waiting for an approver (request id ")
    assert "payments over 100 need finance" in str(held.content)
    assert ran.calls == []
    still = call(fence, tools, {"account": "acc-9", "amount": 5000})
    assert "held, waiting for an approver" in str(still.content) and ran.calls == []
    request_id = answer(fence)
    assert held.artifact["agentfence"]["held"] == request_id
    done = call(fence, tools, {"account": "acc-9", "amount": 5000})
    assert done.status == "success" and ran.calls == [("pay", {"account": "acc-9", "amount": 5000})]
    # The same call once more: its recorded result, not a second payment.
    again = call(fence, tools, {"account": "acc-9", "amount": 5000})
    assert again.content == done.content and len(ran.calls) == 1


def test_queued_hold_rejected_is_refused_and_never_runs(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence = make_fence(log=MemoryLog())
    call(fence, tools, {"account": "acc-9", "amount": 5000})
    answer(fence, "reject")
    refused = call(fence, tools, {"account": "acc-9", "amount": 5000})
    assert refused.status == "error"
    assert "User::\"fran\" rejected the call to 'pay'" in str(refused.content)
    again = call(fence, tools, {"account": "acc-9", "amount": 5000})
    assert "was answered and its answer used already" in str(again.content)
    assert ran.calls == []


def test_approval_does_not_run_the_held_call_id_with_other_arguments(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence = make_fence(log=MemoryLog())
    call(fence, tools, {"account": "acc-9", "amount": 150})
    request_id = answer(fence)
    swapped = call(fence, tools, {"account": "acc-9", "amount": 9000})
    assert swapped.status == "error"
    assert f"is already held for a different call (request {request_id})" in str(swapped.content)
    assert ran.calls == []


def test_unknown_on_hold_mode_names_the_three() -> None:
    from agentfence.config import check_on_hold

    with pytest.raises(ConfigurationError) as caught:
        check_on_hold("later", "on_hold")
    assert "'interrupt'" in str(caught.value) and "'deny'" in str(caught.value)
    assert "'queue'" in str(caught.value)
