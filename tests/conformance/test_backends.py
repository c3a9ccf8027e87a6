"""One set of tests for every storage backend: a SQLite file and a PostgreSQL database.

Each test takes ``store_url`` and runs twice, once per backend (see tests/conftest.py). What
they hold both backends to: appends are ordered, durable and idempotent; several processes
appending to one log build one tree with no gaps and no duplicates; the verifier, replay and
evidence packs read either; the guard triggers refuse edits; a tampered log is refused by
its own writer and by the verifier; approvals are answered once and used once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool

from agentfence import Fence, _merkle
from agentfence._signing import Signer, write_private_key
from agentfence._storage.database import POSTGRESQL, Database, parse_url
from agentfence._storage.tables import LogBackend, copy_log
from agentfence.approvals import ApprovalRefused, ApprovalRequest, ApprovalStore
from agentfence.errors import LogError
from agentfence.log import LogReader, MemoryLog, SignedLog
from agentfence.records import ActivationRecord, Blob, DecisionRecord, OutcomeRecord
from agentfence.testing import tool_call
from agentfence.verify import (
    LogVerificationError,
    export_evidence,
    replay,
    verify_evidence,
    verify_log,
)
from tests.graphs import config, graph_for, tool_messages
from tests.pg import fresh_schema

ROOT = Path(__file__).resolve().parents[2]


def decision(name: str, i: int, policy_hash: str = "0" * 64) -> DecisionRecord:
    return DecisionRecord(
        decision_id=hashlib.sha256(f"{name}-{i}".encode()).hexdigest()[:32],
        seed=7,
        thread=f"{name}-{i % 3}",
        step=i,
        tool_call_id=f"call-{i}",
        tool="read_record",
        principal='User::"alice"',
        agent="worker",
        action='Action::"read_record"',
        resource='Record::"r1"',
        request_blob=None,
        effect="ALLOW",
        policy_ids=["read"],
        reasons=[],
        errors=[],
        approvers=[],
        policy_hash=policy_hash,
        engine="cedarpy",
        time_us=1_800_000_000_000_000 + i,
    )


def done(record: DecisionRecord, blob: Blob) -> OutcomeRecord:
    return OutcomeRecord(
        decision_id=record.decision_id,
        status="success",
        result_digest="0" * 64,
        result_blob=blob.ref,
        time_us=record.time_us + 1,
    )


def activate(url: str, signer: Signer, make_fence: Callable[..., Fence]) -> str:
    """Create the log as a fence does (its first entries activate the policies); the hash."""
    make_fence(log=url, signing_key=signer).close()
    with SignedLog.open(url, signer=signer) as log:
        return next(r.policy_hash for _, r in log.read() if isinstance(r, ActivationRecord))


def raw(url: str, sql: str) -> None:
    """Run SQL as someone with write access to the database would (no agentfence code)."""
    db = Database(parse_url(url))
    try:
        db.execute(sql)
    finally:
        db.close()


# --- appending and reading ---------------------------------------------------------------


def test_appends_are_ordered_durable_and_idempotent(store_url: str) -> None:
    signer = Signer.generate("conformance")
    first = decision("a", 0)
    blob = Blob.of(b"result")
    with SignedLog.open(store_url, signer=signer) as log:
        receipts = [log.append(first), log.append(done(first, blob), [blob])]
        again = log.append(first)
        assert [r.seq for r in receipts] == [0, 1]
        assert again == type(again)(seq=0, leaf_hash=receipts[0].leaf_hash, duplicate=True)
    with SignedLog.open(store_url, signer=signer) as reopened:
        assert reopened.size() == 2
        assert [r for _, r in reopened.read()] == [first, done(first, blob)]
        found = reopened.find_outcome(first.decision_id)
        assert found is not None and found[1] == b"result"
        assert reopened.url == parse_url(store_url).url


@pytest.fixture(params=["memory", "stored"])
def reader_log(request: pytest.FixtureRequest, store_url: str) -> Iterator[Any]:
    """The same reader test against a MemoryLog and a SignedLog on each backend."""
    if request.param == "memory":
        if "sqlite" not in store_url:  # the memory log runs once, beside SQLite
            pytest.skip("the memory log has no backend; it runs beside SQLite")
        yield MemoryLog()
        return
    with SignedLog.open(store_url, signer=Signer.generate("conformance")) as log:
        yield log


def test_every_log_reads_back_through_the_reader_protocol(reader_log: Any) -> None:
    log = reader_log
    assert isinstance(log, LogReader)
    blob = Blob.of(b"result")
    records = [decision("r", i) for i in range(6)]
    for record in records:
        log.append(record)
    log.append(done(records[3], blob), [blob])
    assert log.size() == 7
    assert [r for _, r in log.read()] == [*records, done(records[3], blob)]
    assert [seq for seq, _ in log.read(2, 4)] == [2, 3]
    assert log.blob(blob.ref) == b"result"
    assert log.blob("sha256:" + "0" * 64) is None
    found = log.find_outcome(records[3].decision_id)
    assert found is not None and found == (done(records[3], blob), b"result")
    assert log.find_outcome(records[1].decision_id) is None
    # Thread "r-0" holds decisions 0 and 3 (i % 3); decision 3 ran.
    thread = log.thread_decisions("r-0")
    assert [(t.seq, t.record, t.status) for t in thread] == [
        (0, records[0], None),
        (3, records[3], "success"),
    ]
    assert log.thread_decisions("r-0", exclude=records[0].decision_id)[0].seq == 3
    assert log.thread_decisions("r-0", before=3) == [thread[0]]
    since = log.first_seq_since(records[4].time_us)
    assert 0 <= since <= 4
    assert all(r.time_us < records[4].time_us for seq, r in log.read(0, since))


def test_a_log_opened_with_another_key_is_refused(store_url: str) -> None:
    with SignedLog.open(store_url, signer=Signer.generate("owner")) as log:
        log.append(decision("a", 0))
    with pytest.raises(LogError, match="failed its own tail check"):
        SignedLog.open(store_url, signer=Signer.generate("intruder"))


def test_guard_triggers_refuse_edits_and_deletes(store_url: str) -> None:
    blob = Blob.of(b"kept")
    with SignedLog.open(store_url, signer=Signer.generate("g")) as log:
        log.append(decision("a", 0))
        log.append(done(decision("a", 0), blob), [blob])
    for statement, message in [
        ("UPDATE entries SET kind = 'x' WHERE seq = 0", "append-only"),
        ("DELETE FROM entries WHERE seq = 1", "append-only"),
        ("DELETE FROM checkpoints", "append-only"),
        ("UPDATE blobs SET content = NULL", "can only be erased"),
        ("DELETE FROM blobs", "never deleted|append-only"),
    ]:
        db = Database(parse_url(store_url))
        with pytest.raises(db.errors, match=message):
            db.execute(statement)
        db.close()


def test_a_modified_entry_is_refused_by_the_verifier(store_url: str) -> None:
    signer = Signer.generate("t")
    with SignedLog.open(store_url, signer=signer, checkpoint_interval=3600) as log:
        for i in range(3):
            log.append(decision("a", i))
        log.checkpoint()
        log.append(decision("a", 3))  # after the checkpoint: the tail the writer re-checks
        seq = log.size() - 1
    # As an attacker with write access would: guard triggers off, one entry's bytes changed.
    if parse_url(store_url).engine == POSTGRESQL:
        raw(store_url, "ALTER TABLE entries DISABLE TRIGGER USER")
        raw(store_url, f"UPDATE entries SET body = body || '\\x20'::bytea WHERE seq = {seq}")
    else:
        raw(store_url, "DROP TRIGGER entries_no_update")
        raw(store_url, f"UPDATE entries SET body = body || x'20' WHERE seq = {seq}")
    with pytest.raises(LogVerificationError, match=f"entry {seq} was modified"):
        verify_log(store_url, [signer.verifier_key])


def test_a_log_whose_checkpoint_was_rewritten_is_not_written_to(store_url: str) -> None:
    signer = Signer.generate("t")
    with SignedLog.open(store_url, signer=signer) as log:
        log.append(decision("a", 0))
    if parse_url(store_url).engine == POSTGRESQL:
        raw(store_url, "ALTER TABLE checkpoints DISABLE TRIGGER USER")
    else:
        raw(store_url, "DROP TRIGGER checkpoints_no_update")
    raw(
        store_url,
        "UPDATE checkpoints SET root = frontier WHERE size = (SELECT max(size) FROM checkpoints)",
    )
    with pytest.raises(LogError, match=r"own tail check.*does not match its signed note"):
        SignedLog.open(store_url, signer=signer)


# --- many writers ------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, threading
    from agentfence._signing import read_private_key
    from agentfence.log import LogReader, MemoryLog, SignedLog
    from agentfence.records import Blob
    from tests.conformance.test_backends import decision, done

    url, key, name, policies = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
    count = int(sys.argv[4])
    log = SignedLog.open(url, signer=read_private_key(key), checkpoint_interval=0.01)
    lines, failures = [], []

    def work(t):
        try:
            for i in range(count):
                record = decision(f"{name}-{t}", i, policies)
                blob = Blob.of(f"{name}-{t}-{i}".encode())
                for receipt in (log.append(record), log.append(done(record, blob), [blob])):
                    lines.append(f"{receipt.seq} {receipt.leaf_hash}")
        except Exception as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads: t.start()
    for t in threads: t.join()
    log.close()
    print("\\n".join(lines))
    sys.exit("\\n".join(failures) or None)
    """
)


