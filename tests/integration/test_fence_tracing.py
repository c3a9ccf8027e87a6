"""The fence's spans in a real agent run: the tree, the links to the log, and failing open."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.tools import BaseTool
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentfence import Fence, MemoryLog
from agentfence.records import DecisionRecord
from agentfence.testing import tool_call
from agentfence.tracing import Telemetry
from tests.conftest import Ran, signed
from tests.graphs import agent_for, batch, config
from tests.integration.test_approvals import Clock

CALLS = [
    tool_call("read_record", {"record_id": "r1"}, "read"),
    tool_call("wipe", {"path": "/"}, "wipe"),
    tool_call("pay", {"account": "acc-1", "amount": 500.0, "memo": "private-memo-text"}, "pay"),
]


def traced_run(
    make_fence: Callable[..., Fence], tools: list[BaseTool], exporter: SpanExporter
) -> tuple[Fence, MemoryLog, Any]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    clock = Clock()
    log = MemoryLog()
    fence = make_fence(log=log, clock=clock, telemetry=Telemetry(tracer_provider=provider))
    agent = agent_for(fence, tools, batch(*CALLS))

    def approve(waiting: list[Any]) -> None:
        for item in waiting:
            fence.approvals.submit(item.request.request_id, signed(item.request), now_us=clock.now)

    out = fence.run(
        agent, {"messages": [("user", "go")]}, config("traced"), on_pending=approve, poll_interval=0
    )
    return fence, log, out


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def test_span_tree_and_links_to_the_log(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    exporter = InMemorySpanExporter()
    _, log, _ = traced_run(make_fence, tools, exporter)
    spans = exporter.get_finished_spans()
    [run] = by_name(spans, "invoke_agent")
    assert run.attributes["gen_ai.conversation.id"] == "traced"  # type: ignore[index]
    steps = by_name(spans, "agentfence.step")
    assert steps and all(s.parent and s.parent.span_id == run.context.span_id for s in steps)
    tools_spans = by_name(spans, "execute_tool")
    step_ids = {s.context.span_id for s in steps}
    assert all(s.parent and s.parent.span_id in step_ids for s in tools_spans)
    # Each call's decision is a child span of its tool span.
    for decide in by_name(spans, "agentfence.decide"):
        assert decide.parent and decide.parent.span_id in {s.context.span_id for s in tools_spans}

    # The denied call's span is an error with the agentfence.denied error type.
    [wipe] = [s for s in tools_spans if s.attributes["gen_ai.tool.call.id"] == "wipe"]  # type: ignore[index]
    assert wipe.status.status_code is StatusCode.ERROR
    assert wipe.attributes["error.type"] == "agentfence.denied"  # type: ignore[index]

    # The log entry names its span, and the span names its log entry.
    for record in log.decisions():
        assert isinstance(record, DecisionRecord) and record.trace_id and record.span_id
        span = next(s for s in tools_spans if format(s.context.span_id, "016x") == record.span_id)
        assert format(span.context.trace_id, "032x") == record.trace_id
        seq = next(i for i, r in enumerate(log.records) if r == record)
        assert span.attributes["agentfence.log.seq"] == seq  # type: ignore[index]
        assert span.attributes["agentfence.decision.id"] == record.decision_id  # type: ignore[index]

    # Approval: requested on the pass that paused, answered on the pass that resumed.
    events = [e.name for s in tools_spans for e in s.events]
    assert any("approval.requested" in e for e in events)
    assert any("approval.answered" in e for e in events)

    # What the call touched (its resource's uid) is on its span; other argument values are
    # not, by default.
    [read] = [
        s
        for s in tools_spans
        if s.attributes["gen_ai.tool.call.id"] == "read"  # type: ignore[index]
        and s.status.status_code is not StatusCode.ERROR
    ]
    assert read.attributes["agentfence.data.resources"] == ('Record::"r1"',)  # type: ignore[index]
    assert all(
        "private-memo-text" not in str(v) for s in spans for v in (s.attributes or {}).values()
    )


class Exploding(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        raise RuntimeError("collector down")

    def shutdown(self) -> None:
        return None


def test_an_exporter_that_raises_never_blocks_a_call(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    _, log, out = traced_run(make_fence, tools, Exploding())
    assert sorted(ran.names()) == ["pay", "read_record"]
    assert len(log.decisions()) == 3
    assert out["messages"][-1].content == "done"
