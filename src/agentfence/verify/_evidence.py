"""Evidence packs: :func:`export_evidence` writes one thread's entries with their proofs,
and :func:`verify_evidence` checks a pack offline in five numbered steps."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agentfence import _merkle, _signing
from agentfence._signing import Verifier
from agentfence.errors import (
    BlobError,
    CheckpointError,
    ConfigurationError,
    EvidenceError,
    ForkError,
    LogVerificationError,
    OrderError,
    VerificationError,
)
from agentfence.records import (
    ActivationRecord,
    ApprovalAnswerRecord,
    ApprovalRequestRecord,
    DecisionRecord,
    ErasureRecord,
    FrozenModel,
    KeyChangeRecord,
    LogRecord,
    OutcomeRecord,
    blob_ref,
    blob_refs,
)
from agentfence.verify._check import verify_log
from agentfence.verify._common import Progress, StepRun, VerifiedStep, first_error, plural
from agentfence.verify._key_schedule import (
    KeyChange,
    KeySchedule,
    note_text,
    open_trusted_checkpoint,
    short_key,
    trusted_verifiers,
    unique_keys,
)
from agentfence.verify._order import OrderCheck
from agentfence.verify._receipts import decode_entry, decode_hashes, prove_included
from agentfence.verify._snapshot import Snapshot, parse_body

__all__ = [
    "EVIDENCE_FORMAT",
    "EVIDENCE_STEPS",
    "EvidencePack",
    "VerifiedEvidence",
    "export_evidence",
    "verify_evidence",
]

EVIDENCE_FORMAT = "agentfence.evidence/v1"

EVIDENCE_STEPS = ("read", "entries", "checkpoint signature", "blobs", "order")
"""The titles of :func:`verify_evidence`'s steps; step ``n`` is ``EVIDENCE_STEPS[n - 1]``."""


class _PackEntry(FrozenModel):
    seq: int
    leaf_hash: str
    entry: str
    record: dict[str, Any]
    inclusion: list[str]


class _PackBlob(FrozenModel):
    ref: str
    salt: str | None = None
    content: str | None = None
    erased: bool = False


class _Handover(FrozenModel):
    key_change: int
    checkpoint: str
    consistency: list[str]


class EvidencePack(FrozenModel):
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
    with Snapshot(source) as snap:
        chosen: list[tuple[int, bytes, LogRecord]] = []
        activations: dict[str, tuple[int, bytes, LogRecord]] = {}
        erasures: list[tuple[int, bytes, ErasureRecord]] = []
        decision_ids: set[str] = set()
        for row in snap.rows(0, size):
            seq, body = int(row[0]), bytes(row[3])
            record = parse_body(body, seq, step=3)
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
        refs = {ref for _, _, r in chosen for ref in blob_refs(r)}
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
    trusted = trusted_verifiers(keys)
    run = StepRun(EVIDENCE_STEPS, None)
    try:
        return _verify_pack(Path(path), trusted, run)
    except LogVerificationError as exc:
        run.failed(exc)
        raise


def _verify_pack(path: Path, trusted: Sequence[Verifier], run: StepRun) -> VerifiedEvidence:
    # 1. Read the pack: one JSON document of format agentfence.evidence/v1.
    try:
        pack = EvidencePack.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(f"no evidence pack at {str(path)!r}; check the path") from None
    except ValidationError as exc:
        raise EvidenceError(
            f"{path} is not an {EVIDENCE_FORMAT} pack: {first_error(exc)}; export it again "
            "with `agentfence evidence export`",
            step=1,
            attack="malformed",
        ) from exc
    try:
        head = _signing.parse_checkpoint_body(note_text(pack.checkpoint))
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
        entry = decode_entry(item.entry, item.seq, item.record, step=2)
        leaf = _merkle.leaf_hash(entry)
        prove_included(leaf, item.seq, head, item.inclusion, step=2)
        records.append((item.seq, parse_body(entry, item.seq, step=2)))
    records.sort(key=lambda r: r[0])
    run.passed(2, f"{len(records)} entries proven in the tree of size {head.size}")

    # 3. The checkpoint is signed by a trusted key valid at its size. The key changes in the
    #    pack (proven in step 2) say which key that is; each handover checkpoint, signed by
    #    the old key and consistent with the checkpoint, lets trust follow a rotation.
    changes = [
        KeyChange(seq, r.old_key, r.new_key) for seq, r in records if isinstance(r, KeyChangeRecord)
    ]
    schedule = KeySchedule.build(changes, trusted, pack.checkpoint, step=3, origin=pack.origin)
    known = unique_keys([*trusted, *schedule.epochs])
    signed: dict[int, frozenset[str]] = {}
    by_change = {h.key_change: h for h in pack.handovers}
    for index, change in enumerate(changes):
        handover = by_change.get(change.seq)
        if handover is None:
            continue
        what = f"the handover checkpoint of the key change at entry {change.seq}"
        opened, by = open_trusted_checkpoint(
            handover.checkpoint, known, what, step=3, origin=pack.origin
        )
        if opened.size <= change.seq or opened.size > head.size:
            raise EvidenceError(
                f"{what} has size {opened.size}, which does not include the key change or is "
                f"larger than the pack's checkpoint ({head.size})",
                step=3,
                attack="malformed",
            )
        proof = decode_hashes(handover.consistency, f"the consistency proof of {what}", step=3)
        try:
            _merkle.verify_consistency(opened.size, head.size, opened.root, head.root, proof)
        except VerificationError as exc:
            raise ForkError(f"fork: {what}: {exc}", step=3, attack="fork") from exc
        schedule.handovers[index] = opened.size
        signed[opened.size] = by
    checkpoint, by = open_trusted_checkpoint(
        pack.checkpoint, known, "the pack's checkpoint", step=3, origin=pack.origin
    )
    signed[checkpoint.size] = signed.get(checkpoint.size, frozenset()) | by
    _, signed_by = schedule.trust(signed, checkpoint.size, {v.vkey for v in trusted}, step=3)
    run.passed(
        3,
        f"size {checkpoint.size} signed by {', '.join(short_key(k) for k in signed_by)}",
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
    order = OrderCheck()
    policies: dict[str, dict[str, str]] = {}
    for seq, record in records:
        for ref in blob_refs(record):
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
        f"texts of {plural(len(policies), 'policy set')}",
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
