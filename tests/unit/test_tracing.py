"""Telemetry: span names and nesting, decision attributes, privacy, metrics, failing open."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.errors import GraphInterrupt
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentfence._semconv import (
    ATTR_APPROVAL_APPROVER,
    ATTR_APPROVAL_APPROVERS,
    ATTR_APPROVAL_OUTCOME,
    ATTR_APPROVAL_REQUEST_ID,
    ATTR_ARGS_DIGEST,
    ATTR_DATA_LABELS,
    ATTR_DATA_RESOURCES,
    ATTR_DECISION_EFFECT,
    ATTR_DECISION_ID,
    ATTR_DECISION_POLICY_IDS,
    ATTR_DECISION_REASONS,
    ATTR_ERROR_TYPE,
    ATTR_GEN_AI_AGENT_NAME,
    ATTR_GEN_AI_CONVERSATION_ID,
    ATTR_GEN_AI_OPERATION_NAME,
    ATTR_GEN_AI_PROVIDER_NAME,
    ATTR_GEN_AI_TOOL_CALL_ARGUMENTS,
    ATTR_GEN_AI_TOOL_CALL_ID,
    ATTR_GEN_AI_TOOL_CALL_RESULT,
    ATTR_GEN_AI_TOOL_NAME,
    ATTR_GEN_AI_TOOL_TYPE,
    ATTR_INTERRUPTED,
    ATTR_LOG_LEAF_HASH,
    ATTR_LOG_SEQ,
    ATTR_OUTCOME,
    ATTR_POLICY_HASH,
    ATTR_RESOURCE,
    ATTR_RESULT_DIGEST,
    ATTR_STEP_INDEX,
    ATTR_STEP_NODE,
    ERROR_APPROVAL_REQUIRED,
    ERROR_DENIED,
    EVENT_APPROVAL_ANSWERED,
    EVENT_APPROVAL_EXPIRED,
    EVENT_APPROVAL_REQUESTED,
    METRIC_APPROVAL_WAIT_DURATION,
    METRIC_APPROVALS_ANSWERED,
    METRIC_APPROVALS_EXPIRED,
    METRIC_APPROVALS_REQUESTED,
    METRIC_DECISION_DURATION,
    METRIC_DECISIONS,
    METRIC_LOG_APPEND_DURATION,
)
from agentfence.errors import ConfigurationError
from agentfence.langgraph import describe
from agentfence.policy import CallFacts, Decision, Effect, EntityRef
from agentfence.testing import ScriptedChatModel, tool_call
from agentfence.tracing import (
    Telemetry,
    TelemetrySettings,
    configure_from_settings,
    error_type_of,
    telemetry_settings_from_env,
)

POLICY_HASH = "ab" * 32
LEAF = "cd" * 32
# Argument and result values that must never reach a span unless content capture is on.
SECRET_MEMO = "SECRET-MEMO-7f3a"
SECRET_AMOUNT = 4242.42
SECRET_RESULT = "SECRET-RESULT-91bc"


@dataclass
class Sdk:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def one(self, name: str) -> ReadableSpan:
        found = [s for s in self.finished() if s.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in found]}"
        return found[0]

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        found: list[Any] = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


def make_sdk(*, capture_content: bool = False) -> Sdk:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        capture_content=capture_content,
    )
    return Sdk(telemetry, exporter, reader)


@pytest.fixture
def sdk() -> Sdk:
    return make_sdk()


def decision(
    effect: Effect = Effect.ALLOW,
    *,
    policy_ids: Sequence[str] = ("small-payments",),
    reasons: Sequence[str] = ("payments under 100 are allowed",),
    tool_name: str = "pay",
) -> Decision:
    args = {"account": "acc-9", "amount": SECRET_AMOUNT, "memo": SECRET_MEMO}
    facts = CallFacts(
        tool=tool_name,
        args=args,
        principal=EntityRef("User", "alice"),
        agent="support-bot",
        thread="thread-1",
        step=2,
        tool_call_id="call-1",
        seed=7,
    )
    return Decision(
        effect=effect,
        decision_id="dec-123",
        policy_ids=tuple(policy_ids),
        reasons=tuple(reasons),
        policy_hash=POLICY_HASH,
        facts=facts,
        request={
            "principal": {"type": "User", "id": "alice"},
            "action": {"type": "Action", "id": tool_name},
            "resource": {"type": "Account", "id": "acc-9"},
            "context": {"args": args},
        },
    )


def allowed_call(telemetry: Telemetry, **finish: Any) -> tuple[str, str] | None:
    with telemetry.tool_call("pay", "call-1", agent="support-bot", thread="thread-1") as span:
        span.decided(decision(), 0.0025)
        span.recorded(41, LEAF)
        span.digested(args="11" * 32, result="22" * 32)
        span.finished("success", resources=['Account::"acc-9"'], labels=["pii"], **finish)
        return span.ids()


# --- names, attributes, structure -----------------------------------------------------------


def test_allowed_call_is_an_execute_tool_span_with_genai_and_decision_attributes(
    sdk: Sdk,
) -> None:
    allowed_call(sdk.telemetry)

    span = sdk.one("execute_tool pay")
    assert span.kind is SpanKind.INTERNAL
    attributes = dict(span.attributes or {})
    assert attributes[ATTR_GEN_AI_OPERATION_NAME] == "execute_tool"
    assert attributes[ATTR_GEN_AI_TOOL_NAME] == "pay"
    assert attributes[ATTR_GEN_AI_TOOL_CALL_ID] == "call-1"
    assert attributes[ATTR_GEN_AI_TOOL_TYPE] == "function"
    assert attributes[ATTR_GEN_AI_AGENT_NAME] == "support-bot"
    assert attributes[ATTR_GEN_AI_CONVERSATION_ID] == "thread-1"
    assert attributes[ATTR_DECISION_EFFECT] == "ALLOW"
    assert attributes[ATTR_DECISION_ID] == "dec-123"
    assert attributes[ATTR_DECISION_POLICY_IDS] == ("small-payments",)
    assert attributes[ATTR_POLICY_HASH] == POLICY_HASH
    assert attributes[ATTR_RESOURCE] == 'Account::"acc-9"'
    assert attributes[ATTR_LOG_SEQ] == 41
    assert attributes[ATTR_LOG_LEAF_HASH] == LEAF
    assert attributes[ATTR_ARGS_DIGEST] == "11" * 32
    assert attributes[ATTR_RESULT_DIGEST] == "22" * 32
    assert attributes[ATTR_DATA_RESOURCES] == ('Account::"acc-9"',)
    assert attributes[ATTR_DATA_LABELS] == ("pii",)
    assert attributes[ATTR_OUTCOME] == "success"
    assert ATTR_ERROR_TYPE not in attributes
    # Success leaves the status unset: the conventions reserve OK for the application.
    assert span.status.status_code is StatusCode.UNSET


def test_decision_is_a_child_span_lasting_as_long_as_deciding_took(sdk: Sdk) -> None:
    allowed_call(sdk.telemetry)

    tool_span = sdk.one("execute_tool pay")
    decide = sdk.one("agentfence.decide")
    assert decide.parent is not None
    assert decide.parent.span_id == tool_span.context.span_id
    assert decide.context.trace_id == tool_span.context.trace_id
    assert decide.end_time is not None and decide.start_time is not None
    assert decide.end_time - decide.start_time == 2_500_000
    attributes = dict(decide.attributes or {})
    assert attributes[ATTR_DECISION_EFFECT] == "ALLOW"
    assert attributes[ATTR_DECISION_POLICY_IDS] == ("small-payments",)
    assert attributes[ATTR_DECISION_REASONS] == ("payments under 100 are allowed",)
    assert attributes[ATTR_POLICY_HASH] == POLICY_HASH
    assert attributes[ATTR_DECISION_ID] == "dec-123"


def test_denied_call_has_error_status_and_the_denied_error_type(sdk: Sdk) -> None:
    denial = decision(Effect.DENY, policy_ids=("no-wipe",), reasons=("wiping is forbidden",))
    with sdk.telemetry.tool_call("wipe", "call-2", agent="bot", thread="t") as span:
        span.decided(denial, 0.001)
        span.finished("denied")

    tool_span = sdk.one("execute_tool wipe")
    assert tool_span.status.status_code is StatusCode.ERROR
    attributes = dict(tool_span.attributes or {})
    assert attributes[ATTR_ERROR_TYPE] == ERROR_DENIED == "agentfence.denied"
    assert attributes[ATTR_OUTCOME] == "denied"
    assert attributes[ATTR_DECISION_EFFECT] == "DENY"
    decide = dict(sdk.one("agentfence.decide").attributes or {})
    assert decide[ATTR_DECISION_REASONS] == ("wiping is forbidden",)
    assert decide[ATTR_DECISION_POLICY_IDS] == ("no-wipe",)


def test_a_hold_for_approval_can_name_its_own_error_type(sdk: Sdk) -> None:
    with sdk.telemetry.tool_call("pay", "c", agent="bot", thread="t") as span:
        span.decided(decision(Effect.REQUIRE_APPROVAL), 0.001)
        span.finished("denied", error_type=ERROR_APPROVAL_REQUIRED)

    attributes = dict(sdk.one("execute_tool pay").attributes or {})
    assert attributes[ATTR_ERROR_TYPE] == "agentfence.approval_required"
    assert attributes[ATTR_DECISION_EFFECT] == "REQUIRE_APPROVAL"


class PaymentGatewayDown(Exception):
    pass


def test_a_tool_exception_propagates_and_marks_the_span_with_its_class_name(sdk: Sdk) -> None:
    with (
        pytest.raises(PaymentGatewayDown, match=r"gateway said no to 4242\.42"),
        sdk.telemetry.tool_call("pay", "c", agent="bot", thread="t") as span,
    ):
        span.decided(decision(), 0.001)
        raise PaymentGatewayDown(f"gateway said no to {SECRET_AMOUNT}")

    tool_span = sdk.one("execute_tool pay")
    assert tool_span.status.status_code is StatusCode.ERROR
    assert dict(tool_span.attributes or {})[ATTR_ERROR_TYPE] == (f"{__name__}.PaymentGatewayDown")
    # The message may quote arguments: it is not recorded (no exception event, no status text).
    assert tool_span.events == ()
    assert str(SECRET_AMOUNT) not in (tool_span.status.description or "")


def test_error_type_of_is_the_class_name_qualified_unless_builtin() -> None:
    assert error_type_of(ValueError("x")) == "ValueError"
    assert error_type_of(PaymentGatewayDown()) == f"{__name__}.PaymentGatewayDown"


def test_an_interrupt_propagates_and_is_not_an_error(sdk: Sdk) -> None:
    with (
        pytest.raises(GraphInterrupt),
        sdk.telemetry.tool_call("pay", "c", agent="bot", thread="t") as span,
    ):
        span.decided(decision(Effect.REQUIRE_APPROVAL), 0.001)
        raise GraphInterrupt(())

    tool_span = sdk.one("execute_tool pay")
    assert tool_span.status.status_code is StatusCode.UNSET
    assert dict(tool_span.attributes or {})[ATTR_INTERRUPTED] is True


def test_ids_are_the_tool_spans_w3c_trace_and_span_ids(sdk: Sdk) -> None:
    ids = allowed_call(sdk.telemetry)

    span = sdk.one("execute_tool pay")
    assert ids == (format(span.context.trace_id, "032x"), format(span.context.span_id, "016x"))
    assert ids is not None and len(ids[0]) == 32 and len(ids[1]) == 16
    assert int(ids[0], 16) == span.context.trace_id


def test_ids_are_none_without_a_configured_sdk() -> None:
    telemetry = Telemetry(tracer_provider=trace.NoOpTracerProvider())
    assert allowed_call(telemetry) is None
    with telemetry.run("bot", "t") as run:
        assert run.ids() is None


def test_tool_span_is_current_inside_the_with_block_and_restored_after(sdk: Sdk) -> None:
    before = trace.get_current_span()
    with sdk.telemetry.tool_call("pay", "c", agent="bot", thread="t") as span:
        current = trace.get_current_span().get_span_context()
        assert span.ids() == (format(current.trace_id, "032x"), format(current.span_id, "016x"))
    assert trace.get_current_span() is before


def test_run_span_is_invoke_agent_and_parents_tool_calls(sdk: Sdk) -> None:
    with sdk.telemetry.run("support-bot", "thread-1", provider="openai") as run:
        allowed_call(sdk.telemetry)
        run_ids = run.ids()

    run_span = sdk.one("invoke_agent support-bot")
    assert run_span.parent is None
    assert run_span.kind is SpanKind.INTERNAL
    attributes = dict(run_span.attributes or {})
    assert attributes[ATTR_GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert attributes[ATTR_GEN_AI_AGENT_NAME] == "support-bot"
    assert attributes[ATTR_GEN_AI_CONVERSATION_ID] == "thread-1"
    assert attributes[ATTR_GEN_AI_PROVIDER_NAME] == "openai"
    assert run_ids == (
        format(run_span.context.trace_id, "032x"),
        format(run_span.context.span_id, "016x"),
    )
    tool_span = sdk.one("execute_tool pay")
    assert tool_span.parent is not None
    assert tool_span.parent.span_id == run_span.context.span_id


def test_run_span_records_an_escaping_exception_and_lets_it_through(sdk: Sdk) -> None:
    with pytest.raises(RuntimeError, match="model exploded"), sdk.telemetry.run("bot", "t"):
        raise RuntimeError("model exploded")
    run_span = sdk.one("invoke_agent bot")
    assert run_span.status.status_code is StatusCode.ERROR
    assert dict(run_span.attributes or {})[ATTR_ERROR_TYPE] == "RuntimeError"


# --- steps: the callback handler ------------------------------------------------------------


@dataclass
class FakeCallbackManager:
    """What LangChain puts in ``config["callbacks"]`` inside a node: the node's run id."""

    parent_run_id: UUID


