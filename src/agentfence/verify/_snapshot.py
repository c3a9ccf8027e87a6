"""Reading a decision log for verification: a read-only snapshot and strict entry parsing.

The verifier reads the documented tables (``docs/log-format.md``) itself rather than through
the writer's code in :mod:`agentfence.log`, and trusts nothing it reads until a later step
checks it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from agentfence._storage.database import SQLITE, Cursor, Database, parse_url
from agentfence.errors import EntryError, LogError
from agentfence.records import (
    DECISION_KIND,
    ENTRY_FORMAT,
    KEYCHANGE_KIND,
    OUTCOME_KIND,
    FrozenModel,
    LogRecord,
    Record,
)
from agentfence.verify._common import KEEP_EVIDENCE, first_error

DECISION_KEY = DECISION_KIND + ":"  # log.dedupe_key of a decision is this and its decision id
OUTCOME_KEY = OUTCOME_KIND + ":"


class _Entry(FrozenModel):
    format: Literal["agentfence.entry/v1"]
    record: Record
    seq: int


# One pass of pydantic-core over the entry bytes parses the JSON and validates the record,
# strictly, as log.parse_entry does in two passes.
ENTRY_ADAPTER: TypeAdapter[_Entry] = TypeAdapter(_Entry)
_RECORD: TypeAdapter[LogRecord] = TypeAdapter(Record)


class Snapshot:
    """A read-only, consistent view of one decision log, in SQLite or PostgreSQL.

    The verifier reads the documented tables itself rather than through the writer's code,
    inside one read transaction (SQLite: a WAL read transaction; PostgreSQL: REPEATABLE
    READ, READ ONLY), so every step sees the same snapshot even while fences keep appending.
    """

    def __init__(self, source: str | Path) -> None:
        self.location = parse_url(source)
        self.path = self.location.display
        self._db = Database(self.location, readonly=True)
        self._db.require(set(), "decision log")  # a missing file; the tables are below
        self._dialect = self._db.dialect
        try:
            self._conn = self._db.conn()
            self._dialect.begin_snapshot(self._conn)
            self._tables = self._dialect.tables(self._conn)
        except self._db.errors as exc:
            self._db.close()
            raise LogError(f"cannot open {self.path!r} read-only: {exc}") from exc
        missing = {"meta", "entries", "blobs", "checkpoints"} - self._tables
        if missing:
            self._db.close()
            raise LogError(
                f"{self.path!r} is not an agentfence decision log: it has no "
                f"{', '.join(sorted(missing))} table; check that you opened the right "
                f"{'file' if self.location.engine == SQLITE else 'database'}"
            )

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._dialect.execute(self._conn, sql, params).fetchall()

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._dialect.stream(self._conn, sql, params)

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._all("SELECT key, value FROM meta")}

    def checkpoints(self) -> list[tuple[int, bytes, str, bytes]]:
        """``(size, root, note, frontier)`` of every stored checkpoint, smallest first."""
        return [
            (int(r[0]), bytes(r[1]), r[2], bytes(r[3]))
            for r in self._all("SELECT size, root, note, frontier FROM checkpoints ORDER BY size")
        ]

    def count(self) -> int:
        return int(self._all("SELECT count(*) FROM entries")[0][0])

    def last_seq(self) -> int | None:
        """The highest stored ``seq`` (``None``: no entries)."""
        value = self._all("SELECT max(seq) FROM entries")[0][0]
        return int(value) if value is not None else None

    def rows(self, start: int = 0, end: int | None = None) -> Cursor:
        sql = (
            "SELECT seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, time_us "
            "FROM entries WHERE seq >= ?"
        )
        params: tuple[int, ...] = (start,)
        if end is not None:
            sql += " AND seq < ?"
            params = (start, end)
        return self._stream(sql + " ORDER BY seq", params)

    def keychange_rows(self) -> list[tuple[int, bytes]]:
        return list(self.kind_rows(KEYCHANGE_KIND, 0, None))

    def kind_rows(self, kind: str, start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
        """``(seq, body)`` of the entries whose kind column is ``kind``, in order."""
        cursor = self._stream(
            "SELECT seq, body FROM entries WHERE kind = ? AND seq >= ? AND seq < ? ORDER BY seq",
            (kind, start, end if end is not None else 2**63 - 1),
        )
        for seq, body in cursor:
            yield int(seq), bytes(body)

    def count_kind(self, kind: str) -> int:
        return int(self._all("SELECT count(*) FROM entries WHERE kind = ?", (kind,))[0][0])

    def body(self, seq: int) -> bytes | None:
        rows = self._all("SELECT body FROM entries WHERE seq = ?", (seq,))
        return bytes(rows[0][0]) if rows else None

    def leaf_hashes(self, end: int) -> list[bytes]:
        return [
            bytes(r[0])
            for r in self._stream(
                "SELECT leaf_hash FROM entries WHERE seq < ? ORDER BY seq", (end,)
            )
        ]

    def blobs(self) -> Cursor:
        return self._stream("SELECT ref, salt, content, erased FROM blobs")

    def blob_count(self) -> int:
        return int(self._all("SELECT count(*) FROM blobs")[0][0])

    def blobs_by_ref(self, refs: Sequence[str]) -> dict[str, bytes | None]:
        """Content by ref for the refs that are stored (``None``: erased)."""
        found: dict[str, bytes | None] = {}
        for start in range(0, len(refs), 500):
            chunk = list(refs[start : start + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT ref, content FROM blobs WHERE ref IN ({marks})"  # noqa: S608  # only placeholders are interpolated
            for ref, content in self._all(sql, chunk):
                found[str(ref)] = bytes(content) if content is not None else None
        return found

    def blob_row(self, ref: str) -> tuple[bytes | None, bytes | None] | None:
        rows = self._all("SELECT salt, content FROM blobs WHERE ref = ?", (ref,))
        if not rows:
            return None
        salt, content = rows[0]
        return (
            bytes(salt) if salt is not None else None,
            bytes(content) if content is not None else None,
        )

    def tree_state(self) -> tuple[int, bytes] | None:
        if "tree_state" not in self._tables:
            return None
        rows = self._all("SELECT size, frontier FROM tree_state WHERE id = 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None


def parse_body(body: bytes, seq: int, *, step: int) -> LogRecord:
    try:
        return ENTRY_ADAPTER.validate_json(body, strict=True).record
    except ValidationError as exc:
        raise EntryError(
            f"entry {seq} was modified: its bytes are not a well-formed {ENTRY_FORMAT} entry "
            f"({first_error(exc)}); {KEEP_EVIDENCE}",
            step=step,
            attack="entry_modified",
        ) from exc


def body_seq(body: Any) -> int | None:
    try:
        value = json.loads(bytes(body)).get("seq")
    except (ValueError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) else None
