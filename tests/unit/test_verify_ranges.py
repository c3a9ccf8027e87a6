"""verify_log over ranges of entries in worker processes, and the fast reading of entries.

Ranges are made 8 entries long so the test log (22 entries, checkpoints at 0, 9, 17 and 22)
spans three: positions 0-7, 8-15 and 16-21. Every attack is placed in the second range and
at the boundary between the first and the second, checked by two spawned worker processes,
and must be reported exactly as the one-process verifier (one range, in this process)
reports it: the same error type, message, step and attack.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentfence.errors import LogVerificationError, OrderError, VerificationError
from agentfence.log import parse_entry
from agentfence.records import (
    ActivationRecord,
    ApprovalAnswerRecord,
    ApprovalRequestRecord,
    DecisionRecord,
    OutcomeRecord,
    canonical_bytes,
    entry_bytes_from,
)
from agentfence.verify import EntryError, _check, _entries, verify_log
from agentfence.verify._common import KEEP_EVIDENCE
from agentfence.verify._order import Block, OrderCheck
from agentfence.verify._snapshot import ENTRY_ADAPTER
from tests.unit.test_verify import BuiltLog, append_signed, build_log, copy_log, records, sql

SHORT = 8


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("ranges"))


@pytest.fixture
def log(base: BuiltLog, tmp_path: Path) -> BuiltLog:
    path = copy_log(base.path, tmp_path / "fence.db")
    return BuiltLog(path, base.key_file, base.pub_file, base.signer)


def failure(path: Path, vkey: str, monkeypatch: pytest.MonkeyPatch, *, ranged: bool) -> Any:
    """What verify_log raises: in one range in this process, or in short ranges in two
    worker processes."""
    with monkeypatch.context() as patch:
        if ranged:
            patch.setattr(_entries, "RANGE", SHORT)
        with pytest.raises(LogVerificationError) as caught:
            verify_log(path, [vkey], workers=2 if ranged else 1)
    exc = caught.value
    return type(exc), str(exc), exc.step, exc.attack


def same_failure(built: BuiltLog, monkeypatch: pytest.MonkeyPatch) -> Any:
    sequential = failure(built.path, built.vkey, monkeypatch, ranged=False)
    assert failure(built.path, built.vkey, monkeypatch, ranged=True) == sequential
    return sequential


def rewrite(path: Path, seq: int, body: bytes, *, rehash: bool = False) -> None:
    import hashlib

    leaf = hashlib.sha256(b"\x00" + body).digest()
    statement = f"UPDATE entries SET body = X'{body.hex()}'"
    if rehash:
        statement += f", leaf_hash = X'{leaf.hex()}'"
    sql(path, statement + f" WHERE seq = {seq}")


def body_of(path: Path, seq: int) -> bytes:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return bytes(conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0])


# --- the same log, the same result -----------------------------------------------------------


def test_worker_ranges_verify_a_log_as_one_process_does(
    base: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = verify_log(base.path, [base.vkey], workers=1)
    monkeypatch.setattr(_entries, "RANGE", SHORT)
    ticks: list[tuple[str, int, int]] = []
    many = verify_log(base.path, [base.vkey], workers=2, progress=lambda *tick: ticks.append(tick))
    assert many.entries == one.entries == 22
    assert (many.root, many.size, many.decisions, many.outcomes, many.steps) == (
        one.root,
        one.size,
        one.decisions,
        one.outcomes,
        one.steps,
    )
    # The progress bar moves once per range, up to every entry.
    assert [t for t in ticks if t[0] == "3. entries"] == [
        ("3. entries", 0, 22),
        ("3. entries", 8, 22),
        ("3. entries", 16, 22),
        ("3. entries", 22, 22),
    ]


def test_a_saved_checkpoint_inside_a_worker_range_is_extended(
    base: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = (base.snapshots["ticket-1"], 9)
    from agentfence._storage.tables import LogBackend

    note = LogBackend(saved[0], create=False, readonly=True).latest_checkpoint()
    assert note is not None and note.size == saved[1]
    monkeypatch.setattr(_entries, "RANGE", SHORT)
    result = verify_log(base.path, [base.vkey], workers=2, saved_checkpoint=note.note)
    assert result.saved_checkpoint_size == 9


# --- attacks in the second range and at its boundary -------------------------------------------

POSITIONS = [11, 8, 7]  # inside the second range, its first entry, the first range's last


@pytest.mark.parametrize("seq", POSITIONS)
def test_a_modified_entry_in_a_worker_range_is_reported_as_before(
    log: BuiltLog, seq: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rewrite(log.path, seq, body_of(log.path, seq).replace(b'"seq":', b'"seq" :'))
    kind, message, step, attack = same_failure(log, monkeypatch)
    assert (kind, step, attack) == (EntryError, 3, "entry_modified")
    assert message.startswith(f"entry {seq} was modified: its bytes no longer hash")


@pytest.mark.parametrize("seq", POSITIONS)
def test_a_deleted_entry_in_a_worker_range_is_reported_as_before(
    log: BuiltLog, seq: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql(log.path, f"DELETE FROM entries WHERE seq = {seq}")
    kind, message, step, attack = same_failure(log, monkeypatch)
    assert (kind, step, attack) == (EntryError, 3, "entry_deleted")
    assert message.startswith(f"entry {seq} was deleted: the stored entries jump from")


@pytest.mark.parametrize("seq", POSITIONS)
def test_a_reordered_pair_in_a_worker_range_is_reported_as_before(
    log: BuiltLog, seq: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql(
        log.path,
        f"UPDATE entries SET seq = -1 WHERE seq = {seq}",
        f"UPDATE entries SET seq = {seq} WHERE seq = {seq + 1}",
        f"UPDATE entries SET seq = {seq + 1} WHERE seq = -1",
    )
    kind, message, step, attack = same_failure(log, monkeypatch)
    assert (kind, step, attack) == (EntryError, 3, "entries_reordered")
    assert f"the entry stored at position {seq} says it is entry {seq + 1}" in message


@pytest.mark.parametrize("seq", POSITIONS)
def test_wrong_index_columns_in_a_worker_range_are_reported_as_before(
    log: BuiltLog, seq: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql(log.path, f"UPDATE entries SET time_us = time_us + 1 WHERE seq = {seq}")
    kind, message, step, attack = same_failure(log, monkeypatch)
    assert (kind, step, attack) == (EntryError, 3, "index_altered")
    assert message.startswith(f"entry {seq}'s index columns were altered")


@pytest.mark.parametrize("seq", POSITIONS)
def test_a_rewritten_leaf_hash_in_a_worker_range_is_reported_as_before(
    log: BuiltLog, seq: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The entry's bytes changed and its leaf hash rewritten to match: only the signed root
    # of the checkpoint that covers it (size 9 or 17) shows the rewrite.
    rewrite(log.path, seq, body_of(log.path, seq).replace(b'"seq":', b'"seq" :'), rehash=True)
    kind, message, step, attack = same_failure(log, monkeypatch)
    assert (kind, step, attack) == (EntryError, 4, "history_rewritten")
    size = 9 if seq < 9 else 17
    assert f"signed root of the checkpoint of size {size}" in message


def test_of_two_bad_entries_in_different_ranges_the_lower_is_reported(
    log: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The later range holds the lower bad entry's follower: the third range (16-21) may
    # finish first, and still the second range's fault is the one reported.
    sql(
        log.path,
        "UPDATE entries SET time_us = time_us + 1 WHERE seq = 18",
        "UPDATE entries SET time_us = time_us + 1 WHERE seq = 12",
    )
    kind, message, _, attack = same_failure(log, monkeypatch)
    assert (kind, attack) == (EntryError, "index_altered")
    assert message.startswith("entry 12's index columns were altered")
    sql(log.path, "DELETE FROM entries WHERE seq = 3")
    kind, message, _, attack = same_failure(log, monkeypatch)
    assert (kind, attack) == (EntryError, "entry_deleted")
    assert message.startswith("entry 3 was deleted")


def test_a_row_stored_below_zero_is_found_at_position_zero(
    log: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql(log.path, "UPDATE entries SET seq = -5 WHERE seq = 0")
    kind, message, _, attack = same_failure(log, monkeypatch)
    assert (kind, attack) == (EntryError, "entry_deleted")
    assert message.startswith("entry 0 was deleted: the stored entries jump from -1 to -5")


def _dying_pool(processes: int) -> ProcessPoolExecutor:
    # Each worker process exits as it starts, before it checks anything.
    return ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=os._exit,
        initargs=(9,),
    )


def test_a_worker_that_dies_is_an_error_never_a_pass(
    base: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_entries, "RANGE", SHORT)
    monkeypatch.setattr(_entries, "start_pool", _dying_pool)
    with pytest.raises(VerificationError) as caught:
        verify_log(base.path, [base.vkey], workers=2)
    assert "a worker process checking entries 0 to 7 died" in str(caught.value)
    assert "the log is not verified" in str(caught.value)
    assert "--workers 1" in str(caught.value)


# --- the fast reading agrees with strict validation -----------------------------------------


def strict(body: bytes) -> Any:
    """The values strict validation reads, or the error it raises."""
    try:
        entry = ENTRY_ADAPTER.validator.validate_json(body, strict=True)
    except ValidationError as exc:
        return exc
    record = entry.record
    if isinstance(record, DecisionRecord):
        return (
            entry.seq,
            record.decision_id,
            record.effect,
            record.policy_hash,
            record.request_blob,
            record.thread,
            record.tool,
            record.time_us,
        )
    if isinstance(record, OutcomeRecord):
        return (entry.seq, record.decision_id, record.result_blob, record.time_us)
    return record


def agree(body: bytes) -> Any:
    """The fast reading accepts only what strict validation accepts, with the same values."""
    fast = _entries.read_fast(body)
    if fast is not None:
        assert strict(body) == fast
    return fast


def test_every_canonical_decision_and_outcome_is_read_fast(base: BuiltLog) -> None:
    read = 0
    for seq, record in records(base.path):
        body = entry_bytes_from(seq, canonical_bytes(record))
        if isinstance(record, DecisionRecord | OutcomeRecord):
            assert agree(body) is not None, body
            read += 1
        else:
            assert _entries.read_fast(body) is None
    assert read == 21


def _decision_body(base: BuiltLog) -> bytes:
    seq, record = next(
        (s, r) for s, r in records(base.path) if isinstance(r, DecisionRecord) and r.request_blob
    )
    return entry_bytes_from(seq, canonical_bytes(record))


ENTRY_HEAD = b'{"format":"agentfence.entry/v1","record":'
MALFORMED = {
    "white space": lambda b: b.replace(b'"seq":', b'"seq": '),
    "keys out of order": lambda b: b.replace(ENTRY_HEAD, b'{"record":').replace(
        b',"seq":', b',"format":"agentfence.entry/v1","seq":'
    ),
    "unknown key": lambda b: b.replace(b'"action":', b'"extra":1,"action":'),
    "string for an int": lambda b: b.replace(b'"seed":7', b'"seed":"7"'),
    "float for an int": lambda b: b.replace(b'"seed":7', b'"seed":7.0'),
    "bool for an int": lambda b: b.replace(b'"seed":7', b'"seed":true'),
    "int for a string": lambda b: b.replace(b'"agent":"support-bot"', b'"agent":5'),
    "unknown effect": lambda b: b.replace(b'"effect":"', b'"effect":"MAYBE').replace(
        b'"MAYBEALLOW"', b'"MAYBE"'
    ),
    "leading zero": lambda b: b.replace(b'"seed":7', b'"seed":07'),
    "negative zero": lambda b: b.replace(b'"seed":7', b'"seed":-0'),
    "NaN": lambda b: b.replace(b'"seed":7', b'"seed":NaN'),
    "a huge integer": lambda b: b.replace(b'"seed":7', b'"seed":' + b"9" * 40),
    "a unicode escape": lambda b: b.replace(b'"agent":"support-bot"', b'"agent":"\\u0073bot"'),
    "an escaped slash": lambda b: b.replace(b'"agent":"support-bot"', b'"agent":"a\\/b"'),
    "a raw control character": lambda b: b.replace(b"support-bot", b"support\x01bot"),
    "a raw tab": lambda b: b.replace(b"support-bot", b"support\tbot"),
    "invalid UTF-8": lambda b: b.replace(b"support-bot", b"support\xffbot"),
    "an encoded surrogate": lambda b: b.replace(b"support-bot", b"support\xed\xa0\x80bot"),
    "a byte order mark": lambda b: b"\xef\xbb\xbf" + b,
    "a duplicate key": lambda b: b.replace(b'"agent":"support-bot"', b'"agent":"x","agent":"y"'),
    "a missing default": lambda b: b.replace(b',"trace_id":null', b""),
    "a trailing comma": lambda b: b.replace(b"]", b",]", 1),
    "UTF-16": lambda b: b.decode().encode("utf-16"),
    "a nested object where null": lambda b: b.replace(b'"metered":null', b'"metered":{}'),
    "an escaped quote in the thread": lambda b: b.replace(b'"thread":"', b'"thread":"a\\"b\\\\'),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_the_fast_reading_refuses_what_strict_validation_refuses(base: BuiltLog, name: str) -> None:
    body = MALFORMED[name](_decision_body(base))
    fast = agree(body)
    if isinstance(strict(body), ValidationError):
        assert fast is None
    if name == "an escaped quote in the thread":
        assert fast is not None and fast[5].startswith('a"b\\')


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=12), field=st.sampled_from([b"thread", b"tool", b"agent"]))
def test_any_string_value_reads_the_same_both_ways(value: str, field: bytes) -> None:
    body = DECISION.replace(
        b'"' + field + b'":"x"', b'"' + field + b'":' + json.dumps(value).encode()
    )
    agree(body)
    agree(
        DECISION.replace(
            b'"' + field + b'":"x"',
            b'"' + field + b'":"' + value.encode("utf-8", "surrogatepass") + b'"',
        )
    )


DECISION = entry_bytes_from(
    3,
    canonical_bytes(
        DecisionRecord(
            decision_id="d1",
            seed=1,
            thread="x",
            step=0,
            tool_call_id="c",
            tool="x",
            principal=None,
            agent="x",
            action='Action::"x"',
            resource=None,
            request_blob=None,
            effect="DENY",
            policy_ids=[],
            reasons=[],
            errors=[],
            approvers=[],
            policy_hash="0" * 64,
            engine="e",
            time_us=1,
        )
    ),
)


def test_a_range_worker_loads_no_policy_engine_or_graph_stack() -> None:
    """A worker imports what checking entries needs (the package's names load on first
    use): not replay's Cedar engine, LangGraph or the log writer, each about a tenth of a
    second of every worker's start."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import agentfence.verify._entries\n"
        "heavy = ('cedarpy', 'agentfence.policy', 'agentfence.verify._replay', "
        "'agentfence.verify._check', 'langgraph', 'langchain_core')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "LOADED []" in result.stdout, result.stdout
    # The package's public names still import as before.
    from agentfence.verify import ReplayReport, replay

    assert replay.__module__ == "agentfence.verify._replay"
    assert ReplayReport.__module__ == "agentfence.verify._replay"


