"""SignedLog: durable ordered appends, checkpoints, its own tail check, erasure, rotation."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from agentfence import ConfigurationError, LogError, MemoryLog
from agentfence._merkle import leaf_hash, root_from_leaf_hashes
from agentfence._signing import Signer, open_checkpoint
from agentfence._storage.database import POSTGRESQL, SQLITE, parse_url
from agentfence.log import SignedLog, parse_entry
from agentfence.records import (
    Blob,
    DecisionRecord,
    ErasureRecord,
    KeyChangeRecord,
    OutcomeRecord,
    blob_ref,
    entry_bytes,
)


def outcome(i: int, blob: Blob | None = None) -> OutcomeRecord:
    return OutcomeRecord(
        decision_id=f"d{i}",
        status="success",
        result_digest="0" * 64,
        result_blob=blob.ref if blob else None,
        time_us=1_000 + i,
    )


@pytest.fixture
def signer() -> Signer:
    return Signer.generate("test-log")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


def open_log(db: Path, signer: Signer, **kwargs: object) -> SignedLog:
    return SignedLog.open(f"sqlite:///{db}", signer=signer, **kwargs)  # type: ignore[arg-type]


def raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


def test_appends_are_ordered_and_hash_to_the_checkpoint(db: Path, signer: Signer) -> None:
    log = open_log(db, signer)
    receipts = [log.append(outcome(i)) for i in range(10)]
    assert [r.seq for r in receipts] == list(range(10))
    assert receipts[3].leaf_hash == leaf_hash(entry_bytes(3, outcome(3))).hex()
    note = log.checkpoint()
    checkpoint = open_checkpoint(note, [signer.verifier], origin=log.origin)
    assert checkpoint.size == 10
    leaves = [bytes.fromhex(r.leaf_hash) for r in receipts]
    assert checkpoint.root == root_from_leaf_hashes(leaves)
    log.close()


def test_entries_read_back_as_records(db: Path, signer: Signer) -> None:
    with open_log(db, signer) as log:
        log.append(outcome(1))
        [(seq, record)] = list(log.read())
    assert seq == 0 and record == outcome(1)


def test_duplicate_decision_is_recorded_once(db: Path, signer: Signer) -> None:
    with open_log(db, signer) as log:
        first = log.append(outcome(1))
        log.append(outcome(2))
        again = log.append(outcome(1).model_copy(update={"time_us": 99}))
        assert (again.seq, again.leaf_hash) == (first.seq, first.leaf_hash)
        assert again.duplicate and not first.duplicate
        assert log.size() == 2


def test_blobs_are_stored_and_readable(db: Path, signer: Signer) -> None:
    blob = Blob.of(b"result text")
    assert blob.ref == blob_ref(blob.salt, b"result text")
    assert Blob.of(b"result text").ref != blob.ref  # a fresh salt each time
    with open_log(db, signer) as log:
        log.append(outcome(1, blob), [blob])
        assert log.blob(blob.ref) == b"result text"


def test_concurrent_writers_make_one_tree_without_gaps(db: Path, signer: Signer) -> None:
    log = open_log(db, signer)
    per_thread = 60

    def work(k: int) -> None:
        for i in range(per_thread):
            log.append(outcome(k * 1000 + i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    rows = raw(db).execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(8 * per_thread))
    ids = {parse_entry(r[1])[1].decision_id for r in rows}  # type: ignore[union-attr]
    assert len(ids) == 8 * per_thread


def test_two_processes_worth_of_logs_share_the_tree(db: Path, signer: Signer) -> None:
    # Two SignedLog objects on one file stand in for two processes: the tree state is read
    # inside each write transaction, so neither overwrites the other's entries.
    a, b = open_log(db, signer), open_log(db, signer)
    for i in range(5):
        a.append(outcome(i))
        b.append(outcome(100 + i))
    a.close()
    b.close()
    reopened = open_log(db, signer)
    assert reopened.size() == 10
    reopened.close()


def test_close_signs_a_final_checkpoint(db: Path, signer: Signer) -> None:
    log = open_log(db, signer, checkpoint_interval=3600)
    for i in range(3):
        log.append(outcome(i))
    log.close()
    sizes = [r[0] for r in raw(db).execute("SELECT size FROM checkpoints ORDER BY size")]
    assert sizes[-1] == 3


def test_closed_log_refuses_appends(db: Path, signer: Signer) -> None:
    log = open_log(db, signer)
    log.close()
    with pytest.raises(LogError, match="is closed"):
        log.append(outcome(1))


def test_triggers_reject_update_and_delete(db: Path, signer: Signer) -> None:
    blob = Blob.of(b"content")
    with open_log(db, signer) as log:
        log.append(outcome(1, blob), [blob])
    conn = raw(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE entries SET body = x'00' WHERE seq = 0")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM entries")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM checkpoints")
    with pytest.raises(sqlite3.IntegrityError, match="can only be erased"):
        conn.execute("UPDATE blobs SET content = x'00'")
    with pytest.raises(sqlite3.IntegrityError, match="erased, never deleted"):
        conn.execute("DELETE FROM blobs")


def tamper(db: Path, sql: str) -> None:
    conn = raw(db)
    for name in (
        "entries_no_update",
        "entries_no_delete",
        "checkpoints_no_update",
        "checkpoints_no_delete",
    ):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute(sql)
    conn.close()


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("DELETE FROM entries WHERE seq = 4", "holds 5 entries (seqs up to 5)"),
        (
            "UPDATE checkpoints SET note = replace(note, 'test-log', 'test-lox')",
            "does not verify with this process's signing key",
        ),
        ("SELECT 1", "FLIP_FRONTIER"),
    ],
)
def test_open_refuses_a_tampered_log(db: Path, signer: Signer, sql: str, fragment: str) -> None:
    # The open-time check is cheap: the latest checkpoint, the entry count and the unsigned
    # tail. A body altered inside the signed range is for `agentfence log verify` to find.
    with open_log(db, signer, checkpoint_interval=0) as log:
        for i in range(6):
            log.append(outcome(i))
    tamper(db, sql)
    if fragment == "FLIP_FRONTIER":
        # Flip one bit of the stored frontier at the latest checkpoint.
        conn = raw(db)
        size, frontier = conn.execute(
            "SELECT size, frontier FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        flipped = frontier[:-1] + bytes([frontier[-1] ^ 1])
        conn.execute("UPDATE checkpoints SET frontier = ? WHERE size = ?", (flipped, size))
        fragment = "does not hash to its signed root"
    with pytest.raises(LogError) as info:
        open_log(db, signer)
    message = str(info.value)
    assert "failed its own tail check and will not be written to" in message
    assert "agentfence log verify" in message
    assert fragment in message


def test_open_refuses_a_tampered_unsigned_tail(db: Path, signer: Signer) -> None:
    log = open_log(db, signer, checkpoint_interval=3600)
    for i in range(4):
        log.append(outcome(i))
    # Simulate a crash: the entries are committed, the final checkpoint never signed.
    log._closed = True  # skip close()'s checkpoint
    tamper(
        db,
        "UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), 'd2', 'd7') AS BLOB)"
        " WHERE seq = 2",
    )
    with pytest.raises(LogError, match="entry 2 does not hash to its stored leaf hash"):
        open_log(db, signer)


def test_open_with_another_key_is_refused(db: Path, signer: Signer) -> None:
    with open_log(db, signer) as log:
        log.append(outcome(1))
    with pytest.raises(LogError, match="does not verify with this process's signing key 'other'"):
        open_log(db, Signer.generate("other"))


def test_unsigned_tail_after_a_crash_is_signed_on_open(db: Path, signer: Signer) -> None:
    log = open_log(db, signer, checkpoint_interval=3600)
    for i in range(4):
        log.append(outcome(i))
    log._closed = True  # a crash: no final checkpoint
    reopened = open_log(db, signer)
    note = reopened.checkpoint()
    assert open_checkpoint(note, [signer.verifier]).size == 4
    reopened.close()


def test_not_a_log_file(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('format', 'something/v9')")
    conn.commit()
    conn.close()
    with pytest.raises(LogError, match="is not an agentfence decision log"):
        open_log(path, signer)


def test_erase_blob_keeps_the_entry_and_records_why(db: Path, signer: Signer) -> None:
    blob = Blob.of(b"alice@example.com")
    with open_log(db, signer) as log:
        log.append(outcome(1, blob), [blob])
        receipt = log.erase_blob(blob.ref, reason="DSR-42")
        assert log.blob(blob.ref) is None
        records = [r for _, r in log.read()]
    assert isinstance(records[-1], ErasureRecord) and records[-1].reason == "DSR-42"
    assert receipt.seq == 1
    row = raw(db).execute("SELECT salt, content, erased FROM blobs").fetchone()
    assert row == (None, None, 1)


def test_erase_needs_a_reason_and_a_known_blob(db: Path, signer: Signer) -> None:
    with open_log(db, signer) as log:
        with pytest.raises(ConfigurationError, match="needs a reason"):
            log.erase_blob("sha256:00", reason=" ")
        with pytest.raises(LogError, match="no blob 'sha256:00'"):
            log.erase_blob("sha256:00", reason="x")


def test_rotate_key_records_the_change_and_cosigns(db: Path, signer: Signer) -> None:
    new = Signer.generate("test-log-2")
    log = open_log(db, signer)
    log.append(outcome(1))
    receipt = log.rotate_key(new)
    log.append(outcome(2))
    note = log.checkpoint()
    log.close()
    records = [r for _, r in SignedLog.open(f"sqlite:///{db}", signer=new).read()]
    change = records[receipt.seq]
    assert isinstance(change, KeyChangeRecord)
    assert change.old_key == signer.verifier_key and change.new_key == new.verifier_key
    handover = (
        raw(db)
        .execute("SELECT note FROM checkpoints WHERE size = ?", (receipt.seq + 1,))
        .fetchone()[0]
    )
    open_checkpoint(handover, [signer.verifier])
    open_checkpoint(handover, [new.verifier])
    assert open_checkpoint(note, [new.verifier]).size == 3
    with pytest.raises(LogError, match="does not verify with this process's signing key"):
        open_log(db, signer)


def test_rotate_to_the_same_key_is_refused(db: Path, signer: Signer) -> None:
    with open_log(db, signer) as log, pytest.raises(ConfigurationError, match="is the current"):
        log.rotate_key(signer)


def test_append_failure_raises_log_error(db: Path, signer: Signer) -> None:
    log = open_log(db, signer)
    raw(db).execute("DROP TABLE blobs")  # any storage failure
    blob = Blob.of(b"x")
    with pytest.raises(LogError, match="could not record the entry"):
        log.append(outcome(1, blob), [blob])


def test_log_url_forms() -> None:
    assert parse_url("sqlite:///rel/x.db").path == Path("rel/x.db")
    assert parse_url("sqlite:////abs/x.db").path == Path("/abs/x.db")
    assert parse_url("plain/x.db").engine == SQLITE
    pg = parse_url("postgresql://fence:s3cret@db.internal:5433/audit")
    assert pg.engine == POSTGRESQL
    assert pg.url == "postgresql://fence:s3cret@db.internal:5433/audit"
    assert "s3cret" not in pg.display  # messages never show the password
    assert pg.display == "postgresql://fence:***@db.internal:5433/audit"
    assert pg.stem == "audit"
    assert parse_url("postgres://h/db").engine == POSTGRESQL
    with pytest.raises(ConfigurationError, match="unsupported scheme 'mysql'"):
        parse_url("mysql://h/db")


def test_memory_log_is_idempotent_and_keeps_blobs() -> None:
    log = MemoryLog()
    blob = Blob.of(b"c")
    first = log.append(outcome(1, blob), [blob])
    assert log.append(outcome(1)).seq == first.seq
    assert log.blob(blob.ref) == b"c" and len(log.records) == 1
    assert isinstance(log.outcomes()[0], OutcomeRecord)
    assert log.decisions() == [] and not isinstance(log.records[0], DecisionRecord)


def test_rotation_right_after_open_with_concurrent_writers_verifies(
    db: Path, signer: Signer, make_fence: Any
) -> None:
    # The commit that writes the key change signs the handover itself, so no checkpoint that
    # includes the change is ever signed by the old key alone, even with other writers.
    from agentfence.verify import verify_log

    new = Signer.generate("test-log-2")
    log = open_log(db, signer, checkpoint_interval=0)
    fence = make_fence(log=log)
    stop = threading.Event()
    failures: list[BaseException] = []
    appended = [0, 0, 0]
    first = threading.Semaphore(0)  # released by each writer after its first append

    def write(k: int) -> None:
        try:
            for i in range(150):
                if stop.is_set():
                    return
                decision = fence.decide(
                    "wipe",
                    {"path": f"/{k}/{i}"},
                    principal="alice",
                    thread=f"t{k}",
                    step=i,
                    tool_call_id=f"c{k}-{i}",
                )
                log.append(*fence._decision_record(decision, None, None))
                appended[k] += 1
                if i == 0:
                    first.release()
        except BaseException as exc:  # a writer that fails must fail the test
            failures.append(exc)
            first.release()

    writers = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    for w in writers:
        w.start()
    for _ in writers:
        assert first.acquire(timeout=60)
    log.rotate_key(new)  # while the writers are still appending
    stop.set()
    for w in writers:
        w.join()
    log.close()
    assert failures == []
    assert all(appended), appended
    reopened = open_log(db, new)  # its tail check trusts the new key
    size = reopened.size()
    reopened.close()
    verified = verify_log(db, [signer.verifier_key, new.verifier_key])
    assert verified.entries == size and verified.unsigned_tail == 0
    assert [c.new_key for c in verified.key_changes] == [new.verifier_key]


# --- records that ride the next commit (append_later) --------------------------------------


def test_a_deferred_outcome_rides_the_next_durable_append(db: Path, signer: Signer) -> None:
    with open_log(db, signer, flush_window=60) as log:
        blob = Blob.of(b"done")
        log.append_later(outcome(1, blob), [blob])
        # Not written yet, but the fence sees it: the call ran, so it is not run again.
        assert log.size() == 0
        found = log.find_outcome("d1")
        assert found is not None and found[1] == b"done"
        batches = log.stats.batches
        log.append(outcome(2))
        assert log.stats.batches == batches + 1  # one commit carried both
        assert [r.decision_id for _, r in log.read()] == ["d1", "d2"]  # type: ignore[union-attr]


def test_a_deferred_outcome_is_committed_within_the_flush_window(db: Path, signer: Signer) -> None:
    with open_log(db, signer, flush_window=0.01) as log:
        log.append_later(outcome(1))
        done = threading.Event()
        for _ in range(500):
            if log.size() == 1:
                done.set()
                break
            threading.Event().wait(0.01)
        assert done.is_set(), "the flush window passed and nothing was committed"


def test_close_commits_what_is_still_deferred(db: Path, signer: Signer) -> None:
    log = open_log(db, signer, flush_window=3600)
    log.append_later(outcome(1))
    log.append_later(outcome(2))
    log.close()
    with open_log(db, signer) as reopened:
        assert reopened.size() == 2


def test_a_deferred_record_that_cannot_be_committed_is_logged_and_kept(
    db: Path, signer: Signer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(db, signer, flush_window=3600)
    log.append_later(outcome(1))  # queued: no error yet, nobody waits for it

    def broken(batch: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(log, "_write", broken)
    with caplog.at_level("ERROR", logger="agentfence.log"):
        for _ in range(4):  # the disk stays broken for several commits
            log._flush()
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "could not record a queued agentfence.outcome/v1 entry yet" in line
    assert "disk I/O error" in line
    assert log.find_outcome("d1") is not None  # still queued, not dropped
    monkeypatch.undo()  # the disk is back: the next commit (here, close) writes it
    log.close()
    with open_log(db, signer) as reopened:
        assert reopened.find_outcome("d1") is not None


def test_a_log_closing_while_its_storage_is_down_logs_what_it_loses(
    db: Path, signer: Signer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(db, signer, flush_window=3600)
    log.append_later(outcome(1))

    def broken(batch: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(log, "_write", broken)
    with caplog.at_level("ERROR", logger="agentfence.log"):
        log._drain()
    assert any(
        "closing without a queued agentfence.outcome/v1" in r.getMessage() for r in caplog.records
    )
    monkeypatch.undo()
    log.close()


def test_a_deferred_record_whose_commit_fails_rides_the_next_one(
    db: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dropped connection fails one commit; the queued outcome is not lost with it.
    log = open_log(db, signer, flush_window=3600)
    log.append_later(outcome(1))
    real = log._write
    calls = []

    def flaky(batch: Any) -> Any:
        calls.append(len(batch))
        if len(calls) == 1:
            raise sqlite3.OperationalError("connection dropped")
        return real(batch)

    monkeypatch.setattr(log, "_write", flaky)
    log._flush()
    assert log.size() == 0 and log.find_outcome("d1") is not None
    log.append(outcome(2))
    assert [r.decision_id for _, r in log.read()] == ["d1", "d2"]  # type: ignore[union-attr]
    log.close()


def test_a_threads_decisions_are_read_back_without_walking_every_other_thread(
    db: Path, signer: Signer
) -> None:
    """Usage limits read a thread's decisions back the first time they see the thread. The
    query must use the (thread, kind, seq) index: with the kind index alone it walks every
    decision in the log, so each new thread costs more as the log grows."""
    from agentfence._storage.tables import select_sql

    open_log(db, signer).close()
    sql, params = select_sql(thread="t-1", kind="agentfence.decision/v1")
    with raw(db) as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "entries_thread_kind" in plan, plan


def test_a_log_made_before_the_thread_kind_index_gains_it_when_opened(
    db: Path, signer: Signer
) -> None:
    open_log(db, signer).close()
    with raw(db) as conn:
        conn.execute("DROP INDEX entries_thread_kind")
        conn.commit()
    open_log(db, signer).close()
    with raw(db) as conn:
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    assert "entries_thread_kind" in names


def test_the_flusher_backs_off_while_commits_fail(
    db: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through an outage a deferred record stays queued and is tried again, but not every
    flush window: the waits double (up to 2 s), so a down database is not hammered and its
    driver's warnings do not flood the logs. (A slow machine only makes fewer tries.)"""
    import time

    from tests.conformance.test_backends import decision, done

    log = open_log(db, signer, flush_window=0.02)
    first = decision("flush", 1)
    log.append(first)
    tries: list[float] = []

    def down(batch: Any) -> Any:
        tries.append(time.monotonic())
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(log, "_write", down)
    from agentfence.records import Blob

    blob = Blob.of(b"r")
    log.append_later(done(first, blob), [blob])
    time.sleep(0.8)  # 40 windows of 20 ms: without backing off, about 40 tries
    assert 1 <= len(tries) <= 7, len(tries)
    monkeypatch.undo()
    log.close()  # the queued outcome is written now that the disk is back
    assert any(
        getattr(r, "decision_id", None) == first.decision_id
        for _, r in log.read()
        if r.format.endswith("outcome/v1")
    )
