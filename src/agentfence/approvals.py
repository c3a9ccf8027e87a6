"""Human-override checkpoints: approval requests, signed answers, and the store between them.

A call that policy holds (REQUIRE_APPROVAL) becomes an :class:`ApprovalRequest`, written to
an :class:`ApprovalStore` (the same database as the decision log) and raised as a LangGraph
``interrupt()``. An approver answers with an :class:`ApprovalAnswer` signed by their own
Ed25519 key (:func:`sign_answer`); the thread resumes with that signed answer, and the fence
accepts it only if :func:`check_answer` finds it signed by a declared approver, bound to this
request's action digest, in time, allowed by policy (``Action::"approve"``), not by the
requester, and not used before (:meth:`ApprovalStore.consume`).

Approvers and their public keys are declared in ``approvers.toml`` beside the policies::

    [[approver]]
    principal = 'User::"fran"'
    key = "fran+1a2b3c4d+AW...="          # from `agentfence keys generate --name fran`
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import rfc8785
from pydantic import Field, ValidationError

from agentfence._approvers import APPROVERS_FILE, ApproverRegistry
from agentfence._ids import derive_id
from agentfence._signing import Signer
from agentfence._storage.database import Database, Location, MemoryDatabase, parse_url
from agentfence.errors import AgentfenceError, VerificationError
from agentfence.policy import (
    CallFacts,
    Decision,
    Effect,
    EntityRef,
    PolicyEngine,
)
from agentfence.records import FrozenModel, canonical_or_repr

__all__ = [
    "ApprovalAnswer",
    "ApprovalRefused",
    "ApprovalRequest",
    "ApprovalStore",
    "ApproverRegistry",
    "answer_fields",
    "check_answer",
    "sign_answer",
    "signed_envelope",
    "submit_answer",
]

SIGNED_ANSWER_FORMAT = "agentfence.signed_answer/v1"
EXPIRED_FORMAT = "agentfence.expired/v1"
BUNDLE_FORMAT = "agentfence.answers/v1"
DEFAULT_EXPIRY_SECONDS = 15 * 60
EXPIRES_ANNOTATION = "approval_expires"
RISK_ANNOTATION = "risk"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

AnswerKind = Literal["approve", "edit", "reject", "respond"]
"""What an approver may answer: LangChain's human-in-the-loop decision types.

