"""Many workers, one PostgreSQL log and approvals queue, LangGraph's PostgresSaver beside it.

A worker pauses the support-desk agent on a EUR 2,500 refund; an approver answers from the
CLI, on another "host" (a process that shares nothing with the worker but the database URL);
two other workers race to resume the same thread. The refund runs exactly once, the loser is
told the approval was already used, and the log verifies with `agentfence log verify`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from langchain_core.tools import BaseTool

from agentfence import Fence
from agentfence._log_api import dedupe_key, index_columns
from agentfence._merkle import leaf_hash
from agentfence._signing import Signer, write_private_key
from agentfence._storage.database import Database
from agentfence._storage.tables import LogBackend, ServerEntry
from agentfence.demo import demo_approver
from agentfence.errors import LogError
from agentfence.log import SignedLog, parse_entry
from agentfence.records import (
    ApprovalAnswerRecord,
    Blob,
    KeyChangeRecord,
    OutcomeRecord,
    canonical_bytes,
    entry_bytes_from,
)
from agentfence.testing import tool_call
from tests.conformance.test_backends import decision
from tests.graphs import batch, config, graph_for
from tests.integration.test_three_processes import (
    DESK,
    ROOT,
    approve_as_fran,
    desk,
    refunds,
    run,
)
from tests.pg import fresh_database, fresh_schema, sessions_after

pytestmark = pytest.mark.postgres


def test_approved_on_one_host_resumed_by_racing_workers_runs_once(
    tmp_path: Path, pg_url: str
) -> None:
    with fresh_schema() as graph_url:  # LangGraph's tables in a schema of their own
        race(tmp_path, pg_url, graph_url)


def race(tmp_path: Path, pg_url: str, graph_url: str) -> None:
    (tmp_path / "desk.py").write_text(DESK, encoding="utf-8")
    log_key = write_private_key(tmp_path / "log.key", Signer.generate("desk-log"))
    fran_key = write_private_key(tmp_path / "fran.key", demo_approver())

    # Worker A: runs until the refund pauses for a finance approver, then exits.
    [request_id] = desk("start", tmp_path, pg_url, graph_url)["requests"]
    assert refunds(tmp_path) == []

    # The approver, elsewhere: the CLI reads the request from PostgreSQL and answers there.
    listed = run("-m", "agentfence.cli", "approvals", "list", "--db", pg_url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["request_id"] for r in json.loads(listed.stdout)["requests"]] == [request_id]
    approve_as_fran(request_id, fran_key, pg_url)

    # Workers B and C resume the same thread at the same moment.
    racers = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "desk.py"), "resume", str(tmp_path), pg_url, graph_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=120) for r in racers]
    assert [r.returncode for r in racers] == [0, 0], [err for _, err in outputs]
    assert refunds(tmp_path) == ["c-102 2500.00 laptop broken"]  # once, not twice

    verifier = Signer.from_private_key(log_key.read_text().strip()).verifier_key
    verified = run("-m", "agentfence.cli", "log", "verify", pg_url, "--key", verifier, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["unsigned_tail"] == 0

    backend = LogBackend(pg_url, create=False, readonly=True)
    try:
        records = [parse_entry(row.body)[1] for row in backend.entries()]
    finally:
        backend.close()
    answers = [r for r in records if isinstance(r, ApprovalAnswerRecord)]
    ran = [r for r in records if isinstance(r, OutcomeRecord) and r.status == "success"]
    # The winner's answer was accepted; a loser that got as far as the answer was refused
    # (its graph may also have found the winner's recorded result first).
    assert [a.verdict for a in answers].count("accepted") == 1
    assert all(a.verdict in {"accepted", "refused", "replayed"} for a in answers), [
        (a.verdict, a.reason) for a in answers
    ]
    refund_outcomes = [o for o in ran if o.decision_id == answers[0].decision_id]
    assert len(refund_outcomes) == 1


def test_postgres_example_runs_with_graph_state_beside_the_log() -> None:
    """examples/postgres_workers.py on a database of its own (no search_path in the URL:
    agentfence's tables go to the schema ``agentfence``, LangGraph's to ``public``)."""
    with fresh_database() as url:
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "postgres_workers.py"), url],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        assert "worker A: paused, approval request" in result.stdout
        assert "worker B: resumed: refunded EUR 2500.00 to c-102" in result.stdout
        assert "log verifies: 6 entries" in result.stdout
        with psycopg.connect(url) as conn:
            tables = {
                (schema, name)
                for schema, name in conn.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_name IN ('entries', 'checkpoints', 'approvals')"
                )
            }
        assert tables == {
            ("agentfence", "entries"),
            ("agentfence", "checkpoints"),
            ("agentfence", "approvals"),
            ("public", "checkpoints"),  # LangGraph's, a different table of the same name
        }


def test_a_schema_shared_with_langgraph_is_refused_with_what_to_do(pg_url: str) -> None:
    """LangGraph's PostgresSaver has a ``checkpoints`` table too: pointing both at one schema
    is an error that says so, not a crash on a missing column later."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(pg_url) as saver:
        saver.setup()
    with pytest.raises(LogError, match=r"'checkpoints' .* is not agentfence's .*search_path"):
        SignedLog.open(pg_url, signer=Signer.generate("x"))


