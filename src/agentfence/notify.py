"""Notifications: approvers hear of a held call instead of polling for it.

A fence given ``notify=`` (:class:`Notifications`, or the path of a ``notify.toml``) sends an
event when it holds a call (``held``), when the request it held is answered in the store
(``answered``: from the CLI, the inbox or any process), when it expires unanswered
(``expired``), and, when configured, to a second group once nobody has answered after a set
time (``escalated``). Two sinks ship: :class:`WebhookSink` (JSON, signed by a dedicated
Ed25519 key over the exact body bytes, with a timestamp inside the signed body against
replays) and :class:`SlackSink` (a Slack incoming-webhook payload, linking to the inbox's
request page when an inbox URL is configured).

Delivery is background work and fails open: each sink has its own :class:`Notifier` (a
bounded queue, one worker thread, retries with exponential backoff and jitter, a maximum of
attempts). A dead, slow or overwhelmed endpoint never blocks or fails a tool call: a
notification that cannot be queued or delivered is counted and logged as a warning.

A notification is a message, not a permission: escalating to a group does not let it
approve. Who may answer is decided by the policies and ``approvers.toml`` alone.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import logging
import queue
import random
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import rfc8785

from agentfence._signing import Signer, Verifier, read_private_key
from agentfence.approvals import ApprovalRequest, ApprovalStore, parse_duration
from agentfence.config import env_secret
from agentfence.errors import ConfigurationError, VerificationError

__all__ = [
    "Escalation",
    "Notification",
    "Notifications",
    "Notifier",
    "Sink",
    "SlackSink",
    "WebhookSink",
    "verify_notification",
]

NOTIFICATION_FORMAT = "agentfence.notification/v1"
SIGNATURE_HEADER = "Agentfence-Signature"
DEFAULT_MAX_AGE_SECONDS = 300
NOTIFY_FILE = "notify.toml"

Event = Literal["held", "answered", "expired", "escalated"]

_logger = logging.getLogger("agentfence.notify")


@dataclass(frozen=True)
class Notification:
    """One event about one approval request.

    ``answer`` and ``approver`` (for ``answered``) are what the store holds: the fence checks
    the signed answer again when the thread resumes, so they say an answer arrived, not that
    it will be accepted. ``group`` (for ``escalated``) is the group escalated to.
    """

    event: Event
    request: ApprovalRequest
    time_us: int
    answer: str | None = None
    approver: str | None = None
    group: str | None = None

    @property
    def event_id(self) -> str:
        """A stable id for this event of this request: a receiver drops a second delivery."""
        key = f"{self.event}\x00{self.request.request_id}\x00{self.group or ''}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def inbox_link(inbox_url: str | None, request_id: str) -> str | None:
    """The inbox's page for a request (``None`` without an inbox URL)."""
    if not inbox_url:
        return None
    return f"{inbox_url.rstrip('/')}/requests/{urllib.parse.quote(request_id, safe='')}"


def notification_body(
    notification: Notification,
    *,
    sent_us: int,
    inbox_url: str | None = None,
    include_args: bool = False,
) -> dict[str, Any]:
    """The JSON a webhook receives. Arguments are left out unless ``include_args``: they may
    be sensitive, and approvers read them in the inbox or the CLI."""
    request = notification.request
    described: dict[str, Any] = {
        "request_id": request.request_id,
        "decision_id": request.decision_id,
        "action_digest": request.action_digest,
        "tool": request.tool,
        "tool_call_id": request.tool_call_id,
        "principal": request.principal,
        "agent": request.agent,
        "thread": request.thread,
        "approvers": list(request.approvers),
        "reasons": list(request.reasons),
        "policy_ids": list(request.policy_ids),
        "risk": request.risk,
        "created_us": request.created_us,
        "expires_us": request.expires_us,
    }
    if include_args:
        described["args"] = request.args
    return {
        "format": NOTIFICATION_FORMAT,
        "event": notification.event,
        "event_id": notification.event_id,
        "time_us": notification.time_us,
        "sent_us": sent_us,
        "request": described,
        "answer": (
            None
            if notification.answer is None
            else {"decision": notification.answer, "approver": notification.approver}
        ),
        "group": notification.group,
        "inbox_url": inbox_link(inbox_url, request.request_id),
    }


