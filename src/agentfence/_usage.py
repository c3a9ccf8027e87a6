"""Session usage: counts and running totals per thread and per principal over time windows.

The ledger is a projection of the decision log. A call counts from the moment it is allowed
(so parallel calls cannot each slip under a limit) until its outcome says it failed, when its
amount stops counting; a call held for approval counts once it has run; a denied call never
counts. On first use the ledger reads back the last day of the log (and, per thread, that
thread's decisions), so a restart does not reset any total; afterwards it follows the log's
tail, so calls recorded by another process on the same log are counted too.
"""

from __future__ import annotations

import dataclasses
import decimal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from agentfence.records import DecisionRecord, LogRecord, OutcomeRecord

WINDOWS: Final = (("minute", 60), ("hour", 3_600), ("day", 86_400))
"""Rolling windows (name, seconds) that ``context.usage`` reports, besides the thread."""
_DAY_US = 86_400 * 1_000_000
_ZERO = decimal.Decimal(0)

State = Literal["running", "held", "succeeded", "failed"]


@dataclass
class _Event:
    decision_id: str
    principal: str
    thread: str
    tool_call_id: str
    tool: str
    meter: str | None
    amount: decimal.Decimal
    time_us: int
    state: State

    @property
    def counts(self) -> bool:
        return self.state != "held"

    @property
    def spends(self) -> bool:
        return self.state in ("running", "succeeded")


@dataclass(frozen=True)
class Window:
    """Usage in one scope: calls that counted, and the meter's total before and after this call."""

    calls: int = 0
    tool_calls: int = 0
    total: decimal.Decimal = _ZERO
    total_after: decimal.Decimal = _ZERO

    def as_cedar(self) -> dict[str, Any]:
        """The Cedar record ``{calls, tool_calls, total, total_after}``."""
        return {
            "calls": self.calls,
            "tool_calls": self.tool_calls,
            "total": _cedar_decimal(self.total),
            "total_after": _cedar_decimal(self.total_after),
        }


@dataclass(frozen=True)
class Usage:
    """What ``context.usage`` holds for one call: the thread and each rolling window."""

    thread: Window = Window()
    minute: Window = Window()
    hour: Window = Window()
    day: Window = Window()

    def as_cedar(
        self, windows: Sequence[str] = ("thread", "minute", "hour", "day")
    ) -> dict[str, Any]:
        """The Cedar record ``{thread, minute, hour, day}`` (or only the ``windows`` given)."""
        return {name: getattr(self, name).as_cedar() for name in windows}

    def with_amount(self, amount: decimal.Decimal) -> Usage:
        """The same usage with ``total_after`` recomputed for another amount of this call."""
        return Usage(
            **{
                name: dataclasses.replace(w, total_after=w.total + amount)
                for name in ("thread", "minute", "hour", "day")
                for w in (getattr(self, name),)
            }
        )


def _cedar_decimal(value: decimal.Decimal) -> dict[str, Any]:
    # Cedar decimals have four places and a 64-bit range (tools.py, _decimal_to_cedar);
    # totals beyond it are clamped, which only makes a limit policy stricter.
    limit = decimal.Decimal("922337203685477.5807")
    clamped = max(-limit, min(limit, value))
    rounded = clamped.quantize(decimal.Decimal("0.0001"), rounding=decimal.ROUND_HALF_EVEN)
    return {"__extn": {"fn": "decimal", "arg": f"{rounded:f}"}}


class _LogReader:
    """Reads back the decision and outcome records of a log through :class:`LogReader`.

    A log that cannot be read back (a custom :class:`DecisionLog` without the reader half)
    yields nothing: usage then counts only this process's calls (``readable`` is False).
    """

    def __init__(self, log: Any) -> None:
        from agentfence.log import LogReader

        self._log: LogReader | None = log if isinstance(log, LogReader) else None
        self.readable = self._log is not None

    def first_seq_since(self, since_us: int) -> int:
        """The seq from which on the log may hold records at or after ``since_us``."""
        return self._log.first_seq_since(since_us) if self._log is not None else 0

    def tail(self, start: int) -> Iterator[tuple[int, LogRecord]]:
        """Decision and outcome records from ``start`` on, in order."""
        if self._log is None:
            return
        for seq, record in self._log.read(start):
            if isinstance(record, DecisionRecord | OutcomeRecord):
                yield seq, record

    def thread_decisions(self, thread: str, before: int) -> Iterator[DecisionRecord]:
        """The decisions of one thread with seq below ``before``."""
        if self._log is None:
            return
        for found in self._log.thread_decisions(thread, before=before):
            yield found.record

    def outcome(self, decision_id: str) -> OutcomeRecord | None:
        """The outcome recorded for a decision, if any."""
        if self._log is None:
            return None
        found = self._log.find_outcome(decision_id)
        return found[0] if found is not None else None