def as_role(url: str, role: str) -> str:
    """The same database, connecting as ``role`` (the test cluster trusts local users)."""
    parts = urlsplit(url)
    host = parts.netloc.split("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def test_the_roles_in_the_deployment_guide_are_enough_and_no_more(tmp_path: Path) -> None:
    """docs/deployment.md's roles: workers own the schema, approvers answer, auditors read."""
    suffix = secrets.token_hex(4)
    fence, approver, auditor = (f"{r}_{suffix}" for r in ("fence", "approver", "auditor"))
    with fresh_database() as url:
        admin = psycopg.connect(url, autocommit=True)
        try:
            for role in (fence, approver, auditor):
                admin.execute(f"CREATE ROLE {role} LOGIN")
            admin.execute(f"CREATE SCHEMA agentfence AUTHORIZATION {fence}")
            admin.execute(f"GRANT USAGE ON SCHEMA agentfence TO {approver}, {auditor}")
            admin.execute(f"GRANT CREATE ON SCHEMA public TO {fence}")  # LangGraph's tables
            (tmp_path / "desk.py").write_text(DESK, encoding="utf-8")
            write_private_key(tmp_path / "log.key", Signer.generate("desk-log"))
            fran_key = write_private_key(tmp_path / "fran.key", demo_approver())
            worker_url = as_role(url, fence)
            [request_id] = desk("start", tmp_path, worker_url, worker_url)["requests"]
            # Once the first worker has made the tables (the guide's second step):
            admin.execute(
                "GRANT SELECT ON agentfence.meta, agentfence.entries, agentfence.blobs, "
                f"agentfence.checkpoints, agentfence.tree_state TO {approver}"
            )
            admin.execute(f"GRANT SELECT, UPDATE ON agentfence.approvals TO {approver}")
            admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA agentfence TO {auditor}")

            # The approver role suffices to answer, checked against the policies too.
            approve_as_fran(request_id, fran_key, as_role(url, approver))
            assert desk("resume", tmp_path, worker_url, worker_url)["resumed"] is True
            assert refunds(tmp_path) == ["c-102 2500.00 laptop broken"]

            # The auditor reads and copies; writing is refused by the database.
            key = Signer.from_private_key((tmp_path / "log.key").read_text().strip())
            reader = as_role(url, auditor)
            verified = run(
                "-m", "agentfence.cli", "log", "verify", reader, "--key", key.verifier_key
            )
            assert verified.returncode == 0, verified.stdout + verified.stderr
            copied = run("-m", "agentfence.cli", "log", "copy", reader, str(tmp_path / "a.db"))
            assert copied.returncode == 0, copied.stderr
            with (
                SignedLog.open(reader, signer=key) as log,
                pytest.raises(LogError, match="permission denied"),
            ):
                log.append(decision("auditor", 0))
            # An approver cannot write the log itself.
            with (
                psycopg.connect(as_role(url, approver)) as conn,
                pytest.raises(psycopg.errors.InsufficientPrivilege),
            ):
                conn.execute("DELETE FROM agentfence.checkpoints")
        finally:
            admin.execute("DROP SCHEMA IF EXISTS agentfence CASCADE")
            admin.execute(
                "DROP TABLE IF EXISTS public.checkpoints, public.checkpoint_blobs, "
                "public.checkpoint_writes, public.checkpoint_migrations"
            )
            for role in (fence, approver, auditor):
                admin.execute(f"DROP OWNED BY {role}")
                admin.execute(f"DROP ROLE {role}")
            admin.close()


def test_connections_stay_few_however_many_tool_calls_and_close_with_the_fence(
    pg_url: str, make_fence: Callable[..., Fence], tools: list[BaseTool]
) -> None:
    """ToolNode runs each step on a new thread: their connections are reused, not leaked."""
    application = f"af-leak-{secrets.token_hex(3)}"
    url = f"{pg_url}&application_name={application}"
    fence = make_fence(log=url, signing_key=Signer.generate("leak"))
    for n in range(20):
        reply = batch(tool_call("read_record", {"record_id": f"r{n}"}, f"c{n}"))
        graph_for(fence, tools, reply).invoke({"messages": [("user", "read")]}, config(f"t{n}"))
    assert sessions_after(pg_url, application, seconds=0) <= 2 + Database.IDLE_KEPT
    fence.close()
    assert sessions_after(pg_url, application, seconds=5) == 0


def test_a_database_that_sequences_wrongly_gets_no_receipt(pg_url: str) -> None:
    """The writer re-checks what agentfence_sequence did: a function that hashes entries
    differently (a tampered or broken database) fails the append, so the call is denied."""
    signer = Signer.generate("check")
    with SignedLog.open(pg_url, signer=signer) as log:
        log.append(decision("ok", 0))
        log.checkpoint()  # size 1
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_get_functiondef('agentfence_sequence'::regproc)"
            ).fetchone()
            assert row is not None
            broken = row[0].replace("'\\x00'::bytea", "'\\x02'::bytea")
            assert broken != row[0]
            conn.execute(broken)
        with pytest.raises(LogError, match="stored entry 1 differently"):
            log.append(decision("ok", 1))
        with pytest.raises(LogError, match="appends and signs nothing more"):
            log.append(decision("ok", 2))  # nothing more goes to a log that failed a check
    backend = LogBackend(pg_url, create=False, readonly=True)
    try:
        latest = backend.latest_checkpoint()
    finally:
        backend.close()
    assert latest is not None and latest.size == 1  # the bad entry was never signed


