"""Offline checks of the decision log: verify it, prove one entry, replay it, export evidence.

An auditor needs only the log file (or an evidence pack) and the verifier keys they trust.
Nothing here writes to the log, and nothing here trusts what the log says about itself
until a signature by a trusted key vouches for it:

- :func:`verify_log` checks a whole log in seven numbered steps (the same numbers appear as
  comments in the code, in :attr:`VerifiedLog.steps` and in ``agentfence log verify``);
- :func:`prove` makes an :class:`InclusionReceipt` for one entry, which
  :func:`verify_receipt` checks with nothing but the receipt and a key;
- :func:`replay` re-decides every recorded decision with the recorded policies (or, "what
  if", with a candidate policy directory) and reports what differs;
- :func:`export_evidence` writes an :class:`EvidencePack` for one thread, which
  :func:`verify_evidence` checks offline.

Every check raises a :class:`LogVerificationError` subclass naming the step and the attack
the evidence shows (``attack`` is one of the names used by ``tests/vectors/tamper``); none
returns a bool. The byte format is in ``docs/log-format.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from agentfence import _cedar, _merkle, _signing
from agentfence._signing import Checkpoint, Verifier
from agentfence.errors import ConfigurationError, LogError, PolicyLoadError, VerificationError
from agentfence.log import LOG_FORMAT, dedupe_key, index_columns, sqlite_path
from agentfence.policy import CallFacts, EntityRef, PolicyEngine, read_directory
from agentfence.records import (
    BLOB_SALT_BYTES,
    ENTRY_FORMAT,
    ActivationRecord,
    ApprovalAnswerRecord,
    ApprovalRequestRecord,
    DecisionRecord,
    ErasureRecord,
    KeyChangeRecord,
    LogRecord,
    OutcomeRecord,
    Record,
    blob_ref,
)
from agentfence.tools import ToolCatalog

__all__ = [
    "EVIDENCE_STEPS",
    "LOG_STEPS",
    "BlobError",
    "CheckpointError",
    "EntryError",
    "ErasedBlob",
    "EvidenceError",
    "EvidencePack",
    "ForkError",
    "InclusionReceipt",
    "KeyChange",
    "LogVerificationError",
    "NotReplayable",
    "OrderError",
    "ReplayChange",
    "ReplayReport",
    "RollbackError",
    "VerifiedEvidence",
    "VerifiedLog",
    "VerifiedReceipt",
    "VerifiedStep",
    "export_evidence",
    "prove",
    "replay",
    "verify_evidence",
    "verify_log",
    "verify_receipt",
]

RECEIPT_FORMAT = "agentfence.receipt/v1"
EVIDENCE_FORMAT = "agentfence.evidence/v1"

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``, called now and then during long steps."""

_DECISION = "agentfence.decision/v1"
_OUTCOME = "agentfence.outcome/v1"
_DECISION_KEY = _DECISION + ":"  # log.dedupe_key of a decision is this and its decision id
_OUTCOME_KEY = _OUTCOME + ":"
_KEYCHANGE = "agentfence.keychange/v1"
_ACTIVATION = "agentfence.activation/v1"
_POLICYSET = "agentfence.policyset/v1"  # the format marker inside a policy set hash
_RAN = "RAN"  # the state of a decision once its outcome is on record
_APPROVED = "APPROVED"  # the state of a held decision once an approver's answer is accepted
_PROGRESS_EVERY = 20_000
_KEEP = "keep this copy as evidence and compare it with a backup or an evidence pack"


# --- errors --------------------------------------------------------------------------------


class LogVerificationError(VerificationError):
    """The log, a receipt or an evidence pack failed one numbered verification step.

    ``step`` is the number of the step that failed and ``title`` its title, ``attack`` a
    short name for what the evidence shows (``entry_modified``, ``truncated_or_rolled_back``,
    ``fork_same_size``, ...; the table is in ``docs/log-format.md``), and ``steps`` the
    steps that passed before it.
    """

    def __init__(
        self, message: str, *, step: int, attack: str, steps: Sequence[VerifiedStep] = ()
    ) -> None:
        super().__init__(message)
        self.step = step
        self.title = ""
        self.attack = attack
        self.steps = tuple(steps)


class EntryError(LogVerificationError):
    """An entry was modified, deleted, inserted or reordered, or its index columns lie."""


class CheckpointError(LogVerificationError):
    """A checkpoint was altered, is signed by an untrusted key, or does not match the log."""


class RollbackError(LogVerificationError):
    """The log is shorter than a checkpoint the auditor saved: truncated or rolled back."""


class ForkError(LogVerificationError):
    """Two validly signed checkpoints disagree about the same history."""


class BlobError(LogVerificationError):
    """A blob is missing, altered, or erased without an erasure entry."""


class OrderError(LogVerificationError):
    """Entries are out of order: an outcome without its decision, an unactivated policy set."""


class EvidenceError(LogVerificationError):
    """A receipt or evidence pack is malformed or incomplete."""


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedStep:
    """One verification step that passed: its number, its title and what it found."""

    number: int
    title: str
    detail: str
    skipped: bool = False


@dataclass(frozen=True)
class KeyChange:
    """A key-change entry: checkpoint signing passed from ``old_key`` to ``new_key``."""

    seq: int
    old_key: str
    new_key: str


@dataclass(frozen=True)
class ErasedBlob:
    """A blob whose content was erased, and the entry that recorded the erasure."""

    ref: str
    seq: int
    reason: str