# --- blocks of decisions and outcomes fold as the entries would one by one -----------------

_IDS = ["d0", "d1", "d2", "d3"]
_HASHES = ["h0", "h1"]
_BLOBS = [None, "sha256:b0", "sha256:b1", "sha256:b2"]
_OP = st.one_of(
    st.tuples(
        st.just("decision"),
        st.sampled_from(_IDS),
        st.sampled_from(["ALLOW", "DENY", "REQUIRE_APPROVAL"]),
        st.sampled_from(_HASHES),
        st.sampled_from(_BLOBS),
    ),
    st.tuples(st.just("outcome"), st.sampled_from(_IDS), st.sampled_from(_BLOBS)),
    st.tuples(st.just("activation"), st.sampled_from(_HASHES)),
    st.tuples(st.just("request"), st.sampled_from(_IDS), st.sampled_from(["r0", "r1"])),
    st.tuples(
        st.just("answer"),
        st.sampled_from(_IDS),
        st.sampled_from(["r0", "r1"]),
        st.sampled_from(["approve", "reject"]),
        st.sampled_from(["accepted", "refused"]),
    ),
    st.tuples(st.just("range ends")),
)


def _other(op: tuple[Any, ...]) -> Any:
    """The record an op other than a decision or an outcome stands for."""
    if op[0] == "activation":
        return ActivationRecord.model_construct(
            policy_hash=op[1], file_blobs={}, schema_blob=None, generated_schema_blob=None
        )
    if op[0] == "request":
        return ApprovalRequestRecord.model_construct(
            request_id=op[2], decision_id=op[1], args_blob="sha256:args"
        )
    return ApprovalAnswerRecord.model_construct(
        request_id=op[2],
        decision_id=op[1],
        answer=op[3],
        verdict=op[4],
        answer_blob=None,
        args_diff_blob=None,
    )


