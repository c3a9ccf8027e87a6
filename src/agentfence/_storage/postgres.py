"""The PostgreSQL dialect of the decision log's storage (extra ``agentfence[postgres]``).

The only module that imports psycopg. One log per database (or per schema, chosen with the
URL's ``options=-csearch_path%3DNAME``): the same tables as SQLite, with ``BYTEA`` for bytes
and ``BIGINT`` for integers.

Sequencing: every append batch is one ``CALL agentfence_sequence(...)``, outside any
transaction, so the procedure commits by itself. It takes a transaction-scoped advisory lock
keyed on the schema's name (writers queue there), then ``SELECT ... FROM tree_state WHERE id
= 1 FOR UPDATE``; that row lock serialises sequencing across every process and host writing
to the log. It numbers the entries from the stored size, builds each entry's bytes around
the record bytes the writer sent, hashes them (RFC 6962 leaves), extends the Merkle frontier
and stores it all. That transaction commits asynchronously, so the locks are released as
soon as its commit record is in the WAL, not after the WAL flush; a second transaction then
writes a WAL record (a transactional logical message) and commits synchronously when the
CALL ends, and its flush covers the first commit. The CALL returns only then: one round
trip, and an entry is durable before its append returns. The writer checks the procedure's
work: from the frontier it started from, it rebuilds the entries, leaf hashes and new
frontier itself and refuses receipts that differ (as in SQLite, the stored frontier is
checked by the tail check on open, and everything by the verifier). Readers never wait.
Tables are created under another advisory lock, so several workers starting at once do not
race each other's ``CREATE TABLE``.

Triggers reject UPDATE, DELETE and TRUNCATE of entries and checkpoints and any change to a
blob but its erasure, as in SQLite: a guard rail, not the protection (that is the tree).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager, suppress
from functools import lru_cache
from typing import Any

from agentfence._merkle import FrontierState
from agentfence._storage.dialect import POSTGRESQL, Cursor, Location
from agentfence.errors import ConfigurationError, LogError

try:
    import psycopg
except ImportError:  # pragma: no cover - reported when a postgresql:// log is opened
    psycopg = None  # type: ignore[assignment]

SCHEMA = "agentfence"
"""The PostgreSQL schema agentfence's tables are in when the URL sets no search_path."""

_SCHEMA_LOCK = 0x61676E74_66656E63 & 0x7FFFFFFFFFFFFFFF  # "agntfenc": one advisory lock id

_EMPTY_FRONTIER = FrontierState(0, ()).to_bytes().hex()

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    body BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL,
    thread TEXT,
    tool TEXT,
    effect TEXT,
    time_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_thread ON entries (thread, seq);
