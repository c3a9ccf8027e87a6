"""Notifications from a real create_agent graph to a local HTTP endpoint the test starts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool

from agentfence import Fence
from agentfence._signing import Signer, write_private_key
from agentfence.approvals import ApprovalRefused, ApproverRegistry, submit_answer
from agentfence.errors import VerificationError
from agentfence.notify import (
    SIGNATURE_HEADER,
    Escalation,
    Notifications,
    SlackSink,
    WebhookSink,
    verify_notification,
)
from agentfence.policy import EntityRef
from agentfence.testing import tool_call
from tests.conftest import Ran, approver_key
from tests.graphs import agent_for, batch, config
from tests.webhooks import Delivery, Receiver

NOTIFY_KEY = Signer.from_seed("notify", bytes(range(32)))
INBOX = "https://inbox.example.test"
LARGE = tool_call("pay", {"account": "acc-9", "amount": 5000}, "large")


class Clock:
    """A clock the test moves by hand (microseconds)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds * 1_000_000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as endpoint:
        yield endpoint


def webhook(url: str) -> WebhookSink:
    return WebhookSink(url, key=NOTIFY_KEY, inbox_url=INBOX)


def hold_large(fence: Fence, tools: list[BaseTool], thread: str = "t1") -> dict[str, Any]:
    """Run an agent whose one call (a large payment) is held; return its action request in
    the pause (LangChain's format, agentfence's fields under ``agentfence``)."""
    result = agent_for(fence, tools, batch(LARGE)).invoke(
        {"messages": [("user", "pay")]}, config(thread)
    )
    [pause] = result["__interrupt__"]
    [action] = pause.value["action_requests"]
    value: dict[str, Any] = action
    return value


def body_of(delivery: Delivery, clock: Clock | None = None) -> dict[str, Any]:
    """A delivery's body after the receiver's checks (the signature with the public key;
    the time it was sent by ``clock``, the fence's, when the test moves time by hand)."""
    return verify_notification(
        delivery.body,
        delivery.headers[SIGNATURE_HEADER],
        NOTIFY_KEY.verifier_key,
        now_us=None if clock is None else clock.now,
    )


def test_held_call_sends_a_signed_held_webhook(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver, ran: Ran
) -> None:
    notify = Notifications([webhook(receiver.url)], watch_interval=None)
    with make_fence(notify=notify) as fence:
        held = hold_large(fence, tools)
        body = body_of(receiver.next())
    assert ran.calls == []
    assert body["event"] == "held"
    assert body["request"]["request_id"] == held["agentfence"]["request_id"]
    assert body["request"]["tool"] == "pay"
    assert body["request"]["approvers"] == ["finance"]
    assert body["request"]["principal"] == 'User::"alice"'
    assert body["request"]["reasons"] == ["payments over 100 need finance"]
    assert body["inbox_url"] == f"{INBOX}/requests/{held['agentfence']['request_id']}"
    assert notify.notifiers[0].sent == 1


