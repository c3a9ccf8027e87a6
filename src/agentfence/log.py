"""The decision log: where the fence records every decision before the tool runs.

:class:`DecisionLog` is the protocol the fence writes to. An append is durable when it
returns; if it raises, the fence denies the call (fail closed). :class:`LogReader` is the
protocol beside it that reads a log back (usage limits, replay, approvers, the inbox). Two
implementations of both:

- :class:`SignedLog`, the append-only signed log: entries are leaves of an RFC 6962 Merkle
  tree, and signed C2SP checkpoints commit to its size and root. Stored in SQLite by
  default (``SignedLog.open("sqlite:///fence.db", signer=...)``), or in PostgreSQL when
  several processes or hosts share one log (``"postgresql://..."``). The byte format is in
  ``docs/log-format.md``; it is the same on both.
- :class:`MemoryLog`, in memory, for tests and for trying agentfence out.

:class:`LogView` reads a stored log without writing to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path

from agentfence import _merkle, _signing
from agentfence._log_api import (
    DecisionLog,
    DeferringLog,
    LogStats,
    MemoryLog,
    Pending,
    Receipt,
    dedupe_key,
    index_columns,
)
from agentfence._log_reader import LogReader, LogView, ThreadDecision, parse_entry
from agentfence._sequencer import LocalSequencer
from agentfence._storage.database import Location, parse_url
from agentfence._storage.tables import CheckpointRow, LogBackend, ServerEntry
from agentfence.errors import ConfigurationError, LogError, VerificationError
from agentfence.records import (
    KEYCHANGE_KIND,
    OUTCOME_KIND,
    Blob,
    ErasureRecord,
    KeyChangeRecord,
    LogRecord,
    OutcomeRecord,
    canonical_bytes,
    entry_bytes_from,
)

__all__ = [
    "DecisionLog",
    "DeferringLog",
    "LogReader",
    "LogView",
    "MemoryLog",
    "Receipt",
    "SignedLog",
    "ThreadDecision",
    "parse_entry",
]

LOG_FORMAT = "agentfence.log/v1"
DEFAULT_CHECKPOINT_INTERVAL = 0.5
"""Seconds between checkpoints while the tree grows (one is also signed on close)."""
_GATHER_SECONDS = 0.0002
_DRAIN_ROUNDS = 5
DEFAULT_FLUSH_WINDOW = 0.05
"""Seconds an outcome appended with ``append_later`` may wait for the next commit."""
_logger = logging.getLogger("agentfence.log")


class SignedLog:
    """The append-only, signed decision log (a :class:`DecisionLog`).

    Appends from many threads share one ordered tree through group commit: the first caller
    to find no commit in progress commits everything queued so far in one transaction, and
    the others wait for their record's turn. A checkpoint is signed when the tree has grown
    and ``checkpoint_interval`` seconds have passed since the last, and on :meth:`close`.

    On open the log checks its own tail (the latest checkpoint's signature, that its root
    matches the stored tree, that the entries after it are contiguous and hash to the
    stored tree state) and refuses to write to a log that fails.
    """

    def __init__(
        self,
        backend: LogBackend,
        *,
        signer: _signing.Signer,
        origin: str,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        clock: Callable[[], int] | None = None,
        flush_window: float = DEFAULT_FLUSH_WINDOW,
    ) -> None:
        self._backend = backend
        self._flush_window = flush_window
        # One flusher thread (started with the first deferred record) commits what no decision's
        # commit carried within the flush window; a thread per flush cost one on every call.
        self._flusher: threading.Thread | None = None
        self._flush_wanted = False
        self._flusher_idle = False
        self._view = LogView(backend)
        self._sequencer = LocalSequencer(backend)  # SQLite: this process numbers entries
        self._signer = signer
        self._origin = origin
        self._interval = checkpoint_interval
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self._lock = threading.Lock()  # guards the queue and the leader flag
        self._flush_due = threading.Condition(self._lock)  # wakes an idle flusher
        self._batch_full = threading.Condition(self._lock)  # wakes a gathering leader
        self._gathering = False
        self._commit_lock = threading.Lock()  # one writer of the backend at a time
        self._queue: list[Pending] = []
        self._leader = False
        self._closed = False
        self._last_checkpoint_size = -1
        self._last_checkpoint_at = time.monotonic()
        self._last_batch = 0
        self._incoming: _signing.Signer | None = None
        self._retired = False  # another process rotated the key away from ours
        self._failed: str | None = None  # the database returned entries that do not check
        self._key_lock = threading.Lock()
        self.stats = LogStats()
        self._start()

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | Path | Location,
        *,
        signer: _signing.Signer,
        origin: str | None = None,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        flush_window: float = DEFAULT_FLUSH_WINDOW,
    ) -> SignedLog:
        """Open (creating if needed) the log at ``sqlite:///PATH`` (or a plain path) or
        ``postgresql://USER@HOST/DATABASE``.

        Every process appending to one log must sign with the same key (the origin is
        stored with the log the first time and read back after). ``flush_window`` bounds
        how long a record appended with :meth:`append_later` waits for a commit.
        """
        location = parse_url(url)
        backend = LogBackend(location)
        return cls(
            backend,
            signer=signer,
            origin=origin or location.default_origin,
            checkpoint_interval=checkpoint_interval,
            flush_window=flush_window,
        )

    def _start(self) -> None:
        meta = self._backend.get_meta()
        if not meta:
            self._backend.set_meta(
                {"format": LOG_FORMAT, "origin": self._origin, "created_us": str(self._clock())}
            )
            meta = self._backend.get_meta()
        if meta.get("format") != LOG_FORMAT:
            raise LogError(
                f"{self._backend.name} is not an agentfence decision log of format "
                f"{LOG_FORMAT} (found {meta.get('format')!r}); open the right file"
            )
        self._origin = meta["origin"]
        try:
            self._check_tail()
        except (VerificationError, LogError) as exc:
            raise LogError(
                f"the decision log {self._backend.name!r} failed its own tail check and "
                f"will not be written to: {exc}. Inspect it with `agentfence log verify "
                f"{self._backend.name} --key <verifier key>`; do not delete or edit it."
            ) from exc

    def _check_tail(self) -> None:
        # One snapshot for every read: other processes may be appending meanwhile.
        with self._backend.snapshot():
            signed_size, frontier = self._read_tail()
        self._last_checkpoint_size = signed_size
        self._sequencer.resume(frontier)
        if frontier.size != signed_size and self._key_is_current(frontier.size):
            self._sign_checkpoint(frontier)

    def _read_tail(self) -> tuple[int, _merkle.MerkleFrontier]:
        """The size of the latest signed checkpoint and the checked tree after it."""
        latest = self._backend.latest_checkpoint()
        state = self._backend.tree_state()
        if latest is None:
            if state is not None and state[0] != 0:
                raise LogError(f"it holds {state[0]} entries but no signed checkpoint")
            return -1, _merkle.MerkleFrontier()
        checkpoint = self._open_own_checkpoint(latest.note)
        if checkpoint.size != latest.size or checkpoint.root != latest.root:
            raise VerificationError(
                f"the stored checkpoint row for size {latest.size} does not match its signed note"
            )
        frontier = _merkle.MerkleFrontier.from_state(
            _merkle.FrontierState.from_bytes(latest.frontier)
        )
        if frontier.size != checkpoint.size or frontier.root() != checkpoint.root:
            raise VerificationError(
                f"the tree stored at the latest checkpoint (size {checkpoint.size}) does not "
                "hash to its signed root"
            )
        for row in self._backend.entries(checkpoint.size):
            if row.seq != frontier.size:
                raise VerificationError(
                    f"entry {frontier.size} is missing (the next stored entry is {row.seq})"
                )
            leaf = _merkle.leaf_hash(row.body)
            if leaf != row.leaf_hash:
                raise VerificationError(f"entry {row.seq} does not hash to its stored leaf hash")
            frontier.append(leaf)
        count, highest = self._backend.count_and_max_seq()
        if count != frontier.size or highest != frontier.size - 1:
            raise VerificationError(
                f"the log holds {count} entries (seqs up to {highest}) but its tree has "
                f"{frontier.size}: entries were deleted or inserted"
            )
        stored = state or (0, _merkle.FrontierState(0, ()).to_bytes())
        stored_frontier = _merkle.MerkleFrontier.from_state(
            _merkle.FrontierState.from_bytes(stored[1])
        )
        if stored[0] != frontier.size or stored_frontier.root() != frontier.root():
            raise VerificationError(
                f"the stored tree state (size {stored[0]}) does not match the entries "
                f"(size {frontier.size})"
            )
        return checkpoint.size, frontier

    def _open_own_checkpoint(self, note: str) -> _signing.Checkpoint:
        try:
            return _signing.open_checkpoint(note, [self._signer.verifier], origin=self._origin)
        except VerificationError as exc:
            raise VerificationError(
                f"the latest checkpoint does not verify with this process's signing key "
                f"{self._signer.name!r}: {exc}. To change keys, rotate them with "
                "SignedLog.rotate_key (see docs/auditor-guide.md)"
            ) from exc

    # --- appending -----------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The log's origin line, the first line of every checkpoint."""
        return self._origin

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL log has none: see :attr:`url`)."""
        return self._backend.path

    @property
    def url(self) -> str:
        """Where the log is stored: ``sqlite:///PATH`` or the PostgreSQL URL."""
        return self._backend.location.url

    @property
    def name(self) -> str:
        """How messages name the log: its file, or its URL without a password."""
        return self._backend.name

    @property
    def verifier_key(self) -> str:
        """The verifier key (C2SP vkey) of the current signing key."""
        return self._signer.verifier_key

    def append(self, record: LogRecord, blobs: Sequence[Blob] = ()) -> Receipt:
        """Append one record durably and return its receipt (see :class:`DecisionLog`).

        Raises :class:`~agentfence.errors.LogError` if the record could not be committed.
        """
        # Serialise before queueing: the commit leader only assembles and hashes.
        item = Pending(record, blobs, canonical_bytes(record))
        with self._lock:
            self._enqueue(item)
            lead = not self._leader
            self._leader = True
        if not lead:
            # A follower sleeps until its record is committed, or until the leader hands it
            # the lead because records are still queued.
            item.wake.wait()
        if not item.done:
            with self._lock:
                if len(self._queue) < self._last_batch:
                    # Group commit: when more writers were in the last commit than are
                    # queued now, give them a moment to queue their next record, so this
                    # commit carries them too; the last one to arrive wakes the leader. A
                    # lone writer never waits.
                    self._gathering = True
                    self._batch_full.wait(_GATHER_SECONDS)
                    self._gathering = False
                batch, self._queue = self._queue, []
                self._last_batch = len(batch)
            with self._commit_lock:
                self._commit(batch)
            self._hand_over()
        if item.error is not None:
            raise LogError(
                f"the decision log could not record the entry: "
                f"{self._backend.db.describe(item.error)}"
            ) from item.error
        if item.receipt is None:  # pragma: no cover - _commit always sets one or the other
            raise LogError("the decision log did not record the entry")
        return item.receipt

    def append_later(self, record: LogRecord, blobs: Sequence[Blob] = ()) -> None:
        """Queue a record to ride the next commit, without waiting for it to be durable.

        For outcomes, which need not hold the call: a decision's commit (the one durable
        write a call waits for) carries the outcomes queued before it, and a record that no
        commit picks up within ``flush_window`` seconds is committed on its own, as on
        :meth:`close`. A crash can lose the records queued in that window, never a decision
        (``docs/log-format.md``, "What a crash can lose"). A failed commit of such records is
        logged; the next append reports the log's state.
        """
        if not self.defers:
            self.append(record, blobs)
            return
        item = Pending(record, blobs, canonical_bytes(record), deferred=True)
        with self._lock:
            self._enqueue(item)
            if not self._leader:
                self._schedule_flush()

    @property
    def defers(self) -> bool:
        """Whether :meth:`append_later` defers records to the next commit (with a flush
        window above zero, on SQLite and PostgreSQL alike)."""
        return self._flush_window > 0

    def _enqueue(self, item: Pending) -> None:
        """Queue a record for the next commit (hold ``self._lock``); refuse on a closed or
        failed log."""
        if self._closed:
            raise LogError(f"the decision log {self.name} is closed")
        if self._failed:
            raise LogError(self._failed)
        self._queue.append(item)
        if self._gathering and len(self._queue) >= self._last_batch:
            self._batch_full.notify()

    def _schedule_flush(self) -> None:
        """Have queued records committed within the flush window (hold ``self._lock``)."""
        self._flush_wanted = True
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"agentfence-flush-{self.name}", daemon=True
            )
            self._flusher.start()
        elif self._flusher_idle:
            self._flush_due.notify()

    def _flush_loop(self) -> None:
        """The flusher: while records are being deferred, every flush window commit what no
        other commit carried; idle (waiting, no polling) otherwise."""
        failures = 0  # flushes in a row that could not commit: wait longer, up to 2 s
        while True:
            with self._lock:
                while not self._flush_wanted and not self._closed:
                    self._flusher_idle = True
                    self._flush_due.wait()
                self._flusher_idle = False
                if self._closed:
                    return
                self._flush_wanted = False
                delay = min(self._flush_window * 2**failures, max(self._flush_window, 2.0))
                self._flush_due.wait(delay)  # close() wakes it early
                if self._closed:
                    return
            try:
                failures = 0 if self._flush() else min(failures + 1, 16)
            except Exception:  # _commit keeps failed records queued; keep the thread alive
                _logger.exception("the decision log %s could not flush queued entries", self.name)

    def _flush(self) -> bool:
        """Commit what is queued, if no commit is under way (which would carry it); False
        when the commit failed (the records stay queued)."""
        with self._lock:
            if self._leader or not self._queue or self._closed:
                return True
            self._leader = True
            batch, self._queue = self._queue, []
        with self._commit_lock:
            committed = self._commit(batch)
        self._hand_over()
        return committed

    def _hand_over(self) -> None:
        """After a commit: wake a waiting writer to lead the next, or schedule a flush."""
        with self._lock:
            waiting = next((q for q in self._queue if not q.deferred), None)
            if waiting is not None:
                waiting.wake.set()
                return
            self._leader = False
            if self._queue and not self._closed:
                self._schedule_flush()

    def _commit(self, batch: list[Pending]) -> bool:
        started = time.perf_counter()
        try:
            frontier = self._write(batch)
        except BaseException as exc:
            retry: list[Pending] = []
            for item in batch:
                if item.deferred and not self._closed:
                    # Nobody waits for it: it goes back in the queue, to ride the next commit
                    # (a dropped connection is replaced, a restarted server is back by then).
                    item.attempts += 1
                    if item.attempts == 1:
                        _logger.error(
                            "the decision log %s could not record a queued %s entry yet (it "
                            "is tried again with each commit): %s",
                            self.name,
                            item.record.format,
                            self._backend.db.describe(exc),
                        )
                    retry.append(item)
                    continue
                item.error, item.done = exc, True
                item.wake.set()
                if item.deferred:
                    _logger.error(
                        "the decision log %s could not record a queued %s entry: %s",
                        self.name,
                        item.record.format,
                        self._backend.db.describe(exc),
                    )
            if retry:
                with self._lock:
                    self._queue[:0] = retry
            return False
        try:
            handover = self._handover(batch, frontier)
        except Exception:  # the entries are durable; rotate_key reports the failed handover
            handover = True
        for item in batch:
            item.done = True
            item.wake.set()
        self.stats.batches += 1
        self.stats.entries += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.stats.commit_seconds.append(time.perf_counter() - started)
        if (
            not handover
            and frontier.size != self._last_checkpoint_size
            and time.monotonic() - self._last_checkpoint_at >= self._interval
        ):
            with suppress(Exception):  # the entries are durable; the next commit or close() signs
                if self._key_is_current(frontier.size):
                    self._sign_checkpoint(frontier)
        return True

    def _key_is_current(self, size: int) -> bool:
        """Whether this process's key signs checkpoints of a tree of ``size`` entries.

        Several processes append to one log; when one of them rotates the key, the others
        still hold the old one. Their entries are as good as anyone's (the tree carries
        them), but a checkpoint they signed after the change would be signed by a retired
        key: they sign none, until they are restarted with the new key.
        """
        row = self._backend.latest_of_kind(KEYCHANGE_KIND, size)
        if row is None:
            return True
        change = parse_entry(row.body)[1]
        with self._key_lock:
            current = self._signer.verifier_key
        if isinstance(change, KeyChangeRecord) and change.new_key != current:
            if not self._retired:
                self._retired = True
                _logger.warning(
                    "agentfence: the decision log %s now signs with key %s (key change at "
                    "entry %d); this process holds the retired key and signs no checkpoints "
                    "until it is restarted with the new one",
                    self.name,
                    change.new_key.split("+", 1)[0],
                    row.seq,
                )
            return False
        return True

    def _write(self, batch: list[Pending]) -> _merkle.MerkleFrontier:
        if self._backend.db.dialect.sequences_on_server:
            return self._write_on_server(batch)
        return self._sequencer.write(batch)

    def _write_on_server(self, batch: list[Pending]) -> _merkle.MerkleFrontier:
        """Let the database number and hash the batch (PostgreSQL), then check its work.

        Every writer process queues on the log's lock; doing the sequencing inside the
        database keeps the lock for one round trip. Nothing the database returns is taken on
        trust: the entries' bytes, leaf hashes and the new frontier are recomputed here from
        the frontier it started from, and a difference fails the append (the call is denied)
        and names the log as inconsistent.
        """
        entries: list[ServerEntry] = []
        blobs: list[tuple[int, str, bytes, bytes]] = []
        for index, item in enumerate(batch):
            entries.append(
                ServerEntry(
                    item.record_bytes,
                    item.record.format,
                    dedupe_key(item.record),
                    *index_columns(item.record),
                    item.record.time_us,
                )
            )
            blobs.extend((index, b.ref, b.salt, b.content) for b in item.blobs)
        done = self._backend.append_on_server(entries, blobs)
        frontier = _merkle.MerkleFrontier.from_state(
            _merkle.FrontierState.from_bytes(done.old_frontier)
        )
        if not (len(done.seqs) == len(done.leaves) == len(done.duplicates) == len(batch)):
            raise LogError("the database returned receipts for a different number of entries")
        for item, seq, leaf, duplicate in zip(
            batch, done.seqs, done.leaves, done.duplicates, strict=True
        ):
            if duplicate:
                item.receipt = Receipt(seq=seq, leaf_hash=leaf.hex(), duplicate=True)
                continue
            expected = _merkle.leaf_hash(entry_bytes_from(frontier.size, item.record_bytes))
            if seq != frontier.size or leaf != expected:
                self._failed = (
                    f"the database stored entry {seq} differently from the record this process "
                    f"sent (expected entry {frontier.size}); this process appends and signs "
                    f"nothing more. Run `agentfence log verify {self.name}` and keep the log "
                    "as it is for inspection"
                )
                raise LogError(self._failed)
            frontier.append(leaf)
            item.receipt = Receipt(seq=seq, leaf_hash=leaf.hex())
        if frontier.state().to_bytes() != done.new_frontier:
            self._failed = (
                f"the database stored a tree state for size {frontier.size} that does not match "
                f"the entries; this process appends and signs nothing more. Run `agentfence "
                f"log verify {self.name}` and keep the log as it is for inspection"
            )
            raise LogError(self._failed)
        return frontier

    def _handover(self, batch: list[Pending], frontier: _merkle.MerkleFrontier) -> bool:
        """After a commit that wrote a key change: switch keys and sign the handover."""
        with self._key_lock:
            incoming = self._incoming
        if incoming is None:
            return False
        changed = any(
            isinstance(i.record, KeyChangeRecord)
            and i.record.new_key == incoming.verifier_key
            and i.receipt is not None
            and not i.receipt.duplicate
            for i in batch
        )
        if not changed:
            return False
        # Sign first: if that fails the old key stays in charge and rotate_key says so.
        self._sign_checkpoint(frontier, signers=[incoming, self._signer])
        with self._key_lock:
            self._signer, self._incoming = incoming, None
        return True

    # --- checkpoints ---------------------------------------------------------------------

    def _sign_checkpoint(
        self, frontier: _merkle.MerkleFrontier, signers: Sequence[_signing.Signer] = ()
    ) -> str:
        checkpoint = _signing.Checkpoint(
            origin=self._origin, size=frontier.size, root=frontier.root()
        )
        body = checkpoint.body()
        if not signers:
            with self._key_lock:
                signers = [self._signer]
        note = body + "\n" + "".join(s.signature_line(body) for s in signers)
        self._backend.insert_checkpoint(
            CheckpointRow(
                size=frontier.size,
                root=checkpoint.root,
                note=note,
                frontier=frontier.state().to_bytes(),
                time_us=self._clock(),
            )
        )
        self._last_checkpoint_size = frontier.size
        self._last_checkpoint_at = time.monotonic()
        self.stats.checkpoints += 1
        return note

    def checkpoint(self) -> str:
        """Sign a checkpoint of the current tree (if it grew) and return the latest note."""
        with self._commit_lock:
            state = self._backend.tree_state()
            if (
                state is not None
                and state[0] != self._last_checkpoint_size
                and not self._failed
                and self._key_is_current(state[0])
            ):
                self._sign_checkpoint(
                    _merkle.MerkleFrontier.from_state(_merkle.FrontierState.from_bytes(state[1]))
                )
            latest = self._backend.latest_checkpoint()
        if latest is None:  # pragma: no cover - a checkpoint is signed at creation
            raise LogError("the log has no checkpoint")
        return latest.note

    def rotate_key(self, new_signer: _signing.Signer) -> Receipt:
        """Hand checkpoint signing over to ``new_signer``, recorded as a key-change entry.

        The checkpoint right after the key-change entry is signed by both keys; later ones by
        the new key only.
        """
        if new_signer.verifier_key == self._signer.verifier_key:
            raise ConfigurationError(
                "the new signing key is the current one; generate a new "
                "key with `agentfence keys generate`"
            )
        # The commit that writes the key-change entry also switches keys and signs the
        # handover checkpoint with both, under the same commit lock: no checkpoint that
        # includes the change is ever signed by the old key alone.
        with self._key_lock:
            self._incoming = new_signer
        try:
            receipt = self.append(
                KeyChangeRecord(
                    old_key=self._signer.verifier_key,
                    new_key=new_signer.verifier_key,
                    time_us=self._clock(),
                )
            )
        finally:
            with self._key_lock:
                self._incoming = None
        if self._signer is not new_signer:  # pragma: no cover - the commit switches keys
            raise LogError("the key change was recorded but the handover was not signed")
        return receipt

    def erase_blob(self, ref: str, *, reason: str) -> Receipt:
        """Erase a blob's content (kept: its ref), recorded first as an erasure entry."""
        if not reason.strip():
            raise ConfigurationError("an erasure needs a reason (for example the request id)")
        if self._backend.blob(ref) is None:
            raise LogError(
                f"no blob {ref!r} in {self.name}; list blobs with `agentfence log show --blobs`"
            )
        receipt = self.append(ErasureRecord(blob=ref, reason=reason, time_us=self._clock()))
        with self._backend.transaction() as tx:
            tx.erase_blob(ref)
        return receipt

    def close(self) -> None:
        """Commit queued records, sign a final checkpoint if the tree grew, and close."""
        with self._lock:
            if self._closed:
                return
        self._drain()
        try:
            self.checkpoint()
        except self._backend.db.errors as exc:
            raise LogError(
                f"the final checkpoint of {self.name} could not be signed: "
                f"{self._backend.db.describe(exc)}. The entries are durable; the next writer "
                "to open the log signs a checkpoint of them"
            ) from exc
        finally:
            with self._lock:
                self._closed = True
                self._flush_due.notify_all()  # the flusher ends
            flusher = self._flusher
            if flusher is not None and flusher is not threading.current_thread():
                flusher.join(timeout=self._flush_window + 1)
            self._backend.close()

    def flush(self) -> None:
        """Commit every record still queued with :meth:`append_later` now, and return once
        they are durable (or, if the storage keeps failing, logged as lost)."""
        self._drain()

    def _drain(self) -> None:
        """Commit every record still queued (``append_later``), as :meth:`flush` and
        :meth:`close` do; a record that still cannot be written after a few tries is logged
        and given up on."""
        rounds = 0
        while True:
            with self._lock:
                if self._leader:
                    # A commit under way may hold queued records: wait until it is durable
                    # (it hands the queue on, or schedules it) before looking again.
                    wait = True
                elif not self._queue:
                    return
                elif rounds >= _DRAIN_ROUNDS:
                    for item in self._queue:
                        _logger.error(
                            "the decision log %s is closing without a queued %s entry: it "
                            "could not be written",
                            self.name,
                            item.record.format,
                        )
                    self._queue = []
                    return
                else:
                    wait = False
                    rounds += 1  # one more commit of what is queued
                    self._leader = True
                    batch, self._queue = self._queue, []
            if wait:
                time.sleep(0.001)
                continue
            with self._commit_lock:
                self._commit(batch)
            self._hand_over()

    def __enter__(self) -> SignedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------

    def size(self) -> int:
        """The number of entries."""
        return self._view.size()

    def read(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, LogRecord]]:
        """``(seq, record)`` pairs in order (see :class:`LogReader`)."""
        return self._view.read(start, end)

    def blob(self, ref: str) -> bytes | None:
        """A blob's content (``None`` if unknown or erased)."""
        return self._view.blob(ref)

    def find_outcome(self, decision_id: str) -> tuple[OutcomeRecord, bytes | None] | None:
        """The recorded outcome of a decision and its result content, if the tool ran.

        An outcome still queued (``append_later``) counts: the call ran.
        """
        with self._lock:
            queued = [
                q for q in self._queue if dedupe_key(q.record) == f"{OUTCOME_KIND}:{decision_id}"
            ]
        for item in queued:
            record, blobs = item.record, {b.ref: b.content for b in item.blobs}
            if isinstance(record, OutcomeRecord):
                return record, blobs.get(record.result_blob) if record.result_blob else None
        return self._view.find_outcome(decision_id)

    def thread_decisions(
        self, thread: str, *, exclude: str | None = None, before: int | None = None
    ) -> list[ThreadDecision]:
        """A thread's decisions with their outcome status (see :class:`LogReader`)."""
        return self._view.thread_decisions(thread, exclude=exclude, before=before)

    def first_seq_since(self, time_us: int) -> int:
        """The first seq at or after ``time_us``, by the stored time index."""
        return self._view.first_seq_since(time_us)
