"""notify.py: delivery that never blocks a call, the Slack payload, notify.toml."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from agentfence._signing import Signer
from agentfence.approvals import ApprovalRequest, ApprovalStore
from agentfence.errors import ConfigurationError
from agentfence.notify import (
    Escalation,
    Notification,
    Notifications,
    Notifier,
    SlackSink,
    WebhookSink,
    slack_payload,
)

REQUEST = ApprovalRequest(
    request_id="req-1",
    decision_id="dec-1",
    action_digest="0" * 64,
    tool="pay",
    tool_call_id="call-1",
    args={"account": "acc-9", "amount": 5000},
    principal='User::"alice"',
    agent="agent",
    thread="t1",
    policy_hash="h",
    policy_ids=["pay-large"],
    reasons=["payments over 100 need finance"],
    risk="high",
    approvers=["finance"],
    created_us=1_000,
    expires_us=2_000,
)


def held(request: ApprovalRequest = REQUEST) -> Notification:
    return Notification("held", request, 1_000)


class Blocking:
    """A sink whose sends wait for ``release``; ``started`` is set when one begins."""

    name = "blocking"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.sent: list[Notification] = []

    def send(self, notification: Notification, *, sent_us: int) -> None:
        self.started.set()
        self.release.wait(30)
        self.sent.append(notification)


class Failing:
    """A sink that always fails, counting its attempts."""

    name = "failing"

    def __init__(self) -> None:
        self.attempts = 0

    def send(self, notification: Notification, *, sent_us: int) -> None:
        self.attempts += 1
        raise OSError("connection refused")


def test_full_queue_drops_and_counts_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    sink = Blocking()
    notifier = Notifier(sink, queue_size=1)
    assert notifier.submit(held())
    assert sink.started.wait(30)  # the worker is busy with the first
    assert notifier.submit(held())  # queued
    with caplog.at_level(logging.WARNING, logger="agentfence.notify"):
        assert not notifier.submit(held())  # the queue is full: dropped, not waited for
    assert notifier.dropped == 1
    assert "dropped: its queue is full" in caplog.text and "req-1" in caplog.text
    sink.release.set()
    notifier.close()
    assert (len(sink.sent), notifier.sent) == (2, 2)


def test_delivery_that_never_succeeds_is_counted_after_max_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Failing()
    notifier = Notifier(sink, max_attempts=3, backoff=0)
    with caplog.at_level(logging.WARNING, logger="agentfence.notify"):
        notifier.submit(held())
        notifier.close()
    assert (sink.attempts, notifier.failed, notifier.sent) == (3, 1, 0)
    assert "failed after 3 attempt(s): connection refused" in caplog.text


def test_close_with_a_hung_sink_gives_up_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    sink = Blocking()
    notifier = Notifier(sink)
    notifier.submit(held())
    assert sink.started.wait(30)
    notifier.submit(held())
    with caplog.at_level(logging.WARNING, logger="agentfence.notify"):
        notifier.close(timeout=0)  # returns although the sink still hangs
    assert "stopped with about 1 notification(s) undelivered" in caplog.text
    sink.release.set()


def test_submit_after_close_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(Failing())
    notifier.close()
    with caplog.at_level(logging.WARNING, logger="agentfence.notify"):
        assert not notifier.submit(held())
    assert "dropped: the notifier is closed" in caplog.text


def test_held_is_sent_once_per_request() -> None:
    sink = Blocking()
    sink.release.set()
    notify = Notifications([sink], watch_interval=None)
    notify.bind(ApprovalStore(), lambda: 1_000)
    notify.held(REQUEST)
    notify.held(REQUEST)  # a re-executed node files the same request again
    notify.close()
    assert [n.event for n in sink.sent] == ["held"]


def test_a_notifications_object_serves_one_fence() -> None:
    notify = Notifications([], watch_interval=None)
    notify.bind(ApprovalStore(), lambda: 0)
    with pytest.raises(ConfigurationError, match="already serve a fence; make one each"):
        notify.bind(ApprovalStore(), lambda: 0)


def test_slack_mention_and_link_injection_is_escaped() -> None:
    # Slack reads <...> as links and mentions: a principal or reason cannot smuggle one in.
    request = REQUEST.model_copy(
        update={
            "principal": 'User::"<!channel>"',
            "reasons": ["see <https://evil.test|the policy> & approve"],
        }
    )
    payload = slack_payload(Notification("held", request, 0))
    text = payload["text"] + payload["blocks"][0]["text"]["text"]
    assert "<!channel>" not in text and "<https://evil.test" not in text
    assert "&lt;!channel&gt;" in text
    assert "&lt;https://evil.test|the policy&gt; &amp; approve" in text


def test_slack_payload_without_an_inbox_has_no_button_and_no_arguments() -> None:
    payload = slack_payload(held())
    assert [b["type"] for b in payload["blocks"]] == ["section", "context"]
    assert "acc-9" not in str(payload)
    with_args = slack_payload(held(), include_args=True)
    assert '{"account":"acc-9","amount":5000}' in with_args["blocks"][0]["text"]["text"]


def test_answered_and_escalated_payloads_say_who_and_where() -> None:
    answered = Notification("answered", REQUEST, 0, answer="reject", approver='User::"fran"')
    assert 'Answer: reject by User::"fran"' in slack_payload(answered)["blocks"][0]["text"]["text"]
    escalated = Notification("escalated", REQUEST, 0, group="oncall-lead")
    assert "Escalated to: oncall-lead" in slack_payload(escalated)["blocks"][0]["text"]["text"]
    assert escalated.event_id != held().event_id


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://hooks.test/x", "hooks.test/x"])
def test_only_http_endpoints_are_accepted(url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not an http\\(s\\) URL"):
        SlackSink(url)
    with pytest.raises(ConfigurationError, match="is not an http\\(s\\) URL"):
        WebhookSink(url, key=_key())


def test_escalation_after_is_checked_when_configured() -> None:
    with pytest.raises(ConfigurationError, match="'soon' is not a duration like 90s"):
        Notifications([], escalate=Escalation("soon", "oncall-lead"))


def test_notify_toml_problems_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.toml"
    path.write_text("[other]\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="has no \\[notify\\] table"):
        Notifications.from_toml(path)
    path.write_text('[[notify.webhook]]\nurl = "https://hooks.test/x"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match='needs key = "FILE"'):
        Notifications.from_toml(path)
    monkeypatch.delenv("NO_SUCH_SLACK_URL", raising=False)
    path.write_text('[[notify.slack]]\nurl_env = "NO_SUCH_SLACK_URL"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="NO_SUCH_SLACK_URL, which is not set"):
        Notifications.from_toml(path)
    path.write_text('[notify.escalate]\ngroup = "oncall-lead"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match='needs after = "15m"'):
        Notifications.from_toml(path)


def _key() -> Signer:
    return Signer.from_seed("notify", bytes(32))
