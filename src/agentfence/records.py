"""What agentfence persists: frozen pydantic models, each with a format marker.

Every record has exactly one canonical byte form, :func:`canonical_bytes`: RFC 8785 (JSON
Canonicalization Scheme) over the model's JSON data. Those bytes are what the decision log
hashes and what an independent verifier recomputes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import orjson
import rfc8785
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActivationRecord",
    "ApprovalAnswerRecord",
    "ApprovalRequestRecord",
    "Blob",
    "DecisionRecord",
    "ErasureRecord",
    "KeyChangeRecord",
    "Metered",
    "OutcomeRecord",
    "Record",
    "RedactionNote",
    "ShadowVerdict",
    "canonical_bytes",
    "entry_bytes",
]

ENTRY_FORMAT = "agentfence.entry/v1"
BLOB_SALT_BYTES = 16
ACTIVATION_KIND: Final = "agentfence.activation/v1"
DECISION_KIND: Final = "agentfence.decision/v1"
OUTCOME_KIND: Final = "agentfence.outcome/v1"
KEYCHANGE_KIND: Final = "agentfence.keychange/v1"
ERASURE_KIND: Final = "agentfence.erasure/v1"
APPROVAL_REQUEST_KIND: Final = "agentfence.approval_request/v1"
APPROVAL_ANSWER_KIND: Final = "agentfence.approval_answer/v1"
RECORD_KINDS: Final = {
    "activation": ACTIVATION_KIND,
    "decision": DECISION_KIND,
    "outcome": OUTCOME_KIND,
    "keychange": KEYCHANGE_KIND,
    "erasure": ERASURE_KIND,
    "approval_request": APPROVAL_REQUEST_KIND,
    "approval_answer": APPROVAL_ANSWER_KIND,
}
"""Each record kind by its short name (as ``log show --kind`` takes it)."""


@dataclass(frozen=True)
class Blob:
    """Content kept beside the log, referenced from entries by ``ref``.

    ``ref`` is ``"sha256:" + hex(SHA-256(salt || content))`` with a random 16-byte salt per
    blob, so that erasing a blob's content and salt leaves every entry (and so every proof)
    intact, and a guessed content cannot be confirmed against the ref once salt is gone.
    """

    ref: str
    salt: bytes
    content: bytes

    @classmethod
    def of(cls, content: bytes) -> Blob:
        """A new blob for ``content`` with a fresh random salt."""
        salt = os.urandom(BLOB_SALT_BYTES)
        return cls(ref=blob_ref(salt, content), salt=salt, content=content)


def blob_ref(salt: bytes, content: bytes) -> str:
    """The reference of a blob: ``sha256:`` and the hex SHA-256 of salt then content."""
    return "sha256:" + hashlib.sha256(salt + content).hexdigest()


class FrozenModel(BaseModel):
    """The base of agentfence's value models: immutable, and unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ActivationRecord(FrozenModel):
    """A policy set became active (at start-up or on ``Fence.reload()``).

    The policy texts, the full schema and the schema generated from the tools are stored as
    blobs, so a replay can rebuild exactly the engine that decided.
    """

    format: Literal["agentfence.activation/v1"] = "agentfence.activation/v1"
    policy_hash: str
    files: dict[str, str] = Field(description="file name -> SHA-256 hex of its bytes")
    file_blobs: dict[str, str] = Field(description="file name -> blob ref of its text")
    schema_blob: str = Field(description="blob ref of the full Cedar schema text")
    generated_schema_blob: str = Field(description="blob ref of the part generated from tools")
    engine: str
    time_us: int


class Metered(FrozenModel):
    """A call's amount on a meter (``govern(..., meter=Meter(name, arg=...))``)."""

    meter: str
    amount: str = Field(description="the amount as a decimal string, e.g. '2500.0000'")


class ShadowVerdict(FrozenModel):
    """What the policies would have decided with the ``@shadow`` policies enforced."""

    effect: Literal["ALLOW", "DENY", "REQUIRE_APPROVAL"]
    policy_ids: list[str] = Field(description="the shadow policies among the determining ones")
    reasons: list[str]


class RedactionNote(FrozenModel):
    """How many spans of one kind were redacted from a result before the model saw it."""

    kind: str
    count: int


class DecisionRecord(FrozenModel):
    """One policy decision about one tool call, recorded before the tool may run.

    It carries what replay needs: the Cedar request (principal, action, resource, context),
    the policy set hash and the evaluator, and what was decided and why.
    """

    format: Literal["agentfence.decision/v1"] = "agentfence.decision/v1"
    decision_id: str
    seed: int
    thread: str
    step: int
    tool_call_id: str
    tool: str
    principal: str | None
    agent: str
    action: str
    resource: str | None
    request_blob: str | None = Field(
        description="blob ref of the Cedar request (principal, action, resource, context) as "
        "compact JSON with sorted keys; null when the call was refused before Cedar"
    )
    effect: Literal["ALLOW", "DENY", "REQUIRE_APPROVAL"]
    policy_ids: list[str]
    reasons: list[str]
    errors: list[str]
    approvers: list[str]
    policy_hash: str
    engine: str
    time_us: int
    trace_id: str | None = None
    span_id: str | None = None
    metered: Metered | None = Field(
        default=None, description="the call's amount on its tool's meter, for session limits"
    )
    shadow: ShadowVerdict | None = Field(
        default=None,
        description="what the @shadow policies would have decided, when that differs from "
        "the enforced effect or a shadow policy matched; null otherwise",
    )