# --- sinks ----------------------------------------------------------------------------------


class Sink(Protocol):
    """Where notifications go. ``send`` delivers one or raises; the :class:`Notifier` around
    it retries, so a sink does one attempt and never sleeps."""

    name: str

    def send(self, notification: Notification, *, sent_us: int) -> None:
        """Deliver ``notification`` once; raise on any failure."""
        ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A webhook that redirects is misconfigured; following it would post the body to a
    # place nobody configured. The redirect is raised as an HTTP error and retried.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def _check_url(url: str, what: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https") or not urllib.parse.urlsplit(url).netloc:
        raise ConfigurationError(
            f"{what} URL {url!r} is not an http(s) URL; give the endpoint's full https:// URL"
        )
    return url


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> None:
    """POST ``body``; raise unless the endpoint answers 2xx within ``timeout`` seconds."""
    # The scheme was checked to be http(s) when the sink was made (_check_url).
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    with _OPENER.open(request, timeout=timeout) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"{url} answered HTTP {response.status}")


class WebhookSink:
    """A generic JSON webhook, signed by the fence.

    The body is :func:`notification_body` as RFC 8785 JSON; the ``Agentfence-Signature``
    header is ``key=<name>+<key id>, sig=<base64 Ed25519 signature over the body bytes>``.
    ``key`` is a dedicated signing key (a :class:`~agentfence._signing.Signer` or a key file
    from ``agentfence keys generate --name notify``); receivers verify with its public key
    (:func:`verify_notification`, or the few lines in ``docs/approver-guide.md``).
    """

    def __init__(
        self,
        url: str,
        *,
        key: Signer | str | Path,
        inbox_url: str | None = None,
        include_args: bool = False,
        timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        self.url = _check_url(url, "webhook")
        self._signer = key if isinstance(key, Signer) else read_private_key(key)
        self.inbox_url = inbox_url
        self.include_args = include_args
        self.timeout = timeout
        self.name = name or f"webhook {urllib.parse.urlsplit(url).netloc}"

    @property
    def verifier_key(self) -> str:
        """The public key receivers verify with (safe to publish)."""
        return self._signer.verifier_key

    def render(self, notification: Notification, *, sent_us: int) -> tuple[bytes, dict[str, str]]:
        """The exact body bytes and the headers (signature included) one attempt sends."""
        described = notification_body(
            notification, sent_us=sent_us, inbox_url=self.inbox_url, include_args=self.include_args
        )
        # The endpoint is signed too: a body captured on its way to one receiver is refused
        # by another that trusts the same key (verify_notification's ``endpoint``).
        body = rfc8785.dumps({**described, "endpoint": self.url})
        signature = base64.b64encode(self._signer.sign(body)).decode()
        key = f"{self._signer.name}+{self._signer.key_id:08x}"
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: f"key={key}, sig={signature}",
        }

    def send(self, notification: Notification, *, sent_us: int) -> None:
        """Post the signed body once."""
        body, headers = self.render(notification, sent_us=sent_us)
        post(self.url, body, headers, timeout=self.timeout)


