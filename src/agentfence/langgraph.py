"""The LangGraph and LangChain side of the fence: tool-call requests, results, middleware.

This is the only module that imports LangGraph or LangChain types, so the rest of the
package speaks of calls, decisions and records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import rfc8785
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

if TYPE_CHECKING:
    from agentfence.fence import Fence
    from agentfence.policy import Decision

__all__ = ["FenceMiddleware", "GraphBubbleUp", "ToolCallRequest"]

ToolResult = ToolMessage | Command[Any]
Execute = Callable[[ToolCallRequest], ToolResult]
AsyncExecute = Callable[[ToolCallRequest], Awaitable[ToolResult]]


class FenceMiddleware(AgentMiddleware):
    """``create_agent`` middleware that puts every tool call through a :class:`Fence`.

    Made by :meth:`Fence.middleware`; pass it in ``create_agent(..., middleware=[...])``.
    """

    def __init__(self, fence: Fence) -> None:
        super().__init__()
        self.fence = fence

    @property
    def name(self) -> str:
        """The middleware's name in the agent graph."""
        return "agentfence"

    def wrap_tool_call(self, request: ToolCallRequest, handler: Execute) -> ToolResult:
        """Decide, record, then run the tool only if policy allows it."""
        return self.fence.wrap_tool_call(request, handler)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: AsyncExecute) -> ToolResult:
        """The async form of :meth:`wrap_tool_call`."""
        return await self.fence.awrap_tool_call(request, handler)


def call_parts(request: ToolCallRequest) -> tuple[str, Any, str | None, Mapping[str, Any]]:
    """The tool name, arguments, tool call id and run config of a request."""
    call = request.tool_call
    runtime = getattr(request, "runtime", None)
    config = getattr(runtime, "config", None) or {}
    return str(call.get("name", "")), call.get("args", {}), call.get("id"), config


def refusal(request: ToolCallRequest, text: str, decision: Decision | None) -> ToolMessage:
    """The error result the model sees instead of a tool's output."""
    name, _, call_id, _ = call_parts(request)
    artifact: dict[str, Any] = {"agentfence": {"refused": True}}
    if decision is not None:
        artifact["agentfence"].update(
            decision_id=decision.decision_id,
            effect=decision.effect.value,
            policy_ids=list(decision.policy_ids),
        )
    return ToolMessage(
        content=text, name=name, tool_call_id=call_id or "", status="error", artifact=artifact
    )


def result_digest(result: ToolResult) -> tuple[str, str, bytes]:
    """The status (``success``/``error``), SHA-256 hex digest and bytes of a result's content.

    The bytes are RFC 8785 canonical JSON of the content when it is JSON, else its text.
    """
    if isinstance(result, ToolMessage):
        status = "error" if result.status == "error" else "success"
        content: Any = result.content
    else:
        status, content = "success", repr(result)
    try:
        data = rfc8785.dumps(content)
    except Exception:  # content that is not JSON: digest its text form
        data = repr(content).encode()
    return status, hashlib.sha256(data).hexdigest(), data
