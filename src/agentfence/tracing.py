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

import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentfence import _semconv as sc
from agentfence._step_spans import (
    StepSpans,
    TracingCallbackHandler,
    detach_and_end,
    error_type_of,
    fail_open,
    hex_ids,
    is_bubble_up,
    report_failure,
)
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


Exporter = Literal["console", "otlp", "none"]
Outcome = Literal["success", "error", "denied"]
EXPORTERS: Final = ("console", "otlp", "none")


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
            sc.METRIC_DECISIONS, unit="{decision}", description="Tool calls decided by the fence."
        )
        self.decision_duration = meter.create_histogram(
            sc.METRIC_DECISION_DURATION,
            unit="s",
            description="Time to decide one tool call (building the Cedar request and evaluating).",
            explicit_bucket_boundaries_advisory=sc._FAST_BUCKETS,
        )
        self.log_append_duration = meter.create_histogram(
            sc.METRIC_LOG_APPEND_DURATION,
            unit="s",
            description="Time for one durable append to the decision log.",
            explicit_bucket_boundaries_advisory=sc._FAST_BUCKETS,
        )
        self.approvals_requested = meter.create_counter(
            sc.METRIC_APPROVALS_REQUESTED, unit="{request}", description="Approval requests raised."
        )
        self.approvals_answered = meter.create_counter(
            sc.METRIC_APPROVALS_ANSWERED, unit="{answer}", description="Approval requests answered."
        )
        self.approvals_expired = meter.create_counter(
            sc.METRIC_APPROVALS_EXPIRED, unit="{request}", description="Approval requests expired."
        )
        self.approval_wait = meter.create_histogram(
            sc.METRIC_APPROVAL_WAIT_DURATION,
            unit="s",
            description="Time from an approval request to its answer.",
            explicit_bucket_boundaries_advisory=sc._WAIT_BUCKETS,
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
        self._instruments = _Instruments(metrics.NoOpMeter(sc.INSTRUMENTATION_NAME))
        # Fail open: a provider that cannot hand out a tracer or meter leaves that signal off.
        try:
            self._tracer = trace.get_tracer(sc.INSTRUMENTATION_NAME, version, tracer_provider)
        except Exception:
            report_failure("Telemetry.__init__ (tracer)")
        try:
            meter = metrics.get_meter(sc.INSTRUMENTATION_NAME, version or "", meter_provider)
            self._instruments = _Instruments(meter)
        except Exception:
            report_failure("Telemetry.__init__ (meter)")
        self._steps = StepSpans(self._tracer)

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
        tool_type: str = sc.TOOL_TYPE_FUNCTION,
        description: str | None = None,
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
                description=description,
            )
        except Exception:
            report_failure("Telemetry.tool_call")
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
            report_failure("Telemetry.run")
            return RunSpan._disabled(self)

    def callback_handler(self) -> TracingCallbackHandler:
        """A LangChain callback handler that opens one span per LangGraph step (node run).

        Pass it in the run's config: ``graph.invoke(inputs, {"callbacks": [handler], ...})``.
        Steps nest under the span current when the graph starts (e.g. :meth:`run`'s), and
        :meth:`tool_call` spans nest under the step that runs them.
        """
        return TracingCallbackHandler(self._steps)

    @fail_open
    def log_append(self, seconds: float, *, error_type: str | None = None) -> None:
        """Record how long one decision-log append took (``error_type`` if it failed)."""
        attributes = {sc.ATTR_ERROR_TYPE: error_type} if error_type else None
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
        description: str | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._description = description
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

    @fail_open
    def _start(self) -> None:
        if not self._enabled:
            return
        # Sampling-relevant attributes go in at creation (gen-ai-spans.md, execute tool span).
        attributes: dict[str, Any] = {
            sc.ATTR_GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.ATTR_GEN_AI_TOOL_NAME: self._tool,
            sc.ATTR_GEN_AI_TOOL_TYPE: self._tool_type,
        }
        if self._call_id:
            attributes[sc.ATTR_GEN_AI_TOOL_CALL_ID] = self._call_id
        if self._description:
            attributes[sc.ATTR_GEN_AI_TOOL_DESCRIPTION] = self._description
        if self._agent:
            attributes[sc.ATTR_GEN_AI_AGENT_NAME] = self._agent
        if self._thread:
            attributes[sc.ATTR_GEN_AI_CONVERSATION_ID] = self._thread
        name = f"{sc.SPAN_EXECUTE_TOOL} {self._tool}" if self._tool else sc.SPAN_EXECUTE_TOOL
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

    @fail_open
    def _close(self, exc: BaseException | None) -> None:
        token, self._token = self._token, None
        try:
            if exc is not None and not self._finished and self._span.is_recording():
                if is_bubble_up(exc):
                    self._span.set_attribute(sc.ATTR_INTERRUPTED, True)
                else:
                    self._fail(error_type_of(exc), "error")
        finally:
            detach_and_end(token, self._span)

    def _fail(self, error_type: str, outcome: Outcome) -> None:
        self._span.set_attribute(sc.ATTR_ERROR_TYPE, error_type)
        self._span.set_attribute(sc.ATTR_OUTCOME, outcome)
        self._span.set_status(Status(StatusCode.ERROR, error_type))

    @fail_open
    def decided(self, decision: Decision, seconds: float) -> None:
        """Record the policy decision: a child span ``agentfence.decide`` and the metrics.

        ``seconds`` is how long deciding took; the child span ends now and starts that long
        ago. The decisions counter and latency histogram are recorded even when the span is
        not (sampled out, or no SDK).
        """
        effect = decision.effect.value
        policy_ids = list(decision.policy_ids)
        metric_attributes = {
            sc.ATTR_DECISION_EFFECT: effect,
            sc.ATTR_GEN_AI_TOOL_NAME: self._tool,
            sc.ATTR_DECISION_POLICY_IDS: ",".join(sorted(policy_ids)),
        }
        instruments = self._telemetry._instruments
        instruments.decisions.add(1, metric_attributes)
        instruments.decision_duration.record(seconds, metric_attributes)
        span = self._span
        if not span.is_recording():
            return
        span.set_attribute(sc.ATTR_DECISION_EFFECT, effect)
        span.set_attribute(sc.ATTR_DECISION_ID, decision.decision_id)
        span.set_attribute(sc.ATTR_DECISION_POLICY_IDS, policy_ids)
        span.set_attribute(sc.ATTR_POLICY_HASH, decision.policy_hash)
        resource = _entity_uid((decision.request or {}).get("resource"))
        if resource is not None:
            span.set_attribute(sc.ATTR_RESOURCE, resource)
        end = time.time_ns()
        child = self._telemetry._tracer.start_span(
            sc.SPAN_DECIDE,
            context=trace.set_span_in_context(span),
            kind=SpanKind.INTERNAL,
            start_time=end - max(0, int(seconds * 1e9)),
            attributes={
                sc.ATTR_DECISION_EFFECT: effect,
                sc.ATTR_DECISION_ID: decision.decision_id,
                sc.ATTR_DECISION_POLICY_IDS: policy_ids,
                sc.ATTR_DECISION_REASONS: list(decision.reasons),
                sc.ATTR_POLICY_HASH: decision.policy_hash,
            },
        )
        if resource is not None:
            child.set_attribute(sc.ATTR_RESOURCE, resource)
        child.end(end_time=end)

    @fail_open
    def recorded(self, receipt_seq: int, leaf_hash_hex: str) -> None:
        """Link the span to its decision-log entry: sequence number and RFC 6962 leaf hash."""
        if self._span.is_recording():
            self._span.set_attribute(sc.ATTR_LOG_SEQ, receipt_seq)
            self._span.set_attribute(sc.ATTR_LOG_LEAF_HASH, leaf_hash_hex)

    @fail_open
    def ids(self) -> tuple[str, str] | None:
        """The span's W3C trace id (32 hex) and span id (16 hex); None when not recorded."""
        return hex_ids(self._span)

    @fail_open
    def digested(self, *, args: str | None = None, result: str | None = None) -> None:
        """Put the SHA-256 digests (hex) of the arguments and the result on the span."""
        if self._span.is_recording():
            if args is not None:
                self._span.set_attribute(sc.ATTR_ARGS_DIGEST, args)
            if result is not None:
                self._span.set_attribute(sc.ATTR_RESULT_DIGEST, result)

    @fail_open
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
        :func:`error_type_of` for ``error``, :data:`sc.ERROR_DENIED` by default for ``denied``.
        ``resources`` are Cedar entity uids and ``labels`` data label names: never values.
        """
        self._finished = True
        span = self._span
        if not span.is_recording():
            return
        if resources:
            span.set_attribute(sc.ATTR_DATA_RESOURCES, list(resources))
        if labels:
            span.set_attribute(sc.ATTR_DATA_LABELS, list(labels))
        if status == "success":
            span.set_attribute(sc.ATTR_OUTCOME, status)
        elif status == "denied":
            self._fail(error_type or sc.ERROR_DENIED, status)
        else:
            self._fail(error_type or sc.ERROR_TYPE_OTHER, "error")

    @fail_open
    def failure(self, exc: BaseException) -> None:
        """Record why the fence failed closed (the exception, as a span event): its text goes
        to the trace and the log only, never to the model."""
        if self._span.is_recording():
            self._span.record_exception(exc)

    @fail_open
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
        self._span.set_attribute(sc.ATTR_GEN_AI_TOOL_CALL_ARGUMENTS, text)
        if result is not None:
            self._span.set_attribute(sc.ATTR_GEN_AI_TOOL_CALL_RESULT, result)

    @fail_open
    def approval_requested(
        self, request_id: str, approvers: Sequence[str], expires_at: datetime
    ) -> None:
        """An approval request was raised for this call: a span event and a count."""
        self._telemetry._instruments.approvals_requested.add(
            1, {sc.ATTR_GEN_AI_TOOL_NAME: self._tool}
        )
        if self._span.is_recording():
            self._span.add_event(
                sc.EVENT_APPROVAL_REQUESTED,
                {
                    sc.ATTR_APPROVAL_REQUEST_ID: request_id,
                    sc.ATTR_APPROVAL_APPROVERS: list(approvers),
                    sc.ATTR_APPROVAL_EXPIRES_AT: expires_at.isoformat(),
                },
            )

    @fail_open
    def approval_answered(
        self, request_id: str, approver: str, outcome: str, waited_seconds: float
    ) -> None:
        """An approver answered (``outcome``: approved, rejected, edited …) after a wait."""
        attributes = {sc.ATTR_GEN_AI_TOOL_NAME: self._tool, sc.ATTR_APPROVAL_OUTCOME: outcome}
        instruments = self._telemetry._instruments
        instruments.approvals_answered.add(1, attributes)
        instruments.approval_wait.record(waited_seconds, attributes)
        if self._span.is_recording():
            self._span.add_event(
                sc.EVENT_APPROVAL_ANSWERED,
                {
                    sc.ATTR_APPROVAL_REQUEST_ID: request_id,
                    sc.ATTR_APPROVAL_APPROVER: approver,
                    sc.ATTR_APPROVAL_OUTCOME: outcome,
                    sc.ATTR_APPROVAL_WAIT: waited_seconds,
                },
            )

    @fail_open
    def approval_expired(self, request_id: str) -> None:
        """An approval request expired unanswered (which denies the call)."""
        self._telemetry._instruments.approvals_expired.add(
            1, {sc.ATTR_GEN_AI_TOOL_NAME: self._tool}
        )
        if self._span.is_recording():
            self._span.add_event(
                sc.EVENT_APPROVAL_EXPIRED, {sc.ATTR_APPROVAL_REQUEST_ID: request_id}
            )


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

    @fail_open
    def _start(self) -> None:
        if not self._enabled:
            return
        attributes: dict[str, Any] = {sc.ATTR_GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT}
        if self._agent:
            attributes[sc.ATTR_GEN_AI_AGENT_NAME] = self._agent
        if self._thread:
            attributes[sc.ATTR_GEN_AI_CONVERSATION_ID] = self._thread
        if self._provider:
            attributes[sc.ATTR_GEN_AI_PROVIDER_NAME] = self._provider
        # gen-ai-agent-spans.md: "invoke_agent {gen_ai.agent.name}", or "invoke_agent".
        name = f"{sc.SPAN_INVOKE_AGENT} {self._agent}" if self._agent else sc.SPAN_INVOKE_AGENT
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

    @fail_open
    def _close(self, exc: BaseException | None) -> None:
        token, self._token = self._token, None
        try:
            if exc is not None and self._span.is_recording():
                if is_bubble_up(exc):
                    self._span.set_attribute(sc.ATTR_INTERRUPTED, True)
                else:
                    kind = error_type_of(exc)
                    self._span.set_attribute(sc.ATTR_ERROR_TYPE, kind)
                    self._span.set_status(Status(StatusCode.ERROR, kind))
        finally:
            detach_and_end(token, self._span)

    @fail_open
    def ids(self) -> tuple[str, str] | None:
        """The run span's W3C trace id and span id (hex); None when not recorded."""
        return hex_ids(self._span)