def test_arguments_are_not_sent_unless_asked(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    # Arguments may be sensitive; a webhook gets them only when the operator says so.
    with make_fence(notify=Notifications([webhook(receiver.url)], watch_interval=None)) as fence:
        hold_large(fence, tools)
        body = body_of(receiver.next())
    assert "args" not in body["request"]
    assert "acc-9" not in json.dumps(body)


def test_tampered_notification_body_fails_verification(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    with make_fence(notify=Notifications([webhook(receiver.url)], watch_interval=None)) as fence:
        hold_large(fence, tools)
        delivery = receiver.next()
    header = delivery.headers[SIGNATURE_HEADER]
    tampered = delivery.body.replace(b'"approvers":["finance"]', b'"approvers":["anyone"]')
    assert tampered != delivery.body
    with pytest.raises(
        VerificationError, match="does not verify: the signed text or the signature was altered"
    ):
        verify_notification(tampered, header, NOTIFY_KEY.verifier_key)
    other = Signer.from_seed("notify", bytes(32))
    with pytest.raises(VerificationError, match="signed by key"):
        verify_notification(delivery.body, header, other.verifier_key)


def test_replayed_notification_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    clock = Clock()
    with make_fence(
        notify=Notifications([webhook(receiver.url)], watch_interval=None), clock=clock
    ) as fence:
        hold_large(fence, tools)
        delivery = receiver.next()
    header = delivery.headers[SIGNATURE_HEADER]
    fresh = verify_notification(
        delivery.body, header, NOTIFY_KEY.verifier_key, now_us=clock.now + 60_000_000
    )
    assert fresh["sent_us"] == clock.now
    with pytest.raises(VerificationError, match="replayed or delayed delivery is refused"):
        verify_notification(
            delivery.body, header, NOTIFY_KEY.verifier_key, now_us=clock.now + 600_000_000
        )


def test_notification_replayed_to_another_endpoint_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    # Two receivers trust the same key; a body captured on its way to one is refused by the
    # other, because the endpoint it was sent to is inside the signed bytes.
    with make_fence(notify=Notifications([webhook(receiver.url)], watch_interval=None)) as fence:
        hold_large(fence, tools)
        delivery = receiver.next()
    header = delivery.headers[SIGNATURE_HEADER]
    mine = verify_notification(
        delivery.body, header, NOTIFY_KEY.verifier_key, endpoint=receiver.url
    )
    assert mine["endpoint"] == receiver.url
    with pytest.raises(VerificationError, match="a body sent to another receiver is refused"):
        verify_notification(
            delivery.body, header, NOTIFY_KEY.verifier_key, endpoint="https://other.test/hook"
        )


def test_stored_answer_sends_answered(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    clock = Clock()
    notify = Notifications([webhook(receiver.url)], watch_interval=None)
    with make_fence(notify=notify, clock=clock) as fence:
        request_id = hold_large(fence, tools)["agentfence"]["request_id"]
        assert body_of(receiver.next(), clock)["event"] == "held"
        notify.check()  # nothing answered yet: nothing sent
        stored = fence.approvals.get(request_id)
        assert stored is not None
        submit_answer(
            fence.approvals,
            stored.request,
            approver=EntityRef("User", "fran"),
            decision="approve",
            signer=approver_key("fran"),
            now_us=clock.now,
            engine=fence.engine,
            registry=ApproverRegistry.from_engine(fence.engine),
        )
        notify.check()
        notify.check()  # sent once, not on every look
        answered = body_of(receiver.next(), clock)
    assert answered["event"] == "answered"
    assert answered["request"]["request_id"] == request_id
    assert answered["answer"] == {"decision": "approve", "approver": 'User::"fran"'}
    assert receiver.deliveries.empty()
    assert len(receiver.attempts) == 2


def test_unanswered_request_sends_expired(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    clock = Clock()
    notify = Notifications([webhook(receiver.url)], watch_interval=None)
    with make_fence(notify=notify, clock=clock, approval_expiry=60) as fence:
        request_id = hold_large(fence, tools)["agentfence"]["request_id"]
        receiver.next()
        clock.advance(61)
        notify.check()
        expired = body_of(receiver.next(), clock)
    assert (expired["event"], expired["request"]["request_id"]) == ("expired", request_id)


def test_endpoint_failing_twice_then_succeeding_gets_the_event(
    make_fence: Callable[..., Fence], tools: list[BaseTool]
) -> None:
    with Receiver(fail_first=2) as flaky:
        notify = Notifications([webhook(flaky.url)], watch_interval=None, backoff=0)
        with make_fence(notify=notify) as fence:
            request_id = hold_large(fence, tools)["agentfence"]["request_id"]
            body = body_of(flaky.next())
        assert flaky.attempts == [1, 2, 3]
    assert body["request"]["request_id"] == request_id
    assert (notify.notifiers[0].sent, notify.notifiers[0].failed) == (1, 0)


def test_hanging_endpoint_never_delays_the_call(
    make_fence: Callable[..., Fence], tools: list[BaseTool]
) -> None:
    with Receiver(hold=True) as hanging:
        # The sink would wait longer than the endpoint holds a request (60 s, then it sets
        # timed_out): a delivery made inside the call would keep the call until then.
        sink = WebhookSink(hanging.url, key=NOTIFY_KEY, timeout=120)
        fence = make_fence(notify=Notifications([sink], watch_interval=None))
        held = hold_large(fence, tools)  # returns while the endpoint has not answered
        assert held["agentfence"]["approvers"] == ["finance"]
        assert hanging.arrived.wait(30)  # the delivery is under way, in the background
        assert not hanging.release.is_set() and not hanging.timed_out.is_set()
        hanging.release.set()
        fence.close()
        assert not hanging.timed_out.is_set()
        assert body_of(hanging.next())["event"] == "held"


def test_escalation_fires_once_to_the_second_group(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    clock = Clock()
    with Receiver() as lead:
        notify = Notifications(
            [webhook(receiver.url)],
            escalate=Escalation("15m", "oncall-lead", [webhook(lead.url)]),
            watch_interval=None,
        )
        with make_fence(notify=notify, clock=clock, approval_expiry=3600) as fence:
            request_id = hold_large(fence, tools)["agentfence"]["request_id"]
            assert body_of(receiver.next(), clock)["event"] == "held"
            clock.advance(14 * 60)
            notify.check()  # not yet
            clock.advance(60)
            notify.check()
            clock.advance(5 * 60)
            notify.check()  # once per request
            escalated = body_of(lead.next(), clock)
            stored = fence.approvals.get(request_id)
            assert stored is not None
            # The notification informs the group; it does not let anyone new approve.
            with pytest.raises(ApprovalRefused, match="bob"):
                submit_answer(
                    fence.approvals,
                    stored.request,
                    approver=EntityRef("User", "bob"),
                    decision="approve",
                    signer=approver_key("bob"),
                    now_us=clock.now,
                    engine=fence.engine,
                    registry=ApproverRegistry.from_engine(fence.engine),
                )
        assert lead.attempts == [1]
    assert escalated["event"] == "escalated"
    assert escalated["group"] == "oncall-lead"
    assert escalated["request"]["request_id"] == request_id
    assert receiver.deliveries.empty()  # the first group got no escalated event


def test_slack_payload_links_to_the_inbox_request_page(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver
) -> None:
    notify = Notifications([SlackSink(receiver.url, inbox_url=INBOX)], watch_interval=None)
    with make_fence(notify=notify) as fence:
        request_id = hold_large(fence, tools)["agentfence"]["request_id"]
        delivery = receiver.next()
    payload = json.loads(delivery.body)
    assert set(payload) == {"text", "blocks"}
    assert payload["text"] == 'agentfence: pay for User::"alice" needs approval'
    section, context, actions = payload["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "Approvers: finance" in section["text"]["text"]
    assert "payments over 100 need finance" in section["text"]["text"]
    assert request_id in context["elements"][0]["text"]
    [button] = actions["elements"]
    assert button["url"] == f"{INBOX}/requests/{request_id}"
    assert "acc-9" not in delivery.body.decode()


def test_notify_toml_turns_notifications_on(
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_private_key(tmp_path / "notify.key", NOTIFY_KEY)
    monkeypatch.setenv("TEST_SLACK_URL", receiver.url + "/slack")
    (tmp_path / "notify.toml").write_text(
        f"""
[notify]
inbox_url = "{INBOX}"

[[notify.webhook]]
url = "{receiver.url}"
key = "notify.key"

[[notify.slack]]
url_env = "TEST_SLACK_URL"

[notify.escalate]
after = "15m"
group = "oncall-lead"
""",
        encoding="utf-8",
    )
    with make_fence(notify=tmp_path / "notify.toml") as fence:
        hold_large(fence, tools)
        got = {d.path: d for d in (receiver.next(), receiver.next())}
    assert body_of(got["/hook"])["event"] == "held"
    assert json.loads(got["/hook/slack"].body)["blocks"][-1]["type"] == "actions"


def test_resumed_call_sends_no_second_held(
    make_fence: Callable[..., Fence], tools: list[BaseTool], receiver: Receiver, ran: Ran
) -> None:
    clock = Clock()  # a clock that stands still: the re-executed node files the same request
    notify = Notifications([webhook(receiver.url)], watch_interval=None)
    with make_fence(notify=notify, clock=clock) as fence:
        agent = agent_for(fence, tools, batch(LARGE))
        [pause] = agent.invoke({"messages": [("user", "pay")]}, config())["__interrupt__"]
        stored = fence.approvals.get(pause.value["action_requests"][0]["agentfence"]["request_id"])
        assert stored is not None
        submit_answer(
            fence.approvals,
            stored.request,
            approver=EntityRef("User", "fran"),
            decision="approve",
            signer=approver_key("fran"),
            now_us=clock.now,
        )
        fence.resume(agent, config())
        notify.check()
    assert ran.calls == [("pay", {"account": "acc-9", "amount": 5000})]
    assert [body_of(receiver.next(), clock)["event"] for _ in range(2)] == ["held", "answered"]
    assert receiver.deliveries.empty()