def step_metadata(node: str, step: int, ns: str) -> dict[str, Any]:
    return {
        "langgraph_node": node,
        "langgraph_step": step,
        "langgraph_checkpoint_ns": ns,
        "thread_id": "thread-1",
    }


def test_run_step_tool_and_decide_spans_nest(sdk: Sdk) -> None:
    handler = sdk.telemetry.callback_handler()
    graph, node, inner = uuid4(), uuid4(), uuid4()
    with sdk.telemetry.run("support-bot", "thread-1"):
        handler.on_chain_start({}, {}, run_id=graph, metadata={})
        handler.on_chain_start(
            {}, {}, run_id=node, parent_run_id=graph, metadata=step_metadata("tools", 2, "t:1")
        )
        # A runnable inside the node inherits its metadata: it is not a new step.
        handler.on_chain_start(
            {}, {}, run_id=inner, parent_run_id=node, metadata=step_metadata("tools", 2, "t:1")
        )
        config = {"callbacks": FakeCallbackManager(parent_run_id=inner)}
        with sdk.telemetry.tool_call(
            "pay", "call-1", agent="support-bot", thread="thread-1", config=config
        ) as span:
            span.decided(decision(), 0.001)
            span.finished("success")
        handler.on_chain_end({}, run_id=inner, parent_run_id=node)
        handler.on_chain_end({}, run_id=node, parent_run_id=graph)
        handler.on_chain_end({}, run_id=graph)

    run_span = sdk.one("invoke_agent support-bot")
    step = sdk.one("agentfence.step tools")
    tool_span = sdk.one("execute_tool pay")
    decide = sdk.one("agentfence.decide")
    assert [s.name for s in sdk.finished() if s.name.startswith("agentfence.step")] == [
        "agentfence.step tools"
    ]
    assert step.parent is not None and step.parent.span_id == run_span.context.span_id
    assert tool_span.parent is not None and tool_span.parent.span_id == step.context.span_id
    assert decide.parent is not None and decide.parent.span_id == tool_span.context.span_id
    assert dict(step.attributes or {}) == {
        ATTR_STEP_NODE: "tools",
        ATTR_STEP_INDEX: 2,
        ATTR_GEN_AI_CONVERSATION_ID: "thread-1",
    }
    assert len(sdk.telemetry._steps) == 0, "every finished run must be forgotten"


