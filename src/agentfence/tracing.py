"""Spans, metrics and their names: what the fence tells OpenTelemetry about each call.

The fence calls :class:`Telemetry` at each step of a tool call's pipeline (describe → decide →
record → act). Span and attribute names follow the OpenTelemetry GenAI semantic conventions
where those define a name (``execute_tool {gen_ai.tool.name}``, ``invoke_agent
{gen_ai.agent.name}``, ``gen_ai.tool.call.id``, ``error.type``, …; all of them have
*Development* status) and use the ``agentfence.*`` namespace for the rest. Every name is a
constant below; ``docs/observability.md`` lists them all with their meaning.

Telemetry observes; it never guards. Every public method here fails open: an exporter, span
processor or provider that raises is logged and ignored, and the call it observes goes on.
Argument and result values never go on a span unless the operator opts in with
``capture_content=True``, and then only the already-redacted values the caller passes.

With no SDK configured, the OpenTelemetry API hands out no-op tracers and meters and each call
costs a few microseconds (see ``docs/observability.md``).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentfence.config import Settings
from agentfence.errors import ConfigurationError
from agentfence.policy import EntityRef

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    from agentfence.policy import Decision

__all__ = [
    "RunSpan",
    "Telemetry",
    "TelemetrySettings",
    "ToolCallSpan",
    "TracingCallbackHandler",
    "configure_from_settings",
    "error_type_of",
    "telemetry_settings_from_env",
]

_logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME: Final = "agentfence"

# --- OpenTelemetry GenAI semantic conventions (Development status) -------------------------
# Names as defined by open-telemetry/semantic-conventions-genai (gen-ai-spans.md "Execute tool
# span", gen-ai-agent-spans.md "Invoke agent internal span") and shipped as constants in
# opentelemetry-semantic-conventions 0.66b2 (opentelemetry.semconv._incubating.attributes.
# gen_ai_attributes). They are written out here rather than imported: that module is
# incubating and marks them as moved, and a rename upstream must be a visible change here.
ATTR_GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
ATTR_GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
ATTR_GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
ATTR_GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
ATTR_GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
ATTR_GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
ATTR_GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
# Opt-in content attributes (the conventions say: not captured by default).
ATTR_GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
ATTR_GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
# Stable general attribute (semantic conventions registry, error.type).
ATTR_ERROR_TYPE: Final = "error.type"

OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_AGENT: Final = "invoke_agent"
# Defined by the conventions for runs that coordinate several agents; the fence cannot tell a
# LangGraph graph that is one agent from one that is several, so it reports invoke_agent.
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
TOOL_TYPE_FUNCTION: Final = "function"
ERROR_TYPE_OTHER: Final = "_OTHER"

# --- agentfence span names ------------------------------------------------------------------
SPAN_EXECUTE_TOOL: Final = OP_EXECUTE_TOOL  # span name: "execute_tool {gen_ai.tool.name}"
SPAN_INVOKE_AGENT: Final = OP_INVOKE_AGENT  # span name: "invoke_agent {gen_ai.agent.name}"
SPAN_DECIDE: Final = "agentfence.decide"
SPAN_STEP: Final = "agentfence.step"  # span name: "agentfence.step {node}"

# --- agentfence attributes ------------------------------------------------------------------
ATTR_DECISION_EFFECT: Final = "agentfence.decision.effect"
ATTR_DECISION_ID: Final = "agentfence.decision.id"
ATTR_DECISION_POLICY_IDS: Final = "agentfence.decision.policy_ids"
ATTR_DECISION_REASONS: Final = "agentfence.decision.reasons"
ATTR_POLICY_HASH: Final = "agentfence.policy.hash"
ATTR_RESOURCE: Final = "agentfence.resource"
ATTR_DATA_RESOURCES: Final = "agentfence.data.resources"
ATTR_DATA_LABELS: Final = "agentfence.data.labels"
ATTR_LOG_SEQ: Final = "agentfence.log.seq"
ATTR_LOG_LEAF_HASH: Final = "agentfence.log.leaf_hash"
ATTR_ARGS_DIGEST: Final = "agentfence.args.digest"
ATTR_RESULT_DIGEST: Final = "agentfence.result.digest"
ATTR_OUTCOME: Final = "agentfence.outcome"
ATTR_INTERRUPTED: Final = "agentfence.interrupted"
ATTR_STEP_NODE: Final = "agentfence.step.node"
ATTR_STEP_INDEX: Final = "agentfence.step.index"
ATTR_APPROVAL_REQUEST_ID: Final = "agentfence.approval.request_id"
ATTR_APPROVAL_APPROVERS: Final = "agentfence.approval.approvers"
ATTR_APPROVAL_APPROVER: Final = "agentfence.approval.approver"
ATTR_APPROVAL_EXPIRES_AT: Final = "agentfence.approval.expires_at"
ATTR_APPROVAL_OUTCOME: Final = "agentfence.approval.outcome"
ATTR_APPROVAL_WAIT: Final = "agentfence.approval.wait"

# --- agentfence span events -----------------------------------------------------------------
EVENT_APPROVAL_REQUESTED: Final = "agentfence.approval.requested"
EVENT_APPROVAL_ANSWERED: Final = "agentfence.approval.answered"
EVENT_APPROVAL_EXPIRED: Final = "agentfence.approval.expired"

# --- error.type values the fence reports (the conventions ask each instrumentation to list
# its own); a tool's own exception is reported by its class name, see error_type_of. ---------
ERROR_DENIED: Final = "agentfence.denied"
ERROR_APPROVAL_REQUIRED: Final = "agentfence.approval_required"
ERROR_FAIL_CLOSED: Final = "agentfence.fail_closed"

# --- metrics --------------------------------------------------------------------------------
METRIC_DECISIONS: Final = "agentfence.decisions"
METRIC_DECISION_DURATION: Final = "agentfence.decision.duration"
METRIC_LOG_APPEND_DURATION: Final = "agentfence.log.append.duration"
METRIC_APPROVALS_REQUESTED: Final = "agentfence.approvals.requested"
METRIC_APPROVALS_ANSWERED: Final = "agentfence.approvals.answered"
METRIC_APPROVALS_EXPIRED: Final = "agentfence.approvals.expired"
METRIC_APPROVAL_WAIT_DURATION: Final = "agentfence.approval.wait.duration"

# Deciding and appending take microseconds to milliseconds: the SDK's default boundaries
# (0, 5, 10, 25 … seconds) would put every sample in the first bucket.
_FAST_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
# A human answers in seconds to hours.
_WAIT_BUCKETS: Final = (
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 28800.0, 86400.0,
)  # fmt: skip

Exporter = Literal["console", "otlp", "none"]
Outcome = Literal["success", "error", "denied"]
EXPORTERS: Final = ("console", "otlp", "none")

_P = ParamSpec("_P")
_R = TypeVar("_R")

_reported: set[str] = set()
_reported_lock = threading.Lock()


def _report(where: str) -> None:
    """Log a telemetry failure: a warning the first time per place, then at debug level."""
    with _reported_lock:
        first = where not in _reported
        _reported.add(where)
    level = logging.WARNING if first else logging.DEBUG
    _logger.log(level, "agentfence telemetry failed in %s (ignored)", where, exc_info=True)


def _fail_open(method: Callable[_P, _R]) -> Callable[_P, _R | None]:
    """Make a telemetry method return ``None`` instead of raising.

    Fail open: this is the one place where telemetry errors are swallowed. Observing a call
    must never change what the call does, so an exporter, processor or provider that raises
    is logged (see :func:`_report`) and the caller carries on.
    """

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        try:
            return method(*args, **kwargs)
        except Exception:
            _report(method.__qualname__)
            return None

    return wrapper


def error_type_of(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its class name, module-qualified unless builtin.

    The conventions ask for "the canonical name of exception that occurred" (low cardinality);
    the message is never used, since it may quote argument values.
    """
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _is_bubble_up(exc: BaseException | None) -> bool:
    """True for LangGraph's GraphBubbleUp (an interrupt, not a failure), found by class name
    so that this module does not import LangGraph."""
    return exc is not None and any(k.__name__ == "GraphBubbleUp" for k in type(exc).__mro__)