def test_writers_in_several_processes_build_one_tree(
    store_url: str, tmp_path: Path, make_fence: Callable[..., Fence]
) -> None:
    signer = Signer.generate("shared")
    key = write_private_key(tmp_path / "shared.key", signer)
    policies = activate(store_url, signer, make_fence)
    start = SignedLog.open(store_url, signer=signer)
    first = start.size()
    start.close()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, str(key), f"w{n}", "25", policies],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    acknowledged: dict[int, str] = {}
    for writer in writers:
        out, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
        for line in out.splitlines():
            seq, leaf = line.split()
            assert int(seq) not in acknowledged, f"seq {seq} was handed out twice"
            acknowledged[int(seq)] = leaf
    total = 4 * 3 * 25 * 2
    verified = verify_log(store_url, [signer.verifier_key])
    assert verified.entries == first + total
    backend = LogBackend(store_url, create=False, readonly=True)
    try:
        stored = {row.seq: row.leaf_hash.hex() for row in backend.entries()}
        checkpoints = backend.checkpoints()
    finally:
        backend.close()
    assert {seq: leaf for seq, leaf in stored.items() if seq >= first} == acknowledged
    assert sorted(acknowledged) == list(range(first, first + total))  # no gaps, no duplicates
    # The writers signed many checkpoints between them, each the root of the stored tree at
    # its size (one size is one row, so it cannot have two roots).
    tree = _merkle.MerkleTree([bytes.fromhex(stored[seq]) for seq in sorted(stored)])
    assert len(checkpoints) > 2
    assert [c.root for c in checkpoints] == [tree.root(c.size) for c in checkpoints]