``respond`` answers in the tool's place: the tool does not run and the approver's message is
its result for the model."""
ANSWER_KINDS: tuple[AnswerKind, ...] = ("approve", "edit", "reject", "respond")


class ApprovalRefused(AgentfenceError):  # an outcome the caller handles, not a bug
    """An answer was not accepted; ``code`` names why (``forged``, ``expired``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ApprovalRequest(FrozenModel):
    """A held call, as approvers see it and as the store keeps it."""

    format: Literal["agentfence.approval_request/v1"] = "agentfence.approval_request/v1"
    request_id: str
    decision_id: str
    action_digest: str
    tool: str
    tool_call_id: str
    args: dict[str, Any]
    principal: str
    agent: str
    thread: str
    policy_hash: str
    policy_ids: list[str]
    reasons: list[str]
    risk: str
    approvers: list[str]
    created_us: int
    expires_us: int

    def expired(self, now_us: int) -> bool:
        """True once the request's time to answer has passed."""
        return now_us > self.expires_us


class ApprovalAnswer(FrozenModel):
    """An approver's answer to one request; what the approver's key signs."""

    format: Literal["agentfence.approval_answer/v1"] = "agentfence.approval_answer/v1"
    request_id: str
    action_digest: str
    approver: str = Field(description='the approver\'s principal, e.g. User::"fran"')
    decision: AnswerKind
    edited_args: dict[str, Any] | None = None
    message: str | None = None
    answered_us: int


def action_digest(tool: str, args: Mapping[str, Any], principal: str) -> str:
    """SHA-256 hex of the canonical (RFC 8785) tool name, arguments and principal."""
    return hashlib.sha256(
        rfc8785.dumps({"args": dict(args), "principal": principal, "tool": tool})
    ).hexdigest()


def parse_duration(text: str) -> int:
    """Seconds in ``"90s"``, ``"15m"``, ``"2h"`` or ``"1d"``; raises ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def request_for(decision: Decision, *, now_us: int, default_expiry: int) -> ApprovalRequest:
    """The approval request for a REQUIRE_APPROVAL decision (its id is deterministic)."""
    facts = decision.facts
    # The determining policies' @approval_expires set the time to answer (the shortest of
    # them when several do); without one, the fence's default applies.
    expiries = [
        parse_duration(notes[EXPIRES_ANNOTATION])
        for notes in decision.annotations.values()
        if EXPIRES_ANNOTATION in notes
    ]
    expiry = min(expiries) if expiries else default_expiry
    risk = next(
        (
            notes[RISK_ANNOTATION]
            for notes in decision.annotations.values()
            if notes.get(RISK_ANNOTATION)
        ),
        "",
    )
    principal = str(facts.principal)
    args = dict(facts.args)
    return ApprovalRequest(
        request_id=derive_id("approval", facts.seed, facts.thread, facts.step, facts.tool_call_id),
        decision_id=decision.decision_id,
        action_digest=action_digest(facts.tool, args, principal),
        tool=facts.tool,
        tool_call_id=facts.tool_call_id,
        args=args,
        principal=principal,
        agent=facts.agent,
        thread=facts.thread,
        policy_hash=decision.policy_hash,
        policy_ids=list(decision.policy_ids),
        reasons=list(decision.reasons),
        risk=risk or "high",
        approvers=list(decision.approvers),
        created_us=now_us,
        expires_us=now_us + expiry * 1_000_000,
    )


# --- approvers and signatures -------------------------------------------------------------


def sign_answer(answer: ApprovalAnswer, signer: Signer) -> dict[str, Any]:
    """The signed answer envelope to resume a thread with (or to store for the fence)."""
    signature = signer.sign(rfc8785.dumps(answer.model_dump(mode="json")))
    return {
        "format": SIGNED_ANSWER_FORMAT,
        "answer": answer.model_dump(mode="json"),
        "key": f"{signer.name}+{signer.key_id:08x}",
        "signature": base64.b64encode(signature).decode(),
    }


def submit_answer(
    store: ApprovalStore,
    request: ApprovalRequest,
    *,
    approver: EntityRef,
    decision: AnswerKind,
    signer: Signer,
    now_us: int,
    edited_args: dict[str, Any] | None = None,
    message: str | None = None,
    engine: PolicyEngine | None = None,
    registry: ApproverRegistry | None = None,
) -> tuple[ApprovalAnswer, dict[str, Any]]:
    """Answer a request as ``approver``: sign, check, store. The one path the CLI and the
    inbox share; the fence checks the answer again when the thread resumes.

    With ``engine`` and ``registry`` the answer is first put through :func:`check_answer`,
    so an approver learns at once that the fence would refuse it. Raises
    :class:`ApprovalRefused` for a refused answer, or one the store will not take.
    """
    answer = ApprovalAnswer(
        request_id=request.request_id,
        action_digest=request.action_digest,
        approver=str(approver),
        decision=decision,
        edited_args=edited_args,
        message=message,
        answered_us=now_us,
    )
    envelope = sign_answer(answer, signer)
    if engine is not None and registry is not None:
        check_answer(envelope, request, engine=engine, registry=registry, now_us=now_us)
    store.submit(request.request_id, envelope, now_us=now_us)
    return answer, envelope


UNSIGNED_DECISION = (
    "unsigned answer: a human-in-the-loop decision is accepted only with the approver's "
    'signed answer under its \'agentfence\' key, e.g. {"type": "approve", "agentfence": '
    "ENVELOPE}; answer with `agentfence approvals approve|edit|reject|respond REQUEST_ID` (or "
    "the inbox), which signs the answer (`--json` prints the envelope)"
)
REFUSED_FORMAT = "agentfence.refused_answer/v1"
"""A delivered answer that could not be matched to its request; ``reason`` says why."""


def answer_fields(
    decision: Mapping[str, Any], *, tool: str | None = None
) -> tuple[AnswerKind, dict[str, Any] | None, str | None]:
    """The answer a LangChain human-in-the-loop decision states: (decision, edited_args, message).

    Reads ``{"type": "approve"}``, ``{"type": "edit", "edited_action": {"name": TOOL, "args":
    {...}}}``, ``{"type": "reject", "message": ...}`` and ``{"type": "respond", "message":
    ...}`` (the fields of :class:`ApprovalAnswer`). An edit changes the arguments, never the
    tool: with ``tool``, an ``edited_action`` naming another is refused. Raises
    :class:`ApprovalRefused` (``malformed``) saying what is wrong. The decision is not trusted
    by this: the fence accepts it only signed (see ``docs/approver-guide.md``).
    """
    if not isinstance(decision, Mapping):
        raise ApprovalRefused(
            "malformed", f"malformed decision: expected an object, got {type(decision).__name__}"
        )
    kind = decision.get("type")
    if kind not in ANSWER_KINDS:
        raise ApprovalRefused(
            "malformed",
            f"malformed decision: type is {kind!r}; expected one of {', '.join(ANSWER_KINDS)}",
        )
    message = decision.get("message")
    if message is not None and not isinstance(message, str):
        raise ApprovalRefused("malformed", "malformed decision: message must be text")
    if kind == "respond" and not message:
        raise ApprovalRefused(
            "malformed",
            "malformed decision: a respond decision needs a message (the text the model gets "
            "as the tool's result)",
        )
    if kind != "edit":
        if "edited_action" in decision:
            raise ApprovalRefused(
                "malformed", f"malformed decision: a {kind} decision carries no edited_action"
            )
        return kind, None, message
    action = decision.get("edited_action")
    if not isinstance(action, Mapping) or not isinstance(action.get("args"), Mapping):
        raise ApprovalRefused(
            "malformed",
            'malformed decision: an edit needs edited_action: {"name": TOOL, "args": {...}}',
        )
    name = action.get("name")
    if tool is not None and name != tool:
        raise ApprovalRefused(
            "malformed",
            f"malformed decision: an edit changes the arguments, not the tool; edited_action "
            f"names {name!r} but the held call is {tool!r}",
        )
    return "edit", dict(action["args"]), message


def signed_envelope(payload: Any, *, tool: str | None = None) -> Any:
    """The signed answer envelope a delivered answer carries, for :func:`check_answer`.

    A LangChain decision (``{"type": ..., "agentfence": ENVELOPE}``), or a ``{"decisions":
    [...]}`` response of one such decision, yields its envelope, once the decision's own
    fields (:func:`answer_fields`) state exactly what the signed answer says; anything else is
    returned as it is. Raises :class:`ApprovalRefused`: ``unsigned`` for a decision with no
    envelope, ``mismatch`` for one that says something else than its signed answer.
    """
    if not isinstance(payload, Mapping) or "format" in payload:
        return payload
    if "decisions" in payload:
        decisions = payload["decisions"]
        if not isinstance(decisions, list) or len(decisions) != 1:
            count = len(decisions) if isinstance(decisions, list) else "no list of"
            raise ApprovalRefused(
                "malformed",
                f"malformed answer: this request takes one decision, the answer holds {count} "
                "decisions",
            )
        payload = decisions[0]
        if not isinstance(payload, Mapping):
            return payload
    if "type" not in payload:
        return payload
    kind, edited, message = answer_fields(payload, tool=tool)
    envelope = payload.get("agentfence")
    if envelope is None:
        raise ApprovalRefused("unsigned", UNSIGNED_DECISION)
    signed = envelope.get("answer") if isinstance(envelope, Mapping) else None
    if not isinstance(signed, Mapping):
        raise ApprovalRefused(
            "malformed",
            f"malformed answer: the decision's 'agentfence' key must hold a signed answer "
            f"envelope ({SIGNED_ANSWER_FORMAT})",
        )
    if signed.get("decision") != kind:
        raise ApprovalRefused(
            "mismatch",
            f"mismatched answer: the decision says {kind!r} but its signed answer says "
            f"{signed.get('decision')!r}",
        )
    if kind == "edit" and signed.get("edited_args") != edited:
        raise ApprovalRefused(
            "mismatch",
            "mismatched answer: the decision's edited_action args are not the signed edited_args",
        )
    if message is not None and message != signed.get("message"):
        raise ApprovalRefused(
            "mismatch", "mismatched answer: the decision's message is not the signed one"
        )
    return envelope


def answer_digest(envelope: Mapping[str, Any]) -> str:
    """SHA-256 hex of a delivered answer, to tell one use of it from another."""
    return hashlib.sha256(canonical_or_repr(dict(envelope))).hexdigest()


@dataclass(frozen=True)
class VerifiedAnswer:
    """An answer that passed every check but single use (the store's consume does that)."""

    answer: ApprovalAnswer
    approver: EntityRef
    digest: str


def parse_envelope(payload: Any) -> tuple[ApprovalAnswer, str, bytes]:
    """Read a signed answer envelope: the answer, the key it names and the signature."""
    if not isinstance(payload, Mapping):
        raise ApprovalRefused(
            "malformed", f"malformed answer: expected an object, got {type(payload).__name__}"
        )
    if payload.get("format") != SIGNED_ANSWER_FORMAT:
        if "decisions" in payload or "type" in payload:
            raise ApprovalRefused("unsigned", UNSIGNED_DECISION)
        if payload.get("format") == REFUSED_FORMAT:
            raise ApprovalRefused("malformed", f"malformed answer: {payload.get('reason')}")
        raise ApprovalRefused(
            "malformed",
            f"malformed answer: format is "
            f"{payload.get('format')!r}, expected {SIGNED_ANSWER_FORMAT!r}",
        )
    try:
        answer = ApprovalAnswer.model_validate(payload.get("answer"))
    except ValidationError as exc:
        raise ApprovalRefused(
            "malformed",
            f"malformed answer: {exc.errors()[0]['msg']} at "
            f"{'.'.join(map(str, exc.errors()[0]['loc']))}",
        ) from None
    key = payload.get("key")
    signature = payload.get("signature")
    if not isinstance(key, str) or not isinstance(signature, str) or not signature:
        raise ApprovalRefused("unsigned", "unsigned answer: it carries no key and signature")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise ApprovalRefused("forged", "forged answer: the signature is not base64") from None
    return answer, key, raw


def check_answer(
    payload: Any,
    request: ApprovalRequest,
    *,
    engine: PolicyEngine,
    registry: ApproverRegistry,
    now_us: int,
    answered_us: int | None = None,
) -> VerifiedAnswer:
    """Check a delivered answer against its request; raise :class:`ApprovalRefused` if not good.

    Checks, in order: the envelope is well formed; the key is a declared approver's and the
    Ed25519 signature over the answer's canonical bytes verifies; the answer names this
    request and its action digest (the exact tool, arguments and principal); the approver is
    the key's principal and not the requester; the answer was given and handed in before the
    request expired (``answered_us``: when the store took it, else ``now_us``); and Cedar
    allows ``Action::"approve"`` for this approver on this request.
    """
    answer, key, signature = parse_envelope(payload)
    name, _, key_id_hex = key.partition("+")
    try:
        key_id = int(key_id_hex, 16)
    except ValueError:
        raise ApprovalRefused("forged", f"forged answer: key {key!r} is malformed") from None
    approver = registry.lookup(name, key_id)
    if approver is None:
        raise ApprovalRefused(
            "forged",
            f"forged answer: key {key!r} is not a declared approver's (see {APPROVERS_FILE})",
        )
    try:
        approver.verifier.verify(signature, rfc8785.dumps(answer.model_dump(mode="json")))
    except VerificationError:  # only a bad signature is a forgery; any other error is a bug
        raise ApprovalRefused(
            "forged", f"forged answer: the signature does not verify with {key!r}"
        ) from None
    if answer.request_id != request.request_id:
        raise ApprovalRefused(
            "unbound", f"the answer is for request {answer.request_id}, not {request.request_id}"
        )
    if answer.action_digest != request.action_digest:
        raise ApprovalRefused(
            "unbound",
            "the answer is bound to different arguments or "
            "another principal than this call (action digest mismatch)",
        )
    try:
        claimed = EntityRef.parse(answer.approver, approver.principal.type)
    except ValueError:
        raise ApprovalRefused(
            "malformed", f"malformed answer: approver {answer.approver!r}"
        ) from None
    if claimed != approver.principal:
        raise ApprovalRefused(
            "forged",
            f"forged answer: signed by {approver.principal}'s key but claims to be {claimed}",
        )
    if str(claimed) == request.principal:
        raise ApprovalRefused(
            "self_approval", f"{claimed} requested this call and cannot approve it"
        )
    # An answer counts if it was given before the request expired, even when the thread
    # resumes later: both the time the approver signed and the time the answer was handed
    # in (``answered_us``: when the store took it; now, for an answer handed in directly)
    # must be in time.
    handed_in = answered_us if answered_us is not None else now_us
    if answer.answered_us > request.expires_us or handed_in > request.expires_us:
        raise ApprovalRefused(
            "expired", f"the request expired at {_iso(request.expires_us)}; the call was not run"
        )
    if answer.decision == "edit" and not isinstance(answer.edited_args, dict):
        raise ApprovalRefused("malformed", "malformed answer: an edit needs edited_args")
    if answer.decision == "respond" and not answer.message:
        raise ApprovalRefused(
            "malformed", "malformed answer: a respond answer needs the message for the model"
        )
    allowed = approve_decision(engine, request, claimed)
    if allowed is not None:
        raise ApprovalRefused("not_allowed", f"{claimed} may not approve this request: {allowed}")
    return VerifiedAnswer(answer=answer, approver=claimed, digest=answer_digest(payload))


def decide_edit(
    engine: PolicyEngine, request: ApprovalRequest, args: Mapping[str, Any]
) -> Decision:
    """The held call with ``args`` instead of its own, decided as the fence decides an edit
    on resume: what an approver's early check (CLI, inbox) must refuse before it signs."""
    return engine.decide(
        CallFacts(
            tool=request.tool,
            args=args,
            principal=EntityRef.parse(request.principal, engine.principal_types[0]),
            agent=request.agent,
            thread=request.thread,
            step=0,
            tool_call_id=request.tool_call_id,
            seed=0,
        )
    )


def approve_decision(
    engine: PolicyEngine, request: ApprovalRequest, approver: EntityRef
) -> str | None:
    """``None`` if Cedar allows the approver to answer; otherwise why not."""
    group_type = engine.approver_group_type
    facts = CallFacts(
        tool="approve",
        args={},
        principal=approver,
        agent=request.agent,
        thread=request.thread,
        step=0,
        tool_call_id=request.request_id,
        seed=0,
    )
    cedar_request = {
        "principal": approver.as_json(),
        "action": {"type": "Action", "id": "approve"},
        "resource": {"type": "Approval", "id": request.request_id},
        "context": {
            "tool": request.tool,
            "requester": EntityRef.parse(request.principal, approver.type).as_json(),
            "approver_groups": [{"type": group_type, "id": g} for g in request.approvers],
            "risk": request.risk,
        },
    }
    decision = engine.decide_request(facts, cedar_request)
    if decision.effect is Effect.ALLOW:
        return None
    needed = ", ".join(f'{group_type}::"{g}"' for g in request.approvers)
    return "; ".join(decision.reasons) + (f" (it needs an approver in {needed})" if needed else "")


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1_000_000))


