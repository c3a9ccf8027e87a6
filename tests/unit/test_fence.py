"""The fence's own pipeline, below a graph: one reading of a request, one rule for its thread,
and holds driven through their collaborators alone.

The integration tests run the same code inside real graphs; these pin the pieces a graph
cannot easily reach (a thread named only in the run's metadata, a malformed config, a hold
whose answer arrives early or twice).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt.tool_node import ToolCallRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfence import DecisionRecord, Fence, MemoryLog
from agentfence._holds import Holds
from agentfence.approvals import EXPIRED_FORMAT, ApprovalStore, ApproverRegistry, request_for
from agentfence.langgraph import describe
from agentfence.policy import Effect, PolicyEngine
from agentfence.records import ApprovalAnswerRecord, ApprovalRequestRecord, Blob, LogRecord
from agentfence.tools import ToolCatalog
from agentfence.tracing import Telemetry

POLICIES = """
@id("lookups")
permit (principal, action == Action::"lookup", resource);

@id("refunds-need-approval")
@require_approval("support-leads")
permit (principal, action == Action::"refund", resource);
"""


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


@tool
def refund(amount: float) -> str:
    """Refund an amount."""
    return f"refunded {amount}"


TOOLS: list[BaseTool] = [lookup, refund]


def request(
    name: str, args: dict[str, Any], config: Any, call_id: str | None = "c-1"
) -> ToolCallRequest:
    """A ToolNode request outside a graph, with the run config a graph would give."""
    tool_by_name = {t.name: t for t in TOOLS}
    return ToolCallRequest(
        tool_call={"name": name, "args": args, "id": call_id, "type": "tool_call"},
        tool=tool_by_name.get(name),
        state={"messages": []},
        runtime=types.SimpleNamespace(config=config),  # type: ignore[arg-type]
    )


def ran(req: ToolCallRequest) -> ToolMessage:
    call = req.tool_call
    return ToolMessage(content="ran", name=call["name"], tool_call_id=call["id"] or "")


@pytest.fixture
def engine(tmp_path: Any) -> PolicyEngine:
    (tmp_path / "p.cedar").write_text(POLICIES)
    (tmp_path / "entities.json").write_text(
        '[{"uid": {"type": "Group", "id": "support-leads"}, "attrs": {}, "parents": []}]'
    )
    return PolicyEngine.load(tmp_path, ToolCatalog.from_tools(TOOLS))


# --- describe: one reading of a request ---------------------------------------------------


def test_describe_reads_every_part_of_a_request_once() -> None:
    config = {
        "configurable": {
            "thread_id": "t-1",
            "agentfence_principal": 'User::"alice"',
            "agentfence_agent": "desk",
            "agentfence_seed": 7,
            "agentfence_on_hold": "deny",
        },
        "metadata": {"langgraph_step": 3, "thread_id": "other"},
    }
    call = describe(request("lookup", {"key": "k"}, config))
    assert (call.tool, call.args, call.call_id) == ("lookup", {"key": "k"}, "c-1")
    assert (call.thread, call.step, call.principal) == ("t-1", 3, 'User::"alice"')
    assert (call.agent, call.seed, call.on_hold) == ("desk", 7, "deny")


@pytest.mark.parametrize(
    "config",
    [None, {}, {"configurable": None, "metadata": None}, {"metadata": {"langgraph_step": "x"}}],
)
def test_describe_never_raises_on_a_malformed_config(config: Any) -> None:
    call = describe(request("lookup", {"key": "k"}, config, call_id=None))
    assert (call.thread, call.step, call.principal, call.call_id) == ("", 0, None, None)


def test_a_thread_named_only_in_metadata_is_one_thread_for_the_facts_the_span_and_a_failure(
    engine: PolicyEngine,
) -> None:
    """Attack: a span and a record that disagree about the thread hide one from the other
    (an auditor following a trace finds no decisions). One rule reads it for every use."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    log = MemoryLog()
    fence = Fence(engine, log=log, telemetry=Telemetry(tracer_provider=provider))
    config = {
        "configurable": {"agentfence_principal": 'User::"alice"'},
        "metadata": {"thread_id": "t-meta", "langgraph_step": 2},
    }
    fence.wrap_tool_call(request("lookup", {"key": "k"}, config), ran)
    # A principal that does not parse fails closed; its refusal is recorded in the same thread.
    bad = {**config, "configurable": {"agentfence_principal": 42}}
    refused = fence.wrap_tool_call(request("lookup", {"key": "k"}, bad, call_id="c-2"), ran)
    assert isinstance(refused, ToolMessage) and refused.status == "error"

    decisions = [r for r in log.records if isinstance(r, DecisionRecord)]
    assert [(d.thread, d.step, d.effect) for d in decisions] == [
        ("t-meta", 2, "ALLOW"),
        ("t-meta", 2, "DENY"),
    ]
    tool_spans = [s for s in exporter.get_finished_spans() if s.name.startswith("execute_tool")]
    assert [s.attributes.get("gen_ai.conversation.id") for s in tool_spans] == [  # type: ignore[union-attr]
        "t-meta",
        "t-meta",
    ]
    # The tool's own description rides on the span (gen_ai.tool.description).
    assert {s.attributes.get("gen_ai.tool.description") for s in tool_spans} == {"Look a key up."}  # type: ignore[union-attr]


