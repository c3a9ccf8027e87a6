"""Where a decision log is stored: one SQLite file, or one PostgreSQL database.

A log URL names the place: ``sqlite:///PATH`` (or a plain path) or ``postgresql://...``.
:class:`Database` hands each thread its own connection to it and runs SQL written once, with
``?`` placeholders, on either engine; the two dialects (:mod:`agentfence._storage.sqlite`,
:mod:`agentfence._storage.postgres`) differ only in how they connect, create the tables, begin a
write transaction and lock the tree for sequencing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

from agentfence._storage.dialect import POSTGRESQL, SQLITE, Cursor, Dialect, Location, parse_url
from agentfence.errors import AgentfenceError, LogError

__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "Cursor",
    "Database",
    "Dialect",
    "Location",
    "MemoryDatabase",
    "dialect",
    "driver_errors",
    "parse_url",
]


def dialect(location: Location) -> Dialect:
    """The dialect of a location's engine (PostgreSQL's imports psycopg)."""
    if location.engine == SQLITE:
        from agentfence._storage.sqlite import SQLITE_DIALECT

        return SQLITE_DIALECT
    from agentfence._storage.postgres import postgres_dialect

    return postgres_dialect()


def driver_errors() -> tuple[type[BaseException], ...]:
    """The database drivers' error classes (psycopg's only when it is installed)."""
    import sqlite3

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - without the postgres extra
        return errors
    return (*errors, psycopg.Error)


class Database:
    """Connections to one stored log: each thread has its own while it lives.

    A connection whose thread has ended goes back to a small idle pool for the next new
    thread (LangGraph's ToolNode runs each step on a fresh thread, so without the pool every
    tool call would cost a connection). A broken connection is replaced on its next use,
    and a transaction whose ``BEGIN`` fails because the connection died (a restart, a
    failover, a terminated session) begins again once on a new one: nothing was sent yet.

    SQL is written once with ``?`` placeholders; the dialect adapts it.
    """

    IDLE_KEPT = 4
    """How many connections of ended threads are kept for reuse."""

    def __init__(self, location: Location, *, readonly: bool = False) -> None:
        self.location = location
        self.readonly = readonly
        self.dialect = dialect(location)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._owned: dict[int, tuple[Any, weakref.ref[threading.Thread]]] = {}
        self._idle: list[Any] = []
        self._dedicated: list[Any] = []

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's error classes."""
        return self.dialect.driver_errors

    def conn(self) -> Any:
        """This thread's connection (a new or idle one if it has none or it broke)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            if self.dialect.usable(conn):
                return conn
            self._discard(conn)
        conn = self._checkout()
        self._local.conn = conn
        return conn

    def dedicated(self) -> Any:
        """A new connection of its own, never pooled or handed to a thread (closed by
        :meth:`close`); its user runs statements on it with :meth:`using`."""
        conn = self.dialect.connect(self.location, readonly=self.readonly)
        with self._lock:
            self._dedicated.append(conn)
        return conn

    @contextmanager
    def using(self, conn: Any) -> Iterator[None]:
        """Run this thread's statements on ``conn`` inside the body (its callers take turns
        on it under a lock of their own).

        A log's commits all go through one dedicated connection whichever thread leads
        them: its page cache stays warm, where each thread's own connection would find its
        cache stale after every commit made on another and read the pages again.
        """
        previous = getattr(self._local, "conn", None)
        self._local.conn = conn
        try:
            yield
        finally:
            self._local.conn = previous

    def _checkout(self) -> Any:
        conn = None
        with self._lock:
            for key, (owned, owner) in list(self._owned.items()):
                thread = owner()
                if thread is None or not thread.is_alive():
                    del self._owned[key]
                    self._idle.append(owned)
            while self._idle and conn is None:
                candidate = self._idle.pop()
                if self.dialect.idle(candidate):
                    conn = candidate
                else:
                    _close(candidate)
            while len(self._idle) > self.IDLE_KEPT:
                _close(self._idle.pop(0))
        if conn is None:
            conn = self.dialect.connect(self.location, readonly=self.readonly)
        with self._lock:
            self._owned[id(conn)] = (conn, weakref.ref(threading.current_thread()))
        return conn

    def _discard(self, conn: Any) -> None:
        with self._lock:
            self._owned.pop(id(conn), None)
        _close(conn)
        self._local.conn = None

    def _dead(self, conn: Any, exc: BaseException) -> bool:
        """Whether ``exc`` came from a connection that died, which is then dropped.

        The idle ones go too: what ended one (a restart, a failover) most likely ended them.
        """
        if isinstance(exc, self.errors) and not self.dialect.usable(conn):
            self._discard(conn)
            with self._lock:
                idle, self._idle = self._idle, []
            for other in idle:
                _close(other)
            return True
        return False

    def describe(self, exc: BaseException) -> str:
        """A driver error in one line, with what to do when the connection was lost."""
        if isinstance(exc, AgentfenceError):  # ours: already says what to do
            return " ".join(str(exc).split())
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else type(exc).__name__
        hint = self.dialect.hint(exc)
        return f"{text} ({hint})" if hint else text

    def require(self, tables: set[str], what: str) -> None:
        """Raise a :class:`LogError` naming the place unless it holds ``tables`` (for
        readers, who create nothing: a mistyped path or URL is an error, not a new log)."""
        where = self.location.display
        if self.location.engine == SQLITE and not Path(str(self.location.path)).is_file():
            raise LogError(
                f"no {what} at {where!r}; check the path (a log is created by a fence with "
                "log='sqlite:///PATH')"
            )
        missing = tables - self.dialect.tables(self.conn())
        if missing:
            raise LogError(
                f"no {what} in {where}: it has no {', '.join(sorted(missing))} table; check "
                "the path or URL (a fence creates the tables; in PostgreSQL they are in the "
                "schema 'agentfence' unless the URL sets a search_path)"
            )

    def create_schema(self, schema: str) -> None:
        """Create the tables a component keeps here (idempotent)."""
        self.dialect.create_schema(self.conn(), schema)

    def execute(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> Cursor:
        """Run one statement on this thread's connection (``binary``: ask for results in the
        engine's binary format where it has one).

        A read outside a transaction that fails because the connection died is run once
        more on a new connection; nothing else is retried.
        """
        conn = self.conn()
        try:
            return self.dialect.execute(conn, sql, params, binary=binary)
        except BaseException as exc:
            retry = sql.lstrip().upper().startswith("SELECT") and not getattr(
                self._local, "in_transaction", False
            )
            if not (retry and self._dead(conn, exc)):
                raise
        return self.dialect.execute(self.conn(), sql, params, binary=binary)

    def call(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> Cursor:
        """Run one statement that commits by itself (a procedure's ``CALL``), outside any
        transaction. It is never run twice: a connection the server ended while it sat idle
        (a restart, a terminated session) is replaced before anything is sent on it, and a
        failure once it is sent is raised."""
        conn = self.conn()
        if not self.dialect.idle(conn):
            self._discard(conn)
            conn = self.conn()
        return self.dialect.execute(conn, sql, params, binary=binary)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per row of parameters."""
        if rows:
            self.dialect.executemany(self.conn(), sql, rows)

    def pipeline(self) -> AbstractContextManager[Any]:
        """Statements inside are sent together where the engine can (PostgreSQL's
        pipeline mode); a result read inside waits for what was sent before it."""
        return self.dialect.pipeline(self.conn())

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction on this thread's connection; rolled back if the body raises."""
        conn = self.conn()
        try:
            self.dialect.begin(conn)
        except BaseException as exc:
            if not self._dead(conn, exc):
                raise
            conn = self.conn()
            self.dialect.begin(conn)
        self._local.in_transaction = True
        try:
            yield self
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except Exception:  # the connection broke: it is replaced on next use
                self._discard(conn)
            raise
        else:
            if self.dialect.idle(conn):
                return  # the body committed as its last statement (append_on_server does)
            try:
                conn.execute("COMMIT")
            except BaseException:
                # Whether a failed COMMIT took effect is unknown to the client: drop the
                # connection rather than reuse it in an unknown state.
                self._discard(conn)
                raise
        finally:
            self._local.in_transaction = False

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            conns = [conn for conn, _ in self._owned.values()] + self._idle + self._dedicated
            self._owned, self._idle, self._dedicated = {}, [], []
        for conn in conns:
            _close(conn)
        self._local = threading.local()


def _close(conn: Any) -> None:
    with suppress(Exception):  # a broken connection may fail to close; it is dropped
        conn.close()


class MemoryDatabase(Database):
    """One in-memory SQLite database shared by every thread (writes are serialised)."""

    def __init__(self) -> None:
        super().__init__(Location(SQLITE, path=Path(":memory:")))
        import sqlite3

        self._memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._memory_lock = threading.RLock()

    def conn(self) -> Any:
        """The one shared connection."""
        return self._memory

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction, one thread at a time."""
        with self._memory_lock, super().transaction() as db:
            yield db

    def close(self) -> None:
        """Close the database (its contents are gone)."""
        self._memory.close()
