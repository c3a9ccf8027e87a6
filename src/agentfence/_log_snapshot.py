"""Reading a decision log for verification: a read-only snapshot and strict entry parsing.

The verifier reads the documented tables (``docs/log-format.md``) itself rather than through
the writer's code in :mod:`agentfence.log`, and trusts nothing it reads until a later step
checks it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from agentfence._verify_common import _KEEP, EntryError, _first_error, _Frozen
from agentfence.errors import LogError
from agentfence.log import sqlite_path
from agentfence.records import ENTRY_FORMAT, LogRecord, Record

_DECISION = "agentfence.decision/v1"
_OUTCOME = "agentfence.outcome/v1"
_DECISION_KEY = _DECISION + ":"  # log.dedupe_key of a decision is this and its decision id
_OUTCOME_KEY = _OUTCOME + ":"
_KEYCHANGE = "agentfence.keychange/v1"
_ACTIVATION = "agentfence.activation/v1"


class _Entry(_Frozen):
    format: Literal["agentfence.entry/v1"]
    record: Record
    seq: int


# One pass of pydantic-core over the entry bytes parses the JSON and validates the record,
# strictly, as log.parse_entry does in two passes.
_ENTRY: TypeAdapter[_Entry] = TypeAdapter(_Entry)
_RECORD: TypeAdapter[LogRecord] = TypeAdapter(Record)


class _Snapshot:
    """A read-only, consistent view of one SQLite decision log.

    The verifier reads the documented tables itself rather than through the writer's code,
    inside one read transaction, so every step sees the same snapshot even while a fence
    keeps appending.
    """

    def __init__(self, source: str | Path) -> None:
        self.path = sqlite_path(source)
        if not self.path.is_file():
            raise LogError(
                f"no decision log at {str(self.path)!r}; check the path (a log is created by "
                "a fence with log='sqlite:///PATH')"
            )
        try:
            self._conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
            self._conn.execute("BEGIN")
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error as exc:
            raise LogError(f"cannot open {str(self.path)!r} read-only: {exc}") from exc
        missing = {"meta", "entries", "blobs", "checkpoints"} - tables
        if missing:
            self._conn.close()
            raise LogError(
                f"{str(self.path)!r} is not an agentfence decision log: it has no "
                f"{', '.join(sorted(missing))} table; check that you opened the right file"
            )

    def __enter__(self) -> _Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}

    def checkpoints(self) -> list[tuple[int, bytes, str, bytes]]:
        """``(size, root, note, frontier)`` of every stored checkpoint, smallest first."""
        return [
            (int(r[0]), bytes(r[1]), r[2], bytes(r[3]))
            for r in self._conn.execute(
                "SELECT size, root, note, frontier FROM checkpoints ORDER BY size"
            )
        ]

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    def rows(self, start: int = 0, end: int | None = None) -> sqlite3.Cursor:
        sql = (
            "SELECT seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, time_us "
            "FROM entries WHERE seq >= ?"
        )
        params: tuple[int, ...] = (start,)
        if end is not None:
            sql += " AND seq < ?"
            params = (start, end)
        cursor = self._conn.execute(sql + " ORDER BY seq", params)
        cursor.arraysize = 1000
        return cursor

    def keychange_rows(self) -> list[tuple[int, bytes]]:
        return list(self.kind_rows(_KEYCHANGE, 0, None))

    def kind_rows(self, kind: str, start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
        """``(seq, body)`` of the entries whose kind column is ``kind``, in order."""
        cursor = self._conn.execute(
            "SELECT seq, body FROM entries WHERE kind = ? AND seq >= ? AND seq < ? ORDER BY seq",
            (kind, start, end if end is not None else 2**63 - 1),
        )
        cursor.arraysize = 1000
        for seq, body in cursor:
            yield int(seq), bytes(body)

    def count_kind(self, kind: str) -> int:
        row = self._conn.execute("SELECT count(*) FROM entries WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def body(self, seq: int) -> bytes | None:
        row = self._conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()
        return bytes(row[0]) if row else None

    def leaf_hashes(self, end: int) -> list[bytes]:
        return [
            bytes(r[0])
            for r in self._conn.execute(
                "SELECT leaf_hash FROM entries WHERE seq < ? ORDER BY seq", (end,)
            )
        ]

    def blobs(self) -> sqlite3.Cursor:
        cursor = self._conn.execute("SELECT ref, salt, content, erased FROM blobs")
        cursor.arraysize = 1000
        return cursor

    def blob_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM blobs").fetchone()[0])

    def blobs_by_ref(self, refs: Sequence[str]) -> dict[str, bytes | None]:
        """Content by ref for the refs that are stored (``None``: erased)."""
        found: dict[str, bytes | None] = {}
        for start in range(0, len(refs), 500):
            chunk = list(refs[start : start + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT ref, content FROM blobs WHERE ref IN ({marks})"  # noqa: S608  # only placeholders are interpolated
            for ref, content in self._conn.execute(sql, chunk):
                found[str(ref)] = bytes(content) if content is not None else None
        return found

    def blob_row(self, ref: str) -> tuple[bytes | None, bytes | None] | None:
        row = self._conn.execute("SELECT salt, content FROM blobs WHERE ref = ?", (ref,)).fetchone()
        if row is None:
            return None
        return (
            bytes(row[0]) if row[0] is not None else None,
            bytes(row[1]) if row[1] is not None else None,
        )

    def tree_state(self) -> tuple[int, bytes] | None:
        try:
            row = self._conn.execute(
                "SELECT size, frontier FROM tree_state WHERE id = 1"
            ).fetchone()
        except sqlite3.Error:
            return None
        return (int(row[0]), bytes(row[1])) if row else None


def _parse_body(body: bytes, seq: int, *, step: int) -> LogRecord:
    try:
        return _ENTRY.validate_json(body, strict=True).record
    except ValidationError as exc:
        raise EntryError(
            f"entry {seq} was modified: its bytes are not a well-formed {ENTRY_FORMAT} entry "
            f"({_first_error(exc)}); {_KEEP}",
            step=step,
            attack="entry_modified",
        ) from exc


def _body_seq(body: Any) -> int | None:
    try:
        value = json.loads(bytes(body)).get("seq")
    except (ValueError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) else None