def test_step_error_sets_error_status_but_an_interrupt_does_not(sdk: Sdk) -> None:
    handler = sdk.telemetry.callback_handler()
    failing, interrupted = uuid4(), uuid4()
    handler.on_chain_start({}, {}, run_id=failing, metadata=step_metadata("model", 1, "m:1"))
    handler.on_chain_error(KeyError("k"), run_id=failing)
    handler.on_chain_start({}, {}, run_id=interrupted, metadata=step_metadata("tools", 2, "t:2"))
    handler.on_chain_error(GraphInterrupt(()), run_id=interrupted)

    model = sdk.one("agentfence.step model")
    assert model.status.status_code is StatusCode.ERROR
    assert dict(model.attributes or {})[ATTR_ERROR_TYPE] == "KeyError"
    tools = sdk.one("agentfence.step tools")
    assert tools.status.status_code is StatusCode.UNSET
    assert dict(tools.attributes or {})[ATTR_INTERRUPTED] is True


def test_step_handler_tolerates_missing_and_odd_metadata(sdk: Sdk) -> None:
    handler = sdk.telemetry.callback_handler()
    a, b, c = uuid4(), uuid4(), uuid4()
    handler.on_chain_start(None, None, run_id=a, metadata=None)
    handler.on_chain_start({}, {}, run_id=b, parent_run_id=uuid4(), metadata={"langgraph_node": 3})
    handler.on_chain_start(
        {}, {}, run_id=c, metadata={"langgraph_node": "n", "langgraph_step": "x"}
    )
    handler.on_chain_end({}, run_id=uuid4())  # never started
    handler.on_chain_error(ValueError(), run_id=uuid4())
    for run_id in (a, b, c):
        handler.on_chain_end({}, run_id=run_id)

    assert [s.name for s in sdk.finished()] == ["agentfence.step n"]
    assert ATTR_STEP_INDEX not in dict(sdk.one("agentfence.step n").attributes or {})
    # A config that leads to no traced step parents the tool span on the current span.
    with sdk.telemetry.tool_call(
        "pay", "c", agent=None, thread=None, config={"callbacks": FakeCallbackManager(uuid4())}
    ):
        pass
    assert sdk.one("execute_tool pay").parent is None
    assert len(sdk.telemetry._steps) == 0