def test_threads_share_one_tree(store_url: str, make_fence: Callable[..., Fence]) -> None:
    signer = Signer.generate("threads")
    policies = activate(store_url, signer, make_fence)
    receipts: list[int] = []
    with SignedLog.open(store_url, signer=signer) as log:
        first = log.size()

        def work(t: int) -> None:
            for i in range(40):
                receipts.append(log.append(decision(f"t{t}", i, policies)).seq)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(receipts) == list(range(first, first + 240))
    assert verify_log(store_url, [signer.verifier_key]).size == first + 240


# --- a governed run, read back by the auditor's tools -------------------------------------


def run_fence(
    url: str, make_fence: Callable[..., Fence], tools: list[BaseTool], key: Path
) -> dict[str, Any]:
    fence = make_fence(log=url, signing_key=key, agent="support-bot", seed=7, clock=iter_clock())
    replies = [
        _turn(tool_call("read_record", {"record_id": "r1"}, "c1")),
        _turn(tool_call("send_email", {"to": "x@evil.test", "body": "hi"}, "c2")),
        _turn(tool_call("wipe", {"path": "/"}, "c3")),
        AIMessage(content="done"),
    ]
    result = graph_for(fence, tools, replies).invoke(
        {"messages": [("user", "work the ticket")]}, config("conformance")
    )
    fence.close()
    return tool_messages(result)


