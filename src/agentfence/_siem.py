"""Log entries as a SIEM ingests them, and following a log as it grows (``docs/siem.md``).

Two forms of one entry: ``jsonl``, agentfence's own (the entry's seq, leaf hash, kind, time
and record, with an ISO 8601 ``@timestamp``), and ``ecs``, the same entry mapped onto the
Elastic Common Schema (ECS) with the record kept whole under ``agentfence.record``. Both are
functions of the stored entry alone, so the same entry always renders to the same bytes: a
batch sent again after a crash is byte for byte the batch sent before.

:func:`follow` yields entries in seq order as they are appended. Every writer sequences
inside one transaction holding the log's write lock (``_storage.tables``), so the entries a
reader sees are always a prefix ``0 .. n-1``: reading on from the last seq seen misses
nothing and repeats nothing.
"""

from __future__ import annotations

import datetime
import json
import select
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, Final, Literal, Protocol

from agentfence._storage.tables import EntryRow, LogBackend
from agentfence.records import RECORD_KINDS

__all__ = [
    "ECS_VERSION",
    "FORMATS",
    "Format",
    "SignalStop",
    "StopFlag",
    "dumps",
    "ecs_event",
    "entry_json",
    "follow",
    "iso_time",
    "render",
    "stop_on_signals",
]

Format = Literal["jsonl", "ecs"]
FORMATS: Final[tuple[Format, ...]] = ("jsonl", "ecs")
"""The forms an exported or pushed entry takes (``--format``)."""

ECS_VERSION: Final = "8.17.0"
"""The ECS version the ``ecs`` form follows (``ecs.version`` in every event)."""

_SHORT_KINDS: Final = {kind: short for short, kind in RECORD_KINDS.items()}

# ECS event.type and event.outcome of a decision (ECS "Categorization Fields": category `api`
# expects the types `allowed`, `denied` and `info`). A held call is neither allowed nor
# denied yet: `info`, outcome `unknown`.
_DECISION_TYPE: Final = {"ALLOW": "allowed", "DENY": "denied", "REQUIRE_APPROVAL": "info"}
_DECISION_OUTCOME: Final = {"ALLOW": "success", "DENY": "failure", "REQUIRE_APPROVAL": "unknown"}


def iso_time(time_us: int) -> str:
    """An entry's time as ISO 8601 in UTC, to the microsecond (``@timestamp``, the event
    time field of the Elastic Common Schema that SIEMs index by)."""
    moment = datetime.datetime.fromtimestamp(time_us // 1_000_000, tz=datetime.UTC)
    moment = moment.replace(microsecond=time_us % 1_000_000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def entry_json(row: EntryRow) -> dict[str, Any]:
    """An entry in agentfence's own export form (``--format jsonl``)."""
    return {
        "@timestamp": iso_time(row.time_us),
        "seq": row.seq,
        "leaf_hash": row.leaf_hash.hex(),
        "kind": row.kind,
        "time_us": row.time_us,
        "record": json.loads(row.body).get("record"),
    }


def ecs_event(row: EntryRow, origin: str) -> dict[str, Any]:
    """An entry as an Elastic Common Schema event (``--format ecs``; the table of fields
    is in ``docs/siem.md``). Fields ECS has no name for stay under ``agentfence.*``."""
    record: dict[str, Any] = json.loads(row.body).get("record") or {}
    short = _SHORT_KINDS.get(row.kind, row.kind)
    event: dict[str, Any] = {
        "kind": "event",
        "module": "agentfence",
        "dataset": f"agentfence.{short}",
        "action": short,
        "provider": origin,
        "id": row.leaf_hash.hex(),
        "sequence": row.seq,
        "hash": row.leaf_hash.hex(),
    }
    doc: dict[str, Any] = {
        "@timestamp": iso_time(row.time_us),
        "ecs": {"version": ECS_VERSION},
        "event": event,
        "agentfence": {
            "log": {"origin": origin, "seq": row.seq, "leaf_hash": row.leaf_hash.hex()},
            "kind": row.kind,
            "record": record,
        },
    }
    if short == "decision":
        effect = str(record.get("effect", ""))
        event["category"] = ["api"]
        event["type"] = [_DECISION_TYPE.get(effect, "info")]
        event["outcome"] = _DECISION_OUTCOME.get(effect, "unknown")
        if record.get("reasons"):
            event["reason"] = "; ".join(map(str, record["reasons"]))
        if record.get("policy_ids"):
            doc["rule"] = {"id": list(record["policy_ids"]), "ruleset": record.get("policy_hash")}
        if record.get("errors"):
            doc["error"] = {"message": "; ".join(map(str, record["errors"]))}
    elif short == "outcome":
        event["category"] = ["api"]
        event["type"] = ["end"]
        event["outcome"] = "success" if record.get("status") == "success" else "failure"
    if record.get("principal"):
        doc["user"] = {"id": record["principal"]}
    if record.get("trace_id"):
        doc["trace"] = {"id": record["trace_id"]}
    if record.get("span_id"):
        doc["span"] = {"id": record["span_id"]}
    return doc


def render(row: EntryRow, form: Format, *, origin: str) -> dict[str, Any]:
    """An entry in the form asked for."""
    return ecs_event(row, origin) if form == "ecs" else entry_json(row)


def dumps(value: Any) -> str:
    """One exported entry as one line of JSON: sorted keys, so always the same bytes."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def follow(
    backend: LogBackend,
    start: int,
    *,
    stop: StopFlag,
    poll_interval: float,
    batch: int = 500,
) -> Iterator[list[EntryRow]]:
    """Yield batches of entries from seq ``start`` on, in order, until ``stop`` is set.

    When the log has nothing new it waits ``poll_interval`` seconds (or until ``stop``) and
    reads again; reads are by seq, so an entry is yielded exactly once.
    """
    position = start
    while not stop.is_set():
        rows = list(backend.entries(position, position + batch))
        if rows:
            yield rows
            position = rows[-1].seq + 1
            continue
        stop.wait(poll_interval)


class StopFlag(Protocol):
    """What a following loop asks of its stop signal (``threading.Event`` is one)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class SignalStop:
    """A stop flag that a signal handler sets without taking a lock.

    A ``threading.Event`` is not one: its ``set`` takes the lock that its ``wait`` holds for
    a moment on the way in and out, and a handler runs in the main thread between two of its
    bytecodes, so a Ctrl-C landing in that moment waits for a lock its own thread holds,
    forever. Here ``set`` writes a flag and one byte to a socket pair, and ``wait`` is a
    ``select`` on it (which the byte ends at once, retried or not after the signal).
    """

    def __init__(self) -> None:
        self._set = False
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)

    def set(self) -> None:
        """Stop: safe to call from a signal handler."""
        self._set = True
        with suppress(OSError):  # the pair's buffer is full: a byte is there already
            self._write.send(b"\0")

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`set` is called or ``timeout`` seconds pass; whether it was."""
        if not self._set:
            select.select([self._read], [], [], timeout)
        return self._set

    def close(self) -> None:
        """Release the socket pair."""
        self._read.close()
        self._write.close()


@contextmanager
def stop_on_signals() -> Iterator[SignalStop]:
    """A stop flag set by SIGINT (Ctrl-C) or SIGTERM while the block runs, so a loop can end
    cleanly after the step it is in; the previous handlers come back afterwards."""
    stop = SignalStop()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        stop.close()
