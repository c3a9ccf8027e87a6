"""Step spans and the fail-open helpers every telemetry call goes through.

:class:`TracingCallbackHandler` opens an ``agentfence.step {node}`` span per LangGraph step
from LangChain's callbacks; tool spans find their step through the run config.
:func:`render_tree` prints finished spans for people reading a trace without a backend.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from agentfence._semconv import (
    ATTR_DATA_RESOURCES,
    ATTR_DECISION_EFFECT,
    ATTR_DECISION_POLICY_IDS,
    ATTR_ERROR_TYPE,
    ATTR_GEN_AI_CONVERSATION_ID,
    ATTR_GEN_AI_TOOL_CALL_ID,
    ATTR_INTERRUPTED,
    ATTR_LOG_SEQ,
    ATTR_STEP_INDEX,
    ATTR_STEP_NODE,
    SPAN_STEP,
)

_logger = logging.getLogger("agentfence.tracing")

_P = ParamSpec("_P")
_R = TypeVar("_R")

_reported: set[str] = set()
_reported_lock = threading.Lock()


def report_failure(where: str) -> None:
    """Log a telemetry failure: a warning the first time per place, then at debug level."""
    with _reported_lock:
        first = where not in _reported
        _reported.add(where)
    level = logging.WARNING if first else logging.DEBUG
    _logger.log(level, "agentfence telemetry failed in %s (ignored)", where, exc_info=True)


def fail_open(method: Callable[_P, _R]) -> Callable[_P, _R | None]:
    """Make a telemetry method return ``None`` instead of raising.

    Fail open: this is the one place where telemetry errors are swallowed. Observing a call
    must never change what the call does, so an exporter, processor or provider that raises
    is logged (see :func:`report_failure`) and the caller carries on.
    """

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        try:
            return method(*args, **kwargs)
        except Exception:
            report_failure(method.__qualname__)
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


def is_bubble_up(exc: BaseException | None) -> bool:
    """True for LangGraph's GraphBubbleUp (an interrupt, not a failure), found by class name
    so that this module does not import LangGraph."""
    return exc is not None and any(k.__name__ == "GraphBubbleUp" for k in type(exc).__mro__)


def hex_ids(span: Span) -> tuple[str, str] | None:
    if not span.is_recording():
        return None
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    # W3C Trace Context: 32 and 16 lowercase hex digits.
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def detach_and_end(token: Token[otel_context.Context] | None, span: Span) -> None:
    """Restore the context that was current before the span, then end the span."""
    try:
        if token is not None:
            otel_context.detach(token)
    finally:
        span.end()


@dataclass
class _Run:
    """One LangChain run the step tracker follows: what its children nest under."""

    context: otel_context.Context
    key: tuple[str, str, int] | None
    span: Span | None


class StepSpans:
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
            if is_bubble_up(error):
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

    def __init__(self, steps: StepSpans) -> None:
        super().__init__()
        self._steps = steps

    @fail_open
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

    @fail_open
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

    @fail_open
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
