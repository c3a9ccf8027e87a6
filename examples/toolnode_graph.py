"""Wrap a hand-built LangGraph graph: StateGraph + ToolNode, with the fence on every call.

Run it: ``.venv/bin/python examples/toolnode_graph.py``. It uses the support-desk tools and
policies that ship with agentfence and a scripted chat model, so it needs no API key.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agentfence import Fence, MemoryLog
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.testing import ScriptedChatModel, tool_call


def build(fence: Fence, model: ScriptedChatModel):  # type: ignore[no-untyped-def]
    """The graph: the model proposes tool calls, the fenced ToolNode runs what policy allows."""

    def agent(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [model.bind_tools(TOOLS).invoke(state["messages"])]}

    tools = ToolNode(
        TOOLS, wrap_tool_call=fence.wrap_tool_call, awrap_tool_call=fence.awrap_tool_call
    )
    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=InMemorySaver())


def main() -> list[str]:
    """Run one conversation and return one line per tool result."""
    log = MemoryLog()
    fence = Fence.from_directory(policy_dir(), tools=TOOLS, log=log, agent="support-bot")
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    tool_call("lookup_customer", {"customer_id": "c-233"}, "call-1"),
                    tool_call("delete_file", {"path": "/srv/share/contracts"}, "call-2"),
                ],
            ),
            AIMessage(content="Done."),
        ]
    )
    graph = build(fence, model)
    config = {
        "configurable": {"thread_id": "example-toolnode", "agentfence_principal": 'User::"alice"'}
    }
    result = graph.invoke(
        {"messages": [("user", "Look up c-233 and clear their contracts.")]}, config
    )
    lines = [f"{m.name}: {m.status}: {m.content}" for m in result["messages"] if m.type == "tool"]
    for line in lines:
        print(line)
    print(f"{len(log.decisions())} decisions recorded under policy set {fence.policy_hash[:16]}")
    return lines


if __name__ == "__main__":
    main()
