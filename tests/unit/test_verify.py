"""Tests for agentfence.verify: verify_log, receipts, evidence packs and replay.

The logs are real: a LangGraph agent (a scripted model, the demo desk's tools and policies)
runs through a fence that writes a signed SQLite log. ``build_log`` is shared with the
tamper vectors, the property tests and the CLI tests.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from agentfence import _merkle
from agentfence._log_api import dedupe_key
from agentfence._signing import Checkpoint, Signer, write_private_key, write_verifier_key
from agentfence._storage.tables import CheckpointRow, EntryRow, LogBackend
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.errors import ConfigurationError, LogError
from agentfence.fence import Fence
from agentfence.log import SignedLog, parse_entry
from agentfence.records import (
    DecisionRecord,
    KeyChangeRecord,
    LogRecord,
    OutcomeRecord,
    canonical_bytes,
    entry_bytes_from,
)
from agentfence.testing import ScriptedChatModel, tool_call
from agentfence.verify import (
    BlobError,
    CheckpointError,
    EntryError,
    EvidenceError,
    InclusionReceipt,
    OrderError,
    export_evidence,
    prove,
    replay,
    verify_evidence,
    verify_log,
    verify_receipt,
)

PRINCIPAL = 'User::"alice"'


def script(tag: str) -> list[AIMessage]:
    """Five calls, one per model turn so their order on the log is fixed: three allowed,
    two denied by policy (no approval holds: no interrupts)."""
    calls = [
        tool_call("lookup_customer", {"customer_id": "c-102"}, f"{tag}-lookup"),
        tool_call(
            "refund", {"customer_id": "c-102", "amount": 40.0, "reason": "late"}, f"{tag}-refund"
        ),
        tool_call(
            "send_email",
            {"to": "dana@customer.example", "subject": "Refund", "body": "Done."},
            f"{tag}-email",
        ),
        tool_call("delete_file", {"path": "/srv/tickets/T-1"}, f"{tag}-delete"),
        tool_call(
            "send_email",
            {"to": "x@elsewhere.example", "subject": "Ticket", "body": "All of it."},
            f"{tag}-forward",
        ),
    ]
    return [
        *(AIMessage(content="", tool_calls=[call]) for call in calls),
        AIMessage(content="done"),
    ]


def run_thread(fence: Fence, thread: str, *, principal: str | None = PRINCIPAL) -> None:
    agent: Any = create_agent(
        ScriptedChatModel(responses=script(thread)),
        TOOLS,
        middleware=[fence.middleware()],
        checkpointer=InMemorySaver(),
    )
    configurable: dict[str, Any] = {"thread_id": thread}
    if principal is not None:
        configurable["agentfence_principal"] = principal
    agent.invoke({"messages": [("user", "work the ticket")]}, {"configurable": configurable})


@dataclass
class BuiltLog:
    """A signed log on disk, its key files, and copies of it taken between phases."""

    path: Path
    key_file: Path
    pub_file: Path
    signer: Signer
    snapshots: dict[str, Path] = field(default_factory=dict)

    @property
    def vkey(self) -> str:
        return self.signer.verifier_key

    def latest_note(self) -> str:
        latest = LogBackend(self.path, create=False, readonly=True).latest_checkpoint()
        assert latest is not None
        return latest.note


def copy_log(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite log (the backup API, WAL included)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def build_log(
    directory: Path,
    *,
    threads: tuple[str, ...] = ("ticket-1", "ticket-2"),
    anonymous: bool = True,
    interval: float | None = math.inf,
) -> BuiltLog:
    """Run the scripted agent on each thread through a fence writing a signed log.

    With ``interval`` (the default) checkpoints are signed only at creation, after each
    thread and on close, so their sizes are fixed: 0, 9, 17 and 22 for the defaults (each
    thread adds 8 entries, the first also the activation; the anonymous run adds five
    decisions refused before Cedar). ``interval=None`` opens the log
    the way users do, ``log="sqlite:///…", signing_key=<key file>``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate("test-log")
    key_file = write_private_key(directory / "test-log.key", signer)
    pub_file = write_verifier_key(directory / "test-log.pub", signer.verifier)
    path = directory / "fence.db"
    built = BuiltLog(path, key_file, pub_file, signer)
    log: Any
    if interval is None:
        log = f"sqlite:///{path}"
    else:
        log = SignedLog.open(path, signer=signer, checkpoint_interval=interval)
    fence = Fence.from_directory(
        policy_dir(), tools=TOOLS, log=log, signing_key=key_file, agent="support-bot", seed=7
    )
    for thread in threads:
        run_thread(fence, thread)
        signed = fence.log
        if isinstance(signed, SignedLog):
            signed.checkpoint()
        built.snapshots[thread] = copy_log(path, directory / f"after-{thread}.db")
    if anonymous:
        run_thread(fence, "anonymous", principal=None)
    fence.close()
    return built


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("base"))


