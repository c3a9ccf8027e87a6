"""Numbering and hashing a batch of log entries in this process (a log stored in SQLite).

A PostgreSQL log sequences its entries in the database (``SignedLog._write_on_server``); a
SQLite log is sequenced by the writer that holds the file's write lock (``BEGIN IMMEDIATE``).
:class:`LocalSequencer` does that for one :class:`~agentfence.log.SignedLog`.

It keeps the Merkle frontier of its last commit in memory, so that a commit need not read
the tree state and look the dedupe keys up before it writes (the checked path, and a parse of
the stored frontier). Instead it writes straight away and lets the database say when that
was wrong, inside the same transaction:

- another process or connection appended in between: the guarded ``UPDATE`` of the tree
  state, the first statement, finds a size other than the one this process committed last
  and changes nothing; the checked path goes on in the same transaction (the write lock is
  still held, so no other writer waits twice);
- a record was already on the log (an idempotent re-append): its dedupe key's ``UNIQUE``
  constraint refuses the insert; the transaction is rolled back (nothing was committed) and
  the batch is written again by the checked path, which finds the duplicate.

Every commit runs on one dedicated connection, whichever thread leads it
(:meth:`~agentfence._storage.database.Database.using`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from agentfence import _merkle
from agentfence._log_api import Pending, Receipt, dedupe_key, index_columns
from agentfence._storage.tables import EntryRow, LogBackend, LogTransaction
from agentfence.records import entry_bytes_from

__all__ = ["LocalSequencer"]


class LocalSequencer:
    """Sequences batches into a log stored in SQLite, one batch at a time (the caller holds
    the log's commit lock)."""

    def __init__(self, backend: LogBackend) -> None:
        self._backend = backend
        # The frontier after this process's last commit, or None when it is not known (not
        # yet read, or a commit failed and the stored tree may be ahead of it).
        self._known: _merkle.MerkleFrontier | None = None
        self._conn: Any = None  # one connection for every commit (see Database.using)
        self.rechecked = 0
        """Batches whose quick write was rolled back and written by the checked path."""

    def resume(self, frontier: _merkle.MerkleFrontier) -> None:
        """Start from a frontier read and checked from the stored log (the tail check)."""
        self._known = frontier.copy()

    def write(self, batch: Sequence[Pending]) -> _merkle.MerkleFrontier:
        """Write a batch in one transaction, set each item's receipt, and return the tree's
        frontier after it (this sequencer's own: read it before the next write)."""
        known, self._known = self._known, None  # unknown until this commit is durable
        db = self._backend.db
        if self._conn is None:
            self._conn = db.dedicated()
        with db.using(self._conn):
            try:
                frontier = self._write(batch, known)
            except sqlite3.IntegrityError:
                if known is None:
                    raise
                # A dedupe key was already stored (an idempotent re-append): the quick
                # write was rolled back; the checked path finds the duplicate. (A constraint
                # that fails for any other reason fails the checked path too.)
                self.rechecked += 1
                frontier = self._write(batch, None)
        self._known = frontier
        return frontier

    def _write(
        self, batch: Sequence[Pending], known: _merkle.MerkleFrontier | None
    ) -> _merkle.MerkleFrontier:
        with self._backend.transaction() as tx:
            if known is not None:
                if self._write_known(tx, batch, known):
                    return known
                # Another writer moved the tree on: nothing was written, and this
                # transaction holds the write lock, so the checked path goes on in it.
                self.rechecked += 1
            return self._write_checked(tx, batch)

    def _write_known(
        self, tx: LogTransaction, batch: Sequence[Pending], frontier: _merkle.MerkleFrontier
    ) -> bool:
        """The quick path: number the batch after the frontier in memory (advanced in place)
        and write it; False, having written nothing, when the stored tree is elsewhere."""
        old_size = frontier.size
        rows: list[tuple[object, ...]] = []
        blobs: list[tuple[str, bytes, bytes]] = []
        leaves: list[bytes] = []
        for item in batch:
            record = item.record
            seq = frontier.size
            body = entry_bytes_from(seq, item.record_bytes)
            leaf = _merkle.leaf_hash(body)
            frontier.append(leaf)
            leaves.append(leaf)
            rows.append(
                (
                    seq,
                    record.format,
                    dedupe_key(record),
                    body,
                    leaf,
                    *index_columns(record),
                    record.time_us,
                )
            )
            if item.blobs:
                blobs.extend((b.ref, b.salt, b.content) for b in item.blobs)
        # First, under the write lock: is the stored tree the one this process left?
        if not tx.advance_tree_state(old_size, frontier.size, _state_bytes(frontier)):
            return False
        tx.insert_blobs(blobs)
        tx.insert_entry_tuples(rows)  # a stored dedupe key raises: the caller rolls back
        for seq, (item, leaf) in enumerate(zip(batch, leaves, strict=True), start=old_size):
            item.receipt = Receipt(seq=seq, leaf_hash=leaf.hex())
        return True

    def _write_checked(
        self, tx: LogTransaction, batch: Sequence[Pending]
    ) -> _merkle.MerkleFrontier:
        """The checked path: read the stored tree state and look every dedupe key up under
        the write lock, then write what is new."""
        keys = [k for k in (dedupe_key(i.record) for i in batch) if k is not None]
        state, existing = tx.begin_batch(keys)
        if state is None:
            frontier = _merkle.MerkleFrontier()
        else:
            frontier = _merkle.MerkleFrontier.from_state(_merkle.FrontierState.from_bytes(state[1]))
        rows: list[EntryRow] = []
        blobs: list[tuple[str, bytes, bytes]] = []
        for item in batch:
            key = dedupe_key(item.record)
            if key is not None and key in existing:
                seq, leaf = existing[key]
                item.receipt = Receipt(seq=seq, leaf_hash=leaf.hex(), duplicate=True)
                continue
            seq = frontier.size
            body = entry_bytes_from(seq, item.record_bytes)
            leaf = _merkle.leaf_hash(body)
            frontier.append(leaf)
            rows.append(
                EntryRow(
                    seq,
                    item.record.format,
                    key,
                    body,
                    leaf,
                    *index_columns(item.record),
                    item.record.time_us,
                )
            )
            blobs.extend((b.ref, b.salt, b.content) for b in item.blobs)
            item.receipt = Receipt(seq=seq, leaf_hash=leaf.hex())
            if key is not None:
                existing[key] = (seq, leaf)
        if rows:
            tx.finish_batch(blobs, rows, frontier.size, _state_bytes(frontier))
        return frontier


def _state_bytes(frontier: _merkle.MerkleFrontier) -> bytes:
    return frontier.state().to_bytes()
