"""The pipeline of one tool call: describe, decide, record, act.

:class:`Fence` is what an agent developer holds. It wraps LangGraph's ``ToolNode`` (through
``wrap_tool_call``) and ``create_agent`` (through :meth:`Fence.middleware`); both run the same
pipeline, in which nothing runs that was not decided and recorded first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import rfc8785

from agentfence import _cedar
from agentfence._ids import check_seed, derive_id, derive_seed
from agentfence._signing import Signer, read_private_key
from agentfence.config import (
    CONFIG_AGENT,
    CONFIG_PRINCIPAL,
    CONFIG_SEED,
    CONFIG_THREAD,
    Settings,
)
from agentfence.errors import ConfigurationError
from agentfence.langgraph import (
    AsyncExecute,
    Execute,
    FenceMiddleware,
    GraphBubbleUp,
    ToolCallRequest,
    ToolResult,
    call_parts,
    refusal,
    result_digest,
)
from agentfence.log import DecisionLog, MemoryLog, SignedLog
from agentfence.policy import CallFacts, Decision, Effect, EntityRef, PolicyEngine
from agentfence.records import ActivationRecord, Blob, DecisionRecord, OutcomeRecord
from agentfence.tools import ToolCatalog

__all__ = ["Clock", "Fence", "PrincipalResolver"]


class PrincipalResolver(Protocol):
    """Says who a run acts for, from its ``RunnableConfig`` (``None``: nobody known)."""

    def __call__(self, config: Mapping[str, Any]) -> str | Mapping[str, Any] | EntityRef | None:
        """Return ``User::"alice"``, ``{"type": ..., "id": ...}``, an EntityRef or None."""
        ...


class Clock(Protocol):
    """The time source for record timestamps, in integer microseconds since the epoch."""

    def __call__(self) -> int:
        """Now, in microseconds."""
        ...


def _system_clock() -> int:
    return time.time_ns() // 1000


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
        agent: str | None = None,
        seed: int | None = None,
        principal_resolver: PrincipalResolver | None = None,
        clock: Clock | None = None,
        policy_dir: str | Path | None = None,
    ) -> None:
        settings = Settings.from_env()
        self._engine = engine
        self._lock = threading.Lock()
        self._log = _open_log(
            log if log is not None else settings.log,
            signing_key if signing_key is not None else settings.signing_key,
        )
        self._agent = agent or settings.agent
        seed = seed if seed is not None else settings.seed
        self._seed = check_seed(seed) if seed is not None else None
        self._resolver = principal_resolver
        self._clock: Clock = clock or _system_clock
        self._policy_dir = Path(policy_dir) if policy_dir is not None else None
        self._record_activation(engine)

    @classmethod
    def from_directory(
        cls,
        directory: str | Path,
        *,
        tools: Iterable[Any],
        log: DecisionLog | str | Path | None = None,
        signing_key: str | Path | Signer | None = None,
        agent: str | None = None,
        seed: int | None = None,
        principal_resolver: PrincipalResolver | None = None,
        principal_types: Sequence[str] = ("User",),
        clock: Clock | None = None,
    ) -> Fence:
        """Load ``*.cedar`` policies (and any ``*.cedarschema``, ``entities.json``) for tools.

        Raises :class:`~agentfence.errors.PolicyLoadError` naming each bad file and line.
        """
        catalog = ToolCatalog.from_tools(tools)
        engine = PolicyEngine.load(directory, catalog, principal_types=principal_types)
        return cls(
            engine,
            log=log,
            agent=agent,
            seed=seed,
            principal_resolver=principal_resolver,
            clock=clock,
            policy_dir=directory,
        )

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

    def close(self) -> None:
        """Close the log (a signed log signs its final checkpoint). Call at the end of a run."""
        self._log.close()

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
                self._policy_dir, self._engine.catalog, principal_types=self._engine.principal_types
            )
            self._record_activation(engine)
            self._engine = engine
        return engine.policy_hash

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
    ) -> Decision:
        """Decide one call without running or recording anything (for custom nodes and tests)."""
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
        return self._engine.decide(facts)

    def middleware(self) -> FenceMiddleware:
        """``create_agent`` middleware running this fence on every tool call."""
        return FenceMiddleware(self)

    def wrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> ToolResult:
        """``ToolNode(wrap_tool_call=...)``: decide and record, then run the tool if allowed."""
        decision = self._before(request)
        if not isinstance(decision, Decision):
            return decision
        try:
            result = execute(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._record_outcome(decision, "error", _digest(repr(exc)))
            raise
        return self._after(request, decision, result)

    async def awrap_tool_call(self, request: ToolCallRequest, execute: AsyncExecute) -> ToolResult:
        """``ToolNode(awrap_tool_call=...)``: the async form of :meth:`wrap_tool_call`.

        Deciding and recording run in a worker thread so that a durable log's commit does not
        block the event loop; parallel calls then share group commits.
        """
        decision = await asyncio.to_thread(self._before, request)
        if not isinstance(decision, Decision):
            return decision
        try:
            result = await execute(request)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._record_outcome(decision, "error", _digest(repr(exc)))
            raise
        return await asyncio.to_thread(self._after, request, decision, result)

    # --- the pipeline -------------------------------------------------------------------

    def _before(self, request: ToolCallRequest) -> Decision | ToolResult:
        """Describe, decide and record one call: an ALLOW decision, or the refusal to return."""
        facts: CallFacts | None = None
        # Fail closed: if describing, deciding or recording raises, the tool does not run and
        # the model gets an error result. GraphBubbleUp (LangGraph's interrupt) propagates.
        try:
            facts = self._facts_from_request(request)
            decision = self._engine.decide(facts)
            self._log.append(*self._decision_record(decision))
        except GraphBubbleUp:
            raise
        except Exception as exc:
            self._record_failure(facts, exc)
            text = (
                f"agentfence did not run this call: it could not be decided and recorded "
                f"(fail closed): {type(exc).__name__}: {exc}"
            )
            return refusal(request, text, None)
        if decision.effect is Effect.ALLOW:
            return decision
        text = decision.explain()
        if decision.effect is Effect.REQUIRE_APPROVAL:
            text += (
                ". The call was not run: it needs a human approver"
                + (f" ({', '.join(decision.approvers)})" if decision.approvers else "")
                + " and this fence has no approval checkpoint configured."
            )
        return refusal(request, text, decision)

    def _after(
        self, request: ToolCallRequest, decision: Decision, result: ToolResult
    ) -> ToolResult:
        status, digest, content = result_digest(result)
        blob = Blob.of(content)
        try:
            self._log.append(
                OutcomeRecord(
                    decision_id=decision.decision_id,
                    status=status,
                    result_digest=digest,
                    result_blob=blob.ref,
                    time_us=self._clock(),
                ),
                [blob],
            )
        except Exception as exc:
            # Fail closed: a result whose outcome is not on record is withheld from the model.
            # The tool did run, so the message says so, lest the model retry a side effect.
            return refusal(
                request,
                (
                    f"the tool {decision.facts.tool!r} ran, but agentfence could not record its "
                    f"outcome ({type(exc).__name__}: {exc}); the result is withheld. Do not retry "
                    "without checking whether the action took effect."
                ),
                decision,
            )
        return result

    def _facts_from_request(self, request: ToolCallRequest) -> CallFacts:
        tool, args, call_id, config = call_parts(request)
        configurable = config.get("configurable") or {}
        metadata = config.get("metadata") or {}
        if self._resolver is not None:
            principal = self._resolver(config)
        else:
            principal = configurable.get(CONFIG_PRINCIPAL)
        thread = str(configurable.get(CONFIG_THREAD) or metadata.get("thread_id") or "")
        step = metadata.get("langgraph_step", 0)
        seed = configurable.get(CONFIG_SEED)
        return self._facts(
            tool,
            args,
            principal,
            agent=configurable.get(CONFIG_AGENT),
            thread=thread,
            step=int(step),
            tool_call_id=call_id,
            seed=seed,
        )

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
            tool_call_id = "auto-" + _digest({"tool": tool, "args": _jsonable(args)})[:24]
        default_type = self._engine.principal_types[0]
        return CallFacts(
            tool=tool,
            args=args,
            principal=EntityRef.parse(principal, default_type) if principal is not None else None,
            agent=agent or self._agent,
            thread=thread,
            step=step,
            tool_call_id=tool_call_id,
            seed=check_seed(seed),
        )

    def _decision_record(self, decision: Decision) -> tuple[DecisionRecord, list[Blob]]:
        facts = decision.facts
        request = decision.request or {}
        resource = request.get("resource")
        blobs = [Blob.of(request_bytes(request))] if request else []
        record = DecisionRecord(
            decision_id=decision.decision_id,
            seed=facts.seed,
            thread=facts.thread,
            step=facts.step,
            tool_call_id=facts.tool_call_id,
            tool=facts.tool,
            principal=str(facts.principal) if facts.principal else None,
            agent=facts.agent,
            action=str(EntityRef("Action", facts.tool)),
            resource=str(EntityRef(resource["type"], resource["id"])) if resource else None,
            request_blob=blobs[0].ref if blobs else None,
            effect=decision.effect.value,
            policy_ids=list(decision.policy_ids),
            reasons=list(decision.reasons),
            errors=list(decision.errors),
            approvers=list(decision.approvers),
            policy_hash=decision.policy_hash,
            engine=_cedar.ENGINE_VERSION,
            time_us=self._clock(),
        )
        return record, blobs

    def _record_failure(self, facts: CallFacts | None, exc: Exception) -> None:
        """Best effort: put a call that could not be decided on record as a DENY."""
        if facts is None:
            return
        decision = Decision(
            effect=Effect.DENY,
            decision_id=derive_id(
                "decision", facts.seed, facts.thread, facts.step, facts.tool_call_id
            ),
            policy_ids=(),
            reasons=(f"the call could not be decided (fail closed): {exc}",),
            policy_hash=self._engine.policy_hash,
            facts=facts,
            errors=(f"{type(exc).__name__}: {exc}",),
        )
        try:
            self._log.append(*self._decision_record(decision))
        except Exception:  # the log itself may be what failed; the call is refused either way
            return

    def _record_outcome(self, decision: Decision, status: str, digest: str) -> None:
        try:
            self._log.append(
                OutcomeRecord(
                    decision_id=decision.decision_id,
                    status="error" if status == "error" else "success",
                    result_digest=digest,
                    time_us=self._clock(),
                )
            )
        except Exception:  # the tool's own exception is what the caller must see
            return

    def _record_activation(self, engine: PolicyEngine) -> None:
        file_blobs = {name: Blob.of(text.encode()) for name, text in engine.texts.items()}
        schema = Blob.of(engine.schema_text.encode())
        generated = Blob.of(engine.generated_schema.encode())
        self._log.append(
            ActivationRecord(
                policy_hash=engine.policy_hash,
                files=engine.files,
                file_blobs={name: blob.ref for name, blob in file_blobs.items()},
                schema_blob=schema.ref,
                generated_schema_blob=generated.ref,
                engine=_cedar.ENGINE_VERSION,
                time_us=self._clock(),
            ),
            [*file_blobs.values(), schema, generated],
        )


def request_bytes(request: Mapping[str, Any]) -> bytes:
    """The stored form of a Cedar request: compact JSON, sorted keys, UTF-8.

    Not RFC 8785: Cedar longs may exceed the integer range RFC 8785 allows.
    """
    return json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _open_log(log: DecisionLog | str | Path | None, key: str | Path | Signer | None) -> DecisionLog:
    if log is None:
        return MemoryLog()
    if not isinstance(log, str | Path):
        return log
    if key is None:
        raise ConfigurationError(
            f"the signed log {str(log)!r} needs a signing key: run `agentfence keys generate "
            "--name NAME --out DIR` and pass signing_key='DIR/NAME.key' (or set "
            "AGENTFENCE_SIGNING_KEY)"
        )
    signer = key if isinstance(key, Signer) else read_private_key(key)
    return SignedLog.open(log, signer=signer)


def _jsonable(value: Any) -> Any:
    try:
        rfc8785.dumps(value)
    except Exception:
        return repr(value)
    return value


def _digest(value: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(_jsonable(value))).hexdigest()
