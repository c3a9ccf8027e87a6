"""verify_log over ranges of entries in worker processes, and the fast reading of entries.

Ranges are made 8 entries long so the test log (22 entries, checkpoints at 0, 9, 17 and 22)
spans three: positions 0-7, 8-15 and 16-21. Every attack is placed in the second range and
at the boundary between the first and the second, checked by two spawned worker processes,
and must be reported exactly as the one-process verifier (one range, in this process)
reports it: the same error type, message, step and attack.
"""

from __future__ import annotations

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

from agentfence.errors import LogVerificationError, VerificationError
from agentfence.records import DecisionRecord, OutcomeRecord, canonical_bytes, entry_bytes_from
from agentfence.verify import EntryError, _entries, verify_log
from agentfence.verify._snapshot import ENTRY_ADAPTER
from tests.unit.test_verify import BuiltLog, build_log, copy_log, records, sql

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
