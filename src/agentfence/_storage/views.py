"""SQL views that make a decision log readable, and the browsable copy they live in.

A log stores each entry as canonical JSON bytes (a BLOB) with times in epoch microseconds
(``docs/log-format.md``). The views below show the same entries as columns, JSON text and
ISO-8601 UTC times: ``decisions``, ``outcomes``, ``approvals``, ``activations`` and
``entries_json`` (every entry), plus ``blob_texts``.

Every value a view shows is read from the entry's body, the signed bytes: never from the
index columns (``thread``, ``tool``, ``effect``, ``kind``, ``dedupe_key``) stored beside it,
which the writer derives and the verifier checks but which no signature covers. So a view
cannot be made to lie by editing an unsigned column.

The views are never created in a log itself. :func:`browsable_copy` copies a log's tables
into a new SQLite file (one snapshot; from SQLite or PostgreSQL) and creates the views
there: the log is opened read-only and never written, a read-only file works, and the views
an auditor reads are this package's, not whatever views someone stored in the log's file.
Views are not entries: the copy verifies exactly as the original does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agentfence._storage.dialect import Location, parse_url
from agentfence._storage.tables import copy_log
from agentfence.errors import LogError

__all__ = ["VIEWS", "VIEWS_SQL", "browsable_copy", "create_views"]


def _body(table: str, path: str) -> str:
    """A value in an entry's body (``table`` is the alias of ``entries``, or empty).

    The indexes below are on exactly these expressions, which is what lets SQLite use them
    for the views' filters and joins.
    """
    body = f"{table}.body" if table else "body"
    return f"json_extract(CAST({body} AS TEXT), '$.{path}')"


_RECORD = _body("", "record")
_FORMAT = _body("", "record.format")


def _iso(us: str) -> str:
    """ISO-8601 UTC text of an epoch-microseconds expression, to the microsecond."""
    return (
        f"(strftime('%Y-%m-%dT%H:%M:%S', ({us}) / 1000000, 'unixepoch')"
        f" || printf('.%06dZ', ({us}) % 1000000))"
    )


def _blob_text(ref: str) -> str:
    """The text of the blob ``ref`` names (NULL when erased or missing)."""
    return f"(SELECT CAST(content AS TEXT) FROM blobs WHERE blobs.ref = {ref})"  # noqa: S608


def _r(table: str, name: str) -> str:
    """A field of the record in an entry's body."""
    return _body(table, f"record.{name}")


_DECISION = "'agentfence.decision/v1'"
_OUTCOME = "'agentfence.outcome/v1'"
_REQUEST = "'agentfence.approval_request/v1'"
_ANSWER = "'agentfence.approval_answer/v1'"

