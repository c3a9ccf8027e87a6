"""The decision log seam: where the fence hands every decision and outcome.

:class:`DecisionLog` is the protocol the fence writes to. An append must be durable when it
returns; if it raises, the fence denies the call (fail closed). :class:`MemoryLog` keeps
entries in memory, for tests and for trying agentfence out; the signed durable log
implements the same protocol.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agentfence.records import (
    ActivationRecord,
    DecisionRecord,
    OutcomeRecord,
    canonical_bytes,
)

__all__ = ["DecisionLog", "MemoryLog", "Receipt"]

LogRecord = ActivationRecord | DecisionRecord | OutcomeRecord


@dataclass(frozen=True)
class Receipt:
    """Where a record landed: its sequence number and RFC 6962 leaf hash (hex)."""

    seq: int
    leaf_hash: str


@runtime_checkable
class DecisionLog(Protocol):
    """Anything that durably appends records in order.

    ``append`` returns only once the record is durable. Appending a decision or outcome
    whose ``decision_id`` was already recorded returns the first receipt and writes
    nothing: LangGraph re-executes a node when a thread resumes, and the fence must not
    record the same call twice.
    """

    def append(self, record: LogRecord) -> Receipt:
        """Append one record and return its receipt."""
        ...


def leaf_hash_hex(data: bytes) -> str:
    """RFC 6962 section 2.1 leaf hash, SHA-256(0x00 || data), as hex."""
    return hashlib.sha256(b"\x00" + data).hexdigest()


def idempotency_key(record: LogRecord) -> tuple[str, str] | None:
    """The key under which a record may be appended only once (``None``: no such key)."""
    if isinstance(record, DecisionRecord | OutcomeRecord):
        return (record.format, record.decision_id)
    return None


class MemoryLog:
    """An in-memory :class:`DecisionLog`: ordered, idempotent, nothing persisted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[LogRecord] = []
        self._receipts: dict[tuple[str, str], Receipt] = {}

    def append(self, record: LogRecord) -> Receipt:
        """Append one record (see :class:`DecisionLog`)."""
        key = idempotency_key(record)
        data = canonical_bytes(record)
        with self._lock:
            if key is not None and key in self._receipts:
                return self._receipts[key]
            receipt = Receipt(seq=len(self._records), leaf_hash=leaf_hash_hex(data))
            self._records.append(record)
            if key is not None:
                self._receipts[key] = receipt
            return receipt

    @property
    def records(self) -> Sequence[LogRecord]:
        """A snapshot of the records appended so far, in order."""
        with self._lock:
            return tuple(self._records)

    def decisions(self) -> list[DecisionRecord]:
        """The decision records appended so far, in order."""
        return [r for r in self.records if isinstance(r, DecisionRecord)]

    def outcomes(self) -> list[OutcomeRecord]:
        """The outcome records appended so far, in order."""
        return [r for r in self.records if isinstance(r, OutcomeRecord)]
