"""Holds: a call policy holds for a human pauses here, and its answer is checked on resume.

:class:`Holds` runs when policy says REQUIRE_APPROVAL: it files the approval request, raises
LangGraph's ``interrupt()``, and on resume accepts the answer only after
:func:`~agentfence.approvals.check_answer` and the store's single-use ``consume``; an edit, or
a policy change while waiting, is decided again. Every answer that reaches it, accepted or
not, is put on the log. It also drives a graph through its pauses (:meth:`Holds.run`).

It is given its collaborators (the approvals store, the active policy, the log's append and
find-outcome, usage release, the clock and telemetry) rather than the whole fence, so what a
hold may touch is visible in its constructor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentfence._hitl import (
    InterruptMode,
    hitl_request,
    response_schema,
    single_request,
    tool_approval_request,
    turn_answers,
)
from agentfence._semconv import ERROR_APPROVAL_REQUIRED
from agentfence.approvals import (
    ANSWER_KINDS,
    EXPIRED_FORMAT,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    ApproverRegistry,
    Picked,
    StoredApproval,
    answers_bundle,
    approve_decision,
    check_answer,
    diff_args,
    pick_answer,
    request_for,
    signed_envelope,
)
from agentfence.config import CONFIG_AGENT, CONFIG_ON_HOLD, CONFIG_THREAD, check_on_hold
from agentfence.decision import CallFacts, Decision, Effect
from agentfence.langgraph import (
    ANSWERS_KEY,
    GraphBubbleUp,
    ToolCall,
    ToolCallRequest,
    ToolResult,
    bound_request,
    interrupt,
    recorded_result,
    refusal,
    responded,
    resume_for,
    waiting_ids,
)
from agentfence.policy import PolicyEngine
from agentfence.records import (
    ApprovalAnswerRecord,
    ApprovalRequestRecord,
    Blob,
    LogRecord,
    OutcomeRecord,
    canonical_or_repr,
)
from agentfence.tracing import Telemetry, ToolCallSpan

_logger = logging.getLogger("agentfence.holds")


@dataclass(frozen=True)
class Run:
    """The pipeline's verdict that the tool runs: under which decision, with which request.

    ``facts`` describe exactly what runs (for an edited call, the edit as decided again);
    ``request`` carries a fresh copy of their arguments as sent (:func:`bound_request`).
    """

    decision: Decision
    request: ToolCallRequest
    facts: CallFacts
    call: ToolCall

    @classmethod
    def of(cls, decision: Decision, call: ToolCall, facts: CallFacts) -> Run:
        """Run ``facts`` under ``decision``: the tool gets its own copy of their arguments."""
        return cls(decision, bound_request(call.request, facts.sent), facts, call)


_PAST = {
    "approve": "approved",
    "edit": "edited and approved",
    "reject": "rejected",
    "respond": "answered in the tool's place",
}


class Holds:
    """Holds calls for approvers and resolves their answers, for one fence."""

    def __init__(
        self,
        *,
        approvals: ApprovalStore,
        policy: Callable[[], tuple[PolicyEngine, ApproverRegistry]],
        append: Callable[[LogRecord, Sequence[Blob]], object],
        record_decision: Callable[[Decision, ToolCallSpan], object],
        find_outcome: Callable[[str], tuple[OutcomeRecord, bytes | None] | None],
        release: Callable[[str], None],
        clock: Callable[[], int],
        telemetry: Telemetry,
        agent: str,
        expiry_seconds: int,
        on_hold: str,
        notify_held: Callable[[ApprovalRequest], None] | None = None,
        interrupt_mode: InterruptMode = "batched",
    ) -> None:
        self._approvals = approvals
        self._policy = policy
        self._append = append
        self._record_decision = record_decision
        self._find_outcome = find_outcome
        self._release = release
        self._clock = clock
        self._telemetry = telemetry
        self._agent = agent
        self._expiry = expiry_seconds
        self._on_hold_default = on_hold
        self._notify_held = notify_held
        self._mode = interrupt_mode

    def run(
        self,
        graph: Any,
        input: Any,
        config: Mapping[str, Any],
        *,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        on_pending: Callable[[list[StoredApproval]], None] | None = None,
    ) -> Any:
        """:meth:`Fence.run <agentfence.fence.Fence.run>`: run a graph through its pauses."""
        deadline = None if timeout is None else time.monotonic() + timeout
        announced: set[str] = set()
        traced = self._traced(config)
        with self._run_span(config):  # one invoke_agent span, approval waits included
            result = graph.invoke(input, traced)
            while True:
                snapshot = graph.get_state(config)
                waiting = self._waiting(waiting_ids(snapshot))
                if waiting is None:  # done, or paused by something else than the fence
                    return result
                fresh = self._fresh(waiting, announced)
                if on_pending is not None and fresh:
                    on_pending(fresh)
                if (command := self._command(snapshot, waiting)) is not None:
                    result = graph.invoke(command, traced)
                elif deadline is not None and time.monotonic() >= deadline:
                    return result
                else:
                    time.sleep(poll_interval)

    async def arun(
        self,
        graph: Any,
        input: Any,
        config: Mapping[str, Any],
        *,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        on_pending: Callable[[list[StoredApproval]], Any] | None = None,
    ) -> Any:
        """:meth:`Fence.arun <agentfence.fence.Fence.arun>`: :meth:`run` over ``ainvoke``
        (the store is read in a worker thread; ``on_pending`` may be a coroutine function)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        announced: set[str] = set()
        traced = self._traced(config)
        with self._run_span(config):
            result = await graph.ainvoke(input, traced)
            while (snapshot := await graph.aget_state(config)) and (
                waiting := await asyncio.to_thread(self._waiting, waiting_ids(snapshot))
            ) is not None:
                fresh = self._fresh(waiting, announced)
                if (
                    on_pending is not None
                    and fresh
                    and inspect.isawaitable(answered := on_pending(fresh))
                ):
                    await answered
                if (command := self._command(snapshot, waiting)) is not None:
                    result = await graph.ainvoke(command, traced)
                elif deadline is not None and time.monotonic() >= deadline:
                    break
                else:
                    await asyncio.sleep(poll_interval)
            return result

    def resume(self, graph: Any, config: Mapping[str, Any]) -> Any | None:
        """:meth:`Fence.resume <agentfence.fence.Fence.resume>`: resume a paused thread once."""
        snapshot = graph.get_state(config)
        command = self._command(snapshot, self._waiting(waiting_ids(snapshot)))
        return None if command is None else graph.invoke(command, config)

    async def aresume(self, graph: Any, config: Mapping[str, Any]) -> Any | None:
        """:meth:`Fence.aresume <agentfence.fence.Fence.aresume>`: :meth:`resume`, async."""
        snapshot = await graph.aget_state(config)
        waiting = await asyncio.to_thread(self._waiting, waiting_ids(snapshot))
        command = self._command(snapshot, waiting)
        return None if command is None else await graph.ainvoke(command, config)

    def _command(self, snapshot: Any, waiting: Sequence[StoredApproval] | None) -> Any | None:
        """The ``Command`` resuming a paused thread with the answers ready (``None``: none)."""
        resume = self.resume_value(waiting or [])
        return None if resume is None else resume_for(snapshot, resume)

    def resume_value(self, waiting: Sequence[StoredApproval]) -> dict[str, Any] | None:
        """:meth:`Fence.resume_value <agentfence.fence.Fence.resume_value>`."""
        now = self._clock()
        # A request whose answer an earlier pass used counts as ready: the thread must move
        # on, and the call, seeing its answer used, never pauses for it again (hold()).
        ready = [w for w in waiting if w.status(now) in ("answered", "expired", "used")]
        if not ready:
            return None
        return answers_bundle(ready, now_us=now)

    def _traced(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The run's config with the step-span callback handler added."""
        handler = self._telemetry.callback_handler()
        return {**config, "callbacks": _with(config.get("callbacks"), handler)}

    def _run_span(self, config: Mapping[str, Any]) -> Any:
        configurable = config.get("configurable") or {}
        return self._telemetry.run(
            configurable.get(CONFIG_AGENT) or self._agent, configurable.get(CONFIG_THREAD)
        )

    def _fresh(self, waiting: list[StoredApproval], announced: set[str]) -> list[StoredApproval]:
        """The pending requests not announced to ``on_pending`` yet (now marked announced)."""
        now = self._clock()
        fresh = [
            w
            for w in waiting
            if w.status(now) == "pending" and w.request.request_id not in announced
        ]
        announced.update(w.request.request_id for w in fresh)
        return fresh

    def _waiting(self, ids: list[str] | None) -> list[StoredApproval] | None:
        """The stored requests a paused thread waits on (``None``: not paused by the fence)."""
        if ids is None:
            return None
        waiting: list[StoredApproval] = []
        for request_id in ids:
            stored = self._approvals.get(request_id)
            if stored is None:
                return None
            waiting.append(stored)
        return waiting

    def hold(
        self, call: ToolCall, facts: CallFacts, decision: Decision, span: ToolCallSpan
    ) -> Run | ToolResult:
        """Pause for an approver; on resume, run the call only on a good, unused answer.

        A run that takes no approvals (``on_hold="deny"``) has the call refused at once.
        """
        fresh = request_for(decision, now_us=self._clock(), default_expiry=self._expiry)
        if self._on_hold(call) == "deny":
            return self._refuse_unattended(call, fresh, decision, span)
        stored = self._approvals.create(fresh)  # the first pass's request, on re-execution
        if stored.action_digest != fresh.action_digest:
            # Another call holds this request id (the same tool call id with other
            # arguments, or for another principal): an answer to that call must not run this one.
            return self._refuse_duplicate(call, stored, decision, span)
        self._record_request(stored, expires_us=stored.expires_us)
        if self._notify_held is not None and stored.created_us == fresh.created_us:
            self._notify_held(stored)  # queued only, never raises: notifications fail open
        done = self._find_outcome(decision.decision_id)
        span.approval_requested(stored.request_id, stored.approvers, _datetime(stored.expires_us))
        if self._on_hold(call) == "queue":
            if done is not None:  # it ran under its approval already: not twice
                return recorded_result(call, *done)
            queued = self._queued(call, stored, decision, span)
            if not isinstance(queued, dict):
                return queued
            picked = pick_answer(queued, stored.request_id)
            if picked is None:  # not this request's answer: nothing runs
                return refusal(call, f"no answer to request {stored.request_id}", decision)
        else:
            picked = self._batched(call, stored.request_id) or self._used_answer(stored)
            while picked is None:
                # The resume value may be a bundle of several requests' answers (one resume
                # serves every call paused in the same step) or this request's answer alone.
                if self._mode == "per_call":
                    delivered = interrupt(
                        tool_approval_request(stored), response_schema=response_schema(stored)
                    )
                elif self._mode == "request_per_call":
                    delivered = interrupt(single_request(stored))
                else:
                    delivered = interrupt(hitl_request([stored]))
                picked = pick_answer(delivered, stored.request_id)
        if done is not None:
            # This call already ran on an earlier pass: its answer was used then.
            self._answer_record(
                stored,
                picked.payload,
                "replayed",
                "the node was re-executed; the call had already run, so its "
                "recorded result is returned and the tool is not run again",
            )
            return recorded_result(call, *done)
        verdict = self._resolve(call, facts, decision, stored, picked.payload, span)
        if isinstance(verdict, Run):
            return verdict
        span.finished("denied", error_type=ERROR_APPROVAL_REQUIRED)
        return verdict

    def _queued(
        self, call: ToolCall, stored: ApprovalRequest, decision: Decision, span: ToolCallSpan
    ) -> dict[str, Any] | ToolResult:
        """``on_hold="queue"``: the answers bundle once the request is answered or expired;
        until then a refusal saying the call is held (marked ``held`` in its artifact)."""
        current = self._approvals.get(stored.request_id)
        if current is not None and current.status(self._clock()) == "used":
            span.finished("denied", error_type=ERROR_APPROVAL_REQUIRED)
            return refusal(
                call,
                (
                    f"request {stored.request_id} for {stored.tool!r} was answered and its "
                    "answer used already; the call does not run again under it. Make it as "
                    "a new call to ask again"
                ),
                decision,
            )
        ready = self.resume_value([current]) if current is not None else None
        if ready is not None:
            return ready
        self._release(decision.decision_id)  # held calls count once they run
        span.finished("denied", error_type=ERROR_APPROVAL_REQUIRED)
        groups = ", ".join(stored.approvers) or "an approver"
        held = refusal(
            call,
            (
                f"held, waiting for an approver (request id {stored.request_id}): the call to "
                f"{stored.tool!r} needs approval ({groups}: {'; '.join(stored.reasons)}). "
                "It has not run. Once it is answered (agentfence approvals), make the same "
                "call again to run it or to hear the answer"
            ),
            decision,
        )
        held.artifact["agentfence"]["held"] = stored.request_id
        return held

    def review_turn(
        self, calls: Sequence[tuple[ToolCall, Callable[[ToolCall], Decision]]]
    ) -> dict[str, Any]:
        """:meth:`Fence.review_turn <agentfence.fence.Fence.review_turn>`: one interrupt for
        the held calls of a turn, each decided beforehand by its ``decide`` (which records
        nothing); the answers given, by request id."""
        held: list[ApprovalRequest] = []
        for call, decide in calls:
            decision: Decision | None = None
            try:
                decision = decide(call)
            except GraphBubbleUp:
                raise
            except Exception:  # fail closed where it counts: the call's own pass refuses it
                _logger.debug("could not decide %s ahead of its run", call.call_id, exc_info=True)
            if decision is None or decision.effect is not Effect.REQUIRE_APPROVAL:
                continue
            if self._on_hold(call) == "deny":
                continue
            fresh = request_for(decision, now_us=self._clock(), default_expiry=self._expiry)
            stored = self._approvals.create(fresh)
            if self._notify_held is not None and stored.created_us == fresh.created_us:
                self._notify_held(stored)  # queued only, never raises: notifications fail open
            if (
                stored.action_digest == fresh.action_digest
                and stored not in held
                and self._used_answer(stored) is None
            ):
                self._record_request(stored, expires_us=stored.expires_us)  # once: deduped
                held.append(stored)  # else left to the call itself (it refuses, or replays)
        answers: dict[str, Any] = {}
        while remaining := [r for r in held if r.request_id not in answers]:
            # Resumed with answers for some only: the rest are asked again, in one interrupt.
            answers.update(turn_answers(interrupt(hitl_request(remaining)), remaining))
        return answers

    def _used_answer(self, stored: ApprovalRequest) -> Picked | None:
        """The answer an earlier pass of this call used, delivered again instead of pausing.

        Calls of one step run side by side: a pass may use one call's answer and run it while
        a sibling's pause stops the step. Paused again for that request, the thread would wait
        forever for an answer already given; given it again, the call returns what its earlier
        pass recorded (it is single use, so it never runs twice).
        """
        current = self._approvals.get(stored.request_id)
        if current is None or current.answer is None or current.status(self._clock()) != "used":
            return None
        return Picked(current.answer)

    def _batched(self, call: ToolCall, request_id: str) -> Picked | None:
        """This request's answer from the turn's batched interrupt, if it had one."""
        state = call.state
        answers = state.get(ANSWERS_KEY) if isinstance(state, Mapping) else None
        if isinstance(answers, Mapping) and request_id in answers:
            return Picked(answers[request_id])
        return None

    def _refuse_duplicate(
        self, call: ToolCall, stored: ApprovalRequest, decision: Decision, span: ToolCallSpan
    ) -> ToolResult:
        span.finished("denied", error_type=ERROR_APPROVAL_REQUIRED)
        return refusal(
            call,
            (
                f"the call to {stored.tool!r} needs approval, but its tool call id "
                f"{stored.tool_call_id!r} is already held for a different call (request "
                f"{stored.request_id}); an approval covers only the call it was asked for, so "
                "it was not run. Make it as a new call, with an id of its own"
            ),
            decision,
        )

    def _resolve(
        self,
        call: ToolCall,
        facts: CallFacts,
        decision: Decision,
        stored: ApprovalRequest,
        payload: Any,
        span: ToolCallSpan,
    ) -> Run | ToolResult:
        engine, registry = self._policy()
        now = self._clock()
        waited = max(0.0, (now - stored.created_us) / 1_000_000)
        if isinstance(payload, Mapping) and payload.get("format") == EXPIRED_FORMAT:
            if stored.expired(now):
                self._approvals.mark_expired(stored.request_id, now_us=now)
                self._answer_record(stored, payload, "expired", "no approver answered in time")
                span.approval_expired(stored.request_id)
                return refusal(
                    call,
                    (
                        f"the call to {stored.tool!r} needed approval and no approver answered "
                        f"before it expired; it was not run [request {stored.request_id}]"
                    ),
                    decision,
                )
            payload = {"format": "agentfence.malformed", "note": "expired marker too early"}
        try:
            envelope = signed_envelope(payload, tool=stored.tool)
            verified = check_answer(
                envelope,
                stored,
                engine=engine,
                registry=registry,
                now_us=now,
                answered_us=self._handed_in(stored.request_id, envelope),
            )
        except ApprovalRefused as refused:
            if refused.code == "expired":
                self._approvals.mark_expired(stored.request_id, now_us=now)
            self._answer_record(stored, payload, "refused", str(refused))
            return refusal(
                call,
                (
                    f"the approval for {stored.tool!r} was refused: {refused}. The call was not "
                    f"run [request {stored.request_id}]"
                ),
                decision,
            )
        if not self._approvals.consume(stored.request_id, verified.digest, now_us=now):
            # Used by an earlier pass of this very call (an async ToolNode re-executes a call
            # whose sibling interrupted, while the first pass may still be recording): that
            # pass ran it, so its recorded result is returned; the tool never runs twice.
            done = self._outcome_of_earlier_pass(stored.decision_id)
            if done is not None:
                self._answer_record(
                    stored, payload, "replayed", "the call ran on an earlier pass with this answer"
                )
                return recorded_result(call, *done)
            self._answer_record(stored, payload, "refused", "this approval was already used")
            return refusal(
                call,
                (
                    f"the approval for {stored.tool!r} was already used; an approval runs a call "
                    f"once. The call was not run [request {stored.request_id}]"
                ),
                decision,
            )
        answer = verified.answer
        span.approval_answered(stored.request_id, str(verified.approver), answer.decision, waited)
        if answer.decision == "reject":
            self._answer_record(stored, payload, "accepted", "rejected by the approver")
            note = f": {answer.message.rstrip('.')}" if answer.message else ""
            return refusal(
                call,
                (
                    f"{verified.approver} rejected the call to {stored.tool!r}{note}. It was not "
                    f"run [request {stored.request_id}]"
                ),
                decision,
            )
        if answer.decision == "respond":
            self._answer_record(
                stored,
                payload,
                "accepted",
                f"{verified.approver} answered in the tool's place: {answer.message}",
            )
            return responded(call, answer.message or "", decision, str(verified.approver))
        run_args = dict(answer.edited_args or {}) if answer.decision == "edit" else stored.args
        diff: dict[str, Any] | None = None
        if answer.decision == "edit":
            diff = diff_args(stored.args, run_args)
        if answer.decision == "edit" or stored.policy_hash != engine.policy_hash:
            # An edit is decided again (it cannot launder a denied call), and so is any
            # call whose policies changed while it waited.
            again = engine.decide(
                dataclasses.replace(
                    facts,
                    args=run_args,
                    bound=None,
                    problem=None,
                    sent=None,
                    nonce=f"{facts.nonce}resume:{engine.policy_hash}",
                )
            )
            facts = again.facts
            self._record_decision(again, span)
            if again.effect is Effect.DENY:
                self._answer_record(
                    stored,
                    payload,
                    "refused",
                    "the call as approved is denied by policy: " + "; ".join(again.reasons),
                    diff,
                )
                return refusal(
                    call,
                    (
                        f"the approved call to {stored.tool!r} is denied by policy: "
                        f"{'; '.join(again.reasons)}. It was not run [request "
                        f"{stored.request_id}]"
                    ),
                    again,
                )
            if again.effect is Effect.REQUIRE_APPROVAL:
                regrouped = stored.model_copy(
                    update={"approvers": list(again.approvers), "policy_hash": again.policy_hash}
                )
                why = approve_decision(engine, regrouped, verified.approver)
                if why is not None:
                    self._answer_record(
                        stored,
                        payload,
                        "refused",
                        f"{verified.approver} may not approve the call as edited: {why}",
                        diff,
                    )
                    return refusal(
                        call,
                        (
                            f"{verified.approver} may not approve the call to {stored.tool!r} as "
                            f"edited: {why}. It was not run [request {stored.request_id}]"
                        ),
                        again,
                    )
        self._answer_record(
            stored, payload, "accepted", f"{_PAST[answer.decision]} by {verified.approver}", diff
        )
        return Run.of(decision, call, facts)

    def _outcome_of_earlier_pass(
        self, decision_id: str, wait: float = 2.0
    ) -> tuple[OutcomeRecord, bytes | None] | None:
        """The outcome an earlier pass of this call recorded, waiting a moment for one that is
        still being recorded (``None`` if none comes)."""
        deadline = time.monotonic() + wait
        while (done := self._find_outcome(decision_id)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return done

    def _record_request(self, held: ApprovalRequest, *, expires_us: int) -> None:
        """Put an approval request on the log, with its arguments as a blob."""
        args_blob = Blob.of(canonical_or_repr(held.args))
        self._append(
            ApprovalRequestRecord(
                request_id=held.request_id,
                decision_id=held.decision_id,
                action_digest=held.action_digest,
                tool=held.tool,
                tool_call_id=held.tool_call_id,
                args_blob=args_blob.ref,
                principal=held.principal,
                agent=held.agent,
                thread=held.thread,
                policy_hash=held.policy_hash,
                policy_ids=held.policy_ids,
                reasons=held.reasons,
                risk=held.risk,
                approvers=held.approvers,
                created_us=held.created_us,
                expires_us=expires_us,
                time_us=self._clock(),
            ),
            [args_blob],
        )

    def _on_hold(self, call: ToolCall) -> str:
        """This run's ``on_hold`` mode: its own ``configurable`` key, else the fence's."""
        asked = call.on_hold
        if asked is None:
            return self._on_hold_default
        return check_on_hold(asked, f"configurable[{CONFIG_ON_HOLD!r}]")

    def _refuse_unattended(
        self,
        call: ToolCall,
        held: ApprovalRequest,
        decision: Decision,
        span: ToolCallSpan,
    ) -> ToolResult:
        """Refuse a held call in a run that takes no approvals, and record it as such: the
        request (for the auditor) and an ``unattended`` answer, with no approver asked."""
        # Nobody may answer it: it expires as it is made.
        self._record_request(held, expires_us=held.created_us)
        self._append(
            ApprovalAnswerRecord(
                request_id=held.request_id,
                decision_id=held.decision_id,
                approver=None,
                answer="none",
                verdict="unattended",
                reason="the run takes no approvals (on_hold=deny): refused without asking",
                answer_blob=None,
                args_diff_blob=None,
                time_us=self._clock(),
            ),
            (),
        )
        self._release(decision.decision_id)  # held calls count once they run
        span.finished("denied", error_type=ERROR_APPROVAL_REQUIRED)
        groups = ", ".join(held.approvers) or "an approver"
        return refusal(
            call,
            (
                f"the call to {held.tool!r} needs approval ({groups}: "
                f"{'; '.join(held.reasons)}), and this run takes no approvals, so it was "
                f"refused without running [decision {held.decision_id}]"
            ),
            decision,
        )

    def _handed_in(self, request_id: str, payload: Any) -> int | None:
        """When the store took this very answer (``None`` if it was delivered directly)."""
        held = self._approvals.get(request_id)
        if held is None or held.answer is None or held.answered_us is None:
            return None
        return held.answered_us if held.answer == payload else None

    def _answer_record(
        self,
        stored: ApprovalRequest,
        payload: Any,
        verdict: Literal["accepted", "refused", "expired", "replayed"],
        reason: str,
        diff: Mapping[str, Any] | None = None,
    ) -> None:
        signed = payload.get("agentfence") if isinstance(payload, Mapping) else None
        carrier = signed if isinstance(signed, Mapping) else payload  # a decision's envelope
        answer = carrier.get("answer") if isinstance(carrier, Mapping) else None
        kind = answer.get("decision") if isinstance(answer, Mapping) else None
        approver = answer.get("approver") if isinstance(answer, Mapping) else None
        delivered = Blob.of(canonical_or_repr(payload))
        blobs = [delivered]
        diff_blob = None
        if diff is not None:
            diff_blob = Blob.of(canonical_or_repr(diff))
            blobs.append(diff_blob)
        self._append(
            ApprovalAnswerRecord(
                request_id=stored.request_id,
                decision_id=stored.decision_id,
                approver=approver if isinstance(approver, str) else None,
                answer=kind
                if kind in ANSWER_KINDS
                else ("expired" if verdict == "expired" else "unknown"),
                verdict=verdict,
                reason=reason,
                answer_blob=delivered.ref,
                args_diff_blob=diff_blob.ref if diff_blob else None,
                time_us=self._clock(),
            ),
            blobs,
        )


def _datetime(us: int) -> Any:
    import datetime

    return datetime.datetime.fromtimestamp(us / 1_000_000, tz=datetime.UTC)


def _with(callbacks: Any, handler: Any) -> Any:
    """The run's callbacks plus ``handler`` (a list, or a callback manager's handlers)."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        return [*callbacks, handler]
    try:
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        return manager
    except Exception:  # telemetry must not change a run it cannot join: leave it as it was
        return callbacks
