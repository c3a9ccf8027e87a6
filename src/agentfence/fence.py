"""The pipeline of one tool call: describe, decide, record, act, trace.

:class:`Fence` is what an agent developer holds. It wraps LangGraph's ``ToolNode`` (through
``wrap_tool_call``) and ``create_agent`` (through :meth:`Fence.middleware`); both run the same
pipeline, in which nothing runs that was not decided and recorded first. A call that policy
holds for a human pauses the thread with ``interrupt()``; :meth:`Fence.run` drives a graph
through its pauses, resuming as approvers answer.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agentfence._hitl import InterruptMode, check_interrupt_mode
from agentfence._holds import Holds, Run
from agentfence._ids import call_digest, check_seed, derive_seed
from agentfence._metering import reserve, usage_for
from agentfence._policy_files import redaction_kinds_of
from agentfence._provenance import HistoryCache, messages_of
from agentfence._recording import (
    ResultOutcome,
    activation_record,
    as_recorded,
    decision_record,
    digest_of,
    failure_decision,
    failure_facts,
    metered_call,
    open_log,
)
from agentfence._redaction import (
    RedactionPlan,
    check_redactions,
    known_kinds,
    result_plan,
    span_values,
)
from agentfence._semconv import ERROR_FAIL_CLOSED
from agentfence._signing import Signer
from agentfence._usage import UsageLedger
from agentfence.approvals import (
    DEFAULT_EXPIRY_SECONDS,
    ApprovalStore,
    ApproverRegistry,
    StoredApproval,
)
from agentfence.config import Settings, check_on_hold
from agentfence.decision import Clock, PrincipalResolver, parents_of, system_clock
from agentfence.errors import ConfigurationError, PrincipalRejected
from agentfence.labels import Directory, Redactor
from agentfence.langgraph import (
    AsyncExecute,
    BatchingFenceMiddleware,
    Execute,
    FenceMiddleware,
    GraphBubbleUp,
    ToolCall,
    ToolCallRequest,
    ToolResult,
    describe,
    fail_closed_text,
    mark_result,
    recorded_result,
    refusal,
    result_messages,
)
from agentfence.log import DecisionLog, DeferringLog, Receipt
from agentfence.notify import Notifications, notifications_of
from agentfence.policy import CallFacts, Decision, Effect, EntityRef, PolicyEngine
from agentfence.records import (
    Blob,
    DecisionRecord,
    LogRecord,
    Metered,
    OutcomeRecord,
)
from agentfence.tools import ToolCatalog
from agentfence.tracing import Telemetry, ToolCallSpan, telemetry_settings_from_env

__all__ = ["Clock", "Fence", "PrincipalResolver"]

_logger = logging.getLogger("agentfence.fence")
_W = TypeVar("_W")
_R = TypeVar("_R", bound=LogRecord)


class Fence:
    """Governs tool calls: every call is decided by Cedar policy and recorded before it runs.

    Build one with :meth:`from_directory`; then use ``wrap_tool_call``/``awrap_tool_call`` with
    a ``ToolNode``, :meth:`middleware` with ``create_agent``, or :meth:`decide` on its own.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        log: DecisionLog | str | Path | None = None,
        signing_key: str | Path | Signer | None = None,
        approvals: ApprovalStore | None = None,
        approval_expiry: float = DEFAULT_EXPIRY_SECONDS,
        agent: str | None = None,
        seed: int | None = None,
        principal_resolver: PrincipalResolver | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
        policy_dir: str | Path | None = None,
        redactors: Sequence[Redactor] = (),
        on_hold: str | None = None,
        notify: Notifications | str | Path | None = None,
        interrupt_mode: InterruptMode = "batched",
    ) -> None:
        settings = Settings.from_env()
        self._mode = check_interrupt_mode(interrupt_mode)
        self._on_hold = (
            check_on_hold(on_hold, "on_hold") if on_hold is not None else settings.on_hold
        )
        self._redactors = tuple(redactors)
        self._redaction_kinds = known_kinds(self._redactors)
        check_redactions(engine.catalog, self._redaction_kinds)
        self._engine = engine
        self._registry = ApproverRegistry.from_engine(engine)
        self._lock = threading.Lock()
        self._log = open_log(
            log if log is not None else settings.log,
            signing_key if signing_key is not None else settings.signing_key,
        )
        # Checked once: a runtime protocol check costs microseconds on every call.
        self._append_later = self._log.append_later if isinstance(self._log, DeferringLog) else None
        self._owns_approvals = approvals is None
        if approvals is None:
            # Beside a signed log (its SQLite file or PostgreSQL database), else in memory.
            url = getattr(self._log, "url", None)
            approvals = ApprovalStore(url) if isinstance(url, str) else ApprovalStore()
        self._approvals = approvals
        self._expiry = int(approval_expiry)
        self._agent = agent or settings.agent
        seed = seed if seed is not None else settings.seed
        self._seed = check_seed(seed) if seed is not None else None
        self._resolver = principal_resolver
        self._clock: Clock = clock or system_clock
        self._telemetry = telemetry or Telemetry.from_settings(telemetry_settings_from_env())
        self._policy_dir = Path(policy_dir) if policy_dir is not None else None
        # Runs without a thread id cannot resume, so their calls need no stable ids; this
        # nonce keeps two such runs that reuse tool call ids from sharing decision ids.
        self._nonce = os.urandom(8).hex()
        self._history = HistoryCache()
        self._usage = UsageLedger(self._log, self._clock)
        self._notify = notifications_of(notify, self._approvals, self._clock)
        self._holds = Holds(
            approvals=self._approvals,
            policy=lambda: (self._engine, self._registry),
            append=self._append,
            record_decision=lambda decision, span: self._append(
                *self._decision_record(decision, span, self._spent(decision))
            ),
            find_outcome=self._log.find_outcome,
            release=self._usage.release,
            clock=self._clock,
            telemetry=self._telemetry,
            agent=self._agent,
            expiry_seconds=self._expiry,
            on_hold=self._on_hold,
            notify_held=self._notify.held if self._notify is not None else None,
            interrupt_mode=self._mode,
        )
        self._record_activation(engine)

    @classmethod
    def from_directory(
        cls,
        directory: str | Path | None = None,
        *,
        tools: Iterable[Any],
        log: DecisionLog | str | Path | None = None,
        signing_key: str | Path | Signer | None = None,
        approvals: ApprovalStore | None = None,
        approval_expiry: float = DEFAULT_EXPIRY_SECONDS,
        agent: str | None = None,
        seed: int | None = None,
        principal_resolver: PrincipalResolver | None = None,
        principal_types: Sequence[str] = ("User",),
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
        trusted_directory: Directory | Mapping[str, Iterable[Any]] | None = None,
        redactors: Sequence[Redactor] = (),
        on_hold: str | None = None,
        notify: Notifications | str | Path | None = None,
        interrupt_mode: InterruptMode = "batched",
    ) -> Fence:
        """Load ``*.cedar`` policies (and ``*.cedarschema``, ``entities.json``,
        ``approvers.toml``, ``directory.json``) for the tools.

        ``directory`` defaults to ``AGENTFENCE_POLICY_DIR`` (else ``./policies``). ``log`` is a
        :class:`DecisionLog` or a URL: ``"sqlite:///fence.db"`` opens the signed log, which
        needs ``signing_key`` (a key file from ``agentfence keys generate``). Without either,
        ``AGENTFENCE_LOG`` and ``AGENTFENCE_SIGNING_KEY`` are used, and without those, an
        in-memory log. Approval requests go to the log's database unless ``approvals`` is
        given. Raises :class:`~agentfence.errors.PolicyLoadError` naming each bad file and
        line.

        ``trusted_directory`` is the trusted directory of values (contacts, known accounts)
        that argument provenance reports as source ``directory``, added to the policy
        directory's ``directory.json``. ``redactors`` add redaction kinds beyond the built-in
        ones (``docs/policy-guide.md``, "Redaction"). ``on_hold`` is what a run does with a
        call policy holds for approval: ``"interrupt"`` (pause, the default) or ``"deny"``
        (refuse it at once, for unattended runs); a run may say so itself with
        ``configurable["agentfence_on_hold"]``, and ``AGENTFENCE_ON_HOLD`` sets the default.
        ``notify``: :class:`~agentfence.notify.Notifications` or a notify.toml (approver guide).
        ``interrupt_mode``: ``"batched"`` (a ``create_agent`` turn's held calls in one pause),
        ``"per_call"`` or ``"request_per_call"`` (``docs/developer-guide.md``).
        """
        directory = directory if directory is not None else Settings.from_env().policy_dir
        catalog = ToolCatalog.from_tools(tools)
        trusted = (
            trusted_directory
            if isinstance(trusted_directory, Directory) or trusted_directory is None
            else Directory(trusted_directory)
        )
        engine = PolicyEngine.load(
            directory,
            catalog,
            principal_types=principal_types,
            trusted=trusted,
            redaction_kinds=known_kinds(redactors),
        )
        return cls(
            engine,
            log=log,
            signing_key=signing_key,
            approvals=approvals,
            approval_expiry=approval_expiry,
            agent=agent,
            seed=seed,
            principal_resolver=principal_resolver,
            clock=clock,
            telemetry=telemetry,
            policy_dir=directory,
            redactors=redactors,
            on_hold=on_hold,
            notify=notify,
            interrupt_mode=interrupt_mode,
        )

    # --- properties and lifecycle --------------------------------------------------------

    @property
    def engine(self) -> PolicyEngine:
        """The active policy engine."""
        return self._engine

    @property
    def policy_hash(self) -> str:
        """The content hash of the active policy set (recorded with every decision)."""
        return self._engine.policy_hash

    @property
    def log(self) -> DecisionLog:
        """Where decisions and outcomes are recorded."""
        return self._log

    @property
    def approvals(self) -> ApprovalStore:
        """Where approval requests wait for answers."""
        return self._approvals

    @property
    def telemetry(self) -> Telemetry:
        """The OpenTelemetry spans and metrics this fence emits."""
        return self._telemetry

    def close(self) -> None:
        """Close the log (a signed log signs its final checkpoint). Call at the end of a run.

        Also closes the approvals store the fence opened itself (not one passed in); queued
        notifications are delivered first (a few seconds at most).
        """
        try:
            if self._notify is not None:
                self._notify.close()
            self._log.close()
        finally:
            if self._owns_approvals:
                self._approvals.close()

    def __enter__(self) -> Fence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reload(self) -> str:
        """Load the policy directory again and switch to it atomically; return the new hash.

        If the new policies do not load, the error is raised and the old ones stay active.
        """
        if self._policy_dir is None:
            raise ConfigurationError(
                "this fence was not built from a directory, so it cannot reload; build it with "
                "Fence.from_directory(...)"
            )
        with self._lock:
            engine = PolicyEngine.load(
                self._policy_dir,
                self._engine.catalog,
                principal_types=self._engine.principal_types,
                trusted=self._engine.extra_directory,
                redaction_kinds=self._redaction_kinds,
            )
            registry = ApproverRegistry.from_engine(engine)
            self._record_activation(engine)
            self._engine, self._registry = engine, registry
        return engine.policy_hash

    # --- the public verbs ----------------------------------------------------------------

    def decide(
        self,
        tool: str,
        args: Mapping[str, Any],
        *,
        principal: str | Mapping[str, Any] | EntityRef | None,
        agent: str | None = None,
        thread: str = "",
        step: int = 0,
        tool_call_id: str | None = None,
        seed: int | None = None,
        messages: Sequence[Any] | None = None,
    ) -> Decision:
        """Decide one call without running or recording anything (for custom nodes and tests).

        ``messages`` are the thread's messages before the call (LangChain messages), from
        which the labels seen and the provenance of the arguments are computed; usage comes
        from the decision log as for a real call.
        """
        facts = self._facts(
            tool,
            args,
            principal,
            agent=agent,
            thread=thread,
            step=step,
            tool_call_id=tool_call_id,
            seed=seed,
        )
        if messages is not None and self._engine.flow.roots - {"usage"}:
            facts = facts.evolve(history=self._history.history("", list(messages)))
        with self._usage.lock:
            return self._engine.decide(usage_for(self._usage, self._engine, facts))

    def middleware(self) -> FenceMiddleware:
        """``create_agent`` middleware running this fence on every tool call (in ``"batched"``
        mode it also holds a turn's held calls in one interrupt: put it first in the list)."""
        return BatchingFenceMiddleware(self) if self._mode == "batched" else FenceMiddleware(self)

    def review_turn(self, calls: list[ToolCall]) -> dict[str, Any]:
        """Hold the calls of a model turn that policy holds in one interrupt; return the
        answers by request id (the middleware's ``after_model`` hook, in ``"batched"`` mode).
        A policy set that can hold nothing has nothing to review: no call is decided twice."""
        if not self._engine.can_hold:
            return {}
        return self._holds.review_turn([(call, self._preview) for call in calls])

    def wrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> ToolResult:
        """``ToolNode(wrap_tool_call=...)``: decide and record, then run the tool if allowed."""
        call = describe(request)
        with self._span(call) as span:
            verdict = self._before(call, span)
            if not isinstance(verdict, Run):
                return verdict
            try:
                result = execute(verdict.request)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                self._record_outcome_error(verdict.decision, exc)
                raise
            return self._after(verdict, result, span)

    async def awrap_tool_call(self, request: ToolCallRequest, execute: AsyncExecute) -> ToolResult:
        """``ToolNode(awrap_tool_call=...)``: the async form of :meth:`wrap_tool_call`.

        Deciding and recording run in a worker thread so that a durable log's commit does not
        block the event loop; parallel calls then share group commits.
        """
        call = describe(request)
        with self._span(call) as span:
            verdict = await asyncio.to_thread(self._before, call, span)
            if not isinstance(verdict, Run):
                return verdict
            try:
                result = await execute(verdict.request)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                self._record_outcome_error(verdict.decision, exc)
                raise
            return await asyncio.to_thread(self._after, verdict, result, span)

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
        """Run a graph to its end, waiting at each approval pause and resuming as answers come.

        Answers arrive in the approvals store (from ``agentfence approvals``, the inbox, or
        ``on_pending``, which is called once with each newly waiting request and may submit
        answers itself). An expired request is resumed as expired, which the fence refuses.
        Returns the graph's final output, or its paused output when ``timeout`` seconds pass
        first, or when the graph pauses for something else.
        """
        return self._holds.run(
            graph,
            input,
            config,
            timeout=timeout,
            poll_interval=poll_interval,
            on_pending=on_pending,
        )

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
        """The async form of :meth:`run` (``ainvoke``, ``aget_state``); ``on_pending`` may be
        a coroutine function."""
        return await self._holds.arun(
            graph,
            input,
            config,
            timeout=timeout,
            poll_interval=poll_interval,
            on_pending=on_pending,
        )

    def resume(self, graph: Any, config: Mapping[str, Any]) -> Any | None:
        """Resume a paused thread once if any of its approvals was answered or expired.

        Returns the graph's output, or ``None`` when there is nothing to resume with yet.
        This is the piece to call from a worker that picks threads up after a restart.
        """
        return self._holds.resume(graph, config)

    async def aresume(self, graph: Any, config: Mapping[str, Any]) -> Any | None:
        """The async form of :meth:`resume` (``aget_state``, ``ainvoke``)."""
        return await self._holds.aresume(graph, config)

    def resume_value(self, waiting: Sequence[StoredApproval]) -> dict[str, Any] | None:
        """The bundle to resume with: every answered or expired request of those waiting, and
        any whose answer an earlier pass used (the thread moves on; the call does not run again).

        ``None`` while every one of them is still pending.
        """
        return self._holds.resume_value(waiting)

    # --- the pipeline --------------------------------------------------------------------

    def _span(self, call: ToolCall) -> ToolCallSpan:
        return self._telemetry.tool_call(
            call.tool,
            call.call_id,
            agent=call.agent or self._agent,
            thread=call.thread or None,
            config=call.config,
            description=call.description,
        )

    def _before(self, call: ToolCall, span: ToolCallSpan) -> Run | ToolResult:
        """Describe, decide and record one call; then run, hold, or refuse it."""
        facts: CallFacts | None = None
        # Fail closed: if describing, deciding or recording raises, the tool does not run and
        # the model gets an error result. GraphBubbleUp (LangGraph's interrupt) propagates.
        try:
            facts = self._facts_from_call(call)
            started = time.perf_counter()
            engine = self._engine
            # Usage is read, the call decided and (if allowed) counted under one lock, so that
            # parallel calls cannot each slip under a limit that together they cross.
            with self._usage.lock:
                facts = usage_for(self._usage, engine, facts)
                decision = engine.decide(facts)
                metered = self._spent(decision)
                reserve(self._usage, decision, metered)
            span.decided(decision, time.perf_counter() - started)
            try:
                receipt = self._append(*self._decision_record(decision, span, metered))
            except Exception:
                self._usage.release(decision.decision_id)
                raise
            span.recorded(receipt.seq, receipt.leaf_hash)
            if receipt.duplicate:
                # The node runs again (a resume): act on the request recorded the first time,
                # since usage windows and the log have moved on since.
                decision = as_recorded(self._log, engine, receipt.seq, decision)
            if receipt.duplicate and facts.thread:
                # LangGraph re-executes a node when a thread resumes: a call that already
                # ran returns its recorded result instead of running twice.
                done = self._log.find_outcome(decision.decision_id)
                if done is not None and decision.effect is not Effect.REQUIRE_APPROVAL:
                    return recorded_result(call, *done)
            if decision.effect is Effect.ALLOW:
                return Run.of(decision, call, decision.facts)
            if decision.effect is Effect.REQUIRE_APPROVAL:
                return self._holds.hold(call, facts, decision, span)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            failed = self._record_failure(facts, call, exc)
            span.failure(exc)
            span.finished("denied", error_type=ERROR_FAIL_CLOSED)
            if isinstance(exc, PrincipalRejected):  # a refusal that says why, in fixed words
                return refusal(call, failed.explain(), failed)
            # A fixed text: the exception's (a driver's message, internals, values an attacker
            # may have shaped) goes to the log and the trace only.
            return refusal(call, fail_closed_text(failed.decision_id), None)
        span.finished("denied")
        return refusal(call, decision.explain(), decision)

    def _after(self, verdict: Run, result: ToolResult, span: ToolCallSpan) -> ToolResult:
        decision = verdict.decision
        # What ran: the bound arguments (of the edit, for an edited call), not the request's.
        args = verdict.facts.args
        call_id = verdict.call.call_id
        resource_json = (decision.request or {}).get("resource")
        resource = EntityRef.parse(resource_json, "Tool") if resource_json else None
        # A result carries its tool's and resource's labels, and those its arguments were
        # copied from (an echo of untrusted text stays untrusted).
        labels = sorted(
            self._engine.result_labels(decision.facts.tool, resource)
            | self._engine.input_labels(verdict.facts)
        )
        plan = self._redaction_plan(decision)
        done = ResultOutcome.of(result, call_id, plan)
        span.digested(result=done.digest)
        metered = metered_call(self._engine, decision.facts.tool, args)
        try:
            outcome = done.record(
                decision.decision_id, time_us=self._clock(), labels=labels, metered=metered
            )
            self._append_outcome(outcome, done.blobs)
        except Exception as exc:
            # Fail closed: a result whose outcome is not on record is withheld from the model.
            # The tool did run, so the message says so, lest the model retry a side effect.
            # Its spending still counts: the tool ran.
            self._usage.settle(decision.decision_id, succeeded=True, amount=None)
            span.failure(exc)
            span.finished("error", error_type=ERROR_FAIL_CLOSED)
            return refusal(
                verdict.call,
                (
                    f"the tool {decision.facts.tool!r} ran, but agentfence could not record its "
                    "outcome; the result is withheld. Do not retry without checking whether the "
                    f"action took effect [decision {decision.decision_id}]"
                ),
                decision,
            )
        self._usage.settle(
            decision.decision_id,
            succeeded=done.status == "success",
            amount=decimal.Decimal(metered.amount) if metered else None,
        )
        facts: dict[str, Any] = {"labels": labels, "decision_id": decision.decision_id}
        if outcome.redactions:
            facts["redactions"] = [r.model_dump() for r in outcome.redactions]
        result = mark_result(done.result, call_id, facts)
        self._trace_content(span, plan, args, result, call_id)
        span.finished(
            "success" if done.status == "success" else "error",
            resources=[str(resource)] if resource else [],
            labels=labels,
        )
        return result

    def _trace_content(
        self,
        span: ToolCallSpan,
        plan: RedactionPlan,
        args: Any,
        result: ToolResult,
        call_id: str | None,
    ) -> None:
        """Put the redacted argument and result values on the span, if capture is on."""
        if not self._telemetry.capture_content:
            return
        texts = [m.content for m in result_messages(result, call_id)]
        span.content(*span_values(plan, self._redaction_kinds, args, texts))

    def _redaction_plan(self, decision: Decision) -> RedactionPlan:
        """What to redact in this call's result: the tool's declaration and ``@redact``."""
        entry = self._engine.catalog.get(decision.facts.tool)
        marks = [redaction_kinds_of(m) for m in decision.annotations.values()]
        return result_plan(entry.spec if entry is not None else None, marks, self._redactors)

    # --- describing and recording --------------------------------------------------------

    def _append(self, record: LogRecord, blobs: Sequence[Blob] = ()) -> Receipt:
        return self._timed(self._log.append, record, blobs)

    def _append_outcome(self, record: OutcomeRecord, blobs: Sequence[Blob] = ()) -> None:
        """Record an outcome. It need not hold the call: a log that can defer it lets it ride
        the next commit (a decision's), within a bounded window (docs/log-format.md)."""
        later = self._append_later
        if later is not None:
            self._timed(later, record, blobs)
        else:
            self._append(record, blobs)

    def _timed(
        self, write: Callable[[_R, Sequence[Blob]], _W], record: _R, blobs: Sequence[Blob]
    ) -> _W:
        """Run one write to the log, reporting its latency (and its error type) as a metric."""
        started = time.perf_counter()
        try:
            result = write(record, blobs)
        except Exception as exc:
            self._telemetry.log_append(time.perf_counter() - started, error_type=type(exc).__name__)
            raise
        self._telemetry.log_append(time.perf_counter() - started)
        return result

    def _preview(self, call: ToolCall) -> Decision:
        """Decide a call ahead of its run (a batched turn's review). A hold is recorded now,
        when it is made, so an abandoned turn still leaves it on the log; the call's own pass
        then finds it recorded and acts on it. Other decisions are recorded as they run."""
        facts = self._facts_from_call(call)
        started = time.perf_counter()
        with self._usage.lock:
            decision = self._engine.decide(usage_for(self._usage, self._engine, facts))
        if decision.effect is Effect.REQUIRE_APPROVAL:  # under a tool span, as any record
            with self._span(call) as span:
                span.decided(decision, time.perf_counter() - started)
                metered = self._spent(decision)
                receipt = self._append(*self._decision_record(decision, span, metered))
                span.recorded(receipt.seq, receipt.leaf_hash)
        return decision

    def _facts_from_call(self, call: ToolCall) -> CallFacts:
        principal = self._resolver(call.config) if self._resolver is not None else call.principal
        facts = self._facts(
            call.tool,
            call.args,
            principal,
            agent=call.agent,
            thread=call.thread,
            step=call.step,
            tool_call_id=call.call_id,
            seed=call.seed,
        )
        # What the run has seen so far: the thread's messages in the graph state, indexed
        # only when a policy speaks of labels or provenance.
        if not self._engine.flow.roots - {"usage"}:
            return facts
        history = self._history.history(call.thread, list(messages_of(call.state)))
        return facts.evolve(history=history)

    def _facts(
        self,
        tool: str,
        args: Any,
        principal: str | Mapping[str, Any] | EntityRef | None,
        *,
        agent: str | None,
        thread: str,
        step: int,
        tool_call_id: str | None,
        seed: int | None,
    ) -> CallFacts:
        if seed is None:
            seed = self._seed if self._seed is not None else derive_seed(thread)
        if not tool_call_id:
            tool_call_id = "auto-" + call_digest(tool, args, "")[:24]
        default_type = self._engine.principal_types[0]
        # Describe once: the arguments are validated with the tool's own schema here, and
        # those values are what is decided, recorded, approved and (as a copy) run.
        facts = CallFacts(
            tool=tool,
            args=args,
            principal=EntityRef.parse(principal, default_type) if principal is not None else None,
            principal_parents=parents_of(principal),
            agent=agent or self._agent,
            thread=thread,
            step=step,
            tool_call_id=tool_call_id,
            seed=check_seed(seed),
            nonce="" if thread else self._nonce,
        )
        return self._engine.bind(facts)

    def _spent(self, decision: Decision) -> Metered | None:
        """What a decided call spends, worked out once (a denied one spends nothing)."""
        if decision.effect is Effect.DENY:
            return None
        return metered_call(self._engine, decision.facts.tool, decision.facts.args)

    def _decision_record(
        self, decision: Decision, span: ToolCallSpan | None, metered: Metered | None
    ) -> tuple[DecisionRecord, list[Blob]]:
        ids = span.ids() if span is not None else None
        return decision_record(decision, time_us=self._clock(), ids=ids, metered=metered)

    def _record_failure(self, facts: CallFacts | None, call: ToolCall, exc: Exception) -> Decision:
        """Best effort: put a call that could not be decided on record as a DENY; return that
        decision (recorded, or not when the log itself failed)."""
        if facts is None:  # describing the call failed: what is known of it, no principal
            facts = failure_facts(
                call.tool,
                call.args,
                call.call_id,
                thread=call.thread,
                step=call.step,
                agent=self._agent,
                nonce=self._nonce,
            )
        decision = failure_decision(facts, exc, self._engine.policy_hash)
        try:
            self._append(*self._decision_record(decision, None, None))
        except Exception:  # the log itself may be what failed; the call is refused either way
            _logger.warning(
                "could not record the refusal of decision %s (%s: %s)",
                decision.decision_id,
                type(exc).__name__,
                exc,
            )
        return decision

    def _record_outcome_error(self, decision: Decision, exc: Exception) -> None:
        self._usage.settle(decision.decision_id, succeeded=False, amount=None)
        try:
            self._append_outcome(
                OutcomeRecord(
                    decision_id=decision.decision_id,
                    status="error",
                    result_digest=digest_of(repr(exc)),
                    time_us=self._clock(),
                )
            )
        except Exception:  # the tool's own exception is what the caller must see
            _logger.warning(
                "could not record the error outcome of decision %s",
                decision.decision_id,
                exc_info=True,
            )

    def _record_activation(self, engine: PolicyEngine) -> None:
        self._append(*activation_record(engine, time_us=self._clock()))
