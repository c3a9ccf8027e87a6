"""Several workers, one PostgreSQL database: the decision log, the approvals queue, and
LangGraph's ``PostgresSaver`` for the graph state.

Run it against a PostgreSQL you can write to (``make postgres-start`` starts a throwaway one
and prints its URL)::

    .venv/bin/python examples/postgres_workers.py "$(scripts/postgres.sh url)"

Worker A runs the support-desk agent until a EUR 2,500 refund pauses for a finance approver.
The approver answers (here in-process, with the demo's DEMO-ONLY key; in a deployment with
``agentfence approvals approve --db postgresql://...`` or the inbox). Worker B, a fence and an
agent built from scratch as on another host, resumes the thread: the refund runs once.
agentfence keeps its tables in the schema ``agentfence``; LangGraph's are in ``public``.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.postgres import PostgresSaver

from agentfence import ApprovalStore, EntityRef, Fence, verify_log
from agentfence._signing import Signer  # what a key file from `agentfence keys generate` holds
from agentfence.approvals import submit_answer
from agentfence.demo import demo_approver, policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.testing import ScriptedChatModel, tool_call

SCRIPT = [
    AIMessage(
        content="Refunding the broken laptop.",
        tool_calls=[
            tool_call(
                "refund",
                {"customer_id": "c-102", "amount": 2500.0, "reason": "laptop broken"},
                "call-1",
            )
        ],
    ),
    AIMessage(content="Refund done."),
]


def worker(url: str, key: Signer, saver: PostgresSaver, thread: str, *, resume: bool) -> Any:
    """One worker: its own fence and agent over the shared database."""
    fence = Fence.from_directory(
        policy_dir(), tools=TOOLS, log=url, signing_key=key, agent="support-bot"
    )
    turn = 1 if resume else 0  # a new process carries on the script where the thread is
    model = ScriptedChatModel(responses=SCRIPT[turn:])
    agent = create_agent(model, TOOLS, middleware=[fence.middleware()], checkpointer=saver)
    config = {"configurable": {"thread_id": thread, "agentfence_principal": "alice"}}
    try:
        if resume:
            return fence.resume(agent, config)
        request = {"messages": [("user", "Refund EUR 2,500 to c-102 for the laptop.")]}
        return fence.run(agent, request, config, timeout=0)
    finally:
        fence.close()


def main(url: str) -> list[str]:
    """Pause on one worker, approve, resume on another; return what happened."""
    # Every worker signs with the log's one key: in a deployment a key file from your secret
    # store (`agentfence keys generate`). This one is derived from a public seed: DEMO-ONLY.
    key = Signer.from_seed("workers-log", hashlib.sha256(b"agentfence example, DEMO-ONLY").digest())
    thread = f"ticket-{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        paused = worker(url, key, saver, thread, resume=False)
        [pause] = paused["__interrupt__"]
        # One interrupt for the model turn; each held call is an action with its request id.
        [action] = pause.value["action_requests"]
        request_id = action["agentfence"]["request_id"]
        lines.append(f"worker A: paused, approval request {request_id[:12]}")

        store = ApprovalStore.open(url)
        stored = store.get(request_id)
        assert stored is not None
        submit_answer(
            store,
            stored.request,
            approver=EntityRef("User", "fran"),
            decision="approve",
            signer=demo_approver(),
            now_us=time.time_ns() // 1000,
        )
        store.close()
        lines.append("approver: fran approved")

        done = worker(url, key, saver, thread, resume=True)
        results = [m for m in done["messages"] if isinstance(m, ToolMessage)]
        lines.append(f"worker B: resumed: {results[-1].content}")
    verified = verify_log(url, [key.verifier_key])
    lines.append(f"log verifies: {verified.entries} entries, root {verified.root.hex()[:16]}")
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: postgres_workers.py postgresql://USER@HOST/DATABASE")
    for line in main(sys.argv[1]):
        print(line)
