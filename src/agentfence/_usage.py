"""Session usage: counts and running totals per thread and per principal over time windows.

The ledger is a projection of the decision log. A call counts from the moment it is allowed
(so parallel calls cannot each slip under a limit) until its outcome says it failed, when its
amount stops counting; a call held for approval counts once it has run; a denied call never
counts. On first use the ledger reads back the last day of the log (and, per thread, that
thread's decisions), so a restart does not reset any total; afterwards it follows the log's
tail, so calls recorded by another process on the same log are counted too.

Totals are kept as running sums, so a call's cost does not grow with the calls before it, and
memory stays bounded however long a process runs:

- each rolling window of a principal is a ring of at most ``_BUCKETS`` time buckets of
  sums (a bucket is 1/``_BUCKETS`` of the window), plus the window's running sum; a bucket
  leaves the sum once all of it is older than the window, so a call may count up to one
  bucket (half a second of a minute, 30 s of an hour, 12 min of a day) longer than its
  window: limits err on the strict side, never the lenient one;
- a thread's totals are kept for the ``_THREADS`` most recently used threads; an older one is
  read back from the log when it is used again;
- single calls are remembered only while they can still change (in flight, held for an
  approver, not yet read back from the log) and for the last ``_RECENT`` calls, so that an
  outcome or a re-execution finds its call.
"""

from __future__ import annotations

import dataclasses
import decimal
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from agentfence._cedar_types import clamped_decimal
from agentfence.records import DecisionRecord, LogRecord, OutcomeRecord

WINDOWS: Final = (("minute", 60), ("hour", 3_600), ("day", 86_400))
"""Rolling windows (name, seconds) that ``context.usage`` reports, besides the thread."""
_DAY_US = 86_400 * 1_000_000
_ZERO = decimal.Decimal(0)

State = Literal["running", "held", "succeeded", "failed"]


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
            "total": clamped_decimal(self.total),
            "total_after": clamped_decimal(self.total_after),
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


_BUCKETS = 120
_THREADS = 4096
_RECENT = 8192


@dataclass
class _Call:
    """One counted or held call, as long as it can still change."""

    decision_id: str
    principal: str
    thread: str
    tool_call_id: str
    tool: str
    meter: str | None
    amount: decimal.Decimal
    time_us: int
    state: State
    ours: bool = False
    """Reserved by this process and not yet read back from the log (then it is skipped)."""
    settled: bool = False
    """Its outcome was applied by this process and not yet read back from the log."""
    windows: set[str] = dataclasses.field(default_factory=set)
    """The rolling windows whose sums hold its share."""

    @property
    def counts(self) -> bool:
        return self.state != "held"

    @property
    def spends(self) -> bool:
        return self.state in ("running", "succeeded")


class _Sums:
    """Running sums of counted calls: calls, calls per tool, amounts per meter."""

    __slots__ = ("calls", "meters", "tools")

    def __init__(self) -> None:
        self.calls = 0
        self.tools: dict[str, int] = {}
        self.meters: dict[str, decimal.Decimal] = {}

    def add(self, call: _Call, sign: int) -> None:
        if not call.counts:
            return
        self.calls += sign
        self.tools[call.tool] = self.tools.get(call.tool, 0) + sign
        if self.tools[call.tool] == 0:
            del self.tools[call.tool]
        if call.meter is not None and call.spends:
            total = self.meters.get(call.meter, _ZERO) + sign * call.amount
            if total:
                self.meters[call.meter] = total
            else:
                self.meters.pop(call.meter, None)

    def window(self, tool: str, meter: str | None, amount: decimal.Decimal) -> Window:
        total = self.meters.get(meter, _ZERO) if meter is not None else _ZERO
        return Window(
            calls=self.calls,
            tool_calls=self.tools.get(tool, 0),
            total=total,
            total_after=total + amount if meter is not None else total,
        )


