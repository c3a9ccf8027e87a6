"""Real LangGraph graphs for the tests: StateGraph + ToolNode, and create_agent."""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agentfence import Fence
from agentfence.testing import ScriptedChatModel

ALICE = {"agentfence_principal": 'User::"alice"'}


def graph_for(
    fence: Fence, tools: list[BaseTool], replies: list[AIMessage], checkpointer: Any = None
) -> Any:
    """A hand-built graph: the scripted model, then a fenced ToolNode, in a loop."""
    model = ScriptedChatModel(responses=replies)

    def agent(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node(
        "tools",
        ToolNode(tools, wrap_tool_call=fence.wrap_tool_call, awrap_tool_call=fence.awrap_tool_call),
    )
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer or InMemorySaver())


def agent_for(fence: Fence, tools: list[BaseTool], replies: list[AIMessage]) -> Any:
    """A create_agent agent with the fence as middleware."""
    model = ScriptedChatModel(responses=replies)
    return create_agent(model, tools, middleware=[fence.middleware()], checkpointer=InMemorySaver())


def batch(*calls: dict[str, Any]) -> list[AIMessage]:
    """One model turn making these calls, then a closing turn."""
    return [AIMessage(content="", tool_calls=list(calls)), AIMessage(content="done")]


def tool_messages(result: dict[str, Any]) -> dict[str, ToolMessage]:
    """The tool results of a run, by tool call id."""
    return {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}


def config(thread: str = "t1", **configurable: Any) -> dict[str, Any]:
    """A run config acting for alice."""
    return {"configurable": {"thread_id": thread, **ALICE, **configurable}}