CREATE INDEX IF NOT EXISTS entries_thread_kind ON entries (thread, kind, seq);
CREATE INDEX IF NOT EXISTS entries_tool ON entries (tool, seq);
CREATE INDEX IF NOT EXISTS entries_kind ON entries (kind, seq);
CREATE TABLE IF NOT EXISTS blobs (
    ref TEXT PRIMARY KEY,
    salt BYTEA,
    content BYTEA,
    erased INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    frontier BYTEA NOT NULL,
    time_us BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS tree_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
-- The row exists from the start, so the first appenders lock it like every later one.
INSERT INTO tree_state (id, size, frontier) VALUES (1, 0, '\\xEMPTY_FRONTIER')
    ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION agentfence_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'agentfence: % is append-only', TG_TABLE_NAME; END $$;
CREATE OR REPLACE FUNCTION agentfence_blob_erase_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ref IS DISTINCT FROM OLD.ref OR NEW.content IS NOT NULL OR NEW.salt IS NOT NULL
       OR NEW.erased <> 1 THEN
        RAISE EXCEPTION 'agentfence: a blob can only be erased';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER entries_no_update BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION agentfence_append_only();
CREATE OR REPLACE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION agentfence_append_only();
CREATE OR REPLACE TRIGGER checkpoints_no_update BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION agentfence_append_only();
CREATE OR REPLACE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION agentfence_append_only();
CREATE OR REPLACE TRIGGER blobs_no_delete BEFORE DELETE ON blobs
    FOR EACH ROW EXECUTE FUNCTION agentfence_append_only();
CREATE OR REPLACE TRIGGER blobs_no_truncate BEFORE TRUNCATE ON blobs
    FOR EACH STATEMENT EXECUTE FUNCTION agentfence_append_only();
CREATE OR REPLACE TRIGGER blobs_erase_only BEFORE UPDATE ON blobs
    FOR EACH ROW EXECUTE FUNCTION agentfence_blob_erase_only();
CREATE OR REPLACE PROCEDURE agentfence_sequence(
    records bytea[], kinds text[], keys text[], threads text[], tools text[], effects text[],
    times bigint[], blob_owners int[], blob_refs text[], blob_salts bytea[],
    blob_contents bytea[],
    INOUT seqs bigint[], INOUT leaves bytea[], INOUT duplicates boolean[],
    INOUT old_frontier bytea, INOUT new_frontier bytea
) LANGUAGE plpgsql AS $$
-- Sequence one batch of entries on the server, under the log's locks: number them from
-- the tree state, build each entry's bytes around its canonical record bytes (as
-- records.entry_bytes_from does), hash it as an RFC 6962 leaf, extend the Merkle frontier,
-- and store entries, blobs and the new tree state. The writer recomputes all of it from
-- old_frontier and its own records after the commit, and refuses receipts that differ.
--
-- Called with CALL outside a transaction block, so it commits itself: the sequencing
-- transaction commits asynchronously, and the locks are released as soon as its commit
-- record is in the WAL, not after the WAL flush. A second transaction then writes a WAL
-- record (a transactional logical message) and is committed synchronously when the CALL
-- ends; its flush covers the first commit, so the CALL returns only once the entries are
-- durable. Whoever sees the entries before that flush and builds on them is durable only
-- with them: the WAL is flushed in order.
DECLARE
    n_size bigint;
    bits bigint;
    stack bytea[] := '{}';
    body bytea;
    leaf bytea;
    node bytea;
    hit record;
    stored boolean[] := '{}';
BEGIN
    COMMIT;  -- the CALL's own transaction: the next one starts at the level set here
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(1634625140, hashtext(current_schema()));
    SELECT t.size, t.frontier INTO n_size, old_frontier FROM tree_state t WHERE t.id = 1 FOR UPDATE;
    FOR i IN 0 .. (length(old_frontier) - 8) / 32 - 1 LOOP
        stack := stack || substring(old_frontier FROM 9 + 32 * i FOR 32);
    END LOOP;
    seqs := '{}'; leaves := '{}'; duplicates := '{}';
    FOR i IN 1 .. coalesce(array_length(records, 1), 0) LOOP
        IF keys[i] IS NOT NULL THEN
            SELECT e.seq, e.leaf_hash INTO hit FROM entries e WHERE e.dedupe_key = keys[i];
            IF FOUND THEN
                seqs := seqs || hit.seq; leaves := leaves || hit.leaf_hash;
                duplicates := duplicates || true; stored := stored || false;
                CONTINUE;
            END IF;
        END IF;
        body := convert_to('{"format":"agentfence.entry/v1","record":', 'UTF8') || records[i]
            || convert_to(',"seq":' || n_size::text || '}', 'UTF8');
        leaf := sha256('\\x00'::bytea || body);
        INSERT INTO entries (seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, time_us)
            VALUES (n_size, kinds[i], keys[i], body, leaf, threads[i], tools[i], effects[i],
                    times[i]);
        node := leaf;
        bits := n_size;
        WHILE bits & 1 = 1 LOOP
            node := sha256('\\x01'::bytea || stack[array_length(stack, 1)] || node);
            stack := stack[1 : array_length(stack, 1) - 1];
            bits := bits >> 1;
        END LOOP;
        stack := stack || node;
        seqs := seqs || n_size; leaves := leaves || leaf;
        duplicates := duplicates || false; stored := stored || true;
        n_size := n_size + 1;
    END LOOP;
    INSERT INTO blobs (ref, salt, content)
        SELECT b.ref, b.salt, b.content
        FROM unnest(blob_owners, blob_refs, blob_salts, blob_contents)
            AS b(owner, ref, salt, content)
        WHERE stored[b.owner]
        ON CONFLICT DO NOTHING;
    new_frontier := int8send(n_size) || coalesce(
        (SELECT string_agg(h, ''::bytea ORDER BY n) FROM unnest(stack) WITH ORDINALITY AS s(h, n)),
        ''::bytea
    );
    UPDATE tree_state SET size = n_size, frontier = new_frontier WHERE id = 1;
    COMMIT;
    PERFORM pg_logical_emit_message(true, 'agentfence', 'durable');
