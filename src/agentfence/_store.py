"""Where a decision log is stored: one SQLite file, or one PostgreSQL database.

A log URL names the place: ``sqlite:///PATH`` (or a plain path) or ``postgresql://...``.
:class:`Database` hands each thread its own connection to it and runs SQL written once, with
``?`` placeholders, on either engine; the two dialects (:mod:`agentfence._sqlite`,
:mod:`agentfence._postgres`) differ only in how they connect, create the tables, begin a
write transaction and lock the tree for sequencing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from agentfence.errors import AgentfenceError, ConfigurationError, LogError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Location:
    """A parsed log URL: a SQLite file or a PostgreSQL connection string."""

    engine: str
    path: Path | None = None
    dsn: str | None = None

    @property
    def url(self) -> str:
        """The URL (with a PostgreSQL password, if any)."""
        if self.engine == SQLITE:
            return f"sqlite:///{self.path}"
        return str(self.dsn)

    @property
    def display(self) -> str:
        """How messages name the log: the file, or the URL without its password."""
        if self.engine == SQLITE:
            return str(self.path)
        parts = urlsplit(str(self.dsn))
        if parts.password is None:
            return str(self.dsn)
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def stem(self) -> str:
        """A short name for the default origin: the file's stem, or the database's name."""
        if self.engine == SQLITE:
            return Path(str(self.path)).stem
        return urlsplit(str(self.dsn)).path.lstrip("/") or "postgres"


def parse_url(url: str | Path | Location) -> Location:
    """Parse a log URL: ``sqlite:///PATH``, a plain path, or ``postgresql://...``."""
    if isinstance(url, Location):
        return url
    text = str(url)
    if text.startswith("sqlite:///"):
        return Location(SQLITE, path=Path(text[len("sqlite:///") :]))
    if text.startswith(("postgresql://", "postgres://")):
        return Location(POSTGRESQL, dsn=text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"log URL {text!r}: unsupported scheme {scheme!r}; use sqlite:///PATH or "
            "postgresql://USER@HOST/DATABASE"
        )
    return Location(SQLITE, path=Path(text))


class Cursor(Protocol):
    """The part of a DB-API cursor the log uses."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Dialect(Protocol):
    """What differs between the engines a log can be stored in."""

    engine: str
    driver_errors: tuple[type[BaseException], ...]
    lock_suffix: str
    """Appended to the read of the tree state that sequencing starts from (a row lock)."""
    sequences_on_server: bool
    """Whether appends number and hash entries in the database (``agentfence_append``)."""
    log_schema: str
    """The decision log's tables (``docs/log-format.md``)."""

    def connect(self, location: Location, *, readonly: bool) -> Any:
        """A new connection in autocommit mode."""
        ...

    def create_schema(self, conn: Any, schema: str) -> None:
        """Create the tables (idempotent; safe with several processes starting at once)."""
        ...

    def begin(self, conn: Any) -> None:
        """Begin a write transaction."""
        ...

    def begin_snapshot(self, conn: Any) -> None:
        """Begin a read-only transaction that sees one snapshot throughout."""
        ...

    def execute(
        self, conn: Any, sql: str, params: Sequence[Any], *, binary: bool = False
    ) -> Cursor:
        """Run one statement written with ``?`` placeholders (``binary``: binary results)."""
        ...

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""
        ...

    def stream(self, conn: Any, sql: str, params: Sequence[Any]) -> Cursor:
        """Run a query whose rows are fetched in batches (inside a snapshot)."""
        ...

    def tables(self, conn: Any) -> set[str]:
        """The names of the tables the connection sees."""
        ...

    def usable(self, conn: Any) -> bool:
        """False once the connection is closed or broken (it is then replaced)."""
        ...

    def idle(self, conn: Any) -> bool:
        """Usable and in no transaction: fit to hand to another thread."""
        ...

    def hint(self, exc: BaseException) -> str:
        """What to do about a driver error, if the dialect knows ("" otherwise)."""
        ...

    def pipeline(self, conn: Any) -> AbstractContextManager[Any]:
        """Batch the statements run inside into as few round trips as the engine allows."""
        ...


def dialect(location: Location) -> Dialect:
    """The dialect of a location's engine (PostgreSQL's imports psycopg)."""
    if location.engine == SQLITE:
        from agentfence._sqlite import SQLITE_DIALECT

        return SQLITE_DIALECT
    from agentfence._postgres import postgres_dialect

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
            conns = [conn for conn, _ in self._owned.values()] + self._idle
            self._owned, self._idle = {}, []
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
