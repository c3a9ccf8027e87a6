"""Record: the log records a call puts down, built from its decision.

The fence appends them; this module only says what they hold (``docs/log-format.md``): a
decision and its Cedar request(s), a policy set's activation, what a metered call spends.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentfence import _cedar
from agentfence._redaction import RedactionPlan, new_salt, redact_content, salted_digest
from agentfence._signing import Signer, read_private_key
from agentfence.decision import Decision, EntityRef
from agentfence.errors import ConfigurationError, PrincipalRejected
from agentfence.langgraph import ToolResult, mark_result, result_digest
from agentfence.log import DecisionLog, LogReader, MemoryLog, SignedLog
from agentfence.policy import CallFacts, Effect, PolicyEngine
from agentfence.records import (
    ActivationRecord,
    Blob,
    DecisionRecord,
    Metered,
    OutcomeRecord,
    RedactionNote,
    ShadowVerdict,
    canonical_or_repr,
)

_logger = logging.getLogger("agentfence.fence")

__all__ = [
    "ResultOutcome",
    "activation_record",
    "amount_text",
    "as_recorded",
    "decision_record",
    "digest_of",
    "failure_decision",
    "failure_facts",
    "metered_call",
    "open_log",
]


def decision_record(
    decision: Decision,
    *,
    time_us: int,
    ids: tuple[str, str] | None = None,
    metered: Metered | None = None,
) -> tuple[DecisionRecord, list[Blob]]:
    """The record of a decision and the blob of its Cedar request(s), as the log stores them.

    ``ids`` are the trace and span ids of the call's span; ``metered`` what a metered call
    spends (none for a denied one).
    """
    facts = decision.facts
    request = decision.request or {}
    resource = request.get("resource")
    # A call of several resources stores all its requests (a JSON list), so that replay
    # decides each again; the record's resource is the one that determined the effect.
    made = decision.stored_request
    if decision.requests:
        content = _cedar.stored_form(list(decision.requests))
    elif made is not None and made[0] is decision.request:
        content = made[1]  # what the engine made of this very request while deciding it
    else:
        content = _cedar.stored_form(request)
    blobs = [Blob.of(content)] if request else []
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
        time_us=time_us,
        trace_id=ids[0] if ids else None,
        span_id=ids[1] if ids else None,
        metered=metered,
        shadow=ShadowVerdict(
            effect=decision.shadow.effect.value,
            policy_ids=list(decision.shadow.policy_ids),
            reasons=list(decision.shadow.reasons),
        )
        if decision.shadow is not None
        else None,
    )
    return record, blobs


@dataclass(frozen=True)
class ResultOutcome:
    """What a call returned, as its outcome records it: the result the model may see (redacted
    by the plan), its status, digest and blobs, and what was redacted."""

    result: ToolResult
    status: str  # "success" or "error"
    digest: str
    blobs: list[Blob]
    redactions: list[RedactionNote]
    original_digest: str | None = None
    """A salted digest of the result before redaction (the salt is ``blobs[1]``)."""

    @classmethod
    def of(cls, result: ToolResult, call_id: str | None, plan: RedactionPlan) -> ResultOutcome:
        """Redact ``result`` as ``plan`` says, then digest what is left."""
        counts: Counter[str] | dict[str, int] = {}
        original_digest = None
        blobs: list[Blob] = []
        if plan:
            counts = Counter()
            _, _, original = result_digest(result)
            redacted = mark_result(
                result, call_id, {}, lambda content: redact_content(content, plan, counts)
            )
            if counts:
                salt = new_salt()
                original_digest = salted_digest(salt, original)
                blobs.append(Blob.of(salt))
                result = redacted
        status, digest, content = result_digest(result)
        blobs.insert(0, Blob.of(content))
        redactions = [RedactionNote(kind=k, count=n) for k, n in sorted(counts.items())]
        return cls(result, status, digest, blobs, redactions, original_digest)

    def record(
        self, decision_id: str, *, time_us: int, labels: list[str], metered: Metered | None
    ) -> OutcomeRecord:
        """The outcome record of the call ``decision_id``."""
        return OutcomeRecord(
            decision_id=decision_id,
            status=self.status,
            result_digest=self.digest,
            result_blob=self.blobs[0].ref,
            time_us=time_us,
            labels=labels,
            redactions=self.redactions,
            original_digest=self.original_digest,
            original_salt_blob=self.blobs[1].ref if self.original_digest is not None else None,
            metered=metered,
        )


def activation_record(engine: PolicyEngine, *, time_us: int) -> tuple[ActivationRecord, list[Blob]]:
    """The record of a policy set's activation, with its files and schemas as blobs."""
    file_blobs = {name: Blob.of(text.encode()) for name, text in engine.texts.items()}
    schema = Blob.of(engine.schema_text.encode())
    generated = Blob.of(engine.generated_schema.encode())
    return (
        ActivationRecord(
            policy_hash=engine.policy_hash,
            files=engine.files,
            file_blobs={name: blob.ref for name, blob in file_blobs.items()},
            schema_blob=schema.ref,
            generated_schema_blob=generated.ref,
            engine=_cedar.ENGINE_VERSION,
            time_us=time_us,
        ),
        [*file_blobs.values(), schema, generated],
    )


