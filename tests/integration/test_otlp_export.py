"""Spans reach a collector over OTLP/HTTP: a local server decodes what the exporter sends."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from agentfence.policy import CallFacts, Decision, Effect, EntityRef
from agentfence.tracing import Telemetry, configure_from_settings

TIMEOUT_S = 5.0


class Collector(ThreadingHTTPServer):
    """Accepts POST /v1/traces and keeps each decoded ExportTraceServiceRequest."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.received = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def spans(self) -> list[ProtoSpan]:
        return [
            span
            for request in self.requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.paths.append(self.path)
        self.server.requests.append(request)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        self.server.received.set()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    # The exporter reads OTEL_EXPORTER_OTLP_*; keep a developer's own settings out of the test.
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", str(int(TIMEOUT_S)))
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(span: ProtoSpan) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in span.attributes}


def denial() -> Decision:
    facts = CallFacts(
        tool="pay",
        args={"account": "acc-9", "amount": 5000},
        principal=EntityRef("User", "alice"),
        agent="support-bot",
        thread="thread-1",
        step=2,
        tool_call_id="call-7",
        seed=1,
    )
    return Decision(
        effect=Effect.DENY,
        decision_id="dec-7",
        policy_ids=("no-large-payments",),
        reasons=("payments over 1000 need finance",),
        policy_hash="ef" * 32,
        facts=facts,
        request={"resource": {"type": "Account", "id": "acc-9"}},
    )


def test_tool_call_spans_arrive_at_an_otlp_http_collector(collector: Collector) -> None:
    provider = configure_from_settings("otlp", endpoint=collector.endpoint)
    assert provider is not None
    try:
        telemetry = Telemetry(tracer_provider=provider)
        with (
            telemetry.run("support-bot", "thread-1"),
            telemetry.tool_call("pay", "call-7", agent="support-bot", thread="thread-1") as span,
        ):
            span.decided(denial(), 0.0008)
            span.recorded(12, "aa" * 32)
            span.finished("denied", resources=['Account::"acc-9"'])
            ids = span.ids()
        assert provider.force_flush(int(TIMEOUT_S * 1000)), "the exporter did not flush in time"
    finally:
        provider.shutdown()
    assert collector.received.wait(TIMEOUT_S), "the collector received nothing"

    assert set(collector.paths) == {"/v1/traces"}
    spans = {span.name: span for span in collector.spans()}
    assert set(spans) == {"invoke_agent support-bot", "execute_tool pay", "agentfence.decide"}
    run, tool, decide = (
        spans["invoke_agent support-bot"],
        spans["execute_tool pay"],
        spans["agentfence.decide"],
    )
    assert tool.kind == ProtoSpan.SPAN_KIND_INTERNAL
    assert tool.parent_span_id == run.span_id
    assert decide.parent_span_id == tool.span_id
    assert ids == (tool.trace_id.hex(), tool.span_id.hex())

    tool_attributes = attributes(tool)
    assert tool_attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool_attributes["gen_ai.tool.name"] == "pay"
    assert tool_attributes["gen_ai.tool.call.id"] == "call-7"
    assert tool_attributes["agentfence.decision.effect"] == "DENY"
    assert tool_attributes["agentfence.decision.policy_ids"] == ["no-large-payments"]
    assert tool_attributes["agentfence.log.seq"] == 12
    assert tool_attributes["agentfence.log.leaf_hash"] == "aa" * 32
    assert tool_attributes["agentfence.data.resources"] == ['Account::"acc-9"']
    assert tool_attributes["error.type"] == "agentfence.denied"
    assert tool.status.code == tool.status.STATUS_CODE_ERROR
    decide_attributes = attributes(decide)
    assert decide_attributes["agentfence.decision.reasons"] == ["payments over 1000 need finance"]
    assert decide_attributes["agentfence.policy.hash"] == "ef" * 32
    assert decide.end_time_unix_nano - decide.start_time_unix_nano == 800_000
