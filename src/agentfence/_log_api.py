"""The log's protocols (:class:`DecisionLog`, :class:`DeferringLog`), the :class:`Receipt` an
append returns, the key a record is appended under only once, and :class:`MemoryLog`, the
in-memory implementation. :mod:`agentfence.log` re-exports them beside :class:`SignedLog`.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agentfence import _merkle
from agentfence._log_reader import ThreadDecision
from agentfence.records import (
    OUTCOME_KIND,
    ApprovalRequestRecord,
    Blob,
    DecisionRecord,
    LogRecord,
    OutcomeRecord,
    entry_bytes,
)

__all__ = [
    "DecisionLog",
    "DeferringLog",
    "LogStats",
    "MemoryLog",
    "Pending",
    "Receipt",
    "dedupe_key",
    "index_columns",
]


@dataclass(frozen=True)
class Receipt:
    """Where a record landed: its sequence number and RFC 6962 leaf hash (hex).

    ``duplicate`` is true when the record was already on the log (the call was seen
    before, as when LangGraph re-executes a node on resume) and nothing new was written.
    """

    seq: int
    leaf_hash: str
    duplicate: bool = False


@runtime_checkable
class DecisionLog(Protocol):
    """Anything that durably appends records, with their blobs, in order.

    ``append`` returns only once the record is durable. Appending a decision or outcome
    whose ``decision_id`` was already recorded returns the first receipt and writes
    nothing: LangGraph re-executes a node when a thread resumes, and the fence must not
    record the same call twice.
    """

    def append(self, record: LogRecord, blobs: Sequence[Blob] = ()) -> Receipt:
        """Append one record (and the blobs it references) and return its receipt."""
        ...

    def close(self) -> None:
        """Flush and release the log (a signed log signs a final checkpoint)."""
        ...

    def find_outcome(self, decision_id: str) -> tuple[OutcomeRecord, bytes | None] | None:
        """The recorded outcome of a decision and its result content, if the tool ran."""
        ...


@runtime_checkable
class DeferringLog(Protocol):
    """A log that can take a record without holding the caller until it is durable.

    The fence records outcomes this way (a decision is always appended durably first).
    """

    def append_later(self, record: LogRecord, blobs: Sequence[Blob] = ()) -> None:
        """Queue a record for the next commit, bounded by the log's flush window."""
        ...


def dedupe_key(record: LogRecord) -> str | None:
    """The key under which a record may be appended only once (``None``: no such key)."""
    if isinstance(record, DecisionRecord | OutcomeRecord):
        return f"{record.format}:{record.decision_id}"
    if isinstance(record, ApprovalRequestRecord):
        return f"{record.format}:{record.request_id}"
    return None


