"""The SQLite storage of the decision log (the default backend).

One file per deployment, in WAL mode with ``synchronous=FULL``: a commit is on disk when it
returns. Triggers reject UPDATE and DELETE on entries and checkpoints, and any change to a
blob but the erasure of its content: a guard rail against bugs. The Merkle tree and the
signed checkpoints are the real protection.

Sequencing happens inside a ``BEGIN IMMEDIATE`` transaction that reads and writes the
single ``tree_state`` row, so several processes appending to one file still build one
ordered tree with no gaps and no duplicates.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from agentfence.errors import LogError

LOG_FORMAT = "agentfence.log/v1"

_SCHEMA = """
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
CREATE INDEX IF NOT EXISTS entries_tool ON entries (tool, seq);
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


@dataclass(frozen=True)
class EntryRow:
    """One stored entry with its index columns (derived from the body)."""

    seq: int
    kind: str
    dedupe_key: str | None
    body: bytes
    leaf_hash: bytes
    thread: str | None
    tool: str | None
    effect: str | None
    time_us: int


@dataclass(frozen=True)
class CheckpointRow:
    """A stored signed checkpoint and the Merkle frontier at its size."""

    size: int
    root: bytes
    note: str
    frontier: bytes
    time_us: int


@dataclass(frozen=True)
class BlobRow:
    """A stored blob; ``content`` and ``salt`` are ``None`` once erased."""

    ref: str
    salt: bytes | None
    content: bytes | None
    erased: bool


