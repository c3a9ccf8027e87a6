"""The tables of a decision log, on SQLite or PostgreSQL (``docs/log-format.md``).

:class:`LogBackend` reads and writes them through a :class:`~agentfence._storage.database.Database`.
Sequencing happens inside one write transaction that first reads the single ``tree_state``
row under the engine's write lock (SQLite: ``BEGIN IMMEDIATE`` locks the file; PostgreSQL:
``SELECT ... FOR UPDATE`` locks the row), so any number of processes appending to one log
build one ordered tree with no gaps and no duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from agentfence._storage.database import Database, Location, parse_url
from agentfence.errors import LogError

LOG_TABLES = {"meta", "entries", "blobs", "checkpoints", "tree_state"}
"""The tables of a decision log (``docs/log-format.md``)."""


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


@dataclass(frozen=True)
class ServerEntry:
    """What the database needs to sequence one entry: its record's canonical bytes and the
    index columns."""

    record: bytes
    kind: str
    dedupe_key: str | None
    thread: str | None
    tool: str | None
    effect: str | None
    time_us: int

    def __iter__(self) -> Iterator[Any]:
        return iter(
            (
                self.record,
                self.kind,
                self.dedupe_key,
                self.thread,
                self.tool,
                self.effect,
                self.time_us,
            )
        )


@dataclass(frozen=True)
class ServerBatch:
    """What ``agentfence_sequence`` did: each entry's seq and leaf hash (a duplicate's are the
    stored entry's), and the tree state before and after."""

    seqs: list[int]
    leaves: list[bytes]
    duplicates: list[bool]
    old_frontier: bytes
    new_frontier: bytes


