"""LangChain's human-in-the-loop formats: payloads checked strictly against the installed
langchain's own TypedDicts, and LangChain decisions mapped to signed answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NotRequired, get_args, get_origin

import pytest
from langchain.agents.middleware.human_in_the_loop import (
    ActionRequest,
    ApproveDecision,
    EditDecision,
    HITLRequest,
    RejectDecision,
    RespondDecision,
    ToolApprovalRequest,
)
from pydantic import TypeAdapter

# typing_extensions' helpers also know typing_extensions.TypedDict (langchain's)
from typing_extensions import get_type_hints, is_typeddict

from agentfence import Fence
from agentfence._hitl import (
    check_interrupt_mode,
    hitl_request,
    response_schema,
    single_request,
    tool_approval_request,
    turn_answers,
)
from agentfence.approvals import (
    BUNDLE_FORMAT,
    ApprovalRefused,
    ApprovalRequest,
    ApproverRegistry,
    answer_fields,
    check_answer,
    parse_envelope,
    request_for,
    signed_envelope,
)
from tests.conftest import signed

Extras = Mapping[type, frozenset[str]]
FENCE_KEY = frozenset({"agentfence"})


def exactly(td: Any, value: Any, extras: Extras, path: str = "$") -> None:
    """``value`` is exactly the TypedDict ``td``: its required keys, no keys it does not declare
    (but the ``extras`` named for it), and every declared value of its declared type (checked
    with pydantic in strict mode, nested TypedDicts key by key).

    Required and optional keys are read from the type hints: with postponed annotations,
    Python 3.11 counts a ``NotRequired`` key in ``__required_keys__``."""
    assert isinstance(value, dict), f"{path}: not an object"
    hints = get_type_hints(td, include_extras=True)
    optional = {k for k, hint in hints.items() if get_origin(hint) is NotRequired}
    required = hints.keys() - optional
    allowed = hints.keys() | extras.get(td, frozenset())
    assert required <= value.keys(), f"{path}: missing {required - value.keys()}"
    assert value.keys() <= allowed, f"{path}: keys {set(value) - allowed} are not {td.__name__}'s"
    for key in value.keys() & hints.keys():
        kind, item = hints[key], value[key]
        kind = get_args(kind)[0] if key in optional else kind
        if is_typeddict(kind):
            exactly(kind, item, extras, f"{path}.{key}")
        elif get_origin(kind) is list and is_typeddict(get_args(kind)[0]):
            assert isinstance(item, list), f"{path}.{key}: not a list"
            for i, element in enumerate(item):
                exactly(get_args(kind)[0], element, extras, f"{path}.{key}[{i}]")
        else:
            TypeAdapter(kind).validate_python(item, strict=True)


def held(
    make_fence: Callable[..., Fence], call_id: str = "c1", amount: float = 500.0
) -> ApprovalRequest:
    decision = make_fence().decide(
        "pay",
        {"account": "acc-1", "amount": amount},
        principal="alice",
        thread="t",
        step=1,
        tool_call_id=call_id,
    )
    return request_for(decision, now_us=1_000, default_expiry=60)


def test_batched_request_is_exactly_a_hitl_request_with_agentfence_per_action(
    make_fence: Callable[..., Fence],
) -> None:
    one, two = held(make_fence, "c1"), held(make_fence, "c2", 700.0)
    value = hitl_request([one, two])
    exactly(HITLRequest, value, {ActionRequest: FENCE_KEY})
    assert [a["agentfence"]["request_id"] for a in value["action_requests"]] == [
        one.request_id,
        two.request_id,
    ]
    # The extra key is the only addition: without it, the value is LangChain's as it stands.
    with pytest.raises(AssertionError, match=r"keys \{'agentfence'\} are not ActionRequest's"):
        exactly(HITLRequest, value, {})


def test_per_call_request_is_exactly_a_tool_approval_request(
    make_fence: Callable[..., Fence],
) -> None:
    request = held(make_fence)
    value = tool_approval_request(request)
    exactly(ToolApprovalRequest, value, {ToolApprovalRequest: FENCE_KEY})
    assert value["type"] == "tool_approval" and value["tool_call_id"] == "c1"
    assert value["agentfence"]["action_digest"] == request.action_digest


def test_request_per_call_is_exactly_a_hitl_request_with_agentfence_on_top(
    make_fence: Callable[..., Fence],
) -> None:
    value = single_request(held(make_fence))
    exactly(HITLRequest, value, {HITLRequest: FENCE_KEY})
    assert len(value["action_requests"]) == 1


def test_response_schema_offers_every_decision_signed(make_fence: Callable[..., Fence]) -> None:
    schema = response_schema(held(make_fence))
    branches = {b["properties"]["type"]["const"]: b for b in schema["oneOf"]}
    assert set(branches) == {"approve", "edit", "reject", "respond"}
    assert all("agentfence" in b["required"] for b in branches.values())
    assert branches["edit"]["properties"]["edited_action"]["properties"]["name"] == {"const": "pay"}


@pytest.mark.parametrize(
    ("decision", "langchain_type", "fields"),
    [
        ({"type": "approve"}, ApproveDecision, ("approve", None, None)),
        (
            {"type": "edit", "edited_action": {"name": "pay", "args": {"amount": 1}}},
            EditDecision,
            ("edit", {"amount": 1}, None),
        ),
        ({"type": "reject", "message": "no"}, RejectDecision, ("reject", None, "no")),
        ({"type": "respond", "message": "it is 4"}, RespondDecision, ("respond", None, "it is 4")),
    ],
)
def test_answer_fields_reads_each_langchain_decision(
    decision: dict[str, Any], langchain_type: Any, fields: tuple[Any, ...]
) -> None:
    exactly(langchain_type, decision, {})  # the decisions read are LangChain's own
    assert answer_fields(decision, tool="pay") == fields


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        ({"type": "accept"}, "type is 'accept'; expected one of approve, edit, reject, respond"),
        ({"type": "respond"}, "a respond decision needs a message"),
        ({"type": "edit"}, "an edit needs edited_action"),
        (
            {"type": "edit", "edited_action": {"name": "wipe", "args": {}}},
            "an edit changes the arguments, not the tool; edited_action names 'wipe'",
        ),
        ({"type": "approve", "edited_action": {}}, "a approve decision carries no edited_action"),
        ({"type": "reject", "message": 3}, "message must be text"),
    ],
)
def test_answer_fields_refuses_a_malformed_decision(decision: dict[str, Any], message: str) -> None:
    with pytest.raises(ApprovalRefused, match=message) as refused:
        answer_fields(decision, tool="pay")
    assert refused.value.code == "malformed"


def test_signed_decision_yields_its_envelope(make_fence: Callable[..., Fence]) -> None:
    request = held(make_fence)
    envelope = signed(request, decision="reject", message="not today")
    decision = {"type": "reject", "message": "not today", "agentfence": envelope}
    assert signed_envelope(decision, tool="pay") is envelope
    assert signed_envelope({"decisions": [decision]}, tool="pay") is envelope
    assert signed_envelope(envelope) is envelope  # agentfence's own envelope, as before


def test_unsigned_approve_is_refused_with_what_to_do() -> None:
    with pytest.raises(ApprovalRefused, match="agentfence approvals approve") as refused:
        signed_envelope({"type": "approve"})
    assert refused.value.code == "unsigned"
    assert "format is None" not in str(refused.value)


def test_decision_type_that_is_not_the_signed_one_is_refused(
    make_fence: Callable[..., Fence],
) -> None:
    request = held(make_fence)
    rejected = signed(request, decision="reject", message="no")
    with pytest.raises(ApprovalRefused, match="says 'approve' but its signed answer says 'reject'"):
        signed_envelope({"type": "approve", "agentfence": rejected})


def test_edit_args_smuggled_beside_the_signed_edit_are_refused(
    make_fence: Callable[..., Fence],
) -> None:
    request = held(make_fence)
    envelope = signed(request, decision="edit", edited_args={"account": "acc-1", "amount": 50.0})
    smuggled = {"name": "pay", "args": {"account": "acc-666", "amount": 50.0}}
    with pytest.raises(ApprovalRefused, match="edited_action args are not the signed") as refused:
        signed_envelope({"type": "edit", "edited_action": smuggled, "agentfence": envelope})
    assert refused.value.code == "mismatch"


def test_message_that_is_not_the_signed_one_is_refused(make_fence: Callable[..., Fence]) -> None:
    envelope = signed(held(make_fence), decision="respond", message="the balance is 10")
    with pytest.raises(ApprovalRefused, match="message is not the signed one"):
        signed_envelope({"type": "respond", "message": "wire it all", "agentfence": envelope})


def test_turn_answers_by_position_and_from_bundles(make_fence: Callable[..., Fence]) -> None:
    one, two = held(make_fence, "c1"), held(make_fence, "c2", 700.0)
    first, second = {"type": "approve", "n": 1}, {"type": "approve", "n": 2}
    assert turn_answers({"decisions": [first, second]}, [one, two]) == {
        one.request_id: first,
        two.request_id: second,
    }
    bundle = {"format": BUNDLE_FORMAT, "answers": {two.request_id: second}, "expired": []}
    assert turn_answers(bundle, [one, two]) == {two.request_id: second}  # one is asked again


def test_wrong_number_of_decisions_refuses_every_held_call(
    make_fence: Callable[..., Fence],
) -> None:
    one, two = held(make_fence, "c1"), held(make_fence, "c2", 700.0)
    answers = turn_answers({"decisions": [{"type": "approve"}]}, [one, two])
    for payload in answers.values():
        with pytest.raises(ApprovalRefused, match="1 decisions for 2 held calls"):
            parse_envelope(signed_envelope(payload))


def test_interrupt_mode_is_checked() -> None:
    assert check_interrupt_mode("per_call") == "per_call"
    with pytest.raises(ValueError, match="interrupt_mode must be one of 'batched', 'per_call'"):
        check_interrupt_mode("batch")


def test_signed_respond_without_a_message_is_refused(make_fence: Callable[..., Fence]) -> None:
    """A respond answer is the tool's result: signed with no message, there is nothing to
    give the model, so the fence refuses it rather than answer with an empty result."""
    fence = make_fence()
    request = held(make_fence)
    with pytest.raises(ApprovalRefused, match="a respond answer needs the message") as refused:
        check_answer(
            signed(request, decision="respond"),
            request,
            engine=fence.engine,
            registry=ApproverRegistry.from_engine(fence.engine),
            now_us=request.created_us + 1,
        )
    assert refused.value.code == "malformed"