class SqliteTransaction:
    """The writes one append batch makes, inside ``BEGIN IMMEDIATE``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def tree_state(self) -> tuple[int, bytes] | None:
        """The committed tree size and Merkle frontier, read under the write lock."""
        row = self._conn.execute("SELECT size, frontier FROM tree_state WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def set_tree_state(self, size: int, frontier: bytes) -> None:
        """Store the tree size and frontier after this batch."""
        self._conn.execute(
            "INSERT INTO tree_state (id, size, frontier) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier",
            (size, frontier),
        )

    def find(self, keys: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Entries already stored under these dedupe keys: key -> (seq, leaf hash)."""
        found: dict[str, tuple[int, bytes]] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, seq, leaf in self._conn.execute(
                f"SELECT dedupe_key, seq, leaf_hash FROM entries WHERE dedupe_key IN ({marks})",  # noqa: S608  # only placeholders are interpolated
                chunk,
            ):
                found[key] = (int(seq), bytes(leaf))
        return found

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        """Insert entries (their seqs follow the tree state)."""
        self._conn.executemany(
            "INSERT INTO entries (seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect,"
            " time_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.seq,
                    r.kind,
                    r.dedupe_key,
                    r.body,
                    r.leaf_hash,
                    r.thread,
                    r.tool,
                    r.effect,
                    r.time_us,
                )
                for r in rows
            ],
        )

    def insert_blobs(self, blobs: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Insert blobs (ref, salt, content); a ref already stored is left as it is."""
        self._conn.executemany(
            "INSERT OR IGNORE INTO blobs (ref, salt, content) VALUES (?, ?, ?)", blobs
        )

    def erase_blob(self, ref: str) -> bool:
        """Erase a blob's content and salt; False when no such blob is stored."""
        cur = self._conn.execute(
            "UPDATE blobs SET content = NULL, salt = NULL, erased = 1 WHERE ref = ?", (ref,)
        )
        return cur.rowcount == 1


class SqliteBackend:
    """A decision log stored in one SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LogError(
                f"no decision log at {str(self.path)!r}; check the path (a log is created by "
                "a fence with log='sqlite:///PATH')"
            )
        self._local = threading.local()
        self._readonly = readonly
        self._lock = threading.Lock()
        if not readonly:
            conn = self._connect()
            with self._lock:
                conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            if self._readonly:
                uri = f"file:{self.path.resolve()}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=30.0
                )
                db = sqlite_utils.Database(conn)
                db.enable_wal()
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise LogError(f"cannot open the decision log {str(self.path)!r}: {exc}") from exc
        self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        """A write transaction holding SQLite's write lock from its first statement."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def get_meta(self) -> dict[str, str]:
        """All meta rows."""
        return dict(self._connect().execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, str]) -> None:
        """Insert meta rows that are not set yet (meta never changes once written)."""
        with self.transaction() as tx:
            tx._conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", list(values.items())
            )

    def insert_checkpoint(self, row: CheckpointRow) -> None:
        """Store a signed checkpoint (a second one of the same size is ignored)."""
        with self.transaction() as tx:
            tx._conn.execute(
                "INSERT OR IGNORE INTO checkpoints (size, root, note, frontier, time_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (row.size, row.root, row.note, row.frontier, row.time_us),
            )

    def latest_checkpoint(self) -> CheckpointRow | None:
        """The checkpoint of the largest size."""
        row = (
            self._connect()
            .execute(
                "SELECT size, root, note, frontier, time_us FROM checkpoints "
                "ORDER BY size DESC LIMIT 1"
            )
            .fetchone()
        )
        return _checkpoint(row) if row else None

    def checkpoints(self) -> list[CheckpointRow]:
        """Every stored checkpoint, smallest first."""
        rows = (
            self._connect()
            .execute("SELECT size, root, note, frontier, time_us FROM checkpoints ORDER BY size")
            .fetchall()
        )
        return [_checkpoint(r) for r in rows]

    def tree_state(self) -> tuple[int, bytes] | None:
        """The committed tree size and frontier."""
        row = (
            self._connect().execute("SELECT size, frontier FROM tree_state WHERE id = 1").fetchone()
        )
        return (int(row[0]), bytes(row[1])) if row else None

    def find_entry(self, dedupe_key: str) -> EntryRow | None:
        """The entry stored under a dedupe key, if any."""
        row = (
            self._connect()
            .execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE dedupe_key = ?",  # noqa: S608  # constant columns
                (dedupe_key,),
            )
            .fetchone()
        )
        return _entry(row) if row else None

    def count_and_max_seq(self) -> tuple[int, int]:
        """How many entries are stored and the highest seq (-1 when there are none)."""
        row = self._connect().execute("SELECT count(*), max(seq) FROM entries").fetchone()
        return int(row[0]), int(row[1]) if row[1] is not None else -1

    def size(self) -> int:
        """The number of stored entries."""
        row = self._connect().execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0])

    def entries(
        self, start: int = 0, end: int | None = None, *, batch: int = 2000
    ) -> Iterator[EntryRow]:
        """Entries with ``start <= seq < end`` in order, read in batches."""
        conn = self._connect()
        position = start
        while True:
            limit = batch if end is None else min(batch, end - position)
            if limit <= 0:
                return
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq >= ? ORDER BY seq LIMIT ?",  # noqa: S608  # a constant column list
                (position, limit),
            ).fetchall()
            if not rows:
                return
            yield from (_entry(r) for r in rows)
            position = int(rows[-1][0]) + 1

    def select(
        self,
        *,
        thread: str | None = None,
        tool: str | None = None,
        effect: str | None = None,
        kind: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[EntryRow]:
        """Entries matching every filter given, oldest first (or newest first, for a tail)."""
        conditions: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("thread", thread),
            ("tool", tool),
            ("effect", effect),
            ("kind", kind),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if since_us is not None:
            conditions.append("time_us >= ?")
            params.append(since_us)
        if until_us is not None:
            conditions.append("time_us < ?")
            params.append(until_us)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_ENTRY_COLUMNS} FROM entries {where} ORDER BY seq {order}"  # noqa: S608  # see below
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        # Only fixed column names and placeholders are interpolated; values are bound.
        rows = self._connect().execute(sql, params).fetchall()
        return [_entry(r) for r in rows]

    def leaf_hashes(self, end: int | None = None) -> list[bytes]:
        """The stored leaf hashes of entries ``0 .. end-1`` in seq order."""
        sql = "SELECT leaf_hash FROM entries ORDER BY seq"
        params: tuple[Any, ...] = ()
        if end is not None:
            sql = "SELECT leaf_hash FROM entries WHERE seq < ? ORDER BY seq"
            params = (end,)
        return [bytes(r[0]) for r in self._connect().execute(sql, params)]

    def blob(self, ref: str) -> BlobRow | None:
        """One blob by ref."""
        row = (
            self._connect()
            .execute("SELECT ref, salt, content, erased FROM blobs WHERE ref = ?", (ref,))
            .fetchone()
        )
        return _blob(row) if row else None

    def blobs(self) -> Iterator[BlobRow]:
        """Every stored blob."""
        for row in self._connect().execute("SELECT ref, salt, content, erased FROM blobs"):
            yield _blob(row)

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_ENTRY_COLUMNS = "seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, time_us"


def _entry(r: Sequence[Any]) -> EntryRow:
    return EntryRow(int(r[0]), r[1], r[2], bytes(r[3]), bytes(r[4]), r[5], r[6], r[7], int(r[8]))


def _checkpoint(row: Sequence[Any]) -> CheckpointRow:
    return CheckpointRow(int(row[0]), bytes(row[1]), str(row[2]), bytes(row[3]), int(row[4]))


def _blob(row: Sequence[Any]) -> BlobRow:
    return BlobRow(
        ref=str(row[0]),
        salt=bytes(row[1]) if row[1] is not None else None,
        content=bytes(row[2]) if row[2] is not None else None,
        erased=bool(row[3]),
    )