@pytest.fixture
def log(base: BuiltLog, tmp_path: Path) -> BuiltLog:
    """A private copy of the base log, to change."""
    path = copy_log(base.path, tmp_path / "fence.db")
    return BuiltLog(path, base.key_file, base.pub_file, base.signer, dict(base.snapshots))


def records(path: Path) -> list[tuple[int, LogRecord]]:
    backend = LogBackend(path, create=False, readonly=True)
    try:
        return [parse_entry(row.body) for row in backend.entries()]
    finally:
        backend.close()


def refund_seq(path: Path) -> int:
    """The seq of the first allowed refund decision (tool calls of one batch run in parallel,
    so positions within a batch vary from run to run)."""
    return next(
        seq
        for seq, r in records(path)
        if isinstance(r, DecisionRecord) and r.tool == "refund" and r.effect == "ALLOW"
    )


def sql(path: Path, *statements: str) -> None:
    """Run SQL on a log as an attacker would: with the guard triggers dropped."""
    with sqlite3.connect(path) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            conn.execute(statement)


def append_signed(built: BuiltLog, *items: LogRecord) -> None:
    with SignedLog.open(built.path, signer=built.signer, checkpoint_interval=math.inf) as signed:
        for item in items:
            signed.append(item)


# --- verify_log ----------------------------------------------------------------------------


def test_a_real_log_verifies_in_seven_numbered_steps(base: BuiltLog) -> None:
    result = verify_log(base.path, [base.vkey])
    assert [s.number for s in result.steps] == [1, 2, 3, 4, 5, 6, 7]
    assert [s.title for s in result.steps] == [
        "open",
        "checkpoint signatures",
        "entries",
        "Merkle roots",
        "saved checkpoint",
        "blobs",
        "order",
    ]
    assert result.steps[4].skipped and "--checkpoint" in result.steps[4].detail
    assert result.entries == result.size == 22
    assert result.unsigned_tail == 0
    assert result.checkpoints == 4
    assert result.decisions == 15 and result.outcomes == 6 and result.activations == 1
    assert result.signed_by == (base.vkey,)
    assert result.checkpoint == base.latest_note()
    assert result.erased_blobs == () and result.unreferenced_blobs == ()
    assert result.to_json()["verified"] is True


def test_the_user_facing_log_url_and_key_file_path_verify(tmp_path: Path) -> None:
    built = build_log(tmp_path, threads=("only",), anonymous=False, interval=None)
    result = verify_log(f"sqlite:///{built.path}", [built.pub_file.read_text().strip()])
    assert result.entries == 9 and result.size == 9


def test_keys_may_be_verifier_objects(base: BuiltLog) -> None:
    assert verify_log(base.path, [base.signer.verifier]).size == 22


def test_an_untrusted_key_is_refused_naming_both_keys(base: BuiltLog) -> None:
    other = Signer.generate("someone-else")
    with pytest.raises(CheckpointError) as caught:
        verify_log(base.path, [other.verifier_key])
    assert caught.value.attack == "checkpoint_unknown_key"
    assert caught.value.step == 2
    assert "not signed by any trusted key" in str(caught.value)
    assert "test-log+" in str(caught.value) and "someone-else+" in str(caught.value)


def test_no_key_is_a_configuration_error(base: BuiltLog) -> None:
    with pytest.raises(ConfigurationError, match="no verifier key given"):
        verify_log(base.path, [])