def verify_notification(
    body: bytes,
    header: str,
    verifier: Verifier | str,
    *,
    now_us: int | None = None,
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """A receiver's check of a webhook delivery; returns the body as a dict.

    Raises :class:`~agentfence.errors.VerificationError` if the header names another key,
    the signature does not cover these exact bytes, the body is not a notification, or it
    was sent more than ``max_age_seconds`` ago (a replay), or (with ``endpoint``, the URL
    the fence posts to) it was signed for another endpoint. Drop a second ``event_id``
    yourself: a retry resends an event with a fresh ``sent_us``.
    """
    import json

    verifying = Verifier.from_vkey(verifier) if isinstance(verifier, str) else verifier
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part.strip())
    expected = f"{verifying.name}+{verifying.key_id:08x}"
    if fields.get("key") != expected:
        raise VerificationError(
            f"the notification is signed by key {fields.get('key')!r}, not {expected!r}; "
            "check which key the fence's notify configuration uses"
        )
    try:
        signature = base64.b64decode(fields.get("sig", ""), validate=True)
    except ValueError as exc:
        raise VerificationError("the notification's signature is not base64") from exc
    verifying.verify(signature, body)
    message = json.loads(body)
    if not isinstance(message, dict) or message.get("format") != NOTIFICATION_FORMAT:
        raise VerificationError(f"the body is not an {NOTIFICATION_FORMAT} notification")
    if endpoint is not None and message.get("endpoint") != endpoint:
        raise VerificationError(
            f"the notification was signed for {message.get('endpoint')!r}, not {endpoint!r}; "
            "a body sent to another receiver is refused"
        )
    now = time.time_ns() // 1000 if now_us is None else now_us
    sent = message.get("sent_us")
    if not isinstance(sent, int) or abs(now - sent) > max_age_seconds * 1_000_000:
        raise VerificationError(
            f"the notification was sent at {sent!r}, more than {max_age_seconds}s from now; "
            "a replayed or delayed delivery is refused (check the clocks if this is wrong)"
        )
    return message


def _slack_escape(text: str) -> str:
    # Slack's control characters (https://api.slack.com/reference/surfaces/formatting):
    # escaped, a tool name or reason cannot smuggle a link or an @channel mention.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_HEADLINE = {
    "held": "needs approval",
    "answered": "was answered",
    "expired": "expired unanswered",
    "escalated": "is still waiting for approval (escalated)",
}


