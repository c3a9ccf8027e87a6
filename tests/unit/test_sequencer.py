"""LocalSequencer: a SQLite log's commits number entries after the frontier kept in memory,
and stay correct when another writer appended in between or a record is a duplicate."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentfence import Fence, LogError
from agentfence._log_api import Pending, Wake
from agentfence._merkle import leaf_hash
from agentfence._signing import Signer
from agentfence._storage.tables import LogTransaction
from agentfence.log import SignedLog
from agentfence.records import DecisionRecord, canonical_bytes, entry_bytes
from agentfence.verify import verify_log
from tests.conformance.test_backends import activate, decision


@dataclass(frozen=True)
class Store:
    """A log a fence created (its first entries activate the policies)."""

    path: Path
    signer: Signer
    policy_hash: str
    first: int  # the seq the next entry gets

    def open(self) -> SignedLog:
        return SignedLog.open(
            f"sqlite:///{self.path}", signer=self.signer, checkpoint_interval=3600
        )

    def record(self, i: int) -> DecisionRecord:
        return decision("seq", i, self.policy_hash)

    def verify(self) -> int:
        verified = verify_log(self.path, [self.signer.verifier_key])
        assert verified.unsigned_tail == 0
        return verified.entries - self.first


@pytest.fixture
def store(tmp_path: Path, make_fence: Callable[..., Fence]) -> Store:
    path, signer = tmp_path / "log.db", Signer.generate("test-sequencer")
    policy_hash = activate(f"sqlite:///{path}", signer, make_fence)
    with SignedLog.open(f"sqlite:///{path}", signer=signer) as log:
        first = log.size()
    return Store(path, signer, policy_hash, first)


def test_two_logs_on_one_file_interleaving_appends_build_one_verified_tree(
    store: Store,
) -> None:
    first, second = store.open(), store.open()
    order = [first, second, first, first, second, second, first, second, first]
    receipts = [log.append(store.record(i)) for i, log in enumerate(order)]
    # Each writer's frontier in memory went stale whenever the other appended: its next
    # commit noticed (the guarded tree-state update) and numbered after the other's entries.
    assert first._sequencer.rechecked >= 3 and second._sequencer.rechecked >= 3
    first.close()
    second.close()
    assert [r.seq - store.first for r in receipts] == list(range(len(order)))
    with sqlite3.connect(store.path) as conn:
        leaves = {int(s): bytes(h) for s, h in conn.execute("SELECT seq, leaf_hash FROM entries")}
    for i, receipt in enumerate(receipts):
        assert receipt.leaf_hash == leaves[receipt.seq].hex()
        assert leaves[receipt.seq] == leaf_hash(entry_bytes(receipt.seq, store.record(i)))
    assert store.verify() == len(order)


def test_a_stale_frontier_never_overwrites_another_writers_entry(store: Store) -> None:
    mine, theirs = store.open(), store.open()
    base = store.first
    assert mine.append(store.record(0)).seq == base  # mine holds the frontier in memory
    assert theirs.append(store.record(1)).seq == base + 1  # theirs appends behind its back
    assert mine.append(store.record(2)).seq == base + 2  # not base + 1: that one is theirs
    mine.close()
    theirs.close()
    with sqlite3.connect(store.path) as conn:
        bodies = [
            bytes(b)
            for (b,) in conn.execute(
                "SELECT body FROM entries WHERE seq >= ? ORDER BY seq", (base,)
            )
        ]
    assert bodies == [entry_bytes(base + i, store.record(i)) for i in range(3)]
    assert store.verify() == 3


def test_a_duplicate_in_a_batch_is_found_and_the_new_records_are_numbered(
    store: Store,
) -> None:
    log = store.open()
    base = store.first
    original = log.append(store.record(0))
    log.append(store.record(1))
    again = store.record(0).model_copy(update={"time_us": 99})  # re-appended on a resume
    records = (store.record(2), again, store.record(3))
    batch = [Pending(r, (), canonical_bytes(r)) for r in records]
    with log._commit_lock:
        assert log._commit(batch)
    assert [(i.receipt.seq - base, i.receipt.duplicate) for i in batch if i.receipt] == [
        (2, False),
        (0, True),
        (3, False),
    ]
    assert batch[1].receipt is not None and batch[1].receipt.leaf_hash == original.leaf_hash
    assert log._sequencer.rechecked == 1  # the quick write was refused and rolled back
    assert log.append(store.record(4)).seq == base + 4
    log.close()
    assert store.verify() == 5


def test_a_quick_commit_runs_four_statements(store: Store) -> None:
    log = store.open()
    log.append(store.record(0))
    statements: list[str] = []
    log._sequencer._conn.set_trace_callback(statements.append)
    log.append(store.record(1))
    log._sequencer._conn.set_trace_callback(None)
    assert [" ".join(s.split()[:3]) for s in statements] == [
        "BEGIN IMMEDIATE",
        "UPDATE tree_state SET",
        "INSERT INTO entries",
        "COMMIT",
    ], statements
    assert log._sequencer.rechecked == 0
    log.close()


def test_a_failed_commit_does_not_leave_the_frontier_ahead_of_the_stored_tree(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = store.open()
    log.append(store.record(0))
    real = LogTransaction.insert_entry_tuples

    def full(self: LogTransaction, rows: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(LogTransaction, "insert_entry_tuples", full)
    with pytest.raises(LogError, match="database or disk is full"):
        log.append(store.record(1))
    monkeypatch.setattr(LogTransaction, "insert_entry_tuples", real)
    assert log.append(store.record(2)).seq == store.first + 1  # 1 was never stored: no gap
    # The failed commit dropped the frontier in memory (it had been advanced past the stored
    # tree): the next commit read the stored one, rather than trying its stale copy first.
    assert log._sequencer.rechecked == 0
    log.close()
    assert store.verify() == 2


def test_a_wake_set_twice_or_before_the_wait_does_not_fail() -> None:
    wake = Wake()
    wake.set()
    wake.set()  # the leader that committed a record it had handed the lead to
    wake.wait()  # returns at once