# --- the store ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    request_id TEXT PRIMARY KEY,
    thread TEXT NOT NULL,
    tool TEXT NOT NULL,
    principal TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    expires_us BIGINT NOT NULL,
    request TEXT NOT NULL,
    answer TEXT,
    answered_us BIGINT,
    used_digest TEXT,
    used_us BIGINT,
    expired_us BIGINT
);
CREATE INDEX IF NOT EXISTS approvals_open ON approvals (used_us, expires_us);
"""

Status = Literal["pending", "answered", "used", "expired"]


@dataclass(frozen=True)
class StoredApproval:
    """A request as the store holds it, with its answer and use."""

    request: ApprovalRequest
    answer: dict[str, Any] | None
    answered_us: int | None
    used_us: int | None
    expired_us: int | None

    def status(self, now_us: int) -> Status:
        """``pending``, ``answered`` (waiting for the thread to resume), ``used``, ``expired``."""
        if self.used_us is not None:
            return "used"
        if self.expired_us is not None or (self.answer is None and self.request.expired(now_us)):
            return "expired"
        return "answered" if self.answer is not None else "pending"


_COLUMNS = "SELECT request, answer, answered_us, used_us, expired_us FROM approvals"
_ANSWER_STATE = "SELECT answer, used_us, expires_us, expired_us FROM approvals WHERE request_id = ?"


class ApprovalStore:
    """Approval requests and answers, kept beside the decision log (or in memory).

    In the log's SQLite file or its PostgreSQL database: a request a worker on one host
    stores can be answered from the CLI or the inbox on another and resumed by any worker.
    Approvers' tools write answers here; the fence reads them when the thread resumes and
    marks each answer used, once, in one atomic update (two workers resuming the same
    thread: one of them gets it).
    """

    def __init__(self, url: str | Path | Location | None = None, *, readonly: bool = False) -> None:
        self.location = parse_url(url) if url is not None else None
        self.path = self.location.path if self.location is not None else None
        self.readonly = readonly and self.location is not None
        self._db: Database
        if self.location is None:
            self._db = MemoryDatabase()
        else:
            self._db = Database(self.location, readonly=self.readonly)
            if self.readonly:
                self._db.require({"approvals"}, "approvals store")
        if not self.readonly:
            self._db.create_schema(_SCHEMA)

    @classmethod
    def open(cls, url: str | Path) -> ApprovalStore:
        """The store beside the log at ``sqlite:///PATH`` or ``postgresql://...``."""
        return cls(url)

    def create(self, request: ApprovalRequest) -> ApprovalRequest:
        """Store a request unless its id is stored already; return the stored one."""
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO approvals (request_id, thread, tool, principal, "
                "created_us, expires_us, request) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (
                    request.request_id,
                    request.thread,
                    request.tool,
                    request.principal,
                    request.created_us,
                    request.expires_us,
                    request.model_dump_json(),
                ),
            )
            row = db.execute(
                "SELECT request FROM approvals WHERE request_id = ?", (request.request_id,)
            ).fetchone()
        return ApprovalRequest.model_validate_json(row[0])

    def find(self, prefix: str) -> list[StoredApproval]:
        """Requests whose id is ``prefix`` or starts with it (8+ characters), for people
        typing ids: none, one, or several (ambiguous)."""
        if len(prefix) >= 8:
            stem = prefix.replace("%", "").replace("_", "") + "%"
            rows = self._db.execute(
                f"{_COLUMNS} WHERE request_id = ? OR request_id LIKE ? "  # constant
                "ORDER BY created_us DESC",
                (prefix, stem),
            ).fetchall()
        else:
            rows = self._db.execute(
                f"{_COLUMNS} WHERE request_id = ? ORDER BY created_us DESC",  # constant columns
                (prefix,),
            ).fetchall()
        return [_stored(r) for r in rows]

    def get(self, request_id: str) -> StoredApproval | None:
        """One request with its answer and use, by id (or by a prefix that names one only)."""
        found = self.find(request_id)
        return found[0] if len(found) == 1 else None

    def list(self, *, thread: str | None = None) -> list[StoredApproval]:
        """Every request, newest first (optionally one thread's)."""
        if thread is None:
            sql = f"{_COLUMNS} ORDER BY created_us DESC"  # constant columns
            rows = self._db.execute(sql).fetchall()
        else:
            rows = self._db.execute(
                f"{_COLUMNS} WHERE thread = ? ORDER BY created_us DESC",  # constant columns
                (thread,),
            ).fetchall()
        return [_stored(r) for r in rows]

    def submit(self, request_id: str, envelope: Mapping[str, Any], *, now_us: int) -> None:
        """Store an approver's signed answer for the thread to pick up when it resumes.

        A request takes one answer; a second is refused, as is an answer after expiry.
        """
        with self._db.transaction() as db:
            # Locked (PostgreSQL: FOR UPDATE) so two approvers answering at once are
            # serialised and the second sees the first's answer.
            row = db.execute(_ANSWER_STATE + db.dialect.lock_suffix, (request_id,)).fetchone()
            if row is None:
                raise ApprovalRefused(
                    "unknown",
                    f"no approval request {request_id}; list them with `agentfence approvals list`",
                )
            if row[0] is not None or row[1] is not None:
                raise ApprovalRefused("answered", f"request {request_id} is already answered")
            if row[3] is not None or now_us > row[2]:
                raise ApprovalRefused("expired", f"request {request_id} expired at {_iso(row[2])}")
            db.execute(
                "UPDATE approvals SET answer = ?, answered_us = ? WHERE request_id = ?",
                (json.dumps(dict(envelope)), now_us, request_id),
            )

    def consume(self, request_id: str, digest: str, *, now_us: int) -> bool:
        """Mark the request's answer used by the delivery ``digest``; False if used already."""
        with self._db.transaction() as db:
            cur = db.execute(
                "UPDATE approvals SET used_us = ?, used_digest = ? "
                "WHERE request_id = ? AND used_us IS NULL",
                (now_us, digest, request_id),
            )
            return cur.rowcount == 1

    def mark_expired(self, request_id: str, *, now_us: int) -> None:
        """Record that an unanswered request expired (it can no longer be answered)."""
        with self._db.transaction() as db:
            db.execute(
                "UPDATE approvals SET expired_us = ? WHERE request_id = ? AND expired_us IS NULL",
                (now_us, request_id),
            )

    def close(self) -> None:
        """Close the store's connections."""
        self._db.close()


