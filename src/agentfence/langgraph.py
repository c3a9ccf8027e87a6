"""The LangGraph and LangChain side of the fence: tool-call requests, results, middleware.

This is the only module that imports LangGraph or LangChain types, so the rest of the
package speaks of calls, decisions and records. A request is read once, here, by
:func:`describe`: everything after it takes the :class:`ToolCall` it returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NotRequired, Protocol

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolRuntime
from langgraph.types import Command, interrupt

from agentfence._ids import private_copy
from agentfence.config import (
    CONFIG_AGENT,
    CONFIG_ON_HOLD,
    CONFIG_PRINCIPAL,
    CONFIG_SEED,
    CONFIG_THREAD,
)
from agentfence.labels import METADATA_KEY
from agentfence.records import canonical_or_repr

if TYPE_CHECKING:
    from agentfence.decision import Decision
    from agentfence.records import OutcomeRecord

__all__ = [
    "FenceMiddleware",
    "GraphBubbleUp",
    "ToolCall",
    "ToolCallRequest",
    "ToolCallWrapper",
    "describe",
    "interrupt",
]

ToolResult = ToolMessage | Command[Any]
Execute = Callable[[ToolCallRequest], ToolResult]
AsyncExecute = Callable[[ToolCallRequest], Awaitable[ToolResult]]


class ToolCallWrapper(Protocol):
    """What the middleware hands each tool call to: a :class:`~agentfence.fence.Fence`."""

    def wrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> ToolResult:
        """Decide and record the call, then run it through ``execute`` if allowed."""
        ...

    async def awrap_tool_call(self, request: ToolCallRequest, execute: AsyncExecute) -> ToolResult:
        """The async form of :meth:`wrap_tool_call`."""
        ...

    def review_turn(self, calls: list[ToolCall]) -> dict[str, Any]:
        """Hold the calls of one model turn that policy holds, in one interrupt; return the
        answers given, by approval request id."""
        ...


ANSWERS_KEY = "agentfence_answers"
"""The agent state key where a batched interrupt's answers wait for the tool calls."""


class _FenceState(AgentState[Any]):
    """The agent state with the answers a batched interrupt was resumed with."""

    agentfence_answers: NotRequired[Annotated[dict[str, Any], PrivateStateAttr]]


class FenceMiddleware(AgentMiddleware):
    """``create_agent`` middleware that puts every tool call through a :class:`Fence`.

    Made by :meth:`Fence.middleware`; pass it in ``create_agent(..., middleware=[...])``.
    """

    def __init__(self, fence: ToolCallWrapper) -> None:
        super().__init__()
        self.fence = fence

    @property
    def name(self) -> str:
        """The middleware's name in the agent graph."""
        return "agentfence"

    def wrap_tool_call(self, request: ToolCallRequest, handler: Execute) -> ToolResult:
        """Decide, record, then run the tool only if policy allows it."""
        return self.fence.wrap_tool_call(request, handler)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: AsyncExecute) -> ToolResult:
        """The async form of :meth:`wrap_tool_call`."""
        return await self.fence.awrap_tool_call(request, handler)


class BatchingFenceMiddleware(FenceMiddleware):
    """:class:`FenceMiddleware` that holds every held call of a model turn in one interrupt.

    Its ``after_model`` hook decides the turn's tool calls before any runs (deciding only:
    each call is decided and recorded once, when it runs) and raises one ``HITLRequest``
    with an action per held call. The answers it is resumed with are kept in the agent state
    (``agentfence_answers``, private), where each call's :meth:`wrap_tool_call` takes its own
    and checks it. Made by :meth:`Fence.middleware` in ``interrupt_mode="batched"``.
    """

    state_schema = _FenceState

    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Raise one interrupt for the turn's held calls; keep the answers for the calls."""
        messages = state.get("messages") if isinstance(state, Mapping) else None
        last = next((m for m in reversed(messages or []) if isinstance(m, AIMessage)), None)
        calls = planned_calls(last.tool_calls, state, get_config()) if last is not None else []
        answers = self.fence.review_turn(calls) if calls else {}
        # Always written, so no earlier turn's answers linger (they name other requests, and
        # would be refused as unbound, but a call must find only its own turn's).
        if not answers and not (isinstance(state, Mapping) and state.get(ANSWERS_KEY)):
            return None
        return {ANSWERS_KEY: answers}

    async def aafter_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """The async form of :meth:`after_model` (the store is used in a worker thread)."""
        return await asyncio.to_thread(self.after_model, state, runtime)


@dataclass(frozen=True)
class ToolCall:
    """One tool-call request, read once at the LangGraph edge (:func:`describe`).

    ``principal``, ``agent``, ``seed`` and ``on_hold`` are what the run's ``configurable``
    says, unchecked: the fence checks them. ``thread`` and ``step`` follow one rule for every
    use (the facts, the span, a failure's record): the thread is ``configurable["thread_id"]``,
    else ``metadata["thread_id"]``, else ``""``; the step is ``metadata["langgraph_step"]``.
    """

    request: ToolCallRequest
    tool: str
    args: Any
    call_id: str | None
    config: Mapping[str, Any]
    thread: str
    step: int
    principal: Any
    agent: str | None
    seed: Any
    on_hold: Any
    description: str | None = None
    """The tool's own description (for the span), when the request carries the tool."""

    @property
    def state(self) -> Any:
        """The graph state the call was made in (its messages are what the run has seen)."""
        return self.request.state


