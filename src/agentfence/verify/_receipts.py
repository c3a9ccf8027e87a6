"""Inclusion receipts: :func:`prove` that one entry is in the log, and check it offline.

A receipt holds the entry's exact bytes, its RFC 6962 audit path and a signed checkpoint
(``docs/log-format.md``); :func:`verify_receipt` needs nothing else but a verifier key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agentfence import _merkle, _signing
from agentfence._signing import Checkpoint, Verifier
from agentfence.errors import (
    ConfigurationError,
    EntryError,
    EvidenceError,
    LogError,
    VerificationError,
)
from agentfence.records import FrozenModel, LogRecord
from agentfence.verify._common import first_error
from agentfence.verify._key_schedule import (
    note_text,
    open_trusted_checkpoint,
    saved_note,
    trusted_verifiers,
)
from agentfence.verify._snapshot import Snapshot, body_seq, parse_body

__all__ = ["RECEIPT_FORMAT", "InclusionReceipt", "VerifiedReceipt", "prove", "verify_receipt"]

RECEIPT_FORMAT = "agentfence.receipt/v1"


class InclusionReceipt(FrozenModel):
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
                f"not an {RECEIPT_FORMAT} receipt: {first_error(exc)}; make it again with "
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
    with Snapshot(source) as snap:
        origin = snap.meta().get("origin", "")
        if checkpoint is None:
            stored = snap.checkpoints()
            if not stored:
                raise LogError(f"{snap.path} has no signed checkpoint to prove against")
            checkpoint = stored[-1][2]
        checkpoint = saved_note(checkpoint)
        body = _signing.parse_checkpoint_body(note_text(checkpoint))
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
    trusted = trusted_verifiers(keys)
    # 1. The checkpoint is signed by a trusted key and is for the receipt's log and size.
    checkpoint, by = open_trusted_checkpoint(
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
    entry = decode_entry(receipt.entry, receipt.seq, receipt.record, step=2)
    # 3. The leaf hash and the audit path lead to the checkpoint's root (RFC 9162 2.1.3.2).
    leaf = _merkle.leaf_hash(entry)
    if not hmac.compare_digest(leaf.hex(), receipt.leaf_hash):
        raise EntryError(
            f"entry {receipt.seq} in the receipt was modified: its bytes hash to {leaf.hex()}, "
            f"not to the receipt's leaf hash {receipt.leaf_hash}",
            step=3,
            attack="entry_modified",
        )
    prove_included(leaf, receipt.seq, checkpoint, receipt.inclusion, step=3)
    return VerifiedReceipt(
        origin=checkpoint.origin,
        seq=receipt.seq,
        tree_size=checkpoint.size,
        root=checkpoint.root,
        leaf_hash=leaf,
        record=parse_body(entry, receipt.seq, step=2),
        signed_by=tuple(sorted(by)),
    )


def decode_hashes(values: Sequence[str], what: str, *, step: int) -> list[bytes]:
    try:
        return [bytes.fromhex(v) for v in values]
    except ValueError as exc:
        raise EvidenceError(
            f"{what} holds a value that is not hex", step=step, attack="malformed"
        ) from exc


def decode_entry(encoded: str, seq: int, record: Mapping[str, Any], *, step: int) -> bytes:
    try:
        entry = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError(
            f"entry {seq} is not valid base64", step=step, attack="malformed"
        ) from exc
    parsed = parse_body(entry, seq, step=step)
    claimed = body_seq(entry)
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


def prove_included(
    leaf: bytes, seq: int, checkpoint: Checkpoint, inclusion: Sequence[str], *, step: int
) -> None:
    path = decode_hashes(inclusion, f"the inclusion proof of entry {seq}", step=step)
    try:
        _merkle.verify_inclusion(leaf, seq, checkpoint.size, path, checkpoint.root)
    except VerificationError as exc:
        raise EntryError(
            f"entry {seq} is not in the signed tree of size {checkpoint.size}: {exc}",
            step=step,
            attack="entry_modified",
        ) from exc
