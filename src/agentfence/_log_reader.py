"""Reading a decision log back: the :class:`LogReader` protocol, :class:`LogView` (a read-only
view of a stored log) and :func:`parse_entry`, re-exported by :mod:`agentfence.log`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from pydantic import TypeAdapter, ValidationError

from agentfence._storage.tables import LogBackend
from agentfence.errors import VerificationError
from agentfence.records import (
    DECISION_KIND,
    ENTRY_FORMAT,
    OUTCOME_KIND,
    DecisionRecord,
    LogRecord,
    OutcomeRecord,
    Record,
)

__all__ = ["LogReader", "LogView", "ThreadDecision", "parse_entry"]


class ThreadDecision(NamedTuple):
    """One decision of a thread, with what became of it (``status``: ``None`` if not run)."""

    seq: int
    record: DecisionRecord
    status: str | None


@runtime_checkable
class LogReader(Protocol):
    """Reads a decision log back: what usage limits, replay, approvers and the inbox need.

    Both logs implement it (:class:`MemoryLog`, :class:`SignedLog`), and so does
    :class:`LogView`, a read-only view of a stored log for readers that do not write.
    """

    def read(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, LogRecord]]:
        """``(seq, record)`` pairs from ``start`` up to ``end`` (exclusive), in order."""
        ...

    def size(self) -> int:
        """The number of entries."""
        ...

    def blob(self, ref: str) -> bytes | None:
        """A blob's content (``None`` if unknown or erased)."""
        ...

    def find_outcome(self, decision_id: str) -> tuple[OutcomeRecord, bytes | None] | None:
        """The recorded outcome of a decision and its result content, if the tool ran."""
        ...

    def thread_decisions(
        self, thread: str, *, exclude: str | None = None, before: int | None = None
    ) -> list[ThreadDecision]:
        """A thread's decisions in log order (below seq ``before``), each with its outcome
        status; ``exclude`` leaves one decision out."""
        ...

    def first_seq_since(self, time_us: int) -> int:
        """A seq from which on every record at or after ``time_us`` lies (0 when unknown)."""
        ...


class LogView:
    """A read-only :class:`LogReader` over a stored log (SQLite or PostgreSQL).

    What the approver CLI, the inbox and a :class:`SignedLog` itself read through: records by
    seq, blobs, outcomes, a thread's decisions and the time index. It checks nothing; the
    auditor's ``verify_log`` does.
    """

    def __init__(self, backend: LogBackend) -> None:
        self._backend = backend

    def size(self) -> int:
        """The number of entries."""
        state = self._backend.tree_state()
        return state[0] if state else 0

    def read(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, LogRecord]]:
        """``(seq, record)`` pairs in order (see :class:`LogReader`)."""
        for row in self._backend.entries(start, end):
            yield row.seq, parse_entry(row.body)[1]

    def blob(self, ref: str) -> bytes | None:
        """A blob's content (``None`` if unknown or erased)."""
        row = self._backend.blob(ref)
        return row.content if row else None

    def find_outcome(self, decision_id: str) -> tuple[OutcomeRecord, bytes | None] | None:
        """The recorded outcome of a decision and its result content, if the tool ran."""
        row = self._backend.find_entry(f"{OUTCOME_KIND}:{decision_id}")
        if row is None:
            return None
        record = parse_entry(row.body)[1]
        if not isinstance(record, OutcomeRecord):  # pragma: no cover - keyed by format
            return None
        return record, self.blob(record.result_blob) if record.result_blob else None

    def thread_decisions(
        self, thread: str, *, exclude: str | None = None, before: int | None = None
    ) -> list[ThreadDecision]:
        """A thread's decisions with their outcome status, by the stored thread index."""
        found: list[ThreadDecision] = []
        for row in self._backend.select(thread=thread, kind=DECISION_KIND):
            if before is not None and row.seq >= before:
                break
            record = parse_entry(row.body)[1]
            if not isinstance(record, DecisionRecord) or record.decision_id == exclude:
                continue
            done = self._backend.find_entry(f"{OUTCOME_KIND}:{record.decision_id}")
            ran = parse_entry(done.body)[1] if done is not None else None
            status = ran.status if isinstance(ran, OutcomeRecord) else None
            found.append(ThreadDecision(row.seq, record, status))
        return found

    def first_seq_since(self, time_us: int) -> int:
        """The first seq at or after ``time_us``, by the stored time index."""
        rows = self._backend.select(since_us=time_us, limit=1)
        return int(rows[0].seq) if rows else self.size()


_RECORD: TypeAdapter[LogRecord] = TypeAdapter(Record)


def parse_entry(body: bytes) -> tuple[int, LogRecord]:
    """Parse stored entry bytes into ``(seq, record)``; raise VerificationError if malformed."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"entry is not JSON: {exc}") from exc
    if not isinstance(data, Mapping) or data.get("format") != ENTRY_FORMAT:
        raise VerificationError(f"entry is not an {ENTRY_FORMAT} object")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise VerificationError("entry has no integer seq")
    try:
        record = _RECORD.validate_python(data.get("record"))
    except ValidationError as exc:
        raise VerificationError(f"entry {seq} holds a malformed record: {exc}") from exc
    return seq, record