class OutcomeRecord(FrozenModel):
    """What happened when an allowed tool ran.

    ``result_digest`` and ``result_blob`` are of the result as the model saw it, after
    redaction; ``original_digest`` commits to the result before redaction without storing
    it: SHA-256 of a salt then the original's canonical bytes, the salt kept in the erasable
    blob ``original_salt_blob``.
    """

    format: Literal["agentfence.outcome/v1"] = "agentfence.outcome/v1"
    decision_id: str
    status: Literal["success", "error"]
    result_digest: str = Field(description="SHA-256 hex of the canonical result content")
    result_blob: str | None = Field(default=None, description="blob ref of the result content")
    time_us: int
    labels: list[str] = Field(default_factory=list, description="data labels of the result")
    redactions: list[RedactionNote] = Field(
        default_factory=list, description="what was redacted before the model saw the result"
    )
    original_digest: str | None = Field(
        default=None, description="sha256: of salt || the unredacted result's canonical bytes"
    )
    original_salt_blob: str | None = Field(
        default=None, description="blob ref of the salt of original_digest"
    )
    metered: Metered | None = Field(
        default=None, description="the amount the call that ran spent on its meter"
    )


class KeyChangeRecord(FrozenModel):
    """The log's checkpoint signing key changes from ``old_key`` to ``new_key``.

    Checkpoints up to the size that ends just before this entry are signed by the old key;
    the first checkpoint that includes this entry carries both signatures, and later ones the
    new key's, so a verifier trusting either key can follow the handover.
    """

    format: Literal["agentfence.keychange/v1"] = "agentfence.keychange/v1"
    old_key: str = Field(description="verifier key (C2SP vkey) of the outgoing signer")
    new_key: str = Field(description="verifier key (C2SP vkey) of the incoming signer")
    time_us: int


class ErasureRecord(FrozenModel):
    """A blob's content was erased (for example on a data-subject request)."""

    format: Literal["agentfence.erasure/v1"] = "agentfence.erasure/v1"
    blob: str
    reason: str
    time_us: int


class ApprovalRequestRecord(FrozenModel):
    """A call was held for a human approver (the request as the approvers see it)."""

    format: Literal["agentfence.approval_request/v1"] = "agentfence.approval_request/v1"
    request_id: str
    decision_id: str
    action_digest: str = Field(description="SHA-256 hex binding tool, arguments and principal")
    tool: str
    tool_call_id: str
    args_blob: str = Field(description="blob ref of the arguments (RFC 8785 JSON)")
    principal: str
    agent: str
    thread: str
    policy_hash: str
    policy_ids: list[str]
    reasons: list[str]
    risk: str
    approvers: list[str] = Field(description="approver groups named by the policies")
    created_us: int
    expires_us: int
    time_us: int


class ApprovalAnswerRecord(FrozenModel):
    """An answer reached the fence, and what the fence made of it.

    Every attempt is recorded: accepted answers, refused ones (forged, unbound, reused,
    late, from an approver policy does not allow, malformed) and expiries.
    """

    format: Literal["agentfence.approval_answer/v1"] = "agentfence.approval_answer/v1"
    request_id: str
    decision_id: str
    approver: str | None
    answer: Literal["approve", "edit", "reject", "respond", "expired", "unknown", "none"]
    verdict: Literal["accepted", "refused", "expired", "replayed", "unattended"]
    """``unattended``: the run refuses every hold (``on_hold="deny"``), so the call was
    refused at once with no answer (``answer`` is ``none``)."""
    reason: str
    answer_blob: str | None = Field(description="blob ref of the answer exactly as delivered")
    args_diff_blob: str | None = Field(description="blob ref of the edit's argument diff")
    time_us: int


LogRecord = (
    ActivationRecord
    | DecisionRecord
    | OutcomeRecord
    | KeyChangeRecord
    | ErasureRecord
    | ApprovalRequestRecord
    | ApprovalAnswerRecord
)
"""Any record the decision log accepts."""

_PLAIN_RECORDS = (
    ActivationRecord,
    DecisionRecord,
    OutcomeRecord,
    KeyChangeRecord,
    ErasureRecord,
    ApprovalRequestRecord,
    ApprovalAnswerRecord,
)
"""Records whose fields cannot hold floats (see :func:`canonical_bytes`)."""

Record = Annotated[LogRecord, Field(discriminator="format")]
"""A record, as a pydantic discriminated union (for parsing stored entries)."""


