"""What the inbox's pages show: plain frozen values, and the formatting of times.

:class:`~agentfence.inbox.inbox.Inbox` builds these; the templates only read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from agentfence.approvals import ApprovalRequest, StoredApproval

__all__ = [
    "AnswerView",
    "ArgView",
    "BatchOutcome",
    "Earlier",
    "HistoryItem",
    "LogEntryView",
    "Pending",
    "PendingItem",
    "RequestView",
    "duration",
    "iso",
    "now_us",
]

# A request this close to expiry is shown as urgent; one this young as new.
URGENT_SECONDS = 5 * 60
NEW_SECONDS = 2 * 60


def now_us() -> int:
    """The system clock in microseconds since the epoch."""
    return time.time_ns() // 1000


def duration(seconds: float) -> str:
    """``45s``, ``12m 05s``, ``3h 20m``, ``2d 04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def iso(us: int) -> str:
    """UTC time of a microsecond timestamp, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(us / 1_000_000))


# --- what the pages show -------------------------------------------------------------------


@dataclass(frozen=True)
class PendingItem:
    """One row of the pending list."""

    request_id: str
    tool: str
    principal: str
    agent: str
    reason: str
    more_reasons: int
    risk: str
    created_us: int
    expires_us: int
    age_seconds: float
    seconds_left: float

    @property
    def urgent(self) -> bool:
        """Close to expiry."""
        return self.seconds_left < URGENT_SECONDS

    @property
    def new(self) -> bool:
        """Arrived a moment ago."""
        return self.age_seconds < NEW_SECONDS


@dataclass(frozen=True)
class Pending:
    """The pending list of one approver: what they may answer, and how many others wait."""

    items: list[PendingItem]
    others: int


@dataclass(frozen=True)
class ArgView:
    """One argument on the request page (masked unless revealed) and its edit field."""

    name: str
    shown: str
    masked: bool
    sensitive: bool
    field_kind: Literal["string", "json"]
    edit_value: str
    present: bool


@dataclass(frozen=True)
class Earlier:
    """A decision the thread's run made before this request, and whether the tool ran."""

    seq: int
    tool: str
    effect: str
    resource: str | None
    outcome: str | None
    time_us: int


@dataclass(frozen=True)
class AnswerView:
    """An answer as stored, and the fence's verdict on it once the thread resumed."""

    approver: str
    decision: str
    message: str | None
    edited_args: dict[str, Any] | None
    changes: list[tuple[str, str, str]]
    """Each argument the edit changed: (name, old, new), sensitive values masked."""
    answered_us: int | None
    key: str | None
    used_us: int | None
    verdict: str | None = None
    verdict_reason: str | None = None
    verdict_seq: int | None = None


@dataclass(frozen=True)
class RequestView:
    """Everything the request page shows."""

    stored: StoredApproval
    status: str
    allowed: bool
    why_not: str | None
    args: list[ArgView] = field(default_factory=list)
    any_sensitive: bool = False
    revealed: bool = False
    earlier: list[Earlier] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decision_seq: int | None = None
    request_seq: int | None = None
    trace_id: str | None = None
    trace_link: str | None = None
    answer: AnswerView | None = None
    age_seconds: float = 0.0
    seconds_left: float = 0.0
    key_problem: str | None = None

    @property
    def request(self) -> ApprovalRequest:
        """The request itself."""
        return self.stored.request

    @property
    def answerable(self) -> bool:
        """Whether the answer forms are shown: open, and this approver may answer."""
        return self.allowed and self.status == "pending"


@dataclass(frozen=True)
class HistoryItem:
    """One answered (or expired) request in the history."""

    request: ApprovalRequest
    status: str
    answer: AnswerView | None


@dataclass(frozen=True)
class LogEntryView:
    """One decision log entry, shown from a request page."""

    request: ApprovalRequest
    seq: int
    kind: str
    time_us: int
    leaf_hash: str
    record: dict[str, Any]


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one request of an "Approve selected" or "Reject selected" answer."""

    request_id: str
    answered: bool
    text: str  # what was done, or why it was refused
    tool: str | None = None  # shown for answered requests only
    principal: str | None = None