def _hex_ids(span: Span) -> tuple[str, str] | None:
    if not span.is_recording():
        return None
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    # W3C Trace Context: 32 and 16 lowercase hex digits.
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _detach_and_end(token: Token[otel_context.Context] | None, span: Span) -> None:
    """Restore the context that was current before the span, then end the span."""
    try:
        if token is not None:
            otel_context.detach(token)
    finally:
        span.end()


def _entity_uid(resource: Any) -> str | None:
    """``Type::"id"`` for a Cedar request's ``{"type", "id"}`` resource, else None."""
    if not isinstance(resource, Mapping):
        return None
    kind, ident = resource.get("type"), resource.get("id")
    if not isinstance(kind, str) or not isinstance(ident, str):
        return None
    return str(EntityRef(kind, ident))


@dataclass(frozen=True)
class TelemetrySettings:
    """Which exporter :func:`configure_from_settings` builds, and whether content is captured."""

    exporter: Exporter = "none"
    capture_content: bool = False


def telemetry_settings_from_env(environ: Mapping[str, str] | None = None) -> TelemetrySettings:
    """The telemetry settings from ``AGENTFENCE_TRACE_EXPORTER`` and
    ``AGENTFENCE_TRACE_CONTENT`` (read, like every variable, in ``config.py``).

    ``AGENTFENCE_TRACE_EXPORTER`` is ``console``, ``otlp`` or ``none`` (the default: use
    whatever the application configured, or nothing). ``AGENTFENCE_TRACE_CONTENT`` is
    ``true``/``false`` (default false). Standard ``OTEL_*`` variables are read by the
    OpenTelemetry SDK and exporter themselves.
    """
    settings = Settings.from_env(environ)
    return TelemetrySettings(
        exporter=cast(Exporter, settings.trace_exporter), capture_content=settings.trace_content
    )