def test_a_record_repeated_in_one_batch_is_stored_once(pg_url: str) -> None:
    """agentfence_sequence numbers a batch in the order sent: a record without a dedupe key
    is always new, a key met earlier in the same batch or already stored gets the first
    entry's seq and leaf as a duplicate, and only stored entries' blobs are kept."""
    signer = Signer.generate("repeat")
    with SignedLog.open(pg_url, signer=signer) as log:
        log.append(decision("stored", 0))  # seq 0
    first, again, stored = decision("batch", 1), decision("batch", 1), decision("stored", 0)
    keyless = KeyChangeRecord(old_key=signer.verifier_key, new_key=signer.verifier_key, time_us=1)
    records = [first, keyless, again, stored, keyless]
    entries = [
        ServerEntry(canonical_bytes(r), r.format, dedupe_key(r), *index_columns(r), r.time_us)
        for r in records
    ]
    blob = Blob.of(b"the request")
    backend = LogBackend(pg_url)
    try:
        done = backend.append_on_server(entries, [(2, blob.ref, blob.salt, blob.content)])
        assert done.seqs == [1, 2, 1, 0, 3]
        assert done.duplicates == [False, False, True, True, False]
        for seq, record, leaf in zip(done.seqs, records, done.leaves, strict=True):
            assert leaf == leaf_hash(entry_bytes_from(seq, canonical_bytes(record)))
        assert done.leaves[0] == done.leaves[2]
        assert backend.blob(blob.ref) is None  # its entry was a duplicate: not stored
        assert backend.size() == 4
    finally:
        backend.close()


def test_an_append_whose_wal_flush_step_fails_is_refused() -> None:
    """agentfence_sequence commits the entries asynchronously (its locks go before the WAL
    flush), then makes them durable in a second transaction that writes a WAL message and
    commits synchronously. An append returns only after that step: when the server refuses
    it (here the writer role may not emit the message), the append fails and the call is
    denied; once allowed again, appends go on and the log passes its tail check."""
    suffix = secrets.token_hex(4)
    fence = f"fence_{suffix}"
    emit = (
        "pg_logical_emit_message(boolean, text, text)",
        "pg_logical_emit_message(boolean, text, bytea)",
    )
    signer = Signer.generate("flush")
    with fresh_database() as url:
        admin = psycopg.connect(url, autocommit=True)
        try:
            admin.execute(f"CREATE ROLE {fence} LOGIN")
            admin.execute(f"CREATE SCHEMA agentfence AUTHORIZATION {fence}")
            worker = as_role(url, fence)
            with SignedLog.open(worker, signer=signer) as log:
                first = log.append(decision("flushed", 0))
                for function in emit:  # pg_proc is per database: only this one is touched
                    admin.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
                with pytest.raises(
                    LogError,
                    match="could not record the entry: permission denied for function "
                    "pg_logical_emit_message",
                ):
                    log.append(decision("flushed", 1))
                for function in emit:
                    admin.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
                third = log.append(decision("flushed", 2))
            assert (first.seq, third.seq) == (0, 2)  # 1 is the refused append's entry
            # Opening again runs the tail check: the entries hash to the stored tree state.
            with SignedLog.open(worker, signer=signer) as log:
                assert log.size() == 3
                assert [r.decision_id for _, r in log.read()] == [
                    decision("flushed", n).decision_id for n in range(3)
                ]
        finally:
            admin.execute("DROP SCHEMA IF EXISTS agentfence CASCADE")
            admin.execute(f"DROP OWNED BY {fence}")
            admin.execute(f"DROP ROLE {fence}")
            admin.close()


def test_a_database_without_a_log_is_named_not_a_traceback() -> None:
    """Readers create nothing: a URL pointing at the wrong database says so, and exits 2."""
    with fresh_database() as url:
        for command in (
            ("log", "show", url),
            ("approvals", "list", "--db", url),
            ("log", "copy", url, "/nonexistent/copy.db"),
        ):
            result = run("-m", "agentfence.cli", *command)
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            assert "no decision log in postgresql://postgres@/t_" in result.stderr
            assert "it has no blobs, checkpoints, entries, meta, tree_state table" in result.stderr
        with psycopg.connect(url) as conn:  # and nothing was created there
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'entries'"
            ).fetchone()
        assert row == (0,)