@dataclass(frozen=True)
class VerifiedLog:
    """What :func:`verify_log` established about a log that passed every step.

    ``size`` and ``root`` are those of the latest signed checkpoint (``checkpoint``, the
    note to keep elsewhere and pass back as ``saved_checkpoint`` next time). Entries after
    it are stored but not yet signed: ``unsigned_tail`` counts them.
    """

    origin: str
    size: int
    root: bytes
    checkpoint: str
    signed_by: tuple[str, ...]
    entries: int
    unsigned_tail: int
    checkpoints: int
    key_changes: tuple[KeyChange, ...]
    decisions: int
    outcomes: int
    activations: int
    blobs: int
    erased_blobs: tuple[ErasedBlob, ...]
    unreferenced_blobs: tuple[str, ...]
    pending_erasures: tuple[str, ...]
    saved_checkpoint_size: int | None
    steps: tuple[VerifiedStep, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (what ``agentfence log verify --json`` prints)."""
        return {
            "verified": True,
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "checkpoint": self.checkpoint,
            "signed_by": list(self.signed_by),
            "entries": self.entries,
            "unsigned_tail": self.unsigned_tail,
            "checkpoints": self.checkpoints,
            "key_changes": [vars(k) for k in self.key_changes],
            "decisions": self.decisions,
            "outcomes": self.outcomes,
            "activations": self.activations,
            "blobs": self.blobs,
            "erased_blobs": [vars(b) for b in self.erased_blobs],
            "unreferenced_blobs": list(self.unreferenced_blobs),
            "pending_erasures": list(self.pending_erasures),
            "saved_checkpoint_size": self.saved_checkpoint_size,
            "steps": [vars(s) for s in self.steps],
            "seconds": round(self.seconds, 3),
        }


# --- reading a log -------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Entry(_Frozen):
    format: Literal["agentfence.entry/v1"]
    record: Record
    seq: int


# One pass of pydantic-core over the entry bytes parses the JSON and validates the record,
# strictly, as log.parse_entry does in two passes.
_ENTRY: TypeAdapter[_Entry] = TypeAdapter(_Entry)
_RECORD: TypeAdapter[LogRecord] = TypeAdapter(Record)


class _Snapshot:
    """A read-only, consistent view of one SQLite decision log.

    The verifier reads the documented tables itself rather than through the writer's code,
    inside one read transaction, so every step sees the same snapshot even while a fence
    keeps appending.
    """

    def __init__(self, source: str | Path) -> None:
        self.path = sqlite_path(source)
        if not self.path.is_file():
            raise LogError(
                f"no decision log at {str(self.path)!r}; check the path (a log is created by "
                "a fence with log='sqlite:///PATH')"
            )
        try:
            self._conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
            self._conn.execute("BEGIN")
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error as exc:
            raise LogError(f"cannot open {str(self.path)!r} read-only: {exc}") from exc
        missing = {"meta", "entries", "blobs", "checkpoints"} - tables
        if missing:
            self._conn.close()
            raise LogError(
                f"{str(self.path)!r} is not an agentfence decision log: it has no "
                f"{', '.join(sorted(missing))} table; check that you opened the right file"
            )

    def __enter__(self) -> _Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}

    def checkpoints(self) -> list[tuple[int, bytes, str, bytes]]:
        """``(size, root, note, frontier)`` of every stored checkpoint, smallest first."""
        return [
            (int(r[0]), bytes(r[1]), r[2], bytes(r[3]))
            for r in self._conn.execute(
                "SELECT size, root, note, frontier FROM checkpoints ORDER BY size"
            )
        ]

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    def rows(self, start: int = 0, end: int | None = None) -> sqlite3.Cursor:
        sql = (
            "SELECT seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, time_us "
            "FROM entries WHERE seq >= ?"
        )
        params: tuple[int, ...] = (start,)
        if end is not None:
            sql += " AND seq < ?"
            params = (start, end)
        cursor = self._conn.execute(sql + " ORDER BY seq", params)
        cursor.arraysize = 1000
        return cursor

    def keychange_rows(self) -> list[tuple[int, bytes]]:
        return list(self.kind_rows(_KEYCHANGE, 0, None))

    def kind_rows(self, kind: str, start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
        """``(seq, body)`` of the entries whose kind column is ``kind``, in order."""
        cursor = self._conn.execute(
            "SELECT seq, body FROM entries WHERE kind = ? AND seq >= ? AND seq < ? ORDER BY seq",
            (kind, start, end if end is not None else 2**63 - 1),
        )
        cursor.arraysize = 1000
        for seq, body in cursor:
            yield int(seq), bytes(body)

    def count_kind(self, kind: str) -> int:
        row = self._conn.execute("SELECT count(*) FROM entries WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def body(self, seq: int) -> bytes | None:
        row = self._conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()
        return bytes(row[0]) if row else None

    def leaf_hashes(self, end: int) -> list[bytes]:
        return [
            bytes(r[0])
            for r in self._conn.execute(
                "SELECT leaf_hash FROM entries WHERE seq < ? ORDER BY seq", (end,)
            )
        ]

    def blobs(self) -> sqlite3.Cursor:
        cursor = self._conn.execute("SELECT ref, salt, content, erased FROM blobs")
        cursor.arraysize = 1000
        return cursor

    def blob_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM blobs").fetchone()[0])

    def blobs_by_ref(self, refs: Sequence[str]) -> dict[str, bytes | None]:
        """Content by ref for the refs that are stored (``None``: erased)."""
        found: dict[str, bytes | None] = {}
        for start in range(0, len(refs), 500):
            chunk = list(refs[start : start + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT ref, content FROM blobs WHERE ref IN ({marks})"  # noqa: S608  # only placeholders are interpolated
            for ref, content in self._conn.execute(sql, chunk):
                found[str(ref)] = bytes(content) if content is not None else None
        return found

    def blob_row(self, ref: str) -> tuple[bytes | None, bytes | None] | None:
        row = self._conn.execute("SELECT salt, content FROM blobs WHERE ref = ?", (ref,)).fetchone()
        if row is None:
            return None
        return (
            bytes(row[0]) if row[0] is not None else None,
            bytes(row[1]) if row[1] is not None else None,
        )

    def tree_state(self) -> tuple[int, bytes] | None:
        try:
            row = self._conn.execute(
                "SELECT size, frontier FROM tree_state WHERE id = 1"
            ).fetchone()
        except sqlite3.Error:
            return None
        return (int(row[0]), bytes(row[1])) if row else None


def _verifiers(keys: Sequence[Verifier | str]) -> list[Verifier]:
    if isinstance(keys, str | Verifier):
        keys = [keys]
    found = [k if isinstance(k, Verifier) else Verifier.from_vkey(k.strip()) for k in keys]
    if not found:
        raise ConfigurationError(
            "no verifier key given: pass the log's public key (the NAME.pub file written by "
            "`agentfence keys generate`, or its <name>+<key id>+<key> text)"
        )
    return found


def _note_text(note: str) -> str:
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError(
            "malformed signed note: there is no blank line between the text and the "
            "signature lines (C2SP signed-note); fetch the checkpoint again"
        )
    return note[: split + 1]


def _saved_note(note: str) -> str:
    """A note as kept in a file: Windows line ends and extra final newlines undone.

    Neither is in the signed text (a note has no control character but newline, and the
    signature lines end it with exactly one newline), so this changes nothing signed.
    """
    return note.replace("\r\n", "\n").rstrip("\n") + "\n"


def _claimed_signers(note: str) -> set[tuple[str, int]]:
    """The (name, key id) of each signature line, read without verifying anything."""
    claimed: set[tuple[str, int]] = set()
    split = note.rfind("\n\n")
    for line in note[split + 2 :].split("\n") if split >= 0 else ():
        name, _, encoded = line.removeprefix("\u2014 ").partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) >= 4:
            claimed.add((name, int.from_bytes(raw[:4], "big")))
    return claimed


def _open_checkpoint(
    note: str, known: Sequence[Verifier], what: str, *, step: int, origin: str | None
) -> tuple[Checkpoint, frozenset[str]]:
    """Open a checkpoint note; return it and the vkeys of the known keys that signed it."""
    try:
        opened = _signing.open_note(note, known)
        checkpoint = _signing.parse_checkpoint_body(opened.text)
    except VerificationError as exc:
        slots = {(v.name, v.key_id) for v in known}
        if _claimed_signers(note) & slots:
            raise CheckpointError(
                f"{what} was altered: {exc}. Its text or signature changed after it was "
                f"signed; {_KEEP}",
                step=step,
                attack="checkpoint_altered",
            ) from exc
        raise CheckpointError(
            f"{what} is not signed by a trusted key: {exc}",
            step=step,
            attack="checkpoint_unknown_key",
        ) from exc
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            f"{what} is for log {checkpoint.origin!r}, but this log is {origin!r}: it belongs "
            "to another log; check which log or checkpoint file you passed",
            step=step,
            attack="checkpoint_wrong_log",
        )
    by_slot = {(v.name, v.key_id): v.vkey for v in known}
    signed = frozenset(by_slot[(s.name, s.key_id)] for s in opened.signatures if s.verified)
    return checkpoint, signed


# --- which key may sign which checkpoint ---------------------------------------------------


@dataclass
class _KeySchedule:
    """The log's signing keys in order, and the checkpoint sizes each may sign.

    Following :class:`~agentfence.records.KeyChangeRecord`: the key before a key change at
    entry ``s`` signs checkpoints of size ``<= s`` and the handover (the first checkpoint
    that includes entry ``s``); the key after it signs checkpoints of size ``>= s + 1``
    until the next change.
    """

    epochs: list[Verifier]
    changes: list[KeyChange]
    handovers: dict[int, int] = field(default_factory=dict)  # change index -> size

    @classmethod
    def build(
        cls,
        changes: Sequence[KeyChange],
        trusted: Sequence[Verifier],
        first_note: str | None,
        *,
        step: int,
        origin: str | None,
    ) -> _KeySchedule:
        if changes:
            epochs = [Verifier.from_vkey(changes[0].old_key)]
            for index, change in enumerate(changes):
                if index and change.old_key != changes[index - 1].new_key:
                    raise CheckpointError(
                        f"the key change at entry {change.seq} hands over from "
                        f"{change.old_key}, but the key in force was "
                        f"{changes[index - 1].new_key} (key change at entry "
                        f"{changes[index - 1].seq}): the chain of keys is broken; {_KEEP}",
                        step=step,
                        attack="key_chain_broken",
                    )
                epochs.append(Verifier.from_vkey(change.new_key))
            return cls(epochs=epochs, changes=list(changes))
        # No key change: the log's only key is the trusted key that signed its first checkpoint.
        if first_note is None:
            raise CheckpointError(
                "the log has no signed checkpoint; a fence signs one when it creates the log, "
                "so this file was not written by agentfence or its checkpoints were deleted",
                step=step,
                attack="checkpoint_missing",
            )
        _, signed = _open_checkpoint(
            first_note, trusted, "the log's first checkpoint", step=step, origin=origin
        )
        first = next(v for v in trusted if v.vkey in signed)
        return cls(epochs=[first], changes=[])

    def set_handovers(self, sizes: Sequence[int]) -> None:
        ordered = sorted(sizes)
        for index, change in enumerate(self.changes):
            later = [s for s in ordered if s >= change.seq + 1]
            if later:
                self.handovers[index] = later[0]

    def allowed(self, size: int) -> set[str]:
        """The vkeys that may sign a checkpoint of ``size``."""
        keys: set[str] = set()
        for index, key in enumerate(self.epochs):
            low = 0 if index == 0 else self.changes[index - 1].seq + 1
            high = self.changes[index].seq if index < len(self.changes) else None
            if (low <= size and (high is None or size <= high)) or (
                index < len(self.changes) and self.handovers.get(index) == size
            ):
                keys.add(key.vkey)
        return keys

    def range_of(self, vkey: str) -> str:
        for index, key in enumerate(self.epochs):
            if key.vkey == vkey:
                low = 0 if index == 0 else self.changes[index - 1].seq + 1
                if index == len(self.changes):
                    return f"sizes {low} and up"
                end = self.handovers.get(index, self.changes[index].seq)
                return f"sizes {low} to {self.changes[index].seq} and the handover at {end}"
        return "no size (it is not one of the log's keys)"

    def trust(
        self, signed: Mapping[int, frozenset[str]], latest: int, trusted: set[str], *, step: int
    ) -> tuple[set[str], tuple[str, ...]]:
        """Which of the log's keys are trusted, and which of them signed the latest checkpoint.

        A key is trusted if the auditor trusts it, or if the key before it is trusted and
        signed its handover checkpoint (so a rotation cannot be forged without the old key).
        The latest checkpoint must be signed by such a key; it then vouches for every entry
        below it, key changes included, so the keys before are trusted too.
        """
        forward = {i for i, k in enumerate(self.epochs) if k.vkey in trusted}
        for index in range(len(self.changes)):
            handover = self.handovers.get(index)
            if (
                index in forward
                and handover is not None
                and self.epochs[index].vkey in signed.get(handover, frozenset())
            ):
                forward.add(index + 1)
        vouching = {self.epochs[i].vkey for i in forward} & self.allowed(latest)
        by = tuple(sorted(vouching & signed[latest]))
        if not by:
            signers = sorted(_short(k) for k in signed[latest]) or ["no key of this log"]
            allowed = sorted(self.allowed(latest))
            raise CheckpointError(
                f"the latest checkpoint (size {latest}) is not signed by a trusted key valid "
                f"at that size: it is signed by {', '.join(signers)}; the log's key for that "
                f"size is {', '.join(allowed)}, and your trusted keys are "
                f"{', '.join(sorted(_short(k) for k in trusted))}. Pass the verifier key of the "
                "log's current signer, or find out why the log is signed by another key",
                step=step,
                attack="checkpoint_unknown_key",
            )
        top = max(forward)
        return {k.vkey for k in self.epochs[: top + 1]}, by


# --- verify_log ----------------------------------------------------------------------------


LOG_STEPS = (
    "open",
    "checkpoint signatures",
    "entries",
    "Merkle roots",
    "saved checkpoint",
    "blobs",
    "order",
)
"""The titles of :func:`verify_log`'s steps; step ``n`` is ``LOG_STEPS[n - 1]``."""

EVIDENCE_STEPS = ("read", "entries", "checkpoint signature", "blobs", "order")
"""The titles of :func:`verify_evidence`'s steps; step ``n`` is ``EVIDENCE_STEPS[n - 1]``."""


@dataclass
class _Run:
    titles: tuple[str, ...]
    progress: Progress | None
    steps: list[VerifiedStep] = field(default_factory=list)

    def passed(self, number: int, detail: str, *, skipped: bool = False) -> None:
        self.steps.append(VerifiedStep(number, self.titles[number - 1], detail, skipped))

    def failed(self, exc: LogVerificationError) -> None:
        exc.steps = tuple(self.steps)
        exc.title = self.titles[exc.step - 1] if 0 < exc.step <= len(self.titles) else ""

    def tick(self, title: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(title, done, total)


def verify_log(
    source: str | Path,
    keys: Sequence[Verifier | str],
    *,
    saved_checkpoint: str | None = None,
    progress: Progress | None = None,
) -> VerifiedLog:
    """Verify a decision log offline with the verifier keys you trust.

    ``source`` is the SQLite file (or ``sqlite:///PATH``); ``keys`` are C2SP verifier keys
    (``<name>+<key id>+<key>`` text or :class:`~agentfence._signing.Verifier`). Pass the
    checkpoint note you saved last time as ``saved_checkpoint``: it is what reveals a
    truncated or rolled-back log, or a fork. The steps are listed in the code below and
    returned in :attr:`VerifiedLog.steps`. Raises a :class:`LogVerificationError` subclass
    naming the failed step and the attack; returns only if every step passes.
    """
    started = time.perf_counter()
    trusted = _verifiers(keys)
    run = _Run(LOG_STEPS, progress)
    try:
        with _Snapshot(source) as snap:
            check = _LogCheck(snap, trusted, run)
            # 1. Open the log read-only and check its format marker and origin.
            check.open()
            # 2. Verify every checkpoint's signature with a trusted key valid at its size.
            check.signatures()
            # 3. Read every entry in order: contiguous, hashing to its leaf hash, well formed,
            #    carrying its own position, and matching its index columns.
            # 4. Recompute the Merkle root at every checkpoint size and compare.
            saved = check.read_saved(saved_checkpoint)
            check.entries_and_roots(saved)
            # 5. Check that the log extends the checkpoint the auditor saved.
            check.saved(saved)
            # 6. Check every blob: present, unaltered, or erased with an erasure entry.
            check.blobs()
            # 7. Check order: outcomes follow their decisions, policy sets are activated first.
            check.check_order()
    except LogVerificationError as exc:
        run.failed(exc)
        raise
    return check.result(time.perf_counter() - started)


@dataclass(frozen=True)
class _Saved:
    note: str
    size: int
    root: bytes


class _LogCheck:
    """The state :func:`verify_log` builds up step by step."""

    def __init__(self, snap: _Snapshot, trusted: Sequence[Verifier], run: _Run) -> None:
        self.snap = snap
        self.trusted = list(trusted)
        self.run = run
        self.origin = ""
        self.stored: list[tuple[int, bytes, str, bytes]] = []
        self.keys: _KeySchedule
        self.signed_by: tuple[str, ...] = ()
        self.latest: Checkpoint
        self.count = 0
        self.key_changes: list[KeyChange] = []
        self.erasures: dict[str, tuple[int, str]] = {}
        self.order = _Order()
        self.activations: list[tuple[int, ActivationRecord]] = []
        self.saved_root: bytes | None = None
        self.blob_count = 0
        self.erased: list[ErasedBlob] = []
        self.unreferenced: list[str] = []
        self.pending: list[str] = []
        self.saved_size: int | None = None

    def open(self) -> None:
        meta = self.snap.meta()
        if meta.get("format") != LOG_FORMAT:
            raise EntryError(
                f"{self.snap.path} is not an agentfence decision log of format {LOG_FORMAT} "
                f"(its meta table says {meta.get('format')!r}); check that you opened the "
                "right file",
                step=1,
                attack="not_a_log",
            )
        self.origin = meta.get("origin", "")
        if not self.origin:
            raise EntryError(
                f"{self.snap.path} has no origin in its meta table; it was not written by "
                "agentfence or was edited",
                step=1,
                attack="not_a_log",
            )
        self.run.passed(1, f"read-only, format {LOG_FORMAT}, origin {self.origin}")

    def signatures(self) -> None:
        self.stored = self.snap.checkpoints()
        if not self.stored:
            raise CheckpointError(
                "the log has no signed checkpoint; a fence signs one when it creates the log, "
                "so this file was not written by agentfence or its checkpoints were deleted",
                step=2,
                attack="checkpoint_missing",
            )
        for size, _, note, _ in self.stored:
            if not isinstance(note, str):
                raise CheckpointError(
                    f"the checkpoint of size {size} was altered: its note is stored as "
                    f"{type(note).__name__}, not text",
                    step=2,
                    attack="checkpoint_altered",
                )
        # Key changes are read here through the kind column to know which key signs which
        # size; step 3 checks that column against every entry's bytes, and step 4 that
        # those bytes are the ones the checkpoints sign.
        for seq, body in self.snap.keychange_rows():
            record = _parse_body(body, seq, step=2)
            if isinstance(record, KeyChangeRecord):
                self.key_changes.append(KeyChange(seq, record.old_key, record.new_key))
        first = self.stored[0][2] if self.stored else None
        self.keys = _KeySchedule.build(
            self.key_changes, self.trusted, first, step=2, origin=self.origin
        )
        self.keys.set_handovers([size for size, *_ in self.stored])
        known = _unique([*self.trusted, *self.keys.epochs])
        chain = {k.vkey for k in self.keys.epochs}
        signed: dict[int, frozenset[str]] = {}
        for size, root, note, _ in self.stored:
            what = f"the checkpoint of size {size}"
            checkpoint, by = _open_checkpoint(note, known, what, step=2, origin=self.origin)
            if checkpoint.size != size or not hmac.compare_digest(checkpoint.root, root):
                raise CheckpointError(
                    f"{what} was altered: its stored size and root columns say size {size}, "
                    f"root {root.hex()}, but its signed note says size {checkpoint.size}, root "
                    f"{checkpoint.root.hex()}; {_KEEP}",
                    step=2,
                    attack="checkpoint_altered",
                )
            outside = (by & chain) - self.keys.allowed(size)
            if outside:
                key = sorted(outside)[0]
                raise CheckpointError(
                    f"{what} is signed by {key}, which may sign only {self.keys.range_of(key)}: "
                    "a retired key kept signing, or a new key signed history from before its "
                    f"key change; {_KEEP}",
                    step=2,
                    attack="checkpoint_wrong_key",
                )
            signed[size] = by
        latest_size = self.stored[-1][0]
        trusted_keys, self.signed_by = self.keys.trust(
            signed, latest_size, {v.vkey for v in self.trusted}, step=2
        )
        for size, *_ in self.stored:
            if not signed[size] & trusted_keys & self.keys.allowed(size):
                raise CheckpointError(
                    f"the checkpoint of size {size} is not signed by the key valid at that size "
                    f"({', '.join(sorted(self.keys.allowed(size)))}); it is signed by "
                    f"{', '.join(sorted(signed[size])) or 'no key of this log'}; {_KEEP}",
                    step=2,
                    attack="checkpoint_unknown_key",
                )
        self.latest = Checkpoint(self.origin, latest_size, self.stored[-1][1])
        rotated = f"; {_count(len(self.key_changes), 'key change')}" if self.key_changes else ""
        self.run.passed(
            2,
            f"{len(self.stored)} checkpoints; latest size {latest_size} signed by "
            f"{' and '.join(_short(k) for k in self.signed_by)}{rotated}",
        )

    def read_saved(self, note: str | None) -> _Saved | None:
        if note is None:
            return None
        note = _saved_note(note)
        # The size and root are read now so step 4 can note the root at that size; the
        # signature is checked in step 5, before anything is concluded from them.
        try:
            body = _signing.parse_checkpoint_body(_note_text(note))
        except VerificationError as exc:
            raise CheckpointError(
                f"the saved checkpoint is malformed: {exc}", step=5, attack="checkpoint_altered"
            ) from exc
        return _Saved(note, body.size, body.root)

    def entries_and_roots(self, saved: _Saved | None) -> None:
        total = self.snap.count()
        sizes = [(size, root, frontier) for size, root, _, frontier in self.stored]
        if sizes and sizes[0][0] == 0:
            if not hmac.compare_digest(sizes[0][1], _merkle.EMPTY_ROOT):
                raise EntryError(
                    "the checkpoint of size 0 does not carry the empty-tree root",
                    step=4,
                    attack="history_rewritten",
                )
            if sizes[0][2] != _frontier(0, ()).state().to_bytes():
                raise CheckpointError(
                    "the checkpoint of size 0 was altered: the Merkle frontier stored with it "
                    "is not the empty tree's",
                    step=4,
                    attack="checkpoint_altered",
                )
            sizes = sizes[1:]
        capture = saved.size if saved is not None else -1
        # This loop runs once per entry, so it binds what it calls to locals and keeps the
        # Merkle frontier as a plain list: the perfect-subtree roots of MerkleFrontier.
        sha256 = hashlib.sha256
        compare = hmac.compare_digest
        validate = _ENTRY.validator.validate_json
        order = self.order
        see_decision, see_outcome = order.decision, order.outcome
        stack: list[bytes] = []
        next_index = 0
        next_size = sizes[0][0] if sizes else -1
        last_good = 0
        position = 0
        cursor = self.snap.rows()
        for row in cursor:
            seq, kind, dkey, body, stored_leaf, thread, tool, effect, time_us = row
            # 3a. Sequence numbers are contiguous from 0.
            if seq != position:
                raise EntryError(
                    f"entry {position} was deleted: the stored entries jump from "
                    f"{position - 1} to {seq}, so entries {position} to {seq - 1} are "
                    f"missing; {_KEEP}",
                    step=3,
                    attack="entry_deleted",
                )
            # 3b. The entry's bytes hash to its stored leaf hash (RFC 6962 section 2.1).
            try:
                leaf = sha256(b"\x00" + body).digest()
                same = compare(leaf, stored_leaf)
            except TypeError as exc:
                # SQLite is dynamically typed: a body or hash rewritten as TEXT is no BLOB.
                raise EntryError(
                    f"entry {seq} was modified: its body or leaf hash is not stored as a "
                    f"BLOB ({exc}); {_KEEP}",
                    step=3,
                    attack="entry_modified",
                ) from exc
            if not same:
                raise EntryError(
                    f"entry {seq} was modified: its bytes no longer hash to the leaf hash "
                    f"stored beside it (SHA-256(0x00 || entry) is {leaf.hex()}, stored "
                    f"{stored_leaf.hex()}); {_KEEP}",
                    step=3,
                    attack="entry_modified",
                )
            # 3c. The bytes are an agentfence entry holding a well-formed record.
            try:
                entry = validate(body, strict=True)
            except ValidationError as exc:
                raise EntryError(
                    f"entry {seq} was modified: its bytes are not a well-formed "
                    f"{ENTRY_FORMAT} entry ({_first_error(exc)}); {_KEEP}",
                    step=3,
                    attack="entry_modified",
                ) from exc
            # 3d. The entry carries its own position, so none was moved, added or dropped.
            if entry.seq != position:
                raise _misplaced(position, entry.seq, cursor)
            # 3e. The index columns (read by `log show` filters) match the entry, and
            # 6./7. collect the blob refs and order facts the later steps check.
            record = entry.record
            cls = type(record)
            if cls is DecisionRecord:
                if (
                    kind != _DECISION
                    or thread != record.thread
                    or tool != record.tool
                    or effect != record.effect
                    or dkey != _DECISION_KEY + record.decision_id
                    or time_us != record.time_us
                ):
                    raise _index_error(row, record)
                see_decision(seq, record)
            elif cls is OutcomeRecord:
                if (
                    kind != _OUTCOME
                    or thread is not None
                    or tool is not None
                    or effect is not None
                    or dkey != _OUTCOME_KEY + record.decision_id
                    or time_us != record.time_us
                ):
                    raise _index_error(row, record)
                see_outcome(seq, record)
            else:
                if (
                    kind != record.format
                    or (thread, tool, effect) != index_columns(record)
                    or dkey != dedupe_key(record)
                    or time_us != record.time_us
                ):
                    raise _index_error(row, record)
                order.see(seq, record)
                self.other(seq, record)
            # 4. Fold the leaf into the tree (each trailing one bit of the old size is a
            #    perfect subtree to merge, as in MerkleFrontier.append, RFC 6962 2.1).
            merged, carry = leaf, position
            while carry & 1:
                merged = sha256(b"\x01" + stack.pop() + merged).digest()
                carry >>= 1
            stack.append(merged)
            position += 1
            if position == capture:
                self.saved_root = _frontier(position, stack).root()
            if position == next_size:
                #  At each checkpoint size, the recomputed root must be the signed one.
                size, signed_root, stored_frontier = sizes[next_index]
                frontier = _frontier(position, stack)
                if not compare(frontier.root(), signed_root):
                    raise EntryError(
                        f"the entries no longer hash to the signed root of the checkpoint "
                        f"of size {size}: an entry from {last_good} to {size - 1} was "
                        "modified, deleted, inserted or reordered and its leaf hash "
                        f"rewritten to match (the checkpoint of size {last_good} still "
                        f"holds); {_KEEP}",
                        step=4,
                        attack="history_rewritten",
                    )
                if stored_frontier != frontier.state().to_bytes():
                    raise CheckpointError(
                        f"the checkpoint of size {size} was altered: the Merkle frontier "
                        "stored with it does not match the entries (the signed root does)",
                        step=4,
                        attack="checkpoint_altered",
                    )
                last_good = size
                next_index += 1
                next_size = sizes[next_index][0] if next_index < len(sizes) else -1
            if not position % _PROGRESS_EVERY:
                self.run.tick("3. entries", position, total)
        self.count = position
        self.run.tick("3. entries", position, total)
        if position < self.latest.size:
            raise RollbackError(
                f"the log was truncated: the latest signed checkpoint commits to "
                f"{self.latest.size} entries, but only {position} are stored; {_KEEP}",
                step=4,
                attack="truncated_tail",
            )
        tree_state = self.snap.tree_state()
        if tree_state is not None and (
            tree_state[0] != position
            or tree_state[1] != _frontier(position, stack).state().to_bytes()
        ):
            raise EntryError(
                f"the stored tree state (size {tree_state[0]}) does not match the {position} "
                f"stored entries: the log's bookkeeping was edited; {_KEEP}",
                step=4,
                attack="history_rewritten",
            )
        tail = position - self.latest.size
        self.run.passed(
            3,
            f"{position} entries: contiguous, hashing to their leaf hashes, well formed, "
            "matching their index columns",
        )
        self.run.passed(
            4,
            f"the recomputed root matches all {len(self.stored)} signed checkpoints"
            + (f"; {tail} entries after the latest checkpoint are not signed yet" if tail else ""),
        )

    def other(self, seq: int, record: LogRecord) -> None:
        """Note the entries of the rarer kinds that later steps need."""
        if isinstance(record, ErasureRecord):
            self.erasures[record.blob] = (seq, record.reason)
        elif isinstance(record, ActivationRecord):
            self.activations.append((seq, record))
        elif (
            isinstance(record, KeyChangeRecord)
            and KeyChange(seq, record.old_key, record.new_key) not in self.key_changes
        ):
            raise EntryError(
                f"entry {seq} is a key change whose kind column was altered to hide it",
                step=3,
                attack="index_altered",
            )

    def saved(self, saved: _Saved | None) -> None:
        if saved is None:
            self.run.passed(
                5,
                "none given: pass the checkpoint you saved last time (--checkpoint) to detect "
                "truncation, rollback and forks",
                skipped=True,
            )
            return
        known = _unique([*self.trusted, *self.keys.epochs])
        checkpoint, by = _open_checkpoint(
            saved.note, known, "the saved checkpoint", step=5, origin=self.origin
        )
        self.saved_size = checkpoint.size
        latest = self.latest
        signed_by = ", ".join(_short(k) for k in sorted(by))
        stored_roots = {size: root for size, root, *_ in self.stored}
        if checkpoint.size > latest.size:
            if checkpoint.size > self.count:
                raise RollbackError(
                    f"the log was truncated or rolled back: the checkpoint you saved commits to "
                    f"{checkpoint.size} entries (signed by {signed_by}), but the log now ends "
                    f"at signed size {latest.size} with {self.count} entries stored. Entries "
                    "were removed or an older copy of the log was put back; keep the saved "
                    "checkpoint and this copy as evidence",
                    step=5,
                    attack="truncated_or_rolled_back",
                )
            if self.saved_root is not None and hmac.compare_digest(
                self.saved_root, checkpoint.root
            ):
                raise CheckpointError(
                    f"checkpoints were deleted: the checkpoint of size {checkpoint.size} you "
                    f"saved is no longer in the log, whose latest is size {latest.size} "
                    "(the entries still match your checkpoint); " + _KEEP,
                    step=5,
                    attack="checkpoint_deleted",
                )
            raise ForkError(
                f"fork: the log's entries up to size {checkpoint.size} no longer hash to the "
                "root of the checkpoint you saved; the history was rewritten after you saved "
                f"it; {_KEEP}",
                step=5,
                attack="fork",
            )
        if checkpoint.size in stored_roots and not hmac.compare_digest(
            stored_roots[checkpoint.size], checkpoint.root
        ):
            raise ForkError(
                f"fork: two validly signed checkpoints of size {checkpoint.size} have different "
                f"roots: the one you saved ({checkpoint.root.hex()}, signed by {signed_by}) and "
                f"the log's ({stored_roots[checkpoint.size].hex()}). The signer showed "
                "different histories to different readers; keep both as evidence",
                step=5,
                attack="fork_same_size",
            )
        root_here = self.saved_root if checkpoint.size else _merkle.EMPTY_ROOT
        if root_here is None or not hmac.compare_digest(root_here, checkpoint.root):
            raise ForkError(
                f"fork: the log's entries up to size {checkpoint.size} no longer hash to the "
                "root of the checkpoint you saved (which is validly signed): the history was "
                f"rewritten after you saved it; {_KEEP}",
                step=5,
                attack="fork",
            )
        # What an independent verifier holding only the two checkpoints would check: the
        # RFC 6962 section 2.1.2 consistency proof from the saved size to the latest.
        proof = _merkle.consistency_proof(
            checkpoint.size, latest.size, self.snap.leaf_hashes(latest.size)
        )
        try:
            _merkle.verify_consistency(
                checkpoint.size, latest.size, checkpoint.root, latest.root, proof
            )
        except VerificationError as exc:
            raise ForkError(f"fork: {exc}", step=5, attack="fork") from exc
        if checkpoint.size == latest.size:
            detail = f"your checkpoint of size {checkpoint.size} is the log's latest"
        else:
            detail = (
                f"the log extends your checkpoint of size {checkpoint.size}; consistency "
                f"proof of {len(proof)} hashes to size {latest.size}"
            )
        self.run.passed(5, f"{detail} (signed by {signed_by})")

    def blobs(self) -> None:
        refs = self.order.refs
        seen = 0
        total = self.snap.blob_count()
        sha256 = hashlib.sha256
        compare = hmac.compare_digest
        erasures = self.erasures
        try:
            for ref, salt, content, erased in self.snap.blobs():
                seen += 1
                if content is None:
                    # 6a. Erased content is reported, not failed, only if an entry says why.
                    erasure = erasures.get(ref)
                    if erasure is None:
                        raise BlobError(
                            f"blob {ref} was erased without an erasure entry: its content is "
                            "gone but no entry records why. Erase blobs only with `agentfence "
                            f"log erase`; {_KEEP}",
                            step=6,
                            attack="erased_without_record",
                        )
                    self.erased.append(ErasedBlob(ref, *erasure))
                # 6b. Present content rehashes to its ref: SHA-256(salt || content).
                elif (
                    erased
                    or len(salt) != BLOB_SALT_BYTES
                    or not ref.startswith("sha256:")
                    or not compare(sha256(salt + content).hexdigest(), ref[7:])
                ):
                    first = refs.get(ref)
                    used = f" (referenced by entry {first})" if first is not None else ""
                    raise BlobError(
                        f"blob {ref}{used} was altered: its salt and content no longer hash "
                        f"to its reference; {_KEEP}",
                        step=6,
                        attack="blob_altered",
                    )
                elif ref in erasures:
                    self.pending.append(ref)
                if ref not in refs:
                    self.unreferenced.append(ref)
                if not seen % _PROGRESS_EVERY:
                    self.run.tick("6. blobs", seen, total)
        except TypeError as exc:
            raise BlobError(
                f"blob {seen} (in table order) was altered: a column holds the wrong type "
                f"({exc}); {_KEEP}",
                step=6,
                attack="blob_altered",
            ) from exc
        self.blob_count = seen
        self.run.tick("6. blobs", seen, total)
        if len(refs) > seen - len(self.unreferenced):
            present = {ref for ref, *_ in self.snap.blobs()}
            missing = sorted((seq, ref) for ref, seq in refs.items() if ref not in present)
            seq, ref = missing[0]
            raise BlobError(
                f"blob {ref} referenced by entry {seq} is missing ({len(missing)} referenced "
                f"blob(s) missing in all): blobs are erased, never deleted; {_KEEP}",
                step=6,
                attack="blob_deleted",
            )
        # 6c. Each activation's policy texts hash to its recorded file hashes, and those and
        #     the schema to its policy set hash (docs/log-format.md, "Policy set hash").
        for seq, activation in self.activations:
            self.check_activation(seq, activation)
        notes = [f"{len(refs)} referenced blobs present; {seen - len(self.erased)} rehashed"]
        if self.activations:
            notes.append(f"policy texts match {_count(len(self.activations), 'activation')}")
        if self.erased:
            notes.append(f"{len(self.erased)} erased, each with an erasure entry")
        if self.unreferenced:
            notes.append(f"{len(self.unreferenced)} unreferenced")
        if self.pending:
            notes.append(
                f"{_count(len(self.pending), 'erasure')} recorded but content still present"
            )
        self.run.passed(6, "; ".join(notes))

    def check_activation(self, seq: int, record: ActivationRecord) -> None:
        refs = [*record.file_blobs.values(), record.schema_blob]
        stored = self.snap.blobs_by_ref(refs)
        if any(stored.get(ref) is None for ref in refs):
            return  # an erased policy text: nothing to rehash (step 6a reported it)
        problem = None
        if set(record.file_blobs) != set(record.files):
            problem = "its file names and file blobs differ"
        else:
            for name, ref in sorted(record.file_blobs.items()):
                digest = hashlib.sha256(stored[ref] or b"").hexdigest()
                if not hmac.compare_digest(digest, record.files[name]):
                    problem = f"the text of {name} does not hash to its recorded SHA-256"
                    break
        if problem is None:
            schema = hashlib.sha256(stored[record.schema_blob] or b"").hexdigest()
            material: dict[str, Any] = {
                "format": _POLICYSET,
                "files": record.files,
                "schema": schema,
            }
            expected = hashlib.sha256(rfc8785.dumps(material)).hexdigest()
            if not hmac.compare_digest(expected, record.policy_hash):
                problem = f"its files and schema hash to policy set {expected[:16]}…"
        if problem is not None:
            raise BlobError(
                f"the activation at entry {seq} does not match the policy set it names "
                f"({record.policy_hash[:16]}…): {problem}; its texts are not the ones that "
                f"decided. {_KEEP}",
                step=6,
                attack="activation_mismatch",
            )

    def check_order(self) -> None:
        order = self.order
        if order.problem is not None:
            raise OrderError(
                f"the log's entries are out of order: {order.problem}; {_KEEP}",
                step=7,
                attack="out_of_order",
            )
        self.run.passed(
            7,
            f"{order.outcomes} outcomes follow their allowed or approved decisions; "
            f"{order.decisions} decisions use "
            f"{_count(len(order.activated), 'activated policy set')}",
        )

    def result(self, seconds: float) -> VerifiedLog:
        return VerifiedLog(
            origin=self.origin,
            size=self.latest.size,
            root=self.latest.root,
            checkpoint=self.stored[-1][2],
            signed_by=self.signed_by,
            entries=self.count,
            unsigned_tail=self.count - self.latest.size,
            checkpoints=len(self.stored),
            key_changes=tuple(self.key_changes),
            decisions=self.order.decisions,
            outcomes=self.order.outcomes,
            activations=len(self.activations),
            blobs=self.blob_count,
            erased_blobs=tuple(self.erased),
            unreferenced_blobs=tuple(self.unreferenced),
            pending_erasures=tuple(self.pending),
            saved_checkpoint_size=self.saved_size,
            steps=tuple(self.run.steps),
            seconds=seconds,
        )


def _frontier(size: int, stack: Sequence[bytes]) -> _merkle.MerkleFrontier:
    return _merkle.MerkleFrontier.from_state(_merkle.FrontierState(size, tuple(stack)))


def _index_error(row: Sequence[Any], record: LogRecord) -> EntryError:
    seq, kind, dkey, _, _, thread, tool, effect, time_us = row
    columns: tuple[str | None, ...] = (None, None, None)
    if isinstance(record, DecisionRecord):
        columns = (record.thread, record.tool, record.effect)
    return EntryError(
        f"entry {seq}'s index columns were altered: kind, dedupe_key, thread, tool, effect and "
        f"time_us are {(kind, dkey, thread, tool, effect, time_us)}, but the entry says "
        f"{(record.format, dedupe_key(record), *columns, record.time_us)}. Filters such as "
        f"`log show --effect` read those columns; {_KEEP}",
        step=3,
        attack="index_altered",
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _short(vkey: str) -> str:
    """``<name>+<key id>``, how signed notes name a key."""
    return "+".join(vkey.split("+", 2)[:2])


def _unique(verifiers: Sequence[Verifier]) -> list[Verifier]:
    seen: dict[str, Verifier] = {}
    for verifier in verifiers:
        seen.setdefault(verifier.vkey, verifier)
    return list(seen.values())


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "entry"
    return f"{where}: {first['msg']}"


def _parse_body(body: bytes, seq: int, *, step: int) -> LogRecord:
    try:
        return _ENTRY.validate_json(body, strict=True).record
    except ValidationError as exc:
        raise EntryError(
            f"entry {seq} was modified: its bytes are not a well-formed {ENTRY_FORMAT} entry "
            f"({_first_error(exc)}); {_KEEP}",
            step=step,
            attack="entry_modified",
        ) from exc


def _body_seq(body: Any) -> int | None:
    try:
        value = json.loads(bytes(body)).get("seq")
    except (ValueError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _misplaced(position: int, claimed: int, cursor: sqlite3.Cursor) -> EntryError:
    """Name what moved when the entry at ``position`` says it is entry ``claimed``."""
    if claimed < position:
        return EntryError(
            f"an entry was inserted before position {position}: the entry stored there says it "
            f"is entry {claimed}, so the entries after it were pushed along; {_KEEP}",
            step=3,
            attack="entry_inserted",
        )
    after = cursor.fetchone()
    if after is not None and _body_seq(after[3]) == claimed + 1:
        return EntryError(
            f"entry {position} was deleted and the later entries renumbered: the entry stored "
            f"at position {position} says it is entry {claimed}; {_KEEP}",
            step=3,
            attack="entry_deleted",
        )
    return EntryError(
        f"entries were reordered: the entry stored at position {position} says it is entry "
        f"{claimed}; {_KEEP}",
        step=3,
        attack="entries_reordered",
    )


class _Order:
    """The order rules of step 7, fed the entries one at a time; keeps the first problem.

    A decision's policy set was activated by an earlier entry; a decision is recorded
    once; an approval request follows a decision held for approval and an answer follows
    its request; an outcome follows a decision that was allowed, or held and then approved
    by an accepted answer, and there is one outcome per decision. It also collects the
    blob refs of every entry (ref -> the first entry that references it) for step 6.
    """

    def __init__(self) -> None:
        self.refs: dict[str, int] = {}
        self.activated: dict[str, int] = {}
        self.states: dict[str, str] = {}  # decision id -> its effect, then _APPROVED, _RAN
        self.held: set[str] = set()
        self.requests: dict[str, str] = {}  # approval request id -> decision id
        self.decisions = 0
        self.outcomes = 0
        self.problem: str | None = None

    def decision(self, seq: int, record: DecisionRecord) -> None:
        self.decisions += 1
        if record.request_blob is not None:
            self.refs.setdefault(record.request_blob, seq)
        if self.problem is None:
            if record.policy_hash not in self.activated:
                self.problem = (
                    f"decision entry {seq} was made with policy set {record.policy_hash[:16]}…, "
                    "which no earlier activation entry activated"
                )
            elif record.decision_id in self.states:
                self.problem = (
                    f"decision {record.decision_id} is recorded twice (again at entry {seq}); "
                    "a call is decided and recorded once"
                )
        self.states[record.decision_id] = record.effect
        if record.effect == "REQUIRE_APPROVAL":
            self.held.add(record.decision_id)

    def outcome(self, seq: int, record: OutcomeRecord) -> None:
        self.outcomes += 1
        if record.result_blob is not None:
            self.refs.setdefault(record.result_blob, seq)
        state = self.states.get(record.decision_id)
        if state == "ALLOW" or state == _APPROVED:
            self.states[record.decision_id] = _RAN
        elif self.problem is None:
            self.problem = _outcome_problem(seq, record.decision_id, state)

    def see(self, seq: int, record: LogRecord) -> None:
        if isinstance(record, DecisionRecord):
            self.decision(seq, record)
            return
        if isinstance(record, OutcomeRecord):
            self.outcome(seq, record)
            return
        for ref in _refs_of(record):
            self.refs.setdefault(ref, seq)
        problem: str | None = None
        if isinstance(record, ApprovalRequestRecord):
            if record.decision_id not in self.held:
                problem = (
                    f"the approval request at entry {seq} is for decision {record.decision_id}, "
                    "which no earlier entry holds for approval"
                )
            self.requests[record.request_id] = record.decision_id
        elif isinstance(record, ApprovalAnswerRecord):
            if self.requests.get(record.request_id) != record.decision_id:
                problem = (
                    f"the approval answer at entry {seq} answers request {record.request_id}, "
                    f"which no earlier entry makes for decision {record.decision_id}"
                )
            elif (
                record.verdict == "accepted"
                and record.answer in ("approve", "edit")
                and self.states.get(record.decision_id) == "REQUIRE_APPROVAL"
            ):
                self.states[record.decision_id] = _APPROVED
        elif isinstance(record, ActivationRecord):
            self.activated.setdefault(record.policy_hash, seq)
        if problem is not None and self.problem is None:
            self.problem = problem


def _outcome_problem(seq: int, decision_id: str, state: str | None) -> str:
    if state is None:
        return (
            f"the outcome at entry {seq} belongs to decision {decision_id}, which no earlier "
            "entry records: a tool ran before (or without) its decision being on record"
        )
    if state == _RAN:
        return f"decision {decision_id} has a second outcome at entry {seq}"
    return (
        f"the outcome at entry {seq} belongs to decision {decision_id}, which was {state} and "
        "not approved by an accepted answer: a tool ran although it was not allowed"
    )


_REF_FIELDS: dict[type[BaseModel], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _refs_of(record: LogRecord) -> list[str]:
    """The blob refs a record holds: fields named ``*_blob`` (a ref or null) and ``*_blobs``
    (a map of name to ref), the naming rule ``docs/log-format.md`` states for records."""
    fields = _REF_FIELDS.get(type(record))
    if fields is None:
        names = type(record).model_fields
        fields = (
            tuple(n for n in names if n.endswith("_blob")),
            tuple(n for n in names if n.endswith("_blobs")),
        )
        _REF_FIELDS[type(record)] = fields
    refs = [value for name in fields[0] if (value := getattr(record, name)) is not None]
    for name in fields[1]:
        refs.extend(getattr(record, name).values())
    return refs


# --- receipts ------------------------------------------------------------------------------


class InclusionReceipt(_Frozen):
    """Proof that one entry is in the log, verifiable on its own with a verifier key.

    ``entry`` is the entry's exact bytes (base64), ``inclusion`` the RFC 6962 audit path
    (hex, bottom-most first) from its leaf to the root of ``checkpoint``, a signed note.
    ``record`` repeats the entry's record for people to read; it is checked against
    ``entry``.
    """

    format: Literal["agentfence.receipt/v1"] = "agentfence.receipt/v1"
    origin: str
    seq: int
    tree_size: int
    leaf_hash: str
    entry: str
    record: dict[str, Any]
    inclusion: list[str]
    checkpoint: str

    def to_json(self) -> str:
        """The receipt as indented JSON text."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> InclusionReceipt:
        """Parse a receipt; raises :class:`EvidenceError` naming what is malformed."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise EvidenceError(
                f"not an {RECEIPT_FORMAT} receipt: {_first_error(exc)}; make it again with "
                "`agentfence log prove`",
                step=1,
                attack="malformed",
            ) from exc


@dataclass(frozen=True)
class VerifiedReceipt:
    """What :func:`verify_receipt` established: entry ``seq`` is in the signed tree."""

    origin: str
    seq: int
    tree_size: int
    root: bytes
    leaf_hash: bytes
    record: LogRecord
    signed_by: tuple[str, ...]


def prove(source: str | Path, seq: int, *, checkpoint: str | None = None) -> InclusionReceipt:
    """An :class:`InclusionReceipt` for entry ``seq``, against ``checkpoint`` or the latest.

    ``checkpoint`` is a signed checkpoint note of this log (for example one an auditor
    saved); the entry must be below its size. The proof is checked against the
    checkpoint's root before it is returned. Signatures are not checked here: that is what
    :func:`verify_receipt` does, with the keys the reader trusts.
    """
    with _Snapshot(source) as snap:
        origin = snap.meta().get("origin", "")
        if checkpoint is None:
            stored = snap.checkpoints()
            if not stored:
                raise LogError(f"{snap.path} has no signed checkpoint to prove against")
            checkpoint = stored[-1][2]
        checkpoint = _saved_note(checkpoint)
        body = _signing.parse_checkpoint_body(_note_text(checkpoint))
        if body.origin != origin:
            raise ConfigurationError(
                f"the checkpoint is for log {body.origin!r}, but {snap.path} is {origin!r}"
            )
        if not 0 <= seq < body.size:
            raise ConfigurationError(
                f"entry {seq} is not covered by the checkpoint of size {body.size}; prove an "
                f"entry from 0 to {body.size - 1}, or sign a newer checkpoint first (a fence "
                "signs one at least every half second while it writes, and when it closes)"
            )
        entry = snap.body(seq)
        if entry is None:
            raise LogError(f"entry {seq} is missing from {snap.path}; run `agentfence log verify`")
        leaves = snap.leaf_hashes(body.size)
        leaf = _merkle.leaf_hash(entry)
        path = _merkle.inclusion_proof(seq, body.size, leaves)
        _merkle.verify_inclusion(leaf, seq, body.size, path, body.root)
        return InclusionReceipt(
            origin=origin,
            seq=seq,
            tree_size=body.size,
            leaf_hash=leaf.hex(),
            entry=base64.b64encode(entry).decode("ascii"),
            record=json.loads(entry)["record"],
            inclusion=[h.hex() for h in path],
            checkpoint=checkpoint,
        )


def verify_receipt(receipt: InclusionReceipt, keys: Sequence[Verifier | str]) -> VerifiedReceipt:
    """Verify an inclusion receipt with nothing but the receipt and trusted verifier keys.

    A receipt carries no key-change history, so pass the key that signs checkpoints of the
    receipt's size. Raises a :class:`LogVerificationError` subclass naming the failed step.
    """
    trusted = _verifiers(keys)
    # 1. The checkpoint is signed by a trusted key and is for the receipt's log and size.
    checkpoint, by = _open_checkpoint(
        receipt.checkpoint, trusted, "the receipt's checkpoint", step=1, origin=receipt.origin
    )
    if checkpoint.size != receipt.tree_size:
        raise EvidenceError(
            f"the receipt says tree size {receipt.tree_size}, but its checkpoint is for size "
            f"{checkpoint.size}: the receipt was edited",
            step=1,
            attack="malformed",
        )
    # 2. The entry's bytes are entry ``seq`` and the readable record is the one they hold.
    entry = _decode_entry(receipt.entry, receipt.seq, receipt.record, step=2)
    # 3. The leaf hash and the audit path lead to the checkpoint's root (RFC 9162 2.1.3.2).
    leaf = _merkle.leaf_hash(entry)
    if not hmac.compare_digest(leaf.hex(), receipt.leaf_hash):
        raise EntryError(
            f"entry {receipt.seq} in the receipt was modified: its bytes hash to {leaf.hex()}, "
            f"not to the receipt's leaf hash {receipt.leaf_hash}",
            step=3,
            attack="entry_modified",
        )
    _prove_included(leaf, receipt.seq, checkpoint, receipt.inclusion, step=3)
    return VerifiedReceipt(
        origin=checkpoint.origin,
        seq=receipt.seq,
        tree_size=checkpoint.size,
        root=checkpoint.root,
        leaf_hash=leaf,
        record=_parse_body(entry, receipt.seq, step=2),
        signed_by=tuple(sorted(by)),
    )


def _hashes(values: Sequence[str], what: str, *, step: int) -> list[bytes]:
    try:
        return [bytes.fromhex(v) for v in values]
    except ValueError as exc:
        raise EvidenceError(
            f"{what} holds a value that is not hex", step=step, attack="malformed"
        ) from exc


def _decode_entry(encoded: str, seq: int, record: Mapping[str, Any], *, step: int) -> bytes:
    try:
        entry = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError(
            f"entry {seq} is not valid base64", step=step, attack="malformed"
        ) from exc
    parsed = _parse_body(entry, seq, step=step)
    claimed = _body_seq(entry)
    if claimed != seq:
        raise EntryError(
            f"the bytes given for entry {seq} say they are entry {claimed}",
            step=step,
            attack="entries_reordered",
        )
    if json.loads(entry)["record"] != record:
        raise EntryError(
            f"the readable record shown for entry {seq} differs from the entry's bytes: it was "
            f"edited (the bytes hold a {parsed.format} record)",
            step=step,
            attack="entry_modified",
        )
    return entry


def _prove_included(
    leaf: bytes, seq: int, checkpoint: Checkpoint, inclusion: Sequence[str], *, step: int
) -> None:
    path = _hashes(inclusion, f"the inclusion proof of entry {seq}", step=step)
    try:
        _merkle.verify_inclusion(leaf, seq, checkpoint.size, path, checkpoint.root)
    except VerificationError as exc:
        raise EntryError(
            f"entry {seq} is not in the signed tree of size {checkpoint.size}: {exc}",
            step=step,
            attack="entry_modified",
        ) from exc


# --- evidence packs ------------------------------------------------------------------------


class _PackEntry(_Frozen):
    seq: int
    leaf_hash: str
    entry: str
    record: dict[str, Any]
    inclusion: list[str]


class _PackBlob(_Frozen):
    ref: str
    salt: str | None = None
    content: str | None = None
    erased: bool = False


class _Handover(_Frozen):
    key_change: int
    checkpoint: str
    consistency: list[str]


class EvidencePack(_Frozen):
    """A self-contained bundle of entries with proofs, verifiable offline.

    The entries of one thread (its decisions, their outcomes, the activations of the policy
    sets they used, key changes and erasures), each with its exact bytes and an inclusion
    proof to ``checkpoint``; the blobs they reference with their salts (so each content can
    be rehashed to its reference) including the policy texts; the log's verifier keys; and
    for each key change the handover checkpoint with a consistency proof to ``checkpoint``.
    """

    format: Literal["agentfence.evidence/v1"] = "agentfence.evidence/v1"
    origin: str
    thread: str | None
    checkpoint: str
    keys: list[str]
    handovers: list[_Handover]
    entries: list[_PackEntry]
    blobs: list[_PackBlob]
    exported_us: int


@dataclass(frozen=True)
class VerifiedEvidence:
    """What :func:`verify_evidence` established about a pack that passed every step.

    ``records`` are the pack's entries as ``(seq, record)``; ``policies`` maps each policy
    set hash to its files' texts; ``blobs`` maps each present blob ref to its content.
    """

    origin: str
    thread: str | None
    size: int
    root: bytes
    signed_by: tuple[str, ...]
    records: tuple[tuple[int, LogRecord], ...]
    policies: Mapping[str, Mapping[str, str]]
    blobs: Mapping[str, bytes]
    erased_blobs: tuple[str, ...]
    steps: tuple[VerifiedStep, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (what ``agentfence evidence verify --json`` prints)."""
        kinds: dict[str, int] = {}
        for _, record in self.records:
            kinds[record.format] = kinds.get(record.format, 0) + 1
        return {
            "verified": True,
            "origin": self.origin,
            "thread": self.thread,
            "size": self.size,
            "root": self.root.hex(),
            "signed_by": list(self.signed_by),
            "entries": len(self.records),
            "kinds": kinds,
            "policy_sets": sorted(self.policies),
            "blobs": len(self.blobs),
            "erased_blobs": list(self.erased_blobs),
            "steps": [vars(s) for s in self.steps],
        }


def export_evidence(
    source: str | Path,
    out: Path,
    *,
    keys: Sequence[Verifier | str],
    thread: str | None = None,
    progress: Progress | None = None,
) -> VerifiedEvidence:
    """Verify the log, then write an :class:`EvidencePack` for ``thread`` (all if ``None``).

    The pack covers the entries below the latest signed checkpoint. It is verified with
    ``keys`` after writing, and the result returned, so a pack that leaves here verifies.
    """
    verified = verify_log(source, keys, progress=progress)
    size = verified.size
    with _Snapshot(source) as snap:
        chosen: list[tuple[int, bytes, LogRecord]] = []
        activations: dict[str, tuple[int, bytes, LogRecord]] = {}
        erasures: list[tuple[int, bytes, ErasureRecord]] = []
        decision_ids: set[str] = set()
        for row in snap.rows(0, size):
            seq, body = int(row[0]), bytes(row[3])
            record = _parse_body(body, seq, step=3)
            if isinstance(record, DecisionRecord):
                if thread is None or record.thread == thread:
                    decision_ids.add(record.decision_id)
                    chosen.append((seq, body, record))
            elif isinstance(record, OutcomeRecord | ApprovalRequestRecord | ApprovalAnswerRecord):
                if record.decision_id in decision_ids:
                    chosen.append((seq, body, record))
            elif isinstance(record, ActivationRecord):
                activations.setdefault(record.policy_hash, (seq, body, record))
            elif isinstance(record, ErasureRecord):
                erasures.append((seq, body, record))
            else:
                chosen.append((seq, body, record))
        if thread is not None and not decision_ids:
            raise ConfigurationError(
                f"no decision of thread {thread!r} is below the latest signed checkpoint; "
                "list threads with `agentfence log show`"
            )
        hashes = {r.policy_hash for _, _, r in chosen if isinstance(r, DecisionRecord)}
        chosen += [activations[h] for h in sorted(hashes) if h in activations]
        refs = {ref for _, _, r in chosen for ref in _refs_of(r)}
        chosen += [e for e in erasures if e[2].blob in refs]
        chosen.sort(key=lambda item: item[0])
        tree = _merkle.MerkleTree(snap.leaf_hashes(size))
        blobs: list[_PackBlob] = []
        for ref in sorted(refs):
            row = snap.blob_row(ref)
            if row is None or row[1] is None:
                blobs.append(_PackBlob(ref=ref, erased=True))
            else:
                salt, content = row
                blobs.append(
                    _PackBlob(ref=ref, salt=_b64(salt or b""), content=_b64(content or b""))
                )
        stored_sizes = [s for s, *_ in snap.checkpoints()]
        notes = {s: note for s, _, note, _ in snap.checkpoints()}
        handovers = []
        for change in verified.key_changes:
            if change.seq >= size:
                continue
            handover = min(s for s in stored_sizes if s >= change.seq + 1)
            handovers.append(
                _Handover(
                    key_change=change.seq,
                    checkpoint=notes[handover],
                    consistency=[h.hex() for h in tree.consistency_proof(handover, size)],
                )
            )
        keychain = [k.old_key for k in verified.key_changes[:1]] + [
            k.new_key for k in verified.key_changes
        ]
        pack = EvidencePack(
            origin=verified.origin,
            thread=thread,
            checkpoint=verified.checkpoint,
            keys=keychain or list(verified.signed_by),
            handovers=handovers,
            entries=[
                _PackEntry(
                    seq=seq,
                    leaf_hash=_merkle.leaf_hash(body).hex(),
                    entry=_b64(body),
                    record=json.loads(body)["record"],
                    inclusion=[h.hex() for h in tree.inclusion_proof(seq, size)],
                )
                for seq, body, _ in chosen
            ],
            blobs=blobs,
            exported_us=time.time_ns() // 1000,
        )
    out.write_text(pack.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return verify_evidence(out, keys)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def verify_evidence(path: str | Path, keys: Sequence[Verifier | str]) -> VerifiedEvidence:
    """Verify an evidence pack offline with nothing but the pack and trusted verifier keys.

    Raises a :class:`LogVerificationError` subclass naming the failed step and what the
    evidence shows; returns only if every step passes.
    """
    trusted = _verifiers(keys)
    run = _Run(EVIDENCE_STEPS, None)
    try:
        return _verify_pack(Path(path), trusted, run)
    except LogVerificationError as exc:
        run.failed(exc)
        raise


def _verify_pack(path: Path, trusted: Sequence[Verifier], run: _Run) -> VerifiedEvidence:
    # 1. Read the pack: one JSON document of format agentfence.evidence/v1.
    try:
        pack = EvidencePack.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(f"no evidence pack at {str(path)!r}; check the path") from None
    except ValidationError as exc:
        raise EvidenceError(
            f"{path} is not an {EVIDENCE_FORMAT} pack: {_first_error(exc)}; export it again "
            "with `agentfence evidence export`",
            step=1,
            attack="malformed",
        ) from exc
    try:
        head = _signing.parse_checkpoint_body(_note_text(pack.checkpoint))
    except VerificationError as exc:
        raise CheckpointError(
            f"the pack's checkpoint was altered: {exc}", step=1, attack="checkpoint_altered"
        ) from exc
    run.passed(1, f"{len(pack.entries)} entries, {len(pack.blobs)} blobs")

    # 2. Every entry's bytes are that entry, match the readable record, and are in the tree
    #    of the pack's checkpoint (whose signature step 3 checks).
    records: list[tuple[int, LogRecord]] = []
    seqs: set[int] = set()
    for item in pack.entries:
        if item.seq in seqs:
            raise EvidenceError(
                f"entry {item.seq} appears twice in the pack", step=2, attack="malformed"
            )
        seqs.add(item.seq)
        entry = _decode_entry(item.entry, item.seq, item.record, step=2)
        leaf = _merkle.leaf_hash(entry)
        _prove_included(leaf, item.seq, head, item.inclusion, step=2)
        records.append((item.seq, _parse_body(entry, item.seq, step=2)))
    records.sort(key=lambda r: r[0])
    run.passed(2, f"{len(records)} entries proven in the tree of size {head.size}")

    # 3. The checkpoint is signed by a trusted key valid at its size. The key changes in the
    #    pack (proven in step 2) say which key that is; each handover checkpoint, signed by
    #    the old key and consistent with the checkpoint, lets trust follow a rotation.
    changes = [
        KeyChange(seq, r.old_key, r.new_key) for seq, r in records if isinstance(r, KeyChangeRecord)
    ]
    schedule = _KeySchedule.build(changes, trusted, pack.checkpoint, step=3, origin=pack.origin)
    known = _unique([*trusted, *schedule.epochs])
    signed: dict[int, frozenset[str]] = {}
    by_change = {h.key_change: h for h in pack.handovers}
    for index, change in enumerate(changes):
        handover = by_change.get(change.seq)
        if handover is None:
            continue
        what = f"the handover checkpoint of the key change at entry {change.seq}"
        opened, by = _open_checkpoint(handover.checkpoint, known, what, step=3, origin=pack.origin)
        if opened.size <= change.seq or opened.size > head.size:
            raise EvidenceError(
                f"{what} has size {opened.size}, which does not include the key change or is "
                f"larger than the pack's checkpoint ({head.size})",
                step=3,
                attack="malformed",
            )
        proof = _hashes(handover.consistency, f"the consistency proof of {what}", step=3)
        try:
            _merkle.verify_consistency(opened.size, head.size, opened.root, head.root, proof)
        except VerificationError as exc:
            raise ForkError(f"fork: {what}: {exc}", step=3, attack="fork") from exc
        schedule.handovers[index] = opened.size
        signed[opened.size] = by
    checkpoint, by = _open_checkpoint(
        pack.checkpoint, known, "the pack's checkpoint", step=3, origin=pack.origin
    )
    signed[checkpoint.size] = signed.get(checkpoint.size, frozenset()) | by
    _, signed_by = schedule.trust(signed, checkpoint.size, {v.vkey for v in trusted}, step=3)
    run.passed(
        3,
        f"size {checkpoint.size} signed by {', '.join(_short(k) for k in signed_by)}",
    )

    # 4. Every blob rehashes to its reference; an erased one has an erasure entry.
    erasures = {r.blob for _, r in records if isinstance(r, ErasureRecord)}
    contents: dict[str, bytes] = {}
    erased: list[str] = []
    for blob in pack.blobs:
        if blob.erased or blob.content is None:
            if blob.ref not in erasures:
                raise BlobError(
                    f"blob {blob.ref} was erased without an erasure entry in the pack",
                    step=4,
                    attack="erased_without_record",
                )
            erased.append(blob.ref)
            continue
        try:
            salt = base64.b64decode(blob.salt or "", validate=True)
            content = base64.b64decode(blob.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EvidenceError(
                f"blob {blob.ref} is not valid base64", step=4, attack="malformed"
            ) from exc
        if not hmac.compare_digest(blob_ref(salt, content), blob.ref):
            raise BlobError(
                f"blob {blob.ref} was altered: SHA-256 of its salt and content is not its "
                "reference",
                step=4,
                attack="blob_altered",
            )
        contents[blob.ref] = content
    run.passed(4, f"{len(contents)} rehashed, {len(erased)} erased with a record")

    # 5. Order and completeness: outcomes follow their decisions, each decision's policy set
    #    was activated earlier, and every referenced blob is in the pack.
    order = _Order()
    policies: dict[str, dict[str, str]] = {}
    for seq, record in records:
        for ref in _refs_of(record):
            if ref not in contents and ref not in erased:
                raise EvidenceError(
                    f"blob {ref} referenced by entry {seq} is not in the pack",
                    step=5,
                    attack="blob_deleted",
                )
        order.see(seq, record)
        if isinstance(record, ActivationRecord):
            policies[record.policy_hash] = {
                name: contents[ref].decode("utf-8")
                for name, ref in record.file_blobs.items()
                if ref in contents
            }
    if order.problem is not None:
        raise OrderError(
            f"the pack's entries are out of order: {order.problem}",
            step=5,
            attack="out_of_order",
        )
    run.passed(
        5,
        f"{order.decisions} decisions, {order.outcomes} outcomes, "
        f"texts of {_count(len(policies), 'policy set')}",
    )
    return VerifiedEvidence(
        origin=checkpoint.origin,
        thread=pack.thread,
        size=checkpoint.size,
        root=checkpoint.root,
        signed_by=signed_by,
        records=tuple(records),
        policies=policies,
        blobs=contents,
        erased_blobs=tuple(erased),
        steps=tuple(run.steps),
    )


# --- replay --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayChange:
    """A decision that replays differently from how it was recorded."""

    seq: int
    decision_id: str
    thread: str
    tool: str
    principal: str | None
    recorded_effect: str
    replayed_effect: str
    recorded_policies: tuple[str, ...]
    replayed_policies: tuple[str, ...]
    recorded_reasons: tuple[str, ...]
    replayed_reasons: tuple[str, ...]


@dataclass(frozen=True)
class NotReplayable:
    """A decision that cannot be re-decided, and why (``refused_before_cedar``, ...)."""

    seq: int
    decision_id: str
    tool: str
    reason: str


@dataclass(frozen=True)
class ReplayReport:
    """What :func:`replay` found: every decision re-decided, and those that came out different.

    ``mode`` is ``"recorded"`` (the policies each decision was made with: every decision
    must come out the same) or ``"what-if"`` (the candidate ``policies`` directory).
    """

    mode: Literal["recorded", "what-if"]
    policies: str | None
    decisions: int
    replayed: int
    unchanged: int
    changes: tuple[ReplayChange, ...]
    not_replayable: tuple[NotReplayable, ...]
    recorded_engines: tuple[str, ...]
    engine: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-able report (what ``agentfence replay --json`` prints)."""
        reasons: dict[str, int] = {}
        for item in self.not_replayable:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        return {
            "mode": self.mode,
            "policies": self.policies,
            "decisions": self.decisions,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "changed": len(self.changes),
            "changes": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in vars(change).items()}
                for change in self.changes
            ],
            "not_replayable": reasons,
            "recorded_engines": list(self.recorded_engines),
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
        }


_REPLAY_BATCH = 512


def replay(
    source: str | Path,
    *,
    policies: Path | None = None,
    progress: Progress | None = None,
    workers: int | None = 1,
) -> ReplayReport:
    """Re-decide every recorded decision that reached Cedar, and report what differs.

    Without ``policies`` each decision is re-decided by the engine rebuilt from the
    activation entry of its policy set (its recorded texts and generated schema): every
    decision must come out the same. With ``policies=DIR`` ("what if") they are re-decided
    by the policies in ``DIR`` with each activation's recorded generated schema, and the
    report lists what would change. Decisions refused before Cedar (no request recorded)
    and those whose request was erased are listed as not replayable.

    Cedar evaluation holds the GIL, so ``workers`` processes can share a large log, each
    over a range of entries; ``workers=None`` means one per CPU from
    ``PARALLEL_REPLAY_FROM`` decisions on. Worker processes are spawned, so a script that
    asks for them must call :func:`replay` under ``if __name__ == "__main__":``. Replay reads
    the index columns and does not check signatures or hashes: run :func:`verify_log` first.
    """
    started = time.perf_counter()
    candidate = read_directory(policies) if policies is not None else None
    with _Snapshot(source) as snap:
        end = snap.count()
        decisions = snap.count_kind(_DECISION)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if decisions >= PARALLEL_REPLAY_FROM else 1
    workers = max(1, workers)
    parts: list[_ReplayPart] = []
    if workers == 1:
        parts.append(_replay_range(source, candidate, policies, 0, end, progress))
    else:
        # Ranges of entries, a few per worker so that progress moves and the load evens out;
        # each range sees every activation before its end, as a sequential replay would.
        chunks = workers * 4
        bounds = [(end * i // chunks, end * (i + 1) // chunks) for i in range(chunks)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_replay_range, str(source), candidate, policies, a, b, None)
                for a, b in bounds
            ]
            for (_, b), future in zip(bounds, futures, strict=True):
                parts.append(future.result())
                if progress is not None:
                    progress("replay", b, end)
    changes = tuple(c for part in parts for c in part.changes)
    replayed = sum(part.replayed for part in parts)
    return ReplayReport(
        mode="what-if" if policies is not None else "recorded",
        policies=str(policies) if policies is not None else None,
        decisions=sum(part.decisions for part in parts),
        replayed=replayed,
        unchanged=replayed - len(changes),
        changes=changes,
        not_replayable=tuple(n for part in parts for n in part.skipped),
        recorded_engines=tuple(sorted({e for part in parts for e in part.engines})),
        engine=_cedar.ENGINE_VERSION,
        seconds=time.perf_counter() - started,
    )


PARALLEL_REPLAY_FROM = 50_000
"""From this many decisions on, :func:`replay` with ``workers=None`` uses one process per CPU."""


@dataclass(frozen=True)
class _ReplayPart:
    decisions: int
    replayed: int
    changes: tuple[ReplayChange, ...]
    skipped: tuple[NotReplayable, ...]
    engines: frozenset[str]


def _replay_range(
    source: str | Path,
    candidate: Mapping[str, str] | None,
    directory: Path | None,
    start: int,
    end: int,
    progress: Progress | None,
) -> _ReplayPart:
    """Replay the decisions with ``start <= seq < end`` (run in a worker process, or here)."""
    with _Snapshot(source) as snap:
        state = _Replay(snap, candidate, directory)
        for seq, body in snap.kind_rows(_ACTIVATION, 0, end):
            record = _parse_body(body, seq, step=3)
            if isinstance(record, ActivationRecord):
                state.activations.setdefault(record.policy_hash, (seq, record))
        pending: list[tuple[int, DecisionRecord]] = []
        for seq, body in snap.kind_rows(_DECISION, start, end):
            record = _parse_body(body, seq, step=3)
            if isinstance(record, DecisionRecord):
                pending.append((seq, record))
            if len(pending) >= _REPLAY_BATCH:
                state.decide(pending)
                pending = []
                if progress is not None:
                    progress("replay", seq, end)
        state.decide(pending)
        if progress is not None:
            progress("replay", end, end)
    return _ReplayPart(
        decisions=state.decisions,
        replayed=state.replayed,
        changes=tuple(state.changes),
        skipped=tuple(state.skipped),
        engines=frozenset(state.engines),
    )


class _Replay:
    def __init__(
        self, snap: _Snapshot, candidate: Mapping[str, str] | None, directory: Path | None
    ) -> None:
        self.snap = snap
        self.candidate = candidate
        self.directory = directory
        self.activations: dict[str, tuple[int, ActivationRecord]] = {}
        self.cache: dict[str, PolicyEngine | str] = {}
        self.changes: list[ReplayChange] = []
        self.skipped: list[NotReplayable] = []
        self.engines: set[str] = set()
        self.decisions = 0
        self.replayed = 0
        self.catalog = ToolCatalog([])
        self.principals: dict[str, EntityRef] = {}

    def principal(self, text: str | None) -> EntityRef | None:
        """The recorded principal as an EntityRef (``str()`` of it gives ``text`` back)."""
        if text is None:
            return None
        found = self.principals.get(text)
        if found is None:
            found = self.principals[text] = EntityRef.parse(text, "User")
        return found

    def engine(self, policy_hash: str) -> PolicyEngine | str:
        """The engine for a recorded policy set, or why there is none."""
        activation = self.activations.get(policy_hash)
        if activation is None:
            return "policy_set_not_activated"
        seq, record = activation
        key = policy_hash if self.candidate is None else record.generated_schema_blob
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        refs = [*record.file_blobs.values(), record.generated_schema_blob]
        stored = self.snap.blobs_by_ref(refs)
        if any(stored.get(ref) is None for ref in refs):
            self.cache[key] = "policies_erased_or_missing"
            return self.cache[key]
        generated = _text(stored[record.generated_schema_blob])
        if self.candidate is None:
            texts = {name: _text(stored[ref]) for name, ref in record.file_blobs.items()}
            base = None
        else:
            texts, base = dict(self.candidate), self.directory
        try:
            engine = PolicyEngine.from_texts(
                texts, self.catalog, generated_schema=generated, base=base
            )
        except PolicyLoadError as exc:
            if self.candidate is not None:
                raise
            raise VerificationError(
                f"the policy set activated at entry {seq} cannot be rebuilt from its recorded "
                f"texts: {exc}"
            ) from exc
        if self.candidate is None and engine.policy_hash != policy_hash:
            raise VerificationError(
                f"the policy texts recorded at entry {seq} rebuild policy set "
                f"{engine.policy_hash[:16]}…, not the recorded {policy_hash[:16]}…: the "
                "activation's blobs do not match it; run `agentfence log verify`"
            )
        self.cache[key] = engine
        return engine

    def decide(self, batch: Sequence[tuple[int, DecisionRecord]]) -> None:
        refs = [r.request_blob for _, r in batch if r.request_blob is not None]
        requests = self.snap.blobs_by_ref(refs) if refs else {}
        for seq, record in batch:
            self.decisions += 1
            self.engines.add(record.engine)
            if record.request_blob is None:
                self.skip(seq, record, "refused_before_cedar")
                continue
            content = requests.get(record.request_blob)
            if content is None:
                erased = record.request_blob in requests
                self.skip(seq, record, "request_erased" if erased else "request_missing")
                continue
            activation = self.activations.get(record.policy_hash)
            engine = (
                self.engine(record.policy_hash)
                if activation is not None and activation[0] < seq
                else "policy_set_not_activated"
            )
            if isinstance(engine, str):
                self.skip(seq, record, engine)
                continue
            facts = CallFacts(
                tool=record.tool,
                args={},
                principal=self.principal(record.principal),
                agent=record.agent,
                thread=record.thread,
                step=record.step,
                tool_call_id=record.tool_call_id,
                seed=record.seed,
            )
            decision = engine.decide_request(facts, json.loads(content), record.decision_id)
            self.replayed += 1
            # Cedar reports determining policies as a set, so compare them (and the reasons
            # that follow them) without regard to order.
            if (
                decision.effect.value != record.effect
                or sorted(decision.policy_ids) != sorted(record.policy_ids)
                or sorted(decision.reasons) != sorted(record.reasons)
            ):
                self.changes.append(
                    ReplayChange(
                        seq=seq,
                        decision_id=record.decision_id,
                        thread=record.thread,
                        tool=record.tool,
                        principal=record.principal,
                        recorded_effect=record.effect,
                        replayed_effect=decision.effect.value,
                        recorded_policies=tuple(record.policy_ids),
                        replayed_policies=tuple(decision.policy_ids),
                        recorded_reasons=tuple(record.reasons),
                        replayed_reasons=tuple(decision.reasons),
                    )
                )

    def skip(self, seq: int, record: DecisionRecord, reason: str) -> None:
        self.skipped.append(NotReplayable(seq, record.decision_id, record.tool, reason))


def _text(content: bytes | None) -> str:
    return (content or b"").decode("utf-8")