class _Rolling:
    """One rolling window of one principal: time buckets of sums and their running sum."""

    __slots__ = ("buckets", "cut", "name", "span", "sums", "width")

    def __init__(self, name: str, seconds: int) -> None:
        self.name = name
        self.span = seconds * 1_000_000
        self.width = max(1, self.span // _BUCKETS)
        self.buckets: dict[int, _Sums] = {}
        self.sums = _Sums()
        self.cut = -(2**62)  # buckets below this index have left the window

    def advance(self, now: int) -> None:
        # A bucket leaves only once all of it is older than the window (the strict side).
        cut = (now - self.span) // self.width
        if cut <= self.cut:
            return
        self.cut = cut
        for index in [b for b in self.buckets if b < cut]:
            gone = self.buckets.pop(index)
            self.sums.calls -= gone.calls
            for tool, n in gone.tools.items():
                left = self.sums.tools.get(tool, 0) - n
                if left:
                    self.sums.tools[tool] = left
                else:
                    self.sums.tools.pop(tool, None)
            for meter, total in gone.meters.items():
                left_total = self.sums.meters.get(meter, _ZERO) - total
                if left_total:
                    self.sums.meters[meter] = left_total
                else:
                    self.sums.meters.pop(meter, None)

    def add(self, call: _Call, sign: int) -> None:
        index = call.time_us // self.width
        if sign > 0:
            if index < self.cut:
                return  # already outside the window
            call.windows.add(self.name)
        elif not self.contains(call):
            return
        bucket = self.buckets.get(index)
        if bucket is None:
            bucket = self.buckets[index] = _Sums()
        bucket.add(call, sign)
        self.sums.add(call, sign)

    def contains(self, call: _Call) -> bool:
        """Whether the sums hold this call's share (it was added and has not left)."""
        return self.name in call.windows and call.time_us // self.width >= self.cut


class _Principal:
    def __init__(self) -> None:
        self.windows = {name: _Rolling(name, seconds) for name, seconds in WINDOWS}


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

    def thread_records(self, thread: str, before: int) -> Iterator[LogRecord]:
        """The decisions of one thread with seq below ``before``, each with its outcome."""
        if self._log is None:
            return
        for found in self._log.thread_decisions(thread, before=before):
            yield found.record
            if found.status is not None:
                outcome = self._log.find_outcome(found.record.decision_id)
                if outcome is not None:
                    yield outcome[0]


class UsageLedger:
    """Counts and totals per thread and per principal, kept in step with the decision log."""

    def __init__(self, log: Any, clock: Any) -> None:
        self._reader = _LogReader(log)
        self._clock = clock
        self.lock = threading.RLock()
        self._principals: dict[str, _Principal] = {}
        self._threads: OrderedDict[str, _Sums] = OrderedDict()
        # Calls that can still change, by decision id; and the last _RECENT settled ones.
        self._live: dict[str, _Call] = {}
        self._recent: OrderedDict[str, _Call] = OrderedDict()
        # Held calls by (thread, tool_call_id): a later decision of the same call is its
        # re-check (an approver's edit, a policy change), not a new call.
        self._held: dict[tuple[str, str], _Call] = {}
        # Until a policy asks for usage, nothing is kept: the first ask reads the log back.
        # A log that cannot be read back is followed from the start instead.
        self._started = not self._reader.readable
        self._next_seq = 0

    # --- reading the log -----------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        now = self._clock()
        self._next_seq = self._reader.first_seq_since(now - _DAY_US)

    def _sync(self) -> None:
        for seq, record in self._reader.tail(self._next_seq):
            self._apply(record)
            self._next_seq = seq + 1

    def _thread(self, thread: str) -> _Sums | None:
        """A thread's sums, read back from the log when it is not (or no longer) held."""
        if not thread:
            return None
        sums = self._threads.get(thread)
        if sums is not None:
            self._threads.move_to_end(thread)
            return sums
        sums = _Sums()
        self._threads[thread] = sums
        # Everything the ledger has read of this thread: its records below the tail, and the
        # calls it holds in flight.
        seen: dict[str, _Call] = {}
        for record in self._reader.thread_records(thread, self._next_seq):
            self._apply_to(seen, record, self._live)
        for call in self._live.values():
            if call.thread == thread and call.decision_id not in seen:
                seen[call.decision_id] = call
        for call in seen.values():
            sums.add(call, 1)
        while len(self._threads) > _THREADS:
            self._threads.popitem(last=False)
        return sums

    @staticmethod
    def _apply_to(seen: dict[str, _Call], record: LogRecord, live: dict[str, _Call]) -> None:
        """Replay one record into a map of calls (a thread read back); a call the ledger
        follows in flight is taken as it is now, not as the log had it."""
        if isinstance(record, DecisionRecord):
            call = live.get(record.decision_id) or _call_of(record)
            if call is not None and record.decision_id not in seen:
                seen[record.decision_id] = call
        elif isinstance(record, OutcomeRecord):
            call = seen.get(record.decision_id)
            if call is not None and record.decision_id not in live:
                call.state = "succeeded" if record.status == "success" else "failed"
                if record.metered is not None:
                    call.amount = decimal.Decimal(record.metered.amount)

    def _apply(self, record: LogRecord) -> None:
        if isinstance(record, DecisionRecord):
            known = self._find(record.decision_id)
            if known is not None:
                known.ours = False  # our own reservation, read back
                self._forget_if_done(known)
                return
            if (record.thread, record.tool_call_id) in self._held:
                # A held call decided again (edited by its approver, or its policies changed
                # while it waited): the same call, which counts once, when it runs.
                return
            call = _call_of(record)
            if call is not None:
                self._add(call)
                self._forget_if_done(call)
        elif isinstance(record, OutcomeRecord):
            call = self._find(record.decision_id)
            if call is None:
                return
            if call.settled:
                call.settled = False  # our own outcome, read back
                self._forget_if_done(call)
                return
            amount = decimal.Decimal(record.metered.amount) if record.metered else None
            self._settle(call, record.status == "success", amount, record.time_us)
            self._forget_if_done(call)

    # --- changing sums ---------------------------------------------------------------------

    def _find(self, decision_id: str) -> _Call | None:
        return self._live.get(decision_id) or self._recent.get(decision_id)

    def _scopes(self, call: _Call) -> list[_Sums | _Rolling]:
        scopes: list[_Sums | _Rolling] = []
        principal = self._principals.get(call.principal)
        if principal is not None:
            scopes.extend(principal.windows.values())
        thread = self._threads.get(call.thread) if call.thread else None
        if thread is not None:
            scopes.append(thread)
        return scopes

    def _add(self, call: _Call) -> None:
        self._live[call.decision_id] = call
        if call.state == "held":
            self._held[(call.thread, call.tool_call_id)] = call
        principal = self._principals.get(call.principal)
        if principal is None:
            principal = self._principals[call.principal] = _Principal()
        for scope in self._scopes(call):
            scope.add(call, 1)

    def _change(self, call: _Call, change: Any) -> None:
        """Apply ``change(call)`` and move the call's share of every sum it is in."""
        scopes = [s for s in self._scopes(call) if not isinstance(s, _Rolling) or s.contains(call)]
        for scope in scopes:
            scope.add(call, -1)
        change(call)
        for scope in scopes:
            if isinstance(scope, _Rolling):
                call.windows.discard(scope.name)
            scope.add(call, 1)

    def _settle(
        self, call: _Call, succeeded: bool, amount: decimal.Decimal | None, now: int
    ) -> None:
        state: State = "succeeded" if succeeded else "failed"
        if call.state == "held":
            # An approved call counts from when it ran: it joins the windows now.
            self._held.pop((call.thread, call.tool_call_id), None)
            call.state, call.time_us = state, now
            if amount is not None:
                call.amount = amount
            for scope in self._scopes(call):
                scope.add(call, 1)
            return

        def update(c: _Call) -> None:
            c.state = state
            if amount is not None:
                c.amount = amount

        self._change(call, update)

    def _forget_if_done(self, call: _Call) -> None:
        """Keep a call in ``_live`` only while it can still change; then among the recent."""
        if call.ours or call.settled or call.state in ("running", "held"):
            return
        self._live.pop(call.decision_id, None)
        self._recent[call.decision_id] = call
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    # --- the ledger's verbs ----------------------------------------------------------------

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
            self._start()
            self._sync()
            now = self._clock()
            sums = self._thread(thread)
            holder = self._principals.get(principal)
            excluded = self._find(exclude) if exclude else None
            windows: dict[str, Window] = {}
            for name, _seconds in WINDOWS:
                if holder is None:
                    windows[name] = _Sums().window(tool, meter, amount)
                    continue
                rolling = holder.windows[name]
                rolling.advance(now)
                windows[name] = _without(
                    rolling.sums.window(tool, meter, amount),
                    excluded if excluded is not None and rolling.contains(excluded) else None,
                    tool,
                    meter,
                )
            thread_window = (sums or _Sums()).window(tool, meter, amount)
            windows["thread"] = _without(
                thread_window,
                excluded if excluded is not None and excluded.thread == thread else None,
                tool,
                meter,
            )
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
            if not self._started or self._find(decision_id) is not None:
                return
            self._add(
                _Call(
                    decision_id,
                    principal,
                    thread,
                    tool_call_id,
                    tool,
                    meter,
                    amount,
                    self._clock(),
                    "running" if allowed else "held",
                    ours=True,
                )
            )

    def release(self, decision_id: str) -> None:
        """Forget a reservation whose decision could not be recorded (the call never ran)."""
        with self.lock:
            call = self._live.pop(decision_id, None)
            if call is None:
                return
            for scope in self._scopes(call):
                scope.add(call, -1)
            self._held.pop((call.thread, call.tool_call_id), None)

    def settle(self, decision_id: str, *, succeeded: bool, amount: decimal.Decimal | None) -> None:
        """Note the outcome of a call that ran."""
        with self.lock:
            call = self._find(decision_id)
            if call is None:
                return
            self._settle(call, succeeded, amount, self._clock())
            # Its outcome record will be read back from the log: not applied twice.
            call.settled = self._reader.readable
            self._forget_if_done(call)


def _call_of(record: DecisionRecord) -> _Call | None:
    """The call a decision record counts as (``None``: it does not count)."""
    if record.effect == "DENY" or record.principal is None:
        return None
    return _Call(
        record.decision_id,
        record.principal,
        record.thread,
        record.tool_call_id,
        record.tool,
        record.metered.meter if record.metered else None,
        decimal.Decimal(record.metered.amount) if record.metered else _ZERO,
        record.time_us,
        "running" if record.effect == "ALLOW" else "held",
    )


def _without(window: Window, call: _Call | None, tool: str, meter: str | None) -> Window:
    """A window without one call's share (the call re-executed: it must not see itself)."""
    if call is None or not call.counts:
        return window
    total = window.total
    if meter is not None and call.meter == meter and call.spends:
        total -= call.amount
    return Window(
        calls=window.calls - 1,
        tool_calls=window.tool_calls - (1 if call.tool == tool else 0),
        total=total,
        total_after=total + (window.total_after - window.total),
    )
