"""Verify a whole decision log offline: :func:`verify_log` and its seven numbered steps.

The steps are numbered comments in :func:`verify_log`, mirrored in :data:`LOG_STEPS`, in
:attr:`VerifiedLog.steps` and in ``agentfence log verify``. :mod:`agentfence.verify`
re-exports the public names.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentfence import _merkle, _signing
from agentfence._signing import Checkpoint, Verifier
from agentfence.errors import (
    BlobError,
    CheckpointError,
    EntryError,
    ForkError,
    LogVerificationError,
    OrderError,
    RollbackError,
    VerificationError,
)
from agentfence.log import LOG_FORMAT
from agentfence.records import (
    BLOB_SALT_BYTES,
    ActivationRecord,
    ErasureRecord,
    KeyChangeRecord,
    LogRecord,
)
from agentfence.verify import _entries
from agentfence.verify._common import (
    KEEP_EVIDENCE,
    NO_CHECKPOINT,
    Progress,
    StepRun,
    plural,
)
from agentfence.verify._entries import FIRST, check_entry, range_bounds, range_parts
from agentfence.verify._key_schedule import (
    KeyChange,
    KeySchedule,
    note_text,
    open_trusted_checkpoint,
    saved_note,
    short_key,
    trusted_verifiers,
    unique_keys,
)
from agentfence.verify._order import Block, OrderCheck
from agentfence.verify._results import ErasedBlob, VerifiedLog, check_activation
from agentfence.verify._snapshot import Snapshot, parse_body

__all__ = ["LOG_STEPS", "ErasedBlob", "VerifiedLog", "verify_log"]

_PROGRESS_EVERY = 20_000


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


def verify_log(
    source: str | Path,
    keys: Sequence[Verifier | str],
    *,
    saved_checkpoint: str | None = None,
    progress: Progress | None = None,
    workers: int | None = 1,
) -> VerifiedLog:
    """Verify a decision log offline with the verifier keys you trust.

    ``source`` is the SQLite file (or ``sqlite:///PATH``); ``keys`` are C2SP verifier keys
    (``<name>+<key id>+<key>`` text or :class:`~agentfence._signing.Verifier`). Pass the
    checkpoint note you saved last time as ``saved_checkpoint``: it is what reveals a
    truncated or rolled-back log, or a fork. The steps are listed in the code below and
    returned in :attr:`VerifiedLog.steps`. Raises a :class:`LogVerificationError` subclass
    naming the failed step and the attack; returns only if every step passes.

    Step 3 reads the entries of a large SQLite log in ``workers`` processes (``None``: one
    per CPU; the default ``1`` checks them in this process, as ``agentfence log verify
    --workers 1`` does), each a range of entries over its own read-only connection; this
    process still folds the tree, checks every checkpoint and the order, and reports the
    failure of the lowest entry whichever process finds it. A PostgreSQL log is read in this
    process. Worker processes are spawned, so a script that asks for them must call
    :func:`verify_log` under ``if __name__ == "__main__":``, as with :func:`replay`; each
    worker first imports that script's module, so its top-level imports are paid once per
    worker.
    """
    started = time.perf_counter()
    trusted = trusted_verifiers(keys)
    run = StepRun(LOG_STEPS, progress)
    try:
        with Snapshot(source) as snap:
            check = _LogCheck(snap, trusted, run)
            check.source = str(source)
            check.workers = max(1, workers if workers is not None else os.cpu_count() or 1)
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

    def __init__(self, snap: Snapshot, trusted: Sequence[Verifier], run: StepRun) -> None:
        self.snap = snap
        self.trusted = list(trusted)
        self.run = run
        self.origin = ""
        self.stored: list[tuple[int, bytes, str, bytes]] = []
        self.keys: KeySchedule
        self.signed_by: tuple[str, ...] = ()
        self.latest: Checkpoint
        self.count = 0
        self.key_changes: list[KeyChange] = []
        self.erasures: dict[str, tuple[int, str]] = {}
        self.order = OrderCheck()
        self.activations: list[tuple[int, ActivationRecord]] = []
        self.saved_root: bytes | None = None
        self.blob_count = 0
        self.erased: list[ErasedBlob] = []
        self.unreferenced: list[str] = []
        self.pending: list[str] = []
        self.saved_size: int | None = None
        self.source = ""
        self.workers = 1

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
                NO_CHECKPOINT,
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
            record = parse_body(body, seq, step=2)
            if isinstance(record, KeyChangeRecord):
                self.key_changes.append(KeyChange(seq, record.old_key, record.new_key))
        first = self.stored[0][2] if self.stored else None
        self.keys = KeySchedule.build(
            self.key_changes, self.trusted, first, step=2, origin=self.origin
        )
        self.keys.set_handovers([size for size, *_ in self.stored])
        known = unique_keys([*self.trusted, *self.keys.epochs])
        chain = {k.vkey for k in self.keys.epochs}
        signed: dict[int, frozenset[str]] = {}
        for size, root, note, _ in self.stored:
            what = f"the checkpoint of size {size}"
            checkpoint, by = open_trusted_checkpoint(note, known, what, step=2, origin=self.origin)
            if checkpoint.size != size or not hmac.compare_digest(checkpoint.root, root):
                raise CheckpointError(
                    f"{what} was altered: its stored size and root columns say size {size}, "
                    f"root {root.hex()}, but its signed note says size {checkpoint.size}, root "
                    f"{checkpoint.root.hex()}; {KEEP_EVIDENCE}",
                    step=2,
                    attack="checkpoint_altered",
                )
            outside = (by & chain) - self.keys.allowed(size)
            if outside:
                key = sorted(outside)[0]
                raise CheckpointError(
                    f"{what} is signed by {key}, which may sign only {self.keys.range_of(key)}: "
                    "a retired key kept signing, or a new key signed history from before its "
                    f"key change; {KEEP_EVIDENCE}",
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
                    f"{', '.join(sorted(signed[size])) or 'no key of this log'}; {KEEP_EVIDENCE}",
                    step=2,
                    attack="checkpoint_unknown_key",
                )
        self.latest = Checkpoint(self.origin, latest_size, self.stored[-1][1])
        rotated = f"; {plural(len(self.key_changes), 'key change')}" if self.key_changes else ""
        self.run.passed(
            2,
            f"{len(self.stored)} checkpoints; latest size {latest_size} signed by "
            f"{' and '.join(short_key(k) for k in self.signed_by)}{rotated}",
        )

    def read_saved(self, note: str | None) -> _Saved | None:
        if note is None:
            return None
        note = saved_note(note)
        # The size and root are read now so step 4 can note the root at that size; the
        # signature is checked in step 5, before anything is concluded from them.
        try:
            body = _signing.parse_checkpoint_body(note_text(note))
        except VerificationError as exc:
            raise CheckpointError(
                f"the saved checkpoint is malformed: {exc}", step=5, attack="checkpoint_altered"
            ) from exc
        return _Saved(note, body.size, body.root)

    def entries_and_roots(self, saved: _Saved | None) -> None:
        last = self.snap.last_seq()
        # The progress total is what the highest stored seq promises: counting the rows
        # would read the whole table before any is checked.
        total = max(last + 1, 0) if last is not None else 0
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
        wanted = {size for size, _, _ in sizes} | {capture}
        keys = frozenset(self.key_changes)
        compare = hmac.compare_digest
        order = self.order
        # The Merkle frontier as a plain list: the perfect-subtree roots of MerkleFrontier.
        stack: list[bytes] = []
        next_index = 0
        next_size = sizes[0][0] if sizes else -1
        last_good = 0
        position = 0
        self.run.tick("3. entries", 0, total)
        bounds = range_bounds(last)
        for part in range_parts(self.snap, self.source, bounds, wanted, keys, self.workers):
            # 6./7. Collect the blob refs and order facts the later steps check, in order.
            for item in part.items:
                if isinstance(item, Block):
                    order.fold(item)
                else:
                    order.see(*item)
                    self.other(*item)
            position = part.start + part.done
            # 4. At each checkpoint size reached, the recomputed root must be the signed one:
            #    the frontier before the range joined to the range's own frontier there.
            while part.start < next_size <= position:
                size, signed_root, stored_frontier = sizes[next_index]
                frontier = _frontier(size, [*stack, *part.stacks[size]])
                if not compare(frontier.root(), signed_root):
                    raise EntryError(
                        f"the entries no longer hash to the signed root of the checkpoint "
                        f"of size {size}: an entry from {last_good} to {size - 1} was "
                        "modified, deleted, inserted or reordered and its leaf hash "
                        f"rewritten to match (the checkpoint of size {last_good} still "
                        f"holds); {KEEP_EVIDENCE}",
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
            if part.start < capture <= position:
                self.saved_root = _frontier(capture, [*stack, *part.stacks[capture]]).root()
            if part.failed:
                self._raise_at(position, keys)
            if part.done == _entries.RANGE:
                # A whole range is one perfect subtree: merge it as MerkleFrontier.append
                # merges a leaf, one level per trailing one bit of the ranges before it.
                (merged,) = part.final
                carry = part.start // _entries.RANGE
                while carry & 1:
                    merged = hashlib.sha256(b"\x01" + stack.pop() + merged).digest()
                    carry >>= 1
                stack.append(merged)
            else:
                stack.extend(part.final)  # the last range: its subtrees are all smaller
            self.run.tick("3. entries", position, total)
        self.count = position
        if position < self.latest.size:
            raise RollbackError(
                f"the log was truncated: the latest signed checkpoint commits to "
                f"{self.latest.size} entries, but only {position} are stored; {KEEP_EVIDENCE}",
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
                f"stored entries: the log's bookkeeping was edited; {KEEP_EVIDENCE}",
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

    def _raise_at(self, position: int, keys: frozenset[KeyChange]) -> None:
        """Raise the error of the entry a range stopped at, read again from the snapshot.

        This is the sequential check of that one entry: the same error, step and attack.
        """
        cursor = self.snap.rows(position if position else FIRST)
        row = cursor.fetchone()
        if row is not None:
            check_entry(row, position, keys, cursor.fetchone)
        # Fail closed: the range found a fault the snapshot no longer shows.
        raise EntryError(
            f"entry {position} failed its check when read by a worker process but not when "
            "read again: the log changed while it was verified; verify it again and "
            f"{KEEP_EVIDENCE}",
            step=3,
            attack="entry_modified",
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
        known = unique_keys([*self.trusted, *self.keys.epochs])
        checkpoint, by = open_trusted_checkpoint(
            saved.note, known, "the saved checkpoint", step=5, origin=self.origin
        )
        self.saved_size = checkpoint.size
        latest = self.latest
        signed_by = ", ".join(short_key(k) for k in sorted(by))
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
                    "(the entries still match your checkpoint); " + KEEP_EVIDENCE,
                    step=5,
                    attack="checkpoint_deleted",
                )
            raise ForkError(
                f"fork: the log's entries up to size {checkpoint.size} no longer hash to the "
                "root of the checkpoint you saved; the history was rewritten after you saved "
                f"it; {KEEP_EVIDENCE}",
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
                f"rewritten after you saved it; {KEEP_EVIDENCE}",
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
                            f"log erase`; {KEEP_EVIDENCE}",
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
                        f"to its reference; {KEEP_EVIDENCE}",
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
                f"({exc}); {KEEP_EVIDENCE}",
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
                f"blob(s) missing in all): blobs are erased, never deleted; {KEEP_EVIDENCE}",
                step=6,
                attack="blob_deleted",
            )
        # 6c. Each activation's policy texts hash to its recorded file hashes, and those and
        #     the schema to its policy set hash (docs/log-format.md, "Policy set hash").
        for seq, activation in self.activations:
            check_activation(self.snap, seq, activation)
        notes = [f"{len(refs)} referenced blobs present; {seen - len(self.erased)} rehashed"]
        if self.activations:
            notes.append(f"policy texts match {plural(len(self.activations), 'activation')}")
        if self.erased:
            notes.append(f"{len(self.erased)} erased, each with an erasure entry")
        if self.unreferenced:
            notes.append(f"{len(self.unreferenced)} unreferenced")
        if self.pending:
            notes.append(
                f"{plural(len(self.pending), 'erasure')} recorded but content still present"
            )
        self.run.passed(6, "; ".join(notes))

    def check_order(self) -> None:
        order = self.order
        if order.recheck:
            order = self._order_one_by_one()
        if order.problem is not None:
            raise OrderError(
                f"the log's entries are out of order: {order.problem}; {KEEP_EVIDENCE}",
                step=7,
                attack="out_of_order",
            )
        unrecorded = order.without_outcome()
        self.run.passed(
            7,
            f"{order.outcomes} outcomes follow their allowed or approved decisions; "
            f"{order.decisions} decisions use "
            f"{plural(len(order.activated), 'activated policy set')}"
            + (
                f"; {unrecorded} let a tool run with no outcome recorded (ran, outcome not "
                "recorded)"
                if unrecorded
                else ""
            ),
        )

    def _order_one_by_one(self) -> OrderCheck:
        """Check the order again, one entry at a time as read from this process's snapshot.

        The blocks folded in step 3 showed that some entry may break an order rule; read one
        by one, the first that does is named exactly as the sequential check names it.
        """
        order = OrderCheck()
        keys = frozenset(self.key_changes)
        cursor = self.snap.rows(FIRST, self.count)
        for position, row in enumerate(cursor):
            _, fact = check_entry(row, position, keys, cursor.fetchone)
            if len(fact) == 5:
                order.decided(*fact)
            elif len(fact) == 3:
                order.ran(*fact)
            else:
                order.see(*fact)
            if order.problem is not None:
                return order
        # Fail closed: the entries read again are not the ones step 3 read.
        raise EntryError(
            "an entry broke an order rule when read in step 3 but not when read again: the "
            f"log changed while it was verified; verify it again and {KEEP_EVIDENCE}",
            step=3,
            attack="entry_modified",
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
            without_outcome=self.order.without_outcome(),
        )


def _frontier(size: int, stack: Sequence[bytes]) -> _merkle.MerkleFrontier:
    return _merkle.MerkleFrontier.from_state(_merkle.FrontierState(size, tuple(stack)))
