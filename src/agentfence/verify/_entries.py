"""Step 3 of :func:`~agentfence.verify.verify_log` for one entry, and for a range of entries.

:func:`check_entry` is the one implementation of steps 3a to 3e: it raises the entry's
:class:`EntryError` or returns its leaf hash and the facts the later steps need, in a compact
form (:data:`Fact`). :func:`walk_range` runs it over a contiguous range of rows and folds the
leaves into that range's own Merkle frontier; :func:`check_range` does the same in a spawned
worker process, over its own read-only connection. A range stops at its first failing entry
and says only where: the parent reads that entry again from its own snapshot and runs
:func:`check_entry` on it, so the error raised is the sequential verifier's, word for word,
and the lowest failing position is the one reported whichever range finds it.

Entries are canonical JSON (RFC 8785), so almost every decision and outcome entry has one
exact shape. :func:`read_fast` recognises that shape with one regular expression and reads
the fields step 3 and the order check need; anything else (another kind, a record with
escapes other than ``\\"`` and ``\\\\``, white space, keys in another order, a missing default,
a malformed entry) goes to strict pydantic validation, which decides. The fast reading only
ever accepts bytes that strict validation accepts with the same values (tests compare the two).
"""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agentfence._log_api import dedupe_key, index_columns
from agentfence._storage.database import SQLITE
from agentfence.errors import EntryError, VerificationError
from agentfence.records import (
    DECISION_KIND,
    ENTRY_FORMAT,
    OUTCOME_KIND,
    DecisionRecord,
    KeyChangeRecord,
    LogRecord,
    OutcomeRecord,
)
from agentfence.verify._common import KEEP_EVIDENCE, first_error
from agentfence.verify._key_schedule import KeyChange
from agentfence.verify._order import Block
from agentfence.verify._snapshot import (
    DECISION_KEY,
    ENTRY_ADAPTER,
    OUTCOME_KEY,
    Snapshot,
    body_seq,
    parse_body,
)

Row = Sequence[Any]
"""``(seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, time_us)`` of an entry."""

Fact = tuple[Any, ...]
"""What the order check needs of one entry: ``(seq, decision_id, effect, policy_hash,
request_blob)`` for a decision, ``(seq, decision_id, result_blob)`` for an outcome,
``(seq, record)`` for any other record."""

FIRST = -(2**63)
"""The lowest ``seq`` a range may start reading at: the first range reads from here, so a
row stored below 0 is found where the sequential loop would find it."""


# --- the fast reading of canonical decision and outcome entries ----------------------------

# A JSON string (RFC 8259 section 7) with no escapes but \" and \\ and no control characters;
# anything else a string may hold goes to strict validation. The unrolled, possessive form
# keeps the regular expression engine in its character-class loop, never backtracking.
_CHARS = r'[^"\\\x00-\x1f]*+(?:\\["\\][^"\\\x00-\x1f]*+)*+'
# The same without escapes: what the checks inline in walk_range read (see there).
_PLAIN = r'[^"\\\x00-\x1f]*+'
# An integer as RFC 8785 writes one, up to 16 digits (well inside what both readers take).
_INT = "(?:0|-?[1-9][0-9]{0,15})"
_INTC = f"({_INT})"
_EFFECT = "(?:ALLOW|DENY|REQUIRE_APPROVAL)"
_HEAD = r'\{"format":"agentfence\.entry/v1","record":\{'
_TAIL = rf'\}},"seq":{_INTC}\}}'


