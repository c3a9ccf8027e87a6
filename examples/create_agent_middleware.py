"""Wrap a ``create_agent`` agent: the fence is one middleware.

Run it: ``.venv/bin/python examples/create_agent_middleware.py``. It uses the support-desk
tools and policies that ship with agentfence and a scripted chat model (no API key).
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from agentfence import Fence, MemoryLog
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.testing import ScriptedChatModel, tool_call


def main() -> list[str]:
    """Run one conversation and return one line per tool result."""
    log = MemoryLog()
    fence = Fence.from_directory(policy_dir(), tools=TOOLS, log=log, agent="support-bot")
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    tool_call(
                        "refund",
                        {"customer_id": "c-233", "amount": 25.0, "reason": "damaged box"},
                        "call-1",
                    ),
                    tool_call(
                        "send_email",
                        {
                            "to": "ravi@customer.example",
                            "subject": "Refund",
                            "body": "Your password is hunter2",
                        },
                        "call-2",
                    ),
                ],
            ),
            AIMessage(content="Refund issued."),
        ]
    )
    agent = create_agent(
        model, TOOLS, middleware=[fence.middleware()], checkpointer=InMemorySaver()
    )
    config = {
        "configurable": {"thread_id": "example-agent", "agentfence_principal": 'User::"alice"'}
    }
    result = agent.invoke({"messages": [("user", "Refund c-233 EUR 25 and tell them.")]}, config)
    lines = [f"{m.name}: {m.status}: {m.content}" for m in result["messages"] if m.type == "tool"]
    for line in lines:
        print(line)
    print(f"{len(log.decisions())} decisions recorded under policy set {fence.policy_hash[:16]}")
    return lines


if __name__ == "__main__":
    main()