def describe(request: ToolCallRequest) -> ToolCall:
    """Read a LangGraph tool-call request once; never raises (the fence checks the values)."""
    call = request.tool_call
    runtime = getattr(request, "runtime", None)
    config = getattr(runtime, "config", None) or {}
    configurable = config.get("configurable") or {}
    metadata = config.get("metadata") or {}
    thread = configurable.get(CONFIG_THREAD) or metadata.get("thread_id") or ""
    step = metadata.get("langgraph_step", 0)
    agent = configurable.get(CONFIG_AGENT)
    description = getattr(getattr(request, "tool", None), "description", None)
    return ToolCall(
        request=request,
        tool=str(call.get("name", "")),
        args=call.get("args", {}),
        call_id=call.get("id"),
        config=config,
        thread=str(thread),
        step=step if isinstance(step, int) and not isinstance(step, bool) else 0,
        principal=configurable.get(CONFIG_PRINCIPAL),
        agent=str(agent) if agent else None,
        seed=configurable.get(CONFIG_SEED),
        on_hold=configurable.get(CONFIG_ON_HOLD),
        description=description if isinstance(description, str) and description else None,
    )


def outside_request(
    tool: str, args: Mapping[str, Any], call_id: str, configurable: Mapping[str, Any]
) -> ToolCallRequest:
    """A request for a call that did not come from a graph (the MCP proxy's ``tools/call``).

    The same pipeline then decides, records and runs it. It has no graph state: the run has
    seen no messages, so no argument has a trusted source. ``configurable`` holds what a
    run's config would (principal, thread, ``agentfence_on_hold``).
    """
    config: dict[str, Any] = {"configurable": dict(configurable)}
    state: dict[str, Any] = {"messages": []}
    runtime: ToolRuntime[Any, Any] = ToolRuntime(
        state=state,
        context=None,
        config=config,  # type: ignore[arg-type]  # RunnableConfig is a TypedDict
        stream_writer=lambda _chunk: None,
        tool_call_id=call_id,
        store=None,
    )
    return ToolCallRequest(
        tool_call={"name": tool, "args": dict(args), "id": call_id, "type": "tool_call"},
        tool=None,
        state=state,
        runtime=runtime,
    )


def tool_result(content: Any, *, name: str, call_id: str, error: bool) -> ToolMessage:
    """A tool's result as LangGraph would hold it (for a call run outside a graph)."""
    return ToolMessage(
        content=content, name=name, tool_call_id=call_id, status="error" if error else "success"
    )


def planned_calls(tool_calls: list[Any], state: Any, config: Mapping[str, Any]) -> list[ToolCall]:
    """A model turn's tool calls as the tools node will see them, read from ``after_model``.

    The tools node runs one step after the hook that reads the turn, so that is the step the
    calls are described with; the thread, principal and the rest come from the same config.
    """
    metadata = dict(config.get("metadata") or {})
    step = metadata.get("langgraph_step")
    if isinstance(step, int) and not isinstance(step, bool):
        metadata["langgraph_step"] = step + 1
    runtime: Any = _Runtime({**config, "metadata": metadata})  # describe reads .config only
    return [
        describe(ToolCallRequest(tool_call=call, tool=None, state=state, runtime=runtime))
        for call in tool_calls
    ]


@dataclass(frozen=True)
class _Runtime:
    config: Mapping[str, Any]


def bound_request(request: ToolCallRequest, sent: Mapping[str, Any] | None) -> ToolCallRequest:
    """The request with a fresh copy of the arguments the fence bound, for the tool to run.

    The tool and anything after the fence work on their own copy, so nothing they change
    alters what was decided and recorded.
    """
    if sent is None:
        return request
    args = private_copy(sent if type(sent) is dict else dict(sent))
    return request.override(tool_call={**request.tool_call, "args": args})


def refusal(call: ToolCall, text: str, decision: Decision | None) -> ToolMessage:
    """The error result the model sees instead of a tool's output."""
    artifact: dict[str, Any] = {"agentfence": {"refused": True}}
    if decision is not None:
        artifact["agentfence"].update(
            decision_id=decision.decision_id,
            effect=decision.effect.value,
            policy_ids=list(decision.policy_ids),
        )
    return ToolMessage(
        content=text,
        name=call.tool,
        tool_call_id=call.call_id or "",
        status="error",
        artifact=artifact,
    )


def responded(call: ToolCall, message: str, decision: Decision, approver: str) -> ToolMessage:
    """The result the model sees when an approver answered in the tool's place (``respond``):
    their message, as a successful result; the tool did not run."""
    return ToolMessage(
        content=message,
        name=call.tool,
        tool_call_id=call.call_id or "",
        status="success",
        artifact={
            "agentfence": {
                "responded": True,
                "approver": approver,
                "decision_id": decision.decision_id,
            }
        },
    )