def configure_from_settings(
    exporter: Exporter,
    *,
    endpoint: str | None = None,
    set_global: bool = False,
) -> SdkTracerProvider | None:
    """Build an SDK ``TracerProvider`` exporting to the console or over OTLP/HTTP.

    For applications that configured no OpenTelemetry SDK of their own. ``"none"`` returns
    ``None``. ``"otlp"`` needs ``pip install 'agentfence[otlp]'``; its endpoint, headers,
    timeout, compression and TLS files come from the standard ``OTEL_EXPORTER_OTLP_*``
    variables (read by the exporter), unless ``endpoint`` is given. The resource (service
    name and attributes) comes from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` and
    batching from ``OTEL_BSP_*``, read by the SDK. With ``set_global=True`` the provider also
    becomes the global one, if the application has not set one already.

    Raises :class:`~agentfence.errors.ConfigurationError` for an unknown exporter or a missing
    exporter package. Call ``shutdown()`` on the result at exit to flush the last spans.
    """
    if exporter not in EXPORTERS:
        raise ConfigurationError(
            f"unknown trace exporter {exporter!r}; use 'console', 'otlp' or 'none' "
            "(see docs/observability.md)"
        )
    if exporter == "none":
        return None
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    span_exporter: SpanExporter
    if exporter == "console":
        # sys.stdout as it is now, not as it was when the SDK was imported.
        span_exporter = ConsoleSpanExporter(out=sys.stdout)
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigurationError(
                "the 'otlp' trace exporter needs the OTLP/HTTP exporter package, which is not "
                "installed; run: pip install 'agentfence[otlp]'"
            ) from exc
        span_exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = SdkProvider()
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider


class _Instruments:
    """The metric instruments, created once per :class:`Telemetry`."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.decisions = meter.create_counter(
            METRIC_DECISIONS, unit="{decision}", description="Tool calls decided by the fence."
        )
        self.decision_duration = meter.create_histogram(
            METRIC_DECISION_DURATION,
            unit="s",
            description="Time to decide one tool call (building the Cedar request and evaluating).",
            explicit_bucket_boundaries_advisory=_FAST_BUCKETS,
        )
        self.log_append_duration = meter.create_histogram(
            METRIC_LOG_APPEND_DURATION,
            unit="s",
            description="Time for one durable append to the decision log.",
            explicit_bucket_boundaries_advisory=_FAST_BUCKETS,
        )
        self.approvals_requested = meter.create_counter(
            METRIC_APPROVALS_REQUESTED, unit="{request}", description="Approval requests raised."
        )
        self.approvals_answered = meter.create_counter(
            METRIC_APPROVALS_ANSWERED, unit="{answer}", description="Approval requests answered."
        )
        self.approvals_expired = meter.create_counter(
            METRIC_APPROVALS_EXPIRED, unit="{request}", description="Approval requests expired."
        )
        self.approval_wait = meter.create_histogram(
            METRIC_APPROVAL_WAIT_DURATION,
            unit="s",
            description="Time from an approval request to its answer.",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("agentfence")
    except Exception:
        return None


class Telemetry:
    """Spans and metrics for the fence's tool calls, runs and graph steps.

    ``tracer_provider`` and ``meter_provider`` default to the global ones (no-op until the
    application configures the OpenTelemetry SDK). ``capture_content=True`` lets
    :meth:`ToolCallSpan.content` put redacted argument and result values on spans; it is off by
    default. No method raises: telemetry fails open.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool = False,
    ) -> None:
        self.capture_content = capture_content
        version = _version()
        self._tracer: trace.Tracer = trace.NoOpTracer()
        self._instruments = _Instruments(metrics.NoOpMeter(INSTRUMENTATION_NAME))
        # Fail open: a provider that cannot hand out a tracer or meter leaves that signal off.
        try:
            self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, version, tracer_provider)
        except Exception:
            _report("Telemetry.__init__ (tracer)")
        try:
            meter = metrics.get_meter(INSTRUMENTATION_NAME, version or "", meter_provider)
            self._instruments = _Instruments(meter)
        except Exception:
            _report("Telemetry.__init__ (meter)")
        self._steps = _StepSpans(self._tracer)

    @classmethod
    def from_settings(
        cls, settings: TelemetrySettings, *, meter_provider: metrics.MeterProvider | None = None
    ) -> Telemetry:
        """Telemetry for :class:`TelemetrySettings`: build the configured exporter, if any.

        With ``exporter="none"`` the global providers are used. Raises
        :class:`~agentfence.errors.ConfigurationError` like :func:`configure_from_settings`.
        """
        provider = configure_from_settings(settings.exporter)
        return cls(
            tracer_provider=provider,
            meter_provider=meter_provider,
            capture_content=settings.capture_content,
        )

    def tool_call(
        self,
        tool_name: str,
        call_id: str | None,
        *,
        agent: str | None,
        thread: str | None,
        config: Mapping[str, Any] | None = None,
        tool_type: str = TOOL_TYPE_FUNCTION,
    ) -> ToolCallSpan:
        """A context manager for the ``execute_tool {tool_name}`` span of one call.

        The span's parent is the graph step running the call when ``config`` (the run's
        ``RunnableConfig``) leads to a step traced by :meth:`callback_handler`; otherwise the
        current span (a LangChain/LangGraph span, or :meth:`run`'s). While the ``with`` block
        runs the span is current, so spans the tool makes nest under it.
        """
        try:
            return ToolCallSpan(
                self,
                tool_name,
                call_id,
                agent=agent,
                thread=thread,
                parent=self._steps.context_for(config),
                tool_type=tool_type,
            )
        except Exception:
            _report("Telemetry.tool_call")
            return ToolCallSpan._disabled(self)

    def run(
        self, agent_name: str | None, thread: str | None, *, provider: str | None = None
    ) -> RunSpan:
        """A context manager for the ``invoke_agent {agent_name}`` span around one graph run.

        ``provider`` is the model provider's ``gen_ai.provider.name`` (``openai``,
        ``anthropic``, …); the conventions require it on this span but only the application
        knows it.
        """
        try:
            return RunSpan(self, agent_name, thread, provider=provider)
        except Exception:
            _report("Telemetry.run")
            return RunSpan._disabled(self)

    def callback_handler(self) -> TracingCallbackHandler:
        """A LangChain callback handler that opens one span per LangGraph step (node run).

        Pass it in the run's config: ``graph.invoke(inputs, {"callbacks": [handler], ...})``.
        Steps nest under the span current when the graph starts (e.g. :meth:`run`'s), and
        :meth:`tool_call` spans nest under the step that runs them.
        """
        return TracingCallbackHandler(self._steps)

    @_fail_open
    def log_append(self, seconds: float, *, error_type: str | None = None) -> None:
        """Record how long one decision-log append took (``error_type`` if it failed)."""
        attributes = {ATTR_ERROR_TYPE: error_type} if error_type else None
        self._instruments.log_append_duration.record(seconds, attributes)