# --- holds, through their collaborators ---------------------------------------------------


class Parts:
    """The collaborators a Holds is given, recording what it does with them."""

    def __init__(self, engine: PolicyEngine, *, now: int = 1_000_000_000) -> None:
        self.engine = engine
        self.now = now
        self.appended: list[LogRecord] = []
        self.released: list[str] = []
        self.store = ApprovalStore()

    def holds(self, on_hold: str = "interrupt") -> Holds:
        return Holds(
            approvals=self.store,
            policy=lambda: (self.engine, ApproverRegistry([])),
            append=self.append,
            record_decision=lambda decision, span: self.appended.append(decision),  # type: ignore[arg-type]
            find_outcome=lambda decision_id: None,
            release=self.released.append,
            clock=lambda: self.now,
            telemetry=Telemetry(),
            agent="desk",
            expiry_seconds=60,
            on_hold=on_hold,
        )

    def append(self, record: LogRecord, blobs: Sequence[Blob]) -> None:
        self.appended.append(record)


@pytest.fixture
def parts(engine: PolicyEngine) -> Iterator[Parts]:
    found = Parts(engine)
    yield found
    found.store.close()


def held(fence: Fence, config: Any) -> tuple[Any, Any, Any]:
    """A refund call, described and decided as the fence would (held for approval)."""
    call = describe(request("refund", {"amount": 40.0}, config))
    facts = fence._facts_from_call(call)
    decision = fence.engine.decide(facts)
    assert decision.effect is Effect.REQUIRE_APPROVAL
    return call, facts, decision


CONFIG = {"configurable": {"thread_id": "t-h", "agentfence_principal": 'User::"alice"'}}


def test_an_unattended_run_refuses_a_held_call_and_records_why_without_asking(
    engine: PolicyEngine, parts: Parts
) -> None:
    fence = Fence(engine)
    call, facts, decision = held(fence, CONFIG)
    telemetry = Telemetry()
    with telemetry.tool_call("refund", "c-1", agent="desk", thread="t-h", config={}) as span:
        result = parts.holds(on_hold="deny").hold(call, facts, decision, span)
    assert isinstance(result, ToolMessage) and result.status == "error"
    assert "this run takes no approvals" in str(result.content)
    request_record, answer = parts.appended
    assert isinstance(request_record, ApprovalRequestRecord)
    assert request_record.expires_us == request_record.created_us  # nobody may answer it
    assert isinstance(answer, ApprovalAnswerRecord)
    assert (answer.verdict, answer.answer, answer.approver) == ("unattended", "none", None)
    assert parts.released == [decision.decision_id]  # a held call counts only once it runs
    assert parts.store.get(request_record.request_id) is None  # no approver is asked


def expiry_marker_delivered(engine: PolicyEngine, parts: Parts, *, after_us: int) -> Any:
    """File a held refund's request, let ``after_us`` pass, and resolve the expiry marker."""
    call, facts, decision = held(Fence(engine), CONFIG)
    stored = parts.store.create(request_for(decision, now_us=parts.now, default_expiry=60))
    parts.now += after_us
    with Telemetry().tool_call("refund", "c-1", agent="desk", thread="t-h", config={}) as span:
        result = parts.holds()._resolve(
            call, facts, decision, stored, {"format": EXPIRED_FORMAT}, span
        )
    [answer] = parts.appended
    assert isinstance(answer, ApprovalAnswerRecord)
    status = parts.store.get(stored.request_id).status(parts.now)  # type: ignore[union-attr]
    return result, answer.verdict, status


def test_an_expired_marker_delivered_before_the_request_expires_is_refused(
    engine: PolicyEngine, parts: Parts
) -> None:
    """Attack: resume a thread with the expiry marker early, to end a request an approver
    is about to reject (or to have the call counted as answered). It is refused as a
    malformed answer; the call does not run."""
    result, verdict, status = expiry_marker_delivered(engine, parts, after_us=0)
    assert isinstance(result, ToolMessage) and result.status == "error"
    assert "was refused" in str(result.content)
    assert (verdict, status) == ("refused", "pending")


def test_an_expired_request_is_refused_as_expired_and_marked_so(
    engine: PolicyEngine, parts: Parts
) -> None:
    result, verdict, status = expiry_marker_delivered(engine, parts, after_us=61_000_000)
    assert isinstance(result, ToolMessage) and "no approver answered" in str(result.content)
    assert (verdict, status) == ("expired", "expired")


def test_resume_value_waits_while_every_request_is_pending(
    engine: PolicyEngine, parts: Parts
) -> None:
    fence = Fence(engine)
    _, _, decision = held(fence, CONFIG)
    stored = parts.store.create(request_for(decision, now_us=parts.now, default_expiry=60))
    holds = parts.holds()
    waiting = [parts.store.get(stored.request_id)]
    assert holds.resume_value(waiting) is None  # type: ignore[arg-type]
    parts.now += 61_000_000
    bundle = holds.resume_value([parts.store.get(stored.request_id)])  # type: ignore[list-item]
    assert bundle is not None and stored.request_id in str(bundle)