def _turn(call: dict[str, Any]) -> Any:
    return AIMessage(content="", tool_calls=[call])


def iter_clock() -> Callable[[], int]:
    """A clock that ticks one microsecond per reading: the same run, the same entries."""
    now = [1_800_000_000_000_000]

    def tick() -> int:
        now[0] += 1
        return now[0]

    return tick


def test_a_governed_run_verifies_replays_and_exports(
    store_url: str, make_fence: Callable[..., Fence], tools: list[BaseTool], tmp_path: Path
) -> None:
    signer = Signer.generate("fence")
    key = write_private_key(tmp_path / "fence.key", signer)
    messages = run_fence(store_url, make_fence, tools, key)
    assert messages["c1"].status == "success"
    assert messages["c3"].status == "error"  # wipe is forbidden: it never ran
    verified = verify_log(store_url, [signer.verifier_key])
    # The activation, three decisions and the one outcome.
    assert verified.unsigned_tail == 0 and verified.entries == 5
    report = replay(store_url)
    assert report.changes == () and report.replayed == report.decisions == 3
    pack = export_evidence(
        store_url, tmp_path / "pack", keys=[signer.verifier_key], thread="conformance"
    )
    assert verify_evidence(tmp_path / "pack", [signer.verifier_key]).size == pack.size


def test_the_same_run_writes_the_same_log_on_both_backends(
    make_fence: Callable[..., Fence], tools: list[BaseTool], tmp_path: Path, pg_url: str
) -> None:
    """The auditor cannot tell the backends apart: `log export` prints the same bytes."""
    signer = Signer.generate("same")
    key = write_private_key(tmp_path / "same.key", signer)
    sqlite_url = f"sqlite:///{tmp_path / 'same.db'}"
    exports = []
    for url in (sqlite_url, pg_url):
        run_fence(url, make_fence, tools, key)
        out = subprocess.run(
            [sys.executable, "-m", "agentfence.cli", "log", "export", url],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=True,
        ).stdout
        exports.append([same_form(json.loads(line)) for line in out.splitlines()])
    assert len(exports[0]) == 5
    assert exports[0] == exports[1]