# --- a real create_agent graph, as the fence will wire it ------------------------------------


class TracedMiddleware(AgentMiddleware):
    """What the fence does around each call: a tool span parented on the step via config."""

    def __init__(self, telemetry: Telemetry) -> None:
        super().__init__()
        self.telemetry = telemetry

    def wrap_tool_call(self, request: Any, handler: Any) -> Any:
        call = describe(request)
        with self.telemetry.tool_call(
            call.tool, call.call_id, agent="bot", thread="t-1", config=call.config
        ) as span:
            span.decided(decision(tool_name=call.tool), 0.0005)
            result = handler(request)
            span.finished("success")
            return result

    async def awrap_tool_call(self, request: Any, handler: Any) -> Any:
        call = describe(request)
        with self.telemetry.tool_call(
            call.tool, call.call_id, agent="bot", thread="t-1", config=call.config
        ) as span:
            span.decided(decision(tool_name=call.tool), 0.0005)
            result = await handler(request)
            span.finished("success")
            return result


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def traced_agent(telemetry: Telemetry) -> Any:
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    tool_call("add", {"a": 1, "b": 2}, "c1"),
                    tool_call("add", {"a": 3, "b": 4}, "c2"),
                ],
            ),
            AIMessage(content="done"),
        ]
    )
    return create_agent(model, [add], middleware=[TracedMiddleware(telemetry)])