class ToolCallSpan:
    """The ``execute_tool`` span of one tool call; made by :meth:`Telemetry.tool_call`.

    Use it as a context manager around the whole pipeline of the call, then tell it what
    happened with one method per step. No method raises.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        tool_name: str,
        call_id: str | None,
        *,
        agent: str | None,
        thread: str | None,
        parent: otel_context.Context | None,
        tool_type: str,
    ) -> None:
        self._telemetry = telemetry
        self._tool = tool_name
        self._call_id = call_id
        self._agent = agent
        self._thread = thread
        self._parent = parent
        self._tool_type = tool_type
        self._span: Span = trace.INVALID_SPAN
        self._token: Token[otel_context.Context] | None = None
        self._finished = False
        self._enabled = True

    @classmethod
    def _disabled(cls, telemetry: Telemetry) -> ToolCallSpan:
        span = cls(telemetry, "", None, agent=None, thread=None, parent=None, tool_type="")
        span._enabled = False
        return span

    @_fail_open
    def _start(self) -> None:
        if not self._enabled:
            return
        # Sampling-relevant attributes go in at creation (gen-ai-spans.md, execute tool span).
        attributes: dict[str, Any] = {
            ATTR_GEN_AI_OPERATION_NAME: OP_EXECUTE_TOOL,
            ATTR_GEN_AI_TOOL_NAME: self._tool,
            ATTR_GEN_AI_TOOL_TYPE: self._tool_type,
        }
        if self._call_id:
            attributes[ATTR_GEN_AI_TOOL_CALL_ID] = self._call_id
        if self._agent:
            attributes[ATTR_GEN_AI_AGENT_NAME] = self._agent
        if self._thread:
            attributes[ATTR_GEN_AI_CONVERSATION_ID] = self._thread
        name = f"{SPAN_EXECUTE_TOOL} {self._tool}" if self._tool else SPAN_EXECUTE_TOOL
        self._span = self._telemetry._tracer.start_span(
            name, context=self._parent, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span, self._parent))

    def __enter__(self) -> ToolCallSpan:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returns None: an exception from the with block always propagates unchanged.
        self._close(exc)

    @_fail_open
    def _close(self, exc: BaseException | None) -> None:
        token, self._token = self._token, None
        try:
            if exc is not None and not self._finished and self._span.is_recording():
                if _is_bubble_up(exc):
                    self._span.set_attribute(ATTR_INTERRUPTED, True)
                else:
                    self._fail(error_type_of(exc), "error")
        finally:
            _detach_and_end(token, self._span)

    def _fail(self, error_type: str, outcome: Outcome) -> None:
        self._span.set_attribute(ATTR_ERROR_TYPE, error_type)
        self._span.set_attribute(ATTR_OUTCOME, outcome)
        self._span.set_status(Status(StatusCode.ERROR, error_type))

    @_fail_open
    def decided(self, decision: Decision, seconds: float) -> None:
        """Record the policy decision: a child span ``agentfence.decide`` and the metrics.

        ``seconds`` is how long deciding took; the child span ends now and starts that long
        ago. The decisions counter and latency histogram are recorded even when the span is
        not (sampled out, or no SDK).
        """
        effect = decision.effect.value
        policy_ids = list(decision.policy_ids)
        metric_attributes = {
            ATTR_DECISION_EFFECT: effect,
            ATTR_GEN_AI_TOOL_NAME: self._tool,
            ATTR_DECISION_POLICY_IDS: ",".join(sorted(policy_ids)),
        }
        instruments = self._telemetry._instruments
        instruments.decisions.add(1, metric_attributes)
        instruments.decision_duration.record(seconds, metric_attributes)
        span = self._span
        if not span.is_recording():
            return
        span.set_attribute(ATTR_DECISION_EFFECT, effect)
        span.set_attribute(ATTR_DECISION_ID, decision.decision_id)
        span.set_attribute(ATTR_DECISION_POLICY_IDS, policy_ids)
        span.set_attribute(ATTR_POLICY_HASH, decision.policy_hash)
        resource = _entity_uid((decision.request or {}).get("resource"))
        if resource is not None:
            span.set_attribute(ATTR_RESOURCE, resource)
        end = time.time_ns()
        child = self._telemetry._tracer.start_span(
            SPAN_DECIDE,
            context=trace.set_span_in_context(span),
            kind=SpanKind.INTERNAL,
            start_time=end - max(0, int(seconds * 1e9)),
            attributes={
                ATTR_DECISION_EFFECT: effect,
                ATTR_DECISION_ID: decision.decision_id,
                ATTR_DECISION_POLICY_IDS: policy_ids,
                ATTR_DECISION_REASONS: list(decision.reasons),
                ATTR_POLICY_HASH: decision.policy_hash,
            },
        )
        if resource is not None:
            child.set_attribute(ATTR_RESOURCE, resource)
        child.end(end_time=end)

    @_fail_open
    def recorded(self, receipt_seq: int, leaf_hash_hex: str) -> None:
        """Link the span to its decision-log entry: sequence number and RFC 6962 leaf hash."""
        if self._span.is_recording():
            self._span.set_attribute(ATTR_LOG_SEQ, receipt_seq)
            self._span.set_attribute(ATTR_LOG_LEAF_HASH, leaf_hash_hex)

    @_fail_open
    def ids(self) -> tuple[str, str] | None:
        """The span's W3C trace id (32 hex) and span id (16 hex); None when not recorded."""
        return _hex_ids(self._span)

    @_fail_open
    def digested(self, *, args: str | None = None, result: str | None = None) -> None:
        """Put the SHA-256 digests (hex) of the arguments and the result on the span."""
        if self._span.is_recording():
            if args is not None:
                self._span.set_attribute(ATTR_ARGS_DIGEST, args)
            if result is not None:
                self._span.set_attribute(ATTR_RESULT_DIGEST, result)

    @_fail_open
    def finished(
        self,
        status: Outcome,
        *,
        resources: Sequence[str] = (),
        labels: Sequence[str] = (),
        error_type: str | None = None,
    ) -> None:
        """Say how the call ended and which data it touched.

        ``success`` leaves the span status unset (as the conventions' Recording Errors page
        asks); ``error`` (the tool failed) and ``denied`` (the fence refused: deny, a hold for
        approval, or fail closed) set status ERROR and ``error.type``: the exception's
        :func:`error_type_of` for ``error``, :data:`ERROR_DENIED` by default for ``denied``.
        ``resources`` are Cedar entity uids and ``labels`` data label names: never values.
        """
        self._finished = True
        span = self._span
        if not span.is_recording():
            return
        if resources:
            span.set_attribute(ATTR_DATA_RESOURCES, list(resources))
        if labels:
            span.set_attribute(ATTR_DATA_LABELS, list(labels))
        if status == "success":
            span.set_attribute(ATTR_OUTCOME, status)
        elif status == "denied":
            self._fail(error_type or ERROR_DENIED, status)
        else:
            self._fail(error_type or ERROR_TYPE_OTHER, "error")

    @_fail_open
    def failure(self, exc: BaseException) -> None:
        """Record why the fence failed closed (the exception, as a span event): its text goes
        to the trace and the log only, never to the model."""
        if self._span.is_recording():
            self._span.record_exception(exc)

    @_fail_open
    def content(self, args: Mapping[str, Any], result: str | None = None) -> None:
        """Put argument and result values on the span, only if ``capture_content`` is on.

        The caller passes values that are already redacted by policy; this method does not
        redact. Values go in ``gen_ai.tool.call.arguments`` (JSON text) and
        ``gen_ai.tool.call.result``, the conventions' opt-in attributes.
        """
        if not self._telemetry.capture_content or not self._span.is_recording():
            return
        value = dict(args) if isinstance(args, Mapping) else args
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        self._span.set_attribute(ATTR_GEN_AI_TOOL_CALL_ARGUMENTS, text)
        if result is not None:
            self._span.set_attribute(ATTR_GEN_AI_TOOL_CALL_RESULT, result)

    @_fail_open
    def approval_requested(
        self, request_id: str, approvers: Sequence[str], expires_at: datetime
    ) -> None:
        """An approval request was raised for this call: a span event and a count."""
        self._telemetry._instruments.approvals_requested.add(1, {ATTR_GEN_AI_TOOL_NAME: self._tool})
        if self._span.is_recording():
            self._span.add_event(
                EVENT_APPROVAL_REQUESTED,
                {
                    ATTR_APPROVAL_REQUEST_ID: request_id,
                    ATTR_APPROVAL_APPROVERS: list(approvers),
                    ATTR_APPROVAL_EXPIRES_AT: expires_at.isoformat(),
                },
            )

    @_fail_open
    def approval_answered(
        self, request_id: str, approver: str, outcome: str, waited_seconds: float
    ) -> None:
        """An approver answered (``outcome``: approved, rejected, edited …) after a wait."""
        attributes = {ATTR_GEN_AI_TOOL_NAME: self._tool, ATTR_APPROVAL_OUTCOME: outcome}
        instruments = self._telemetry._instruments
        instruments.approvals_answered.add(1, attributes)
        instruments.approval_wait.record(waited_seconds, attributes)
        if self._span.is_recording():
            self._span.add_event(
                EVENT_APPROVAL_ANSWERED,
                {
                    ATTR_APPROVAL_REQUEST_ID: request_id,
                    ATTR_APPROVAL_APPROVER: approver,
                    ATTR_APPROVAL_OUTCOME: outcome,
                    ATTR_APPROVAL_WAIT: waited_seconds,
                },
            )

    @_fail_open
    def approval_expired(self, request_id: str) -> None:
        """An approval request expired unanswered (which denies the call)."""
        self._telemetry._instruments.approvals_expired.add(1, {ATTR_GEN_AI_TOOL_NAME: self._tool})
        if self._span.is_recording():
            self._span.add_event(EVENT_APPROVAL_EXPIRED, {ATTR_APPROVAL_REQUEST_ID: request_id})