def same_form(value: Any) -> Any:
    """An exported entry with what is random in every run (blob salts, so blob refs, and
    the hashes of entries that hold them) masked: the rest must match byte for byte."""
    if isinstance(value, dict):
        return {
            k: "<hash>" if k in {"leaf_hash", "body"} else same_form(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [same_form(v) for v in value]
    if isinstance(value, str) and value.startswith("sha256:"):
        return "sha256:<salted>"
    return value


# --- key rotation with several writers ----------------------------------------------------


def test_a_writer_holding_a_rotated_key_signs_no_more_checkpoints(
    store_url: str, make_fence: Callable[..., Fence]
) -> None:
    old, new = Signer.generate("old"), Signer.generate("new")
    policies = activate(store_url, old, make_fence)
    stale = SignedLog.open(store_url, signer=old, checkpoint_interval=0)
    rotating = SignedLog.open(store_url, signer=old, checkpoint_interval=0)
    first = stale.size()
    stale.append(decision("s", 0, policies))
    rotating.rotate_key(new)
    for i in range(1, 4):
        stale.append(decision("s", i, policies))  # its entries still land in the tree
    stale.close()
    rotating.close()
    verified = verify_log(store_url, [old.verifier_key, new.verifier_key])
    assert verified.entries == first + 5
    assert all("new" in line for line in verified.signed_by)
    backend = LogBackend(store_url, create=False, readonly=True)
    try:
        latest = backend.latest_checkpoint()
    finally:
        backend.close()
    assert latest is not None and "— old " not in latest.note


# --- approvals ------------------------------------------------------------------------------


def request(now: int) -> ApprovalRequest:
    return ApprovalRequest(
        request_id="req-" + "a" * 28,
        decision_id="d" * 32,
        thread="t1",
        tool_call_id="c1",
        tool="pay",
        args={"account": "acc-1", "amount": 500},
        principal='User::"alice"',
        agent="worker",
        action_digest="0" * 64,
        policy_hash="0" * 64,
        policy_ids=["pay-large"],
        reasons=["payments over 100 need a second pair of eyes"],
        approvers=["finance"],
        risk="high",
        created_us=now,
        expires_us=now + 60_000_000,
    )


def test_an_approval_is_answered_once_and_used_once(store_url: str) -> None:
    now = 1_800_000_000_000_000
    SignedLog.open(store_url, signer=Signer.generate("a")).close()
    worker, approver = ApprovalStore.open(store_url), ApprovalStore.open(store_url)
    stored = worker.create(request(now))
    assert worker.create(request(now)) == stored  # a re-executed node finds the first
    approver.submit(stored.request_id, {"answer": 1}, now_us=now + 1)
    with pytest.raises(ApprovalRefused, match="already answered"):
        approver.submit(stored.request_id, {"answer": 2}, now_us=now + 2)
    got = worker.get(stored.request_id)
    assert got is not None and got.answer == {"answer": 1}
    # Many workers race to use the answer: exactly one wins.
    stores = [ApprovalStore.open(store_url) for _ in range(8)]
    wins: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def use(store: ApprovalStore) -> None:
        barrier.wait()
        wins.append(store.consume(stored.request_id, "digest", now_us=now + 3))

    threads = [threading.Thread(target=use, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
    for store in [worker, approver, *stores]:
        store.close()


def test_an_expired_request_takes_no_answer(store_url: str) -> None:
    now = 1_800_000_000_000_000
    store = ApprovalStore.open(store_url)
    stored = store.create(request(now))
    with pytest.raises(ApprovalRefused, match="expired"):
        store.submit(stored.request_id, {"answer": 1}, now_us=stored.expires_us + 1)
    store.close()


def test_a_copy_verifies_like_the_original_on_either_backend(
    store_url: str, make_fence: Callable[..., Fence], tools: list[BaseTool], tmp_path: Path
) -> None:
    signer = Signer.generate("copy")
    key = write_private_key(tmp_path / "copy.key", signer)
    run_fence(store_url, make_fence, tools, key)
    with SignedLog.open(store_url, signer=signer) as log:
        erased = next(r.result_blob for _, r in log.read() if isinstance(r, OutcomeRecord))
        assert erased is not None
        log.erase_blob(erased, reason="DSR-1")
    original = verify_log(store_url, [signer.verifier_key])
    copy_file = tmp_path / "copy.db"
    copied = subprocess.run(
        [sys.executable, "-m", "agentfence.cli", "log", "copy", store_url, str(copy_file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert copied.returncode == 0, copied.stderr
    assert f"copied {original.entries} entries" in copied.stdout
    with fresh_schema() as empty_pg:
        copy_log(store_url, empty_pg)
        for target in (str(copy_file), empty_pg):
            again = verify_log(target, [signer.verifier_key])
            assert (again.size, again.root, again.entries) == (
                original.size,
                original.root,
                original.entries,
            )
            backend = LogBackend(target, create=False, readonly=True)
            try:
                row = backend.blob(erased)
            finally:
                backend.close()
            assert row is not None and row.erased and row.content is None
        with pytest.raises(LogError, match="already holds a decision log"):
            copy_log(store_url, empty_pg)  # never into a log that exists