def fail_closed_text(decision_id: str) -> str:
    """What the model is told when a call could not be decided and recorded: a fixed text
    and the decision id, never the error's own text."""
    return (
        "agentfence did not run this call: it could not be decided and recorded (fail "
        "closed). The cause is in the decision log and the trace; do not retry it unchanged "
        f"[decision {decision_id}]"
    )


def result_digest(result: ToolResult) -> tuple[str, str, bytes]:
    """The status (``success``/``error``), SHA-256 hex digest and bytes of a result's content.

    The bytes are RFC 8785 canonical JSON of the content when it is JSON, else its text.
    """
    if isinstance(result, ToolMessage):
        status = "error" if result.status == "error" else "success"
        content: Any = result.content
    else:
        status, content = "success", repr(result)
    data = canonical_or_repr(content)  # content that is not JSON: its text form
    return status, hashlib.sha256(data).hexdigest(), data


def result_messages(result: ToolResult, call_id: str | None) -> list[ToolMessage]:
    """The tool messages a result puts in the state for this call.

    The ``ToolMessage`` itself, or those of a ``Command``'s ``update["messages"]`` that answer
    ``call_id``.
    """
    if isinstance(result, ToolMessage):
        return [result]
    update = getattr(result, "update", None)
    messages = update.get("messages") if isinstance(update, Mapping) else None
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, ToolMessage) and m.tool_call_id == call_id]


def mark_result(
    result: ToolResult,
    call_id: str | None,
    facts: Mapping[str, Any],
    content: Callable[[Any], Any] | None = None,
) -> ToolResult:
    """The result with the fence's facts on its tool messages (and their content replaced).

    ``facts`` go in ``response_metadata["agentfence"]``, replacing anything a tool put there:
    the labels a message carries are the fence's to say. ``content`` maps a message's content
    to what the model may see (redaction).
    """

    def marked(message: ToolMessage) -> ToolMessage:
        metadata = {**(message.response_metadata or {}), METADATA_KEY: dict(facts)}
        update: dict[str, Any] = {"response_metadata": metadata}
        if content is not None:
            update["content"] = content(message.content)
        return message.model_copy(update=update)

    if isinstance(result, ToolMessage):
        return marked(result)
    update = getattr(result, "update", None)
    messages = update.get("messages") if isinstance(update, Mapping) else None
    if not isinstance(update, Mapping) or not isinstance(messages, list):
        return result
    replaced = [
        marked(m) if isinstance(m, ToolMessage) and m.tool_call_id == call_id else m
        for m in messages
    ]
    return dataclasses.replace(result, update={**update, "messages": replaced})


def recorded_result(call: ToolCall, outcome: OutcomeRecord, content: bytes | None) -> ToolMessage:
    """The result a call returned when it ran before, rebuilt from the log (not run again).

    It carries the labels recorded with the outcome, so a replayed result still counts as
    data the run has seen; its content is the redacted one the model saw the first time.
    """
    if content is None:
        text: Any = (
            f"this call already ran (decision {outcome.decision_id}); its result is not available"
        )
    else:
        try:
            text = json.loads(content)
        except ValueError:
            text = content.decode("utf-8", "replace")
    if not isinstance(text, str | list):
        text = json.dumps(text)
    return ToolMessage(
        content=text,
        name=call.tool,
        tool_call_id=call.call_id or "",
        status="error" if outcome.status == "error" else "success",
        artifact={"agentfence": {"replayed": True, "decision_id": outcome.decision_id}},
        response_metadata={
            METADATA_KEY: {
                "labels": list(outcome.labels),
                "decision_id": outcome.decision_id,
                "redactions": [r.model_dump() for r in outcome.redactions],
            }
        },
    )


def waiting_ids(snapshot: Any) -> list[str] | None:
    """The approval request ids a paused thread's state snapshot waits on.

    ``None`` when the thread is not paused, or is paused by something other than the fence.
    """
    interrupts = list(getattr(snapshot, "interrupts", ()) or ())
    if not interrupts:
        return None
    ids: list[str] = []
    for item in interrupts:
        value = getattr(item, "value", None)
        fields = [value.get("agentfence")] if isinstance(value, Mapping) else [None]
        if isinstance(value, Mapping) and fields == [None]:  # batched: one per action
            actions = value.get("action_requests")
            fields = [
                a.get("agentfence") if isinstance(a, Mapping) else None for a in actions or []
            ]
        if not fields or not all(
            isinstance(f, Mapping) and isinstance(f.get("request_id"), str) for f in fields
        ):
            return None
        ids.extend(f["request_id"] for f in fields)  # type: ignore[index]  # checked above
    return ids


def resume_for(snapshot: Any, value: Any) -> Command[Any]:
    """``Command(resume=...)`` giving ``value`` to every interrupt the snapshot waits on."""
    interrupts = list(getattr(snapshot, "interrupts", ()) or ())
    return Command(resume={item.id: value for item in interrupts})
