"""Numbering and hashing a batch of log entries in this process (a log stored in SQLite).

A PostgreSQL log sequences its entries in the database (``SignedLog._write_on_server``); a
SQLite log is sequenced by the writer that holds the file's write lock (``BEGIN IMMEDIATE``).
:class:`LocalSequencer` does that for one :class:`~agentfence.log.SignedLog`.

It keeps the Merkle frontier of its last commit in memory, so that a commit need not read
the tree state and the dedupe keys back before it writes (the checked path, four statements
and a parse of the stored frontier). Instead it writes straight away and lets the database
say when that was wrong, inside the same transaction:

- another process or connection appended in between: the guarded ``UPDATE`` of the tree
  state finds a size other than the one this process committed last, and updates nothing;
- a record was already on the log (an idempotent re-append): its dedupe key's ``UNIQUE``
  constraint refuses the insert.

Either way the transaction is rolled back (nothing was committed, nothing is lost) and the
batch is written again by the checked path, which reads the stored tree state and looks the
dedupe keys up under the write lock, exactly as every commit did before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from agentfence import _merkle
from agentfence._log_api import Pending, Receipt, dedupe_key, index_columns
from agentfence._storage.tables import EntryRow, LogBackend
from agentfence.records import entry_bytes_from

__all__ = ["LocalSequencer"]


class _Moved(Exception):
    """The stored tree is not the one this process committed last (raised to roll back)."""


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
            frontier = self._write_known(batch, known) if known is not None else None
            if frontier is None:
                frontier = self._write_checked(batch)
        self._known = frontier
        return frontier

    def _write_known(
        self, batch: Sequence[Pending], frontier: _merkle.MerkleFrontier
    ) -> _merkle.MerkleFrontier | None:
        """The quick path: number the batch after the frontier in memory; None (rolled
        back) when the stored tree moved or a record was a duplicate."""
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
        try:
            with self._backend.transaction() as tx:
                if not tx.advance_tree_state(old_size, frontier.size, _state_bytes(frontier)):
                    raise _Moved
                tx.insert_blobs(blobs)
                tx.insert_entry_tuples(rows)
        except (_Moved, sqlite3.IntegrityError):
            # Rolled back: another writer appended, or a dedupe key is already stored. (A
            # constraint that fails for any other reason fails the checked path too.)
            self.rechecked += 1
            return None
        for seq, (item, leaf) in enumerate(zip(batch, leaves, strict=True), start=old_size):
            item.receipt = Receipt(seq=seq, leaf_hash=leaf.hex())
        return frontier

    def _write_checked(self, batch: Sequence[Pending]) -> _merkle.MerkleFrontier:
        """The checked path: read the stored tree state and look every dedupe key up under
        the write lock, then write what is new."""
        with self._backend.transaction() as tx:
            keys = [k for k in (dedupe_key(i.record) for i in batch) if k is not None]
            state, existing = tx.begin_batch(keys)
            if state is None:
                frontier = _merkle.MerkleFrontier()
            else:
                frontier = _merkle.MerkleFrontier.from_state(
                    _merkle.FrontierState.from_bytes(state[1])
                )
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