def metered_call(engine: PolicyEngine, tool: str, args: Any) -> Metered | None:
    """What a call of a metered tool spends, as recorded (``None`` for unmetered tools)."""
    entry = engine.catalog.get(tool)
    meter = entry.spec.meter if entry is not None else None
    if meter is None or not isinstance(args, Mapping):
        return None
    return Metered(meter=meter.name, amount=amount_text(meter.amount(args)))


def amount_text(value: decimal.Decimal) -> str:
    """An amount as recorded: four decimal places, rounded half to even."""
    return f"{value.quantize(decimal.Decimal('0.0001'), rounding=decimal.ROUND_HALF_EVEN):f}"


def digest_of(value: Any) -> str:
    """SHA-256 hex of a value's canonical JSON (its repr when it is not JSON)."""
    return hashlib.sha256(canonical_or_repr(value)).hexdigest()


def as_recorded(log: object, engine: PolicyEngine, seq: int, decision: Decision) -> Decision:
    """The decision as first recorded at ``seq``, re-decided from its recorded request.

    Falls back to ``decision`` when the log cannot give the record back.
    """
    if not isinstance(log, LogReader):  # a log that cannot be read back
        return decision
    try:
        record = next((r for _, r in log.read(seq, seq + 1)), None)
        if not isinstance(record, DecisionRecord) or record.request_blob is None:
            return decision
        content = log.blob(record.request_blob)
    except Exception:  # an unreadable log: keep the decision just made
        _logger.warning("could not read decision %s back from the log", seq, exc_info=True)
        return decision
    if record.decision_id != decision.decision_id or content is None:
        return decision
    return engine.decide_recorded(decision.facts, json.loads(content), decision.decision_id)


def open_log(log: DecisionLog | str | Path | None, key: str | Path | Signer | None) -> DecisionLog:
    """The log a fence writes to: a given log, a signed log at a URL (needs ``key``), or a
    :class:`MemoryLog` when neither is given."""
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


def failure_facts(
    tool: str, args: Any, call_id: str | None, *, thread: str, step: Any, agent: Any, nonce: str
) -> CallFacts:
    """The facts of a call that could not be described (a resolver raised, a malformed
    principal or seed): what is known of it, with no principal."""
    return CallFacts(
        tool=tool,
        args=args if isinstance(args, Mapping) else {},
        principal=None,
        agent=agent,
        thread=thread,
        step=step,
        tool_call_id=call_id or "",
        seed=0,
        nonce=nonce,
    )


def failure_decision(facts: CallFacts, exc: Exception, policy_hash: str) -> Decision:
    """The DENY a call that could not be decided is recorded as (fail closed): a rejected
    principal's fixed reason, else the error."""
    reason = (
        exc.reason
        if isinstance(exc, PrincipalRejected)
        else f"the call could not be decided (fail closed): {exc}"
    )
    return Decision(
        effect=Effect.DENY,
        decision_id=facts.decision_id,
        policy_ids=(),
        reasons=(reason,),
        policy_hash=policy_hash,
        facts=facts,
        errors=(f"{type(exc).__name__}: {exc}",),
    )
