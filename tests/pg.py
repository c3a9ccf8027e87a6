"""The PostgreSQL server the tests use: the throwaway cluster `make test` starts.

`make test` starts it (scripts/postgres.sh) and sets AGENTFENCE_TEST_POSTGRES_URL and
AGENTFENCE_POSTGRES_TESTS=required; a missing server then fails the tests rather than
skipping them. Only `make test AGENTFENCE_SKIP_POSTGRES=1` skips them (loudly). Running
pytest by hand: `scripts/postgres.sh start` prints the URL to export.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]


def base_url() -> str:
    """The server's URL; skips (or, when required, fails) the test without one."""
    url = os.environ.get("AGENTFENCE_TEST_POSTGRES_URL")
    mode = os.environ.get("AGENTFENCE_POSTGRES_TESTS", "")
    if url:
        return url
    if mode == "required":
        pytest.fail(
            "AGENTFENCE_POSTGRES_TESTS=required but AGENTFENCE_TEST_POSTGRES_URL is unset; "
            "run the tests with `make test`"
        )
    reason = (
        "PostgreSQL tests skipped: AGENTFENCE_SKIP_POSTGRES=1"
        if mode == "skip"
        else "PostgreSQL tests skipped: no server (run `make test`, or export "
        "AGENTFENCE_TEST_POSTGRES_URL=$(scripts/postgres.sh start))"
    )
    pytest.skip(reason)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose tables live in a new, empty schema of their own (dropped afterwards)."""
    import psycopg

    base = base_url()
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A URL of a new, empty database (dropped afterwards)."""
    import psycopg

    base = base_url()
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def sessions_after(url: str, application: str, *, seconds: float) -> int:
    """How many server sessions ``application`` holds, waiting up to ``seconds`` for none:
    a server process ends just after its client leaves, not at once."""
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application,),
            ).fetchone()
        count = int(row[0]) if row else 0
        if count == 0 or time.monotonic() >= deadline:
            return count
        time.sleep(0.02)