class LogTransaction:
    """The writes one append batch makes, inside the engine's write lock."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def begin_batch(
        self, keys: Sequence[str]
    ) -> tuple[tuple[int, bytes] | None, dict[str, tuple[int, bytes]]]:
        """The tree state, read under the write lock, and the dedupe keys already stored:
        where the writer numbers and hashes a batch itself (SQLite)."""
        found: dict[str, tuple[int, bytes]] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            for key, seq, leaf in self._db.execute(_find_sql(len(chunk)), chunk):
                found[key] = (int(seq), bytes(leaf))
        return self.tree_state(), found

    def finish_batch(
        self,
        blobs: Sequence[tuple[str, bytes, bytes]],
        rows: Sequence[EntryRow],
        size: int,
        frontier: bytes,
    ) -> None:
        """Write a batch's blobs and entries and the new tree state (the commit follows)."""
        self.insert_blobs(blobs)
        self.insert_entries(rows)
        self.set_tree_state(size, frontier)

    def tree_state(self) -> tuple[int, bytes] | None:
        """The committed tree size and Merkle frontier, read under the write lock."""
        row = self._db.execute(
            "SELECT size, frontier FROM tree_state WHERE id = 1" + self._db.dialect.lock_suffix  # noqa: S608  # a constant
        ).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def set_tree_state(self, size: int, frontier: bytes) -> None:
        """Store the tree size and frontier after this batch."""
        self._db.execute(
            "INSERT INTO tree_state (id, size, frontier) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier",
            (size, frontier),
        )

    def advance_tree_state(self, old_size: int, size: int, frontier: bytes) -> bool:
        """Store the tree size and frontier after this batch if the stored size is still
        ``old_size``; False (nothing changed) when another writer moved the tree on or there
        is no tree state yet."""
        cursor = self._db.execute(
            "UPDATE tree_state SET size = ?, frontier = ? WHERE id = 1 AND size = ?",
            (size, frontier, old_size),
        )
        return cursor.rowcount == 1

    def insert_entry_tuples(self, rows: Sequence[Sequence[object]]) -> None:
        """Insert entries given as tuples in :class:`EntryRow`'s field order."""
        self._db.executemany(_INSERT_ENTRIES, rows)

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        """Insert entries (their seqs follow the tree state)."""
        self.insert_entry_tuples([astuple(r) for r in rows])

    def insert_blobs(self, blobs: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Insert blobs (ref, salt, content); a ref already stored is left as it is."""
        self._db.executemany(
            "INSERT INTO blobs (ref, salt, content) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            blobs,
        )

    def erase_blob(self, ref: str) -> bool:
        """Erase a blob's content and salt; False when no such blob is stored."""
        cur = self._db.execute(
            "UPDATE blobs SET content = NULL, salt = NULL, erased = 1 WHERE ref = ?", (ref,)
        )
        return cur.rowcount == 1


class LogBackend:
    """A decision log's tables in one SQLite file or one PostgreSQL database."""

    def __init__(
        self, url: str | Path | Location, *, create: bool = True, readonly: bool = False
    ) -> None:
        self.location = parse_url(url)
        self.db = Database(self.location, readonly=readonly)
        if not create:
            self.db.require(LOG_TABLES, "decision log")
        if not readonly:
            try:
                self.db.create_schema(self.db.dialect.log_schema)
            except self.db.errors as exc:
                raise LogError(f"cannot open the decision log {self.name!r}: {exc}") from exc

    @property
    def name(self) -> str:
        """How messages name this log (no password)."""
        return self.location.display

    @property
    def path(self) -> Path:
        """The SQLite file (PostgreSQL logs have none)."""
        if self.location.path is None:
            raise LogError(f"the decision log {self.name} is stored in PostgreSQL, not a file")
        return self.location.path

    @contextmanager
    def transaction(self) -> Iterator[LogTransaction]:
        """A write transaction holding the engine's write lock for sequencing."""
        with self.db.transaction() as db:
            yield LogTransaction(db)

    def append_on_server(
        self, entries: Sequence[ServerEntry], blobs: Sequence[tuple[int, str, bytes, bytes]]
    ) -> ServerBatch:
        """Sequence a batch in the database, commit it and make it durable: one ``CALL
        agentfence_sequence``, one round trip, outside any transaction (the procedure
        commits itself). The locks are held for its sequencing only, not for the WAL flush.

        ``blobs`` are (index of the owning entry, ref, salt, content); an entry's blobs are
        stored only if the entry is (not if it was a duplicate).
        """
        columns = list(zip(*entries, strict=True)) if entries else [()] * 7
        owners = [b[0] + 1 for b in blobs]  # SQL arrays count from 1
        row = self.db.call(
            "CALL agentfence_sequence(?::bytea[], ?::text[], ?::text[], ?::text[], ?::text[], "
            "?::text[], ?::bigint[], ?::int[], ?::text[], ?::bytea[], ?::bytea[], "
            "NULL, NULL, NULL, NULL, NULL)",
            (
                *(list(c) for c in columns),
                owners,
                [b[1] for b in blobs],
                [b[2] for b in blobs],
                [b[3] for b in blobs],
            ),
            binary=True,
        ).fetchone()
        seqs, leaves, duplicates, old, new = row
        return ServerBatch(
            [int(s) for s in seqs],
            [bytes(h) for h in leaves],
            [bool(d) for d in duplicates],
            bytes(old),
            bytes(new),
        )

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read-only transaction: this thread's reads inside it all see one snapshot."""
        conn = self.db.conn()
        self.db.dialect.begin_snapshot(conn)
        try:
            yield
        finally:
            # Nothing was written; a broken connection is replaced on its next use.
            with suppress(*self.db.errors):
                conn.execute("ROLLBACK")

    def get_meta(self) -> dict[str, str]:
        """All meta rows."""
        return {str(k): str(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def set_meta(self, values: dict[str, str]) -> None:
        """Insert meta rows that are not set yet (meta never changes once written)."""
        with self.db.transaction() as db:
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                list(values.items()),
            )

    def insert_checkpoint(self, row: CheckpointRow) -> None:
        """Store a signed checkpoint (a second one of the same size is ignored)."""
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO checkpoints (size, root, note, frontier, time_us) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (row.size, row.root, row.note, row.frontier, row.time_us),
            )

    def latest_checkpoint(self) -> CheckpointRow | None:
        """The checkpoint of the largest size."""
        row = self.db.execute(
            "SELECT size, root, note, frontier, time_us FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return _checkpoint(row) if row else None

    def checkpoints(self) -> list[CheckpointRow]:
        """Every stored checkpoint, smallest first."""
        rows = self.db.execute(
            "SELECT size, root, note, frontier, time_us FROM checkpoints ORDER BY size"
        ).fetchall()
        return [_checkpoint(r) for r in rows]

    def tree_state(self) -> tuple[int, bytes] | None:
        """The committed tree size and frontier."""
        row = self.db.execute("SELECT size, frontier FROM tree_state WHERE id = 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def find_entry(self, dedupe_key: str) -> EntryRow | None:
        """The entry stored under a dedupe key, if any."""
        row = self.db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE dedupe_key = ?",  # noqa: S608  # constant columns
            (dedupe_key,),
        ).fetchone()
        return _entry(row) if row else None

    def latest_of_kind(self, kind: str, before: int) -> EntryRow | None:
        """The last entry of ``kind`` with ``seq < before``, if any."""
        row = self.db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE kind = ? AND seq < ? "  # noqa: S608  # constant columns
            "ORDER BY seq DESC LIMIT 1",
            (kind, before),
        ).fetchone()
        return _entry(row) if row else None

    def count_and_max_seq(self) -> tuple[int, int]:
        """How many entries are stored and the highest seq (-1 when there are none)."""
        row = self.db.execute("SELECT count(*), max(seq) FROM entries").fetchone()
        return int(row[0]), int(row[1]) if row[1] is not None else -1

    def size(self) -> int:
        """The number of stored entries."""
        row = self.db.execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0])

    def entries(
        self, start: int = 0, end: int | None = None, *, batch: int = 2000
    ) -> Iterator[EntryRow]:
        """Entries with ``start <= seq < end`` in order, read in batches."""
        position = start
        while True:
            limit = batch if end is None else min(batch, end - position)
            if limit <= 0:
                return
            rows = self.db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE seq >= ? ORDER BY seq LIMIT ?",  # noqa: S608  # a constant column list
                (position, limit),
            ).fetchall()
            if not rows:
                return
            yield from (_entry(r) for r in rows)
            position = int(rows[-1][0]) + 1

    def select(self, **filters: Unpack[EntryFilters]) -> list[EntryRow]:
        """Entries matching every filter given, oldest first (or newest first, for a tail)."""
        sql, params = select_sql(**filters)
        return [_entry(r) for r in self.db.execute(sql, params).fetchall()]

    def leaf_hashes(self, end: int | None = None) -> list[bytes]:
        """The stored leaf hashes of entries ``0 .. end-1`` in seq order."""
        if end is None:
            cursor = self.db.execute("SELECT leaf_hash FROM entries ORDER BY seq")
        else:
            cursor = self.db.execute(
                "SELECT leaf_hash FROM entries WHERE seq < ? ORDER BY seq", (end,)
            )
        return [bytes(r[0]) for r in cursor]

    def blob(self, ref: str) -> BlobRow | None:
        """One blob by ref."""
        row = self.db.execute(
            "SELECT ref, salt, content, erased FROM blobs WHERE ref = ?", (ref,)
        ).fetchone()
        return _blob(row) if row else None

    def blobs(self) -> Iterator[BlobRow]:
        """Every stored blob."""
        for row in self.db.execute("SELECT ref, salt, content, erased FROM blobs").fetchall():
            yield _blob(row)

    def close(self) -> None:
        """Close every connection."""
        self.db.close()