def test_a_missing_file_or_a_foreign_database_is_a_log_error(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no decision log at"):
        verify_log(tmp_path / "nope.db", [Signer.generate("k").verifier_key])
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(LogError, match="is not an agentfence decision log"):
        verify_log(other, [Signer.generate("k").verifier_key])


def test_failure_carries_the_steps_that_passed(log: BuiltLog) -> None:
    sql(log.path, "UPDATE blobs SET content = CAST('x' AS BLOB) WHERE rowid = 3")
    with pytest.raises(BlobError) as caught:
        verify_log(log.path, [log.vkey])
    assert [s.number for s in caught.value.steps] == [1, 2, 3, 4, 5]
    assert caught.value.step == 6
    assert "was altered" in str(caught.value)


def test_progress_is_reported_per_step(base: BuiltLog) -> None:
    seen: list[tuple[str, int, int]] = []
    verify_log(base.path, [base.vkey], progress=lambda *args: seen.append(args))
    assert ("3. entries", 22, 22) in seen
    assert seen[-1][0] == "6. blobs" and seen[-1][1] == seen[-1][2]


def test_entries_after_the_latest_checkpoint_are_an_unsigned_tail(log: BuiltLog) -> None:
    signed = SignedLog.open(log.path, signer=log.signer, checkpoint_interval=math.inf)
    first = records(log.path)[0][1]
    signed.append(first.model_copy(update={"time_us": 1}))
    signed.append(first.model_copy(update={"time_us": 2}))
    try:
        result = verify_log(log.path, [log.vkey])
    finally:
        signed.close()
    assert result.size == 22 and result.entries == 24 and result.unsigned_tail == 2
    assert "2 entries after the latest checkpoint are not signed yet" in result.steps[3].detail
    assert verify_log(log.path, [log.vkey]).unsigned_tail == 0


def test_a_saved_checkpoint_is_extended_with_a_consistency_proof(log: BuiltLog) -> None:
    saved = log.latest_note()
    append_signed(log, records(log.path)[0][1].model_copy(update={"time_us": 5}))
    result = verify_log(log.path, [log.vkey], saved_checkpoint=saved)
    assert result.saved_checkpoint_size == 22 and result.size == 23
    assert not result.steps[4].skipped
    assert "the log extends your checkpoint of size 22" in result.steps[4].detail
    assert "consistency proof of" in result.steps[4].detail


def test_a_saved_checkpoint_of_the_same_size_verifies(base: BuiltLog) -> None:
    result = verify_log(base.path, [base.vkey], saved_checkpoint=base.latest_note())
    assert "your checkpoint of size 22 is the log's latest" in result.steps[4].detail


def test_a_saved_checkpoint_edited_by_an_editor_still_reads(base: BuiltLog) -> None:
    # Windows line ends and an extra final newline are not part of the signed text.
    kept = base.latest_note().replace("\n", "\r\n") + "\r\n"
    assert verify_log(base.path, [base.vkey], saved_checkpoint=kept).saved_checkpoint_size == 22
    flipped = base.latest_note().replace("agentfence/fence", "agentfence/fencf")
    with pytest.raises(CheckpointError, match="the saved checkpoint was altered"):
        verify_log(base.path, [base.vkey], saved_checkpoint=flipped)


def test_a_saved_checkpoint_must_be_this_logs_and_trusted(base: BuiltLog) -> None:
    elsewhere = Checkpoint("agentfence/elsewhere", 1, _merkle.leaf_hash(b"x"))
    with pytest.raises(CheckpointError, match="is for log 'agentfence/elsewhere'") as caught:
        verify_log(base.path, [base.vkey], saved_checkpoint=base.signer.sign_note(elsewhere.body()))
    assert caught.value.step == 5 and caught.value.attack == "checkpoint_wrong_log"
    stranger = Signer.generate("stranger")
    unknown = Checkpoint("agentfence/fence", 1, _merkle.leaf_hash(b"x"))
    with pytest.raises(CheckpointError, match="the saved checkpoint is not signed") as caught:
        verify_log(base.path, [base.vkey], saved_checkpoint=stranger.sign_note(unknown.body()))
    assert caught.value.attack == "checkpoint_unknown_key"


def test_index_columns_must_match_the_entry(log: BuiltLog) -> None:
    sql(log.path, "UPDATE entries SET effect = 'ALLOW' WHERE effect = 'DENY'")
    with pytest.raises(EntryError) as caught:
        verify_log(log.path, [log.vkey])
    assert caught.value.attack == "index_altered"
    assert "index columns were altered" in str(caught.value)
    assert "'ALLOW'" in str(caught.value) and "'DENY'" in str(caught.value)


def test_a_hidden_key_change_is_found(tmp_path: Path) -> None:
    built = build_log(tmp_path, threads=("t",), anonymous=False)
    with SignedLog.open(built.path, signer=built.signer, checkpoint_interval=math.inf) as signed:
        signed.rotate_key(Signer.generate("next"))
    sql(built.path, "UPDATE entries SET kind = 'agentfence.keychange/v0' WHERE seq = 9")
    with pytest.raises(EntryError, match="index columns were altered"):
        verify_log(built.path, [built.vkey])


# --- key rotation --------------------------------------------------------------------------


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[BuiltLog, Signer]:
    built = build_log(tmp_path, threads=("t",), anonymous=False)
    new = Signer.generate("test-log-2026")
    # An infinite interval keeps the append of the key change from signing a checkpoint of
    # its own (with the old key alone), which would take the handover's size.
    with SignedLog.open(built.path, signer=built.signer, checkpoint_interval=math.inf) as signed:
        signed.rotate_key(new)
    append_signed(
        BuiltLog(built.path, built.key_file, built.pub_file, new),
        records(built.path)[0][1].model_copy(update={"time_us": 9}),
    )
    return built, new


def test_rotation_verifies_with_the_old_key_the_new_key_or_both(
    rotated: tuple[BuiltLog, Signer],
) -> None:
    built, new = rotated
    for keys in ([built.vkey], [new.verifier_key], [built.vkey, new.verifier_key]):
        result = verify_log(built.path, keys)
        assert result.size == 11
        assert result.signed_by == (new.verifier_key,)
        assert [(k.seq, k.old_key, k.new_key) for k in result.key_changes] == [
            (9, built.vkey, new.verifier_key)
        ]
        assert "; 1 key change" in result.steps[1].detail


def _sign_raw(path: Path, signer: Signer, *, size: int | None = None) -> None:
    """Store a checkpoint of the log's current tree signed by ``signer`` alone."""
    backend = LogBackend(path)
    leaves = backend.leaf_hashes(size)
    frontier = _merkle.MerkleFrontier.from_leaf_hashes(leaves)
    checkpoint = Checkpoint("agentfence/fence", frontier.size, frontier.root())
    backend.insert_checkpoint(
        CheckpointRow(
            frontier.size,
            checkpoint.root,
            signer.sign_note(checkpoint.body()),
            frontier.state().to_bytes(),
            1,
        )
    )
    backend.close()


def _append_raw(path: Path, record: LogRecord) -> None:
    """Append an entry as the writer would, but without signing anything."""
    backend = LogBackend(path)
    with backend.transaction() as tx:
        state = tx.tree_state()
        assert state is not None
        frontier = _merkle.MerkleFrontier.from_state(_merkle.FrontierState.from_bytes(state[1]))
        seq = frontier.size
        body = entry_bytes_from(seq, canonical_bytes(record))
        leaf = _merkle.leaf_hash(body)
        frontier.append(leaf)
        tx.insert_entries(
            [EntryRow(seq, record.format, dedupe_key(record), body, leaf, None, None, None, 1)]
        )
        tx.set_tree_state(frontier.size, frontier.state().to_bytes())
    backend.close()


def test_a_key_change_without_the_old_keys_handover_is_a_takeover(tmp_path: Path) -> None:
    built = build_log(tmp_path, threads=("t",), anonymous=False)
    evil = Signer.generate("test-log")
    _append_raw(
        built.path, KeyChangeRecord(old_key=built.vkey, new_key=evil.verifier_key, time_us=1)
    )
    _sign_raw(built.path, evil)
    with pytest.raises(CheckpointError) as caught:
        verify_log(built.path, [built.vkey])
    assert caught.value.attack == "checkpoint_unknown_key"
    assert "the latest checkpoint (size 10) is not signed by a trusted key" in str(caught.value)


def test_a_retired_key_may_not_sign_after_its_handover(
    rotated: tuple[BuiltLog, Signer],
) -> None:
    built, new = rotated
    _append_raw(built.path, records(built.path)[0][1].model_copy(update={"time_us": 10}))
    _sign_raw(built.path, built.signer)  # size 12, long after the handover at 10
    with pytest.raises(CheckpointError) as caught:
        verify_log(built.path, [built.vkey, new.verifier_key])
    assert caught.value.attack == "checkpoint_wrong_key"
    assert "may sign only sizes 0 to 9 and the handover at 10" in str(caught.value)


def test_a_new_key_may_not_sign_history_before_its_key_change(
    rotated: tuple[BuiltLog, Signer],
) -> None:
    built, new = rotated
    sql(built.path, "DELETE FROM checkpoints WHERE size = 9")
    _sign_raw(built.path, new, size=9)
    with pytest.raises(CheckpointError, match="a new key signed history from before") as caught:
        verify_log(built.path, [new.verifier_key])
    assert caught.value.attack == "checkpoint_wrong_key"


# --- blobs and erasure ---------------------------------------------------------------------


def test_an_erased_blob_is_reported_not_failed(log: BuiltLog) -> None:
    decision = next(r for _, r in records(log.path) if isinstance(r, DecisionRecord))
    assert decision.request_blob is not None
    with SignedLog.open(log.path, signer=log.signer) as signed:
        erasure = signed.erase_blob(decision.request_blob, reason="DSR-42")
    result = verify_log(log.path, [log.vkey])
    assert [(b.ref, b.seq, b.reason) for b in result.erased_blobs] == [
        (decision.request_blob, erasure.seq, "DSR-42")
    ]
    assert "1 erased, each with an erasure entry" in result.steps[5].detail


def test_a_missing_blob_fails_naming_the_entry(log: BuiltLog) -> None:
    decision_seq, decision = next(
        (s, r) for s, r in records(log.path) if isinstance(r, DecisionRecord)
    )
    sql(log.path, f"DELETE FROM blobs WHERE ref = '{decision.request_blob}'")
    with pytest.raises(BlobError) as caught:
        verify_log(log.path, [log.vkey])
    assert caught.value.attack == "blob_deleted"
    assert f"referenced by entry {decision_seq} is missing" in str(caught.value)


def test_an_unreferenced_blob_is_reported(log: BuiltLog) -> None:
    with sqlite3.connect(log.path) as conn:
        conn.execute("INSERT INTO blobs (ref, salt, content) VALUES ('sha256:00', x'00', x'00')")
    with pytest.raises(BlobError, match="blob sha256:00 was altered"):
        verify_log(log.path, [log.vkey])


def test_an_activation_must_match_its_policy_texts(log: BuiltLog) -> None:
    activation = records(log.path)[0][1]
    append_signed(log, activation.model_copy(update={"policy_hash": "0" * 64, "time_us": 3}))
    with pytest.raises(BlobError) as caught:
        verify_log(log.path, [log.vkey])
    assert caught.value.attack == "activation_mismatch"
    assert "the activation at entry 22 does not match the policy set it names" in str(caught.value)
    assert "its files and schema hash to policy set" in str(caught.value)


# --- order ---------------------------------------------------------------------------------


def _activation(built: BuiltLog) -> LogRecord:
    return records(built.path)[0][1]


def test_an_outcome_without_its_decision_is_out_of_order(log: BuiltLog) -> None:
    append_signed(
        log,
        OutcomeRecord(decision_id="f" * 32, status="success", result_digest="0" * 64, time_us=1),
    )
    with pytest.raises(OrderError) as caught:
        verify_log(log.path, [log.vkey])
    assert caught.value.step == 7 and caught.value.attack == "out_of_order"
    assert "belongs to decision ffffffff" in str(caught.value)
    assert "which no earlier entry records" in str(caught.value)


def test_an_outcome_of_a_denied_call_is_out_of_order(log: BuiltLog) -> None:
    denied = next(
        r for _, r in records(log.path) if isinstance(r, DecisionRecord) and r.effect == "DENY"
    )
    append_signed(
        log,
        OutcomeRecord(
            decision_id=denied.decision_id, status="success", result_digest="0" * 64, time_us=1
        ),
    )
    with pytest.raises(OrderError, match="which was DENY and not approved"):
        verify_log(log.path, [log.vkey])


def test_a_decision_under_an_unactivated_policy_set_is_out_of_order(log: BuiltLog) -> None:
    decision = next(r for _, r in records(log.path) if isinstance(r, DecisionRecord))
    append_signed(
        log,
        decision.model_copy(
            update={"decision_id": "e" * 32, "policy_hash": "ab" * 32, "request_blob": None}
        ),
    )
    with pytest.raises(OrderError, match="no earlier activation entry activated"):
        verify_log(log.path, [log.vkey])


def test_the_demo_run_with_an_approval_verifies(tmp_path: Path) -> None:
    from agentfence import demo

    run = demo.run(tmp_path / "demo")
    result = verify_log(run.log_path, [run.verifier_key])
    assert result.outcomes == 4
    # C2SP tlog-checkpoint: the key name SHOULD match the checkpoint origin.
    assert result.origin == "agentfence/demo-log"
    assert run.verifier_key.startswith("agentfence/demo-log+")
    assert result.checkpoint.splitlines()[0] == result.origin
    assert "outcomes follow their allowed or approved decisions" in result.steps[6].detail
    # The held refund ran only after an accepted answer: without the answer on record, its
    # outcome is out of order (checked on an evidence pack, whose entries prove separately).
    pack = tmp_path / "pack.json"
    export_evidence(run.log_path, pack, keys=[run.verifier_key], thread=demo.THREAD)
    data = json.loads(pack.read_text())
    kinds = [e["record"]["format"] for e in data["entries"]]
    assert "agentfence.approval_request/v1" in kinds and "agentfence.approval_answer/v1" in kinds
    assert verify_evidence(pack, [run.verifier_key]).thread == demo.THREAD
    data["entries"] = [
        e for e in data["entries"] if e["record"]["format"] != "agentfence.approval_answer/v1"
    ]
    pack.write_text(json.dumps(data))
    with pytest.raises(OrderError, match="which was REQUIRE_APPROVAL and not approved"):
        verify_evidence(pack, [run.verifier_key])


# --- receipts ------------------------------------------------------------------------------


def test_a_receipt_verifies_on_its_own(base: BuiltLog) -> None:
    seq = refund_seq(base.path)
    receipt = prove(base.path, seq)
    again = InclusionReceipt.from_json(receipt.to_json())
    verified = verify_receipt(again, [base.vkey])
    assert verified.seq == seq and verified.tree_size == 22
    assert isinstance(verified.record, DecisionRecord)
    assert verified.record.model_dump(mode="json") == receipt.record
    assert verified.signed_by == (base.vkey,)


def test_a_receipt_against_a_saved_checkpoint(base: BuiltLog) -> None:
    older = sorted(LogBackend(base.path, readonly=True).checkpoints(), key=lambda c: c.size)
    receipt = prove(base.path, 3, checkpoint=older[1].note)
    assert receipt.tree_size == 9
    assert verify_receipt(receipt, [base.vkey]).tree_size == 9


def test_a_receipt_for_an_unsigned_entry_is_refused(base: BuiltLog) -> None:
    with pytest.raises(ConfigurationError, match="entry 22 is not covered by the checkpoint"):
        prove(base.path, 22)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("entry", EntryError, "hash to"),
        ("record", EntryError, "readable record shown for entry {seq} differs"),
        ("proof", EntryError, "is not in the signed tree of size 22"),
        ("seq", EntryError, "say they are entry {seq}"),
        ("checkpoint", CheckpointError, "was altered"),
    ],
)
def test_an_edited_receipt_fails(
    base: BuiltLog, change: str, error: type[Exception], message: str
) -> None:
    seq = refund_seq(base.path)
    data = json.loads(prove(base.path, seq).to_json())
    if change == "entry":
        raw = base64.b64decode(data["entry"]).replace(b'"ALLOW"', b'"DENY"')
        data["entry"] = base64.b64encode(raw).decode()
        data["record"]["effect"] = "DENY"
    elif change == "record":
        data["record"]["effect"] = "DENY"
    elif change == "proof":
        data["inclusion"][0] = "00" * 32
    elif change == "seq":
        data["seq"] = seq + 1
    else:
        data["checkpoint"] = data["checkpoint"].replace("\n22\n", "\n23\n")
        data["tree_size"] = 23
    with pytest.raises(error, match=message.format(seq=seq)):
        verify_receipt(InclusionReceipt.from_json(json.dumps(data)), [base.vkey])