def _stored(row: Sequence[Any]) -> StoredApproval:
    return StoredApproval(
        request=ApprovalRequest.model_validate_json(row[0]),
        answer=json.loads(row[1]) if row[1] else None,
        answered_us=row[2],
        used_us=row[3],
        expired_us=row[4],
    )


def answers_bundle(ready: Sequence[StoredApproval], *, now_us: int) -> dict[str, Any]:
    """The resume value for a paused thread: every given request's answer, or its expiry.

    One bundle serves every call paused in the same step, whichever ``interrupt()`` it
    reaches: each call takes its own request's entry.
    """
    answers: dict[str, Any] = {}
    expired: list[str] = []
    for item in ready:
        if item.answer is not None and item.used_us is None:
            answers[item.request.request_id] = item.answer
        elif item.status(now_us) == "expired":
            expired.append(item.request.request_id)
    return {"format": BUNDLE_FORMAT, "answers": answers, "expired": sorted(expired)}


@dataclass(frozen=True)
class Picked:
    """What a resume value holds for one request."""

    payload: Any


def pick_answer(delivered: Any, request_id: str) -> Picked | None:
    """This request's part of a resume value; ``None`` if a bundle holds nothing for it.

    A value that is not a bundle is taken as this request's answer as it stands (and is then
    checked, so an answer for another request is refused, not skipped).
    """
    if isinstance(delivered, Mapping) and delivered.get("format") == BUNDLE_FORMAT:
        answers = delivered.get("answers")
        expired = delivered.get("expired")
        if isinstance(answers, Mapping) and request_id in answers:
            return Picked(answers[request_id])
        if isinstance(expired, list) and request_id in expired:
            return Picked({"format": EXPIRED_FORMAT, "request_id": request_id})
        if isinstance(answers, Mapping) and isinstance(expired, list):
            return None
    return Picked(delivered)


def diff_args(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The argument diff of an edit: each changed key with its old and new value."""
    keys = sorted(set(old) | set(new))
    return {k: {"old": old.get(k), "new": new.get(k)} for k in keys if old.get(k) != new.get(k)}