_ENTRY_COLUMNS = "seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, time_us"
_INSERT_ENTRIES = f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608  # a constant column list


class EntryFilters(TypedDict, total=False):
    """The filters of :meth:`LogBackend.select`: an index column's value, a time range,
    how many and in which order."""

    thread: str | None
    tool: str | None
    effect: str | None
    kind: str | None
    since_us: int | None
    until_us: int | None
    limit: int | None
    newest_first: bool


def select_sql(**filters: Unpack[EntryFilters]) -> tuple[str, list[Any]]:
    """The query :meth:`LogBackend.select` runs, and its parameters.

    Only fixed column names and placeholders are interpolated; values are bound.
    """
    conditions: list[str] = []
    params: list[Any] = []
    for column in ("thread", "tool", "effect", "kind"):
        value = filters.get(column)
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    since_us, until_us = filters.get("since_us"), filters.get("until_us")
    limit = filters.get("limit")
    if since_us is not None:
        conditions.append("time_us >= ?")
        params.append(since_us)
    if until_us is not None:
        conditions.append("time_us < ?")
        params.append(until_us)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    order = "DESC" if filters.get("newest_first") else "ASC"
    sql = f"SELECT {_ENTRY_COLUMNS} FROM entries {where} ORDER BY seq {order}"  # noqa: S608  # see above
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _find_sql(count: int) -> str:
    """The entries stored under ``count`` dedupe keys (only placeholders are interpolated)."""
    marks = ",".join("?" * count)
    return f"SELECT dedupe_key, seq, leaf_hash FROM entries WHERE dedupe_key IN ({marks})"  # noqa: S608


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


def copy_log(source: str | Path | Location, target: str | Path | Location) -> int:
    """Copy a decision log, byte for byte, from one store into a new, empty one.

    Reads one snapshot of ``source`` (a fence may keep appending) and writes every table
    the verifier reads: meta, entries, blobs (erased ones stay erased), checkpoints and the
    tree state. Returns the number of entries copied. An auditor takes a PostgreSQL log
    home as a SQLite file this way; the copy verifies exactly as the original does.
    """
    reader = LogBackend(source, create=False, readonly=True)
    writer: LogBackend | None = None
    try:
        with reader.snapshot():
            meta = reader.get_meta()
            if not meta:
                raise LogError(f"{reader.name} holds no decision log (its meta table is empty)")
            writer = LogBackend(target)
            if writer.get_meta() or writer.size():
                raise LogError(
                    f"{writer.name} already holds a decision log; copy into a new file or an "
                    "empty database"
                )
            writer.set_meta(meta)
            copied = 0
            batch: list[EntryRow] = []
            for row in reader.entries(batch=5000):
                batch.append(row)
                if len(batch) == 5000:
                    copied += _copy_entries(writer, batch)
            copied += _copy_entries(writer, batch)
            with writer.db.transaction() as db:
                db.executemany(
                    "INSERT INTO blobs (ref, salt, content, erased) VALUES (?, ?, ?, ?)",
                    [(b.ref, b.salt, b.content, int(b.erased)) for b in reader.blobs()],
                )
            for checkpoint in reader.checkpoints():
                writer.insert_checkpoint(checkpoint)
            state = reader.tree_state()
            if state is not None:
                with writer.transaction() as tx:
                    tx.set_tree_state(*state)
        return copied
    finally:
        reader.close()
        if writer is not None:
            writer.close()


def _copy_entries(writer: LogBackend, rows: list[EntryRow]) -> int:
    count = len(rows)
    if rows:
        with writer.transaction() as tx:
            tx.insert_entries(rows)
        rows.clear()
    return count
