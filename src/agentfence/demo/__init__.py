"""The support-desk demo: a scripted agent whose tool calls are allowed, denied or held.

``agentfence demo`` runs it: a real ``create_agent`` agent with a scripted chat model (no API
key, no network) works a refund ticket; every tool call goes through the fence, and the demo
prints each decision as the log recorded it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from agentfence.demo.tools import TOOLS
from agentfence.fence import Fence
from agentfence.log import MemoryLog
from agentfence.records import DecisionRecord
from agentfence.testing import ScriptedChatModel, tool_call

__all__ = ["DemoRun", "policy_dir", "run", "script"]

PRINCIPAL = 'User::"alice"'
AGENT = "support-bot"
THREAD = "ticket-T-88"
SEED = 20261122


def policy_dir() -> Path:
    """The directory holding the demo's policies, schema and entities."""
    return Path(str(resources.files("agentfence.demo") / "policies"))


def script() -> list[AIMessage]:
    """What the scripted model says, turn by turn."""
    return [
        AIMessage(
            content="Looking up the customer first.",
            tool_calls=[
                tool_call("lookup_customer", {"customer_id": "c-102"}, "call-lookup"),
            ],
        ),
        AIMessage(
            content="Refunding both items and letting Dana know.",
            tool_calls=[
                tool_call(
                    "refund",
                    {"customer_id": "c-102", "amount": 40.0, "reason": "late delivery"},
                    "call-refund-small",
                ),
                tool_call(
                    "refund",
                    {"customer_id": "c-102", "amount": 2500.0, "reason": "laptop arrived broken"},
                    "call-refund-large",
                ),
                tool_call(
                    "send_email",
                    {
                        "to": "dana@customer.example",
                        "subject": "Your refund",
                        "body": "We refunded EUR 40 for the late delivery.",
                    },
                    "call-email-customer",
                ),
            ],
        ),
        AIMessage(
            content="Cleaning up and forwarding the ticket.",
            tool_calls=[
                tool_call("delete_file", {"path": "/srv/tickets/T-88/attachments"}, "call-delete"),
                tool_call(
                    "send_email",
                    {
                        "to": "archive@mailbox.example",
                        "subject": "Ticket T-88",
                        "body": "Full ticket attached.",
                    },
                    "call-email-outside",
                ),
            ],
        ),
        AIMessage(
            content="Refunded EUR 40. The EUR 2,500 refund is waiting for a finance "
            "approver; deleting attachments and the outside forward were refused."
        ),
    ]


@dataclass(frozen=True)
class DemoRun:
    """What a demo run produced: the conversation and the decisions on record."""

    messages: list[BaseMessage]
    decisions: list[DecisionRecord]
    fence: Fence
    log: MemoryLog


def run(*, policies: Path | None = None) -> DemoRun:
    """Run the support-desk agent end to end through the fence."""
    log = MemoryLog()
    fence = Fence.from_directory(
        policies or policy_dir(), tools=TOOLS, log=log, agent=AGENT, seed=SEED
    )
    agent: Any = create_agent(
        ScriptedChatModel(responses=script()),
        TOOLS,
        system_prompt="You are the Acme support desk assistant.",
        middleware=[fence.middleware()],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": THREAD, "agentfence_principal": PRINCIPAL}}
    result = agent.invoke(
        {
            "messages": [
                (
                    "user",
                    "Customer c-102 should get EUR 40 back for the late delivery "
                    "and EUR 2,500 for the broken laptop. Tell them, tidy up the "
                    "ticket attachments and forward the ticket to the archive.",
                )
            ]
        },
        config,
    )
    return DemoRun(
        messages=list(result["messages"]), decisions=log.decisions(), fence=fence, log=log
    )