def _fold_both_ways(ops: list[tuple[Any, ...]]) -> tuple[Any, Any]:
    """The order check fed one entry at a time, and fed blocks as the ranges fold them."""
    one, folded = OrderCheck(), OrderCheck()
    block = Block(0)
    seq = 0

    def close() -> None:
        nonlocal block
        if block.decisions or block.outcomes:
            block.end = seq
            folded.fold(block)
        block = Block(seq)

    for op in ops:
        if op[0] == "range ends":
            close()
            continue
        if op[0] == "decision":
            one.decided(seq, *op[1:])
            block.decision(seq, *op[1:])
        elif op[0] == "outcome":
            one.ran(seq, *op[1:])
            block.outcome(seq, *op[1:])
        else:
            close()
            one.see(seq, _other(op))
            folded.see(seq, _other(op))
            block = Block(seq + 1)
        seq += 1
    close()
    return one, folded


@settings(max_examples=600, deadline=None)
@given(ops=st.lists(_OP, max_size=24))
def test_folded_blocks_name_the_first_order_problem_as_one_by_one(
    ops: list[tuple[Any, ...]],
) -> None:
    one, folded = _fold_both_ways(ops)
    # Counts and blob refs (step 6) are exact whatever the order.
    assert (folded.decisions, folded.outcomes, folded.refs, folded.held) == (
        one.decisions,
        one.outcomes,
        one.refs,
        one.held,
    )
    # A block that may break a rule asks for the one-by-one check, and only then.
    assert (folded.recheck or folded.problem is not None) == (one.problem is not None)
    if not folded.recheck:
        assert folded.problem == one.problem
    if one.problem is None:
        assert folded.states == one.states
        assert folded.without_outcome() == one.without_outcome()