class RunSpan:
    """The ``invoke_agent`` span around one graph run; made by :meth:`Telemetry.run`."""

    def __init__(
        self,
        telemetry: Telemetry,
        agent_name: str | None,
        thread: str | None,
        *,
        provider: str | None,
    ) -> None:
        self._telemetry = telemetry
        self._agent = agent_name
        self._thread = thread
        self._provider = provider
        self._span: Span = trace.INVALID_SPAN
        self._token: Token[otel_context.Context] | None = None
        self._enabled = True

    @classmethod
    def _disabled(cls, telemetry: Telemetry) -> RunSpan:
        span = cls(telemetry, None, None, provider=None)
        span._enabled = False
        return span

    @_fail_open
    def _start(self) -> None:
        if not self._enabled:
            return
        attributes: dict[str, Any] = {ATTR_GEN_AI_OPERATION_NAME: OP_INVOKE_AGENT}
        if self._agent:
            attributes[ATTR_GEN_AI_AGENT_NAME] = self._agent
        if self._thread:
            attributes[ATTR_GEN_AI_CONVERSATION_ID] = self._thread
        if self._provider:
            attributes[ATTR_GEN_AI_PROVIDER_NAME] = self._provider
        # gen-ai-agent-spans.md: "invoke_agent {gen_ai.agent.name}", or "invoke_agent".
        name = f"{SPAN_INVOKE_AGENT} {self._agent}" if self._agent else SPAN_INVOKE_AGENT
        self._span = self._telemetry._tracer.start_span(
            name, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def __enter__(self) -> RunSpan:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returns None: an exception from the with block always propagates unchanged.
        self._close(exc)

    @_fail_open
    def _close(self, exc: BaseException | None) -> None:
        token, self._token = self._token, None
        try:
            if exc is not None and self._span.is_recording():
                if _is_bubble_up(exc):
                    self._span.set_attribute(ATTR_INTERRUPTED, True)
                else:
                    kind = error_type_of(exc)
                    self._span.set_attribute(ATTR_ERROR_TYPE, kind)
                    self._span.set_status(Status(StatusCode.ERROR, kind))
        finally:
            _detach_and_end(token, self._span)

    @_fail_open
    def ids(self) -> tuple[str, str] | None:
        """The run span's W3C trace id and span id (hex); None when not recorded."""
        return _hex_ids(self._span)


@dataclass
class _Run:
    """One LangChain run the step tracker follows: what its children nest under."""

    context: otel_context.Context
    key: tuple[str, str, int] | None
    span: Span | None


class _StepSpans:
    """Step spans keyed by LangChain run id, shared by a Telemetry and its callback handlers.

    It never attaches an OpenTelemetry context: LangChain calls handlers for async runs in a
    different context than the one it ends them in, so a context attached at a chain's start
    could not be detached at its end and would leak into the caller. Instead, tool spans find
    their step through the run config (:meth:`context_for`).
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._lock = threading.Lock()
        self._runs: dict[UUID, _Run] = {}

    def started(
        self, run_id: UUID, parent_run_id: UUID | None, metadata: Mapping[str, Any] | None
    ) -> None:
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        base = parent.context if parent is not None else otel_context.get_current()
        meta = metadata or {}
        node = meta.get("langgraph_node")
        if not isinstance(node, str) or not node:
            # Not a graph step (the graph itself, or a chain outside one): children nest
            # under whatever this run nests under.
            self._remember(run_id, _Run(base, parent.key if parent else None, None))
            return
        step = meta.get("langgraph_step")
        step_index = step if isinstance(step, int) and not isinstance(step, bool) else -1
        namespace = str(meta.get("langgraph_checkpoint_ns") or "")
        key = (namespace, node, step_index)
        if parent is not None and parent.key == key:
            # A runnable inside the node (it inherits the node's metadata): same step.
            self._remember(run_id, _Run(base, key, None))
            return
        attributes: dict[str, Any] = {ATTR_STEP_NODE: node}
        if step_index >= 0:
            attributes[ATTR_STEP_INDEX] = step_index
        thread = meta.get("thread_id")
        if isinstance(thread, str) and thread:
            attributes[ATTR_GEN_AI_CONVERSATION_ID] = thread
        span = self._tracer.start_span(
            f"{SPAN_STEP} {node}", context=base, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._remember(run_id, _Run(trace.set_span_in_context(span, base), key, span))

    def _remember(self, run_id: UUID, run: _Run) -> None:
        with self._lock:
            self._runs[run_id] = run

    def ended(self, run_id: UUID, error: BaseException | None) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None or run.span is None:
            return
        span = run.span
        if error is not None and span.is_recording():
            if _is_bubble_up(error):
                span.set_attribute(ATTR_INTERRUPTED, True)
            else:
                kind = error_type_of(error)
                span.set_attribute(ATTR_ERROR_TYPE, kind)
                span.set_status(Status(StatusCode.ERROR, kind))
        span.end()

    def context_for(self, config: Mapping[str, Any] | None) -> otel_context.Context | None:
        """The context of the step running a call with this ``RunnableConfig``, if traced.

        Inside a node, ``config["callbacks"]`` is LangChain's callback manager for the node's
        children; its ``parent_run_id`` is the node's (or an inner runnable's) run id.
        """
        if not config:
            return None
        run_id = getattr(config.get("callbacks"), "parent_run_id", None)
        if not isinstance(run_id, UUID):
            return None
        with self._lock:
            run = self._runs.get(run_id)
        return run.context if run is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)


class TracingCallbackHandler(BaseCallbackHandler):
    """LangChain callbacks that open a span ``agentfence.step {node}`` per LangGraph step.

    Made by :meth:`Telemetry.callback_handler`. A step is a chain whose metadata names a
    ``langgraph_node`` that its parent chain does not (runnables inside a node inherit the
    node's metadata and are not new steps); chains without that metadata open no span.
    Missing or odd metadata is tolerated; no callback raises.
    """

    # Called inline, in the caller's context: cheap, and the step span exists before the
    # node's body (and its tool calls) runs.
    run_inline = True
    raise_error = False

    def __init__(self, steps: _StepSpans) -> None:
        super().__init__()
        self._steps = steps

    @_fail_open
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a step span if this chain is a graph node's run."""
        self._steps.started(run_id, parent_run_id, metadata)

    @_fail_open
    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End the chain's step span, if it has one."""
        self._steps.ended(run_id, None)

    @_fail_open
    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """End the chain's step span with ERROR status (an interrupt is not an error)."""
        self._steps.ended(run_id, error)


def render_tree(spans: Sequence[Any]) -> list[str]:
    """Finished SDK spans as an indented text tree, one line a span, with key attributes.

    For people reading a trace without a backend (``agentfence demo --trace``). Shows span
    names, durations, status and the ``agentfence.*`` and ``gen_ai.tool.*`` attributes that
    say what was decided and recorded.
    """
    shown = (
        ATTR_DECISION_EFFECT,
        ATTR_DECISION_POLICY_IDS,
        ATTR_LOG_SEQ,
        ATTR_DATA_RESOURCES,
        ATTR_ERROR_TYPE,
        ATTR_GEN_AI_TOOL_CALL_ID,
    )
    children: dict[int | None, list[Any]] = {}
    ids = {span.context.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            attrs = span.attributes or {}
            details = ", ".join(
                f"{key.rsplit('.', 1)[-1]}={_short_value(attrs[key])}"
                for key in shown
                if key in attrs
            )
            status = " ERROR" if span.status.status_code.name == "ERROR" else ""
            events = ", ".join(e.name for e in span.events)
            line = f"{'  ' * depth}{span.name} [{took:.2f} ms]{status}"
            line += f" {details}" if details else ""
            line += f" events: {events}" if events else ""
            lines.append(line)
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def _short_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