def canonical_or_repr(value: Any) -> bytes:
    """RFC 8785 canonical JSON of a value, or its ``repr`` (UTF-8) when it is not JSON.

    For what the log stores or digests about values it does not control (delivered answers,
    tool results, argument diffs): whatever they hold, they get bytes, never an exception.
    """
    if _plain_json(value, 0):  # no floats, exact types
        encoded = _fast_canonical(value)
        if encoded is not None:
            return encoded
    try:
        return rfc8785.dumps(value)
    except Exception:  # not JSON (a set, a model, NaN, a lone surrogate): its text form
        try:
            return repr(value).encode("utf-8", "backslashreplace")
        except RecursionError:
            return b"<too deeply nested>"


def _plain_json(value: Any, depth: int) -> bool:
    """Whether a value is JSON made of exactly ``dict`` (``str`` keys), ``list``, ``str``,
    ``int``, ``bool`` and ``None``, nested at most 64 deep: no floats (whose RFC 8785 form is
    ECMAScript's, not orjson's) and no subclasses (an enum member, a ``str`` subclass), which
    the reference encodes by its own rules."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= 64:
        return False
    if kind is dict:
        return all(type(k) is str and _plain_json(v, depth + 1) for k, v in value.items())
    if kind is list:
        return all(_plain_json(v, depth + 1) for v in value)
    return False


def canonical_bytes(record: BaseModel) -> bytes:
    """The RFC 8785 canonical JSON bytes of a record."""
    data: Any = record.model_dump(mode="json")
    if isinstance(record, _PLAIN_RECORDS):
        encoded = _fast_canonical(data)
        if encoded is not None:
            return encoded
    return rfc8785.dumps(data)


def _fast_canonical(data: Any) -> bytes | None:
    """RFC 8785 bytes of JSON that holds no floats, by orjson; ``None`` where they could
    differ from the reference's (see below) or orjson refuses the value."""
    try:
        encoded = orjson.dumps(data, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:  # an integer beyond I-JSON, a lone surrogate
        return None
    return encoded if encoded.isascii() or _WIDE.search(encoded) is None else None


# Records hold no floats (by their field types), so for them RFC 8785 reduces to sorted keys,
# no white space and JSON string escaping (the short escapes \b \t \n \f \r, and \u00XX in
# lower-case hex for the other control characters; everything else as UTF-8), which orjson
# writes exactly so, in native code: the log's commit path serialises every record, and the
# pure-Python reference takes about ten times as long. Two conditions keep the bytes identical,
# and a property test holds them equal over any code point and integers on either side of the
# bound: integers within +-(2**53 - 1) (RFC 8785 section 3.2.2.3: I-JSON numbers), which
# orjson's strict-integer option refuses beyond, and object keys below U+E000, where the sort by
# code point (orjson's, by UTF-8 bytes) equals RFC 8785's UTF-16 order (section 3.2.3). The
# output is searched for a character at or above U+E000 (its UTF-8 lead bytes EE to F4; an
# all-ASCII text has none) instead of walking the record's keys; anything that has one, even
# inside a string, and anything orjson refuses takes the reference implementation, which
# encodes or refuses it as RFC 8785 says.
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_WIDE = re.compile(b"[\xee-\xf4]")


def entry_bytes(seq: int, record: BaseModel) -> bytes:
    """The bytes of log entry ``seq``: the Merkle leaf data, the only form that is hashed.

    RFC 8785 canonical JSON of ``{"format": "agentfence.entry/v1", "record": ..., "seq": n}``.
    """
    return entry_bytes_from(seq, canonical_bytes(record))


_ENTRY_HEAD = b'{"format":"' + ENTRY_FORMAT.encode() + b'","record":'


def entry_bytes_from(seq: int, record_bytes: bytes) -> bytes:
    """:func:`entry_bytes` from a record's canonical bytes.

    RFC 8785 sorts keys by UTF-16 code units, so ``format`` < ``record`` < ``seq``; a
    canonical object nested in a canonical object is copied as is. The entry can therefore
    be assembled around bytes serialised earlier, outside the log's commit path.
    """
    return _ENTRY_HEAD + record_bytes + b',"seq":' + str(seq).encode() + b"}"


_REF_FIELDS: dict[type[BaseModel], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def blob_refs(record: LogRecord) -> list[str]:
    """The blob refs a record holds: fields named ``*_blob`` (a ref or null) and ``*_blobs``
    (a map of name to ref), the naming rule ``docs/log-format.md`` states for records."""
    fields = _REF_FIELDS.get(type(record))
    if fields is None:
        names = type(record).model_fields
        fields = (
            tuple(n for n in names if n.endswith("_blob")),
            tuple(n for n in names if n.endswith("_blobs")),
        )
        _REF_FIELDS[type(record)] = fields
    refs = [value for name in fields[0] if (value := getattr(record, name)) is not None]
    for name in fields[1]:
        refs.extend(getattr(record, name).values())
    return refs