def assert_graph_tree(sdk: Sdk) -> None:
    run_span = sdk.one("invoke_agent bot")
    spans = sdk.finished()
    steps = {s.context.span_id: s for s in spans if s.name.startswith("agentfence.step ")}
    assert sorted(s.name for s in steps.values()) == [
        "agentfence.step model",
        "agentfence.step model",
        "agentfence.step tools",
        "agentfence.step tools",
    ]
    for step in steps.values():
        assert step.parent is not None and step.parent.span_id == run_span.context.span_id
    calls = [s for s in spans if s.name == "execute_tool add"]
    assert sorted(dict(s.attributes or {})[ATTR_GEN_AI_TOOL_CALL_ID] for s in calls) == [
        "c1",
        "c2",
    ]
    parents = set()
    for call in calls:
        assert call.parent is not None
        assert steps[call.parent.span_id].name == "agentfence.step tools"
        parents.add(call.parent.span_id)
    assert len(parents) == 2, "each Send-ed tool call runs in its own tools step"
    for decide in (s for s in spans if s.name == "agentfence.decide"):
        assert decide.parent is not None
        assert decide.parent.span_id in {c.context.span_id for c in calls}
    assert len(sdk.telemetry._steps) == 0


def test_real_graph_nests_steps_under_the_run_and_tool_calls_under_their_step(sdk: Sdk) -> None:
    agent = traced_agent(sdk.telemetry)
    with sdk.telemetry.run("bot", "t-1"):
        result = agent.invoke(
            {"messages": [("user", "add")]}, {"callbacks": [sdk.telemetry.callback_handler()]}
        )
    assert [m.content for m in result["messages"] if isinstance(m, ToolMessage)] == ["3", "7"]
    assert_graph_tree(sdk)
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_real_graph_async_nests_the_same_and_leaks_no_context(sdk: Sdk) -> None:
    agent = traced_agent(sdk.telemetry)

    async def main() -> None:
        with sdk.telemetry.run("bot", "t-1"):
            await agent.ainvoke(
                {"messages": [("user", "add")]}, {"callbacks": [sdk.telemetry.callback_handler()]}
            )
        # LangChain ends async chains in another context than it starts them in: a handler
        # that attached a context at the start would leave it current here.
        assert trace.get_current_span() is trace.INVALID_SPAN

    asyncio.run(main())
    assert_graph_tree(sdk)


