"""The SQLite dialect of the decision log's storage (the default).

One file per deployment, in WAL mode with ``synchronous=FULL``: a commit is on disk when it
returns. Triggers reject UPDATE and DELETE on entries and checkpoints, and any change to a
blob but the erasure of its content: a guard rail against bugs. The Merkle tree and the
signed checkpoints are the real protection.

A write transaction is ``BEGIN IMMEDIATE``: it takes SQLite's write lock on the file from its
first statement, so sequencing in several processes sharing one file is serialised.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import sqlite_utils

from agentfence._storage.dialect import SQLITE, Cursor, Location
from agentfence.errors import LogError

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    body BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    thread TEXT,
    tool TEXT,
    effect TEXT,
    time_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_thread ON entries (thread, seq);
CREATE INDEX IF NOT EXISTS entries_thread_kind ON entries (thread, kind, seq);
CREATE INDEX IF NOT EXISTS entries_tool ON entries (tool, seq);
CREATE INDEX IF NOT EXISTS entries_kind ON entries (kind, seq);
CREATE TABLE IF NOT EXISTS blobs (
    ref TEXT PRIMARY KEY,
    salt BLOB,
    content BLOB,
    erased INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    frontier BLOB NOT NULL,
    time_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tree_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    frontier BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'agentfence: log entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'agentfence: log entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'agentfence: checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'agentfence: checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS blobs_no_delete BEFORE DELETE ON blobs
BEGIN SELECT RAISE(ABORT, 'agentfence: blobs are erased, never deleted'); END;
CREATE TRIGGER IF NOT EXISTS blobs_erase_only BEFORE UPDATE ON blobs
WHEN NEW.ref IS NOT OLD.ref OR NEW.content IS NOT NULL OR NEW.salt IS NOT NULL
     OR NEW.erased != 1
BEGIN SELECT RAISE(ABORT, 'agentfence: a blob can only be erased'); END;
"""


class SqliteDialect:
    """SQLite: a file, WAL mode, ``synchronous=FULL``, ``BEGIN IMMEDIATE`` for writes."""

    engine = SQLITE
    driver_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    lock_suffix = ""
    sequences_on_server = False
    log_schema = LOG_SCHEMA

    def connect(self, location: Location, *, readonly: bool) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are begun explicitly)."""
        path = Path(str(location.path))
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"file:{path.resolve()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    path, isolation_level=None, check_same_thread=False, timeout=30.0
                )
                sqlite_utils.Database(conn).enable_wal()
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise LogError(f"cannot open the decision log {str(path)!r}: {exc}") from exc
        return conn

    def create_schema(self, conn: sqlite3.Connection, schema: str) -> None:
        """Run the schema script (every statement is ``IF NOT EXISTS``)."""
        conn.executescript(schema)

    def begin(self, conn: sqlite3.Connection) -> None:
        """Take the file's write lock now rather than at the first write."""
        conn.execute("BEGIN IMMEDIATE")

    def begin_snapshot(self, conn: sqlite3.Connection) -> None:
        """A read transaction: it sees one snapshot from its first read on (WAL)."""
        conn.execute("BEGIN")

    def execute(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any], *, binary: bool = False
    ) -> Cursor:
        """Run one statement (``binary`` means nothing to SQLite)."""
        return conn.execute(sql, params)

    def executemany(
        self, conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        """Run one statement per row."""
        conn.executemany(sql, rows)

    def stream(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Cursor:
        """A cursor that fetches rows a thousand at a time."""
        cursor = conn.execute(sql, params)
        cursor.arraysize = 1000
        return cursor

    def tables(self, conn: sqlite3.Connection) -> set[str]:
        """The tables in the file."""
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def usable(self, conn: sqlite3.Connection) -> bool:
        """SQLite connections do not break; a closed one is never handed out."""
        return True

    def idle(self, conn: sqlite3.Connection) -> bool:
        """In no transaction."""
        return not conn.in_transaction

    def hint(self, exc: BaseException) -> str:
        """SQLite's messages say enough."""
        return ""

    def pipeline(self, conn: sqlite3.Connection) -> AbstractContextManager[Any]:
        """In-process: there are no round trips to save."""
        return nullcontext()


SQLITE_DIALECT = SqliteDialect()