def test_a_decision_recorded_again_in_a_later_block_asks_for_the_one_by_one_check() -> None:
    ops: list[tuple[Any, ...]] = [
        ("activation", "h0"),
        ("decision", "d0", "ALLOW", "h0", None),
        ("range ends",),
        ("decision", "d1", "ALLOW", "h0", None),
        ("decision", "d0", "ALLOW", "h0", None),
    ]
    one, folded = _fold_both_ways(ops)
    assert one.problem == (
        "decision d0 is recorded twice (again at entry 3); a call is decided and recorded once"
    )
    assert folded.recheck and folded.problem is None


# --- the checks inline in walk_range decide as check_entry does ----------------------------


def _row(source: bytes, **columns: Any) -> list[Any]:
    """The row the writer stores for the entry ``source`` (its columns from the entry, or
    defaults when ``parse=False``), with ``columns`` changed; the leaf hash is of the body."""
    seq, record = parse_entry(source) if columns.pop("parse", True) else (3, None)
    row: dict[str, Any] = {
        "seq": seq,
        "kind": getattr(record, "format", None),
        "dedupe_key": f"{record.format}:{record.decision_id}" if record is not None else None,
        "body": source,
        "leaf_hash": None,
        "thread": getattr(record, "thread", None),
        "tool": getattr(record, "tool", None),
        "effect": getattr(record, "effect", None),
        "time_us": getattr(record, "time_us", 0),
    }
    row.update(columns)
    if row["leaf_hash"] is None:
        row["leaf_hash"] = hashlib.sha256(b"\x00" + row["body"]).digest()
    return list(row.values())