class MemoryLog:
    """An in-memory :class:`DecisionLog`: ordered, idempotent, nothing persisted or signed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[LogRecord] = []
        self._receipts: dict[str, Receipt] = {}
        self._blobs: dict[str, bytes] = {}
        self._thread_seqs: dict[str, list[int]] = {}  # decisions by thread, for readers

    def append(self, record: LogRecord, blobs: Sequence[Blob] = ()) -> Receipt:
        """Append one record (see :class:`DecisionLog`)."""
        key = dedupe_key(record)
        with self._lock:
            if key is not None and key in self._receipts:
                return dataclasses.replace(self._receipts[key], duplicate=True)
            seq = len(self._records)
            receipt = Receipt(seq=seq, leaf_hash=_merkle.leaf_hash(entry_bytes(seq, record)).hex())
            self._records.append(record)
            if isinstance(record, DecisionRecord):
                self._thread_seqs.setdefault(record.thread, []).append(seq)
            self._blobs.update((b.ref, b.content) for b in blobs)
            if key is not None:
                self._receipts[key] = receipt
            return receipt

    def close(self) -> None:
        """Nothing to release."""

    @property
    def records(self) -> Sequence[LogRecord]:
        """A snapshot of the records appended so far, in order."""
        with self._lock:
            return tuple(self._records)

    def read(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, LogRecord]]:
        """``(seq, record)`` pairs in order (see :class:`LogReader`)."""
        with self._lock:
            part = self._records[start:end]
        for offset, record in enumerate(part):
            yield start + offset, record

    def size(self) -> int:
        """The number of records appended so far."""
        with self._lock:
            return len(self._records)

    def thread_decisions(
        self, thread: str, *, exclude: str | None = None, before: int | None = None
    ) -> list[ThreadDecision]:
        """A thread's decisions with their outcome status (see :class:`LogReader`)."""
        with self._lock:
            seqs = list(self._thread_seqs.get(thread, ()))
            records = [(seq, self._records[seq]) for seq in seqs]
        found = []
        for seq, record in records:
            if before is not None and seq >= before:
                break
            if not isinstance(record, DecisionRecord) or record.decision_id == exclude:
                continue
            done = self.find_outcome(record.decision_id)
            found.append(ThreadDecision(seq, record, done[0].status if done else None))
        return found

    def first_seq_since(self, time_us: int) -> int:
        """0: a memory log keeps no time index (see :class:`LogReader`)."""
        return 0

    def decisions(self) -> list[DecisionRecord]:
        """The decision records appended so far, in order."""
        return [r for r in self.records if isinstance(r, DecisionRecord)]

    def outcomes(self) -> list[OutcomeRecord]:
        """The outcome records appended so far, in order."""
        return [r for r in self.records if isinstance(r, OutcomeRecord)]

    def blob(self, ref: str) -> bytes | None:
        """The content of a blob, or ``None`` if it is unknown."""
        with self._lock:
            return self._blobs.get(ref)

    def find_outcome(self, decision_id: str) -> tuple[OutcomeRecord, bytes | None] | None:
        """The recorded outcome of a decision and its result content, if the tool ran."""
        with self._lock:
            receipt = self._receipts.get(f"{OUTCOME_KIND}:{decision_id}")
            if receipt is None:
                return None
            record = self._records[receipt.seq]
        if not isinstance(record, OutcomeRecord):  # pragma: no cover - keyed by format
            return None
        return record, self.blob(record.result_blob) if record.result_blob else None


class Wake:
    """A one-shot signal a writer waits on until its record's commit is done.

    A bare lock, taken at creation and released by :meth:`set`: the group commit makes one
    per record, and a :class:`threading.Event` (a condition, a lock per wait) costs several
    times as much to make, set and wait on.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Wake the waiter (setting it again does nothing)."""
        try:  # noqa: SIM105  # suppress() would cost a context manager per record
            self._lock.release()
        except RuntimeError:  # already released: set before
            pass

    def wait(self) -> None:
        """Wait until :meth:`set` (for one waiter, once)."""
        self._lock.acquire()


@dataclass
class Pending:
    """One record on its way to a commit, and what its writer waits on."""

    record: LogRecord
    blobs: Sequence[Blob]
    record_bytes: bytes
    deferred: bool = False  # nobody waits for it: it rides the next commit
    attempts: int = 0  # commits of it that failed (a deferred record is tried again)
    receipt: Receipt | None = None
    error: BaseException | None = None
    done: bool = False
    wake: Wake = field(default_factory=Wake)


def index_columns(record: LogRecord) -> tuple[str | None, str | None, str | None]:
    """The ``thread``, ``tool`` and ``effect`` index columns stored beside an entry.

    They are derived from the entry (for ``log show`` filters) and the verifier checks them
    against it (docs/log-format.md, "Index columns").
    """
    if isinstance(record, DecisionRecord):
        return record.thread, record.tool, record.effect
    if isinstance(record, ApprovalRequestRecord):
        return record.thread, record.tool, None
    return None, None, None


_COMMIT_TIMES = 65_536


@dataclass
class LogStats:
    """Counters of the group commit; the durations of only the latest commits are kept, so a
    long-running writer's memory does not grow with its commits."""

    batches: int = 0
    entries: int = 0
    checkpoints: int = 0
    largest_batch: int = 0
    commit_seconds: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_COMMIT_TIMES)
    )