END $$;
""".replace("EMPTY_FRONTIER", _EMPTY_FRONTIER)


@lru_cache(maxsize=256)
def _adapt(sql: str, binary: bool = False) -> str:
    # SQL is written with ``?`` placeholders; psycopg takes ``%s`` and reads ``%`` as a
    # placeholder mark, so a literal ``%`` would be misread: the shared SQL has none.
    # ``%b`` sends a parameter in PostgreSQL's binary format: arrays of bytes and text then
    # need no escaping (in the text format, escaping a batch's arrays cost the writer more
    # CPU than the rest of the call).
    if "%" in sql:
        raise ValueError(f"SQL shared between engines must not contain '%': {sql!r}")
    return sql.replace("?", "%b" if binary else "%s")


class PostgresDialect:
    """PostgreSQL through psycopg 3: autocommit connections, row lock for sequencing."""

    engine = POSTGRESQL
    lock_suffix = " FOR UPDATE"
    sequences_on_server = True
    """Appends call agentfence_sequence: the locks are held for its run only."""
    log_schema = LOG_SCHEMA

    def __init__(self) -> None:
        self.driver_errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def connect(self, location: Location, *, readonly: bool) -> Any:
        """A connection in autocommit mode (transactions are begun explicitly)."""
        try:
            conn = psycopg.connect(str(location.dsn), autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LogError(
                f"cannot connect to the decision log {location.display}: {first}; check "
                "that PostgreSQL is running and reachable and that the URL is right"
            ) from exc
        if "search_path" not in str(location.dsn):
            self._use_own_schema(conn, create=not readonly)
        if readonly:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    @staticmethod
    def _use_own_schema(conn: Any, *, create: bool) -> None:
        # agentfence's tables live in their own schema unless the URL picks one: a database
        # shared with LangGraph's PostgresSaver (which has a table named checkpoints too)
        # keeps the two apart.
        exists = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCHEMA,)).fetchone()
        if create and not (exists and exists[0]):
            with suppress(psycopg.errors.UniqueViolation):  # another worker created it first
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"SET search_path TO {SCHEMA}")

    def create_schema(self, conn: Any, schema: str) -> None:
        """Create the tables once, under an advisory lock.

        When every table exists already nothing runs: ``CREATE OR REPLACE TRIGGER`` locks
        its table against writes, and would deadlock with workers appending meanwhile.
        """
        tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema)
        routines = re.findall(r"CREATE OR REPLACE (?:FUNCTION|PROCEDURE) (\w+)\(", schema)
        if not self._all_exist(conn, tables) or not self._routines_exist(conn, routines):
            with conn.transaction():
                conn.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                if not self._all_exist(conn, tables) or not self._routines_exist(conn, routines):
                    conn.execute(schema)
        self.check_columns(conn, schema)

    @staticmethod
    def _all_exist(conn: Any, tables: Sequence[str]) -> bool:
        row = conn.execute(
            "SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest(%s::text[]) AS t",
            (list(tables),),
        ).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _routines_exist(conn: Any, names: Sequence[str]) -> bool:
        for name in names:
            row = conn.execute("SELECT to_regproc(%s) IS NOT NULL", (name,)).fetchone()
            if not (row and row[0]):
                return False
        return True

    @staticmethod
    def check_columns(conn: Any, schema: str) -> None:
        """Refuse tables of the same names that another program made (other columns)."""
        for table, body in re.findall(
            r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", schema, re.S
        ):
            wanted = {line.split()[0] for line in body.strip().splitlines()}
            rows = conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = current_schema()",
                (table,),
            ).fetchall()
            missing = wanted - {r[0] for r in rows}
            if missing:
                raise LogError(
                    f"the table {table!r} in PostgreSQL schema "
                    f"{conn.execute('SELECT current_schema()').fetchone()[0]!r} is not "
                    f"agentfence's (it has no {', '.join(sorted(missing))} column): another "
                    "program uses that name. Give agentfence a schema of its own: leave "
                    "search_path out of the URL (agentfence then uses the schema "
                    f"{SCHEMA!r}), or set options=-csearch_path%3DNAME to an empty schema"
                )

    def begin(self, conn: Any) -> None:
        """A READ COMMITTED transaction: each statement sees what committed before it."""
        conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")

    def begin_snapshot(self, conn: Any) -> None:
        """One snapshot for every read of the transaction, however long it takes."""
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def execute(
        self, conn: Any, sql: str, params: Sequence[Any], *, binary: bool = False
    ) -> Cursor:
        """Run one statement written with ``?`` placeholders (``binary``: parameters and
        results in PostgreSQL's binary format, cheaper for arrays of bytes; the SQL then
        casts each parameter to its type)."""
        cursor: Cursor = conn.execute(_adapt(sql, binary), params or None, binary=binary)
        return cursor

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per row (psycopg pipelines them: one round trip)."""
        with conn.cursor() as cursor:
            cursor.executemany(_adapt(sql), rows)

    def stream(self, conn: Any, sql: str, params: Sequence[Any]) -> Cursor:
        """A server-side cursor: rows arrive two thousand at a time, not all at once."""
        cursor = conn.cursor(name=f"agentfence_{id(self)}_{next(_names)}")
        cursor.itersize = 2000
        cursor.execute(_adapt(sql), params or None)
        return cursor  # type: ignore[no-any-return]

    def tables(self, conn: Any) -> set[str]:
        """The tables visible on the connection's search path."""
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = ANY (current_schemas(false))"
        ).fetchall()
        return {str(r[0]) for r in rows}

    def usable(self, conn: Any) -> bool:
        """False once the server closed the connection or it broke."""
        return not conn.closed and not conn.broken

    def hint(self, exc: BaseException) -> str:
        """For a lost or refused connection: check the server; the next call reconnects."""
        if isinstance(exc, psycopg.OperationalError):
            return (
                "the connection to PostgreSQL failed or was lost; check that PostgreSQL is "
                "running and reachable; agentfence reconnects on the next call"
            )
        return ""

    def pipeline(self, conn: Any) -> AbstractContextManager[Any]:
        """psycopg's pipeline mode: statements go out together, results come back together."""
        return conn.pipeline()  # type: ignore[no-any-return]

    def idle(self, conn: Any) -> bool:
        """Open, in no transaction, and not ended by the server meanwhile."""
        if not (
            self.usable(conn) and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        ):
            return False
        # A server that ended the session while it sat idle (a restart, a terminated backend)
        # has said so on the socket already: read what is there, without waiting. The first
        # read takes its goodbye message, the second finds the socket closed.
        pgconn = conn.pgconn
        try:
            pgconn.consume_input()
            pgconn.is_busy()
            pgconn.consume_input()
        except psycopg.OperationalError:
            return False
        return bool(pgconn.status == psycopg.pq.ConnStatus.OK)


_names = itertools.count(1)


@lru_cache(maxsize=1)
def postgres_dialect() -> PostgresDialect:
    """The PostgreSQL dialect; a clear error when the extra is not installed."""
    if psycopg is None:
        raise ConfigurationError(
            "a postgresql:// log needs psycopg: install agentfence[postgres] "
            "(pip install 'agentfence[postgres]')"
        )
    return PostgresDialect()