def test_a_malformed_receipt_names_the_field() -> None:
    with pytest.raises(EvidenceError, match=r"not an agentfence\.receipt/v1 receipt: origin"):
        InclusionReceipt.from_json('{"format": "agentfence.receipt/v1", "seq": 1}')


# --- evidence packs ------------------------------------------------------------------------


def test_an_evidence_pack_of_one_thread_verifies_offline(base: BuiltLog, tmp_path: Path) -> None:
    pack = tmp_path / "pack.json"
    exported = export_evidence(base.path, pack, keys=[base.vkey], thread="ticket-2")
    verified = verify_evidence(pack, [base.vkey])
    assert verified == exported
    kinds = [r.format for _, r in verified.records]
    assert kinds.count("agentfence.decision/v1") == 5
    assert kinds.count("agentfence.outcome/v1") == 3
    assert kinds.count("agentfence.activation/v1") == 1
    threads = {r.thread for _, r in verified.records if isinstance(r, DecisionRecord)}
    assert threads == {"ticket-2"}
    (texts,) = verified.policies.values()
    assert "refund-small" in texts["payments.cedar"]
    assert [s.number for s in verified.steps] == [1, 2, 3, 4, 5]
    data = json.loads(pack.read_text())
    assert data["format"] == "agentfence.evidence/v1" and data["keys"] == [base.vkey]


