"""approvals.submit_answer: the one answering path the CLI and the inbox share."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentfence import Fence
from agentfence.approvals import (
    ApprovalRefused,
    ApprovalStore,
    ApproverRegistry,
    parse_duration,
    request_for,
    submit_answer,
)
from agentfence.policy import EntityRef
from tests.conftest import approver_key


def held(make_fence: Callable[..., Fence]) -> tuple[Fence, ApprovalStore, object]:
    fence = make_fence()
    decision = fence.decide(
        "pay",
        {"account": "acc-1", "amount": 500.0},
        principal="alice",
        thread="t",
        step=1,
        tool_call_id="c1",
    )
    store = ApprovalStore()
    request = store.create(request_for(decision, now_us=1_000, default_expiry=60))
    return fence, store, request


def test_a_checked_answer_is_signed_and_stored(make_fence: Callable[..., Fence]) -> None:
    fence, store, request = held(make_fence)
    answer, envelope = submit_answer(
        store,
        request,
        approver=EntityRef("User", "fran"),
        decision="approve",  # type: ignore[arg-type]
        signer=approver_key("fran"),
        now_us=2_000,
        engine=fence.engine,
        registry=ApproverRegistry.from_engine(fence.engine),
    )
    stored = store.get(request.request_id)  # type: ignore[attr-defined]
    assert stored is not None and stored.answer == envelope
    assert answer.approver == 'User::"fran"' and envelope["key"].startswith("fran+")


def test_a_refused_answer_is_not_stored(make_fence: Callable[..., Fence]) -> None:
    fence, store, request = held(make_fence)
    with pytest.raises(ApprovalRefused, match="requested this call and cannot approve it"):
        submit_answer(
            store,
            request,
            approver=EntityRef("User", "alice"),
            decision="approve",  # type: ignore[arg-type]
            signer=approver_key("alice"),
            now_us=2_000,
            engine=fence.engine,
            registry=ApproverRegistry.from_engine(fence.engine),
        )
    assert store.get(request.request_id).answer is None  # type: ignore[attr-defined, union-attr]


def test_a_second_answer_is_refused(make_fence: Callable[..., Fence]) -> None:
    _, store, request = held(make_fence)
    for attempt in range(2):
        call = lambda: submit_answer(  # noqa: E731
            store,
            request,
            approver=EntityRef("User", "fran"),
            decision="reject",  # type: ignore[arg-type]
            signer=approver_key("fran"),
            now_us=2_000,
            message="no",
        )
        if attempt == 0:
            call()
        else:
            with pytest.raises(ApprovalRefused, match="already answered"):
                call()


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "2h", "1d")] == [90, 900, 7200, 86400]
    with pytest.raises(ValueError, match="is not a duration like 90s"):
        parse_duration("soon")