def _walked(row: list[Any]) -> Any:
    """What walk_range makes of one row at its own position, and what check_entry makes."""
    position = row[0] if isinstance(row[0], int) else 3
    part = _entries.walk_range([row], position, position + 1, (), frozenset())
    try:
        leaf, fact = _entries.check_entry(row, position, frozenset(), lambda: None)
    except EntryError:
        return part, None
    block = Block(position, position + 1)
    if len(fact) == 5:
        block.decision(*fact)
    else:
        block.outcome(*fact)
    return part, (leaf, block)


def _same_as_check_entry(row: list[Any]) -> Any:
    part, expected = _walked(row)
    if expected is None:
        assert part.failed and part.done == 0
        return None
    leaf, block = expected
    assert not part.failed and part.final == (leaf,)
    assert part.items == [block]
    return block


def _outcome_body(base: BuiltLog) -> bytes:
    seq, record = next((s, r) for s, r in records(base.path) if isinstance(r, OutcomeRecord))
    return entry_bytes_from(seq, canonical_bytes(record))


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_walk_range_refuses_what_check_entry_refuses(base: BuiltLog, name: str) -> None:
    body = MALFORMED[name](_decision_body(base))
    _same_as_check_entry(_row(body, parse=False))
    _same_as_check_entry(_row(_decision_body(base), body=body))


