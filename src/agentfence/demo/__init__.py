"""The demos: scripted agents whose tool calls are allowed, denied or held.

Two scenarios: ``desk`` (the default) and ``injection`` (:mod:`agentfence.demo.injection`,
an inbound email that tries to make the agent exfiltrate data and pay an attacker).

``agentfence demo`` runs the desk: a real ``create_agent`` agent with a scripted chat model (no API
key, no network) works a refund ticket as ``User::"alice"``. Every tool call goes through the
fence and into a signed decision log; the large refund pauses for a finance approver, who is
a person at the terminal or, when the demo is not run in a terminal, a scripted approver
(``User::"fran"``, with a demo-only key). At the end the log is verified as an auditor would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from agentfence._signing import Signer
from agentfence._storage.database import parse_url
from agentfence.approvals import ApprovalAnswer, StoredApproval, sign_answer
from agentfence.demo.tools import TOOLS
from agentfence.fence import Fence
from agentfence.log import SignedLog
from agentfence.records import ApprovalAnswerRecord, DecisionRecord, LogRecord, OutcomeRecord
from agentfence.testing import ScriptedChatModel, tool_call
from agentfence.tracing import Telemetry

__all__ = ["SCENARIOS", "DemoRun", "demo_approver", "policy_dir", "run", "script"]

SCENARIOS = ("desk", "injection")
"""The demo scenarios ``agentfence demo --scenario`` knows; ``desk`` is the default."""

PRINCIPAL = 'User::"alice"'
APPROVER = 'User::"fran"'
AGENT = "support-bot"
THREAD = "ticket-T-88"
SEED = 20261122

Answerer = Callable[[StoredApproval], ApprovalAnswer | None]
"""Decides a pending request for the demo: an answer to sign, or None to leave it waiting."""


def policy_dir() -> Path:
    """The directory holding the demo's policies, schema, entities and approvers."""
    return Path(str(resources.files("agentfence.demo") / "policies"))


def demo_approver() -> Signer:
    """Fran's DEMO-ONLY signing key, derived from a public seed (see approvers.toml)."""
    seed = hashlib.sha256(b"agentfence demo approver fran: public, never use for real approvals")
    return Signer.from_seed("fran", seed.digest())


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
            content="Refunded EUR 40 and, once finance approved it, EUR 2,500. Deleting "
            "the attachments and forwarding outside were refused."
        ),
    ]


def scripted_answer(pending: StoredApproval) -> ApprovalAnswer:
    """The scripted approver: fran approves every request, as the demo's stand-in."""
    request = pending.request
    return ApprovalAnswer(
        request_id=request.request_id,
        action_digest=request.action_digest,
        approver=APPROVER,
        decision="approve",
        message="approved by the demo's scripted approver",
        answered_us=request.created_us + 1,
    )


def scripted_rejection(pending: StoredApproval) -> ApprovalAnswer:
    """The injection demo's scripted approver: fran rejects the payment to an unknown payee."""
    request = pending.request
    return ApprovalAnswer(
        request_id=request.request_id,
        action_digest=request.action_digest,
        approver=APPROVER,
        decision="reject",
        message="that account is not one of our suppliers",
        answered_us=request.created_us + 1,
    )


@dataclass(frozen=True)
class DemoRun:
    """What a demo run produced: the conversation and the log's records."""

    messages: list[BaseMessage]
    records: list[LogRecord]
    fence: Fence
    log_path: Path
    verifier_key: str
    approvals: list[tuple[StoredApproval, str]]
    blobs: dict[str, bytes]
    scenario: str = "desk"

    @property
    def decisions(self) -> list[DecisionRecord]:
        """The decision records, in log order."""
        return [r for r in self.records if isinstance(r, DecisionRecord)]

    @property
    def answers(self) -> list[ApprovalAnswerRecord]:
        """The approval answers the fence received, in log order."""
        return [r for r in self.records if isinstance(r, ApprovalAnswerRecord)]

    @property
    def outcomes(self) -> list[OutcomeRecord]:
        """The outcome records, in log order."""
        return [r for r in self.records if isinstance(r, OutcomeRecord)]


def run(
    workdir: Path,
    *,
    answerer: Answerer | None = None,
    who: str = "scripted approver",
    policies: Path | None = None,
    telemetry: Telemetry | None = None,
    scenario: str = "desk",
) -> DemoRun:
    """Run a demo agent end to end, writing a signed log in ``workdir``.

    ``scenario`` is one of :data:`SCENARIOS`. ``answerer`` answers approval requests
    (default: the scenario's scripted approver); ``who`` names it in the demo's report;
    ``telemetry`` receives the run's spans.
    """
    from agentfence.demo import injection

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown demo scenario {scenario!r}; choose one of {SCENARIOS}")
    desk = scenario == "desk"
    tools: list[Any] = TOOLS if desk else injection.TOOLS
    replies = script() if desk else injection.script()
    thread = THREAD if desk else injection.THREAD
    system_prompt = (
        "You are the Acme support desk assistant."
        if desk
        else "You are Alice's email and payments assistant at Acme."
    )
    request = (
        "Customer c-102 should get EUR 40 back for the late delivery and EUR 2,500 "
        "for the broken laptop. Tell them, tidy up the ticket attachments and forward "
        "the ticket to the archive."
        if desk
        else injection.PROMPT
    )
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "demo-log.db"
    for stale in workdir.glob("demo-log.db*"):
        stale.unlink()
    # C2SP tlog-checkpoint: the key's name SHOULD be the log's origin (agentfence/demo-log).
    log_key = Signer.generate(parse_url(log_path).default_origin)
    answer = answerer or (scripted_answer if desk else scripted_rejection)
    approver_key = demo_approver()
    handled: list[tuple[StoredApproval, str]] = []
    fence = Fence.from_directory(
        policies or (policy_dir() if desk else injection.policy_dir()),
        tools=tools,
        log=f"sqlite:///{log_path}",
        signing_key=log_key,
        agent=AGENT,
        seed=SEED,
        telemetry=telemetry,
    )

    def on_pending(waiting: list[StoredApproval]) -> None:
        for pending in waiting:
            reply = answer(pending)
            if reply is None:
                continue
            fence.approvals.submit(
                pending.request.request_id,
                sign_answer(reply, approver_key),
                now_us=reply.answered_us,
            )
            handled.append((pending, who))

    agent: Any = create_agent(
        ScriptedChatModel(responses=replies),
        tools,
        system_prompt=system_prompt,
        middleware=[fence.middleware()],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": thread, "agentfence_principal": PRINCIPAL}}
    try:
        result = fence.run(
            agent,
            {"messages": [("user", request)]},
            config,
            timeout=600,
            poll_interval=0.05,
            on_pending=on_pending,
        )
    finally:
        fence.close()
    reader = SignedLog.open(f"sqlite:///{log_path}", signer=log_key)
    records = [record for _, record in reader.read()]
    blobs = {
        r.request_blob: reader.blob(r.request_blob) or b""
        for r in records
        if isinstance(r, DecisionRecord) and r.request_blob
    }
    blobs.update(
        (r.result_blob, reader.blob(r.result_blob) or b"")
        for r in records
        if isinstance(r, OutcomeRecord) and r.result_blob
    )
    reader.close()
    return DemoRun(
        messages=list(result["messages"]),
        records=records,
        fence=fence,
        log_path=log_path,
        verifier_key=log_key.verifier_key,
        approvals=handled,
        blobs=blobs,
        scenario=scenario,
    )