def slack_payload(
    notification: Notification, *, inbox_url: str | None = None, include_args: bool = False
) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the fallback) and ``blocks``."""
    request = notification.request
    tool, principal = _slack_escape(request.tool), _slack_escape(request.principal)
    headline = f"agentfence: {tool} for {principal} {_HEADLINE[notification.event]}"
    lines = [f"*{headline}*"]
    if notification.event == "answered":
        lines.append(
            f"Answer: {_slack_escape(notification.answer or '?')} by "
            f"{_slack_escape(notification.approver or '?')} (checked when the thread resumes)"
        )
    if notification.event == "escalated":
        lines.append(f"Escalated to: {_slack_escape(notification.group or '?')}")
    lines.append("Approvers: " + (_slack_escape(", ".join(request.approvers)) or "none named"))
    if request.reasons:
        lines.append("Why: " + _slack_escape("; ".join(request.reasons)))
    if include_args:
        lines.append("Arguments: " + _slack_escape(rfc8785.dumps(request.args).decode()))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"request {request.request_id} · risk {_slack_escape(request.risk)}",
                }
            ],
        },
    ]
    link = inbox_link(inbox_url, request.request_id)
    if link is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in the inbox"},
                        "url": link,
                    }
                ],
            }
        )
    return {"text": headline, "blocks": blocks}


class SlackSink:
    """A Slack incoming webhook (its URL is a secret: prefer ``url_env`` in notify.toml)."""

    def __init__(
        self,
        url: str,
        *,
        inbox_url: str | None = None,
        include_args: bool = False,
        timeout: float = 5.0,
        name: str = "slack",
    ) -> None:
        self.url = _check_url(url, "Slack webhook")
        self.inbox_url = inbox_url
        self.include_args = include_args
        self.timeout = timeout
        self.name = name

    def send(self, notification: Notification, *, sent_us: int) -> None:
        """Post the Slack message once."""
        payload = slack_payload(
            notification, inbox_url=self.inbox_url, include_args=self.include_args
        )
        post(
            self.url,
            rfc8785.dumps(payload),
            {"Content-Type": "application/json"},
            timeout=self.timeout,
        )


# --- delivery -------------------------------------------------------------------------------


_STOP = object()
_REMEMBERED = 10_000


class Notifier:
    """One sink's delivery: a bounded queue and one worker thread that retries.

    :meth:`submit` never blocks: with the queue full the notification is dropped, counted
    (``dropped``) and logged. A delivery is tried up to ``max_attempts`` times, waiting
    ``backoff * 2**(n-1)`` seconds (at most ``max_backoff``, times a random factor in
    [0.5, 1]) between attempts; one that never succeeds is counted in ``failed``.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        queue_size: int = 256,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if max_attempts < 1 or queue_size < 1:
            raise ConfigurationError("a notifier needs max_attempts >= 1 and queue_size >= 1")
        self.sink = sink
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._abort = threading.Event()
        self._closed = False
        self._jitter = random.Random()  # noqa: S311  (backoff jitter, not a secret)
        self._thread = threading.Thread(
            target=self._work, name=f"agentfence-notify {sink.name}", daemon=True
        )
        self._thread.start()

    def submit(self, notification: Notification) -> bool:
        """Queue a notification for delivery; False (counted, logged) if it was dropped."""
        if not self._closed:
            try:
                self._queue.put_nowait(notification)
                return True
            except queue.Full:
                pass
        self.dropped += 1
        _logger.warning(
            "agentfence notification %s for request %s to %s dropped: %s",
            notification.event,
            notification.request.request_id,
            self.sink.name,
            "the notifier is closed" if self._closed else "its queue is full",
        )
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, waiting at most ``timeout`` seconds; then stop."""
        self._closed = True
        deadline = time.monotonic() + timeout
        stop_queued = False
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=max(0.0, timeout))
            stop_queued = True
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            # Fail open: the worker (a daemon thread) gives up on its next wait; what is
            # still queued is reported, never waited for past the deadline.
            self._abort.set()
            _logger.warning(
                "agentfence notifier for %s stopped with about %d notification(s) undelivered",
                self.sink.name,
                self._queue.qsize() - stop_queued,
            )

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._abort.is_set():
                return
            if isinstance(item, Notification):
                self._deliver(item)

    def _deliver(self, notification: Notification) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.sink.send(notification, sent_us=self._clock())
            except Exception as exc:  # fail open: delivery is telemetry, never enforcement
                if attempt == self.max_attempts:
                    self.failed += 1
                    _logger.warning(
                        "agentfence notification %s for request %s to %s failed after %d "
                        "attempt(s): %s",
                        notification.event,
                        notification.request.request_id,
                        self.sink.name,
                        attempt,
                        exc,
                    )
                    return
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                if self._abort.wait(delay * self._jitter.uniform(0.5, 1.0)):
                    self.failed += 1
                    return
            else:
                self.sent += 1
                return


# --- what a fence sends, and the watch on its requests --------------------------------------


@dataclass(frozen=True)
class Escalation:
    """Escalate a request nobody answered within ``after`` (``"15m"``) to ``group``'s sinks,
    once per request. It informs the group; it does not let the group approve."""

    after: str
    group: str
    sinks: Sequence[Sink] = field(default_factory=tuple)

    @property
    def after_seconds(self) -> int:
        """``after`` in seconds."""
        try:
            return parse_duration(self.after)
        except ValueError as exc:
            raise ConfigurationError(f"escalate after: {exc}") from exc


class Notifications:
    """What a fence tells approvers, and where: give it to ``Fence(notify=...)``.

    ``sinks`` get ``held``, ``answered`` and ``expired``; ``escalate`` sends ``escalated`` to
    its own sinks. A watcher thread looks at the requests this fence held every
    ``watch_interval`` seconds (``None``: no thread; call :meth:`check` yourself) and sends
    ``answered``, ``expired`` and ``escalated`` as their state changes, each once.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        escalate: Escalation | None = None,
        watch_interval: float | None = 5.0,
        queue_size: int = 256,
        max_attempts: int = 5,
        backoff: float = 0.5,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if escalate is not None:
            escalate.after_seconds  # noqa: B018  (checked now, not when a request is late)
        self._options = {"queue_size": queue_size, "max_attempts": max_attempts}
        self._backoff = backoff
        self._sink_list = list(sinks)
        self._escalate = escalate
        self._interval = watch_interval
        self._clock: Callable[[], int] = clock or (lambda: time.time_ns() // 1000)
        self._store: ApprovalStore | None = None
        self._lock = threading.Lock()
        self._watched: dict[str, bool] = {}  # request id -> escalated already
        # Requests already announced, the newest _REMEMBERED (a node re-run on resume files
        # its request again; the fence also skips held for a request it did not create).
        self._announced: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.notifiers: list[Notifier] = []
        self.escalation_notifiers: list[Notifier] = []

    @classmethod
    def from_toml(cls, path: str | Path, **options: Any) -> Notifications:
        """Read a ``notify.toml`` (``docs/approver-guide.md``, "Notifications")."""
        target = Path(path)
        try:
            data = tomllib.loads(target.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read notifications from {target}: {exc}") from exc
        table = data.get("notify")
        if not isinstance(table, dict):
            raise ConfigurationError(f"{target} has no [notify] table; see docs/approver-guide.md")
        inbox_url = table.get("inbox_url")
        sinks = _sinks_of(table, target, inbox_url)
        escalate = None
        if isinstance(raw := table.get("escalate"), dict):
            if not isinstance(raw.get("after"), str) or not isinstance(raw.get("group"), str):
                raise ConfigurationError(
                    f'{target}: [notify.escalate] needs after = "15m" and group = "NAME"'
                )
            escalate = Escalation(raw["after"], raw["group"], _sinks_of(raw, target, inbox_url))
        return cls(sinks, escalate=escalate, **options)

    def bind(self, store: ApprovalStore, clock: Callable[[], int] | None = None) -> None:
        """Start delivering for a fence: its approvals store and clock (the fence calls it)."""
        with self._lock:
            if self._store is not None:
                raise ConfigurationError("these Notifications already serve a fence; make one each")
            self._store = store
            if clock is not None:
                self._clock = clock
            self.notifiers = [self._notifier(s) for s in self._sink_list]
            if self._escalate is not None:
                self.escalation_notifiers = [self._notifier(s) for s in self._escalate.sinks]
        if self._interval is not None:
            self._watcher = threading.Thread(
                target=self._watch, name="agentfence-notify watcher", daemon=True
            )
            self._watcher.start()

    def held(self, request: ApprovalRequest) -> None:
        """The fence held a call: send ``held`` and watch the request (once per request)."""
        try:
            with self._lock:
                if request.request_id in self._announced:
                    return
                self._announced[request.request_id] = None
                if len(self._announced) > _REMEMBERED:
                    self._announced.popitem(last=False)
                self._watched[request.request_id] = False
            self._send(self.notifiers, Notification("held", request, self._clock()))
        except Exception:  # fail open: a notification never fails the call it reports
            _logger.warning("agentfence could not queue a held notification", exc_info=True)

    def check(self) -> None:
        """Look once at the watched requests; send what changed (the watcher calls this)."""
        store = self._store
        if store is None:
            return
        with self._lock:
            watched = dict(self._watched)
        now = self._clock()
        for request_id, escalated in watched.items():
            stored = store.get(request_id)
            if stored is None:
                self._forget(request_id)
                continue
            status = stored.status(now)
            request = stored.request
            if status in ("answered", "used"):
                answer = (stored.answer or {}).get("answer")
                answer = answer if isinstance(answer, dict) else {}
                decision, approver = answer.get("decision"), answer.get("approver")
                self._send(
                    self.notifiers,
                    Notification(
                        "answered",
                        request,
                        now,
                        answer=decision if isinstance(decision, str) else None,
                        approver=approver if isinstance(approver, str) else None,
                    ),
                )
                self._forget(request_id)
            elif status == "expired":
                self._send(self.notifiers, Notification("expired", request, now))
                self._forget(request_id)
            elif (
                self._escalate is not None
                and not escalated
                and now - request.created_us >= self._escalate.after_seconds * 1_000_000
            ):
                with self._lock:
                    if request_id in self._watched:
                        self._watched[request_id] = True
                group = self._escalate.group
                self._send(
                    self.escalation_notifiers, Notification("escalated", request, now, group=group)
                )

    @property
    def dropped(self) -> int:
        """Notifications dropped (queue full, or sent after close) across every sink."""
        return sum(n.dropped for n in (*self.notifiers, *self.escalation_notifiers))

    def close(self, timeout: float = 5.0) -> None:
        """Stop watching and deliver what is queued, within about ``timeout`` seconds."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
        for notifier in (*self.notifiers, *self.escalation_notifiers):
            notifier.close(timeout)

    def _notifier(self, sink: Sink) -> Notifier:
        return Notifier(sink, backoff=self._backoff, clock=self._clock, **self._options)

    def _send(self, notifiers: Sequence[Notifier], notification: Notification) -> None:
        for notifier in notifiers:
            notifier.submit(notification)

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._watched.pop(request_id, None)

    def _watch(self) -> None:
        interval = self._interval or 5.0
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # fail open: the watcher observes, it never enforces
                _logger.warning("agentfence notification watcher failed once", exc_info=True)


def _sinks_of(table: Mapping[str, Any], path: Path, inbox_url: Any) -> list[Sink]:
    """The ``[[...webhook]]`` and ``[[...slack]]`` entries of one table of ``notify.toml``."""
    sinks: list[Sink] = []
    link = inbox_url if isinstance(inbox_url, str) else None
    for kind in ("webhook", "slack"):
        entries = table.get(kind, [])
        if not isinstance(entries, list):
            raise ConfigurationError(f"{path}: write [[notify.{kind}]] (an array of tables)")
        for entry in entries:
            url = _url_of(entry, path, kind)
            include_args = bool(entry.get("include_args", False))
            if kind == "slack":
                sinks.append(SlackSink(url, inbox_url=link, include_args=include_args))
                continue
            key = entry.get("key")
            if not isinstance(key, str):
                raise ConfigurationError(
                    f'{path}: a [[notify.webhook]] needs key = "FILE", a signing key from '
                    "`agentfence keys generate --name notify` (relative to the file)"
                )
            sinks.append(
                WebhookSink(url, key=path.parent / key, inbox_url=link, include_args=include_args)
            )
    return sinks


def _url_of(entry: Any, path: Path, kind: str) -> str:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{path}: each [[notify.{kind}]] must be a table")
    if isinstance(entry.get("url_env"), str):
        return env_secret(entry["url_env"], f"{path} [[notify.{kind}]] url_env")
    if isinstance(entry.get("url"), str):
        return str(entry["url"])
    raise ConfigurationError(
        f'{path}: a [[notify.{kind}]] needs url = "https://..." or url_env = "VARIABLE"'
    )


def notifications_of(
    notify: Notifications | str | Path | None, store: ApprovalStore, clock: Callable[[], int]
) -> Notifications | None:
    """A fence's ``notify=`` argument (a path is a notify.toml), bound to its store and clock."""
    if notify is None:
        return None
    notifications = notify if isinstance(notify, Notifications) else Notifications.from_toml(notify)
    notifications.bind(store, clock)
    return notifications