COLUMNS = {
    "body stored as TEXT": {"body": lambda b: b.decode()},
    "leaf hash stored as TEXT": {"leaf_hash": lambda b: "x" * 32},
    "a leaf hash of other bytes": {"leaf_hash": lambda b: bytes(32)},
    "time_us as TEXT": {"time_us": lambda b: "1"},
    "time_us one later": {"time_us": lambda b: -1},
    "thread as a BLOB": {"thread": lambda b: b"bench"},
    "another effect": {"effect": lambda b: "DENY"},
    "another kind": {"kind": lambda b: "agentfence.approval_request/v1"},
    "another dedupe key": {"dedupe_key": lambda b: "agentfence.decision/v1:x"},
    "another position": {"seq": lambda b: 40},
    "another tool": {"tool": lambda b: "another-tool"},
}


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_walk_range_reads_the_index_columns_as_check_entry_does(base: BuiltLog, name: str) -> None:
    for body in (_decision_body(base), _outcome_body(base)):
        row = _row(body)
        ((column, change),) = COLUMNS[name].items()
        index = [
            "seq",
            "kind",
            "dedupe_key",
            "body",
            "leaf_hash",
            "thread",
            "tool",
            "effect",
            "time_us",
        ].index(column)
        row[index] = change(body)
        assert _same_as_check_entry(row) is None  # each is refused, by both


def test_canonical_entries_with_escapes_are_read_by_check_entry_in_walk_range(
    base: BuiltLog,
) -> None:
    decision = _decision_body(base).replace(b'"thread":"', b'"thread":"a\\"b')
    block = _same_as_check_entry(_row(decision))
    assert block is not None and block.decisions == 1
    assert _same_as_check_entry(_row(_outcome_body(base))).outcomes == 1


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(max_size=12),
    field=st.sampled_from([b"thread", b"tool", b"decision_id", b"policy_hash", b"agent"]),
)
def test_any_string_value_walks_as_check_entry_reads_it(value: str, field: bytes) -> None:
    body = DECISION.replace(
        b'"' + field + b'":"' + (b"d1" if field == b"decision_id" else b"x") + b'"',
        b'"'
        + field
        + b'":'
        + json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    )
    if field == b"policy_hash":
        body = DECISION.replace(
            b'"policy_hash":"' + b"0" * 64 + b'"', b'"policy_hash":' + json.dumps(value).encode()
        )
    try:
        record = DecisionRecord.model_validate_json(
            body.split(b',"record":', 1)[1].rsplit(b',"seq":', 1)[0]
        )
    except ValidationError:
        _same_as_check_entry(_row(body, parse=False))
        return
    _same_as_check_entry(
        _row(
            body,
            kind=record.format,
            dedupe_key=f"{record.format}:{record.decision_id}",
            thread=record.thread,
            tool=record.tool,
            effect=record.effect,
            time_us=record.time_us,
        )
    )


