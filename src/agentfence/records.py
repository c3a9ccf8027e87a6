"""What agentfence persists: frozen pydantic models, each with a format marker.

Every record has exactly one canonical byte form, :func:`canonical_bytes`: RFC 8785 (JSON
Canonicalization Scheme) over the model's JSON data. Those bytes are what the decision log
hashes and what an independent verifier recomputes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActivationRecord",
    "DecisionRecord",
    "OutcomeRecord",
    "Record",
    "canonical_bytes",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActivationRecord(_Frozen):
    """A policy set became active (at start-up or on ``Fence.reload()``)."""

    format: Literal["agentfence.activation/v1"] = "agentfence.activation/v1"
    policy_hash: str
    files: dict[str, str] = Field(description="file name -> SHA-256 hex of its bytes")
    engine: str
    time_us: int


class DecisionRecord(_Frozen):
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
    request_json: str | None = Field(
        description="the Cedar request (principal, action, resource, context) as compact JSON "
        "with sorted keys; a string because Cedar longs exceed the RFC 8785 integer range"
    )
    effect: Literal["ALLOW", "DENY", "REQUIRE_APPROVAL"]
    policy_ids: list[str]
    reasons: list[str]
    errors: list[str]
    approvers: list[str]
    policy_hash: str
    engine: str
    time_us: int


class OutcomeRecord(_Frozen):
    """What happened when an allowed tool ran."""

    format: Literal["agentfence.outcome/v1"] = "agentfence.outcome/v1"
    decision_id: str
    status: Literal["success", "error"]
    result_digest: str = Field(description="SHA-256 hex of the canonical result content")
    time_us: int


Record = Annotated[ActivationRecord | DecisionRecord | OutcomeRecord, Field(discriminator="format")]
"""Any record the decision log accepts."""


def canonical_bytes(record: BaseModel) -> bytes:
    """The RFC 8785 canonical JSON bytes of a record: the only form that is hashed or signed."""
    data: Any = record.model_dump(mode="json")
    return rfc8785.dumps(data)