VIEWS: dict[str, str] = {
    "entries_json": f"""
SELECT seq,
       {_iso(_r("", "time_us"))} AS time,
       {_r("", "format")} AS format,
       lower(hex(leaf_hash)) AS leaf_hash,
       {_RECORD} AS json
FROM entries""",  # noqa: S608  # constant SQL, no input
    "decisions": f"""
SELECT seq,
       {_iso(_r("", "time_us"))} AS time,
       {_r("", "thread")} AS thread,
       {_r("", "step")} AS step,
       {_r("", "tool")} AS tool,
       {_r("", "effect")} AS effect,
       {_r("", "principal")} AS principal,
       {_r("", "agent")} AS agent,
       {_r("", "action")} AS action,
       {_r("", "resource")} AS resource,
       {_r("", "policy_ids")} AS policies,
       {_r("", "reasons")} AS reasons,
       {_r("", "errors")} AS errors,
       {_r("", "approvers")} AS approvers,
       {_r("", "policy_hash")} AS policy_hash,
       {_r("", "decision_id")} AS decision_id,
       {_r("", "tool_call_id")} AS tool_call_id,
       {_r("", "trace_id")} AS trace_id,
       {_blob_text(_r("", "request_blob"))} AS request,
       {_RECORD} AS json
FROM entries
WHERE {_FORMAT} = {_DECISION}""",  # noqa: S608  # constant SQL, no input
    "outcomes": f"""
SELECT o.seq AS seq,
       {_iso(_r("o", "time_us"))} AS time,
       {_r("d", "thread")} AS thread,
       {_r("d", "tool")} AS tool,
       {_r("o", "status")} AS status,
       {_r("o", "labels")} AS labels,
       {_r("o", "redactions")} AS redactions,
       {_r("o", "decision_id")} AS decision_id,
       d.seq AS decision_seq,
       {_r("o", "result_digest")} AS result_digest,
       {_blob_text(_r("o", "result_blob"))} AS result,
       {_body("o", "record")} AS json
FROM entries AS o
LEFT JOIN entries AS d
  ON {_r("d", "format")} = {_DECISION} AND {_r("d", "decision_id")} = {_r("o", "decision_id")}
WHERE {_r("o", "format")} = {_OUTCOME}""",  # noqa: S608  # constant SQL, no input
    "approvals": f"""
SELECT q.seq AS seq,
       {_iso(_r("q", "time_us"))} AS time,
       {_r("q", "thread")} AS thread,
       {_r("q", "tool")} AS tool,
       {_r("q", "principal")} AS principal,
       {_r("q", "approvers")} AS approvers,
       {_r("q", "policy_ids")} AS policies,
       {_r("q", "reasons")} AS reasons,
       {_r("q", "risk")} AS risk,
       {_iso(_r("q", "expires_us"))} AS expires,
       {_r("a", "answer")} AS answer,
       {_r("a", "verdict")} AS verdict,
       {_r("a", "approver")} AS approver,
       {_r("a", "reason")} AS answer_reason,
       a.seq AS answer_seq,
       {_iso(_r("a", "time_us"))} AS answered,
       {_r("q", "request_id")} AS request_id,
       {_r("q", "decision_id")} AS decision_id,
       {_blob_text(_r("q", "args_blob"))} AS args,
       {_body("q", "record")} AS json,
       {_body("a", "record")} AS answer_json
FROM entries AS q
LEFT JOIN entries AS a
  ON {_r("a", "format")} = {_ANSWER} AND {_r("a", "request_id")} = {_r("q", "request_id")}
WHERE {_r("q", "format")} = {_REQUEST}""",  # noqa: S608  # constant SQL, no input
    "activations": f"""
SELECT seq,
       {_iso(_r("", "time_us"))} AS time,
       {_r("", "policy_hash")} AS policy_hash,
       {_r("", "engine")} AS engine,
       {_r("", "files")} AS files,
       {_RECORD} AS json
FROM entries
WHERE {_FORMAT} = 'agentfence.activation/v1'""",  # noqa: S608  # constant SQL, no input
    "blob_texts": """
SELECT ref, CAST(content AS TEXT) AS text, erased = 1 AS erased FROM blobs""",
}
"""Each view's name and its SELECT (docs/auditor-guide.md lists their columns)."""

_INDEXES = {
    "browse_format": f"entries ({_FORMAT}, seq)",
    "browse_decision_id": f"entries ({_FORMAT}, {_r('', 'decision_id')})",
    "browse_request_id": f"entries ({_FORMAT}, {_r('', 'request_id')})",
    "browse_effect": f"entries ({_FORMAT}, {_r('', 'effect')})",
    "browse_tool": f"entries ({_FORMAT}, {_r('', 'tool')})",
    "browse_thread": f"entries ({_FORMAT}, {_r('', 'thread')})",
}
"""Indexes on the bodies in the browsable copy: the joins, and the default facets."""

VIEWS_SQL = "".join(
    [f"CREATE VIEW {name} AS {select.strip()};\n" for name, select in VIEWS.items()]
    + [f"CREATE INDEX {name} ON {on};\n" for name, on in _INDEXES.items()]
)
"""The script that creates the views (and the indexes on the body that keep them fast)."""


def create_views(conn: sqlite3.Connection) -> None:
    """Create the views in a browsable copy, replacing any views of the same names."""
    for name in VIEWS:
        conn.execute(f"DROP VIEW IF EXISTS {name}")
    for name in _INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.executescript(VIEWS_SQL)


def browsable_copy(source: str | Path | Location, target: Path) -> int:
    """Copy a decision log into a new SQLite file ``target`` and create the views there.

    The log is read in one snapshot and never written; the copy holds exactly the tables
    the verifier reads (with their bytes) and the views, in rollback-journal mode, so it can
    be opened immutable: nothing else writes it. Returns the number of entries copied.
    """
    if target.exists():
        raise LogError(f"{target} already exists; name a new file for the browsable copy")
    copied = copy_log(source, target)
    try:
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            # The copy was written in WAL mode; leaving it makes one self-contained file
            # that an immutable reader sees whole (immutable readers ignore a -wal file).
            conn.execute("PRAGMA journal_mode = DELETE")
            # One body that is not JSON would make every view fail to read; name it instead.
            bad = conn.execute(
                "SELECT seq FROM entries WHERE NOT json_valid(CAST(body AS TEXT)) LIMIT 1"
            ).fetchone()
            if bad is None:
                create_views(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise LogError(f"cannot create the views in the browsable copy {target}: {exc}") from exc
    if bad is not None:
        target.unlink()
        raise LogError(
            f"entry {bad[0]} of {parse_url(source).display} is not JSON, so the log cannot "
            "be browsed: it was altered or damaged; run `agentfence log verify` on it"
        )
    return copied