def _edited_pack(base: BuiltLog, tmp_path: Path, edit: Any) -> Path:
    pack = tmp_path / "pack.json"
    export_evidence(base.path, pack, keys=[base.vkey], thread="ticket-1")
    data = json.loads(pack.read_text())
    edit(data)
    pack.write_text(json.dumps(data))
    return pack


def test_an_edited_pack_record_fails(base: BuiltLog, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        entry = next(e for e in data["entries"] if e["record"].get("effect") == "DENY")
        entry["record"]["effect"] = "ALLOW"

    with pytest.raises(EntryError, match=r"readable record shown for entry \d+ differs"):
        verify_evidence(_edited_pack(base, tmp_path, edit), [base.vkey])


def test_an_altered_pack_blob_fails(base: BuiltLog, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["blobs"][0]["content"] = base64.b64encode(b"policy texts I prefer").decode()

    with pytest.raises(BlobError, match="was altered"):
        verify_evidence(_edited_pack(base, tmp_path, edit), [base.vkey])


def test_a_pack_missing_an_outcomes_decision_fails(base: BuiltLog, tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["entries"] = [
            e for e in data["entries"] if e["record"]["format"] != "agentfence.decision/v1"
        ]

    with pytest.raises(OrderError, match="which no earlier entry records"):
        verify_evidence(_edited_pack(base, tmp_path, edit), [base.vkey])


def test_a_pack_needs_a_trusted_key(base: BuiltLog, tmp_path: Path) -> None:
    pack = tmp_path / "pack.json"
    export_evidence(base.path, pack, keys=[base.vkey], thread="ticket-1")
    with pytest.raises(CheckpointError, match="not signed by any trusted key"):
        verify_evidence(pack, [Signer.generate("other").verifier_key])


def test_a_pack_follows_a_rotation_with_either_key(
    rotated: tuple[BuiltLog, Signer], tmp_path: Path
) -> None:
    built, new = rotated
    pack = tmp_path / "pack.json"
    export_evidence(built.path, pack, keys=[new.verifier_key], thread="t")
    data = json.loads(pack.read_text())
    assert data["keys"] == [built.vkey, new.verifier_key]
    assert [h["key_change"] for h in data["handovers"]] == [9]
    for keys in ([built.vkey], [new.verifier_key]):
        assert verify_evidence(pack, keys).signed_by == (new.verifier_key,)


def test_an_unknown_thread_is_a_configuration_error(base: BuiltLog, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no decision of thread 'nope'"):
        export_evidence(base.path, tmp_path / "p.json", keys=[base.vkey], thread="nope")


def test_export_refuses_a_log_that_does_not_verify(log: BuiltLog, tmp_path: Path) -> None:
    sql(log.path, "UPDATE blobs SET content = CAST('x' AS BLOB) WHERE rowid = 2")
    with pytest.raises(BlobError):
        export_evidence(log.path, tmp_path / "p.json", keys=[log.vkey])
    assert not (tmp_path / "p.json").exists()


# --- replay --------------------------------------------------------------------------------


def test_replay_reproduces_every_recorded_decision(base: BuiltLog) -> None:
    report = replay(base.path)
    assert report.mode == "recorded"
    assert report.decisions == 15 and report.replayed == 10 and report.unchanged == 10
    assert report.changes == ()
    assert [n.reason for n in report.not_replayable] == ["refused_before_cedar"] * 5
    assert report.recorded_engines == (report.engine,)
    assert report.to_json()["not_replayable"] == {"refused_before_cedar": 5}


def test_replay_what_if_lists_what_would_change(base: BuiltLog, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    shutil.copytree(policy_dir(), candidate)
    payments = candidate / "payments.cedar"
    payments.write_text(payments.read_text().replace('decimal("100.0")', 'decimal("10.0")'))
    report = replay(base.path, policies=candidate)
    assert report.mode == "what-if" and report.policies == str(candidate)
    assert report.replayed == 10 and len(report.changes) == 2
    for change in report.changes:
        assert change.tool == "refund"
        assert (change.recorded_effect, change.replayed_effect) == ("ALLOW", "REQUIRE_APPROVAL")
        assert change.recorded_policies == ("refund-small",)
        assert change.replayed_policies == ("refund-needs-finance",)
    assert {c.thread for c in report.changes} == {"ticket-1", "ticket-2"}


def test_replay_lists_a_reworded_reason_apart_and_never_as_a_change(
    base: BuiltLog, tmp_path: Path
) -> None:
    """What decides is the effect and the determining policies; a policy set whose only
    difference is a @reason's wording changes no decision (replay --fail-on-change must
    not fail a build for it), and the reworded decisions are listed apart."""
    candidate = tmp_path / "reworded"
    shutil.copytree(policy_dir(), candidate)
    payments = candidate / "payments.cedar"
    old = '@reason("refunds up to EUR 100 are routine for support staff")'
    assert old in payments.read_text()
    payments.write_text(payments.read_text().replace(old, '@reason("small refunds are routine")'))
    report = replay(base.path, policies=candidate)
    assert report.changes == ()
    assert report.reworded and {c.tool for c in report.reworded} == {"refund"}
    for change in report.reworded:
        assert change.recorded_effect == change.replayed_effect == "ALLOW"
        assert change.replayed_reasons == ("small refunds are routine",)
    assert report.unchanged + len(report.reworded) == report.replayed
    assert report.to_json()["changed"] == 0 and len(report.to_json()["reworded"]) == len(
        report.reworded
    )


def test_replay_of_an_erased_request_is_not_replayable(log: BuiltLog) -> None:
    decision = next(r for _, r in records(log.path) if isinstance(r, DecisionRecord))
    assert decision.request_blob is not None
    with SignedLog.open(log.path, signer=log.signer) as signed:
        signed.erase_blob(decision.request_blob, reason="DSR-7")
    report = replay(log.path)
    assert report.replayed == 9
    assert {n.reason for n in report.not_replayable} == {"refused_before_cedar", "request_erased"}


def test_replay_detects_a_recorded_decision_that_does_not_reproduce(log: BuiltLog) -> None:
    # Sign a decision the recorded policies would not make: a forged allow of the deletion.
    denied = next(
        r for _, r in records(log.path) if isinstance(r, DecisionRecord) and r.tool == "delete_file"
    )
    append_signed(
        log,
        denied.model_copy(
            update={"decision_id": "d" * 32, "effect": "ALLOW", "policy_ids": [], "reasons": []}
        ),
    )
    report = replay(log.path)
    (change,) = report.changes
    assert (change.recorded_effect, change.replayed_effect) == ("ALLOW", "DENY")
    assert change.replayed_policies == ("no-deletes",)


def test_replay_in_worker_processes_gives_the_same_report(base: BuiltLog) -> None:
    one = replay(base.path, workers=1)
    two = replay(base.path, workers=2)
    assert (two.decisions, two.replayed, two.changes, two.not_replayable) == (
        one.decisions,
        one.replayed,
        one.changes,
        one.not_replayable,
    )


def test_an_allowed_decision_without_an_outcome_is_reported_as_its_own_state(
    log: BuiltLog,
) -> None:
    # What a crash in the flush window leaves: the tool was let run, its outcome is not there.
    assert verify_log(log.path, [log.vkey]).without_outcome == 0
    allowed = next(
        r for _, r in records(log.path) if isinstance(r, DecisionRecord) and r.effect == "ALLOW"
    )
    cut_off = allowed.model_copy(update={"decision_id": "f" * 32, "tool_call_id": "cut-off"})
    append_signed(log, cut_off)
    result = verify_log(log.path, [log.vkey])
    assert result.without_outcome == 1
    assert "1 let a tool run with no outcome recorded (ran, outcome not recorded)" in (
        result.steps[6].detail
    )
    assert result.to_json()["without_outcome"] == 1


def test_replay_finds_no_change_in_a_decision_by_a_policy_without_a_reason(
    tmp_path: Path,
) -> None:
    """A policy with @id but no @reason gets a default reason naming where it is written.
    That must not depend on the path the policies were loaded from, or replay (which
    rebuilds them from the log's recorded texts) reports every such decision as changed and
    `replay --fail-on-change` fails every build."""
    policies = tmp_path / "deploy" / "policies"
    shutil.copytree(policy_dir(), policies)
    (policies / "ops.cedar").write_text(
        '@id("ops-lookups")\npermit (principal, action == Action::"lookup_customer", resource);\n'
    )
    signer = Signer.generate("reasons")
    path = tmp_path / "reasons.db"
    fence = Fence.from_directory(policies, tools=TOOLS, log=f"sqlite:///{path}", signing_key=signer)
    call = tool_call("lookup_customer", {"customer_id": "c-102"}, "call-1")
    node_input = AIMessage(content="", tool_calls=[call])
    decision = fence.decide(
        "lookup_customer", call["args"], principal='User::"alice"', tool_call_id="call-1"
    )
    assert "ops-lookups" in decision.policy_ids
    assert "policy ops-lookups (ops.cedar:1) permits this call" in decision.reasons
    agent = create_agent(
        ScriptedChatModel(responses=[node_input, AIMessage(content="done")]),
        TOOLS,
        middleware=[fence.middleware()],
        checkpointer=InMemorySaver(),
    )
    agent.invoke(
        {"messages": [("user", "look c-102 up")]},
        {"configurable": {"thread_id": "t-1", "agentfence_principal": 'User::"alice"'}},
    )
    fence.close()
    report = replay(path)
    assert report.replayed >= 1 and report.changes == ()