def _shapes(chars: str, read: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The decision and the outcome entry, each field with its type, in RFC 8785 key order
    (UTF-16 code units); ``read`` are the characters of the strings other than the Cedar
    entity ids (action, principal, resource) and the policies' words (reasons, errors),
    ``chars`` theirs."""
    s, p, pc = f'"{chars}"', f'"{read}"', f'"({read})"'
    ns, np_, npc = f"(?:null|{s})", f"(?:null|{p})", f"(null|{p})"
    ls, lp = rf"\[(?:{s}(?:,{s})*)?\]", rf"\[(?:{p}(?:,{p})*)?\]"
    metered = rf'(?:null|\{{"amount":{p},"meter":{p}\}})'
    shadow = rf'(?:null|\{{"effect":"{_EFFECT}","policy_ids":{lp},"reasons":{ls}\}})'
    redaction = rf'\{{"count":{_INT},"kind":{p}\}}'
    decision = re.compile(
        _HEAD
        + f'"action":{s},"agent":{p},"approvers":{lp},"decision_id":{pc},'
        + f'"effect":"({_EFFECT})","engine":{p},"errors":{ls},'
        + f'"format":"agentfence\\.decision/v1","metered":{metered},"policy_hash":{pc},'
        + f'"policy_ids":{lp},"principal":{ns},"reasons":{ls},"request_blob":{npc},'
        + f'"resource":{ns},"seed":{_INT},"shadow":{shadow},"span_id":{np_},"step":{_INT},'
        + f'"thread":{pc},"time_us":{_INTC},"tool":{pc},"tool_call_id":{p},"trace_id":{np_}'
        + _TAIL
    )
    outcome = re.compile(
        _HEAD
        + f'"decision_id":{pc},"format":"agentfence\\.outcome/v1","labels":{lp},'
        + f'"metered":{metered},"original_digest":{np_},"original_salt_blob":{np_},'
        + rf'"redactions":\[(?:{redaction}(?:,{redaction})*)?\],"result_blob":{npc},'
        + f'"result_digest":{p},"status":"(?:success|error)","time_us":{_INTC}'
        + _TAIL
    )
    return decision, outcome


_DECISION_SHAPE, _OUTCOME_SHAPE = _shapes(_CHARS, _CHARS)
_DECISION, _OUTCOME = _DECISION_SHAPE.fullmatch, _OUTCOME_SHAPE.fullmatch
# Strings read without escapes: a match needs no unescaping, and one with an escape goes to
# check_entry (whose reading above takes it).
_PLAIN_DECISION, _PLAIN_OUTCOME = (shape.fullmatch for shape in _shapes(_CHARS, _PLAIN))
_ESCAPE = re.compile(r"\\(.)")
_EFFECTS = {effect: effect for effect in ("ALLOW", "DENY", "REQUIRE_APPROVAL")}


def _text(value: str) -> str:
    """A captured string's value: its only escapes are \\" and \\\\."""
    return _ESCAPE.sub(r"\1", value) if "\\" in value else value


def _nullable(value: str) -> str | None:
    return None if value == "null" else _text(value[1:-1])


FastDecision = tuple[int, str, str, str, str | None, str, str, int]
"""``(seq, decision_id, effect, policy_hash, request_blob, thread, tool, time_us)``."""

FastOutcome = tuple[int, str, str | None, int]
"""``(seq, decision_id, result_blob, time_us)``."""


def read_fast(body: Any) -> FastDecision | FastOutcome | None:
    """Read a canonical decision or outcome entry, or ``None``: let strict validation decide.

    Only bytes that are valid UTF-8 and match a record's whole canonical shape (every key,
    in order, each value of its field's type, strings with no escape but \\" and \\\\)
    are read here; strict validation accepts each of them with the same values.
    """
    try:
        text = body.decode()  # strict UTF-8, as the JSON reader behind validation requires
    except (AttributeError, UnicodeDecodeError):
        return None
    match = _DECISION(text)
    if match is not None:
        did, effect, policy_hash, blob, thread, time_us, tool, seq = match.groups()
        return (
            int(seq),
            _text(did),
            sys.intern(effect),
            # Interned so that a worker pickles each policy set's hash once per range.
            sys.intern(_text(policy_hash)),
            _nullable(blob),
            _text(thread),
            _text(tool),
            int(time_us),
        )
    match = _OUTCOME(text)
    if match is not None:
        did, blob, time_us, seq = match.groups()
        return (int(seq), _text(did), _nullable(blob), int(time_us))
    return None


# --- one entry -----------------------------------------------------------------------------


def check_entry(
    row: Row,
    position: int,
    key_changes: Collection[KeyChange],
    after: Callable[[], Row | None],
) -> tuple[bytes, Fact]:
    """Steps 3a to 3e for the row read at ``position``: its leaf hash and its order facts.

    ``after`` reads the next stored row (it tells a deletion from a reordering). Raises the
    :class:`EntryError` naming the attack.
    """
    seq, kind, dkey, body, stored_leaf, thread, tool, effect, time_us = row
    # 3a. Sequence numbers are contiguous from 0.
    if seq != position:
        raise EntryError(
            f"entry {position} was deleted: the stored entries jump from "
            f"{position - 1} to {seq}, so entries {position} to {seq - 1} are "
            f"missing; {KEEP_EVIDENCE}",
            step=3,
            attack="entry_deleted",
        )
    # 3b. The entry's bytes hash to its stored leaf hash (RFC 6962 section 2.1).
    try:
        leaf = hashlib.sha256(b"\x00" + body).digest()
        same = hmac.compare_digest(leaf, stored_leaf)
    except TypeError as exc:
        # SQLite is dynamically typed: a body or hash rewritten as TEXT is no BLOB.
        raise EntryError(
            f"entry {seq} was modified: its body or leaf hash is not stored as a "
            f"BLOB ({exc}); {KEEP_EVIDENCE}",
            step=3,
            attack="entry_modified",
        ) from exc
    if not same:
        raise EntryError(
            f"entry {seq} was modified: its bytes no longer hash to the leaf hash "
            f"stored beside it (SHA-256(0x00 || entry) is {leaf.hex()}, stored "
            f"{stored_leaf.hex()}); {KEEP_EVIDENCE}",
            step=3,
            attack="entry_modified",
        )
    # 3c. The bytes are an agentfence entry holding a well-formed record (the canonical
    #     shape read directly, anything else validated strictly).
    fast = read_fast(body)
    if fast is not None and len(fast) == 8:
        claimed, did, f_effect, policy_hash, blob, f_thread, f_tool, f_time = fast
        # 3d. The entry carries its own position, so none was moved, added or dropped.
        if claimed != position:
            raise _misplaced(position, claimed, after)
        # 3e. The index columns (read by `log show` filters) match the entry.
        if (
            kind != DECISION_KIND
            or thread != f_thread
            or tool != f_tool
            or effect != f_effect
            or dkey != DECISION_KEY + did
            or time_us != f_time
        ):
            raise _index_error(row, parse_body(body, seq, step=3))
        return leaf, (seq, did, f_effect, policy_hash, blob)
    if fast is not None and len(fast) == 4:
        claimed, did, blob, f_time = fast
        if claimed != position:
            raise _misplaced(position, claimed, after)
        if (
            kind != OUTCOME_KIND
            or thread is not None
            or tool is not None
            or effect is not None
            or dkey != OUTCOME_KEY + did
            or time_us != f_time
        ):
            raise _index_error(row, parse_body(body, seq, step=3))
        return leaf, (seq, did, blob)
    try:
        entry = ENTRY_ADAPTER.validator.validate_json(body, strict=True)
    except ValidationError as exc:
        raise EntryError(
            f"entry {seq} was modified: its bytes are not a well-formed "
            f"{ENTRY_FORMAT} entry ({first_error(exc)}); {KEEP_EVIDENCE}",
            step=3,
            attack="entry_modified",
        ) from exc
    if entry.seq != position:
        raise _misplaced(position, entry.seq, after)
    record = entry.record
    cls = type(record)
    if cls is DecisionRecord:
        if (
            kind != DECISION_KIND
            or thread != record.thread
            or tool != record.tool
            or effect != record.effect
            or dkey != DECISION_KEY + record.decision_id
            or time_us != record.time_us
        ):
            raise _index_error(row, record)
        return leaf, (
            seq,
            record.decision_id,
            record.effect,
            record.policy_hash,
            record.request_blob,
        )
    if cls is OutcomeRecord:
        if (
            kind != OUTCOME_KIND
            or thread is not None
            or tool is not None
            or effect is not None
            or dkey != OUTCOME_KEY + record.decision_id
            or time_us != record.time_us
        ):
            raise _index_error(row, record)
        return leaf, (seq, record.decision_id, record.result_blob)
    if (
        kind != record.format
        or (thread, tool, effect) != index_columns(record)
        or dkey != dedupe_key(record)
        or time_us != record.time_us
    ):
        raise _index_error(row, record)
    # Step 2 read the key changes through the kind column; one it missed was hidden.
    if (
        isinstance(record, KeyChangeRecord)
        and KeyChange(seq, record.old_key, record.new_key) not in key_changes
    ):
        raise EntryError(
            f"entry {seq} is a key change whose kind column was altered to hide it",
            step=3,
            attack="index_altered",
        )
    return leaf, (seq, record)


def _index_error(row: Row, record: LogRecord) -> EntryError:
    seq, kind, dkey, _, _, thread, tool, effect, time_us = row
    columns: tuple[str | None, ...] = (None, None, None)
    if isinstance(record, DecisionRecord):
        columns = (record.thread, record.tool, record.effect)
    return EntryError(
        f"entry {seq}'s index columns were altered: kind, dedupe_key, thread, tool, effect and "
        f"time_us are {(kind, dkey, thread, tool, effect, time_us)}, but the entry says "
        f"{(record.format, dedupe_key(record), *columns, record.time_us)}. Filters such as "
        f"`log show --effect` read those columns; {KEEP_EVIDENCE}",
        step=3,
        attack="index_altered",
    )


def _misplaced(position: int, claimed: int, after: Callable[[], Row | None]) -> EntryError:
    """Name what moved when the entry at ``position`` says it is entry ``claimed``."""
    if claimed < position:
        return EntryError(
            f"an entry was inserted before position {position}: the entry stored there says it "
            f"is entry {claimed}, so the entries after it were pushed along; {KEEP_EVIDENCE}",
            step=3,
            attack="entry_inserted",
        )
    following = after()
    if following is not None and body_seq(following[3]) == claimed + 1:
        return EntryError(
            f"entry {position} was deleted and the later entries renumbered: the entry stored "
            f"at position {position} says it is entry {claimed}; {KEEP_EVIDENCE}",
            step=3,
            attack="entry_deleted",
        )
    return EntryError(
        f"entries were reordered: the entry stored at position {position} says it is entry "
        f"{claimed}; {KEEP_EVIDENCE}",
        step=3,
        attack="entries_reordered",
    )


# --- a range of entries --------------------------------------------------------------------


Item = Block | tuple[int, LogRecord]
"""What the order check takes in, in order: a :class:`Block` of decisions and outcomes, or
``(seq, record)`` for an entry of any other kind."""


@dataclass(frozen=True)
class RangePart:
    """What a range of entries hands back to the parent: everything but the errors' words.

    ``done`` entries from position ``start`` passed step 3; ``failed`` says the entry at
    ``start + done`` failed it, or is missing although the range should hold it. ``items``
    are those entries' order facts (:data:`Item`). ``stacks`` holds the range's own Merkle
    frontier (the perfect-subtree roots of its entries, largest first) after each asked size,
    ``final`` the frontier after its last good entry.
    """

    start: int
    done: int
    failed: bool
    items: list[Item]
    stacks: dict[int, tuple[bytes, ...]]
    final: tuple[bytes, ...]


def _nothing() -> None:
    return None


def walk_range(
    rows: Iterable[Row],
    start: int,
    end: int,
    sizes: Collection[int],
    key_changes: Collection[KeyChange],
) -> RangePart:
    """Check the rows of positions ``start`` to ``end - 1``, stopping at the first failure.

    ``start`` is a multiple of a power of two at least ``end - start``, so the range's
    entries form (at most) one perfect subtree of RFC 6962's tree and its frontier joins the
    frontier of everything before it without reference to it.

    A canonical decision or outcome entry whose strings hold no escape (but in the Cedar
    entity ids and the policies' words, which it does not read) is checked here, with the
    regular expression :func:`read_fast` uses narrowed to such strings and the comparisons
    of :func:`check_entry`; any other row, or one that fails any of them, goes to
    :func:`check_entry`, which decides. Either way the entry's order facts are folded into
    the range's blocks (:class:`~agentfence.verify._order.Block`).
    """
    sha256 = hashlib.sha256
    plain_decision = _PLAIN_DECISION
    position = start
    stack: list[bytes] = []
    block = Block(start)
    items: list[Item] = []
    stacks: dict[int, tuple[bytes, ...]] = {}
    wanted = {size for size in sizes if start < size <= end}
    failed = False
    for row in rows:
        if position >= end:
            break
        read = False
        try:
            seq, kind, dkey, body, stored_leaf, thread, tool, effect, time_us = row
            leaf = sha256(b"\x00" + body).digest()
            if seq == position and leaf == stored_leaf:
                if kind == DECISION_KIND:
                    # check_entry's reading and comparisons, for an entry without escapes.
                    match = plain_decision(body.decode())
                    if match is not None:
                        did, f_effect, policy_hash, blob, f_thread, f_time, f_tool, claimed = (
                            match.groups()
                        )
                        if (
                            thread == f_thread
                            and tool == f_tool
                            and effect == f_effect
                            and dkey == DECISION_KEY + did
                            and time_us == int(f_time)
                            and int(claimed) == position
                        ):
                            read = True
                            blob = None if blob == "null" else blob[1:-1]
                            block.decision(position, did, _EFFECTS[f_effect], policy_hash, blob)
                elif kind == OUTCOME_KIND:
                    read = _read_outcome(block, body, position, dkey, thread, tool, effect, time_us)
        except (TypeError, AttributeError, UnicodeDecodeError):
            read = False  # a body stored as TEXT, or not UTF-8: check_entry says what
        if not read:
            try:
                leaf, fact = check_entry(row, position, key_changes, _nothing)
            except EntryError:
                # The parent reads this entry again and raises the error itself.
                failed = True
                break
            if len(fact) == 5:
                block.decision(*fact)
            elif len(fact) == 3:
                block.outcome(*fact)
            else:
                if block.decisions or block.outcomes:
                    block.end = position
                    items.append(block)
                items.append((fact[0], fact[1]))
                block = Block(position + 1)
        # 4. Fold the leaf into the range's tree (each trailing one bit of the entries
        #    folded so far is a perfect subtree to merge, as in MerkleFrontier.append).
        merged, carry = leaf, position - start
        while carry & 1:
            merged = sha256(b"\x01" + stack.pop() + merged).digest()
            carry >>= 1
        stack.append(merged)
        position += 1
        if position in wanted:
            stacks[position] = tuple(stack)
    else:
        failed = position < end
    if block.decisions or block.outcomes:
        block.end = position
        items.append(block)
    return RangePart(start, position - start, failed, items, stacks, tuple(stack))


# What check_entry does for a canonical outcome entry whose strings hold no escape, without
# its calls (walk_range does the same for a decision): the same regular expression
# and the same comparisons; anything refused goes to check_entry. Returns whether it took
# the entry into ``block``; the caller checked the row's seq and leaf hash.


def _read_outcome(
    block: Block,
    body: bytes,
    position: int,
    dkey: Any,
    thread: Any,
    tool: Any,
    effect: Any,
    time_us: Any,
) -> bool:
    match = _PLAIN_OUTCOME(body.decode())
    if match is None:
        return False
    did, blob, f_time, claimed = match.groups()
    blob = None if blob == "null" else blob[1:-1]
    if (
        thread is None
        and tool is None
        and effect is None
        and dkey == OUTCOME_KEY + did
        and time_us == int(f_time)
        and int(claimed) == position
    ):
        block.outcome(position, did, blob)
        return True
    return False


def check_range(
    source: str,
    first: int,
    start: int,
    end: int,
    sizes: Collection[int],
    key_changes: Collection[KeyChange],
) -> RangePart:
    """:func:`walk_range` in a worker process, reading from ``first`` over its own connection.

    Only rows below ``end`` are read, and ``end`` comes from the parent's snapshot, so
    entries appended while the log is verified are not read here either.
    """
    with Snapshot(source) as snap:
        return walk_range(snap.rows(first, end), start, end, sizes, key_changes)


RANGE = 2**14
"""Entries per range: a power of two, so that each full range is one perfect subtree."""


def range_bounds(last: int | None) -> list[tuple[int, int, int]]:
    """``(first, start, end)`` of each range up to the stored ``seq`` ``last``.

    Positions ``start`` to ``end - 1``, read from ``seq >= first`` (the first range from
    :data:`FIRST`, so that a row stored below 0 is found at position 0).
    """
    if last is None:
        return []
    end = max(last + 1, 1)
    return [
        (start if start else FIRST, start, min(end, start + RANGE))
        for start in range(0, end, RANGE)
    ]


def range_parts(
    snap: Snapshot,
    source: str,
    bounds: Sequence[tuple[int, int, int]],
    sizes: Collection[int],
    key_changes: Collection[KeyChange],
    workers: int,
) -> Iterator[RangePart]:
    """Each range's :class:`RangePart`, in order: checked here, or by ``workers`` processes.

    In one process every range is read from ``snap``. Worker processes (SQLite only) each
    open the file read-only; the parent still reads its snapshot for every error it raises.
    A worker that dies is a :class:`VerificationError`: the log is not verified.
    """
    if workers <= 1 or len(bounds) <= 1 or snap.location.engine != SQLITE:
        for first, start, end in bounds:
            yield walk_range(snap.rows(first, end), start, end, sizes, key_changes)
        return
    pool = start_pool(min(workers, len(bounds)))
    finished = False
    try:
        futures = [
            pool.submit(check_range, source, first, start, end, sizes, key_changes)
            for first, start, end in bounds
        ]
        for (_, start, end), future in zip(bounds, futures, strict=True):
            try:
                part = future.result()
            except BrokenProcessPool as exc:
                raise VerificationError(
                    f"a worker process checking entries {start} to {end - 1} died ({exc}); the "
                    "log is not verified. Run `agentfence log verify --workers 1` to check it "
                    "in one process"
                ) from exc
            yield part
        finished = True
    finally:
        # After an error the ranges not begun are cancelled and the parent does not wait.
        pool.shutdown(wait=finished, cancel_futures=not finished)


def start_pool(processes: int) -> ProcessPoolExecutor:
    """Spawned processes (never forked from a parent that holds open connections)."""
    return ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("spawn")
    )
