"""LangChain's human-in-the-loop formats for held calls, with agentfence's fields alongside.

What a held call's ``interrupt()`` carries depends on the fence's ``interrupt_mode``, chosen
the way LangChain's ``HumanInTheLoopMiddleware`` chooses its own:

- ``"batched"``: every held call of one model turn in **one** interrupt, a ``HITLRequest``
  whose ``action_requests`` and ``review_configs`` list them in the turn's order, each action
  with agentfence's fields under its ``agentfence`` key. Only ``create_agent`` has a turn to
  batch (the middleware's ``after_model`` hook); a hand-built ``ToolNode`` raises one
  ``HITLRequest`` of one action per held call.
- ``"per_call"``: one ``ToolApprovalRequest`` (``type: "tool_approval"``) per held call, with
  a ``response_schema`` on the interrupt, agentfence's fields under ``agentfence``.
- ``"request_per_call"``: one ``HITLRequest`` of one action per held call, agentfence's fields
  at its top level (what every mode raised before there were modes).

Answers are LangChain decisions carrying the approver's signed envelope, agentfence's own
signed envelopes, or bundles of them (:func:`~agentfence.approvals.signed_envelope`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from agentfence.approvals import (
    ANSWER_KINDS,
    BUNDLE_FORMAT,
    REFUSED_FORMAT,
    SIGNED_ANSWER_FORMAT,
    ApprovalRequest,
    pick_answer,
)

InterruptMode = Literal["batched", "per_call", "request_per_call"]
"""How a held call pauses the thread (``Fence(interrupt_mode=...)``)."""
INTERRUPT_MODES: tuple[str, ...] = get_args(InterruptMode)


def check_interrupt_mode(mode: str) -> InterruptMode:
    """``mode`` if it is one of :data:`INTERRUPT_MODES`; raises ValueError naming them."""
    if mode not in INTERRUPT_MODES:
        raise ValueError(
            f"interrupt_mode must be one of {', '.join(map(repr, INTERRUPT_MODES))}, not {mode!r}"
        )
    return mode  # type: ignore[return-value]  # checked against the Literal's values above


def description(request: ApprovalRequest) -> str:
    """The text shown to the reviewer."""
    return f"{request.tool} for {request.principal} needs approval: " + "; ".join(request.reasons)


def fence_fields(request: ApprovalRequest) -> dict[str, Any]:
    """agentfence's fields of a held call: what an answer must be bound to, and who may give it."""
    return {
        "request_id": request.request_id,
        "action_digest": request.action_digest,
        "policy_hash": request.policy_hash,
        "policy_ids": request.policy_ids,
        "reasons": request.reasons,
        "risk": request.risk,
        "approvers": request.approvers,
        "principal": request.principal,
        "thread": request.thread,
        "tool_call_id": request.tool_call_id,
        "expires_us": request.expires_us,
    }


def _review_config(request: ApprovalRequest) -> dict[str, Any]:
    return {"action_name": request.tool, "allowed_decisions": list(ANSWER_KINDS)}


def hitl_request(requests: Sequence[ApprovalRequest]) -> dict[str, Any]:
    """A ``HITLRequest`` for these held calls, in order; each action carries its
    ``agentfence`` fields (the one key LangChain's ``ActionRequest`` does not have)."""
    return {
        "action_requests": [
            {
                "name": r.tool,
                "args": r.args,
                "description": description(r),
                "agentfence": fence_fields(r),
            }
            for r in requests
        ],
        "review_configs": [_review_config(r) for r in requests],
    }


def single_request(request: ApprovalRequest) -> dict[str, Any]:
    """A ``HITLRequest`` of one action with agentfence's fields at its top level
    (``"request_per_call"``)."""
    return {
        "action_requests": [
            {"name": request.tool, "args": request.args, "description": description(request)}
        ],
        "review_configs": [_review_config(request)],
        "agentfence": fence_fields(request),
    }


def tool_approval_request(request: ApprovalRequest) -> dict[str, Any]:
    """A ``ToolApprovalRequest`` for one held call (``"per_call"``)."""
    return {
        "type": "tool_approval",
        "tool_call_id": request.tool_call_id,
        "name": request.tool,
        "args": request.args,
        "description": description(request),
        "agentfence": fence_fields(request),
    }


def response_schema(request: ApprovalRequest) -> dict[str, Any]:
    """The JSON Schema of an answer to a per-call interrupt: one LangChain decision, signed.

    Given to ``interrupt()`` as a ``dict``, so LangGraph shows it to clients and does not
    validate with it: the fence checks every answer itself, and records refused ones.
    """
    envelope = {
        "type": "object",
        "description": "the approver's signed answer (`agentfence approvals ... --json`)",
        "properties": {
            "format": {"const": SIGNED_ANSWER_FORMAT},
            "answer": {"type": "object"},
            "key": {"type": "string"},
            "signature": {"type": "string"},
        },
        "required": ["format", "answer", "key", "signature"],
    }
    edited_action = {
        "type": "object",
        "properties": {"name": {"const": request.tool}, "args": {"type": "object"}},
        "required": ["name", "args"],
    }
    message = {"type": "string"}
    branches: dict[str, tuple[dict[str, Any], list[str]]] = {
        "approve": ({}, ["type", "agentfence"]),
        "edit": ({"edited_action": edited_action}, ["type", "edited_action", "agentfence"]),
        "reject": ({"message": message}, ["type", "agentfence"]),
        "respond": ({"message": message}, ["type", "message", "agentfence"]),
    }
    return {
        "title": "SignedDecision",
        "oneOf": [
            {
                "type": "object",
                "properties": {"type": {"const": kind}, **extra, "agentfence": envelope},
                "required": required,
            }
            for kind, (extra, required) in branches.items()
        ],
    }


def turn_answers(delivered: Any, requests: Sequence[ApprovalRequest]) -> dict[str, Any]:
    """Each held call's part of the answer to a batched interrupt, by request id.

    ``requests`` are the interrupt's actions, in order. A bundle (``Fence.resume``) gives each
    request its own entry, and none to one not answered yet; a LangChain ``{"decisions":
    [...]}`` response gives them by position, and must hold one decision per action; any other
    value is each request's answer as it stands (checked later, so refused when it is not).
    """
    if isinstance(delivered, Mapping) and delivered.get("format") == BUNDLE_FORMAT:
        picked = {r.request_id: pick_answer(delivered, r.request_id) for r in requests}
        return {rid: p.payload for rid, p in picked.items() if p is not None}
    if isinstance(delivered, Mapping) and "decisions" in delivered:
        decisions = delivered["decisions"]
        if isinstance(decisions, list) and len(decisions) == len(requests):
            return {r.request_id: d for r, d in zip(requests, decisions, strict=True)}
        count = len(decisions) if isinstance(decisions, list) else "no list of"
        reason = (
            f"the answer holds {count} decisions for {len(requests)} held calls; give one "
            "decision per action, in the order of action_requests"
        )
        return {r.request_id: {"format": REFUSED_FORMAT, "reason": reason} for r in requests}
    return {r.request_id: delivered for r in requests}