# --- privacy --------------------------------------------------------------------------------


def every_attribute_value(spans: Sequence[ReadableSpan]) -> Iterator[str]:
    for span in spans:
        for value in dict(span.attributes or {}).values():
            yield json.dumps(value) if not isinstance(value, str) else value
        for event in span.events:
            for value in dict(event.attributes or {}).values():
                yield json.dumps(value) if not isinstance(value, str) else value
        yield span.name
        yield span.status.description or ""


def content_call(telemetry: Telemetry) -> None:
    with telemetry.tool_call("pay", "call-1", agent="bot", thread="t") as span:
        span.decided(decision(), 0.001)
        span.content(
            {"account": "acc-9", "amount": SECRET_AMOUNT, "memo": SECRET_MEMO}, SECRET_RESULT
        )
        span.finished("success", resources=['Account::"acc-9"'], labels=["pii"])


def test_argument_and_result_values_stay_off_spans_by_default(sdk: Sdk) -> None:
    content_call(sdk.telemetry)

    values = list(every_attribute_value(sdk.finished()))
    assert values, "the spans were not exported at all"
    for secret in (SECRET_MEMO, str(SECRET_AMOUNT), SECRET_RESULT):
        assert not any(secret in value for value in values), f"{secret} reached a span"
    attributes = dict(sdk.one("execute_tool pay").attributes or {})
    assert ATTR_GEN_AI_TOOL_CALL_ARGUMENTS not in attributes
    assert ATTR_GEN_AI_TOOL_CALL_RESULT not in attributes


def test_content_goes_on_the_span_only_when_opted_in() -> None:
    sdk = make_sdk(capture_content=True)
    content_call(sdk.telemetry)

    attributes = dict(sdk.one("execute_tool pay").attributes or {})
    arguments = attributes[ATTR_GEN_AI_TOOL_CALL_ARGUMENTS]
    assert isinstance(arguments, str)
    assert json.loads(arguments) == {
        "account": "acc-9",
        "amount": SECRET_AMOUNT,
        "memo": SECRET_MEMO,
    }
    assert attributes[ATTR_GEN_AI_TOOL_CALL_RESULT] == SECRET_RESULT


# --- metrics --------------------------------------------------------------------------------


def test_decision_and_log_metrics_are_recorded(sdk: Sdk) -> None:
    allowed_call(sdk.telemetry)
    with sdk.telemetry.tool_call("wipe", "c", agent="bot", thread="t") as span:
        span.decided(
            decision(Effect.DENY, policy_ids=("z-rule", "a-rule"), tool_name="wipe"), 0.002
        )
    sdk.telemetry.log_append(0.0004)
    sdk.telemetry.log_append(0.01, error_type="agentfence.errors.LogError")

    counts = {tuple(sorted(p.attributes.items())): p.value for p in sdk.points(METRIC_DECISIONS)}
    assert counts == {
        (
            (ATTR_DECISION_EFFECT, "ALLOW"),
            (ATTR_DECISION_POLICY_IDS, "small-payments"),
            (ATTR_GEN_AI_TOOL_NAME, "pay"),
        ): 1,
        (
            (ATTR_DECISION_EFFECT, "DENY"),
            (ATTR_DECISION_POLICY_IDS, "a-rule,z-rule"),
            (ATTR_GEN_AI_TOOL_NAME, "wipe"),
        ): 1,
    }
    durations = {
        p.attributes[ATTR_DECISION_EFFECT]: p for p in sdk.points(METRIC_DECISION_DURATION)
    }
    assert durations["ALLOW"].count == 1
    assert durations["ALLOW"].sum == pytest.approx(0.0025)
    assert durations["DENY"].sum == pytest.approx(0.002)
    # Boundaries fit sub-millisecond latencies, not the SDK's default seconds.
    assert durations["ALLOW"].explicit_bounds[0] < 0.001
    appends = {p.attributes.get(ATTR_ERROR_TYPE): p for p in sdk.points(METRIC_LOG_APPEND_DURATION)}
    assert appends[None].count == 1 and appends[None].sum == pytest.approx(0.0004)
    assert appends["agentfence.errors.LogError"].count == 1


