"""The evidence beside a request, read from the decision log: what the run did before it,
where its decision is recorded, and what the fence made of the answer.

Observing, so it fails open: a log that cannot be read (not created yet, locked, damaged)
leaves a note on the page, never an error, and never changes an answer. The log is opened
read-only; the inbox never writes to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentfence._storage.database import Location, driver_errors
from agentfence._storage.tables import EntryRow, LogBackend
from agentfence.approvals import ApprovalRequest
from agentfence.errors import AgentfenceError
from agentfence.log import LogView, ThreadDecision, parse_entry
from agentfence.records import (
    APPROVAL_ANSWER_KIND,
    APPROVAL_REQUEST_KIND,
    DECISION_KIND,
    ApprovalAnswerRecord,
    ApprovalRequestRecord,
    DecisionRecord,
    LogRecord,
    OutcomeRecord,
)

__all__ = ["Evidence"]

_UNREADABLE: tuple[type[BaseException], ...] = (
    AgentfenceError,
    OSError,
    ValueError,
    *driver_errors(),
)


class Evidence:
    """Read-only access to the decision log in ``path`` (opened on first use)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._backend: LogBackend | None = None

    def _log(self) -> LogBackend | None:
        if self._backend is None:
            try:
                self._backend = LogBackend(self.location, create=False, readonly=True)
            except _UNREADABLE:
                return None
        return self._backend

    def find(self, key: str) -> tuple[int, LogRecord] | None:
        """The entry stored under a dedupe key (``<format>:<id>``), as (seq, record)."""
        backend = self._log()
        if backend is None:
            return None
        try:
            row = backend.find_entry(key)
            return (row.seq, parse_entry(row.body)[1]) if row is not None else None
        except _UNREADABLE:
            return None

    def decision(self, decision_id: str) -> tuple[int, DecisionRecord] | None:
        """A decision's log entry."""
        found = self.find(f"{DECISION_KIND}:{decision_id}")
        if found is None or not isinstance(found[1], DecisionRecord):
            return None
        return found[0], found[1]

    def request_entry(self, request_id: str) -> int | None:
        """The seq of an approval request's log entry."""
        found = self.find(f"{APPROVAL_REQUEST_KIND}:{request_id}")
        return found[0] if found is not None else None

    def thread_decisions(self, request: ApprovalRequest) -> tuple[list[ThreadDecision], list[str]]:
        """The thread's other decisions (seq, record, outcome status) and notes on failures."""
        backend = self._log()
        if backend is None:
            return [], [f"the decision log {self.location.display} cannot be opened yet"]
        try:
            view = LogView(backend)
            return view.thread_decisions(request.thread, exclude=request.decision_id), []
        except _UNREADABLE as exc:
            return [], [f"the thread's decisions could not be read from the log: {exc}"]

    def verdicts(
        self, requests: Sequence[ApprovalRequest]
    ) -> dict[str, tuple[int, ApprovalAnswerRecord]]:
        """The fence's last answer record per request: what it did with the answer."""
        backend = self._log()
        if backend is None or not requests:
            return {}
        wanted = {r.request_id for r in requests}
        since = min(r.created_us for r in requests)
        found: dict[str, tuple[int, ApprovalAnswerRecord]] = {}
        try:
            for row in backend.select(kind=APPROVAL_ANSWER_KIND, since_us=since):
                record = parse_entry(row.body)[1]
                if isinstance(record, ApprovalAnswerRecord) and record.request_id in wanted:
                    found[record.request_id] = (row.seq, record)
        except _UNREADABLE:
            return {}
        return found

    def entry(self, seq: int, request: ApprovalRequest) -> tuple[EntryRow, LogRecord] | None:
        """Entry ``seq`` if it belongs to the request's thread; ``None`` otherwise."""
        backend = self._log()
        if backend is None:
            return None
        try:
            rows = list(backend.entries(seq, seq + 1))
            if not rows:
                return None
            record = parse_entry(rows[0].body)[1]
        except _UNREADABLE:
            return None
        return (rows[0], record) if self._belongs(record, request) else None

    def _belongs(self, record: Any, request: ApprovalRequest) -> bool:
        if isinstance(record, DecisionRecord):
            return record.thread == request.thread
        if isinstance(record, ApprovalRequestRecord | ApprovalAnswerRecord):
            return record.request_id == request.request_id
        if isinstance(record, OutcomeRecord):
            found = self.decision(record.decision_id)
            return found is not None and found[1].thread == request.thread
        return False
