"""The usage ledger: running sums per window and thread, bounded memory, rebuilt from the log."""

from __future__ import annotations

import decimal
from typing import Any

import pytest

from agentfence import _usage
from agentfence._usage import UsageLedger
from agentfence.log import MemoryLog
from agentfence.records import DecisionRecord, Metered, OutcomeRecord

ALICE = 'User::"alice"'
MINUTE = 60_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000_000

    def __call__(self) -> int:
        return self.now


def usage(ledger: UsageLedger, thread: str = "t", amount: int = 0, **kw: Any) -> Any:
    return ledger.usage(
        principal=kw.get("principal", ALICE),
        thread=thread,
        tool="pay",
        meter="money",
        amount=decimal.Decimal(amount),
        exclude=kw.get("exclude", ""),
    )


def call(
    ledger: UsageLedger,
    log: MemoryLog,
    clock: Clock,
    did: str,
    amount: int,
    *,
    thread: str = "t",
    status: str | None = "success",
) -> None:
    """One allowed call as the fence makes it: reserve, record, run, record the outcome."""
    ledger.reserve(
        decision_id=did,
        principal=ALICE,
        thread=thread,
        tool_call_id=did,
        tool="pay",
        meter="money",
        amount=decimal.Decimal(amount),
        allowed=True,
    )
    log.append(decision(did, thread, amount, clock()))
    if status is None:
        return
    ledger.settle(did, succeeded=status == "success", amount=None)
    log.append(
        OutcomeRecord(
            decision_id=did,
            status=status,  # type: ignore[arg-type]
            result_digest="0" * 64,
            time_us=clock(),
            metered=Metered(meter="money", amount=str(amount)),
        )
    )


def decision(did: str, thread: str, amount: int, time_us: int) -> DecisionRecord:
    return DecisionRecord(
        decision_id=did,
        seed=1,
        thread=thread,
        step=1,
        tool_call_id=did,
        tool="pay",
        principal=ALICE,
        agent="a",
        action='Action::"pay"',
        resource=None,
        request_blob=None,
        effect="ALLOW",
        policy_ids=[],
        reasons=[],
        errors=[],
        approvers=[],
        policy_hash="h",
        engine="e",
        time_us=time_us,
        metered=Metered(meter="money", amount=str(amount)),
    )


@pytest.fixture
def setup() -> tuple[UsageLedger, MemoryLog, Clock]:
    log, clock = MemoryLog(), Clock()
    ledger = UsageLedger(log, clock)
    usage(ledger)  # a policy asked: the ledger follows the log from now on
    return ledger, log, clock


def test_nothing_is_kept_until_a_policy_asks_for_usage() -> None:
    log, clock = MemoryLog(), Clock()
    ledger = UsageLedger(log, clock)
    for i in range(50):
        call(ledger, log, clock, f"d{i}", 10)
    assert ledger._live == {} and ledger._principals == {}
    # The first ask reads the log back: nothing was lost by not following it.
    assert usage(ledger).day.calls == 50
    assert usage(ledger).day.total == 500


def test_a_failed_call_stops_spending_but_still_counts(setup: Any) -> None:
    ledger, log, clock = setup
    call(ledger, log, clock, "ok", 30)
    call(ledger, log, clock, "bad", 50, status="error")
    day = usage(ledger, amount=5).day
    assert (day.calls, day.total, day.total_after) == (2, 30, 35)


def test_a_released_reservation_leaves_no_trace(setup: Any) -> None:
    ledger, _log, _clock = setup
    ledger.reserve(
        decision_id="lost",
        principal=ALICE,
        thread="t",
        tool_call_id="lost",
        tool="pay",
        meter="money",
        amount=decimal.Decimal(90),
        allowed=True,
    )
    assert usage(ledger).day.total == 90
    ledger.release("lost")
    assert usage(ledger).day.total == 0 and usage(ledger).thread.calls == 0


def test_settled_calls_are_not_kept_one_by_one(setup: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(_usage, "_RECENT", 10)
    ledger, log, clock = setup
    for i in range(200):
        clock.now += 1_000
        call(ledger, log, clock, f"d{i}", 1)
        usage(ledger)
    assert ledger._live == {}
    assert len(ledger._recent) == 10
    assert usage(ledger).day.calls == 200 and usage(ledger).thread.total == 200


def test_window_buckets_are_bounded_and_expiry_is_never_lenient(setup: Any) -> None:
    ledger, log, clock = setup
    call(ledger, log, clock, "early", 7)
    # Within the minute it counts; past it by more than one bucket it no longer does; in
    # between it may still count (the strict side), never the other way round.
    clock.now += MINUTE - 1
    assert usage(ledger).minute.calls == 1
    clock.now += MINUTE // _usage._BUCKETS + 1
    assert usage(ledger).minute.calls == 0
    assert usage(ledger).hour.calls == 1
    for i in range(1000):
        clock.now += 10_000_000
        call(ledger, log, clock, f"d{i}", 1)
        usage(ledger)
    windows = ledger._principals[ALICE].windows
    assert all(len(w.buckets) <= _usage._BUCKETS + 1 for w in windows.values())
    # One call every 10 s: six in the minute, or seven while the oldest bucket drains.
    assert usage(ledger).minute.calls in (6, 7)


def test_an_old_threads_totals_are_read_back_from_the_log(setup: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(_usage, "_THREADS", 3)
    ledger, log, clock = setup
    call(ledger, log, clock, "first", 40, thread="old")
    assert usage(ledger, thread="old").thread.total == 40
    for i in range(10):
        call(ledger, log, clock, f"other{i}", 1, thread=f"t{i}")
        usage(ledger, thread=f"t{i}")
    assert "old" not in ledger._threads
    assert usage(ledger, thread="old").thread.total == 40


def test_a_call_in_flight_is_counted_when_its_thread_is_read_back(
    setup: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(_usage, "_THREADS", 1)
    ledger, log, clock = setup
    call(ledger, log, clock, "running", 25, thread="a", status=None)  # not settled yet
    usage(ledger, thread="b")  # thread "a" is evicted
    assert "a" not in ledger._threads
    assert usage(ledger, thread="a").thread.total == 25
    ledger.settle("running", succeeded=False, amount=None)
    assert usage(ledger, thread="a").thread.total == 0


def test_a_re_executed_call_does_not_see_itself(setup: Any) -> None:
    ledger, log, clock = setup
    call(ledger, log, clock, "me", 60, status=None)
    seen = usage(ledger, exclude="me")
    assert (seen.day.calls, seen.day.total, seen.thread.calls) == (0, 0, 0)


def test_another_process_calls_on_the_same_log_count(setup: Any) -> None:
    ledger, log, clock = setup
    other = UsageLedger(log, clock)
    usage(other)
    call(other, log, clock, "theirs", 70)
    assert usage(ledger).day.total == 70
    assert ledger._live == {}