def test_decision_metrics_are_recorded_even_without_a_tracer() -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=trace.NoOpTracerProvider(),
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    allowed_call(telemetry)
    sdk = Sdk(telemetry, InMemorySpanExporter(), reader)
    assert [p.value for p in sdk.points(METRIC_DECISIONS)] == [1]


def test_approvals_are_span_events_and_metrics(sdk: Sdk) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with sdk.telemetry.tool_call("pay", "c", agent="bot", thread="t") as span:
        span.approval_requested("apr-1", ["finance"], expires)
        span.approval_answered("apr-1", 'User::"bob"', "approved", 42.0)
        span.approval_expired("apr-2")

    events = {e.name: dict(e.attributes or {}) for e in sdk.one("execute_tool pay").events}
    assert events[EVENT_APPROVAL_REQUESTED] == {
        ATTR_APPROVAL_REQUEST_ID: "apr-1",
        ATTR_APPROVAL_APPROVERS: ("finance",),
        "agentfence.approval.expires_at": "2030-01-02T03:04:05+00:00",
    }
    assert events[EVENT_APPROVAL_ANSWERED][ATTR_APPROVAL_APPROVER] == 'User::"bob"'
    assert events[EVENT_APPROVAL_ANSWERED][ATTR_APPROVAL_OUTCOME] == "approved"
    assert events[EVENT_APPROVAL_EXPIRED] == {ATTR_APPROVAL_REQUEST_ID: "apr-2"}
    assert [p.value for p in sdk.points(METRIC_APPROVALS_REQUESTED)] == [1]
    assert [p.value for p in sdk.points(METRIC_APPROVALS_ANSWERED)] == [1]
    assert [p.value for p in sdk.points(METRIC_APPROVALS_EXPIRED)] == [1]
    (wait,) = sdk.points(METRIC_APPROVAL_WAIT_DURATION)
    assert wait.sum == pytest.approx(42.0)
    assert wait.attributes[ATTR_APPROVAL_OUTCOME] == "approved"


# --- failing open ---------------------------------------------------------------------------


class Broken(Exception):
    pass