def test_canonical_plain_entries_are_checked_inline(
    base: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_check(*args: Any) -> Any:
        raise AssertionError("check_entry was called")

    monkeypatch.setattr(_entries, "check_entry", no_check)
    for body in (DECISION, _outcome_body(base)):
        row = _row(body)
        part = _entries.walk_range([row], row[0], row[0] + 1, (), frozenset())
        assert part.done == 1 and not part.failed


# --- order problems found by worker ranges ---------------------------------------------------


def _sequential_problem(path: Path) -> str | None:
    """The first order problem, the order check fed every entry one at a time."""
    order = OrderCheck()
    for seq, record in records(path):
        order.see(seq, record)
    return order.problem


def _appended(built: BuiltLog, name: str) -> None:
    decisions = [r for _, r in records(built.path) if isinstance(r, DecisionRecord)]
    allowed = next(r for r in decisions if r.effect == "ALLOW")
    denied = next(r for r in decisions if r.effect == "DENY")

    def new(decision_id: str, **update: Any) -> DecisionRecord:
        return allowed.model_copy(
            update={"decision_id": decision_id, "request_blob": None, "time_us": 5, **update}
        )

    def outcome(decision_id: str) -> OutcomeRecord:
        return OutcomeRecord(
            decision_id=decision_id, status="success", result_digest="0" * 64, time_us=6
        )

    request = ApprovalRequestRecord(
        request_id="r-1",
        decision_id="f" * 32,
        action_digest="0" * 64,
        tool="refund",
        tool_call_id="c",
        args_blob=next(r.request_blob for r in decisions if r.request_blob),
        principal='User::"alice"',
        agent="support-bot",
        thread="t",
        policy_hash=allowed.policy_hash,
        policy_ids=[],
        reasons=[],
        risk="high",
        approvers=[],
        created_us=7,
        expires_us=8,
        time_us=7,
    )
    unactivated = new("e" * 32, policy_hash="ab" * 32)
    cases: dict[str, list[Any]] = {
        "an outcome without its decision": [new("a" * 32), outcome("f" * 32)],
        "an outcome of a denied call": [new("a" * 32), outcome(denied.decision_id)],
        "an outcome before its decision": [outcome("a" * 32), new("a" * 32)],
        "an outcome of a held call": [
            new("a" * 32, effect="REQUIRE_APPROVAL"),
            outcome("a" * 32),
        ],
        "an unactivated policy set": [new("a" * 32), unactivated],
        "two problems, the lower named": [unactivated, outcome(denied.decision_id)],
        "a request for no held decision after a bad outcome": [
            outcome(denied.decision_id),
            request,
        ],
        "a bad outcome after a request for no held decision": [
            request,
            outcome(denied.decision_id),
        ],
    }
    append_signed(built, *cases[name])


ORDER_CASES = [
    "an outcome without its decision",
    "an outcome of a denied call",
    "an outcome before its decision",
    "an outcome of a held call",
    "an unactivated policy set",
    "two problems, the lower named",
    "a request for no held decision after a bad outcome",
    "a bad outcome after a request for no held decision",
]


@pytest.mark.parametrize("name", ORDER_CASES)
def test_order_problems_in_worker_ranges_are_named_as_one_by_one(
    log: BuiltLog, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _appended(log, name)
    problem = _sequential_problem(log.path)
    assert problem is not None
    rechecks: list[bool] = []
    one_by_one = _check._LogCheck._order_one_by_one

    def counted(self: Any) -> Any:
        rechecks.append(True)
        return one_by_one(self)

    monkeypatch.setattr(_check._LogCheck, "_order_one_by_one", counted)
    kind, message, step, attack = same_failure(log, monkeypatch)
    # Only a problem an order check of single entries finds first leaves the blocks alone.
    assert bool(rechecks) == (name != "a bad outcome after a request for no held decision")
    assert (kind, step, attack) == (OrderError, 7, "out_of_order")
    assert message == f"the log's entries are out of order: {problem}; {KEEP_EVIDENCE}"
    if name == "two problems, the lower named":
        assert "no earlier activation entry activated" in message
    if name == "a request for no held decision after a bad outcome":
        assert "which was DENY and not approved" in message
    if name == "a bad outcome after a request for no held decision":
        assert "the approval request at entry 22" in message


def test_blocks_that_break_a_rule_the_entries_do_not_fail_closed(
    base: BuiltLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 3 folded entries that broke an order rule, and read again they break none: the
    log changed while it was verified, and it is not reported as verified."""
    fold = OrderCheck.fold

    def changed(self: OrderCheck, block: Block) -> None:
        fold(self, block)
        self.recheck = True

    monkeypatch.setattr(OrderCheck, "fold", changed)
    with pytest.raises(EntryError) as caught:
        verify_log(base.path, [base.vkey], workers=1)
    assert str(caught.value).startswith(
        "an entry broke an order rule when read in step 3 but not when read again: the log "
        "changed while it was verified; verify it again and keep this copy as evidence"
    )
    assert (caught.value.step, caught.value.attack) == (3, "entry_modified")