class UsageLedger:
    """Counts and totals per thread and per principal, kept in step with the decision log."""

    def __init__(self, log: Any, clock: Any) -> None:
        self._reader = _LogReader(log)
        self._clock = clock
        self.lock = threading.RLock()
        self._events: dict[str, _Event] = {}
        self._by_principal: dict[str, list[_Event]] = {}
        self._by_thread: dict[str, list[_Event]] = {}
        self._loaded_threads: set[str] = set()
        self._next_seq: int | None = None
        self._load_start = 0
        # Calls that were ever held for approval, by (thread, tool_call_id): a later decision
        # of the same call is its re-check, not a new call.
        self._held: dict[tuple[str, str], _Event] = {}

    # --- reading the log -----------------------------------------------------------------

    def _sync(self) -> None:
        if self._next_seq is None:
            now = self._clock()
            self._load_start = self._reader.first_seq_since(now - _DAY_US)
            self._next_seq = self._load_start
        for seq, record in self._reader.tail(self._next_seq):
            self._apply(record)
            self._next_seq = seq + 1

    def _load_thread(self, thread: str) -> None:
        if thread in self._loaded_threads:
            return
        self._loaded_threads.add(thread)
        if not thread or self._load_start == 0:
            return
        # Decisions of this thread from before the day the first sync read.
        for record in self._reader.thread_decisions(thread, self._load_start):
            if record.decision_id in self._events:
                continue
            outcome = self._reader.outcome(record.decision_id)
            self._apply(record, thread_only=True)
            if outcome is not None:
                self._apply(outcome)

    def _apply(self, record: LogRecord, *, thread_only: bool = False) -> None:
        if isinstance(record, DecisionRecord):
            if record.effect == "DENY" or record.principal is None:
                return
            if record.decision_id in self._events:
                return
            if (record.thread, record.tool_call_id) in self._held:
                # A held call decided again (edited by its approver, or its policies changed
                # while it waited): the same call, which counts once, when it runs.
                return
            meter = record.metered.meter if record.metered else None
            amount = decimal.Decimal(record.metered.amount) if record.metered else _ZERO
            state: State = "running" if record.effect == "ALLOW" else "held"
            self._add(
                _Event(
                    record.decision_id,
                    record.principal,
                    record.thread,
                    record.tool_call_id,
                    record.tool,
                    meter,
                    amount,
                    record.time_us,
                    state,
                ),
                thread_only=thread_only,
            )
        elif isinstance(record, OutcomeRecord):
            event = self._events.get(record.decision_id)
            if event is None:
                return
            if event.state == "held":
                # An approved call counts from when it ran.
                event.time_us = record.time_us
            event.state = "succeeded" if record.status == "success" else "failed"
            if record.metered is not None:
                event.amount = decimal.Decimal(record.metered.amount)

    def _add(self, event: _Event, *, thread_only: bool = False) -> None:
        self._events[event.decision_id] = event
        if event.state == "held" and event.thread:
            self._held[(event.thread, event.tool_call_id)] = event
        self._by_thread.setdefault(event.thread, []).append(event)
        if not thread_only:
            self._by_principal.setdefault(event.principal, []).append(event)

    # --- what the fence asks ---------------------------------------------------------------

    def usage(
        self,
        *,
        principal: str,
        thread: str,
        tool: str,
        meter: str | None,
        amount: decimal.Decimal,
        exclude: str,
    ) -> Usage:
        """The usage a call sees (``exclude``: its own decision id, on re-execution)."""
        with self.lock:
            self._sync()
            self._load_thread(thread)
            now = self._clock()
            self._prune(principal, now)
            events = self._by_principal.get(principal, [])
            windows: dict[str, Window] = {}
            for name, seconds in WINDOWS:
                since = now - seconds * 1_000_000
                windows[name] = _window(
                    (e for e in events if e.time_us >= since), tool, meter, amount, exclude
                )
            thread_events = self._by_thread.get(thread, []) if thread else []
            windows["thread"] = _window(iter(thread_events), tool, meter, amount, exclude)
            return Usage(**windows)

    def reserve(
        self,
        *,
        decision_id: str,
        principal: str,
        thread: str,
        tool_call_id: str,
        tool: str,
        meter: str | None,
        amount: decimal.Decimal,
        allowed: bool,
    ) -> None:
        """Count an allowed call now (before its decision is appended), or note a held one."""
        with self.lock:
            if decision_id in self._events:
                return
            self._add(
                _Event(
                    decision_id,
                    principal,
                    thread,
                    tool_call_id,
                    tool,
                    meter,
                    amount,
                    self._clock(),
                    "running" if allowed else "held",
                )
            )

    def release(self, decision_id: str) -> None:
        """Forget a reservation whose decision could not be recorded (the call never ran)."""
        with self.lock:
            event = self._events.pop(decision_id, None)
            if event is None:
                return
            for group in (
                self._by_thread.get(event.thread),
                self._by_principal.get(event.principal),
            ):
                if group is not None and event in group:
                    group.remove(event)

    def settle(self, decision_id: str, *, succeeded: bool, amount: decimal.Decimal | None) -> None:
        """Note the outcome of a call that ran."""
        with self.lock:
            event = self._events.get(decision_id)
            if event is None:
                return
            if event.state == "held":
                event.time_us = self._clock()
            event.state = "succeeded" if succeeded else "failed"
            if amount is not None:
                event.amount = amount

    def _prune(self, principal: str, now: int) -> None:
        # Principal windows need a day of events (and held calls, which count once they
        # run); thread totals keep theirs.
        events = self._by_principal.get(principal)
        if not events:
            return
        since = now - _DAY_US
        if any(e.time_us < since and e.state != "held" for e in events):
            self._by_principal[principal] = [
                e for e in events if e.time_us >= since or e.state == "held"
            ]


def _window(
    events: Iterator[_Event],
    tool: str,
    meter: str | None,
    amount: decimal.Decimal,
    exclude: str,
) -> Window:
    calls = tool_calls = 0
    total = _ZERO
    for event in events:
        if event.decision_id == exclude or not event.counts:
            continue
        calls += 1
        if event.tool == tool:
            tool_calls += 1
        if meter is not None and event.meter == meter and event.spends:
            total += event.amount
    return Window(
        calls=calls,
        tool_calls=tool_calls,
        total=total,
        total_after=total + amount if meter is not None else total,
    )