class RaisingProcessor(SpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise Broken("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        raise Broken("on_end")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        raise Broken("force_flush")

    def shutdown(self) -> None:
        raise Broken("shutdown")


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        raise Broken("export")


class RaisingTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise Broken("get_tracer")


class RaisingInstrument:
    def add(self, *args: Any, **kwargs: Any) -> None:
        raise Broken("add")

    def record(self, *args: Any, **kwargs: Any) -> None:
        raise Broken("record")


class RaisingMeter:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: RaisingInstrument()


class RaisingMeterProvider:
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise Broken("get_meter")


class BrokenInstrumentsMeterProvider:
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return RaisingMeter()


def every_method(telemetry: Telemetry) -> None:
    """Call every public Telemetry method; an exception in the with blocks must escape."""
    handler = telemetry.callback_handler()
    step = uuid4()
    with telemetry.run("bot", "t") as run:
        run.ids()
        handler.on_chain_start({}, {}, run_id=step, metadata=step_metadata("tools", 1, "t:1"))
        with (
            pytest.raises(PaymentGatewayDown, match="still raised"),
            telemetry.tool_call(
                "pay", "c", agent="bot", thread="t", config={"callbacks": FakeCallbackManager(step)}
            ) as span,
        ):
            span.decided(decision(), 0.001)
            span.recorded(1, LEAF)
            span.ids()
            span.digested(args="1", result="2")
            span.content({"a": 1}, "r")
            span.approval_requested("r", ["g"], datetime.now(UTC))
            span.approval_answered("r", "bob", "approved", 1.0)
            span.approval_expired("r")
            span.finished("error", error_type="X")
            raise PaymentGatewayDown("still raised")
        handler.on_chain_error(KeyError("k"), run_id=step)
        handler.on_chain_end({}, run_id=step)
    telemetry.log_append(0.001)


def test_a_raising_span_processor_never_breaks_a_call(caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(RaisingProcessor())
    provider.add_span_processor(SimpleSpanProcessor(RaisingExporter()))
    telemetry = Telemetry(tracer_provider=provider, capture_content=True)

    with caplog.at_level(logging.DEBUG, logger="agentfence.tracing"):
        every_method(telemetry)
        every_method(telemetry)

    assert "agentfence telemetry failed in" in caplog.text
    assert "Broken: on_start" in caplog.text


def test_a_raising_span_end_never_breaks_a_call() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    class EndRaises(RaisingProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            return None

    provider.add_span_processor(EndRaises())
    every_method(Telemetry(tracer_provider=provider))
    # The spans did start and end; only the failing processor's part was lost.
    assert "execute_tool pay" in [s.name for s in exporter.get_finished_spans()]


def test_providers_that_raise_leave_telemetry_off_but_working() -> None:
    telemetry = Telemetry(
        tracer_provider=RaisingTracerProvider(),
        meter_provider=RaisingMeterProvider(),  # type: ignore[arg-type]
        capture_content=True,
    )
    every_method(telemetry)
    assert allowed_call(telemetry) is None


def test_metric_instruments_that_raise_never_break_a_call() -> None:
    telemetry = Telemetry(meter_provider=BrokenInstrumentsMeterProvider())  # type: ignore[arg-type]
    every_method(telemetry)


# --- configuration --------------------------------------------------------------------------


def test_configure_none_builds_nothing() -> None:
    assert configure_from_settings("none") is None


def test_configure_rejects_an_unknown_exporter() -> None:
    with pytest.raises(ConfigurationError, match="unknown trace exporter 'jaeger'; use 'console'"):
        configure_from_settings("jaeger")  # type: ignore[arg-type]


def test_configure_otlp_without_the_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'agentfence\[otlp\]'") as info:
        configure_from_settings("otlp")
    assert isinstance(info.value.__cause__, ImportError)


def test_configure_console_prints_spans(capsys: pytest.CaptureFixture[str]) -> None:
    provider = configure_from_settings("console")
    assert provider is not None
    try:
        allowed_call(Telemetry(tracer_provider=provider))
        assert provider.force_flush(5_000)
    finally:
        provider.shutdown()
    out = capsys.readouterr().out
    assert '"name": "execute_tool pay"' in out
    assert '"name": "agentfence.decide"' in out


def test_settings_default_to_no_exporter_and_no_content() -> None:
    assert telemetry_settings_from_env({}) == TelemetrySettings("none", False)
    assert telemetry_settings_from_env(
        {"AGENTFENCE_TRACE_EXPORTER": "OTLP", "AGENTFENCE_TRACE_CONTENT": "true"}
    ) == TelemetrySettings("otlp", True)


def test_settings_reject_unknown_values_and_say_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="AGENTFENCE_TRACE_EXPORTER='zipkin' is not"):
        telemetry_settings_from_env({"AGENTFENCE_TRACE_EXPORTER": "zipkin"})
    with pytest.raises(ConfigurationError, match="AGENTFENCE_TRACE_CONTENT='yes' is not a boolean"):
        telemetry_settings_from_env({"AGENTFENCE_TRACE_CONTENT": "yes"})


def test_from_settings_honours_capture_content() -> None:
    telemetry = Telemetry.from_settings(TelemetrySettings("none", True))
    assert telemetry.capture_content is True


def test_configure_set_global_installs_the_provider_only_if_none_is_set() -> None:
    # In a child process: the global provider can be set once per process.
    script = (
        "from opentelemetry import trace\n"
        "from agentfence.tracing import configure_from_settings\n"
        "first = configure_from_settings('console', set_global=True)\n"
        "second = configure_from_settings('console', set_global=True)\n"
        "assert trace.get_tracer_provider() is first, 'first provider not installed'\n"
        "assert second is not first\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "Overriding of current TracerProvider" not in done.stderr
